#include "server/frontend_session.hpp"

#include <algorithm>

#include "log/log.hpp"
#include "relay/buffer_cache.hpp"
#include "server/policy.hpp"
#include "server/received.hpp"
#include "smtp/data_decoder.hpp"
#include "smtp/data_encoder.hpp"
#include "smtp/proxy_header.hpp"
#include "smtp/replies.hpp"
#include "smtp/sasl.hpp"

namespace smtplb::server {

namespace replies = smtp::replies;

namespace {

// Replies are flushed early once this much is queued: a client that
// pipelines and never reads stalls on our write, not our memory.
constexpr std::size_t kMaxQueuedReplies = 64 * 1024;
// RCPTs beyond max_recipients a transaction may have refused before every
// further RCPT gets 452.
constexpr int kMaxRefusedRecipients = 100;

std::string ip_string(const tcp::endpoint& ep) {
  auto a = ep.address();
  if (a.is_v6() && a.to_v6().is_v4_mapped())
    return asio::ip::make_address_v4(asio::ip::v4_mapped, a.to_v6()).to_string();
  return a.to_string();
}

ConnectionLimiter::Ip ip_bytes(const tcp::endpoint& ep) {
  ConnectionLimiter::Ip ip{};
  auto a = ep.address();
  if (a.is_v4()) {
    ip[10] = ip[11] = 0xff;
    auto b = a.to_v4().to_bytes();
    std::copy(b.begin(), b.end(), ip.begin() + 12);
  } else {
    auto b = a.to_v6().to_bytes();
    std::copy(b.begin(), b.end(), ip.begin());
  }
  return ip;
}

// The 128-bit form (IPv4 mapped) as text: "192.0.2.1" or "2001:db8::1".
std::string ip_text(const std::array<std::uint8_t, 16>& ip) {
  asio::ip::address_v6::bytes_type b;
  std::copy(ip.begin(), ip.end(), b.begin());
  asio::ip::address_v6 a(b);
  if (a.is_v4_mapped()) return asio::ip::make_address_v4(asio::ip::v4_mapped, a).to_string();
  return a.to_string();
}

// Asio keeps freed operation memory per thread and hands it to the next
// operation that fits: a parked session's wait would take the block of
// whatever ran before it (an accept's, 336 bytes) and hold it as long as
// the session stays parked.  This allocator is not recycled: the wait
// costs its own size.
template <class T>
struct ExactAllocator {
  using value_type = T;
  ExactAllocator() = default;
  template <class U>
  ExactAllocator(const ExactAllocator<U>&) {}
  T* allocate(std::size_t n) { return static_cast<T*>(::operator new(n * sizeof(T))); }
  void deallocate(T* p, std::size_t) { ::operator delete(p); }
  template <class U>
  bool operator==(const ExactAllocator<U>&) const {
    return true;
  }
};

bool is_own_error(const smtp::Reply& r) {
  // Protocol errors the client made, counted towards limits.max_errors.
  return r.code == 500 || r.code == 501 || r.code == 503 || r.code == 555;
}

}  // namespace

FrontendSession::FrontendSession(runtime::Core& core, std::shared_ptr<runtime::CoreView> view,
                                 const config::Listener& listener, tcp::socket sock,
                                 const tcp::endpoint& peer, std::unique_ptr<ConnectionSlot> slot)
    : core_(core),
      view_(std::move(view)),
      cfg_(&view_->cfg()),
      listener_(&listener),
      sock_(std::move(sock)),
      slot_(std::move(slot)),
      id_{} {
  const std::string id = core.next_session_id();
  id.copy(id_.data(), id_.size() - 1);
  client_ip_ = ip_string(peer);
  client_port_ = peer.port();
  ip_ = ip_bytes(peer);

  trusted_ = is_trusted(*cfg_, ip_);
  core_.add(this);
}

FrontendSession::~FrontendSession() {
  if (parked_) core_.unpark(parked_at_);
  core_.remove(this);
}

void FrontendSession::on_shutdown() {
  if (idle_wait_) sock_.cancel();
  if (auth_delay_) auth_delay_->cancel();
}

void FrontendSession::on_park_deadline() {
  // The Core has already dropped its entry.
  parked_ = false;
  park_expired_ = true;
  sock_.cancel();
}

void FrontendSession::force_close() {
  // Whatever the session waits for ends now and it answers 421 4.3.2
  // (RFC 5321 3.8).  Only a TLS handshake in progress cannot be answered:
  // no SMTP reply can be written before it completes, so it is closed.
  forced_ = true;
  sock_.cancel();
  if (auth_delay_) auth_delay_->cancel();
  if (tx_) tx_->cancel();
}

FrontendSession::Duration FrontendSession::read_bound(Duration per_read) const {
  auto left =
      std::chrono::duration_cast<Duration>(started_ + cfg_->timeouts.client_session - Clock::now());
  return std::max(Duration(1), std::min(per_read, left));
}

awaitable<bool> FrontendSession::flush() {
  if (out_.empty()) co_return true;
  error_code ec = co_await sock_.write_all(out_, cfg_->timeouts.client_command);
  out_.clear();
  co_return !ec;
}

awaitable<FrontendSession::ReadResult> FrontendSession::read_line(std::string& line,
                                                                  bool may_park) {
  // client_command bounds the whole line, not each read (SECURITY.md 7:
  // one byte every few seconds must not hold the session).
  std::optional<Clock::time_point> line_deadline;
  if (may_park && park_deadline_ != Clock::time_point{}) {
    // Woken up: the wait was this line's first, and the bytes that ended
    // it are read before parking again.
    line_deadline = park_deadline_;
    park_deadline_ = {};
    may_park = false;
    ReadResult woke = std::exchange(woke_, ReadResult::kLine);
    if (woke != ReadResult::kLine) co_return woke;
  }
  for (;;) {
    auto item = reader_.next();
    if (item.kind == smtp::LineReader::Kind::kLine) {
      line.assign(item.line);
      co_return ReadResult::kLine;
    }
    if (item.kind == smtp::LineReader::Kind::kTooLong) co_return ReadResult::kTooLong;
    // About to wait for the client: the replies so far go out now.
    if (!co_await flush()) co_return ReadResult::kClosed;
    if (forced_ || (core_.shutting_down() && !txn_)) co_return ReadResult::kShutdown;
    idle_wait_ = !txn_;
    if (!line_deadline) line_deadline = Clock::now() + cfg_->timeouts.client_command;
    auto left = std::chrono::duration_cast<Duration>(*line_deadline - Clock::now());
    if (left <= Duration::zero()) co_return ReadResult::kTimeout;
    if (may_park && can_park()) {
      park_deadline_ = *line_deadline;
      co_return ReadResult::kParked;
    }
    auto [ec, n] = co_await read_input(read_bound(left));
    idle_wait_ = false;
    if (ec == asio::error::timed_out) co_return ReadResult::kTimeout;
    if (ec == asio::error::operation_aborted) co_return ReadResult::kShutdown;
    if (ec) co_return ReadResult::kClosed;
    reader_.append(std::string_view(input(), n));
  }
}

awaitable<std::pair<error_code, std::size_t>> FrontendSession::read_input(Duration d) {
  if (sock_.is_tls()) {
    // OpenSSL may hold decrypted bytes the socket no longer shows, so TLS
    // reads go through it, into the session's own buffer (OpenSSL's own
    // state costs tens of KB a connection anyway).
    if (!tls_input_) tls_input_ = std::make_unique<std::array<char, kTlsReadSize>>();
    auto r = co_await sock_.read_some(asio::buffer(*tls_input_), d);
    co_return r;
  }
  auto r = co_await sock_.read_when_ready(core_.scratch(), d);
  co_return r;
}

awaitable<bool> FrontendSession::read_proxy_header() {
  // SECURITY.md 5: the header comes first and whole within
  // kProxyHeaderTimeout, or the connection is closed without a 220.
  std::string in;
  const auto deadline = Clock::now() + kProxyHeaderTimeout;
  auto refuse = [&](std::string_view why) {
    log::Record("proxy_refused")
        .add("s", id())
        .add("listener", listener_->name)
        .add("peer", client_ip_)
        .add("reason", why)
        .emit(spdlog::level::warn);
    return false;
  };
  for (;;) {
    auto p = smtp::parse_proxy_header(in);
    if (p.status == smtp::ProxyParse::Status::kInvalid) co_return refuse(p.error);
    if (p.status == smtp::ProxyParse::Status::kDone) {
      const std::string peer = client_ip_;
      if (!p.header.local) {
        ip_ = p.header.source.ip;
        client_port_ = p.header.source.port;
        local_ip_ = p.header.destination.ip;
        local_port_ = p.header.destination.port;
        client_ip_ = ip_text(ip_);
      }
      // Bytes after the header are the client's (a client that talks
      // before the banner is the protocol layer's business).
      reader_.append(std::string_view(in).substr(p.consumed));
      trusted_ = is_trusted(*cfg_, ip_);
      log::Record("proxy")
          .add("s", id())
          .add("peer", peer)
          .add("client", client_ip_)
          .add("port", client_port_)
          .add("version", p.header.version)
          .add("local", p.header.local ? "yes" : "no")
          .emit(spdlog::level::debug);
      // The per-client limits the accept left to us, now for the client.
      const auto& limits = cfg_->limits;
      auto& shared = core_.shared();
      slot_.reset();
      bool refused = false;
      if (!trusted_ && !view_->gen->connection_rate->allow(ip_, Clock::now())) {
        shared.count(runtime::Shared::Limit::kConnectionRate);
        refused = true;
      } else {
        auto r = shared.limiter.acquire(ip_, trusted_, limits.max_connections,
                                        limits.max_connections_per_ip);
        if (r == ConnectionLimiter::Result::kTotalFull)
          shared.count(runtime::Shared::Limit::kConnections);
        if (r == ConnectionLimiter::Result::kClientFull)
          shared.count(runtime::Shared::Limit::kConnectionsPerIp);
        refused = r != ConnectionLimiter::Result::kAcquired;
      }
      if (refused) {
        log::Record("connection_refused")
            .add("listener", listener_->name)
            .add("client", client_ip_)
            .add("reason", "connection limit or rate, behind a proxy")
            .emit(spdlog::level::warn);
        queue(replies::too_many_connections());
        co_await flush();
        co_return false;
      }
      slot_ = std::make_unique<ConnectionSlot>(core_.shared().limiter, ip_);
      co_return true;
    }
    auto left = std::chrono::duration_cast<Duration>(deadline - Clock::now());
    if (left <= Duration::zero()) co_return refuse("no complete PROXY header in time");
    const std::size_t room = proxy_read_size(in);
    auto [ec, n] = co_await sock_.read_when_ready(asio::buffer(core_.scratch(), room), left);
    if (ec == asio::error::timed_out) co_return refuse("no complete PROXY header in time");
    if (ec) co_return refuse("closed before a complete PROXY header");
    in.append(static_cast<const char*>(core_.scratch().data()), n);
  }
}

std::size_t FrontendSession::proxy_read_size(std::string_view so_far) const {
  const std::size_t room = smtp::kMaxProxyHeader - so_far.size();
  if (listener_->tls.mode != config::TlsMode::kImplicit) return room;
  // v2 says its length in bytes 14-15; v1 ends at its CR LF, which only
  // reading byte by byte finds without reading past it (at most 107 reads,
  // once per connection).
  static constexpr std::string_view kV2Signature("\r\n\r\n\0\r\nQUIT\n", 12);
  if (so_far.empty()) return 1;
  if (kV2Signature.starts_with(so_far.substr(0, std::min(so_far.size(), kV2Signature.size())))) {
    if (so_far.size() < smtp::kProxyV2Fixed) return smtp::kProxyV2Fixed - so_far.size();
    const std::size_t len =
        (static_cast<unsigned char>(so_far[14]) << 8) | static_cast<unsigned char>(so_far[15]);
    const std::size_t total = smtp::kProxyV2Fixed + len;
    return total > so_far.size() ? std::min(room, total - so_far.size()) : 1;
  }
  return 1;
}

awaitable<bool> FrontendSession::start_tls() {
  // The listener's context, from the generation this session holds.
  error_code ec = co_await sock_.handshake(*listener_->tls.context, asio::ssl::stream_base::server,
                                           cfg_->timeouts.tls_handshake);
  if (ec) {
    core_.shared().tls_handshake_failures.fetch_add(1, std::memory_order_relaxed);
    log::Record("tls_failed")
        .add("s", id())
        .add("listener", listener_->name)
        .add("client", client_ip_)
        .add("reason",
             ec == asio::error::timed_out ? std::string("handshake timed out") : ec.message())
        .emit(spdlog::level::info);
    co_return false;
  }
  tls_ = std::make_unique<net::TlsInfo>(net::tls_info(sock_.tls_handle()));
  core_.shared().tls_handshakes.fetch_add(1, std::memory_order_relaxed);
  log::Record("tls")
      .add("s", id())
      .add("client", client_ip_)
      .add("version", tls_->version)
      .add("cipher", tls_->cipher)
      .add("resumed", tls_->resumed ? "yes" : "no")
      .emit(spdlog::level::debug);
  co_return true;
}

void FrontendSession::discard_pipelined_before_tls() {
  if (!reader_.has_pending()) return;
  log::Record("starttls_pipelined")
      .add("s", id())
      .add("client", client_ip_)
      .add("discarded", static_cast<long long>(reader_.pending().size()))
      .emit(spdlog::level::warn);
  reader_.clear();
}

std::optional<smtp::Reply> FrontendSession::starttls_refusal() const {
  if (sock_.is_tls()) return replies::bad_sequence("TLS already active");
  if (listener_->tls.mode != config::TlsMode::kStartTls) return replies::tls_not_available();
  if (txn_) return replies::bad_sequence("STARTTLS inside a transaction");
  return std::nullopt;
}

std::optional<smtp::Reply> FrontendSession::auth_refusal() const {
  if (!listener_->auth || !cfg_->auth) return replies::bad_sequence("AUTH not available");
  // SECURITY.md 6: no password in plaintext, not even a wrong one.
  if (!sock_.is_tls()) return replies::auth_needs_tls();
  if (greeting_ != Greeting::kEhlo) return replies::bad_sequence("send EHLO first");
  if (!auth_user_.empty()) return replies::auth_already_done();
  if (txn_) return replies::bad_sequence("AUTH inside a transaction");
  return std::nullopt;
}

awaitable<smtp::Reply> FrontendSession::on_auth(const smtp::Command& cmd, bool& close) {
  auto& shared = core_.shared();
  if (!shared.auth_throttle->on_attempt(ip_, Clock::now()).allowed) {
    shared.auth_locked_out.fetch_add(1, std::memory_order_relaxed);
    log::Record("auth_refused")
        .add("s", id())
        .add("client", client_ip_)
        .add("reason", "too many failed attempts from this address")
        .emit(spdlog::level::warn);
    close = true;
    co_return replies::auth_too_many_failures();
  }
  smtp::sasl::AuthExchange exchange;
  smtp::sasl::Step step = exchange.start(cmd.auth_mechanism, cmd.auth_initial);
  // Challenges and responses; a response line may be longer than a command.
  const std::size_t command_max = reader_.max_line();
  reader_.set_max_line(smtp::sasl::kMaxAuthLine + 2);
  while (const auto* challenge = std::get_if<smtp::sasl::Challenge>(&step)) {
    queue(challenge->reply());
    std::string line;
    ReadResult rr = co_await read_line(line);
    if (rr == ReadResult::kTooLong) {
      step = replies::auth_line_too_long();
    } else if (rr != ReadResult::kLine) {
      // RFC 5321 3.8: shutting down, the session answers 421 wherever it
      // is, between a 334 and its response too; only a client that is gone
      // gets nothing.
      close = true;
      if (rr == ReadResult::kTimeout)
        step = replies::timeout();
      else if (rr == ReadResult::kShutdown)
        step = replies::shutting_down(cfg_->hostname);
      else
        step = smtp::Reply{};
    } else {
      step = exchange.respond(line);
    }
  }
  reader_.set_max_line(command_max);
  if (const auto* reply = std::get_if<smtp::Reply>(&step)) {
    // Malformed exchanges (bad base64, cancelled) are the client's errors;
    // a 535 from a malformed PLAIN counts as a failed password.
    if (reply->code == 535) co_return co_await auth_failure("", *reply);
    co_return *reply;
  }
  auto credentials = std::get<smtp::sasl::Credentials>(std::move(step));
  auth::Verdict verdict = co_await shared.verifier->verify(
      cfg_->auth->passwords, credentials.username, std::move(credentials.password));
  if (verdict == auth::Verdict::kBusy) {
    shared.auth_busy.fetch_add(1, std::memory_order_relaxed);
    co_return replies::auth_temporary_failure();
  }
  if (verdict == auth::Verdict::kRejected)
    co_return co_await auth_failure(credentials.username, replies::auth_failed());
  shared.auth_accepted.fetch_add(1, std::memory_order_relaxed);
  shared.auth_throttle->on_success(ip_);
  auth_user_ = credentials.username;
  log::Record("auth")
      .add("s", id())
      .add("client", client_ip_)
      .add("user", auth_user_)
      .add("mechanism", smtp::sasl::to_string(credentials.mechanism))
      .emit(spdlog::level::info);
  co_return replies::auth_succeeded();
}

awaitable<smtp::Reply> FrontendSession::auth_failure(std::string_view user, smtp::Reply reply) {
  auto& shared = core_.shared();
  shared.auth_failed.fetch_add(1, std::memory_order_relaxed);
  auto delay = shared.auth_throttle->on_failure(ip_, Clock::now());
  log::Record("auth_failed")
      .add("s", id())
      .add("client", client_ip_)
      .add("user", user)
      .add("delay_ms", static_cast<long long>(
                           std::chrono::duration_cast<std::chrono::milliseconds>(delay).count()))
      .emit(spdlog::level::warn);
  if (delay > Clock::duration::zero()) {
    // Bounded by the throttle's max_delay (30 s), and cut short by a
    // shutdown (on_shutdown), so that the 421 comes before the process
    // stops.
    asio::steady_timer timer(core_.io().get_executor(), delay);
    auth_delay_ = &timer;
    co_await timer.async_wait(use_nothrow);
    auth_delay_ = nullptr;
  }
  co_return reply;
}

void FrontendSession::forget_before_tls() {
  // RFC 3207 4.2: everything learnt before TLS is forgotten; the client
  // says EHLO again.
  greeting_ = Greeting::kNone;
  helo_name_.clear();
  auth_user_.clear();
}

void FrontendSession::start(std::unique_ptr<FrontendSession> s) {
  serve(std::move(s), true);
}

void FrontendSession::serve(std::unique_ptr<FrontendSession> s, bool fresh) {
  // The lambda owns the session while the coroutine runs, and hands it to
  // park() when the coroutine ends with the session waiting.
  auto& io = s->core_.io();
  asio::co_spawn(
      io,
      [s = std::move(s), fresh]() mutable -> awaitable<void> {
        bool parked = co_await s->run(fresh);
        if (parked) park(std::move(s));
      },
      asio::detached);
}

bool FrontendSession::can_park() const {
  // Under TLS, OpenSSL may hold decrypted bytes the socket does not show;
  // a transaction with a backend keeps its coroutine (rare while idle).
  return !reader_.has_pending() && !sock_.is_tls() && !tx_ && out_.empty();
}

void FrontendSession::park(std::unique_ptr<FrontendSession> s) {
  FrontendSession& self = *s;
  self.shrink_buffers();
  self.sock_.release_timer();
  auto left = std::chrono::duration_cast<Duration>(self.park_deadline_ - Clock::now());
  self.parked_at_ =
      self.core_.park(Clock::now() + self.read_bound(std::max(Duration(1), left)), &self);
  self.parked_ = true;
  self.sock_.socket().async_wait(
      tcp::socket::wait_read,
      asio::bind_allocator(ExactAllocator<void>(),
                           [s = std::move(s)](error_code ec) mutable { wake(std::move(s), ec); }));
}

void FrontendSession::wake(std::unique_ptr<FrontendSession> s, error_code ec) {
  // The same outcomes as a read_line wait's (timeout, shutdown, closed);
  // readable: read_line reads what came.
  s->idle_wait_ = false;
  if (s->parked_) s->core_.unpark(s->parked_at_);
  s->parked_ = false;
  // Like TimedSocket's deadline: a wait that ended on its own did not
  // time out.
  const bool expired = std::exchange(s->park_expired_, false);
  if (expired && ec == asio::error::operation_aborted)
    s->woke_ = ReadResult::kTimeout;
  else if (ec == asio::error::operation_aborted)
    s->woke_ = ReadResult::kShutdown;
  else if (ec)
    s->woke_ = ReadResult::kClosed;
  serve(std::move(s), false);
}

void FrontendSession::shrink_buffers() {
  // An empty string keeps its capacity; a copy of an empty reader has none
  // and keeps its state (the tail of an over-long line being skipped).
  std::string().swap(out_);
  reader_.clear();
  smtp::LineReader empty(reader_);
  std::swap(reader_, empty);
}

awaitable<bool> FrontendSession::run(bool fresh) {
  // One coroutine: GCC 12 built a separate one for the opening below with
  // a corrupt frame (`this` read from the wrong offset).
  if (fresh) {
    if (listener_->proxy_protocol && !co_await read_proxy_header()) {
      sock_.close();
      co_return false;
    }
    if (listener_->tls.mode == config::TlsMode::kImplicit && !co_await start_tls()) {
      sock_.close();
      co_return false;
    }
    log::Record("connect")
        .add("s", id())
        .add("listener", listener_->name)
        .add("client", client_ip_)
        .add("port", client_port_)
        .add("trusted", trusted_ ? "yes" : "no")
        .emit(spdlog::level::debug);
    queue(replies::banner(cfg_->hostname));
  }
  std::string line;
  for (;;) {
    ReadResult rr = co_await read_line(line, true);
    if (rr == ReadResult::kParked) co_return true;
    if (rr == ReadResult::kClosed) break;
    // A client that keeps input buffered never waits on a read: the
    // session's bound is checked per command too.
    if (rr == ReadResult::kLine && Clock::now() >= started_ + cfg_->timeouts.client_session)
      rr = ReadResult::kTimeout;
    if (rr == ReadResult::kTimeout) {
      core_.shared().count(Clock::now() >= started_ + cfg_->timeouts.client_session
                               ? runtime::Shared::Limit::kSessionTime
                               : runtime::Shared::Limit::kCommandTime);
      queue(replies::timeout());
      break;
    }
    if (rr == ReadResult::kShutdown) {
      queue(replies::shutting_down(cfg_->hostname));
      break;
    }
    smtp::Reply reply;
    bool close = false;
    smtp::Verb verb = smtp::Verb::kUnknown;
    if (rr == ReadResult::kTooLong) {
      reply = replies::line_too_long();
    } else {
      auto parsed = smtp::parse_command(line);
      if (parsed.command) verb = parsed.command->verb;
      if (line.size() + 2 > smtp::max_line_for(verb)) {
        reply = replies::line_too_long();
      } else if (parsed.error) {
        reply = *parsed.error;
      } else if (verb == smtp::Verb::kData) {
        reply = co_await on_data(close);
      } else if (verb == smtp::Verb::kAuth) {
        if (auto refusal = auth_refusal())
          reply = *refusal;
        else
          reply = co_await on_auth(*parsed.command, close);
      } else if (verb == smtp::Verb::kStartTls) {
        // Inline rather than a coroutine of its own: GCC 12 built one with a
        // corrupt frame (its resume index read from the wrong offset).
        if (auto refusal = starttls_refusal()) {
          reply = *refusal;
        } else {
          queue(replies::tls_ready());
          bool ok = co_await flush();
          discard_pipelined_before_tls();
          if (ok) ok = co_await start_tls();
          forget_before_tls();
          close = !ok;
        }
      } else {
        reply = co_await dispatch(*parsed.command);
      }
    }
    if (is_own_error(reply) && ++errors_ >= cfg_->limits.max_errors) {
      core_.shared().count(runtime::Shared::Limit::kErrors);
      queue(reply);
      queue(replies::too_many_errors());
      break;
    }
    if (reply.code != 0) queue(reply);
    if (close || verb == smtp::Verb::kQuit || reply.code == 421) break;
    if (out_.size() > kMaxQueuedReplies && !co_await flush()) break;
  }
  if (tx_) tx_->abort();
  if (txn_) co_await end_transaction();
  if (!out_.empty()) {
    // Bounded: a client that stopped reading does not hold the session.
    co_await sock_.write_all(out_, std::chrono::seconds(5));
  }
  sock_.close();
  co_return false;
}

smtp::Reply FrontendSession::ehlo_reply() const {
  smtp::Reply r;
  r.code = 250;
  r.lines = {cfg_->hostname, "PIPELINING", "SIZE " + std::to_string(cfg_->limits.max_message_size),
             "8BITMIME",     "SMTPUTF8",   "ENHANCEDSTATUSCODES"};
  if (listener_->tls.mode == config::TlsMode::kStartTls && !sock_.is_tls())
    r.lines.push_back("STARTTLS");
  // RFC 4954 4 / SECURITY.md 6: passwords only under TLS.
  if (listener_->auth && cfg_->auth && sock_.is_tls() && auth_user_.empty())
    r.lines.push_back("AUTH PLAIN LOGIN");
  return r;
}

std::string FrontendSession::protocol_name() const {
  // RFC 3848 / RFC 6531: S for TLS, A for an authenticated client.
  std::string suffix = std::string(sock_.is_tls() ? "S" : "") + (auth_user_.empty() ? "" : "A");
  if (txn_ && txn_->envelope.needs_smtputf8) return "UTF8SMTP" + suffix;
  if (greeting_ == Greeting::kEhlo) return "ESMTP" + suffix;
  return suffix.empty() ? "SMTP" : "ESMTP" + suffix;
}

awaitable<smtp::Reply> FrontendSession::dispatch(const smtp::Command& cmd) {
  using smtp::Verb;
  switch (cmd.verb) {
    case Verb::kHelo:
    case Verb::kEhlo:
      // RFC 5321 4.1.4: EHLO in the middle of a transaction resets it.
      if (txn_) co_await end_transaction();
      co_return on_helo(cmd);
    case Verb::kMail:
      co_return on_mail(cmd);
    case Verb::kRcpt:
      co_return co_await on_rcpt(cmd);
    case Verb::kRset:
      co_await end_transaction();
      co_return replies::reset_ok();
    case Verb::kNoop:
      co_return replies::noop_ok();
    case Verb::kHelp:
      co_return replies::help();
    case Verb::kVrfy:
      co_return replies::vrfy();
    case Verb::kQuit:
      co_return replies::closing(cfg_->hostname);
    case Verb::kStartTls:
      break;  // run() handles it: the session's stream changes
    case Verb::kAuth:
      break;  // run() handles it: it reads the client's responses
    case Verb::kBdat:
      // CHUNKING is not advertised (DESIGN.md), so BDAT is unknown.
      co_return replies::unknown_command();
    case Verb::kHttp:
      co_return replies::forbidden_protocol();
    case Verb::kData:
    case Verb::kUnknown:
      break;
  }
  co_return replies::unknown_command();
}

smtp::Reply FrontendSession::on_helo(const smtp::Command& cmd) {
  helo_name_ = cmd.domain;
  if (cmd.verb == smtp::Verb::kEhlo) {
    greeting_ = Greeting::kEhlo;
    return ehlo_reply();
  }
  greeting_ = Greeting::kHelo;
  return smtp::make_reply(250, "", cfg_->hostname);
}

void FrontendSession::adopt_current_view() {
  // A new transaction uses the configuration of the moment: a reload after
  // this session began takes effect here.  Nothing of the previous
  // transaction (tx_, pool_) points into the old view any more.
  const auto& current = core_.view();
  if (current == view_ || tx_) return;
  const config::Listener* l = current->cfg().find_listener(listener_->name);
  if (!l) return;  // cannot happen: a reload keeps every listener
  view_ = current;
  cfg_ = &view_->cfg();
  listener_ = l;
  trusted_ = is_trusted(*cfg_, ip_);
}

smtp::Reply FrontendSession::on_mail(const smtp::Command& cmd) {
  if (greeting_ == Greeting::kNone) return replies::bad_sequence("send EHLO first");
  if (txn_) return replies::bad_sequence("nested MAIL command");
  if (listener_->require_tls && !sock_.is_tls()) return replies::tls_required();
  if (!cmd.mail.smtputf8 && cmd.path.mailbox.has_non_ascii()) return replies::utf8_needs_smtputf8();
  // RFC 5321 3.2 / RFC 1869: service extensions are for a client that
  // said EHLO.  Taking them after HELO would promise what a backend greeted
  // the same way (XCLIENT re-greets with the client's verb) cannot keep.
  if (greeting_ == Greeting::kHelo && (cmd.mail.size || cmd.mail.body != smtp::Body::kUnspecified ||
                                       cmd.mail.smtputf8 || cmd.mail.auth_given))
    return replies::params_need_ehlo();
  adopt_current_view();
  if (listener_->role == config::Role::kSubmission && !trusted_ && auth_user_.empty())
    return replies::auth_required();
  if (cmd.mail.size && *cmd.mail.size > cfg_->limits.max_message_size)
    return replies::message_too_big();
  if (!trusted_ && !view_->gen->message_rate->allow(ip_, Clock::now())) {
    core_.shared().count(runtime::Shared::Limit::kMessageRate);
    return replies::message_rate_exceeded();
  }
  relay::Envelope env;
  env.sender = cmd.path;
  env.params = cmd.mail;
  // AUTH= from a client that did not authenticate is dropped (RFC 4954 5):
  // the relay rebuilds MAIL from these values and never sends it on.
  env.params.auth_given = false;
  env.needs_smtputf8 = cmd.mail.smtputf8;
  env.needs_8bitmime = cmd.mail.body == smtp::Body::k8BitMime;
  env.client.ip = ip_;
  env.client.port = client_port_;
  if (local_port_ == 0 && cfg_->proxy_identity_used) {
    // Only PROXY headers to backends need it: no getsockname otherwise.
    error_code ec;
    auto local = sock_.socket().local_endpoint(ec);
    if (!ec) {
      local_ip_ = ip_bytes(local);
      local_port_ = local.port();
    }
  }
  env.client.local_ip = local_ip_;
  env.client.local_port = local_port_;
  env.client.helo = helo_name_;
  env.client.proto = greeting_ == Greeting::kEhlo ? "ESMTP" : "SMTP";
  env.client.login = auth_user_;
  txn_ = std::make_unique<Transaction>();
  txn_->envelope = std::move(env);
  tx_logged_ = false;
  ++tx_count_;
  txn_->id = transaction_id(id(), tx_count_);
  txn_->started = Clock::now();
  return replies::sender_ok();
}

awaitable<std::optional<smtp::Reply>> FrontendSession::recipient_hosts(const config::Pool& p,
                                                                       const std::string& domain) {
  dns::Lookup* lookup = core_.lookup();
  if (!lookup) co_return replies::dns_temporary_failure();
  dns::MxTarget t = co_await lookup->mx_target(domain);
  std::optional<smtp::Reply> refusal;
  switch (t.kind) {
    case dns::MxTarget::Kind::kHosts:
      txn_->mx_pool = core_.recipient_pool(view_->gen->cfg, p, domain, t);
      if (!txn_->mx_pool) refusal = replies::no_mail_host();  // only our own listeners
      break;
    case dns::MxTarget::Kind::kNxDomain:
      refusal = replies::domain_not_found();
      break;
    case dns::MxTarget::Kind::kNullMx:
      refusal = replies::null_mx();
      break;
    case dns::MxTarget::Kind::kNoHosts:
      refusal = replies::no_mail_host();
      break;
    case dns::MxTarget::Kind::kTempFail:
    case dns::MxTarget::Kind::kCancelled:
      refusal = replies::dns_temporary_failure();
      break;
  }
  if (refusal) {
    log::Record("mx_lookup")
        .add("s", id())
        .add("t", txn_->id)
        .add("pool", p.name)
        .add("domain", domain)
        .add("result", dns::to_string(t.kind))
        .add("detail", t.detail)
        .add("reply", refusal->summary())
        .emit(spdlog::level::warn);
    co_return refusal;
  }
  txn_->mx_domain = domain;
  if (t.stale)
    log::Record("mx_lookup")
        .add("s", id())
        .add("t", txn_->id)
        .add("pool", p.name)
        .add("domain", domain)
        .add("result", "stale")
        .add("detail", "DNS refresh failed; using the last good answer")
        .emit(spdlog::level::warn);
  co_return std::nullopt;
}

awaitable<smtp::Reply> FrontendSession::on_rcpt(const smtp::Command& cmd) {
  if (!txn_) co_return replies::bad_sequence("need MAIL before RCPT");
  // max_recipients counts accepted recipients (RFC 5321 4.5.3.1.8); refused
  // ones are bounded too, so a client cannot probe addresses without end.
  if (static_cast<int>(txn_->accepted.size()) >= cfg_->limits.max_recipients ||
      rcpt_attempts_ >= cfg_->limits.max_recipients + kMaxRefusedRecipients)
    co_return replies::too_many_recipients();
  ++rcpt_attempts_;
  const smtp::Mailbox& rcpt = cmd.path.mailbox;
  if (!txn_->envelope.needs_smtputf8 && rcpt.has_non_ascii()) {
    txn_->refused.push_back(rcpt.str());
    co_return replies::utf8_needs_smtputf8();
  }
  // An authenticated client may relay, like a trusted one.
  if (check_recipient(*cfg_, listener_->role, trusted_ || !auth_user_.empty(), rcpt) ==
      Verdict::kRelayDenied) {
    txn_->refused.push_back(rcpt.str());
    log::Record("relay_denied")
        .add("s", id())
        .add("t", txn_->id)
        .add("client", client_ip_)
        .add("rcpt", rcpt.str())
        .emit();
    co_return replies::relay_denied();
  }
  std::string domain = routing_domain(*cfg_, rcpt);
  std::string sender_domain = smtp::ascii_lower(txn_->envelope.sender.mailbox.domain);
  const config::Route* route = view_->router.match({listener_->name, domain, sender_domain, ip_});
  upstream::PoolRuntime* pool = route ? view_->pool(route->pool) : nullptr;
  if (!pool) {
    txn_->refused.push_back(rcpt.str());
    co_return smtp::make_reply(550, "5.7.1", "No route for this recipient");
  }
  if (pool->cfg->mx == config::MxMode::kRecipient) {
    if (pool_ && pool_->cfg != pool->cfg) {
      txn_->refused.push_back(rcpt.str());
      co_return replies::other_pool();
    }
    if (pool_) {
      // The transaction's hosts are its first recipient domain's.
      if (domain != txn_->mx_domain) {
        txn_->refused.push_back(rcpt.str());
        co_return replies::other_domain();
      }
      pool = pool_;
    } else {
      auto reply = co_await recipient_hosts(*pool->cfg, domain);
      if (reply) {
        txn_->refused.push_back(rcpt.str());
        co_return *reply;
      }
      pool = txn_->mx_pool.get();
    }
  }
  if (pool_ && pool != pool_) {
    txn_->refused.push_back(rcpt.str());
    co_return replies::other_pool();
  }
  if (!tx_) {
    pool_ = pool;
    tx_ = std::make_unique<relay::RelayTransaction>(core_.io().get_executor(), *cfg_, *pool,
                                                    txn_->envelope, txn_->id);
    tx_->set_client_gone_check([this] { return sock_.peek() == net::TimedSocket::Peek::kClosed; });
  }
  smtp::Reply r = co_await tx_->rcpt(cmd.path);
  if (r.positive())
    txn_->accepted.push_back(rcpt.str());
  else
    txn_->refused.push_back(rcpt.str());
  co_return r;
}

awaitable<smtp::Reply> FrontendSession::on_data(bool& close) {
  if (!txn_) co_return replies::bad_sequence("need MAIL and RCPT before DATA");
  if (txn_->accepted.empty()) {
    if (rcpt_attempts_ == 0) co_return replies::bad_sequence("need RCPT before DATA");
    co_return replies::no_valid_recipients();
  }
  smtp::Reply r = co_await tx_->data();
  if (r.code != 354) {
    log_transaction(r, "refused_at_data");
    co_await end_transaction();
    co_return r;
  }
  queue(r);
  if (!co_await flush()) {
    tx_->abort();
    close = true;
    co_return smtp::Reply{};
  }
  ReceivedInfo ri;
  ri.helo = helo_name_;
  ri.client_ip = client_ip_;
  ri.hostname = cfg_->hostname;
  ri.protocol = protocol_name();
  if (tls_ && !tls_->version.empty()) ri.tls = tls_->version + " with cipher " + tls_->cipher;
  ri.id = txn_->id;
  if (txn_->accepted.size() == 1) ri.recipient = txn_->accepted.front();
  ri.when = std::chrono::system_clock::now();
  co_await tx_->data_chunk(received_field(ri));

  enum class Refusal { kNone, kTooBig, kBareLineEnding, kLongLine };
  Refusal refusal = Refusal::kNone;
  const bool normalize = cfg_->limits.bare_line_endings == config::BareLineEndings::kNormalize;
  // Strict input (the default, bare line endings refused) is decoded
  // straight to its wire form, one pass and one copy per byte; only
  // `normalize` needs the content on its own, to re-encode it.
  smtp::DataDecoder decoder(
      normalize ? smtp::DataDecoder::Output::kContent : smtp::DataDecoder::Output::kWire,
      cfg_->limits.max_line_length);
  smtp::DataEncoder encoder;
  std::string content;
  relay::CachedBuffer wire_buffer;  // reused across messages: no regrowth
  std::string& wire = *wire_buffer;
  std::string& decoded = normalize ? content : wire;
  const auto data_deadline = Clock::now() + cfg_->timeouts.client_data_total;

  // Bytes the client pipelined behind DATA are the start of the message;
  // after them, each read is decoded where it landed (the core's scratch
  // area) before the next wait, without a copy of its own.
  const std::string pipelined(reader_.pending());
  std::string_view chunk = pipelined;
  reader_.clear();
  for (;;) {
    if (!chunk.empty()) {
      auto res = decoder.feed(chunk, decoded);
      if (res.done) reader_.append(chunk.substr(res.consumed));
      if (refusal == Refusal::kNone) {
        if (decoder.content_size() > cfg_->limits.max_message_size)
          refusal = Refusal::kTooBig;
        else if (decoder.saw_bare_line_ending() && !normalize)
          refusal = Refusal::kBareLineEnding;
        else if (decoder.saw_long_line())
          refusal = Refusal::kLongLine;
        if (refusal != Refusal::kNone) {
          tx_->abort();
        } else {
          if (normalize) encoder.encode(content, wire);
          co_await tx_->data_chunk(wire);
        }
      }
      content.clear();
      wire.clear();
      if (res.done) break;
    }
    if (forced_) {
      tx_->abort();
      log_transaction(smtp::Reply{}, "shutdown");
      close = true;
      co_return replies::shutting_down(cfg_->hostname);
    }
    auto left = std::chrono::duration_cast<Duration>(data_deadline - Clock::now());
    auto [ec, n] = co_await read_input(
        read_bound(std::max(Duration(1), std::min(cfg_->timeouts.client_data, left))));
    if (ec) {
      // Client gone or too slow in mid-DATA: nothing is delivered.
      tx_->abort();
      log_transaction(smtp::Reply{}, ec == asio::error::timed_out           ? "client_timeout"
                                     : ec == asio::error::operation_aborted ? "shutdown"
                                                                            : "client_gone");
      close = true;
      if (ec == asio::error::timed_out) {
        core_.shared().count(Clock::now() >= started_ + cfg_->timeouts.client_session
                                 ? runtime::Shared::Limit::kSessionTime
                                 : runtime::Shared::Limit::kDataTime);
        co_return replies::timeout();
      }
      if (ec == asio::error::operation_aborted) co_return replies::shutting_down(cfg_->hostname);
      co_return smtp::Reply{};
    }
    chunk = std::string_view(input(), n);
  }

  smtp::Reply final_reply;
  const char* result = "refused";
  switch (refusal) {
    case Refusal::kTooBig:
      final_reply = replies::message_too_big();
      break;
    case Refusal::kBareLineEnding:
      final_reply = replies::bare_line_ending_in_data();
      break;
    case Refusal::kLongLine:
      final_reply = replies::text_line_too_long();
      break;
    case Refusal::kNone: {
      smtp::Reply backend_reply = co_await tx_->finish();
      if (backend_reply.positive()) {
        final_reply = smtp::make_reply(250, "2.0.0", "OK queued as " + txn_->id);
        result = "delivered";
      } else if (tx_->client_gone()) {
        // No replay was made for a client that hung up: nobody hears this.
        final_reply = backend_reply;
        result = "client_gone";
        close = true;
      } else {
        final_reply = backend_reply;
        result = backend_reply.permanent() ? "rejected" : "deferred";
      }
      break;
    }
  }
  // Counted whatever the outcome: after a 451 the client sends it again.
  if (tx_->possible_duplicate())
    core_.shared().possible_duplicates.fetch_add(1, std::memory_order_relaxed);
  log_transaction(final_reply, result);
  const bool delivered = std::string_view(result) == "delivered";
  const std::string id = txn_->id;
  const bool counted = tx_->possible_duplicate();
  co_await end_transaction();
  if (delivered) {
    // A backend has the message; a client that never gets this 250 will
    // send it again: that copy is a possible duplicate, counted as such.
    queue(final_reply);
    if (!co_await flush()) {
      if (!counted) core_.shared().possible_duplicates.fetch_add(1, std::memory_order_relaxed);
      log::Record("reply_lost")
          .add("s", this->id())
          .add("t", id)
          .add("reply", final_reply.summary())
          .add("possible_duplicate", "yes")
          .add("detail", "delivered, but the 250 could not be written to the client")
          .emit(spdlog::level::warn);
      close = true;
    }
    co_return smtp::Reply{};
  }
  co_return final_reply;
}

awaitable<void> FrontendSession::end_transaction() {
  // A transaction that ends before its data (every RCPT refused, RSET,
  // QUIT, the client gone) is logged too, once: an operator looking for a
  // message must find what became of it.
  if (txn_ && !tx_logged_ && rcpt_attempts_ > 0) log_transaction(smtp::Reply{}, "abandoned");
  if (tx_) {
    co_await tx_->release();
    tx_.reset();
  }
  txn_.reset();
  pool_ = nullptr;
  rcpt_attempts_ = 0;
}

void FrontendSession::log_transaction(const smtp::Reply& final_reply, const char* result) {
  tx_logged_ = true;
  auto join = [](const std::vector<std::string>& v) {
    std::string s;
    for (const auto& x : v) s += (s.empty() ? "" : ",") + x;
    return s;
  };
  std::string tried;
  if (tx_) {
    for (const auto& a : tx_->attempts()) {
      if (!tried.empty()) tried += ',';
      tried += a.backend + ":" + upstream::to_string(a.failure);
    }
  }
  auto us = std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - txn_->started);
  core_.shared().metrics->count_transaction(
      *view_->gen->metrics, listener_->name,
      pool_ && pool_->cfg ? std::string_view(pool_->cfg->name) : "",
      tx_ ? std::string_view(tx_->backend_name()) : "", result,
      static_cast<double>(us.count()) / 1e6);
  log::Record rec("transaction");
  rec.add("s", id())
      .add("t", txn_->id)
      .add("listener", listener_->name)
      .add("client", client_ip_)
      .add("helo", helo_name_)
      .add("user", auth_user_)
      .add("from", txn_ ? txn_->envelope.sender.str() : "")
      .add("pool", pool_ && pool_->cfg ? pool_->cfg->name : "")
      .add("rcpts", join(txn_->accepted))
      .add("refused", join(txn_->refused))
      .add("size", static_cast<long long>(tx_ ? tx_->data_size() : 0))
      .add("tried", tried)
      .add("backend", tx_ ? tx_->backend_name() : "")
      .add("queue_id", tx_ ? tx_->queue_id() : "")
      .add("result", result)
      .add("reply", final_reply.code ? final_reply.summary() : "");
  if (tx_ && tx_->possible_duplicate()) rec.add("possible_duplicate", "yes");
  rec.add("us", static_cast<long long>(us.count()));
  rec.emit();
}

}  // namespace smtplb::server
