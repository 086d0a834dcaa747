#include "config/units.hpp"

#include <gtest/gtest.h>

namespace smtplb::config {
namespace {

TEST(Units, DurationsInEveryUnit) {
  struct Case {
    const char* text;
    long long ms;
  } cases[] = {{"500ms", 500}, {"5s", 5000}, {"2m", 120000},  {"1h", 3600000},
               {"1.5s", 1500}, {"0s", 0},    {"1d", 86400000}};
  for (const auto& c : cases) {
    auto d = parse_duration(c.text);
    ASSERT_TRUE(d) << c.text;
    EXPECT_EQ(d->count(), c.ms) << c.text;
  }
}

TEST(Units, BadDurationsAreRefused) {
  for (const char* t : {"", "5", "s", "5 sec", "-1s", "5x", "1e3s", "ms"})
    EXPECT_FALSE(parse_duration(t)) << t;
}

TEST(Units, SizesUseBinaryMultiples) {
  EXPECT_EQ(*parse_size("1KB"), 1024u);
  EXPECT_EQ(*parse_size("10MB"), 10u * 1024 * 1024);
  EXPECT_EQ(*parse_size("1GB"), 1024ull * 1024 * 1024);
  EXPECT_EQ(*parse_size("512"), 512u);
  EXPECT_FALSE(parse_size("10XB"));
  EXPECT_FALSE(parse_size("MB"));
}

TEST(Units, RatesKeepTheirBurst) {
  auto r = parse_rate("600/m");
  ASSERT_TRUE(r);
  EXPECT_DOUBLE_EQ(r->per_second, 10.0);
  EXPECT_DOUBLE_EQ(r->burst, 600.0);
  EXPECT_DOUBLE_EQ(parse_rate("100/s")->per_second, 100.0);
  EXPECT_FALSE(parse_rate("100"));
  EXPECT_FALSE(parse_rate("100/d"));
}

TEST(Units, Endpoints) {
  auto e = parse_endpoint("10.0.0.1:25");
  ASSERT_TRUE(e);
  EXPECT_EQ(e->host, "10.0.0.1");
  EXPECT_EQ(e->port, 25);
  auto v6 = parse_endpoint("[::1]:2525");
  ASSERT_TRUE(v6);
  EXPECT_EQ(v6->host, "::1");
  EXPECT_EQ(v6->str(), "[::1]:2525");
  EXPECT_TRUE(parse_endpoint("mx1.example.net:25"));
  for (const char* bad : {"10.0.0.1", "10.0.0.1:", ":25", "10.0.0.1:65536", "::1:25", "[::1]25",
                          "host name:25", "h:2x5"})
    EXPECT_FALSE(parse_endpoint(bad)) << bad;
}

TEST(Units, NetworksMatchWholePrefixes) {
  auto n = parse_network("10.0.0.0/8");
  ASSERT_TRUE(n);
  EXPECT_TRUE(n->contains(*net::IpAddress::parse("10.200.3.4")));
  EXPECT_FALSE(n->contains(*net::IpAddress::parse("11.0.0.1")));
  EXPECT_FALSE(n->contains(*net::IpAddress::parse("::1")));
  auto host = parse_network("127.0.0.1");
  ASSERT_TRUE(host);
  EXPECT_TRUE(host->contains(*net::IpAddress::parse("127.0.0.1")));
  EXPECT_FALSE(host->contains(*net::IpAddress::parse("127.0.0.2")));
  auto v6 = parse_network("2001:db8::/32");
  ASSERT_TRUE(v6);
  EXPECT_TRUE(v6->contains(*net::IpAddress::parse("2001:db8:1::5")));
  EXPECT_FALSE(v6->contains(*net::IpAddress::parse("2001:db9::5")));
  auto all = parse_network("0.0.0.0/0");
  ASSERT_TRUE(all);
  EXPECT_TRUE(all->contains(*net::IpAddress::parse("192.0.2.1")));
  for (const char* bad : {"10.0.0.0/33", "10.0.0/8", "10.0.0.0/", "x/8", "::/129"})
    EXPECT_FALSE(parse_network(bad)) << bad;
}

}  // namespace
}  // namespace smtplb::config
