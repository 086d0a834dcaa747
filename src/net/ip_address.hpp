// ip_address.hpp: net::IpAddress, the one form of a client's or peer's IP
// address (issue 13): what policy matches against networks, what the
// limiters and the AUTH throttle key on, what logs, the Received field,
// XCLIENT and PROXY headers print.
//
// 16 bytes, IPv4 stored IPv4-mapped (::ffff:a.b.c.d, RFC 4291 2.5.5.2), so
// one compare and one CIDR mask serve both families, and an IPv4 client
// that reaches a dual-stack [::] listener as ::ffff:a.b.c.d is the same
// client as one that reaches 0.0.0.0.  No scope id: the address is a
// key, not a socket's destination.  The default value is :: (all zero).
#pragma once

#include <array>
#include <boost/asio/ip/address.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <compare>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>

namespace smtplb::net {

class IpAddress {
 public:
  using Bytes = std::array<std::uint8_t, 16>;

  IpAddress() = default;
  explicit IpAddress(const Bytes& bytes) : bytes_(bytes) {}
  explicit IpAddress(const boost::asio::ip::address& a);
  // A v4-mapped IPv6 peer (an IPv4 client on a dual-stack socket) is the
  // IPv4 address: the stored bytes are the same either way.
  explicit IpAddress(const boost::asio::ip::tcp::endpoint& ep) : IpAddress(ep.address()) {}

  // "192.0.2.1", "2001:db8::1", "::ffff:192.0.2.1" (an IPv4 address); no
  // host names, prefixes, brackets or scope ids.
  static std::optional<IpAddress> parse(std::string_view s);

  const Bytes& bytes() const { return bytes_; }
  bool is_v4() const;           // v4-mapped
  bool is_unspecified() const;  // 0.0.0.0 or ::
  bool is_loopback() const;     // 127.0.0.0/8 or ::1
  // An address_v4 for an IPv4 (mapped) address, else an address_v6.
  boost::asio::ip::address to_asio() const;
  // Dotted quad for IPv4, RFC 5952 for IPv6 ("2001:db8::1").
  std::string text() const;

  // The first `bits` bits of the 128-bit form, the rest zero (`bits`
  // clamped to 0..128; an IPv4 /n is bit 96 + n).
  IpAddress masked(int bits) const;

  auto operator<=>(const IpAddress&) const = default;

 private:
  Bytes bytes_{};
};

// The key a per-client count (connection and rate limits, AUTH throttle)
// is kept under: an IPv4 client by its whole address, an IPv6 client by
// its first `ipv6_prefix` bits (limits.ipv6_prefix, 64 by default), since
// one host usually holds a whole /64 and could otherwise take a fresh
// count from every address of it.
IpAddress client_key(const IpAddress& ip, int ipv6_prefix);

}  // namespace smtplb::net

template <>
struct std::hash<smtplb::net::IpAddress> {
  std::size_t operator()(const smtplb::net::IpAddress& ip) const noexcept;
};
