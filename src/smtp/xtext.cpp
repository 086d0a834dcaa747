#include "smtp/xtext.hpp"

namespace smtplb::smtp::xtext {

namespace {

constexpr std::string_view kHexDigits = "0123456789ABCDEF";

// RFC 3461 4: xchar is "!" (33) to "~" (126), except "+" and "=".
bool is_xchar(unsigned char c) {
  return c >= '!' && c <= '~' && c != '+' && c != '=';
}

// Upper case only: the grammar's hexchar is "+" and two of "0"-"9", "A"-"F".
int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

}  // namespace

std::string encode(std::string_view raw) {
  std::string out;
  out.reserve(raw.size());
  for (unsigned char c : raw) {
    if (is_xchar(c)) {
      out.push_back(static_cast<char>(c));
    } else {
      out.push_back('+');
      out.push_back(kHexDigits[c >> 4]);
      out.push_back(kHexDigits[c & 0x0f]);
    }
  }
  return out;
}

std::optional<std::string> decode(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (std::size_t i = 0; i < text.size(); ++i) {
    auto c = static_cast<unsigned char>(text[i]);
    if (is_xchar(c)) {
      out.push_back(static_cast<char>(c));
      continue;
    }
    // Anything else must be a whole "+XX".
    if (c != '+' || text.size() - i < 3) return std::nullopt;
    int high = hex_value(text[i + 1]);
    int low = hex_value(text[i + 2]);
    if (high < 0 || low < 0) return std::nullopt;
    out.push_back(static_cast<char>(high << 4 | low));
    i += 2;
  }
  return out;
}

}  // namespace smtplb::smtp::xtext
