// router.hpp: which pool serves a recipient (DESIGN.md "routes").
//
// Routes are tried in order and the first whose every given key matches
// wins; a route without match keys matches everything.  Domains are
// compared lowercased (ASCII), whole labels: an entry ".example.com"
// matches every subdomain of example.com and never example.com itself
// nor "evilexample.com".
#pragma once

#include <string_view>

#include "config/config.hpp"
#include "net/ip_address.hpp"

namespace smtplb::route {

struct RouteQuery {
  std::string_view listener;
  std::string_view recipient_domain;  // lowercased
  std::string_view sender_domain;     // lowercased, empty for <>
  net::IpAddress client_ip;
};

// `domain` lowercased; `entry` as stored by the config loader (lowercased).
bool domain_matches(std::string_view domain, std::string_view entry);
bool domain_in(std::string_view domain, const std::vector<std::string>& entries);

class Router {
 public:
  explicit Router(const config::Config& cfg) : cfg_(cfg) {}
  const config::Route* match(const RouteQuery& q) const;

 private:
  const config::Config& cfg_;
};

}  // namespace smtplb::route
