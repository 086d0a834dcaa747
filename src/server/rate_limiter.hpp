// rate_limiter.hpp: per-client-address token buckets, shared by all cores,
// for limits.max_connection_rate_per_ip (421 4.7.0 at connect) and
// limits.max_message_rate_per_ip (451 4.7.1 at MAIL).
//
// Trusted clients never reach it (Postfix exempts mynetworks the same
// way), so the short lock below is off the path of the high-volume senders
// smtplb mostly serves; an untrusted client pays one uncontended lock per
// connection and per MAIL.  The table is bounded: past kMaxEntries, buckets
// that have refilled completely (idle clients) are dropped first.
//
// A client is keyed as the ConnectionLimiter keys it (net::client_key):
// IPv4 by address, IPv6 by its first limits.ipv6_prefix bits.
#pragma once

#include <algorithm>
#include <chrono>
#include <mutex>
#include <unordered_map>

#include "config/units.hpp"
#include "net/clock.hpp"
#include "net/ip_address.hpp"

namespace smtplb::server {

class RateLimiter {
 public:
  using Clock = smtplb::Clock;
  static constexpr std::size_t kMaxEntries = 100000;

  // "600/m": refills at 10 a second and allows 600 at once.
  explicit RateLimiter(config::Rate rate, int ipv6_prefix = 64)
      : rate_(rate.per_second), burst_(std::max(1.0, rate.burst)), ipv6_prefix_(ipv6_prefix) {}

  int ipv6_prefix() const { return ipv6_prefix_; }

  // Takes one token for `ip`; false when its bucket is empty.
  bool allow(const net::IpAddress& ip, Clock::time_point now);

 private:
  struct Bucket {
    double tokens;
    Clock::time_point last;
  };
  void prune(Clock::time_point now);

  double rate_;
  double burst_;
  int ipv6_prefix_;
  std::mutex mu_;
  std::unordered_map<net::IpAddress, Bucket> buckets_;  // by client key
};

}  // namespace smtplb::server
