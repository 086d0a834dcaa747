// mx_backends.hpp: the backends an MX answer gives a pool.
//
// One per address of each exchange, on the pool's port, named as listed
// backends are ("192.0.2.1:25", "[2001:db8::1]:25"), with the exchange's
// name and preference; an address that is one of smtplb's own listeners
// is left out (a mail loop, own_address.hpp), and an address named by two
// exchanges is taken once.  Used by the `mx: DOMAIN` watcher and by the
// cores' `mx: recipient` pools alike.
#pragma once

#include <string>
#include <vector>

#include "config/config.hpp"
#include "dns/lookup.hpp"
#include "net/asio.hpp"

namespace smtplb::balance {

struct MxBackend {
  config::Backend backend;
  tcp::endpoint endpoint;
};

// `refused`: the own-listener addresses left out.
std::vector<MxBackend> mx_backends(const dns::MxTarget& t, std::uint16_t port,
                                   const config::Config& cfg, std::vector<MxBackend>& refused);

std::string endpoint_name(const asio::ip::address& a, std::uint16_t port);

}  // namespace smtplb::balance
