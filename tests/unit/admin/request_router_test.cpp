// request_router_test.cpp: what the admin API does with each request head.
//
// DESIGN.md "Admin, health and identity details" and SECURITY.md 10: the
// endpoints and their methods, percent-encoded and IPv6 backend addresses,
// the bearer token, Host (DNS rebinding) and Origin (CSRF) checks, and the
// order they are made in: Host, token, route, Origin.
#include "admin/request_router.hpp"

#include <gtest/gtest.h>

#include <optional>
#include <string>
#include <string_view>
#include <variant>

namespace smtplb::admin {
namespace {

using namespace std::string_view_literals;

constexpr std::string_view kHost = "127.0.0.1:8025";
constexpr std::string_view kToken = "s3cret-T0ken";

RouterConfig listener(std::string host, std::string token = "") {
  RouterConfig c;
  c.listen.host = std::move(host);
  c.listen.port = 8025;
  c.token = std::move(token);
  return c;
}

// What a case expects, printable so a failure says which way it went.
struct Want {
  enum Kind { kMetrics, kPools, kAction, kReload, kReject } kind;
  int status = 200;
  std::string pool{}, backend{};
  Action action = Action::kDrain;
  std::string allow{};
  bool challenge = false;
};

Want metrics() {
  return {Want::kMetrics};
}
Want pools() {
  return {Want::kPools};
}
Want reload() {
  return {Want::kReload};
}
Want act(std::string pool, std::string backend, Action a) {
  return {Want::kAction, 200, std::move(pool), std::move(backend), a};
}
Want refuse(int status) {
  return {Want::kReject, status};
}
Want not_allowed(std::string allow) {
  Want w{Want::kReject, 405};
  w.allow = std::move(allow);
  return w;
}
Want unauthorized() {
  Want w{Want::kReject, 401};
  w.challenge = true;
  return w;
}

std::string describe(const Decision& d) {
  if (std::holds_alternative<ServeMetrics>(d)) return "metrics";
  if (std::holds_alternative<ServePools>(d)) return "pools";
  if (std::holds_alternative<RunReload>(d)) return "reload";
  if (const auto* a = std::get_if<RunAction>(&d))
    return "action(" + a->pool + ", " + a->backend + ", " +
           std::to_string(static_cast<int>(a->action)) + ")";
  const auto& r = std::get<Reject>(d);
  return "reject(" + std::to_string(r.status) + ", allow=" + r.allow +
         ", challenge=" + (r.bearer_challenge ? "yes" : "no") + ", " + r.reason + ")";
}

void expect_decision(const Decision& d, const Want& w, std::string_view label) {
  SCOPED_TRACE(std::string(label) + ": got " + describe(d));
  switch (w.kind) {
    case Want::kMetrics:
      EXPECT_TRUE(std::holds_alternative<ServeMetrics>(d));
      break;
    case Want::kPools:
      EXPECT_TRUE(std::holds_alternative<ServePools>(d));
      break;
    case Want::kReload:
      EXPECT_TRUE(std::holds_alternative<RunReload>(d));
      break;
    case Want::kAction: {
      const auto* a = std::get_if<RunAction>(&d);
      ASSERT_NE(a, nullptr);
      EXPECT_EQ(a->pool, w.pool);
      EXPECT_EQ(a->backend, w.backend);
      EXPECT_EQ(a->action, w.action);
      break;
    }
    case Want::kReject: {
      const auto* r = std::get_if<Reject>(&d);
      ASSERT_NE(r, nullptr);
      EXPECT_EQ(r->status, w.status);
      EXPECT_EQ(r->allow, w.allow);
      EXPECT_EQ(r->bearer_challenge, w.challenge);
      EXPECT_FALSE(r->reason.empty());
      break;
    }
  }
}

// A request from curl on the listener itself: Host right, no Origin.
RequestHead req(std::string_view method, std::string_view target) {
  RequestHead h;
  h.method = method;
  h.target = target;
  h.host = kHost;
  return h;
}

struct Case {
  const char* name;
  RequestHead head;
  Want want;
};

void run(const Case* begin, const Case* end, const RouterConfig& cfg) {
  for (const Case* c = begin; c != end; ++c)
    expect_decision(route_request(c->head, cfg), c->want, c->name);
}

template <std::size_t N>
void run(const Case (&cases)[N], const RouterConfig& cfg) {
  run(cases, cases + N, cfg);
}

TEST(AdminRouter, ServesTheEndpoints) {
  const Case cases[] = {
      {"GET /metrics", req("GET", "/metrics"), metrics()},
      {"GET /api/pools", req("GET", "/api/pools"), pools()},
      {"HEAD /metrics", req("HEAD", "/metrics"), metrics()},
      {"HEAD /api/pools", req("HEAD", "/api/pools"), pools()},
      {"query ignored on /metrics", req("GET", "/metrics?name[]=x&debug=1"), metrics()},
      {"query ignored on /api/pools", req("GET", "/api/pools?pretty"), pools()},
      {"empty query", req("GET", "/api/pools?"), pools()},
      {"drain", req("POST", "/api/pools/out/backends/10.0.0.21:25/drain"),
       act("out", "10.0.0.21:25", Action::kDrain)},
      {"ready", req("POST", "/api/pools/out/backends/10.0.0.21:25/ready"),
       act("out", "10.0.0.21:25", Action::kReady)},
      {"maint", req("POST", "/api/pools/out/backends/10.0.0.21:25/maint"),
       act("out", "10.0.0.21:25", Action::kMaint)},
      {"query ignored on an action",
       req("POST", "/api/pools/out/backends/10.0.0.21:25/drain?now=1"),
       act("out", "10.0.0.21:25", Action::kDrain)},
      {"reload", req("POST", "/api/reload"), reload()},
  };
  run(cases, listener("127.0.0.1"));
}

TEST(AdminRouter, DecodesPercentEncodedNames) {
  const Case cases[] = {
      {"colon encoded", req("POST", "/api/pools/out/backends/127.0.0.1%3A2525/drain"),
       act("out", "127.0.0.1:2525", Action::kDrain)},
      {"lower-case hex", req("POST", "/api/pools/out/backends/127.0.0.1%3a2525/ready"),
       act("out", "127.0.0.1:2525", Action::kReady)},
      {"everything encoded",
       req("POST", "/api/pools/out/backends/%31%32%37%2E%30%2E%30%2E%31%3A%32%35/maint"),
       act("out", "127.0.0.1:25", Action::kMaint)},
      {"IPv6 raw", req("POST", "/api/pools/out/backends/[::1]:25/drain"),
       act("out", "[::1]:25", Action::kDrain)},
      {"IPv6 encoded", req("POST", "/api/pools/out/backends/%5B%3A%3A1%5D%3A25/drain"),
       act("out", "[::1]:25", Action::kDrain)},
      {"IPv6 brackets only encoded",
       req("POST", "/api/pools/out/backends/%5B2001:db8::5%5D:2525/ready"),
       act("out", "[2001:db8::5]:2525", Action::kReady)},
      {"host name backend", req("POST", "/api/pools/out/backends/relay1.example.net:25/drain"),
       act("out", "relay1.example.net:25", Action::kDrain)},
      {"pool name encoded", req("POST", "/api/pools/out%20bound/backends/10.0.0.1:25/drain"),
       act("out bound", "10.0.0.1:25", Action::kDrain)},
      // Split first, decode after: %2F is a character of the name.
      {"encoded slash stays in its segment",
       req("POST", "/api/pools/a%2Fb/backends/10.0.0.1:25/drain"),
       act("a/b", "10.0.0.1:25", Action::kDrain)},
      {"plus is not a space", req("POST", "/api/pools/a+b/backends/10.0.0.1:25/drain"),
       act("a+b", "10.0.0.1:25", Action::kDrain)},
  };
  run(cases, listener("127.0.0.1"));
}

TEST(AdminRouter, RefusesBadTargets) {
  const Case cases[] = {
      {"truncated escape", req("POST", "/api/pools/out/backends/127.0.0.1%3/drain"), refuse(400)},
      {"escape at the end", req("POST", "/api/pools/out/backends/127.0.0.1%/drain"), refuse(400)},
      {"non-hex escape", req("POST", "/api/pools/out/backends/127.0.0.1%zz25/drain"), refuse(400)},
      {"encoded NUL", req("POST", "/api/pools/out/backends/127.0.0.1%00:25/drain"), refuse(400)},
      {"encoded LF (log forging)", req("POST", "/api/pools/out%0Aevent=x/backends/a:25/drain"),
       refuse(400)},
      {"encoded DEL", req("POST", "/api/pools/out/backends/a%7F:25/drain"), refuse(400)},
      {"asterisk-form", req("OPTIONS", "*"), refuse(400)},
      {"absolute-form names another host", req("GET", "http://evil.example/metrics"), refuse(400)},
      {"empty target", req("GET", ""), refuse(400)},
      {"query only", req("GET", "?/metrics"), refuse(400)},
  };
  run(cases, listener("127.0.0.1"));
}

TEST(AdminRouter, UnknownPathsAreNotFound) {
  const Case cases[] = {
      {"root", req("GET", "/"), refuse(404)},
      {"unknown", req("GET", "/admin"), refuse(404)},
      {"trailing slash on /metrics", req("GET", "/metrics/"), refuse(404)},
      {"trailing slash on /api/pools", req("GET", "/api/pools/"), refuse(404)},
      {"trailing slash on an action", req("POST", "/api/pools/out/backends/a:25/drain/"),
       refuse(404)},
      {"double slash", req("GET", "//metrics"), refuse(404)},
      {"paths are case-sensitive", req("GET", "/METRICS"), refuse(404)},
      {"fixed segments are not decoded", req("GET", "/api/%70ools"), refuse(404)},
      {"one pool", req("GET", "/api/pools/out"), refuse(404)},
      {"a pool's backends", req("GET", "/api/pools/out/backends"), refuse(404)},
      {"one backend", req("GET", "/api/pools/out/backends/a:25"), refuse(404)},
      {"unknown action", req("POST", "/api/pools/out/backends/a:25/reboot"), refuse(404)},
      {"action is case-sensitive", req("POST", "/api/pools/out/backends/a:25/DRAIN"), refuse(404)},
      {"extra segment", req("POST", "/api/pools/out/backends/a:25/drain/now"), refuse(404)},
      {"empty pool", req("POST", "/api/pools//backends/a:25/drain"), refuse(404)},
      {"empty backend", req("POST", "/api/pools/out/backends//drain"), refuse(404)},
      {"misspelt backends", req("POST", "/api/pools/out/backend/a:25/drain"), refuse(404)},
      {"path below /metrics", req("GET", "/metrics/x"), refuse(404)},
  };
  run(cases, listener("127.0.0.1"));
}

TEST(AdminRouter, WrongMethodIsNotAllowedAndChangesNothing) {
  const Case cases[] = {
      // A link, an <img> or a prefetch must never drain a backend.
      {"GET on drain", req("GET", "/api/pools/out/backends/a:25/drain"), not_allowed("POST")},
      {"GET on ready", req("GET", "/api/pools/out/backends/a:25/ready"), not_allowed("POST")},
      {"GET on maint, encoded", req("GET", "/api/pools/out/backends/a%3A25/maint"),
       not_allowed("POST")},
      {"HEAD on an action", req("HEAD", "/api/pools/out/backends/a:25/drain"), not_allowed("POST")},
      {"PUT on an action", req("PUT", "/api/pools/out/backends/a:25/drain"), not_allowed("POST")},
      {"DELETE on an action", req("DELETE", "/api/pools/out/backends/a:25/maint"),
       not_allowed("POST")},
      {"OPTIONS on an action (no CORS preflight)",
       req("OPTIONS", "/api/pools/out/backends/a:25/drain"), not_allowed("POST")},
      {"lower-case post", req("post", "/api/pools/out/backends/a:25/drain"), not_allowed("POST")},
      {"POST /metrics", req("POST", "/metrics"), not_allowed("GET, HEAD")},
      {"PUT /api/pools", req("PUT", "/api/pools"), not_allowed("GET, HEAD")},
      {"DELETE /api/pools", req("DELETE", "/api/pools"), not_allowed("GET, HEAD")},
      {"lower-case get", req("get", "/metrics"), not_allowed("GET, HEAD")},
      {"GET /api/reload", req("GET", "/api/reload"), not_allowed("POST")},
      {"HEAD /api/reload", req("HEAD", "/api/reload"), not_allowed("POST")},
      {"method before bad escape", req("GET", "/api/pools/out/backends/a%zz/drain"),
       not_allowed("POST")},
  };
  run(cases, listener("127.0.0.1"));
}

RequestHead with_host(std::optional<std::string_view> host,
                      std::string_view target = "/api/pools") {
  RequestHead h = req("GET", target);
  h.host = host;
  return h;
}

TEST(AdminRouter, HostMustNameTheListenerOnIpv4) {
  const Case cases[] = {
      {"listener address", with_host("127.0.0.1:8025"), pools()},
      {"localhost", with_host("localhost:8025"), pools()},
      {"localhost in capitals", with_host("LocalHost:8025"), pools()},
      {"leading zero in the port", with_host("127.0.0.1:08025"), pools()},
      {"missing Host", with_host(std::nullopt), refuse(400)},
      {"rebinding name", with_host("evil.example:8025"), refuse(421)},
      {"rebinding name, no port", with_host("evil.example"), refuse(421)},
      {"name ending in our address", with_host("127.0.0.1.evil.example:8025"), refuse(421)},
      {"name starting with localhost", with_host("localhost.evil.example:8025"), refuse(421)},
      {"localhost with a trailing dot", with_host("localhost.:8025"), refuse(421)},
      {"other address", with_host("127.0.0.2:8025"), refuse(421)},
      {"wrong port", with_host("127.0.0.1:8026"), refuse(421)},
      {"no port (means 80)", with_host("127.0.0.1"), refuse(421)},
      {"localhost without port", with_host("localhost"), refuse(421)},
      {"empty port", with_host("127.0.0.1:"), refuse(421)},
      {"port out of range", with_host("127.0.0.1:73561"), refuse(421)},
      {"junk after port", with_host("127.0.0.1:8025x"), refuse(421)},
      {"userinfo", with_host("evil@127.0.0.1:8025"), refuse(421)},
      {"IPv4 in brackets", with_host("[127.0.0.1]:8025"), refuse(421)},
      {"IPv6 loopback is another address", with_host("[::1]:8025"), refuse(421)},
      {"short-form IPv4", with_host("127.1:8025"), refuse(421)},
      {"empty Host", with_host(""), refuse(421)},
      {"port only", with_host(":8025"), refuse(421)},
      {"decided before the route", with_host("evil.example:8025", "/nowhere"), refuse(421)},
  };
  run(cases, listener("127.0.0.1"));
}

TEST(AdminRouter, HostMustNameTheListenerOnIpv6) {
  const Case cases[] = {
      {"bracketed listener address", with_host("[::1]:8025"), pools()},
      {"same address written long", with_host("[0:0:0:0:0:0:0:1]:8025"), pools()},
      {"localhost", with_host("localhost:8025"), pools()},
      {"no brackets", with_host("::1:8025"), refuse(421)},
      {"no port", with_host("[::1]"), refuse(421)},
      {"unclosed bracket", with_host("[::1:8025"), refuse(421)},
      {"other address", with_host("[::2]:8025"), refuse(421)},
      {"IPv4 loopback is another address", with_host("127.0.0.1:8025"), refuse(421)},
      {"name in brackets", with_host("[localhost]:8025"), refuse(421)},
  };
  run(cases, listener("::1"));
}

TEST(AdminRouter, WildcardListenerTakesAnyAddressLiteralButNoName) {
  const Case v4[] = {
      {"any IPv4", with_host("192.0.2.7:8025"), pools()},
      {"any IPv6", with_host("[2001:db8::1]:8025"), pools()},
      {"localhost", with_host("localhost:8025"), pools()},
      {"a name", with_host("admin.example.net:8025"), refuse(421)},
      {"wrong port", with_host("192.0.2.7:80"), refuse(421)},
  };
  run(v4, listener("0.0.0.0"));
  run(v4, listener("::"));
}

RequestHead with_auth(std::optional<std::string_view> authorization,
                      std::string_view method = "GET", std::string_view target = "/metrics") {
  RequestHead h = req(method, target);
  h.authorization = authorization;
  return h;
}

TEST(AdminRouter, TokenGuardsEveryEndpoint) {
  const Case cases[] = {
      {"right token, metrics", with_auth("Bearer s3cret-T0ken"), metrics()},
      {"right token, pools", with_auth("Bearer s3cret-T0ken", "GET", "/api/pools"), pools()},
      {"right token, action",
       with_auth("Bearer s3cret-T0ken", "POST", "/api/pools/p/backends/a:25/drain"),
       act("p", "a:25", Action::kDrain)},
      {"scheme is case-insensitive", with_auth("bearer s3cret-T0ken"), metrics()},
      {"extra spaces", with_auth("Bearer   s3cret-T0ken  "), metrics()},
      {"missing, metrics", with_auth(std::nullopt), unauthorized()},
      {"missing, pools", with_auth(std::nullopt, "GET", "/api/pools"), unauthorized()},
      {"missing, action", with_auth(std::nullopt, "POST", "/api/pools/p/backends/a:25/drain"),
       unauthorized()},
      {"wrong", with_auth("Bearer s3cret-T0kem"), unauthorized()},
      {"prefix of the token", with_auth("Bearer s3cret"), unauthorized()},
      {"token and more", with_auth("Bearer s3cret-T0ken2"), unauthorized()},
      {"token case matters", with_auth("Bearer S3CRET-T0KEN"), unauthorized()},
      {"empty token", with_auth("Bearer "), unauthorized()},
      {"scheme only", with_auth("Bearer"), unauthorized()},
      {"no scheme", with_auth("s3cret-T0ken"), unauthorized()},
      {"Basic scheme", with_auth("Basic czNjcmV0LVQwa2Vu"), unauthorized()},
      {"scheme glued to token", with_auth("Bearers3cret-T0ken"), unauthorized()},
      // Token before route: an unknown path says nothing to a stranger.
      {"missing, unknown path", with_auth(std::nullopt, "GET", "/nowhere"), unauthorized()},
      {"missing, wrong method", with_auth(std::nullopt, "GET", "/api/pools/p/backends/a:25/drain"),
       unauthorized()},
      {"right token, unknown path", with_auth("Bearer s3cret-T0ken", "GET", "/nowhere"),
       refuse(404)},
  };
  run(cases, listener("127.0.0.1", std::string(kToken)));
}

TEST(AdminRouter, NoTokenConfiguredIgnoresAuthorization) {
  const Case cases[] = {
      {"none sent", with_auth(std::nullopt), metrics()},
      {"some sent", with_auth("Bearer whatever"), metrics()},
  };
  run(cases, listener("127.0.0.1"));
}

RequestHead post_from(std::optional<std::string_view> origin, std::string_view host = kHost) {
  RequestHead h = req("POST", "/api/pools/p/backends/a:25/drain");
  h.host = host;
  h.origin = origin;
  return h;
}

TEST(AdminRouter, PostFromAForeignOriginIsForbidden) {
  const Case cases[] = {
      {"no Origin (curl)", post_from(std::nullopt), act("p", "a:25", Action::kDrain)},
      {"our own page", post_from("http://127.0.0.1:8025"), act("p", "a:25", Action::kDrain)},
      {"localhost page", post_from("http://localhost:8025"), act("p", "a:25", Action::kDrain)},
      {"scheme in capitals", post_from("HTTP://127.0.0.1:8025"), act("p", "a:25", Action::kDrain)},
      {"foreign site", post_from("http://evil.example"), refuse(403)},
      {"foreign site, our port", post_from("http://evil.example:8025"), refuse(403)},
      {"https", post_from("https://127.0.0.1:8025"), refuse(403)},
      {"other port", post_from("http://127.0.0.1:8080"), refuse(403)},
      {"localhost, other port", post_from("http://localhost:3000"), refuse(403)},
      {"no port", post_from("http://127.0.0.1"), refuse(403)},
      {"null (sandboxed frame, file:)", post_from("null"), refuse(403)},
      {"empty", post_from(""), refuse(403)},
      {"with a path", post_from("http://127.0.0.1:8025/"), refuse(403)},
      {"userinfo", post_from("http://127.0.0.1:8025@evil.example"), refuse(403)},
      {"suffix", post_from("http://127.0.0.1:8025.evil.example"), refuse(403)},
  };
  run(cases, listener("127.0.0.1"));

  RequestHead foreign_reload = req("POST", "/api/reload");
  foreign_reload.origin = "http://evil.example";
  expect_decision(route_request(foreign_reload, listener("127.0.0.1")), refuse(403),
                  "reload from a foreign page");

  const Case v6[] = {
      {"IPv6 page", post_from("http://[::1]:8025", "[::1]:8025"), act("p", "a:25", Action::kDrain)},
      {"IPv6 unbracketed", post_from("http://::1:8025", "[::1]:8025"), refuse(403)},
  };
  run(v6, listener("::1"));
}

TEST(AdminRouter, OriginMattersOnlyForPosts) {
  // A GET changes nothing; a page may read only what CORS lets it, which
  // is nothing (no Access-Control-Allow-Origin is ever sent).
  RequestHead get = req("GET", "/api/pools");
  get.origin = "http://evil.example";
  expect_decision(route_request(get, listener("127.0.0.1")), pools(), "foreign GET");
}

TEST(AdminRouter, ChecksRunInOrderHostTokenRouteOrigin) {
  const RouterConfig cfg = listener("127.0.0.1", std::string(kToken));
  auto head = [](std::string_view host, std::optional<std::string_view> auth,
                 std::string_view method, std::string_view target,
                 std::optional<std::string_view> origin) {
    RequestHead h;
    h.method = method;
    h.target = target;
    h.host = host;
    h.authorization = auth;
    h.origin = origin;
    return h;
  };
  constexpr auto kAction = "/api/pools/p/backends/a:25/drain"sv;
  constexpr auto kGood = "Bearer s3cret-T0ken"sv;
  constexpr auto kEvil = "http://evil.example"sv;
  const Case cases[] = {
      {"bad Host beats missing token", head("evil:8025", std::nullopt, "POST", kAction, kEvil),
       refuse(421)},
      {"missing token beats bad route", head(kHost, std::nullopt, "GET", "/nowhere", kEvil),
       unauthorized()},
      {"missing token beats bad Origin", head(kHost, std::nullopt, "POST", kAction, kEvil),
       unauthorized()},
      {"wrong method beats bad Origin", head(kHost, kGood, "PUT", kAction, kEvil),
       not_allowed("POST")},
      {"unknown path beats bad Origin", head(kHost, kGood, "POST", "/nowhere", kEvil), refuse(404)},
      {"bad Origin last", head(kHost, kGood, "POST", kAction, kEvil), refuse(403)},
      {"all good", head(kHost, kGood, "POST", kAction, "http://localhost:8025"),
       act("p", "a:25", Action::kDrain)},
  };
  run(cases, cfg);
}

TEST(AdminRouter, DuplicateSecurityHeadersAreRefused) {
  RequestHead h = req("GET", "/metrics");
  h.duplicate_header = true;
  expect_decision(route_request(h, listener("127.0.0.1")), refuse(400), "duplicate header");
}

TEST(AdminRouter, PercentDecode) {
  struct {
    const char* in;
    std::optional<std::string> out;
  } cases[] = {
      {"", ""},
      {"plain", "plain"},
      {"%41%62", "Ab"},
      {"%3a%3A", "::"},
      {"a%2Fb", "a/b"},
      {"100%25", "100%"},
      {"%", std::nullopt},
      {"%4", std::nullopt},
      {"%G0", std::nullopt},
      {"%0G", std::nullopt},
      {"%00", std::nullopt},
      {"%0d%0a", std::nullopt},
      {"%1F", std::nullopt},
      {"%7f", std::nullopt},
      {"tab\there", std::nullopt},
      {"%C3%A9", "\xC3\xA9"},
  };
  for (const auto& c : cases) EXPECT_EQ(percent_decode(c.in), c.out) << c.in;
}

TEST(AdminRouter, ConstantTimeEqual) {
  struct {
    const char* presented;
    const char* expected;
    bool equal;
  } cases[] = {
      {"token", "token", true},   {"token", "tokem", false}, {"toke", "token", false},
      {"tokenn", "token", false}, {"", "token", false},      {"", "", true},
      {"x", "", false},           {"TOKEN", "token", false}, {"tokentoken", "token", false},
  };
  for (const auto& c : cases)
    EXPECT_EQ(constant_time_equal(c.presented, c.expected), c.equal)
        << c.presented << " vs " << c.expected;
}

}  // namespace
}  // namespace smtplb::admin
