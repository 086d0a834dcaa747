#include "agent/agent_options.hpp"

#include "config/units.hpp"
#include "net/ip_address.hpp"

namespace smtplb::agent {

// The agent takes durations and addresses in the same syntax as smtplb's
// configuration file (config/units.hpp), so an operator writes them once.
std::optional<Duration> parse_duration(std::string_view s) {
  auto d = config::parse_duration(s);
  if (!d) return std::nullopt;
  return std::chrono::duration_cast<Duration>(*d);
}

std::optional<ListenAddress> parse_listen(std::string_view s) {
  auto e = config::parse_endpoint(s);
  if (!e || !net::IpAddress::parse(e->host)) return std::nullopt;  // the agent binds: an IP literal
  return ListenAddress{e->host, e->port};
}

}  // namespace smtplb::agent
