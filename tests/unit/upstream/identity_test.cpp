// identity_test.cpp: the client's identity in the forms backends take
// (upstream/identity.hpp): XCLIENT attributes and the PROXY header a new
// backend connection starts with, for a client and for a health check.
#include "upstream/identity.hpp"

#include <gtest/gtest.h>

#include <string>

#include "upstream/failure.hpp"

namespace smtplb::upstream {
namespace {

using namespace std::string_literals;

net::IpAddress ip(const char* text) {
  return net::IpAddress(asio::ip::make_address(text));
}

ClientIdentity client_192() {
  ClientIdentity c;
  c.ip = ip("192.0.2.7");
  c.port = 40000;
  c.local_ip = ip("198.51.100.25");
  c.local_port = 25;
  c.helo = "client.example";
  c.proto = "ESMTP";
  return c;
}

const tcp::endpoint kLocal(asio::ip::make_address("127.0.0.1"), 51000);
const tcp::endpoint kRemote(asio::ip::make_address("127.0.0.9"), 2525);
const std::string kSig = "\r\n\r\n\0\r\nQUIT\n"s;

TEST(Identity, XclientAddrIsDottedForIpv4AndEmptyOnlyWhenUnknown) {
  struct Case {
    const char* label;
    net::IpAddress ip;
    const char* addr;
  };
  const Case cases[] = {
      {"IPv4", ip("192.0.2.7"), "192.0.2.7"},
      {"IPv4 from a dual-stack socket", ip("::ffff:192.0.2.7"), "192.0.2.7"},
      {"IPv6", ip("2001:db8::1"), "2001:db8::1"},
      {"0.0.0.0 as a PROXY header announced it", ip("0.0.0.0"), "0.0.0.0"},
      {"unknown", net::IpAddress{}, ""},
  };
  for (const auto& c : cases) {
    ClientIdentity id;
    id.ip = c.ip;
    EXPECT_EQ(xclient_attributes(id).addr, c.addr) << c.label;
  }
}

TEST(Identity, XclientAttributesCarryWhatIsKnownAndNoName) {
  auto c = client_192();
  c.login = "alice";
  auto a = xclient_attributes(c);
  EXPECT_EQ(a.addr, "192.0.2.7");
  EXPECT_EQ(a.port, std::optional<std::uint16_t>(40000));
  EXPECT_EQ(a.name, "");  // no reverse DNS: [UNAVAILABLE]
  EXPECT_EQ(a.helo, "client.example");
  EXPECT_EQ(a.proto, "ESMTP");
  EXPECT_EQ(a.login, "alice");
  auto none = xclient_attributes(ClientIdentity{});
  EXPECT_EQ(none.addr, "");
  EXPECT_FALSE(none.port);
}

TEST(Identity, XclientLineForAClientThatDidNotAuthenticateSaysLoginUnavailable) {
  smtp::XclientSupport all{true, true, true, true, true, true};
  auto lines = smtp::xclient_commands(xclient_attributes(client_192()), all);
  ASSERT_EQ(lines.size(), 1u);
  EXPECT_EQ(lines[0],
            "XCLIENT ADDR=192.0.2.7 PORT=40000 NAME=[UNAVAILABLE] HELO=client.example "
            "PROTO=ESMTP LOGIN=[UNAVAILABLE]\r\n");
}

TEST(Identity, NoHeaderForNoneAndXclient) {
  auto c = client_192();
  EXPECT_EQ(proxy_preamble(config::Identity::kNone, &c, kLocal, kRemote), "");
  EXPECT_EQ(proxy_preamble(config::Identity::kXclient, &c, kLocal, kRemote), "");
}

TEST(Identity, ProxyV1NamesTheClientAndWhereItConnected) {
  auto c = client_192();
  EXPECT_EQ(proxy_preamble(config::Identity::kProxyV1, &c, kLocal, kRemote),
            "PROXY TCP4 192.0.2.7 198.51.100.25 40000 25\r\n");
}

TEST(Identity, ProxyV2NamesTheClientAndWhereItConnected) {
  auto c = client_192();
  EXPECT_EQ(
      proxy_preamble(config::Identity::kProxyV2, &c, kLocal, kRemote),
      kSig + "\x21\x11\x00\x0c"s + "\xc0\x00\x02\x07"s + "\xc6\x33\x64\x19"s + "\x9c\x40\x00\x19"s);
}

TEST(Identity, ProxyV1ForAnIpv6Client) {
  ClientIdentity c;
  c.ip = ip("2001:db8::7");
  c.port = 1234;
  c.local_ip = ip("2001:db8::25");
  c.local_port = 25;
  EXPECT_EQ(proxy_preamble(config::Identity::kProxyV1, &c, kLocal, kRemote),
            "PROXY TCP6 2001:db8::7 2001:db8::25 1234 25\r\n");
}

TEST(Identity, UnknownDestinationIsThisConnectionsAddressNeverTheClientsLoss) {
  auto c = client_192();
  c.local_ip = {};
  c.local_port = 0;
  EXPECT_EQ(proxy_preamble(config::Identity::kProxyV1, &c, kLocal, kRemote),
            "PROXY TCP4 192.0.2.7 127.0.0.1 40000 51000\r\n");
}

TEST(Identity, HealthCheckV2SaysLocal) {
  const std::string h = proxy_preamble(config::Identity::kProxyV2, nullptr, kLocal, kRemote);
  EXPECT_EQ(h, kSig + "\x20\x00\x00\x00"s);
  auto parsed = smtp::parse_proxy_header(h);
  ASSERT_EQ(parsed.status, smtp::ProxyParse::Status::kDone);
  EXPECT_TRUE(parsed.header.local);
  EXPECT_EQ(parsed.consumed, h.size());
}

TEST(Identity, HealthCheckV1NamesTheConnectionsOwnAddresses) {
  // Postfix 3.7 refuses "PROXY UNKNOWN"; our own addresses mean the same.
  EXPECT_EQ(proxy_preamble(config::Identity::kProxyV1, nullptr, kLocal, kRemote),
            "PROXY TCP4 127.0.0.1 127.0.0.9 51000 2525\r\n");
}

TEST(Identity, MappedEndpointsOfADualStackSocketGoOutAsTcp4) {
  const tcp::endpoint local(asio::ip::make_address("::ffff:127.0.0.1"), 51000);
  const tcp::endpoint remote(asio::ip::make_address("::ffff:127.0.0.9"), 2525);
  EXPECT_EQ(proxy_preamble(config::Identity::kProxyV1, nullptr, local, remote),
            "PROXY TCP4 127.0.0.1 127.0.0.9 51000 2525\r\n");
}

TEST(Identity, OnlyProxyConnectionsCarryOneClient) {
  EXPECT_FALSE(one_client_per_connection(config::Identity::kNone));
  EXPECT_FALSE(one_client_per_connection(config::Identity::kXclient));
  EXPECT_TRUE(one_client_per_connection(config::Identity::kProxyV1));
  EXPECT_TRUE(one_client_per_connection(config::Identity::kProxyV2));
}

TEST(Failure, TlsAndXclientFailuresCountAgainstTheBackend) {
  // Replayed like every failure before MAIL (RelayTransaction::fail_backend).
  for (Failure f : {Failure::kTls, Failure::kNoXclient, Failure::kXclientRefused}) {
    EXPECT_TRUE(counts_against_backend(f)) << to_string(f);
  }
  EXPECT_STREQ(to_string(Failure::kTls), "tls_failed");
  EXPECT_STREQ(to_string(Failure::kNoXclient), "no_xclient");
  EXPECT_STREQ(to_string(Failure::kXclientRefused), "xclient_refused");
}

}  // namespace
}  // namespace smtplb::upstream
