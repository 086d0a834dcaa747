// Issue 14: per-client limits key an IPv6 client by its prefix
// (limits.ipv6_prefix, 64 by default) and an IPv4 client by its address,
// so one /64 cannot take every connection slot or rate budget.
#include <gtest/gtest.h>

#include "server/connection_limiter.hpp"
#include "server/rate_limiter.hpp"

namespace smtplb::server {
namespace {

using Ip = ConnectionLimiter::Ip;

Ip v4(std::uint8_t a, std::uint8_t b, std::uint8_t c, std::uint8_t d) {
  return {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, a, b, c, d};
}
// 2001:db8:0:<net>:<iid>::<host>
Ip v6(std::uint8_t net, std::uint8_t host, std::uint8_t iid = 0) {
  return {0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, net, iid, 0, 0, 0, 0, 0, 0, host};
}

TEST(ClientKey, MasksIpv6ToThePrefixAndKeepsIpv4Whole) {
  EXPECT_EQ(ConnectionLimiter::client_key(v6(1, 7, 0x55), 64), v6(1, 0));
  EXPECT_EQ(ConnectionLimiter::client_key(v6(1, 7, 0x55), 128), v6(1, 7, 0x55));
  EXPECT_EQ(ConnectionLimiter::client_key(v6(1, 7, 0x55), 68), v6(1, 0, 0x50));
  EXPECT_EQ(ConnectionLimiter::client_key(v6(0xff, 7), 60), v6(0xf0, 0));
  Ip one{0xff};
  EXPECT_EQ(ConnectionLimiter::client_key(Ip{0xff, 0xff}, 1), (Ip{0x80}));
  EXPECT_EQ(ConnectionLimiter::client_key(one, 8), one);
  // IPv4-mapped: whatever the prefix, by the whole IPv4 address.
  for (int bits : {1, 64, 96, 128})
    EXPECT_EQ(ConnectionLimiter::client_key(v4(192, 0, 2, 77), bits), v4(192, 0, 2, 77)) << bits;
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
