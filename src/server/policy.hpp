// policy.hpp: who may send what where (DESIGN.md data path, step 2).
//
// inbound listener: mail for local_domains from anyone; other domains only
// from trusted_networks (else 554 5.7.1 at RCPT).  submission listener:
// every MAIL needs a trusted client (530 5.7.0) until AUTH exists.
// Address literals are never local: "u@[192.0.2.1]" is relaying.
#pragma once

#include "config/config.hpp"
#include "net/ip_address.hpp"
#include "smtp/address.hpp"

namespace smtplb::server {

bool is_trusted(const config::Config& cfg, const net::IpAddress& ip);
// May send a PROXY header (proxy_networks; empty trusts nobody).
bool is_proxy(const config::Config& cfg, const net::IpAddress& ip);
// `domain` as domain_key() gives it.
bool is_local_domain(const config::Config& cfg, std::string_view domain);

// A domain as routes, local_domains and MX lookups compare it: its
// A-labels, ASCII lowered (SECURITY.md 4; the configuration's domains are
// kept in the same form).
std::string domain_key(std::string_view domain);

// The domain used for routing and policy: domain_key(); <postmaster> is
// postmaster of the first local domain (RFC 5321 4.5.1).
std::string routing_domain(const config::Config& cfg, const smtp::Mailbox& m);

enum class Verdict { kAllowed, kRelayDenied };
Verdict check_recipient(const config::Config& cfg, config::Role role, bool trusted,
                        const smtp::Mailbox& rcpt);

}  // namespace smtplb::server
