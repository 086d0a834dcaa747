#include <gtest/gtest.h>

#include "config/config.hpp"

namespace smtplb::config {
namespace {

const char* kValid = R"(hostname: lb.example.com
listeners:
  - name: mx
    listen: 127.0.0.1:2525
    role: inbound
  - name: sub
    listen: "[::1]:2587"
    role: submission
local_domains: [Example.COM, .example.org, "b\u00fccher.example"]
trusted_networks: [127.0.0.0/8, "::1"]
pools:
  - name: main
    algorithm: weighted_round_robin
    retries: 3
    backends:
      - address: 127.0.0.1:10025
        weight: 3
      - address: 127.0.0.1:10026
    health_check: {interval: 1s, timeout: 1s, rise: 1, fall: 2, expect: [PIPELINING]}
routes:
  - pool: main
limits:
  max_message_size: 1MB
  max_recipients: 5
  bare_line_endings: normalize
timeouts:
  backend_reply: 2s
)";

// Error lines as "LINE:COL: message" without the file name.
std::vector<std::string> errors_of(const std::string& text) {
  auto r = load_config_text(text, "t.yaml");
  std::vector<std::string> out;
  for (const auto& e : r.errors) {
    EXPECT_EQ(e.file, "t.yaml");
    out.push_back(std::to_string(e.line) + ":" + std::to_string(e.column) + ": " + e.message);
  }
  return out;
}

bool any_contains(const std::vector<std::string>& v, const std::string& needle) {
  for (const auto& s : v)
    if (s.find(needle) != std::string::npos) return true;
  return false;
}

TEST(ConfigLoader, ValidConfigLoadsEveryKey) {
  auto r = load_config_text(kValid, "t.yaml");
  ASSERT_TRUE(r.errors.empty()) << r.errors.front().str();
  const Config& c = *r.config;
  EXPECT_EQ(c.hostname, "lb.example.com");
  ASSERT_EQ(c.listeners.size(), 2u);
  EXPECT_EQ(c.listeners[1].role, Role::kSubmission);
  EXPECT_EQ(c.listeners[1].listen.host, "::1");
  // Kept as A-labels, as recipients' domains are compared (SECURITY.md 4).
  EXPECT_EQ(c.local_domains,
            (std::vector<std::string>{"example.com", ".example.org", "xn--bcher-kva.example"}));
  ASSERT_EQ(c.pools.size(), 1u);
  EXPECT_EQ(c.pools[0].algorithm, Algorithm::kWeightedRoundRobin);
  EXPECT_EQ(c.pools[0].retries, 3);
  EXPECT_EQ(c.pools[0].backends[0].weight, 3);
  EXPECT_EQ(c.pools[0].backends[1].weight, 1);
  EXPECT_EQ(c.pools[0].backends[0].name, "127.0.0.1:10025");
  EXPECT_EQ(c.pools[0].health_check.fall, 2);
  EXPECT_EQ(c.limits.max_message_size, 1024u * 1024);
  EXPECT_EQ(c.limits.max_recipients, 5);
  EXPECT_EQ(c.limits.bare_line_endings, BareLineEndings::kNormalize);
  EXPECT_EQ(c.timeouts.backend_reply.count(), 2000);
  EXPECT_EQ(c.timeouts.backend_data_done.count(), 15000);  // default kept
}

TEST(ConfigLoader, UnknownKeyIsReportedAtItsOneBasedPosition) {
  std::string text = kValid;
  text.replace(text.find("    role: inbound\n"), 0, "    colour: blue\n");
  auto errs = errors_of(text);
  ASSERT_EQ(errs.size(), 1u);
  EXPECT_EQ(errs[0], "5:5: unknown key `colour` in a listener");
}

TEST(ConfigLoader, EveryErrorIsReportedInOneRun) {
  const char* text = R"(listeners:
  - name: mx
    listen: 127.0.0.1:99999
    role: outbound
  - name: mx
    listen: 127.0.0.1:2526
local_domains: [bad..domain]
trusted_networks: [10.0.0.0/33]
pools:
  - name: p
    backends:
      - address: nowhere
        weight: heavy
  - name: p
    backends: []
routes:
  - pool: missing
  - pool: p
    listener: ghost
limits:
  max_message_size: 10XB
timeouts:
  client_command: soon
)";
  auto errs = errors_of(text);
  EXPECT_TRUE(any_contains(errs, "3:13: listen: bad address `127.0.0.1:99999`"));
  EXPECT_TRUE(any_contains(errs, "4:11: role: `outbound`"));
  EXPECT_TRUE(any_contains(errs, "5:11: duplicate listener name `mx`"));
  EXPECT_TRUE(any_contains(errs, "7:17: local_domains: bad domain `bad..domain`"));
  EXPECT_TRUE(any_contains(errs, "8:20: trusted_networks: bad network `10.0.0.0/33`"));
  EXPECT_TRUE(any_contains(errs, "12:18: backend address: bad address `nowhere`"));
  EXPECT_TRUE(any_contains(errs, "13:17: weight must be an integer"));
  EXPECT_TRUE(any_contains(errs, "14:11: duplicate pool name `p`"));
  EXPECT_TRUE(any_contains(errs, "empty backend list"));
  EXPECT_TRUE(any_contains(errs, "17:11: routes: pool `missing` is not defined"));
  EXPECT_TRUE(any_contains(errs, "19:15: routes: listener `ghost` is not defined"));
  EXPECT_TRUE(any_contains(errs, "21:21: max_message_size: bad size `10XB`"));
  EXPECT_TRUE(any_contains(errs, "23:19: timeouts.client_command: bad duration `soon`"));
}

// limits.max_line_length (issue 21): no limit unless set; a size, 0 or
// `none`; never under RFC 5321's 1000 octets.
struct LineLimitCase {
  const char* label;
  const char* value;  // nullptr: the key left out
  std::uint64_t want;
  const char* error;  // "" for none, else the "LINE:COL: message" start
};

const LineLimitCase kLineLimitCases[] = {
    {"left out: no limit", nullptr, 0, ""},
    {"10KB", "10KB", 10240, ""},
    {"1KB", "1KB", 1024, ""},
    {"RFC minimum", "1000", 1000, ""},
    {"0: no limit", "0", 0, ""},
    {"none: no limit", "none", 0, ""},
    {"under 1000", "999", 0, "26:20: max_line_length: `999` is under the 1000 octets"},
    {"not a size", "long", 0, "26:20: max_line_length: bad size `long`"},
};

TEST(ConfigLoader, MaxLineLength) {
  for (const auto& c : kLineLimitCases) {
    std::string text = kValid;
    if (c.value)
      text.replace(text.find("timeouts:\n"), 0,
                   std::string("  max_line_length: ") + c.value + "\n");
    auto r = load_config_text(text, "t.yaml");
    if (*c.error) {
      auto errs = errors_of(text);
      ASSERT_EQ(errs.size(), 1u) << c.label;
      EXPECT_EQ(errs[0].rfind(c.error, 0), 0u) << c.label << ": " << errs[0];
      continue;
    }
    ASSERT_TRUE(r.errors.empty()) << c.label << ": " << r.errors.front().str();
    EXPECT_EQ(r.config->limits.max_line_length, c.want) << c.label;
  }
}

TEST(ConfigLoader, ListenNeedsAnIpAddress) {
  std::string text = kValid;
  text.replace(text.find("127.0.0.1:2525"), std::string("127.0.0.1:2525").size(), "mx.local:2525");
  auto errs = errors_of(text);
  ASSERT_EQ(errs.size(), 1u);
  EXPECT_TRUE(any_contains(errs, "4:13: listen: `mx.local` is not an IP address")) << errs[0];
}

TEST(ConfigLoader, ListenerWithoutRouteIsAnError) {
  std::string text = kValid;
  text.replace(text.find("  - pool: main\n"), std::string("  - pool: main\n").size(),
               "  - pool: main\n    listener: mx\n");
  auto errs = errors_of(text);
  ASSERT_EQ(errs.size(), 1u);
  EXPECT_EQ(errs[0], "6:11: listener `sub` is not served by any route");
}

TEST(ConfigLoader, ReservedKeysAreRefusedByName) {
  std::string text = std::string(kValid) + "spool: {directory: /var/spool/smtplb}\n";
  auto errs = errors_of(text);
  ASSERT_EQ(errs.size(), 1u);
  EXPECT_TRUE(any_contains(errs, "key `spool` in the configuration is reserved")) << errs[0];
}

TEST(ConfigLoader, TlsFilesThatDoNotLoadAreErrorsAtTheirKey) {
  std::string text = kValid;
  text.replace(text.find("    role: inbound\n"), 0,
               "    tls: {certificate: /nonexistent/c.pem, key: /nonexistent/k.pem}\n");
  auto errs = errors_of(text);
  ASSERT_EQ(errs.size(), 1u);
  EXPECT_TRUE(any_contains(errs, "cannot load certificate `/nonexistent/c.pem`")) << errs[0];
}

TEST(ConfigLoader, TlsKeysAreCheckedTogether) {
  std::string text = kValid;
  text.replace(text.find("    role: inbound\n"), 0,
               "    require_tls: true\n    auth: true\n    tls: {mode: sometimes}\n");
  auto errs = errors_of(text);
  EXPECT_TRUE(any_contains(errs, "tls.mode: `sometimes` is not starttls or implicit"));
  EXPECT_TRUE(any_contains(errs, "tls needs a `certificate`"));
  EXPECT_TRUE(any_contains(errs, "auth: no top-level `auth"));
}

TEST(ConfigLoader, BackendTlsAndIdentity) {
  std::string text = kValid;
  text.replace(text.find("        weight: 3\n"), 0,
               "        tls: {mode: implicit, verify: false, sni: relay.example.net}\n"
               "        identity: xclient\n");
  auto r = load_config_text(text, "t.yaml");
  ASSERT_TRUE(r.errors.empty()) << r.errors.front().str();
  const auto& b = r.config->pools[0].backends[0];
  EXPECT_EQ(b.tls.mode, TlsMode::kImplicit);
  EXPECT_FALSE(b.tls.verify);
  EXPECT_EQ(b.tls.sni, "relay.example.net");
  EXPECT_NE(b.tls.client, nullptr);
  EXPECT_EQ(b.identity, Identity::kXclient);
  text.replace(text.find("identity: xclient"), 17, "identity: smtp_auth");
  auto errs = errors_of(text);
  ASSERT_EQ(errs.size(), 1u);
  EXPECT_TRUE(any_contains(errs, "identity: `smtp_auth` is not none, xclient")) << errs[0];
}

TEST(ConfigLoader, UnknownAlgorithmIsNamed) {
  std::string text = kValid;
  text.replace(text.find("weighted_round_robin"), std::string("weighted_round_robin").size(),
               "fastest");
  auto errs = errors_of(text);
  ASSERT_EQ(errs.size(), 1u);
  EXPECT_TRUE(any_contains(errs, "unknown algorithm `fastest`")) << errs[0];
}

TEST(ConfigLoader, AgentAndSlowStartKeys) {
  std::string text = kValid;
  text.replace(text.find("        weight: 3\n"), 0,
               "        agent: {port: 9777, interval: 500ms}\n        max_rate: 10/s\n");
  text.replace(text.find("    retries: 3\n"), 0, "    slow_start: 30s\n");
  auto r = load_config_text(text, "t.yaml");
  ASSERT_TRUE(r.errors.empty()) << r.errors.front().str();
  const auto& b = r.config->pools[0].backends[0];
  EXPECT_EQ(b.agent.port, 9777);
  EXPECT_EQ(b.agent.interval.count(), 500);
  EXPECT_DOUBLE_EQ(b.max_rate.per_second, 10.0);
  EXPECT_EQ(r.config->pools[0].slow_start.count(), 30000);
  std::string bad = kValid;
  bad.replace(bad.find("        weight: 3\n"), 0, "        agent: {interval: 1s}\n");
  auto errs = errors_of(bad);
  ASSERT_EQ(errs.size(), 1u);
  EXPECT_TRUE(any_contains(errs, "agent needs a `port`")) << errs[0];
}

TEST(ConfigLoader, YamlSyntaxErrorHasAPosition) {
  auto errs = errors_of("listeners: [\n  - name: x\n");
  ASSERT_EQ(errs.size(), 1u);
  EXPECT_TRUE(any_contains(errs, "YAML")) << errs[0];
}

TEST(ConfigLoader, EmptyFileIsAnError) {
  auto errs = errors_of("");
  ASSERT_FALSE(errs.empty());
  EXPECT_EQ(errs[0].substr(0, 4), "1:1:");
}

TEST(ConfigLoader, MissingFileIsAnError) {
  auto r = load_config("/nonexistent/smtplb.yaml");
  ASSERT_EQ(r.errors.size(), 1u);
  EXPECT_EQ(r.errors[0].str(), "/nonexistent/smtplb.yaml:1:1: cannot read the file");
}

}  // namespace
}  // namespace smtplb::config

namespace smtplb::config {
namespace {

const char* kMxHead = R"(listeners:
  - name: mx
    listen: 127.0.0.1:2525
local_domains: [example.com]
routes:
  - pool: p
pools:
)";

TEST(ConfigLoaderMx, MxPoolsAndDnsLoad) {
  auto r = load_config_text(std::string(kMxHead) + R"(  - name: p
    mx: Example.NET.
    port: 2525
  - name: out
    mx: recipient
  - name: idn
    mx: "m\u00fcnchen.example"
dns: {servers: [127.0.0.1, "127.0.0.1:5353", "[::1]:53"], timeout: 500ms, attempts: 3,
      cache_entries: 100, max_stale: 10m, max_in_flight: 50}
)",
                            "t.yaml");
  ASSERT_TRUE(r.errors.empty()) << r.errors.front().str();
  const Config& c = *r.config;
  ASSERT_EQ(c.pools.size(), 3u);
  EXPECT_EQ(c.pools[0].mx, MxMode::kDomain);
  EXPECT_EQ(c.pools[0].mx_domain, "example.net");
  EXPECT_EQ(c.pools[2].mx_domain, "xn--mnchen-3ya.example") << "the DNS holds A-labels";
  EXPECT_EQ(c.pools[0].port, 2525);
  EXPECT_TRUE(c.pools[0].backends.empty());
  EXPECT_EQ(c.pools[1].mx, MxMode::kRecipient);
  EXPECT_EQ(c.pools[1].port, 25);
  ASSERT_EQ(c.dns.servers.size(), 3u);
  EXPECT_EQ(c.dns.servers[0].str(), "127.0.0.1:53");
  EXPECT_EQ(c.dns.servers[1].port, 5353);
  EXPECT_EQ(c.dns.servers[2].host, "::1");
  EXPECT_EQ(c.dns.timeout, std::chrono::milliseconds(500));
  EXPECT_EQ(c.dns.attempts, 3);
  EXPECT_EQ(c.dns.cache_entries, 100);
  EXPECT_EQ(c.dns.max_stale, std::chrono::minutes(10));
  EXPECT_EQ(c.dns.max_in_flight, 50);
}

TEST(ConfigLoaderMx, BadMxPoolsAreNamed) {
  struct Case {
    const char* pool;  // the pool's YAML, indented under `pools:`
    const char* want;
  };
  const Case cases[] = {
      {"  - name: p\n    mx: example.net\n    backends:\n      - address: 127.0.0.1:25\n",
       "9:9: pool `p`: `mx:` and `backends:` exclude each other"},
      {"  - name: p\n    mx: not_a..domain\n", "9:9: mx: `not_a..domain` is not a domain name"},
      {"  - name: p\n    mx: localhost\n", "9:9: mx: `localhost` is not a domain name"},
      {"  - name: p\n    mx: \"[127.0.0.1]\"\n", "is not a domain name"},
      {"  - name: p\n    mx: example.net\n    port: 0\n", "10:11: port must be between 1 and"},
      {"  - name: p\n    port: 25\n    backends:\n      - address: 127.0.0.1:25\n",
       "9:11: pool `p`: `port:` is the port of backends found by `mx:`"},
      {"  - name: p\n", "has no `backends` (nor `mx:`)"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.pool);
    auto errs = errors_of(std::string(kMxHead) + c.pool);
    ASSERT_FALSE(errs.empty());
    EXPECT_TRUE(any_contains(errs, c.want)) << errs[0];
  }
}

TEST(ConfigLoaderMx, BadDnsSettingsAreNamed) {
  const std::string pool = "  - name: p\n    mx: example.net\n";
  struct Case {
    const char* dns;
    const char* want;
  };
  const Case cases[] = {
      {"dns: {servers: [ns1.example.net]}\n", "10:17: dns.servers: `ns1.example.net` is not an IP"},
      {"dns: {timeout: soon}\n", "10:16: dns.timeout: bad duration `soon`"},
      {"dns: {attempts: 0}\n", "10:17: dns.attempts must be between 1 and 10"},
      {"dns: {max_in_flight: 0}\n", "10:22: dns.max_in_flight must be between 1 and 100000"},
      {"dns: {resolver: x}\n", "10:7: unknown key `resolver` in dns"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.dns);
    auto errs = errors_of(std::string(kMxHead) + pool + c.dns);
    ASSERT_FALSE(errs.empty());
    EXPECT_TRUE(any_contains(errs, c.want)) << errs[0];
  }
}

}  // namespace
}  // namespace smtplb::config

namespace smtplb::config {
namespace {

TEST(ConfigLoaderProxy, ProxyProtocolAndNetworksLoad) {
  auto r = load_config_text(R"(listeners:
  - name: mx
    listen: 127.0.0.1:2525
    proxy_protocol: true
proxy_networks: [10.0.0.0/8, "::1"]
local_domains: [example.com]
pools:
  - name: p
    backends: [{address: 127.0.0.1:25}]
routes:
  - pool: p
)",
                            "t.yaml");
  ASSERT_TRUE(r.errors.empty()) << r.errors.front().str();
  EXPECT_TRUE(r.config->listeners[0].proxy_protocol);
  ASSERT_EQ(r.config->proxy_networks.size(), 2u);
  auto errs = errors_of(R"(listeners:
  - name: mx
    listen: 127.0.0.1:2525
    proxy_protocol: maybe
proxy_networks: [10.0.0.0/33]
local_domains: [example.com]
pools:
  - name: p
    backends: [{address: 127.0.0.1:25}]
routes:
  - pool: p
)");
  EXPECT_TRUE(any_contains(errs, "4:21: proxy_protocol must be true or false"));
  EXPECT_TRUE(any_contains(errs, "5:18: proxy_networks: bad network `10.0.0.0/33`"));
}

}  // namespace
}  // namespace smtplb::config
