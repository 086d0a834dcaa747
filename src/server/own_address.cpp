#include "server/own_address.hpp"

#include <ifaddrs.h>
#include <netinet/in.h>

#include <cstring>
#include <vector>

namespace smtplb::server {

namespace {

// The host's interface addresses, read once (a listener on 0.0.0.0 is
// bound to these); addresses added later are still caught by the loopback
// rule only, which is what a loop through DNS would normally use.
const std::vector<asio::ip::address>& interface_addresses() {
  static const std::vector<asio::ip::address> addrs = [] {
    std::vector<asio::ip::address> out;
    ifaddrs* list = nullptr;
    if (getifaddrs(&list) != 0) return out;
    for (ifaddrs* i = list; i; i = i->ifa_next) {
      if (!i->ifa_addr) continue;
      if (i->ifa_addr->sa_family == AF_INET) {
        auto* sa = reinterpret_cast<sockaddr_in*>(i->ifa_addr);
        out.push_back(asio::ip::address_v4(ntohl(sa->sin_addr.s_addr)));
      } else if (i->ifa_addr->sa_family == AF_INET6) {
        auto* sa = reinterpret_cast<sockaddr_in6*>(i->ifa_addr);
        asio::ip::address_v6::bytes_type b;
        std::memcpy(b.data(), &sa->sin6_addr, 16);
        out.push_back(asio::ip::address_v6(b));
      }
    }
    freeifaddrs(list);
    return out;
  }();
  return addrs;
}

asio::ip::address unmapped(const asio::ip::address& a) {
  if (a.is_v6() && a.to_v6().is_v4_mapped())
    return asio::ip::make_address_v4(asio::ip::v4_mapped, a.to_v6());
  return a;
}

bool is_local(const asio::ip::address& a) {
  if (a.is_loopback()) return true;
  for (const auto& own : interface_addresses())
    if (own == a) return true;
  return false;
}

}  // namespace

bool is_own_listener(const config::Config& cfg, const tcp::endpoint& ep) {
  const auto addr = unmapped(ep.address());
  for (const auto& l : cfg.listeners) {
    if (l.listen.port != ep.port()) continue;
    error_code ec;
    auto listen_addr = asio::ip::make_address(l.listen.host, ec);
    if (ec) continue;
    if (listen_addr.is_unspecified() ? is_local(addr) : unmapped(listen_addr) == addr) return true;
  }
  return false;
}

}  // namespace smtplb::server
