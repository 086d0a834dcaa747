#include "admin/request_router.hpp"

#include <array>
#include <cstdint>

#include "net/ip_address.hpp"
#include "smtp/ascii.hpp"

namespace smtplb::admin {

namespace {

using smtp::iequals;
using smtp::istarts_with;

// A Host or Origin without a port means the scheme's default (RFC 9110
// 4.2.1); the admin API speaks plain HTTP.
constexpr std::uint16_t kDefaultHttpPort = 80;

constexpr std::string_view kGetAllow = "GET, HEAD";
constexpr std::string_view kPostAllow = "POST";

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  c = smtp::ascii_lower(c);
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return -1;
}

// host[:port] or [v6]:port, RFC 3986 3.2.2-3.2.3.  host is without
// brackets; no port: the default.
struct Authority {
  std::string_view host;
  bool bracketed = false;
  std::uint16_t port = kDefaultHttpPort;
};

std::optional<Authority> parse_authority(std::string_view a) {
  Authority au;
  std::string_view rest;
  if (!a.empty() && a.front() == '[') {
    std::size_t close = a.find(']');
    if (close == std::string_view::npos) return std::nullopt;
    au.host = a.substr(1, close - 1);
    au.bracketed = true;
    rest = a.substr(close + 1);
  } else {
    std::size_t colon = a.find(':');
    au.host = a.substr(0, colon);
    if (colon != std::string_view::npos) rest = a.substr(colon);
  }
  if (au.host.empty()) return std::nullopt;
  if (!rest.empty()) {
    // ":digits", at most 65535; an empty port is refused rather than
    // guessed at.
    if (rest.front() != ':' || rest.size() < 2 || rest.size() > 6) return std::nullopt;
    unsigned port = 0;
    for (char c : rest.substr(1)) {
      if (c < '0' || c > '9') return std::nullopt;
      port = port * 10 + static_cast<unsigned>(c - '0');
    }
    if (port == 0 || port > 65535) return std::nullopt;
    au.port = static_cast<std::uint16_t>(port);
  }
  return au;
}

// Whether a Host value (or an Origin's authority) names this listener.
bool authority_is_ours(std::string_view value, const config::Endpoint& listen) {
  auto au = parse_authority(value);
  if (!au || au->port != listen.port) return false;
  const bool has_colon = au->host.find(':') != std::string_view::npos;
  // An IPv6 literal needs its brackets and nothing else may have them.
  if (au->bracketed != has_colon) return false;
  if (!au->bracketed && iequals(au->host, "localhost")) return true;
  // The loader makes admin.listen an IP address; compared as addresses,
  // `[0:0::1]` is `[::1]`.
  auto listen_ip = net::IpAddress::parse(listen.host);
  auto ip = net::IpAddress::parse(au->host);
  // A wildcard listener (0.0.0.0 or ::) answers on any of this host's addresses.
  return ip && listen_ip && (listen_ip->is_unspecified() || *ip == *listen_ip);
}

// A browser's Origin is "scheme://authority" with no path (RFC 6454 6.1);
// "null" and any other scheme are foreign.
bool origin_is_ours(std::string_view origin, const config::Endpoint& listen) {
  constexpr std::string_view kScheme = "http://";
  if (!istarts_with(origin, kScheme)) return false;
  return authority_is_ours(origin.substr(kScheme.size()), listen);
}

// RFC 6750 2.1: "Bearer" (case-insensitive, RFC 9110 11.1) 1*SP token.
bool token_matches(std::optional<std::string_view> authorization, std::string_view token) {
  if (!authorization) return false;
  std::string_view v = trim(*authorization);
  constexpr std::string_view kScheme = "Bearer ";
  if (!istarts_with(v, kScheme)) return false;
  return constant_time_equal(trim(v.substr(kScheme.size())), token);
}

Reject reject(int status, std::string_view reason) {
  return Reject{status, std::string(reason), {}, false};
}

Reject method_not_allowed(std::string_view allow) {
  return Reject{405, "method not allowed", std::string(allow), false};
}

std::optional<Action> parse_action(std::string_view verb) {
  if (verb == "drain") return Action::kDrain;
  if (verb == "ready") return Action::kReady;
  if (verb == "maint") return Action::kMaint;
  return std::nullopt;
}

// Splits "/a/b/c" into at most N + 1 segments (one more says "too many").
template <std::size_t N>
std::size_t split_path(std::string_view path, std::array<std::string_view, N + 1>& out) {
  std::size_t n = 0;
  path.remove_prefix(1);  // the leading '/'
  for (;;) {
    std::size_t slash = path.find('/');
    out[n++] = path.substr(0, slash);
    if (slash == std::string_view::npos || n == out.size()) return n;
    path.remove_prefix(slash + 1);
  }
}

Decision route_path(const RequestHead& req, std::string_view path, const RouterConfig& cfg) {
  const bool get = req.method == "GET" || req.method == "HEAD";
  if (path == "/metrics") return get ? Decision{ServeMetrics{}} : method_not_allowed(kGetAllow);
  if (path == "/api/pools") return get ? Decision{ServePools{}} : method_not_allowed(kGetAllow);
  if (path == "/api/reload") {
    if (req.method != "POST") return method_not_allowed(kPostAllow);
    if (req.origin && !origin_is_ours(*req.origin, cfg.listen))
      return reject(403, "cross-origin request refused");
    return RunReload{};
  }

  // api / pools / {pool} / backends / {address} / {verb}
  constexpr std::size_t kActionSegments = 6;
  std::array<std::string_view, kActionSegments + 1> seg;
  if (split_path<kActionSegments>(path, seg) != kActionSegments || seg[0] != "api" ||
      seg[1] != "pools" || seg[2].empty() || seg[3] != "backends" || seg[4].empty())
    return reject(404, "not found");
  auto action = parse_action(seg[5]);
  if (!action) return reject(404, "not found");
  // Only POST acts: a GET from a link, an <img> or a prefetch must never
  // change a backend's state.
  if (req.method != "POST") return method_not_allowed(kPostAllow);
  auto pool = percent_decode(seg[2]);
  auto backend = percent_decode(seg[4]);
  if (!pool || !backend || pool->empty() || backend->empty())
    return reject(400, "bad percent-encoding in path");
  if (req.origin && !origin_is_ours(*req.origin, cfg.listen))
    return reject(403, "cross-origin request refused");
  return RunAction{std::move(*pool), std::move(*backend), *action};
}

}  // namespace

std::optional<std::string> percent_decode(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (std::size_t i = 0; i < s.size(); ++i) {
    char c = s[i];
    if (c == '%') {
      if (i + 2 >= s.size()) return std::nullopt;  // '%' needs two hex digits
      int hi = hex_value(s[i + 1]), lo = hex_value(s[i + 2]);
      if (hi < 0 || lo < 0) return std::nullopt;
      c = static_cast<char>(hi * 16 + lo);
      i += 2;
    }
    const auto u = static_cast<unsigned char>(c);
    if (u < 0x20 || u == 0x7f) return std::nullopt;
    out.push_back(c);
  }
  return out;
}

bool constant_time_equal(std::string_view presented, std::string_view expected) {
  if (expected.empty()) return presented.empty();
  // Every byte of `presented` is looked at whatever the result; the
  // accumulator is volatile so the loop cannot be cut short.
  volatile unsigned char diff = presented.size() != expected.size() ? 1 : 0;
  for (std::size_t i = 0; i < presented.size(); ++i)
    diff = diff | (static_cast<unsigned char>(presented[i]) ^
                   static_cast<unsigned char>(expected[i % expected.size()]));
  return diff == 0;
}

Decision route_request(const RequestHead& req, const RouterConfig& cfg) {
  // 1. Host.
  if (req.duplicate_header) return reject(400, "duplicate Host, Origin or Authorization header");
  if (!req.host) return reject(400, "missing Host header");
  if (!authority_is_ours(trim(*req.host), cfg.listen))
    return reject(421, "Host does not name this admin listener");

  // 2. Token.
  if (!cfg.token.empty() && !token_matches(req.authorization, cfg.token))
    return Reject{401, "missing or wrong bearer token", {}, true};

  // 3. Route (4. Origin for the POSTs that reach an action).  The query
  // string is no part of the route; only origin-form targets are served:
  // an absolute-form target would name a host past the Host check.
  std::string_view path = req.target.substr(0, req.target.find_first_of("?#"));
  if (path.empty() || path.front() != '/') return reject(400, "bad request target");
  return route_path(req, path, cfg);
}

}  // namespace smtplb::admin
