// ascii.hpp: case-insensitive comparison of protocol words (SMTP verbs,
// EHLO keywords, SASL mechanisms, HTTP header names, agent words).
//
// ASCII only, on purpose: protocol keywords are ASCII, and a locale-aware
// comparison would make "İ" equal "i" on some systems and not on others.
#pragma once

#include <string_view>

namespace smtplb::smtp {

constexpr char ascii_lower(char c) {
  return (c >= 'A' && c <= 'Z') ? static_cast<char>(c + ('a' - 'A')) : c;
}

constexpr bool iequals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i)
    if (ascii_lower(a[i]) != ascii_lower(b[i])) return false;
  return true;
}

constexpr bool istarts_with(std::string_view s, std::string_view prefix) {
  return s.size() >= prefix.size() && iequals(s.substr(0, prefix.size()), prefix);
}

}  // namespace smtplb::smtp
