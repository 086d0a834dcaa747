// identity.hpp: who the client is, in the forms a backend with `identity:`
// takes (DESIGN.md "Identity is never silently lost", SECURITY.md 5).
//
// ClientIdentity is filled by the frontend session at MAIL.  The helpers
// turn it into XCLIENT attributes (smtp/xclient.hpp builds the lines) and
// into the PROXY header of a backend connection (smtp/proxy_header.hpp
// encodes it).  A connection that carries no client -- a health check --
// still owes a backend with `smtpd_upstream_proxy_protocol` a header: the
// "local" ones say "use the real peer" (proxy-protocol.txt 2.1 UNKNOWN,
// 2.2 LOCAL).  Header-only and pure: unit-tested without sockets.
#pragma once

#include <cstdint>
#include <string>

#include "config/config.hpp"
#include "net/asio.hpp"
#include "net/ip_address.hpp"
#include "smtp/proxy_header.hpp"
#include "smtp/xclient.hpp"

namespace smtplb::upstream {

// Who the client is, for backends with `identity:` (XCLIENT, PROXY).
// An address left at its default (::) is not known (is_known).
struct ClientIdentity {
  net::IpAddress ip;  // as the policy sees it (after PROXY)
  std::uint16_t port = 0;
  net::IpAddress local_ip;  // the address the client connected to
  std::uint16_t local_port = 0;
  std::string helo;   // validated HELO/EHLO name
  std::string proto;  // SMTP or ESMTP (XCLIENT knows only these)
  std::string login;  // the AUTH user; empty: not authenticated
};

// Only the all-zero default means "not known": an address a PROXY header
// announced goes on as announced, 0.0.0.0 included.
inline bool is_known(const net::IpAddress& ip) {
  return ip != net::IpAddress{};
}

// NAME is always [UNAVAILABLE]: smtplb does no reverse DNS lookups, and a
// name the backend then looks up itself would be the backend's guess.
inline smtp::XclientAttributes xclient_attributes(const ClientIdentity& c) {
  smtp::XclientAttributes a;
  a.addr = is_known(c.ip) ? c.ip.text() : "";  // empty: [UNAVAILABLE]
  if (c.port != 0) a.port = c.port;
  a.helo = c.helo;
  a.proto = c.proto;
  a.login = c.login;
  return a;
}

// The header's family follows the address: an IPv4 client on a
// dual-stack socket goes out as TCP4 (v2: 0x11).
inline smtp::ProxyAddress proxy_address(const net::IpAddress& ip, std::uint16_t port) {
  smtp::ProxyAddress a;
  a.ip = ip.bytes();
  a.v4 = ip.is_v4();
  a.port = port;
  return a;
}

inline smtp::ProxyAddress proxy_address(const tcp::endpoint& ep) {
  return proxy_address(net::IpAddress(ep), ep.port());
}

// proxy-protocol.txt 2.2: LOCAL, "the connection was established on
// purpose by the proxy without being relayed" (health checks); the
// receiver uses the connection's own addresses.
inline std::string proxy_local_v2() {
  // Signature, version 2 command LOCAL (0x20), family UNSPEC, length 0.
  static constexpr char kHeader[] = "\r\n\r\n\0\r\nQUIT\n\x20\x00\x00\x00";
  return std::string(kHeader, sizeof kHeader - 1);
}

// What a new connection to a backend with this identity mode sends before
// anything else (before TLS, before the banner); empty for none and
// XCLIENT.  With `client`, its address and the one it connected to (when
// that is unknown, the address of this connection, `local`: the client is
// what matters and is never dropped).  Without (a health check) the
// connection's own addresses, `local` (ours) and `remote` (the backend's):
// v2 says LOCAL; v1 has "PROXY UNKNOWN" for that, but Postfix 3.7 refuses
// it ("bad or missing protocol type"), so v1 names the two addresses,
// which means the same.
inline std::string proxy_preamble(config::Identity mode, const ClientIdentity* client,
                                  const tcp::endpoint& local, const tcp::endpoint& remote) {
  if (mode != config::Identity::kProxyV1 && mode != config::Identity::kProxyV2) return {};
  const bool v1 = mode == config::Identity::kProxyV1;
  if (client && is_known(client->ip)) {
    auto src = proxy_address(client->ip, client->port);
    auto dst = is_known(client->local_ip) ? proxy_address(client->local_ip, client->local_port)
                                          : proxy_address(local);
    return v1 ? smtp::encode_proxy_v1(src, dst) : smtp::encode_proxy_v2(src, dst);
  }
  if (!v1) return proxy_local_v2();
  return smtp::encode_proxy_v1(proxy_address(local), proxy_address(remote));
}

// A connection that carries one client's PROXY header must never serve
// another client (SECURITY.md 5): no pooling.
inline bool one_client_per_connection(config::Identity mode) {
  return mode == config::Identity::kProxyV1 || mode == config::Identity::kProxyV2;
}

}  // namespace smtplb::upstream
