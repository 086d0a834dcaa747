#include "config/units.hpp"

#include <charconv>
#include <cmath>

namespace smtplb::config {

namespace {

// Splits "123unit" into the number and the unit.
bool split_number(std::string_view s, double& n, std::string_view& unit) {
  std::size_t i = 0;
  while (i < s.size() && ((s[i] >= '0' && s[i] <= '9') || s[i] == '.')) ++i;
  if (i == 0) return false;
  auto [p, ec] = std::from_chars(s.data(), s.data() + i, n);
  if (ec != std::errc() || p != s.data() + i || n < 0 || !std::isfinite(n)) return false;
  unit = s.substr(i);
  while (!unit.empty() && unit.front() == ' ') unit.remove_prefix(1);
  return true;
}

}  // namespace

std::optional<Duration> parse_duration(std::string_view s) {
  double n;
  std::string_view unit;
  if (!split_number(s, n, unit)) return std::nullopt;
  double ms;
  if (unit == "ms")
    ms = n;
  else if (unit == "s")
    ms = n * 1000;
  else if (unit == "m")
    ms = n * 60'000;
  else if (unit == "h")
    ms = n * 3'600'000;
  else if (unit == "d")
    ms = n * 86'400'000;
  else
    return std::nullopt;
  if (ms > 1e12) return std::nullopt;
  return Duration(static_cast<std::int64_t>(ms));
}

std::optional<std::uint64_t> parse_size(std::string_view s) {
  double n;
  std::string_view unit;
  if (!split_number(s, n, unit)) return std::nullopt;
  double mult;
  // DESIGN.md "Sizes use binary multiples": 1KB = 1024.
  if (unit.empty() || unit == "B")
    mult = 1;
  else if (unit == "KB" || unit == "K" || unit == "KiB" || unit == "kB")
    mult = 1024.0;
  else if (unit == "MB" || unit == "M" || unit == "MiB")
    mult = 1024.0 * 1024;
  else if (unit == "GB" || unit == "G" || unit == "GiB")
    mult = 1024.0 * 1024 * 1024;
  else
    return std::nullopt;
  double v = n * mult;
  if (v > 1e15) return std::nullopt;
  return static_cast<std::uint64_t>(v);
}

std::optional<Rate> parse_rate(std::string_view s) {
  std::size_t slash = s.find('/');
  if (slash == std::string_view::npos) return std::nullopt;
  double n;
  std::string_view rest;
  if (!split_number(s.substr(0, slash), n, rest) || !rest.empty()) return std::nullopt;
  std::string_view unit = s.substr(slash + 1);
  double per;
  if (unit == "s")
    per = 1;
  else if (unit == "m")
    per = 60;
  else if (unit == "h")
    per = 3600;
  else
    return std::nullopt;
  return Rate{n / per, n};
}

std::string Endpoint::str() const {
  if (host.find(':') != std::string::npos) return "[" + host + "]:" + std::to_string(port);
  return host + ":" + std::to_string(port);
}

std::optional<Endpoint> parse_endpoint(std::string_view s) {
  Endpoint e;
  std::string_view port;
  if (!s.empty() && s.front() == '[') {
    std::size_t close = s.find(']');
    if (close == std::string_view::npos || close + 1 >= s.size() || s[close + 1] != ':')
      return std::nullopt;
    e.host = std::string(s.substr(1, close - 1));
    if (!net::IpAddress::parse(e.host)) return std::nullopt;
    port = s.substr(close + 2);
  } else {
    std::size_t colon = s.rfind(':');
    if (colon == std::string_view::npos || colon == 0) return std::nullopt;
    e.host = std::string(s.substr(0, colon));
    if (e.host.find(':') != std::string::npos) return std::nullopt;  // IPv6 needs brackets
    port = s.substr(colon + 1);
  }
  unsigned p = 0;
  auto [ptr, ec] = std::from_chars(port.data(), port.data() + port.size(), p);
  if (ec != std::errc() || ptr != port.data() + port.size() || p > 65535) return std::nullopt;
  for (char c : e.host)
    if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
          c == '-' || c == ':'))
      return std::nullopt;
  e.port = static_cast<std::uint16_t>(p);
  return e;
}

bool Network::contains(const net::IpAddress& a) const {
  return a.masked(prefix) == addr.masked(prefix);
}

std::optional<Network> parse_network(std::string_view s) {
  std::size_t slash = s.find('/');
  std::string_view ip = s.substr(0, slash);
  auto a = net::IpAddress::parse(ip);
  if (!a) return std::nullopt;
  bool v4 = ip.find(':') == std::string_view::npos;
  int max = v4 ? 32 : 128;
  int len = max;
  if (slash != std::string_view::npos) {
    std::string_view p = s.substr(slash + 1);
    auto [ptr, ec] = std::from_chars(p.data(), p.data() + p.size(), len);
    if (ec != std::errc() || ptr != p.data() + p.size() || len < 0 || len > max || p.empty())
      return std::nullopt;
  }
  Network n;
  n.addr = *a;
  n.prefix = v4 ? len + 96 : len;
  return n;
}

}  // namespace smtplb::config
