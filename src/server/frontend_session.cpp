// frontend_session.cpp: the command loop and the connection's I/O:
// reading lines under their deadlines, queueing and flushing replies
// (RFC 2920 pipelining), parking an idle session without a coroutine, and
// carrying out what the session machine decides for each command.  The
// other parts of the session are in files of their own (see the header).
#include "server/frontend_session.hpp"

#include <algorithm>

#include "log/log.hpp"
#include "server/policy.hpp"
#include "smtp/replies.hpp"

namespace smtplb::server {

namespace replies = smtp::replies;

namespace {

// Replies are flushed early once this much is queued: a client that
// pipelines and never reads stalls on our write, not our memory.
constexpr std::size_t kMaxQueuedReplies = 64 * 1024;

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

// Too long for its verb: 500 5.5.2, or AUTH's own 500 5.5.6 (RFC 4954 4,
// DESIGN.md).
smtp::Reply too_long_for(smtp::Verb verb) {
  return verb == smtp::Verb::kAuth ? replies::auth_line_too_long() : replies::line_too_long();
}

// A line as a command, or the reply that refuses it before the session
// machine sees it (too long, unparsable).  `line`: the line, or when
// `too_long` (over what the reader takes), its head.
smtp::ParseResult parse_line(bool too_long, std::string_view line) {
  // The verb is read once (parse_command names the same one).
  const smtp::Verb verb = smtp::verb_of(line);
  // An HTTP request line is a cross-protocol attack whatever its length
  // (SECURITY.md 2): answered as a mere over-long line, an SSRF URL would
  // keep the session open for the SMTP commands in the request's body.
  if (verb == smtp::Verb::kHttp) return smtp::parse_command(line);
  smtp::ParseResult p;
  if (too_long || line.size() + 2 > smtp::max_line_for(verb)) {
    p.error = too_long_for(verb);
    return p;
  }
  return smtp::parse_command(line);
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
  ip_ = net::IpAddress(peer);
  client_ip_ = ip_.text();
  client_port_ = peer.port();

  refresh_trust();
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
  if (relaying()) relay().cancel();
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
    if (item.kind == smtp::LineReader::Kind::kTooLong) {
      line.assign(item.head);  // whose line it was: the verb picks the reply
      co_return ReadResult::kTooLong;
    }
    // About to wait for the client: the replies so far go out now.
    if (!co_await flush()) co_return ReadResult::kClosed;
    const bool idle = !machine_.in_transaction();
    if (forced_ || (core_.shutting_down() && idle)) co_return ReadResult::kShutdown;
    idle_wait_ = idle;
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
  return !reader_.has_pending() && !sock_.is_tls() && !relaying() && out_.empty();
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
  // a corrupt frame (`this` read from the wrong offset): a co_await in an
  // `if` condition of a coroutine with no local variable (GCC PR 106188);
  // run() has locals.  Reproducer: Gcc12Coroutines.CoAwaitInAnIfCondition*
  // in tests/unit/compiler/gcc12_coroutine_test.cpp.
  if (fresh) {
    if (listener_->proxy_protocol && !co_await read_proxy_header()) {
      sock_.close();
      co_return false;
    }
    if (listener_->tls.mode == config::TlsMode::kImplicit && !co_await start_tls()) {
      sock_.close();
      co_return false;
    }
    log_connect();
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
    if (rr == ReadResult::kTimeout || rr == ReadResult::kShutdown) {
      queue(input_ended(rr));
      break;
    }
    smtp::ParseResult parsed = parse_line(rr == ReadResult::kTooLong, line);
    smtp::Reply reply;
    bool close = false;
    if (parsed.error) {
      reply = std::move(*parsed.error);
    } else {
      // A new transaction uses the configuration of the moment.
      if (parsed.command->verb == smtp::Verb::kMail &&
          machine_.state() == smtp::SessionState::kGreeted)
        adopt_current_view();
      const smtp::SessionState before = machine_.state();
      smtp::Step step = machine_.step(*parsed.command, facts());
      if (step.action == smtp::Action::kStartTls) {
        // Inline rather than a coroutine of its own: GCC 12 built one with a
        // corrupt frame (its resume index read from the wrong offset), the
        // bug of Gcc12Coroutines.CoAwaitInAnIfCondition* in
        // tests/unit/compiler/gcc12_coroutine_test.cpp.
        queue(step.reply);
        bool ok = co_await flush();
        discard_pipelined_before_tls();
        if (ok) ok = co_await start_tls();
        forget_before_tls();
        machine_.tls_result(ok);
        close = !ok;
      } else {
        reply = co_await dispatch(*parsed.command, step, close);
      }
      trace_state(before, parsed.command->verb);
    }
    if (too_many_errors(reply)) {
      queue(reply);
      queue(replies::too_many_errors());
      break;
    }
    if (reply.code != 0) queue(reply);
    if (close || machine_.state() == smtp::SessionState::kClosed || reply.code == 421) break;
    if (out_.size() > kMaxQueuedReplies && !co_await flush()) break;
  }
  if (relaying()) relay().abort();
  if (txn_) co_await end_transaction();
  machine_.close();
  if (!out_.empty()) {
    // Bounded: a client that stopped reading does not hold the session.
    co_await sock_.write_all(out_, std::chrono::seconds(5));
  }
  sock_.close();
  co_return false;
}

smtp::SessionFacts FrontendSession::facts() const {
  smtp::SessionFacts f;
  f.hostname = cfg_->hostname;
  f.max_message_size = cfg_->limits.max_message_size;
  f.max_recipients = cfg_->limits.max_recipients;
  f.tls_offered = listener_->tls.mode == config::TlsMode::kStartTls;
  f.tls_active = sock_.is_tls();
  f.tls_required = listener_->require_tls;
  f.auth_offered = listener_->auth && cfg_->auth;
  f.submission = listener_->role == config::Role::kSubmission;
  f.trusted = trusted_;
  return f;
}

smtp::Reply FrontendSession::input_ended(ReadResult rr) {
  if (rr == ReadResult::kShutdown) return replies::shutting_down(cfg_->hostname);
  core_.shared().sessions.count(Clock::now() >= started_ + cfg_->timeouts.client_session
                                    ? server::SessionCounters::Limit::kSessionTime
                                    : server::SessionCounters::Limit::kCommandTime);
  return replies::timeout();
}

bool FrontendSession::too_many_errors(const smtp::Reply& reply) {
  if (!is_own_error(reply) || ++errors_ < cfg_->limits.max_errors) return false;
  core_.shared().sessions.count(server::SessionCounters::Limit::kErrors);
  return true;
}

awaitable<smtp::Reply> FrontendSession::dispatch(const smtp::Command& cmd, smtp::Step& step,
                                                 bool& close) {
  using smtp::Action;
  switch (step.action) {
    case Action::kReply:
    case Action::kStartTls:  // run()'s: the session's stream changes
      break;
    case Action::kGreet:
      // RFC 5321 4.1.4: EHLO in the middle of a transaction resets it
      // (logged under the name the transaction began with).
      if (txn_) co_await end_transaction();
      helo_name_ = cmd.domain;
      break;
    case Action::kReset:
      co_await end_transaction();
      break;
    case Action::kQuit:
      close = true;
      break;
    case Action::kRelayMail:
      co_return on_mail(cmd);
    case Action::kRelayRcpt: {
      smtp::Reply r = co_await on_rcpt(cmd);
      machine_.rcpt_result(r.positive());
      co_return r;
    }
    case Action::kStartData:
      co_return co_await on_data(close);
    case Action::kStartAuth: {
      smtp::Reply r = co_await on_auth(cmd, close);
      smtp::AuthOutcome outcome = smtp::AuthOutcome::kRefused;
      if (close)
        outcome = smtp::AuthOutcome::kClosed;
      else if (!auth_user_.empty())
        outcome = smtp::AuthOutcome::kAuthenticated;
      machine_.auth_result(outcome);
      co_return r;
    }
  }
  co_return std::move(step.reply);
}

}  // namespace smtplb::server
