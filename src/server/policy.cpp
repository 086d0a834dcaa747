#include "server/policy.hpp"

#include <algorithm>

#include "route/router.hpp"
#include "smtp/idna.hpp"

namespace smtplb::server {

bool is_trusted(const config::Config& cfg, const net::IpAddress& ip) {
  return std::any_of(cfg.trusted_networks.begin(), cfg.trusted_networks.end(),
                     [&](const config::Network& n) { return n.contains(ip); });
}

bool is_proxy(const config::Config& cfg, const net::IpAddress& ip) {
  return std::any_of(cfg.proxy_networks.begin(), cfg.proxy_networks.end(),
                     [&](const config::Network& n) { return n.contains(ip); });
}

bool is_local_domain(const config::Config& cfg, std::string_view domain) {
  return route::domain_in(domain, cfg.local_domains);
}

std::string domain_key(std::string_view domain) {
  // The address parser let only well-formed names through, so the A-label
  // form exists but for a U-label whose A-label is over 63 octets: that one
  // keeps its own form and matches no configured domain.
  if (auto a_labels = smtp::to_a_labels(domain)) return std::move(*a_labels);
  return smtp::ascii_lower(domain);
}

std::string routing_domain(const config::Config& cfg, const smtp::Mailbox& m) {
  if (m.domain.empty()) {
    for (const auto& d : cfg.local_domains)
      if (!d.empty() && d.front() != '.') return d;
    return {};
  }
  return domain_key(m.domain);
}

Verdict check_recipient(const config::Config& cfg, config::Role role, bool trusted,
                        const smtp::Mailbox& rcpt) {
  if (trusted) return Verdict::kAllowed;
  // Submission clients were checked at MAIL; with AUTH they will be too.
  if (role == config::Role::kSubmission) return Verdict::kAllowed;
  if (rcpt.domain.empty()) return Verdict::kAllowed;  // <postmaster>
  if (rcpt.is_address_literal()) return Verdict::kRelayDenied;
  return is_local_domain(cfg, domain_key(rcpt.domain)) ? Verdict::kAllowed : Verdict::kRelayDenied;
}

}  // namespace smtplb::server
