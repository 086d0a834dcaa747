// sasl_fuzz.cpp: strict base64 and the AUTH exchange on arbitrary bytes.
//
// The input is read twice.  As one base64 text: what decodes is canonical
// (encoding it again gives the very same text), and anything encodes to a
// text that decodes back.  As an AUTH dialogue, lines split at LF: the
// first is "MECHANISM[ initial-response]", each next one answers a
// challenge.  The exchange must end within two challenges, with either
// credentials that meet the documented bounds (and that PLAIN, given them,
// accepts again unchanged) or one of the contract replies, each a
// well-formed single line of printable ASCII.
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <variant>

#include "fuzz_check.hpp"
#include "smtp/reply.hpp"
#include "smtp/sasl.hpp"

namespace {

using namespace smtplb::smtp;
using namespace smtplb::smtp::sasl;

void check_base64(std::string_view in) {
  if (std::optional<std::string> bytes = base64_decode(in)) {
    CHECK(in.size() % 4 == 0);
    CHECK(bytes->size() <= in.size() / 4 * 3);
    CHECK(base64_encode(*bytes) == in);
  }
  std::string text = base64_encode(in);
  CHECK(text.size() == (in.size() + 2) / 3 * 4);
  std::optional<std::string> back = base64_decode(text);
  CHECK(back && *back == in);
}

bool is_contract_reply(const Reply& r) {
  return (r.code == 504 && r.enhanced == "5.5.4") || (r.code == 501 && r.enhanced == "5.7.0") ||
         (r.code == 501 && r.enhanced == "5.5.2") || (r.code == 500 && r.enhanced == "5.5.6") ||
         (r.code == 535 && r.enhanced == "5.7.8");
}

void check_reply(const Reply& r) {
  CHECK(is_contract_reply(r));
  std::string wire = r.wire();
  CHECK(wire.ends_with("\r\n"));
  std::string_view line(wire.data(), wire.size() - 2);
  for (unsigned char c : line) CHECK(c >= 0x20 && c < 0x7f);
  ReplyParser p;
  CHECK(p.feed_line(line) == ReplyParser::Status::kDone);
}

void check_credentials(const Credentials& c, std::string_view mechanism) {
  CHECK(parse_mechanism(mechanism) == c.mechanism);
  CHECK(!c.username.empty() && c.username.size() <= kMaxUsername);
  for (unsigned char ch : c.username) CHECK(ch >= 0x20 && ch != 0x7f);
  CHECK(!c.password.empty() && c.password.size() <= kMaxPassword);
  CHECK(c.password.find('\0') == std::string::npos);
  // The same user and password, sent again as PLAIN, come out the same.
  AuthExchange again;
  std::string message = std::string(1, '\0') + c.username + '\0' + c.password;
  Step s = again.start("PLAIN", base64_encode(message));
  const auto* got = std::get_if<Credentials>(&s);
  CHECK(got && got->username == c.username && got->password == c.password);
}

// The next line of `in` (up to LF, or the rest), consumed.
std::optional<std::string_view> next_line(std::string_view& in) {
  if (in.empty()) return std::nullopt;
  std::size_t lf = in.find('\n');
  std::string_view line = in.substr(0, lf);
  in.remove_prefix(lf == std::string_view::npos ? in.size() : lf + 1);
  return line;
}

void check_exchange(std::string_view in) {
  std::optional<std::string_view> first = next_line(in);
  if (!first) return;
  std::size_t sp = first->find(' ');
  std::string_view mechanism = first->substr(0, sp);
  std::optional<std::string_view> initial;
  if (sp != std::string_view::npos) initial = first->substr(sp + 1);

  AuthExchange ex;
  Step step = ex.start(mechanism, initial);
  int challenges = 0;
  while (const auto* ch = std::get_if<Challenge>(&step)) {
    CHECK(!ex.done());
    CHECK(++challenges <= 2);
    CHECK(ch->text.empty() || ch->text == "VXNlcm5hbWU6" || ch->text == "UGFzc3dvcmQ6");
    CHECK(ch->reply().wire() == "334 " + ch->text + "\r\n");
    std::optional<std::string_view> line = next_line(in);
    if (!line) return;  // the client went away mid-exchange
    step = ex.respond(*line);
  }
  CHECK(ex.done());
  if (const auto* c = std::get_if<Credentials>(&step))
    check_credentials(*c, mechanism);
  else
    check_reply(std::get<Reply>(step));
  // Nothing more is taken once the exchange is over.
  Step after = ex.respond("");
  const auto* r = std::get_if<Reply>(&after);
  CHECK(r && r->code == 503);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::string_view in(reinterpret_cast<const char*>(data), size);
  check_base64(in);
  check_exchange(in);
  return 0;
}
