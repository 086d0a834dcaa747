// own_address.hpp: is this backend address one of smtplb's own listeners?
//
// An MX pool takes its backends from DNS, and DNS can name smtplb itself
// (the domain's MX points at the balancer, as it should for inbound mail);
// relaying to it would loop until the hop count stops the message.  So an
// address is refused as a backend when it has a listener's port and is
// that listener's address, or, for a wildcard listener (0.0.0.0, ::), any
// address of this host: loopback or one of its interfaces.
#pragma once

#include "config/config.hpp"
#include "net/asio.hpp"

namespace smtplb::server {

bool is_own_listener(const config::Config& cfg, const tcp::endpoint& ep);

}  // namespace smtplb::server
