// xtext_fuzz.cpp: xtext (RFC 3461 4) and the XCLIENT lines built with it,
// on arbitrary bytes.
//
// xtext: encoding yields only "!" to "~" without "=" and decodes back to
// the input; whatever decodes was itself such text.  XCLIENT: the input is
// cut at LF into a client's ADDR, PORT, NAME, HELO, PROTO and LOGIN (the
// first byte picks which attributes the backend advertised), and the lines
// built must each be "XCLIENT" and NAME=value words within 512 octets with
// a single CR LF, carry each advertised attribute exactly once and no
// other, and decode to the client's value or [UNAVAILABLE].  The EHLO
// keyword parser gets the input as a line too.
#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "fuzz_check.hpp"
#include "smtp/xclient.hpp"
#include "smtp/xtext.hpp"

namespace {

using namespace smtplb::smtp;

bool is_encoded_char(unsigned char c) {
  return c >= '!' && c <= '~' && c != '=';
}

void check_xtext(std::string_view in) {
  std::string text = xtext::encode(in);
  CHECK(text.size() >= in.size() && text.size() <= 3 * in.size());
  for (unsigned char c : text) CHECK(is_encoded_char(c));
  std::optional<std::string> back = xtext::decode(text);
  CHECK(back && *back == in);

  if (std::optional<std::string> raw = xtext::decode(in)) {
    for (unsigned char c : in) CHECK(is_encoded_char(c));
    CHECK(raw->size() <= in.size());
    CHECK(xtext::decode(xtext::encode(*raw)) == raw);
  }
}

std::string_view next_field(std::string_view& in) {
  std::size_t lf = in.find('\n');
  std::string_view field = in.substr(0, lf);
  in.remove_prefix(lf == std::string_view::npos ? in.size() : lf + 1);
  return field;
}

void check_xclient(std::string_view in) {
  if (in.empty()) return;
  const auto bits = static_cast<unsigned char>(in[0]);
  in.remove_prefix(1);
  XclientSupport adv{(bits & 1) != 0, (bits & 2) != 0,  (bits & 4) != 0,
                     (bits & 8) != 0, (bits & 16) != 0, (bits & 32) != 0};
  XclientAttributes a;
  a.addr = next_field(in);
  std::string_view port = next_field(in);
  if (!port.empty()) a.port = static_cast<std::uint16_t>(port.size() * 997 + port[0]);
  a.name = next_field(in);
  a.helo = next_field(in);
  a.proto = next_field(in);
  a.login = next_field(in);

  struct Seen {
    std::string_view key;
    bool advertised;
    int count = 0;
  };
  std::array<Seen, 6> seen{{{"ADDR", adv.addr},
                            {"PORT", adv.port},
                            {"NAME", adv.name},
                            {"HELO", adv.helo},
                            {"PROTO", adv.proto},
                            {"LOGIN", adv.login}}};
  constexpr std::string_view kUnavailable = "[UNAVAILABLE]";
  std::vector<std::string> lines = xclient_commands(a, adv);
  for (const std::string& line : lines) {
    CHECK(line.size() <= kMaxXclientLine);
    CHECK(line.starts_with("XCLIENT ") && line.ends_with("\r\n"));
    std::string_view rest(line);
    rest.remove_prefix(8);
    rest.remove_suffix(2);
    CHECK(!rest.empty());
    // Words separated by single spaces, none empty.
    while (true) {
      std::size_t sp = rest.find(' ');
      std::string_view item = rest.substr(0, sp);
      std::size_t eq = item.find('=');
      CHECK(eq != std::string_view::npos);
      std::string_view key = item.substr(0, eq);
      std::optional<std::string> value = xtext::decode(item.substr(eq + 1));
      CHECK(value && !value->empty());
      bool known = false;
      for (Seen& s : seen) {
        if (s.key != key) continue;
        known = true;
        CHECK(s.advertised);
        ++s.count;
      }
      CHECK(known);
      const bool unavailable = *value == kUnavailable;
      if (key == "ADDR")
        CHECK(unavailable || *value == a.addr || *value == "IPV6:" + a.addr ||
              a.addr.ends_with(":" + *value));
      if (key == "PORT") CHECK(a.port ? *value == std::to_string(*a.port) : unavailable);
      if (key == "NAME") CHECK(unavailable || *value == a.name);
      if (key == "HELO") CHECK(unavailable || *value == a.helo);
      if (key == "LOGIN") CHECK(unavailable || *value == a.login);
      if (key == "PROTO") {
        std::string upper = *value;
        for (char& c : upper)
          if (c >= 'a' && c <= 'z') c = static_cast<char>(c - 32);
        CHECK(unavailable || (*value == a.proto && (upper == "SMTP" || upper == "ESMTP")));
      }
      if (sp == std::string_view::npos) break;
      rest.remove_prefix(sp + 1);
      CHECK(!rest.empty() && rest.front() != ' ');
    }
  }
  for (const Seen& s : seen) CHECK(s.count == (s.advertised ? 1 : 0));
}

// Only a line whose first word is XCLIENT, in any case, is the keyword.
void check_keyword(std::string_view in) {
  if (!parse_xclient_keyword(in)) return;
  std::size_t start = in.find_first_not_of(' ');
  CHECK(start != std::string_view::npos);
  std::string_view word = in.substr(start, in.find(' ', start) - start);
  CHECK(word.size() == 7);
  for (std::size_t i = 0; i < 7; ++i)
    CHECK((static_cast<unsigned char>(word[i]) & ~0x20u) == static_cast<unsigned>("XCLIENT"[i]));
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::string_view in(reinterpret_cast<const char*>(data), size);
  check_xtext(in);
  check_xclient(in);
  check_keyword(in);
  return 0;
}
