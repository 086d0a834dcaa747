#include "route/router.hpp"

#include <gtest/gtest.h>

namespace smtplb::route {
namespace {

TEST(DomainMatch, ExactAndSubdomainEntries) {
  struct Case {
    const char* domain;
    const char* entry;
    bool match;
  } cases[] = {
      {"example.com", "example.com", true},
      {"sub.example.com", "example.com", false},
      {"sub.example.com", ".example.com", true},
      {"a.b.example.com", ".example.com", true},
      {"example.com", ".example.com", false},  // the dot form is subdomains only
      {"evilexample.com", ".example.com", false},
      {"evilexample.com", "example.com", false},
      {"example.com.", "example.com", false},
      {"notexample.com", "example.com", false},
      {"", "example.com", false},
  };
  for (const auto& c : cases)
    EXPECT_EQ(domain_matches(c.domain, c.entry), c.match) << c.domain << " vs " << c.entry;
}

config::Config two_pools() {
  config::Config c;
  c.listeners = {{"mx", {}, config::Role::kInbound}, {"sub", {}, config::Role::kSubmission}};
  config::Route r1;
  r1.pool = "outbound";
  r1.listeners = {"sub"};
  config::Route r2;
  r2.pool = "inbound";
  r2.recipient_domains = {"example.com", ".example.com"};
  config::Route r3;
  r3.pool = "trusted";
  r3.client_networks = {*config::parse_network("10.0.0.0/8")};
  config::Route r4;
  r4.pool = "fallback";
  c.routes = {r1, r2, r3, r4};
  return c;
}

TEST(Router, FirstMatchWins) {
  auto cfg = two_pools();
  Router r(cfg);
  auto ip = *net::IpAddress::parse("192.0.2.1");
  EXPECT_EQ(r.match({"sub", "example.com", "", ip})->pool, "outbound");
  EXPECT_EQ(r.match({"mx", "example.com", "", ip})->pool, "inbound");
  EXPECT_EQ(r.match({"mx", "a.example.com", "", ip})->pool, "inbound");
  EXPECT_EQ(r.match({"mx", "other.test", "", ip})->pool, "fallback");
  EXPECT_EQ(r.match({"mx", "other.test", "", *net::IpAddress::parse("10.1.2.3")})->pool, "trusted");
}

TEST(Router, NoRouteWhenNothingMatches) {
  config::Config c;
  config::Route only;
  only.pool = "p";
  only.sender_domains = {"example.org"};
  c.routes = {only};
  Router r(c);
  EXPECT_EQ(r.match({"mx", "x.test", "example.net", {}}), nullptr);
  EXPECT_NE(r.match({"mx", "x.test", "example.org", {}}), nullptr);
}

}  // namespace
}  // namespace smtplb::route
