#include "route/router.hpp"

#include <algorithm>

namespace smtplb::route {

bool domain_matches(std::string_view domain, std::string_view entry) {
  if (entry.empty() || domain.empty()) return false;
  if (entry.front() == '.') {
    // ".example.com": a proper subdomain, on a label boundary.
    return domain.size() > entry.size() &&
           domain.compare(domain.size() - entry.size(), entry.size(), entry) == 0;
  }
  return domain == entry;
}

bool domain_in(std::string_view domain, const std::vector<std::string>& entries) {
  return std::any_of(entries.begin(), entries.end(),
                     [&](const std::string& e) { return domain_matches(domain, e); });
}

const config::Route* Router::match(const RouteQuery& q) const {
  for (const auto& r : cfg_.routes) {
    if (!r.listeners.empty() &&
        std::find(r.listeners.begin(), r.listeners.end(), q.listener) == r.listeners.end())
      continue;
    if (!r.recipient_domains.empty() && !domain_in(q.recipient_domain, r.recipient_domains))
      continue;
    if (!r.sender_domains.empty() && !domain_in(q.sender_domain, r.sender_domains)) continue;
    if (!r.client_networks.empty() &&
        std::none_of(r.client_networks.begin(), r.client_networks.end(),
                     [&](const config::Network& n) { return n.contains(q.client_ip); }))
      continue;
    return &r;
  }
  return nullptr;
}

}  // namespace smtplb::route
