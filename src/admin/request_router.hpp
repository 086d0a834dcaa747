// request_router.hpp: what the admin server does with one request, decided
// from its head alone.  Pure: no sockets, no clock, no logging.
//
// Endpoints (DESIGN.md "Admin, health and identity details"):
//   GET  /metrics                                   Prometheus text
//   GET  /api/pools                                 pools and backends, JSON
//   POST /api/pools/{pool}/backends/{address}/drain|ready|maint
//   POST /api/reload                                load the configuration again
// HEAD is served wherever GET is.  The query string never affects routing.
// {pool} and {address} may be percent-encoded (`127.0.0.1%3A2525`,
// `%5B%3A%3A1%5D%3A25`); they are decoded after the path is split on '/',
// so an encoded slash stays inside its segment.
//
// Checks, in this order, the first failure deciding (SECURITY.md 10):
//   1. Host: missing or sent twice -> 400; not the admin listener's
//      `ip:port` (`[v6]:port`) or `localhost:port` -> 421.  A browser sends
//      the attacker's name after a DNS rebinding, never ours.
//   2. Token, when one is configured: `Authorization: Bearer TOKEN`,
//      compared in constant time; else 401 with `WWW-Authenticate: Bearer`.
//   3. Route: unknown path -> 404; known path, wrong method -> 405 with
//      Allow (a GET on an action path changes nothing); a target that is
//      not origin-form or a bad %-escape -> 400.
//   4. Origin, for a POST only: present and not `http://` plus an
//      authority Host would accept -> 403 (cross-site request forgery).
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <variant>

#include "admin/model.hpp"
#include "config/units.hpp"

namespace smtplb::admin {

struct RouterConfig {
  // The admin listener's address, with the port actually bound (a
  // configured port 0 is replaced by the kernel's choice).  A wildcard
  // address (0.0.0.0, ::) accepts any IP literal as Host: a literal cannot
  // be rebound, only a name can.
  config::Endpoint listen;
  std::string token;  // empty: no token asked
};

// The parts of a request the decision needs, as received.
struct RequestHead {
  std::string_view method;  // case-sensitive (RFC 9110 9.1): "get" is not GET
  std::string_view target;  // the request-target
  std::optional<std::string_view> host, origin, authorization;
  // Host, Origin or Authorization came more than once: which one counts is
  // ambiguous, so the request is refused (RFC 9112 3.2).
  bool duplicate_header = false;
};

struct ServeMetrics {};
struct ServePools {};
struct RunReload {};
struct RunAction {
  std::string pool;     // percent-decoded
  std::string backend;  // percent-decoded, `host:port` as configured
  Action action;
};
struct Reject {
  int status;
  std::string reason;             // for the JSON error body and the log
  std::string allow;              // 405: the Allow header's value
  bool bearer_challenge = false;  // 401: send `WWW-Authenticate: Bearer`
};
using Decision = std::variant<ServeMetrics, ServePools, RunAction, RunReload, Reject>;

Decision route_request(const RequestHead& req, const RouterConfig& cfg);

// Helpers, exposed for their tests.

// RFC 3986 2.1 percent-decoding; nullopt on a bad escape or when the
// result holds a control character (it would reach logs and lookups).
std::optional<std::string> percent_decode(std::string_view s);
// Equal contents, in a time that depends on `presented`'s length only, so
// a wrong token's timing says nothing about how much of it was right.
bool constant_time_equal(std::string_view presented, std::string_view expected);

}  // namespace smtplb::admin
