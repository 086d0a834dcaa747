// ip_address_test.cpp: net::IpAddress, the one form of a client's address
// (issue 13).  What matters: an IPv4 client is the same value however it
// arrives (address_v4, v4-mapped on a dual-stack socket, parsed text); the
// text is what logs, the Received field, XCLIENT and PROXY headers print;
// parse takes address literals only; and the per-client key cuts IPv6 to
// its prefix and leaves IPv4 whole.
#include "net/ip_address.hpp"

#include <gtest/gtest.h>

#include <optional>
#include <set>
#include <string>
#include <unordered_map>

namespace smtplb::net {
namespace {

namespace ip = boost::asio::ip;
using Bytes = IpAddress::Bytes;

IpAddress v4(std::uint8_t a, std::uint8_t b, std::uint8_t c, std::uint8_t d) {
  return IpAddress(Bytes{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, a, b, c, d});
}
// 2001:db8:0:<net>:<iid>::<host>
IpAddress v6(std::uint8_t net, std::uint8_t host, std::uint8_t iid = 0) {
  return IpAddress(Bytes{0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, net, iid, 0, 0, 0, 0, 0, 0, host});
}
IpAddress must_parse(const char* s) {
  auto a = IpAddress::parse(s);
  EXPECT_TRUE(a) << s;
  return a.value_or(IpAddress{});
}

TEST(IpAddress, DefaultIsTheUnspecifiedIpv6Address) {
  EXPECT_EQ(IpAddress{}.bytes(), Bytes{});
  EXPECT_EQ(IpAddress{}.text(), "::");
  EXPECT_FALSE(IpAddress{}.is_v4());
}

struct FromAsioCase {
  const char* label;
  ip::address from;
  IpAddress want;
  bool v4;
  const char* text;
};

TEST(IpAddress, FromAsioAddressesAndEndpoints) {
  const FromAsioCase cases[] = {
      {"IPv4", ip::make_address("192.0.2.7"), v4(192, 0, 2, 7), true, "192.0.2.7"},
      {"v4-mapped IPv6 (dual-stack socket)", ip::make_address("::ffff:192.0.2.7"), v4(192, 0, 2, 7),
       true, "192.0.2.7"},
      {"IPv6", ip::make_address("2001:db8:0:1::7"), v6(1, 7), false, "2001:db8:0:1::7"},
      {"IPv6 loopback", ip::make_address("::1"),
       IpAddress(Bytes{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1}), false, "::1"},
  };
  for (const auto& c : cases) {
    EXPECT_EQ(IpAddress(c.from), c.want) << c.label;
    const IpAddress from_endpoint(ip::tcp::endpoint(c.from, 25));
    EXPECT_EQ(from_endpoint, c.want) << c.label;
    EXPECT_EQ(from_endpoint.is_v4(), c.v4) << c.label;
    EXPECT_EQ(from_endpoint.text(), c.text) << c.label;
    // Back to Asio in the family it is: a mapped peer comes back as IPv4.
    EXPECT_EQ(from_endpoint.to_asio().is_v4(), c.v4) << c.label;
    EXPECT_EQ(from_endpoint.to_asio().to_string(), c.text) << c.label;
  }
}

struct TextCase {
  const char* in;
  const char* text;
};

// RFC 5952 4: lower case, no leading zeros, the longest run of zero
// fields (the first of equal ones, never a lone one) as "::"; IPv4,
// mapped or not, as a dotted quad.
const TextCase kTextCases[] = {
    {"192.0.2.1", "192.0.2.1"},
    {"0.0.0.0", "0.0.0.0"},
    {"255.255.255.255", "255.255.255.255"},
    {"::ffff:10.0.0.1", "10.0.0.1"},
    {"::ffff:a00:1", "10.0.0.1"},
    {"2001:0db8:0000:0000:0000:0000:0000:0001", "2001:db8::1"},
    {"2001:DB8::A", "2001:db8::a"},
    {"2001:db8:0:1:1:1:1:1", "2001:db8:0:1:1:1:1:1"},
    {"2001:db8:0:0:1:0:0:1", "2001:db8::1:0:0:1"},
    {"2001:0:0:1:0:0:0:1", "2001:0:0:1::1"},
    {"fe80::1", "fe80::1"},
    {"::", "::"},
    {"::1", "::1"},
    {"1::", "1::"},
};

TEST(IpAddress, TextIsDottedQuadOrRfc5952) {
  for (const auto& c : kTextCases) EXPECT_EQ(must_parse(c.in).text(), c.text) << c.in;
}

TEST(IpAddress, TextParsesBackToTheSameAddress) {
  for (const auto& c : kTextCases) {
    const IpAddress a = must_parse(c.in);
    EXPECT_EQ(IpAddress::parse(a.text()), a) << c.in;
  }
}

struct BadCase {
  const char* why;
  std::string in;
};

TEST(IpAddress, ParsesAddressLiteralsOnly) {
  using namespace std::string_literals;
  const BadCase cases[] = {
      {"empty", ""},
      {"a host name", "localhost"},
      {"a domain", "mx.example.com"},
      {"three parts", "1.2.3"},
      {"five parts", "1.2.3.4.5"},
      {"an octet over 255", "1.2.3.256"},
      {"inet_aton's shorthand", "127.1"},
      {"inet_aton's hex", "0x7f.0.0.1"},
      {"a leading zero (octal to some)", "01.2.3.4"},
      {"a leading space", " 1.2.3.4"},
      {"a trailing space", "1.2.3.4 "},
      {"a port", "1.2.3.4:25"},
      {"brackets", "[::1]"},
      {"a scope name: the type has none", "::1%lo"},
      {"a scope number", "fe80::1%1"},
      {"a prefix", "2001:db8::/32"},
      {"three colons", "2001:db8:::1"},
      {"nine fields", "1:2:3:4:5:6:7:8:9"},
      {"not hex", "gggg::1"},
      {"a trailing NUL", "1.2.3.4\0"s},
      {"text after a NUL", "1.2.3.4\0junk"s},
      {"an IPv6 address and a NUL", "::1\0"s},
  };
  for (const auto& c : cases) EXPECT_FALSE(IpAddress::parse(c.in)) << c.why;
}

struct ClassCase {
  const char* in;
  bool v4;
  bool unspecified;
  bool loopback;
};

TEST(IpAddress, FamilyLoopbackAndUnspecified) {
  const ClassCase cases[] = {
      {"127.0.0.1", true, false, true},
      {"127.255.0.9", true, false, true},  // all of 127.0.0.0/8
      {"::ffff:127.0.0.1", true, false, true},
      {"128.0.0.1", true, false, false},
      {"0.0.0.0", true, true, false},
      {"::", false, true, false},
      {"::1", false, false, true},
      {"::2", false, false, false},
      {"::127.0.0.1", false, false, false},  // IPv4-compatible is not IPv4
      {"2001:db8::1", false, false, false},
      {"::ffff:0:1", true, false, false},  // 0.0.0.1
  };
  for (const auto& c : cases) {
    const IpAddress a = must_parse(c.in);
    EXPECT_EQ(a.is_v4(), c.v4) << c.in;
    EXPECT_EQ(a.is_unspecified(), c.unspecified) << c.in;
    EXPECT_EQ(a.is_loopback(), c.loopback) << c.in;
    // The same answers as Asio's, for the address in its own family.
    EXPECT_EQ(a.to_asio().is_unspecified(), c.unspecified) << c.in;
    EXPECT_EQ(a.to_asio().is_loopback(), c.loopback) << c.in;
  }
}

TEST(IpAddress, OrdersByteWiseAndHashesAsAKey) {
  // Every IPv4 address sorts after the IPv6 ones below ::ffff:0:0.
  EXPECT_LT(must_parse("::1"), must_parse("0.0.0.0"));
  EXPECT_LT(must_parse("10.0.0.1"), must_parse("10.0.0.2"));
  EXPECT_LT(must_parse("10.0.0.255"), must_parse("10.0.1.0"));
  EXPECT_LT(must_parse("192.0.2.1"), must_parse("2001:db8::1"));
  EXPECT_EQ(must_parse("::ffff:192.0.2.1"), must_parse("192.0.2.1"));
  EXPECT_NE(must_parse("::192.0.2.1"), must_parse("192.0.2.1"));

  const std::hash<IpAddress> hash;
  EXPECT_EQ(hash(must_parse("192.0.2.1")), hash(IpAddress(ip::make_address("::ffff:192.0.2.1"))));
  EXPECT_NE(hash(must_parse("192.0.2.1")), hash(must_parse("192.0.2.2")));
  std::unordered_map<IpAddress, int> counts;
  ++counts[must_parse("192.0.2.1")];
  ++counts[IpAddress(ip::make_address("192.0.2.1"))];
  ++counts[must_parse("2001:db8::1")];
  EXPECT_EQ(counts.size(), 2u);
  EXPECT_EQ(counts[v4(192, 0, 2, 1)], 2);
  std::set<IpAddress> ordered{v6(2, 1), v4(10, 0, 0, 1), v6(1, 1), v4(10, 0, 0, 1)};
  EXPECT_EQ(ordered.size(), 3u);
  EXPECT_EQ(*ordered.begin(), v4(10, 0, 0, 1));
}

struct MaskCase {
  const char* label;
  IpAddress in;
  int bits;
  IpAddress want;
};

TEST(IpAddress, MaskedKeepsTheFirstBits) {
  const MaskCase cases[] = {
      {"/64 drops the interface id", v6(1, 7, 0x55), 64, v6(1, 0)},
      {"/128 is the address", v6(1, 7, 0x55), 128, v6(1, 7, 0x55)},
      {"/68 cuts inside a byte", v6(1, 7, 0x55), 68, v6(1, 0, 0x50)},
      {"/60", v6(0xff, 7), 60, v6(0xf0, 0)},
      {"/1", IpAddress(Bytes{0xff, 0xff}), 1, IpAddress(Bytes{0x80})},
      {"/8 on a byte boundary", IpAddress(Bytes{0xff}), 8, IpAddress(Bytes{0xff})},
      {"/0 is ::", v6(1, 7), 0, IpAddress{}},
      {"below 0 is /0", v6(1, 7), -5, IpAddress{}},
      {"above 128 is /128", v6(1, 7), 200, v6(1, 7)},
      {"IPv4 /24 is bit 120", v4(192, 0, 2, 77), 120, v4(192, 0, 2, 0)},
  };
  for (const auto& c : cases) EXPECT_EQ(c.in.masked(c.bits), c.want) << c.label;
}

TEST(IpAddress, ClientKeyCutsIpv6ToThePrefixAndKeepsIpv4Whole) {
  EXPECT_EQ(client_key(v6(1, 7, 0x55), 64), v6(1, 0));
  EXPECT_EQ(client_key(v6(1, 7, 0x55), 128), v6(1, 7, 0x55));
  EXPECT_EQ(client_key(v6(1, 7, 0x55), 48), v6(0, 0));
  // IPv4-mapped: whatever the prefix, by the whole IPv4 address.
  for (int bits : {0, 1, 64, 96, 128})
    EXPECT_EQ(client_key(v4(192, 0, 2, 77), bits), v4(192, 0, 2, 77)) << bits;
}

}  // namespace
}  // namespace smtplb::net
