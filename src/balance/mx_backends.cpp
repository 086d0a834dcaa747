#include "balance/mx_backends.hpp"

#include "server/own_address.hpp"

namespace smtplb::balance {

std::string endpoint_name(const asio::ip::address& a, std::uint16_t port) {
  return (a.is_v6() ? "[" + a.to_string() + "]" : a.to_string()) + ":" + std::to_string(port);
}

std::vector<MxBackend> mx_backends(const dns::MxTarget& t, std::uint16_t port,
                                   const config::Config& cfg, std::vector<MxBackend>& refused) {
  std::vector<MxBackend> out;
  for (const auto& h : t.hosts) {
    for (const auto& a : h.addresses) {
      tcp::endpoint ep(a, port);
      bool dup = false;
      for (const auto& x : out) dup = dup || x.endpoint == ep;
      if (dup) continue;
      config::Backend b;
      b.address = config::Endpoint{a.to_string(), port};
      b.name = endpoint_name(a, port);
      b.mx_host = h.name;
      b.mx_preference = h.preference;
      (server::is_own_listener(cfg, ep) ? refused : out).push_back({std::move(b), ep});
    }
  }
  return out;
}

}  // namespace smtplb::balance
