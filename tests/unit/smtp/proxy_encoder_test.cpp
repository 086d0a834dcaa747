// proxy_encoder_test.cpp: the PROXY headers smtplb sends to backends
// (`identity: proxy_v1|proxy_v2`, HAProxy proxy-protocol.txt 2.1, 2.2).
//
// Each header is checked byte for byte, then read back by our own strict
// parser (proxy_header.cpp), which must find exactly the addresses and
// ports that went in and nothing after them.
#include <arpa/inet.h>
#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <random>
#include <string>

#include "smtp/proxy_header.hpp"

namespace smtplb::smtp {
namespace {

using namespace std::string_literals;
using Status = ProxyParse::Status;

ProxyAddress v4(const char* text, std::uint16_t port) {
  ProxyAddress a;
  a.v4 = true;
  a.port = port;
  a.ip[10] = a.ip[11] = 0xff;
  EXPECT_EQ(inet_pton(AF_INET, text, a.ip.data() + 12), 1) << text;
  return a;
}

ProxyAddress v6(const char* text, std::uint16_t port) {
  ProxyAddress a;
  a.v4 = false;
  a.port = port;
  EXPECT_EQ(inet_pton(AF_INET6, text, a.ip.data()), 1) << text;
  return a;
}

const std::string kSig = "\r\n\r\n\0\r\nQUIT\n"s;

struct EncodeCase {
  const char* label;
  ProxyAddress source, destination;
  std::string v1;
  std::string v2;
};

const EncodeCase kEncodeCases[] = {
    {"TCP4", v4("192.0.2.1", 56324), v4("198.51.100.25", 25),
     "PROXY TCP4 192.0.2.1 198.51.100.25 56324 25\r\n",
     kSig + "\x21\x11\x00\x0c"s + "\xc0\x00\x02\x01"s + "\xc6\x33\x64\x19"s + "\xdc\x04\x00\x19"s},
    {"TCP4 extremes", v4("0.0.0.0", 0), v4("255.255.255.255", 65535),
     "PROXY TCP4 0.0.0.0 255.255.255.255 0 65535\r\n",
     kSig + "\x21\x11\x00\x0c"s + "\x00\x00\x00\x00"s + "\xff\xff\xff\xff"s + "\x00\x00\xff\xff"s},
    {"TCP6", v6("2001:db8::1", 40000), v6("2001:db8::25", 587),
     "PROXY TCP6 2001:db8::1 2001:db8::25 40000 587\r\n",
     kSig + "\x21\x21\x00\x24"s + "\x20\x01\x0d\xb8\0\0\0\0\0\0\0\0\0\0\0\x01"s +
         "\x20\x01\x0d\xb8\0\0\0\0\0\0\0\0\0\0\0\x25"s + "\x9c\x40\x02\x4b"s},
    {"mixed families go as TCP6", v4("192.0.2.1", 1), v6("::1", 25),
     "PROXY TCP6 ::ffff:192.0.2.1 ::1 1 25\r\n",
     kSig + "\x21\x21\x00\x24"s + "\0\0\0\0\0\0\0\0\0\0\xff\xff\xc0\x00\x02\x01"s +
         "\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\x01"s + "\x00\x01\x00\x19"s},
};

// The parser reads `header` (followed by SMTP) back to the same addresses;
// an IPv4 address sent as TCP6 comes back as its mapped IPv6 form.
void expect_round_trip(const std::string& header, const ProxyAddress& src, const ProxyAddress& dst,
                       int version, const std::string& label) {
  const std::string smtp = "EHLO client.example\r\n";
  ProxyParse r = parse_proxy_header(header + smtp);
  ASSERT_EQ(r.status, Status::kDone) << label << ": " << r.error;
  EXPECT_EQ(r.consumed, header.size()) << label;
  EXPECT_EQ(r.header.version, version) << label;
  EXPECT_FALSE(r.header.local) << label;
  const bool tcp4 = src.v4 && dst.v4;
  ProxyAddress want_src = src, want_dst = dst;
  want_src.v4 = want_dst.v4 = tcp4;
  EXPECT_EQ(r.header.source, want_src) << label;
  EXPECT_EQ(r.header.destination, want_dst) << label;
}

TEST(ProxyEncoder, EncodesV1) {
  for (const auto& c : kEncodeCases) {
    std::string got = encode_proxy_v1(c.source, c.destination);
    EXPECT_EQ(got, c.v1) << c.label;
    EXPECT_LE(got.size(), kMaxProxyV1) << c.label;
    expect_round_trip(got, c.source, c.destination, 1, c.label);
  }
}

TEST(ProxyEncoder, EncodesV2) {
  for (const auto& c : kEncodeCases) {
    std::string got = encode_proxy_v2(c.source, c.destination);
    EXPECT_EQ(got, c.v2) << c.label;
    expect_round_trip(got, c.source, c.destination, 2, c.label);
  }
}

TEST(ProxyEncoder, LongestV1IsWithinTheBound) {
  ProxyAddress a = v6("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", 65535);
  std::string got = encode_proxy_v1(a, a);
  EXPECT_EQ(got.size(), 104u);
  expect_round_trip(got, a, a, 1, "longest");
}

// Addresses drawn from a fixed seed: the same cases on every run, but many
// more shapes of IPv6 text (zero runs, embedded IPv4 forms) than a table.
TEST(ProxyEncoder, ManyAddressesRoundTrip) {
  std::mt19937 rng(20240611);
  auto draw = [&rng](bool is_v4) {
    ProxyAddress a;
    a.v4 = is_v4;
    a.port = static_cast<std::uint16_t>(rng());
    for (auto& b : a.ip) {
      // Mostly zeros, so inet_ntop's "::" and "::a.b.c.d" forms show up.
      b = rng() % 3 == 0 ? static_cast<std::uint8_t>(rng()) : 0;
    }
    if (is_v4) {
      std::memset(a.ip.data(), 0, 10);
      a.ip[10] = a.ip[11] = 0xff;
    }
    return a;
  };
  for (int i = 0; i < 2000; ++i) {
    ProxyAddress src = draw(i % 3 == 0), dst = draw(i % 4 == 0);
    const std::string label = "case " + std::to_string(i);
    std::string line = encode_proxy_v1(src, dst);
    ASSERT_LE(line.size(), kMaxProxyV1) << label;
    expect_round_trip(line, src, dst, 1, label + " v1 " + line);
    expect_round_trip(encode_proxy_v2(src, dst), src, dst, 2, label + " v2");
    if (::testing::Test::HasFailure()) break;
  }
}

}  // namespace
}  // namespace smtplb::smtp
