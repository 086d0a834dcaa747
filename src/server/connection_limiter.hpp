// connection_limiter.hpp: limits.max_connections (total) and
// limits.max_connections_per_ip, shared by every core.
//
// Taken once per connection, never per message, so a short mutex around
// the per-address counts is fine here.  Trusted networks are exempt from
// the per-address limit (as Postfix exempts mynetworks).
//
// "Per address" is per client key (net::client_key): an IPv4 client by
// its address, an IPv6 client by its first limits.ipv6_prefix bits (64 by
// default), since one host usually holds a whole /64 and could otherwise
// take every slot from addresses of its own.
#pragma once

#include <algorithm>
#include <atomic>
#include <map>
#include <mutex>

#include "net/ip_address.hpp"

namespace smtplb::server {

class ConnectionLimiter {
 public:
  static constexpr int kDefaultIpv6Prefix = 64;

  // limits.ipv6_prefix, set at start-up before the first acquire (a count
  // must be released under the key it was taken with, so a reload keeps
  // the start-up value).  The loader allows 1..128; never /0, which would
  // make all IPv6 clients one.
  void set_ipv6_prefix(int bits) { ipv6_prefix_ = std::clamp(bits, 1, 128); }

  // True when the connection may proceed; then release() must follow.
  enum class Result { kAcquired, kTotalFull, kClientFull };
  Result acquire(const net::IpAddress& ip, bool exempt_per_ip, int max_total, int max_per_ip);
  void release(const net::IpAddress& ip);
  int total() const { return total_.load(std::memory_order_relaxed); }

 private:
  int ipv6_prefix_ = kDefaultIpv6Prefix;
  std::atomic<int> total_{0};
  std::mutex mu_;
  std::map<net::IpAddress, int> per_ip_;  // by client key
};

// Holds one acquired slot for the life of a session.
class ConnectionSlot {
 public:
  ConnectionSlot(ConnectionLimiter& l, const net::IpAddress& ip) : l_(&l), ip_(ip) {}
  ~ConnectionSlot() {
    if (l_) l_->release(ip_);
  }
  ConnectionSlot(const ConnectionSlot&) = delete;
  ConnectionSlot& operator=(const ConnectionSlot&) = delete;

 private:
  ConnectionLimiter* l_;
  net::IpAddress ip_;
};

}  // namespace smtplb::server
