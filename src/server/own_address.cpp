#include "server/own_address.hpp"

#include <ifaddrs.h>
#include <netinet/in.h>

#include <algorithm>
#include <cstring>
#include <vector>

#include "net/ip_address.hpp"

namespace smtplb::server {

namespace {

// The host's interface addresses, read once (a listener on 0.0.0.0 is
// bound to these); addresses added later are still caught by the loopback
// rule only, which is what a loop through DNS would normally use.
const std::vector<net::IpAddress>& interface_addresses() {
  static const std::vector<net::IpAddress> addrs = [] {
    std::vector<net::IpAddress> out;
    ifaddrs* list = nullptr;
    if (getifaddrs(&list) != 0) return out;
    for (ifaddrs* i = list; i; i = i->ifa_next) {
      if (!i->ifa_addr) continue;
      if (i->ifa_addr->sa_family == AF_INET) {
        auto* sa = reinterpret_cast<sockaddr_in*>(i->ifa_addr);
        out.push_back(net::IpAddress(asio::ip::address_v4(ntohl(sa->sin_addr.s_addr))));
      } else if (i->ifa_addr->sa_family == AF_INET6) {
        auto* sa = reinterpret_cast<sockaddr_in6*>(i->ifa_addr);
        net::IpAddress::Bytes b;
        std::memcpy(b.data(), &sa->sin6_addr, b.size());
        out.push_back(net::IpAddress(b));
      }
    }
    freeifaddrs(list);
    return out;
  }();
  return addrs;
}

bool is_local(const net::IpAddress& a) {
  if (a.is_loopback()) return true;
  const auto& own = interface_addresses();
  return std::find(own.begin(), own.end(), a) != own.end();
}

}  // namespace

bool is_own_listener(const config::Config& cfg, const tcp::endpoint& ep) {
  // As net::IpAddress, ::ffff:192.0.2.1 (a mapped AAAA record or
  // listener) is 192.0.2.1.
  const net::IpAddress addr(ep);
  for (const auto& l : cfg.listeners) {
    if (l.listen.port != ep.port()) continue;
    auto listen_addr = net::IpAddress::parse(l.listen.host);
    if (!listen_addr) continue;
    if (listen_addr->is_unspecified() ? is_local(addr) : *listen_addr == addr) return true;
  }
  return false;
}

}  // namespace smtplb::server
