// command_fuzz.cpp: parse_command() on arbitrary bytes.
//
// Checks that a line yields exactly one of a command or a reply; that a
// reply is one of the parser's contract codes and is itself well formed
// (our ReplyParser accepts its wire form, so it is one line of at most 512
// octets with no control bytes); that CR, LF or NUL anywhere is refused; and
// that what a command carries onward (HELO name, path) holds no control
// bytes and re-parses to the same value.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "fuzz_check.hpp"
#include "smtp/address.hpp"
#include "smtp/command.hpp"
#include "smtp/reply.hpp"

namespace {

using namespace smtplb::smtp;

bool has_control(std::string_view s) {
  for (unsigned char c : s)
    if (c < 0x20 || c == 0x7f) return true;
  return false;
}

void check_reply(const Reply& r) {
  CHECK((r.code == 500 && r.enhanced == "5.5.2") || (r.code == 501 && r.enhanced == "5.5.4") ||
        (r.code == 555 && r.enhanced == "5.5.4"));
  std::string wire = r.wire();
  CHECK(wire.size() >= 2 && wire.ends_with("\r\n"));
  std::string_view line(wire.data(), wire.size() - 2);
  CHECK(line.find('\n') == std::string_view::npos);
  ReplyParser p;
  CHECK(p.feed_line(line) == ReplyParser::Status::kDone);
  // Nothing the client sent comes back raw: printable ASCII only.
  for (unsigned char c : line) CHECK(c >= 0x20 && c < 0x7f);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::string_view line(reinterpret_cast<const char*>(data), size);
  ParseResult r = parse_command(line);
  CHECK(r.command.has_value() != r.error.has_value());
  if (r.error) {
    check_reply(*r.error);
    return 0;
  }
  const Command& c = *r.command;
  CHECK(c.verb != Verb::kUnknown);
  // An HTTP verb is recognised whatever follows it (the session closes);
  // any other command holds no line-break or NUL byte.
  CHECK(c.verb == Verb::kHttp ||
        line.find_first_of(std::string_view("\r\n\0", 3)) == std::string_view::npos);
  switch (c.verb) {
    case Verb::kHelo:
    case Verb::kEhlo:
      CHECK(!c.domain.empty() && c.domain.size() <= 255);
      CHECK(!has_control(c.domain));
      CHECK(c.domain.find(' ') == std::string::npos);
      CHECK(c.domain.find_first_of("()<>;:\"\\") == std::string::npos || c.domain.front() == '[');
      break;
    case Verb::kMail:
    case Verb::kRcpt: {
      CHECK(!(c.verb == Verb::kRcpt && c.path.null));
      std::string addr = c.path.str();
      CHECK(!has_control(addr));
      // The path, rebuilt as the relay will, parses back to itself.
      std::string rebuilt =
          std::string(c.verb == Verb::kMail ? "MAIL FROM:<" : "RCPT TO:<") + addr + ">";
      ParseResult again = parse_command(rebuilt);
      CHECK(again.command);
      CHECK(again.command->path.null == c.path.null);
      CHECK(again.command->path.mailbox.local_part == c.path.mailbox.local_part);
      CHECK(again.command->path.mailbox.domain == c.path.mailbox.domain);
      if (c.verb == Verb::kRcpt) {
        // RCPT takes no parameters at all.
        CHECK(!c.mail.size && c.mail.body == Body::kUnspecified && !c.mail.smtputf8 &&
              !c.mail.auth_given);
      }
      break;
    }
    default:
      break;
  }
  return 0;
}
