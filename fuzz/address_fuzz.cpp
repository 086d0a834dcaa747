// address_fuzz.cpp: parse_path() on arbitrary bytes, as both path kinds.
//
// An accepted path must respect the RFC 5321 limits, hold well-formed UTF-8
// and no control bytes, keep "<>" for reverse paths and a domain-less
// mailbox for <postmaster> only, have a domain the validators accept, and
// parse back to itself when rebuilt as "<" + str() + ">".
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "fuzz_check.hpp"
#include "smtp/address.hpp"

namespace {

using namespace smtplb::smtp;

bool valid_utf8(std::string_view s) {
  std::size_t i = 0;
  while (i < s.size()) {
    unsigned char c = s[i];
    std::size_t n;
    std::uint32_t cp;
    if (c < 0x80) {
      ++i;
      continue;
    } else if ((c & 0xe0) == 0xc0) {
      n = 1, cp = c & 0x1f;
    } else if ((c & 0xf0) == 0xe0) {
      n = 2, cp = c & 0x0f;
    } else if ((c & 0xf8) == 0xf0) {
      n = 3, cp = c & 0x07;
    } else {
      return false;
    }
    if (i + n >= s.size()) return false;
    for (std::size_t k = 1; k <= n; ++k) {
      unsigned char cc = s[i + k];
      if ((cc & 0xc0) != 0x80) return false;
      cp = cp << 6 | (cc & 0x3f);
    }
    static constexpr std::uint32_t kMin[] = {0, 0x80, 0x800, 0x10000};
    if (cp < kMin[n] || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return false;
    i += n + 1;
  }
  return true;
}

bool has_control(std::string_view s) {
  for (unsigned char c : s)
    if (c < 0x20 || c == 0x7f) return true;
  return false;
}

bool iequals_postmaster(std::string_view s) {
  return ascii_lower(s) == "postmaster";
}

void check(std::string_view text, PathKind kind) {
  PathResult r = parse_path(text, kind);
  if (!r.path) {
    CHECK(!r.error.empty());
    return;
  }
  CHECK(r.error.empty());
  CHECK(r.consumed >= 2 && r.consumed <= text.size() && r.consumed <= 256);
  CHECK(text[0] == '<' && text[r.consumed - 1] == '>');
  const Path& p = *r.path;
  if (p.null) {
    CHECK(kind == PathKind::kReversePath);
    CHECK(r.consumed == 2);
    return;
  }
  const Mailbox& m = p.mailbox;
  CHECK(!m.local_part.empty() && m.local_part.size() <= 64);
  CHECK(m.domain.size() <= 255);
  CHECK(!has_control(m.local_part) && !has_control(m.domain));
  CHECK(valid_utf8(m.local_part) && valid_utf8(m.domain));
  if (m.domain.empty()) {
    CHECK(kind == PathKind::kForwardPath);
    CHECK(iequals_postmaster(m.local_part));
  } else if (m.is_address_literal()) {
    CHECK(is_valid_address_literal(m.domain));
  } else {
    // One trailing dot (an absolute name) is accepted and kept as written.
    std::string_view d = m.domain;
    if (!d.empty() && d.back() == '.') d.remove_suffix(1);
    CHECK(is_valid_domain(d));
  }
  std::string rebuilt = "<" + p.str() + ">";
  PathResult again = parse_path(rebuilt, kind);
  CHECK(again.path);
  CHECK(!again.path->null);
  CHECK(again.consumed == rebuilt.size());
  CHECK(again.path->mailbox.local_part == m.local_part);
  CHECK(again.path->mailbox.domain == m.domain);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);
  check(text, PathKind::kReversePath);
  check(text, PathKind::kForwardPath);
  // The validators on their own, on the same bytes.
  if (is_valid_address_literal(text)) CHECK(text.front() == '[' && text.back() == ']');
  if (is_valid_address_literal(text) || is_valid_domain(text)) {
    CHECK(!has_control(text));
    CHECK(valid_utf8(text));
  }
  return 0;
}
