#include "server/policy.hpp"

#include <algorithm>

#include "route/router.hpp"

namespace smtplb::server {

bool is_trusted(const config::Config& cfg, const net::IpAddress& ip) {
  return std::any_of(cfg.trusted_networks.begin(), cfg.trusted_networks.end(),
                     [&](const config::Network& n) { return n.contains(ip); });
}

bool is_proxy(const config::Config& cfg, const net::IpAddress& ip) {
  return std::any_of(cfg.proxy_networks.begin(), cfg.proxy_networks.end(),
                     [&](const config::Network& n) { return n.contains(ip); });
}

bool is_local_domain(const config::Config& cfg, std::string_view domain_lower) {
  return route::domain_in(domain_lower, cfg.local_domains);
}

std::string routing_domain(const config::Config& cfg, const smtp::Mailbox& m) {
  if (m.domain.empty()) {
    for (const auto& d : cfg.local_domains)
      if (!d.empty() && d.front() != '.') return d;
    return {};
  }
  return smtp::ascii_lower(m.domain);
}

Verdict check_recipient(const config::Config& cfg, config::Role role, bool trusted,
                        const smtp::Mailbox& rcpt) {
  if (trusted) return Verdict::kAllowed;
  // Submission clients were checked at MAIL; with AUTH they will be too.
  if (role == config::Role::kSubmission) return Verdict::kAllowed;
  if (rcpt.domain.empty()) return Verdict::kAllowed;  // <postmaster>
  if (rcpt.is_address_literal()) return Verdict::kRelayDenied;
  return is_local_domain(cfg, smtp::ascii_lower(rcpt.domain)) ? Verdict::kAllowed
                                                              : Verdict::kRelayDenied;
}

}  // namespace smtplb::server
