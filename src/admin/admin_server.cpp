#include "admin/admin_server.hpp"

#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/json.hpp>
#include <exception>
#include <optional>
#include <set>
#include <utility>
#include <variant>

#include "admin/request_router.hpp"
#include "log/log.hpp"
#include "net/clock.hpp"

namespace smtplb::admin {

namespace beast = boost::beast;
namespace http = beast::http;

namespace {

// An admin API has a handful of operators and scrapers; more connections
// than this is a leak or an attack, and the newcomer is closed at once.
constexpr std::size_t kMaxConnections = 64;
// Request head (request line and fields) and body.  No endpoint reads a
// body; a small one is tolerated so a client posting `{}` is not refused.
constexpr std::uint32_t kHeaderLimit = 8 * 1024;
constexpr std::uint64_t kBodyLimit = 64 * 1024;
// The read buffer holds one request and the start of a pipelined next.
constexpr std::size_t kBufferLimit = kHeaderLimit + kBodyLimit + 4096;
// A whole request, from its first byte (or the previous reply, on a
// keep-alive connection) to its last, must arrive within this: the
// deadline covers every read of the request, so a byte every few seconds
// (slowloris) does not extend it.
constexpr std::chrono::seconds kReadTimeout{10};
constexpr std::chrono::seconds kWriteTimeout{10};
// After a failed accept (EMFILE...), wait before the next one rather than spin.
constexpr std::chrono::milliseconds kAcceptBackoff{100};
// Request targets are logged up to this many bytes.
constexpr std::size_t kLoggedTargetMax = 256;

constexpr std::string_view kJson = "application/json";
constexpr std::string_view kPrometheusText = "text/plain; version=0.0.4; charset=utf-8";

using Request = http::request<http::string_body>;
using Response = http::response<http::string_body>;

std::string error_body(std::string_view reason) {
  return boost::json::serialize(boost::json::object{{"error", reason}});
}

Response make_response(int status, unsigned version, bool keep_alive, std::string_view type,
                       std::string body) {
  Response res{static_cast<http::status>(status), version};
  res.set(http::field::content_type, type);
  // Live state: no cache may answer for us.
  res.set(http::field::cache_control, "no-store");
  // The bodies carry names a peer chose: never let a browser sniff them
  // into HTML.
  res.set("X-Content-Type-Options", "nosniff");
  res.keep_alive(keep_alive);
  res.body() = std::move(body);
  res.prepare_payload();
  return res;
}

Response make_response(int status, const Request& req, std::string_view type, std::string body) {
  Response res = make_response(status, req.version(), req.keep_alive(), type, std::move(body));
  // HEAD: the Content-Length a GET would get, and no body (RFC 9110 9.3.2).
  if (req.method() == http::verb::head) res.body().clear();
  return res;
}

// The reply a read error deserves: nullopt when the peer is gone or too
// slow (nobody to tell), else the status for a request that did not parse.
std::optional<std::pair<int, std::string_view>> malformed(error_code ec) {
  if (ec == http::error::header_limit) return std::pair{431, "request header too large"};
  if (ec == http::error::body_limit) return std::pair{413, "request body too large"};
  if (ec == http::error::end_of_stream || ec == http::error::partial_message) return std::nullopt;
  if (ec.category() == http::make_error_code(http::error::bad_method).category())
    return std::pair{400, "malformed request"};
  return std::nullopt;  // timeout, reset, closed by stop()
}

// At most one of each, so that which one counts is never ambiguous.
std::optional<std::string_view> single_field(const Request& req, http::field f, bool& duplicate) {
  auto range = req.equal_range(f);
  if (range.first == range.second) return std::nullopt;
  if (std::next(range.first) != range.second) duplicate = true;
  return std::string_view(range.first->value());
}

const char* to_string(Action a) {
  switch (a) {
    case Action::kDrain:
      return "drain";
    case Action::kReady:
      return "ready";
    case Action::kMaint:
      return "maint";
  }
  return "?";
}

}  // namespace

struct AdminServer::State {
  // One accepted connection, registered while it lives so stop() finds it.
  struct Connection {
    Connection(std::shared_ptr<State> st, tcp::socket sock)
        : state(std::move(st)), stream(std::move(sock)), id(++state->next_id) {
      error_code ec;
      auto ep = stream.socket().remote_endpoint(ec);
      peer = ec ? std::string("?") : ep.address().to_string();
      state->connections.insert(this);
    }
    ~Connection() { state->connections.erase(this); }
    Connection(const Connection&) = delete;
    Connection& operator=(const Connection&) = delete;

    std::shared_ptr<State> state;
    beast::tcp_stream stream;
    std::uint64_t id;
    std::string peer;
  };

  State(asio::io_context& io, const config::Admin& cfg, std::string token, Model& model)
      : io(io), strand(asio::make_strand(io)), cfg(cfg), model(model), acceptor(strand) {
    router.listen = cfg.listen;
    router.token = std::move(token);
  }

  // The server's executor: all of the below, and every Model call, runs on
  // it, so the io_context may be run by any number of threads.
  asio::io_context& io;
  asio::strand<asio::io_context::executor_type> strand;
  config::Admin cfg;
  RouterConfig router;
  Model& model;
  tcp::acceptor acceptor;
  tcp::endpoint bound;
  std::set<Connection*> connections;
  std::uint64_t next_id = 0;
  bool stopped = false;

  void close_all() {
    if (stopped) return;
    stopped = true;
    error_code ec;
    acceptor.close(ec);
    // Cancels each pending read or write; the coroutines see the error and end.
    for (auto* c : connections) c->stream.close();
  }

  // `self` is this: the frame keeps the state alive.
  awaitable<void> accept_loop(std::shared_ptr<State> self);
  awaitable<void> serve(std::unique_ptr<Connection> c);
  Response handle(const Connection& c, const Request& req);
  Response act(const Connection& c, const Request& req, const RunAction& a);
};

awaitable<void> AdminServer::State::accept_loop(std::shared_ptr<State> self) {
  for (;;) {
    auto [ec, sock] = co_await acceptor.async_accept(use_nothrow);
    if (stopped) co_return;
    if (ec) {
      if (ec == asio::error::operation_aborted) co_return;
      log::Record("admin_accept_error").add("error", ec.message()).emit(spdlog::level::warn);
      Timer t(strand, kAcceptBackoff);
      co_await t.async_wait(use_nothrow);
      if (stopped) co_return;
      continue;
    }
    if (connections.size() >= kMaxConnections) {
      error_code rec;
      auto ep = sock.remote_endpoint(rec);
      log::Record("admin_refused")
          .add("client", rec ? std::string("?") : ep.address().to_string())
          .add("reason", "connection limit")
          .add("limit", static_cast<long long>(kMaxConnections))
          .emit(spdlog::level::warn);
      sock.close(rec);
      continue;
    }
    // Registered now, before the coroutine first runs, so a burst of
    // accepts is counted against the limit.
    auto c = std::make_unique<Connection>(self, std::move(sock));
    asio::co_spawn(strand, serve(std::move(c)), asio::detached);
  }
}

awaitable<void> AdminServer::State::serve(std::unique_ptr<Connection> c) {
  auto& stream = c->stream;
  beast::flat_buffer buffer(kBufferLimit);
  for (;;) {
    // A parser reads one message: a fresh one, with its limits, per request.
    http::request_parser<http::string_body> parser;
    parser.header_limit(kHeaderLimit);
    parser.body_limit(kBodyLimit);
    stream.expires_after(kReadTimeout);
    auto [ec, n] = co_await http::async_read(stream, buffer, parser, use_nothrow);
    (void)n;
    if (stopped) break;
    if (ec) {
      if (auto bad = malformed(ec)) {
        log::Record("admin_refused")
            .add("c", static_cast<long long>(c->id))
            .add("client", c->peer)
            .add("status", bad->first)
            .add("reason", bad->second)
            .emit(spdlog::level::warn);
        // What followed the bad bytes cannot be framed: answer and close.
        Response res = make_response(bad->first, 11, false, kJson, error_body(bad->second));
        stream.expires_after(kWriteTimeout);
        co_await http::async_write(stream, res, use_nothrow);
      }
      break;
    }
    Response res = handle(*c, parser.get());
    stream.expires_after(kWriteTimeout);
    auto [wec, wn] = co_await http::async_write(stream, res, use_nothrow);
    (void)wn;
    if (wec || !res.keep_alive() || stopped) break;
  }
  // Half-close first so the reply is not cut off by a reset (unread
  // pipelined bytes would make close() send RST).
  error_code ignored;
  stream.socket().shutdown(tcp::socket::shutdown_send, ignored);
  stream.close();
}

Response AdminServer::State::handle(const Connection& c, const Request& req) {
  RequestHead head;
  head.method = req.method_string();
  head.target = req.target();
  head.host = single_field(req, http::field::host, head.duplicate_header);
  head.origin = single_field(req, http::field::origin, head.duplicate_header);
  head.authorization = single_field(req, http::field::authorization, head.duplicate_header);

  Decision d = route_request(head, router);
  Response res;
  auto level = spdlog::level::debug;
  std::string_view reason;
  if (const auto* r = std::get_if<Reject>(&d)) {
    res = make_response(r->status, req, kJson, error_body(r->reason));
    if (!r->allow.empty()) res.set(http::field::allow, r->allow);
    if (r->bearer_challenge) res.set(http::field::www_authenticate, "Bearer");
    // 400: the request was readable but not sound; start afresh.
    if (r->status == 400) res.keep_alive(false);
    level = spdlog::level::warn;
    reason = r->reason;
  } else {
    try {
      if (std::holds_alternative<ServeMetrics>(d)) {
        res = make_response(200, req, kPrometheusText, model.metrics_text());
      } else if (std::holds_alternative<ServePools>(d)) {
        res = make_response(200, req, kJson, model.pools_json());
      } else if (std::holds_alternative<RunReload>(d)) {
        ActionResult r = model.reload();
        res = make_response(r.status, req, kJson, r.body.empty() ? std::string("{}") : r.body);
        level = r.status == 200 ? spdlog::level::info : spdlog::level::warn;
      } else {
        return act(c, req, std::get<RunAction>(d));
      }
    } catch (const std::exception& e) {
      // A Model should not throw; if it does, this request fails, not the
      // server.
      log::Record("admin_model_error")
          .add("c", static_cast<long long>(c.id))
          .add("error", e.what())
          .emit(spdlog::level::err);
      res = make_response(500, req, kJson, error_body("internal error"));
    }
  }
  log::Record rec("admin_request");
  rec.add("c", static_cast<long long>(c.id))
      .add("client", c.peer)
      .add("method", std::string_view(req.method_string()))
      .add("target", std::string_view(req.target()).substr(0, kLoggedTargetMax))
      .add("status", static_cast<long long>(res.result_int()));
  if (!reason.empty()) rec.add("reason", reason);
  rec.emit(level);
  return res;
}

Response AdminServer::State::act(const Connection& c, const Request& req, const RunAction& a) {
  ActionResult r;
  try {
    r = model.act(a.pool, a.backend, a.action);
  } catch (const std::exception& e) {
    log::Record("admin_model_error")
        .add("c", static_cast<long long>(c.id))
        .add("error", e.what())
        .emit(spdlog::level::err);
    r = {500, error_body("internal error")};
  }
  // A state change by hand is an event worth keeping at the default level.
  log::Record("admin_action")
      .add("c", static_cast<long long>(c.id))
      .add("client", c.peer)
      .add("pool", a.pool)
      .add("backend", a.backend)
      .add("action", to_string(a.action))
      .add("status", static_cast<long long>(r.status))
      .emit(r.status == 200 ? spdlog::level::info : spdlog::level::warn);
  return make_response(r.status, req, kJson,
                       r.body.empty() ? std::string("{}") : std::move(r.body));
}

AdminServer::AdminServer(asio::io_context& io, const config::Admin& cfg, std::string token,
                         Model& model)
    : state_(std::make_shared<State>(io, cfg, std::move(token), model)) {}

AdminServer::~AdminServer() {
  // The io_context is not running (see the header): no handler races this.
  state_->close_all();
}

void AdminServer::start() {
  auto& st = *state_;
  const auto& listen = st.cfg.listen;
  // The loader accepts only an IP address here (no name to resolve).
  tcp::endpoint ep(asio::ip::make_address(listen.host), listen.port);
  st.acceptor.open(ep.protocol());
  st.acceptor.set_option(tcp::acceptor::reuse_address(true));
  st.acceptor.bind(ep);
  st.acceptor.listen(asio::socket_base::max_listen_connections);
  st.bound = st.acceptor.local_endpoint();
  // Host must name the port actually bound (port 0 in tests).
  st.router.listen.port = st.bound.port();
  log::Record("admin_listening")
      .add("address", st.bound.address().to_string())
      .add("port", static_cast<long long>(st.bound.port()))
      .add("token", st.router.token.empty() ? "none" : "required")
      .emit();
  asio::co_spawn(st.strand, st.accept_loop(state_), asio::detached);
}

void AdminServer::stop() {
  asio::dispatch(state_->strand, [st = state_] { st->close_all(); });
}

tcp::endpoint AdminServer::local_endpoint() const {
  return state_->bound;
}

}  // namespace smtplb::admin
