// relay_acquire.cpp: how a transaction gets a backend session with MAIL
// and its accepted recipients done -- the walk over the pool's candidates,
// pooled or new sessions, XCLIENT, the pipelined MAIL/RCPT group -- and what
// each answer there means (relay/replay_policy.hpp).  The client-facing
// steps (RCPT, DATA, the data, the final dot) are in relay_transaction.cpp.
#include <algorithm>

#include "log/log.hpp"
#include "net/clock.hpp"
#include "relay/relay_transaction.hpp"
#include "relay/reply_helpers.hpp"
#include "relay/transaction.hpp"
#include "smtp/replies.hpp"

namespace smtplb::relay {

namespace {

// How often a transaction waiting for room at its pool's backends looks again.
constexpr std::chrono::milliseconds kLimitPoll{20};

}  // namespace

awaitable<std::optional<smtp::Reply>> RelayTransaction::acquire(
    const smtp::Path* pending, std::optional<upstream::CommandResult>* pending_result) {
  if (mail_refusal_) co_return *mail_refusal_;
  if (cancelled_) co_return smtp::replies::shutting_down(cfg_.hostname);
  walk_.wait_until(Clock::now() + cfg_.timeouts.pool_wait);
  for (;;) {
    if (!attempts_.empty() && check_client_gone()) co_return smtp::replies::no_backend();
    const auto now = Clock::now();
    const auto step = walk_.next(
        now, [&](int i) { return pool_.states[i]->usable(now); },
        [&](int i) { return pool_.states[i]->admin() == balance::AdminState::kReady; },
        [&](int i) { return pool_.states[i]->try_rate(now); });
    if (step.kind == balance::CandidateWalk::Step::kExhausted) break;
    if (step.kind == balance::CandidateWalk::Step::kPoolFull) co_return smtp::replies::pool_full();
    if (step.kind == balance::CandidateWalk::Step::kWait) {
      if (past_deadline()) co_return smtp::replies::pool_full();
      Timer t(ex_, kLimitPoll);
      co_await t.async_wait(use_nothrow);
      if (cancelled_) co_return smtp::replies::shutting_down(cfg_.hostname);
      walk_.again();
      continue;
    }
    if (past_deadline()) co_return smtp::replies::backend_deadline();
    const Took took = co_await try_backend(*pool_.backends[step.backend], pending, pending_result);
    if (took == Took::kSession) co_return std::nullopt;
    if (took == Took::kRefusal) co_return *mail_refusal_;
  }
  if (past_deadline()) co_return smtp::replies::backend_deadline();
  bool only_incapable = !attempts_.empty();
  bool only_local = !attempts_.empty();
  for (const auto& a : attempts_) {
    only_incapable = only_incapable && a.failure == upstream::Failure::kNotCapable;
    only_local = only_local && a.failure == upstream::Failure::kLocalLimit;
  }
  // Out of descriptors here: no backend was at fault, the client retries.
  if (only_local) co_return smtp::replies::local_error();
  if (!only_incapable) co_return smtp::replies::no_backend();
  // Every backend answered and none offers what the message needs: a
  // retry would meet the same pool, so the answer is permanent.
  if (lacked_smtputf8_) co_return smtp::replies::no_smtputf8_backend();
  if (env_.needs_8bitmime && !seven_bit_) {
    // RFC 6152 3: 8-bit data never goes to a server without 8BITMIME, but
    // a message declared 8BITMIME may well be 7-bit: send it as such, and
    // refuse it (554 5.6.3) at the end if a byte has its high bit set.
    seven_bit_ = true;
    restart_walk();
    co_return co_await acquire(pending, pending_result);
  }
  co_return smtp::replies::no_capable_backend();
}

awaitable<RelayTransaction::Took> RelayTransaction::try_backend(
    upstream::BackendRuntime& b, const smtp::Path* pending,
    std::optional<upstream::CommandResult>* pending_result) {
  current_ = &b;
  upstream::Failure why = upstream::Failure::kNone;
  std::string detail;
  session_ = co_await get_session(b, why, detail);
  if (!session_ && why == upstream::Failure::kAtLimit) {
    // Every session it may have is busy: room, not health.
    walk_.no_room();
    current_ = nullptr;
    co_return Took::kNext;
  }
  if (!session_) {
    log_unusable(b, why, detail);
    fail_backend(why, detail);
    co_return Took::kNext;
  }
  if (lacks_extension(session_->offered())) {
    // Never downgrade: RFC 6531 3.4 and RFC 6152 3 forbid sending such
    // mail to a server that did not offer the extension.
    set_aside_incapable(b);
    co_return Took::kNext;
  }
  if (pending_result) pending_result->reset();
  first_hand_ = txn_.accepted().empty();
  Started st = co_await start_transaction(*session_, pending, pending_result);
  co_return co_await settle(b, st);
}

awaitable<RelayTransaction::Took> RelayTransaction::settle(upstream::BackendRuntime& b,
                                                           const Started& st) {
  const Decision& d = st.decision;
  if (st.stale) {
    // The same backend again, on another pooled session or a new one.
    session_->close();
    session_.reset();
    current_ = nullptr;
    walk_.same_again();
    co_return Took::kNext;
  }
  if (d.verdict == Verdict::kProceed) {
    in_flight_ = balance::InFlight(*b.state);
    if (b.state->record_success())
      log::Record("backend_up", txn_.scope())
          .add("pool", b.state->pool())
          .add("backend", b.state->name())
          .emit();
    clean_ = false;
    co_return Took::kSession;
  }
  if (d.why == upstream::Failure::kNotCapable) {
    set_aside_incapable(b);
    co_return Took::kNext;
  }
  const bool in_step = session_->is_open() && d.why != upstream::Failure::kProtocol;
  if (in_step && (d.verdict == Verdict::kAnswer || d.why == upstream::Failure::kPermanent ||
                  d.why == upstream::Failure::kRecipientRefused)) {
    // The backend is healthy and disagrees: its session is fine for the
    // next transaction.
    attempts_.push_back({b.state->name(), d.why, st.reply.summary()});
    auto rset = co_await session_->command("RSET\r\n", bound(cfg_.timeouts.backend_reply));
    if (rset.failure == upstream::Failure::kNone && rset.reply.code == 250)
      put_back(b, std::move(session_));
    session_.reset();
    current_ = nullptr;
    if (d.verdict != Verdict::kAnswer) co_return Took::kNext;  // a replay backend's refusal
    // A first-hand backend's answer about this sender is final (DESIGN.md:
    // a 5xx to MAIL reaches the client) for the whole transaction.
    mail_refusal_ = with_enhanced(st.reply, "2.1.0");
    co_return Took::kRefusal;
  }
  if (!st.detail.empty()) log_unusable(b, d.why, st.detail);
  leave(d, !st.detail.empty() ? st.detail : st.reply.code ? st.reply.summary() : "");
  co_return Took::kNext;
}

void RelayTransaction::set_aside_incapable(upstream::BackendRuntime& b) {
  attempts_.push_back({b.state->name(), upstream::Failure::kNotCapable, "lacks SMTPUTF8/8BITMIME"});
  put_back(b, std::move(session_));
  current_ = nullptr;
  walk_.uncounted();  // a capability mismatch is no failed attempt
}

awaitable<std::unique_ptr<upstream::BackendSession>> RelayTransaction::get_session(
    upstream::BackendRuntime& b, upstream::Failure& why, std::string& detail) {
  // A pooled session first; RSET proves it is alive.  One the backend
  // closed meanwhile costs only the reconnect.  One that stalls or answers
  // 421 means the backend itself is in trouble: its other idle sessions
  // are dropped and the backend is left, so a hung backend cannot eat the
  // transaction's deadline one pooled session at a time.  A PROXY
  // backend's sessions are never pooled (each names its one client).
  const config::Identity identity = b.state->config().identity;
  while (auto s =
             upstream::one_client_per_connection(identity) ? nullptr : b.idle.take(Clock::now())) {
    if (s->caps().pipelining) {
      s->rset_pending = true;  // sent with MAIL (start_transaction)
      co_return std::move(s);
    }
    auto r = co_await s->command("RSET\r\n", bound(cfg_.timeouts.backend_reply));
    if (r.failure == upstream::Failure::kNone && r.reply.code == 250 && !s->has_unsolicited_input())
      co_return std::move(s);
    s->close();
    if (r.failure == upstream::Failure::kStalled || r.reply.code == 421) {
      for (auto& idle : b.idle.drain_all()) idle->close();
      why = r.failure == upstream::Failure::kStalled ? upstream::Failure::kStalled
                                                     : upstream::Failure::kShuttingDown;
      co_return nullptr;
    }
  }
  if (!b.state->try_open_session()) {
    why = upstream::Failure::kAtLimit;
    co_return nullptr;
  }
  auto s = std::make_unique<upstream::BackendSession>(ex_, *b.state, cfg_);
  s->hold_slot();
  // `identity: proxy_v1|proxy_v2`: this client's header, first thing on
  // the connection (SECURITY.md 5).
  why = co_await s->open(b.endpoint, &env_.client);
  if (why != upstream::Failure::kNone) {
    detail = s->failure_detail();
    if (detail.empty() && s->open_reply().code) detail = s->open_reply().summary();
    co_return nullptr;
  }
  co_return std::move(s);
}

void RelayTransaction::put_back(upstream::BackendRuntime& b,
                                std::unique_ptr<upstream::BackendSession> s) {
  if (s->poolable()) {
    b.idle.give_back(std::move(s));
    return;
  }
  retire(b, std::move(s));
}

void RelayTransaction::retire(upstream::BackendRuntime& b,
                              std::unique_ptr<upstream::BackendSession> s) {
  // A PROXY connection names one client and never carries another: it is
  // closed after its transaction instead of going back to the pool (so is
  // an XCLIENT one that may not send XCLIENT again).  The cost: a connect,
  // a banner and an EHLO (and a handshake, resumed, with TLS) per
  // transaction to such a backend.  Its QUIT runs off the client's path
  // (the client's next reply does not wait for it); the session keeps its
  // backend's state alive until then, as Core::quit_idle does.
  asio::co_spawn(
      ex_,
      [s = std::move(s), state = b.state_owner]() mutable -> awaitable<void> {
        co_await s->quit();
        s.reset();  // before `state`: captures go in no set order
      },
      asio::detached);
}

void RelayTransaction::log_unusable(const upstream::BackendRuntime& b, upstream::Failure f,
                                    const std::string& detail) const {
  // Each time, not only when the backend goes down: an operator must see
  // why a backend that accepts connections takes no mail (a certificate
  // that does not verify, XCLIENT not offered to smtplb's address).
  const char* event = nullptr;
  if (f == upstream::Failure::kTls)
    event = "backend_tls_failed";
  else if (f == upstream::Failure::kNoXclient || f == upstream::Failure::kXclientRefused)
    event = "backend_xclient_failed";
  if (!event) return;
  log::Record(event, txn_.scope())
      .add("pool", b.state->pool())
      .add("backend", b.state->name())
      .add("reason", to_string(f))
      .add("detail", detail)
      .emit(spdlog::level::warn);
}

std::string RelayTransaction::mail_line(const upstream::Capabilities& caps) const {
  std::string line = "MAIL FROM:<" + env_.sender.str() + ">";
  if (caps.size && env_.params.size) line += " SIZE=" + std::to_string(*env_.params.size);
  if (caps.eightbitmime && env_.params.body == smtp::Body::k8BitMime) line += " BODY=8BITMIME";
  if (caps.eightbitmime && env_.params.body == smtp::Body::k7Bit) line += " BODY=7BIT";
  if (env_.needs_smtputf8) line += " SMTPUTF8";
  line += "\r\n";
  return line;
}

bool RelayTransaction::lacks_extension(const upstream::Capabilities& caps) {
  if (env_.needs_smtputf8 && !caps.smtputf8) {
    lacked_smtputf8_ = true;
    return true;
  }
  return env_.needs_8bitmime && !caps.eightbitmime && !seven_bit_;
}

awaitable<RelayTransaction::Started> RelayTransaction::start_transaction(
    upstream::BackendSession& s, const smtp::Path* pending,
    std::optional<upstream::CommandResult>* pending_result) {
  const Duration d = bound(cfg_.timeouts.backend_reply);
  Started st;
  if (s.identity() == config::Identity::kXclient) {
    // Before each MAIL, on a new and on a pooled session alike (SECURITY.md
    // 5): the attributes last for the connection, and a pooled connection
    // carried other clients before.  A pooled session is clean (given back
    // only after RSET or a final reply), and XCLIENT both resets it and
    // proves it alive, so it needs no RSET of its own.  Cost: one round
    // trip per XCLIENT line and one for the EHLO after it, per transaction.
    s.rset_pending = false;
    upstream::Failure xf = co_await s.send_xclient(env_.client, d);
    if (xf != upstream::Failure::kNone) {
      // A pooled session the backend closed meanwhile costs a reconnect.
      // So does one whose authorization the last client changed (see
      // BackendSession::poolable): a fresh connection tells.
      st.stale = s.reused &&
                 (xf == upstream::Failure::kDropped || xf == upstream::Failure::kXclientRefused);
      st.detail = s.failure_detail();
      st.decision = {Verdict::kReplay, xf,
                     upstream::counts_against_backend(xf) ? Health::kCharge : Health::kNone};
      co_return st;
    }
  }
  // After XCLIENT's EHLO: the capabilities the backend now offers (to
  // this client; never a silent downgrade, as in acquire()).
  if (lacks_extension(s.caps())) {
    st.decision = {Verdict::kReplay, upstream::Failure::kNotCapable, Health::kNone};
    co_return st;
  }
  if (s.caps().pipelining) co_return co_await start_pipelined(s, pending, pending_result);
  auto m = co_await s.command(mail_line(s.caps()), d);
  st.reply = m.reply;
  st.decision = judge(Stage::kMail, m);
  if (st.decision.verdict != Verdict::kProceed) co_return st;
  for (const auto& rcpt : txn_.accepted()) {
    auto r = co_await s.command("RCPT TO:<" + rcpt.str() + ">\r\n", d);
    st.reply = r.reply;
    st.decision = judge(Stage::kReplayedRcpt, r);
    if (st.decision.verdict != Verdict::kProceed) co_return st;
  }
  co_return st;
}

awaitable<RelayTransaction::Started> RelayTransaction::start_pipelined(
    upstream::BackendSession& s, const smtp::Path* pending,
    std::optional<upstream::CommandResult>* pending_result) {
  using upstream::Failure;
  const Duration d = bound(cfg_.timeouts.backend_reply);
  Started st;
  // RFC 2920: (RSET,) MAIL and the RCPTs in one write, replies read in order.
  const bool rset = std::exchange(s.rset_pending, false);
  std::string batch = rset ? "RSET\r\n" + mail_line(s.caps()) : mail_line(s.caps());
  for (const auto& r : txn_.accepted()) batch += "RCPT TO:<" + r.str() + ">\r\n";
  if (pending) batch += "RCPT TO:<" + pending->str() + ">\r\n";
  Failure sent = co_await s.send(batch, d);
  if (rset) {
    // A pooled session the backend closed meanwhile costs a reconnect,
    // never the backend's standing; a stall or a 421 is the backend's.
    // (No co_await inside ?: here: g++ 12 miscompiles it.)
    upstream::CommandResult r{sent, {}};
    if (sent == Failure::kNone) r = co_await s.read_reply(d);
    if (r.failure == Failure::kStalled || (r.failure == Failure::kNone && r.reply.code == 421)) {
      st.decision = judge(Stage::kGreeting, r);
      co_return st;
    }
    st.stale = r.failure != Failure::kNone || r.reply.code != 250;
    if (st.stale) co_return st;
  }
  auto m = upstream::CommandResult{sent, {}};
  if (sent == Failure::kNone) m = co_await s.read_reply(d);
  st.reply = m.reply;
  st.decision = judge(Stage::kMail, m);
  if (m.failure != Failure::kNone) co_return st;
  // Every pipelined command gets its reply read, whatever MAIL's was; the
  // first that keeps this backend from the transaction decides.
  for (std::size_t i = 0; i < txn_.accepted().size(); ++i) {
    auto r = co_await s.read_reply(d);
    const Decision rd = judge(Stage::kReplayedRcpt, r);
    const bool decides = r.failure != Failure::kNone || st.decision.verdict == Verdict::kProceed;
    if (decides && rd.verdict != Verdict::kProceed) {
      st.decision = rd;
      st.reply = r.reply;
    }
    if (r.failure != Failure::kNone) co_return st;
  }
  // The pending recipient's result is judged by rcpt(); a failed read
  // there leaves MAIL's verdict standing.
  if (pending) *pending_result = co_await s.read_reply(d);
  if (pending && (*pending_result)->failure != Failure::kNone) co_return st;
  if (s.has_buffered_input()) {
    // More replies than commands: from here on each reply would answer
    // the command before it.
    st.decision = judge(Stage::kMail, upstream::CommandResult{Failure::kProtocol, {}});
    st.reply = {};
    st.detail = "bytes behind the last pipelined reply";
    if (pending_result) pending_result->reset();
    s.close();
  }
  co_return st;
}

}  // namespace smtplb::relay
