// utf8.hpp: one code point of well-formed UTF-8 (RFC 3629): no overlong
// form, no surrogate, nothing past U+10FFFF.  Shared by the address
// checks (is the text UTF-8 at all?) and IDNA (which code points?).
#pragma once

#include <cstddef>
#include <optional>
#include <string_view>

namespace smtplb::smtp {

// The code point that starts at s[i], with i moved past it; nothing (and
// i unchanged) when the bytes there are not well-formed UTF-8.
inline std::optional<char32_t> next_code_point(std::string_view s, std::size_t& i) {
  const unsigned char c = s[i];
  std::size_t n;
  char32_t cp;
  if (c < 0x80) {
    ++i;
    return c;
  }
  if (c >= 0xc2 && c <= 0xdf) {
    n = 1, cp = c & 0x1f;
  } else if (c >= 0xe0 && c <= 0xef) {
    n = 2, cp = c & 0x0f;
  } else if (c >= 0xf0 && c <= 0xf4) {
    n = 3, cp = c & 0x07;
  } else {
    return std::nullopt;
  }
  if (i + n >= s.size()) return std::nullopt;
  for (std::size_t k = 1; k <= n; ++k) {
    const unsigned char cc = s[i + k];
    if ((cc & 0xc0) != 0x80) return std::nullopt;
    cp = (cp << 6) | (cc & 0x3f);
  }
  const char32_t min = n == 1 ? 0x80 : n == 2 ? 0x800 : 0x10000;
  if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return std::nullopt;
  i += n + 1;
  return cp;
}

inline bool valid_utf8(std::string_view s) {
  for (std::size_t i = 0; i < s.size();)
    if (!next_code_point(s, i)) return false;
  return true;
}

}  // namespace smtplb::smtp
