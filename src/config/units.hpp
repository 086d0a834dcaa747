// units.hpp: the contract's value syntaxes (DESIGN.md "Configuration
// contract"): durations `500ms`/`5s`/`2m`/`1h`, sizes `10MB` (binary
// multiples), rates `100/s`, endpoints `host:port`, CIDR networks.
// Pure; each returns nullopt and says nothing, the loader words the error.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "net/ip_address.hpp"

namespace smtplb::config {

using Duration = std::chrono::milliseconds;

std::optional<Duration> parse_duration(std::string_view s);
std::optional<std::uint64_t> parse_size(std::string_view s);

struct Rate {
  double per_second = 0;
  double burst = 0;  // the N of "N/unit": that many may come at once
  bool operator==(const Rate&) const = default;
};
std::optional<Rate> parse_rate(std::string_view s);

struct Endpoint {
  std::string host;  // literal IPv4/IPv6 address or a host name
  std::uint16_t port = 0;
  std::string str() const;
  bool operator==(const Endpoint&) const = default;
};
std::optional<Endpoint> parse_endpoint(std::string_view s);

// An IPv4 or IPv6 network; IPv4 is kept as IPv4-mapped IPv6 (as
// net::IpAddress keeps it) so that one compare serves both families.
struct Network {
  net::IpAddress addr;
  int prefix = 0;  // in the 128-bit space
  bool contains(const net::IpAddress& a) const;
};
std::optional<Network> parse_network(std::string_view s);

}  // namespace smtplb::config
