#include "agent/agent_options.hpp"

#include <charconv>

namespace smtplb::agent {

std::optional<Duration> parse_duration(std::string_view s) {
  std::size_t i = 0;
  while (i < s.size() && s[i] >= '0' && s[i] <= '9') ++i;
  if (i == 0 || i > 9) return std::nullopt;  // nine digits of hours is plenty
  std::int64_t n = 0;
  std::from_chars(s.data(), s.data() + i, n);
  std::string_view unit = s.substr(i);
  std::int64_t ms;
  if (unit == "ms")
    ms = n;
  else if (unit == "s")
    ms = n * 1000;
  else if (unit == "m")
    ms = n * 60'000;
  else if (unit == "h")
    ms = n * 3'600'000;
  else
    return std::nullopt;
  return Duration(ms);
}

std::optional<ListenAddress> parse_listen(std::string_view s) {
  std::size_t colon = s.rfind(':');
  if (colon == std::string_view::npos || colon == 0) return std::nullopt;
  std::string_view host = s.substr(0, colon);
  std::string_view port = s.substr(colon + 1);
  if (host.front() == '[') {
    if (host.size() < 3 || host.back() != ']') return std::nullopt;
    host = host.substr(1, host.size() - 2);
  } else if (host.find(':') != std::string_view::npos) {
    return std::nullopt;  // an IPv6 address needs its brackets
  }
  unsigned v = 0;
  auto [p, ec] = std::from_chars(port.data(), port.data() + port.size(), v);
  if (port.empty() || ec != std::errc() || p != port.data() + port.size() || v > 65535)
    return std::nullopt;
  return ListenAddress{std::string(host), static_cast<std::uint16_t>(v)};
}

}  // namespace smtplb::agent
