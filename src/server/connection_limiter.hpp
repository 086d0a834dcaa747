// connection_limiter.hpp: limits.max_connections (total) and
// limits.max_connections_per_ip, shared by every core.
//
// Taken once per connection, never per message, so a short mutex around
// the per-address counts is fine here.  Trusted networks are exempt from
// the per-address limit (as Postfix exempts mynetworks).
//
// "Per address" is per client key (client_key): an IPv4 client by its
// address, an IPv6 client by its first limits.ipv6_prefix bits (64 by
// default), since one host usually holds a whole /64 and could otherwise
// take every slot from addresses of its own.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <map>
#include <mutex>

namespace smtplb::server {

class ConnectionLimiter {
 public:
  using Ip = std::array<std::uint8_t, 16>;  // IPv4 as IPv4-mapped IPv6
  static constexpr int kDefaultIpv6Prefix = 64;

  // The key a per-client limit counts `ip` under: an IPv4-mapped address
  // whole, an IPv6 address cut to its first `ipv6_prefix` bits (1..128).
  static Ip client_key(const Ip& ip, int ipv6_prefix);

  // limits.ipv6_prefix, set at start-up before the first acquire (a count
  // must be released under the key it was taken with, so a reload keeps
  // the start-up value).
  void set_ipv6_prefix(int bits) { ipv6_prefix_ = bits; }

  // True when the connection may proceed; then release() must follow.
  enum class Result { kAcquired, kTotalFull, kClientFull };
  Result acquire(const Ip& ip, bool exempt_per_ip, int max_total, int max_per_ip);
  void release(const Ip& ip);
  int total() const { return total_.load(std::memory_order_relaxed); }

 private:
  int ipv6_prefix_ = kDefaultIpv6Prefix;
  std::atomic<int> total_{0};
  std::mutex mu_;
  std::map<Ip, int> per_ip_;
};

// Holds one acquired slot for the life of a session.
class ConnectionSlot {
 public:
  ConnectionSlot(ConnectionLimiter& l, const ConnectionLimiter::Ip& ip) : l_(&l), ip_(ip) {}
  ~ConnectionSlot() {
    if (l_) l_->release(ip_);
  }
  ConnectionSlot(const ConnectionSlot&) = delete;
  ConnectionSlot& operator=(const ConnectionSlot&) = delete;

 private:
  ConnectionLimiter* l_;
  ConnectionLimiter::Ip ip_;
};

}  // namespace smtplb::server
