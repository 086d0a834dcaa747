#include "server/policy.hpp"

#include <gtest/gtest.h>

#include "smtp/address.hpp"

namespace smtplb::server {
namespace {

config::Config cfg() {
  config::Config c;
  c.local_domains = {"example.com", ".example.org"};
  c.trusted_networks = {*config::parse_network("10.0.0.0/8")};
  return c;
}

smtp::Mailbox rcpt(const char* path) {
  auto r = smtp::parse_path(path, smtp::PathKind::kForwardPath);
  EXPECT_TRUE(r.path) << path << ": " << r.error;
  return r.path ? r.path->mailbox : smtp::Mailbox{};
}

TEST(Policy, InboundAcceptsLocalFromAnyoneAndRelaysOnlyForTrusted) {
  auto c = cfg();
  struct Case {
    const char* path;
    bool trusted;
    Verdict want;
  } cases[] = {
      {"<u@example.com>", false, Verdict::kAllowed},
      {"<u@EXAMPLE.COM>", false, Verdict::kAllowed},
      {"<u@sub.example.org>", false, Verdict::kAllowed},
      {"<u@example.org>", false, Verdict::kRelayDenied},  // ".example.org": subdomains only
      {"<u@other.test>", false, Verdict::kRelayDenied},
      {"<u@other.test>", true, Verdict::kAllowed},
      {"<u@notexample.com>", false, Verdict::kRelayDenied},
      {"<u@example.com.>", false, Verdict::kRelayDenied},
      {"<u@[192.0.2.1]>", false, Verdict::kRelayDenied},
      {"<Postmaster>", false, Verdict::kAllowed},
      // SECURITY.md 4: route tricks are mail for the local domain, byte-exact.
      {"<u%other.test@example.com>", false, Verdict::kAllowed},
      {"<\"u@other.test\"@example.com>", false, Verdict::kAllowed},
      {"<other.test!u@example.com>", false, Verdict::kAllowed},
      {"<@example.com:u@other.test>", false, Verdict::kRelayDenied},
  };
  for (const auto& k : cases)
    EXPECT_EQ(check_recipient(c, config::Role::kInbound, k.trusted, rcpt(k.path)), k.want)
        << k.path;
}

TEST(Policy, TrustedNetworksUseTheClientAddress) {
  auto c = cfg();
  EXPECT_TRUE(is_trusted(c, *net::IpAddress::parse("10.9.8.7")));
  EXPECT_FALSE(is_trusted(c, *net::IpAddress::parse("127.0.0.1")));
}

TEST(Policy, PostmasterRoutesAsTheFirstLocalDomain) {
  auto c = cfg();
  EXPECT_EQ(routing_domain(c, rcpt("<postmaster>")), "example.com");
  EXPECT_EQ(routing_domain(c, rcpt("<u@Example.COM>")), "example.com");
}

}  // namespace
}  // namespace smtplb::server
