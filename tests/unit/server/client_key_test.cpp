// Issue 14: per-client limits key an IPv6 client by its prefix
// (limits.ipv6_prefix, 64 by default) and an IPv4 client by its address,
// so one /64 cannot take every connection slot or rate budget.  The key
// itself is net::client_key (tests/unit/net/ip_address_test.cpp).
#include <gtest/gtest.h>

#include "server/connection_limiter.hpp"
#include "server/rate_limiter.hpp"

namespace smtplb::server {
namespace {

using Ip = net::IpAddress;

Ip v4(std::uint8_t a, std::uint8_t b, std::uint8_t c, std::uint8_t d) {
  return Ip(Ip::Bytes{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, a, b, c, d});
}
// 2001:db8:0:<net>:<iid>::<host>
Ip v6(std::uint8_t net, std::uint8_t host, std::uint8_t iid = 0) {
  return Ip(Ip::Bytes{0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, net, iid, 0, 0, 0, 0, 0, 0, host});
}

TEST(ConnectionLimiterKeying, OneSlash64SharesOnePerClientBudget) {
  ConnectionLimiter l;  // ipv6_prefix 64 by default
  EXPECT_EQ(l.acquire(v6(1, 1), false, 100, 2), ConnectionLimiter::Result::kAcquired);
  EXPECT_EQ(l.acquire(v6(1, 2, 9), false, 100, 2), ConnectionLimiter::Result::kAcquired);
  EXPECT_EQ(l.acquire(v6(1, 3, 0xab), false, 100, 2), ConnectionLimiter::Result::kClientFull)
      << "a third host of the same /64";
  EXPECT_EQ(l.acquire(v6(2, 1), false, 100, 2), ConnectionLimiter::Result::kAcquired)
      << "another /64 has its own budget";
  // Released under the key it was taken with: the /64 has room again.
  l.release(v6(1, 2, 9));
  EXPECT_EQ(l.acquire(v6(1, 4), false, 100, 2), ConnectionLimiter::Result::kAcquired);
  l.release(v6(1, 1));
  l.release(v6(1, 4));
  l.release(v6(2, 1));
  EXPECT_EQ(l.total(), 0);
}

TEST(ConnectionLimiterKeying, Ipv4NeighboursDoNotShare) {
  ConnectionLimiter l;
  EXPECT_EQ(l.acquire(v4(192, 0, 2, 1), false, 100, 1), ConnectionLimiter::Result::kAcquired);
  EXPECT_EQ(l.acquire(v4(192, 0, 2, 2), false, 100, 1), ConnectionLimiter::Result::kAcquired);
  EXPECT_EQ(l.acquire(v4(192, 0, 2, 1), false, 100, 1), ConnectionLimiter::Result::kClientFull);
}

TEST(ConnectionLimiterKeying, PrefixIsConfigurable) {
  ConnectionLimiter per_address;
  per_address.set_ipv6_prefix(128);
  EXPECT_EQ(per_address.acquire(v6(1, 1), false, 100, 1), ConnectionLimiter::Result::kAcquired);
  EXPECT_EQ(per_address.acquire(v6(1, 2), false, 100, 1), ConnectionLimiter::Result::kAcquired);

  ConnectionLimiter per_48;
  per_48.set_ipv6_prefix(48);
  EXPECT_EQ(per_48.acquire(v6(1, 1), false, 100, 1), ConnectionLimiter::Result::kAcquired);
  EXPECT_EQ(per_48.acquire(v6(2, 1), false, 100, 1), ConnectionLimiter::Result::kClientFull)
      << "2001:db8:0:1:: and 2001:db8:0:2:: share a /48";
}

TEST(RateLimiterKeying, OneSlash64SharesOneBucket) {
  const auto now = RateLimiter::Clock::now();
  RateLimiter r(config::Rate{1.0 / 60, 2});  // 2 at once, then one a minute
  EXPECT_TRUE(r.allow(v6(1, 1), now));
  EXPECT_TRUE(r.allow(v6(1, 2, 0x33), now));
  EXPECT_FALSE(r.allow(v6(1, 3), now)) << "the /64's bucket is empty";
  EXPECT_TRUE(r.allow(v6(2, 1), now)) << "another /64 has its own";
  EXPECT_TRUE(r.allow(v4(192, 0, 2, 1), now));
  EXPECT_TRUE(r.allow(v4(192, 0, 2, 1), now));
  EXPECT_FALSE(r.allow(v4(192, 0, 2, 1), now));
  EXPECT_TRUE(r.allow(v4(192, 0, 2, 2), now)) << "IPv4 by address";

  RateLimiter per_address(config::Rate{1.0 / 60, 1}, 128);
  EXPECT_TRUE(per_address.allow(v6(1, 1), now));
  EXPECT_TRUE(per_address.allow(v6(1, 2), now));
  EXPECT_FALSE(per_address.allow(v6(1, 1), now));
}

}  // namespace
}  // namespace smtplb::server
