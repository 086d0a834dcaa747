#include "relay/relay_transaction.hpp"

#include <algorithm>
#include <atomic>

#include "log/log.hpp"
#include "smtp/replies.hpp"

namespace smtplb::relay {

namespace {

// How often a transaction waiting for room at its pool's backends looks again.
constexpr std::chrono::milliseconds kLimitPoll{20};

// The enhanced code a reply gets when the backend sent none (we advertise
// ENHANCEDSTATUSCODES to the client, RFC 2034).
smtp::Reply with_enhanced(smtp::Reply r, const char* ok_code) {
  if (!r.enhanced.empty()) return r;
  if (r.code >= 200 && r.code < 300)
    r.enhanced = ok_code;
  else if (r.code >= 400 && r.code < 500)
    r.enhanced = "4.0.0";
  else if (r.code >= 500)
    r.enhanced = "5.0.0";
  return r;
}

// The backend's queue id, for the log: Postfix "250 2.0.0 Ok: queued as
// 4F1B2C3D", Exim "250 OK id=1rKx2B-000ABC-3x"; empty when the reply names
// none.
std::string queue_id_from(const smtp::Reply& r) {
  if (r.lines.empty()) return {};
  std::string_view l = r.lines[0];
  std::string_view w;
  if (auto p = l.find("queued as "); p != std::string_view::npos) {
    w = l.substr(p + 10);
  } else if (auto q = l.find("id="); q != std::string_view::npos) {
    w = l.substr(q + 3);
  } else {
    return {};
  }
  w = w.substr(0, w.find(' '));
  if (w.size() > 64) w = w.substr(0, 64);
  return std::string(w);
}

// A number unique to each transaction of this process (record_suspect).
std::uint64_t next_transaction_key() {
  static std::atomic<std::uint64_t> next{1};
  return next.fetch_add(1, std::memory_order_relaxed);
}

}  // namespace

RelayTransaction::RelayTransaction(asio::any_io_executor ex, const config::Config& cfg,
                                   upstream::PoolRuntime& pool, Envelope env, std::string id)
    : ex_(std::move(ex)),
      cfg_(cfg),
      pool_(pool),
      env_(std::move(env)),
      id_(std::move(id)),
      key_(next_transaction_key()),
      deadline_(Clock::now() + cfg.timeouts.transaction),
      replay_(cfg.limits.replay_memory, cfg.temp_directory) {
  // hash_sender keys on the sender's domain (the null sender hashes as "").
  candidates_ = pool_.order(Clock::now(), smtp::ascii_lower(env_.sender.mailbox.domain));
}

RelayTransaction::~RelayTransaction() {
  // release() normally ran; anything left is not in a state to reuse.
  if (session_) session_->close();
}

RelayTransaction::Duration RelayTransaction::bound(Duration d) const {
  auto left = std::chrono::duration_cast<Duration>(deadline_ - Clock::now());
  if (left < Duration(1)) left = Duration(1);
  return std::min(d, left);
}

relay::Decision RelayTransaction::judge(relay::Stage stage,
                                        const upstream::CommandResult& r) const {
  const relay::Outcome o = r.failure != upstream::Failure::kNone ? relay::outcome_of(r.failure)
                                                                 : relay::classify(stage, r.reply);
  return relay::decide(stage, o, relay::Context{first_hand_});
}

void RelayTransaction::leave(const relay::Decision& d, std::string detail) {
  if (d.possible_duplicate) possible_duplicate_ = true;
  if (current_) {
    balance::BackendState& st = *current_->state;
    attempts_.push_back({st.name(), d.why, detail});
    st.count_left(static_cast<int>(d.why));
    const auto now = Clock::now();
    bool others_usable = false;
    for (auto* other : pool_.states) others_usable |= other != &st && other->usable(now);
    bool ejected = false;
    if (d.health == relay::Health::kCharge)
      ejected = st.record_failure(now, others_usable);
    else if (d.health == relay::Health::kSuspect)
      ejected = st.record_suspect(now, key_, others_usable);
    if (ejected) {
      // Logged once, on the change from usable to down (passive detection).
      log::Record("backend_down")
          .add("t", id_)
          .add("pool", st.pool())
          .add("backend", st.name())
          .add("reason", to_string(d.why))
          .add("detail", detail)
          .add("retry_in_ms",
               static_cast<long long>(
                   std::chrono::duration_cast<std::chrono::milliseconds>(st.down_until() - now)
                       .count()))
          .emit(spdlog::level::warn);
    }
  }
  if (session_) {
    session_->close();
    session_.reset();
  }
  current_ = nullptr;
  streaming_ = false;
  unsent_.clear();  // in the replay buffer too: the next backend gets it all
  in_flight_.reset();
}

void RelayTransaction::fail_backend(upstream::Failure f, std::string detail) {
  // Before MAIL: whatever went wrong is the backend's, except a violation
  // (which waits for a second transaction) and what is no ill health.
  relay::Health h = relay::Health::kNone;
  if (f == upstream::Failure::kProtocol)
    h = relay::Health::kSuspect;
  else if (upstream::counts_against_backend(f))
    h = relay::Health::kCharge;
  leave(relay::Decision{relay::Verdict::kReplay, f, h}, std::move(detail));
}

void RelayTransaction::restart_walk() {
  candidates_ = pool_.order(Clock::now(), smtp::ascii_lower(env_.sender.mailbox.domain));
  next_candidate_ = 0;
  backends_tried_ = 0;
}

bool RelayTransaction::walk_exhausted() const {
  return next_candidate_ >= candidates_.size() || backends_tried_ >= pool_.max_tries();
}

bool RelayTransaction::out_of_step(upstream::CommandResult& r) const {
  // One recv(MSG_PEEK): paid before each RCPT after the first (which goes
  // with MAIL) and before DATA, not per pipelined reply.
  const auto p = session_->peek();
  if (p == net::TimedSocket::Peek::kQuiet) return false;
  r.failure = p == net::TimedSocket::Peek::kClosed ? upstream::Failure::kDropped
                                                   : upstream::Failure::kProtocol;
  return true;
}

bool RelayTransaction::check_client_gone() {
  if (!client_gone_ && client_gone_check_ && client_gone_check_()) client_gone_ = true;
  return client_gone_;
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
  log::Record(event)
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

awaitable<RelayTransaction::Started> RelayTransaction::start_transaction(
    upstream::BackendSession& s, const smtp::Path* pending,
    std::optional<upstream::CommandResult>* pending_result) {
  using relay::Stage;
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
      st.decision = {
          relay::Verdict::kReplay, xf,
          upstream::counts_against_backend(xf) ? relay::Health::kCharge : relay::Health::kNone};
      co_return st;
    }
  }
  // After XCLIENT's EHLO: the capabilities the backend now offers (to
  // this client; never a silent downgrade, as in acquire()).
  if (lacks_extension(s.caps())) {
    st.decision = {relay::Verdict::kReplay, upstream::Failure::kNotCapable, relay::Health::kNone};
    co_return st;
  }
  std::string mail = mail_line(s.caps());
  if (!s.caps().pipelining) {
    auto m = co_await s.command(mail, d);
    st.reply = m.reply;
    st.decision = judge(Stage::kMail, m);
    if (st.decision.verdict != relay::Verdict::kProceed) co_return st;
    for (const auto& rcpt : accepted_) {
      auto r = co_await s.command("RCPT TO:<" + rcpt.str() + ">\r\n", d);
      st.reply = r.reply;
      st.decision = judge(Stage::kReplayedRcpt, r);
      if (st.decision.verdict != relay::Verdict::kProceed) co_return st;
    }
    co_return st;
  }
  // RFC 2920: (RSET,) MAIL and the RCPTs in one write, replies read in order.
  const bool rset = std::exchange(s.rset_pending, false);
  std::string batch = rset ? "RSET\r\n" + mail : mail;
  for (const auto& r : accepted_) batch += "RCPT TO:<" + r.str() + ">\r\n";
  if (pending) batch += "RCPT TO:<" + pending->str() + ">\r\n";
  upstream::Failure sent = co_await s.send(batch, d);
  if (rset) {
    // A pooled session the backend closed meanwhile costs a reconnect,
    // never the backend's standing; a stall or a 421 is the backend's.
    // (No co_await inside ?: here: g++ 12 miscompiles it.)
    upstream::CommandResult r{sent, {}};
    if (sent == upstream::Failure::kNone) r = co_await s.read_reply(d);
    if (r.failure == upstream::Failure::kStalled ||
        (r.failure == upstream::Failure::kNone && r.reply.code == 421)) {
      st.decision = judge(Stage::kGreeting, r);
      co_return st;
    }
    if (r.failure != upstream::Failure::kNone || r.reply.code != 250) {
      st.stale = true;
      co_return st;
    }
  }
  if (sent != upstream::Failure::kNone) {
    st.decision = judge(Stage::kMail, upstream::CommandResult{sent, {}});
    co_return st;
  }
  auto m = co_await s.read_reply(d);
  st.reply = m.reply;
  st.decision = judge(Stage::kMail, m);
  if (m.failure != upstream::Failure::kNone) co_return st;
  // Every pipelined command gets its reply read, whatever MAIL's was; the
  // first that keeps this backend from the transaction decides.
  for (std::size_t i = 0; i < accepted_.size(); ++i) {
    auto r = co_await s.read_reply(d);
    relay::Decision rd = judge(Stage::kReplayedRcpt, r);
    if (r.failure != upstream::Failure::kNone || st.decision.verdict == relay::Verdict::kProceed) {
      if (rd.verdict != relay::Verdict::kProceed) {
        st.decision = rd;
        st.reply = r.reply;
      }
    }
    if (r.failure != upstream::Failure::kNone) co_return st;
  }
  if (pending) {
    *pending_result = co_await s.read_reply(d);
    if ((*pending_result)->failure != upstream::Failure::kNone) {
      // The session is gone; MAIL's verdict stands, the recipient's
      // result is judged by rcpt().
      co_return st;
    }
  }
  if (s.has_buffered_input()) {
    // More replies than commands: from here on each reply would answer
    // the command before it.
    st.decision = judge(Stage::kMail, upstream::CommandResult{upstream::Failure::kProtocol, {}});
    st.reply = {};
    st.detail = "bytes behind the last pipelined reply";
    if (pending_result) pending_result->reset();
    s.close();
  }
  co_return st;
}

awaitable<std::optional<smtp::Reply>> RelayTransaction::acquire(
    const smtp::Path* pending, std::optional<upstream::CommandResult>* pending_result) {
  const int max_backends = pool_.max_tries();
  if (mail_refusal_) co_return *mail_refusal_;
  if (cancelled_) co_return smtp::make_reply(421, "4.3.2", "Service shutting down");
  // Backends skipped for max_connections/max_rate come back after a short
  // wait, within timeouts.pool_wait: then 451 4.4.5, never an unbounded queue.
  std::vector<int> at_limit;
  const auto wait_until = Clock::now() + cfg_.timeouts.pool_wait;
  for (;;) {
    if (!attempts_.empty() && check_client_gone()) co_return smtp::replies::no_backend();
    if (next_candidate_ >= candidates_.size() || backends_tried_ >= max_backends) {
      if (at_limit.empty() || backends_tried_ >= max_backends) break;
      if (Clock::now() >= wait_until || past_deadline()) co_return smtp::replies::pool_full();
      asio::steady_timer t(ex_, kLimitPoll);
      co_await t.async_wait(use_nothrow);
      if (cancelled_) co_return smtp::make_reply(421, "4.3.2", "Service shutting down");
      candidates_.insert(candidates_.begin() + static_cast<std::ptrdiff_t>(next_candidate_),
                         at_limit.begin(), at_limit.end());
      at_limit.clear();
      continue;
    }
    if (past_deadline()) co_return smtp::replies::backend_deadline();
    // The order was fixed at the first RCPT; a backend marked down since
    // then yields to the untried ones still up.
    auto now = Clock::now();
    std::stable_partition(candidates_.begin() + static_cast<std::ptrdiff_t>(next_candidate_),
                          candidates_.end(), [&](int i) { return pool_.states[i]->usable(now); });
    upstream::BackendRuntime& b = *pool_.backends[candidates_[next_candidate_++]];
    // Drained or in maintenance since the order was made: not even a try.
    if (b.state->admin() != balance::AdminState::kReady) continue;
    if (!b.state->try_rate(now)) {
      at_limit.push_back(candidates_[next_candidate_ - 1]);
      continue;
    }
    ++backends_tried_;
    current_ = &b;
    upstream::Failure why = upstream::Failure::kNone;
    std::string detail;
    session_ = co_await get_session(b, why, detail);
    if (!session_ && why == upstream::Failure::kAtLimit) {
      // Every session it may have is busy: room, not health.
      at_limit.push_back(candidates_[next_candidate_ - 1]);
      --backends_tried_;
      current_ = nullptr;
      continue;
    }
    if (!session_) {
      log_unusable(b, why, detail);
      fail_backend(why, detail);
      continue;
    }
    if (lacks_extension(session_->offered())) {
      // Never downgrade: RFC 6531 3.4 and RFC 6152 3 forbid sending such
      // mail to a server that did not offer the extension.
      attempts_.push_back(
          {b.state->name(), upstream::Failure::kNotCapable, "lacks SMTPUTF8/8BITMIME"});
      put_back(b, std::move(session_));
      current_ = nullptr;
      --backends_tried_;  // a capability mismatch is no failed attempt
      continue;
    }
    if (pending_result) pending_result->reset();
    first_hand_ = accepted_.empty();
    Started st = co_await start_transaction(*session_, pending, pending_result);
    if (st.stale) {
      // The same backend again, on another pooled session or a new one.
      session_->close();
      session_.reset();
      current_ = nullptr;
      --backends_tried_;
      --next_candidate_;
      continue;
    }
    const relay::Decision& d = st.decision;
    if (d.verdict == relay::Verdict::kProceed) {
      in_flight_ = balance::InFlight(*b.state);
      if (b.state->record_success())
        log::Record("backend_up")
            .add("pool", b.state->pool())
            .add("backend", b.state->name())
            .emit();
      clean_ = false;
      co_return std::nullopt;
    }
    if (d.why == upstream::Failure::kNotCapable) {
      attempts_.push_back(
          {b.state->name(), upstream::Failure::kNotCapable, "lacks SMTPUTF8/8BITMIME"});
      put_back(b, std::move(session_));
      current_ = nullptr;
      --backends_tried_;
      continue;
    }
    const bool in_step = session_->is_open() && d.why != upstream::Failure::kProtocol;
    if (in_step &&
        (d.verdict == relay::Verdict::kAnswer || d.why == upstream::Failure::kPermanent ||
         d.why == upstream::Failure::kRecipientRefused)) {
      // The backend is healthy and disagrees: its session is fine for the
      // next transaction.
      attempts_.push_back({b.state->name(), d.why, st.reply.summary()});
      auto rset = co_await session_->command("RSET\r\n", bound(cfg_.timeouts.backend_reply));
      if (rset.failure == upstream::Failure::kNone && rset.reply.code == 250)
        put_back(b, std::move(session_));
      session_.reset();
      current_ = nullptr;
      if (d.verdict == relay::Verdict::kAnswer) {
        // A first-hand backend's answer about this sender is final
        // (DESIGN.md: a 5xx to MAIL reaches the client) for the whole
        // transaction.
        mail_refusal_ = with_enhanced(st.reply, "2.1.0");
        co_return *mail_refusal_;
      }
      continue;  // a replay backend refusing what another accepted: the next
    }
    if (!st.detail.empty()) log_unusable(b, d.why, st.detail);
    leave(d, !st.detail.empty() ? st.detail : st.reply.code ? st.reply.summary() : "");
  }
  if (past_deadline()) co_return smtp::replies::backend_deadline();
  bool only_incapable = !attempts_.empty();
  for (const auto& a : attempts_)
    only_incapable = only_incapable && a.failure == upstream::Failure::kNotCapable;
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

bool RelayTransaction::lacks_extension(const upstream::Capabilities& caps) {
  if (env_.needs_smtputf8 && !caps.smtputf8) {
    lacked_smtputf8_ = true;
    return true;
  }
  return env_.needs_8bitmime && !caps.eightbitmime && !seven_bit_;
}

awaitable<smtp::Reply> RelayTransaction::rcpt(const smtp::Path& rcpt) {
  const std::string line = "RCPT TO:<" + rcpt.str() + ">\r\n";
  deadline_ = Clock::now() + cfg_.timeouts.transaction;
  // Backends that stalled or garbled their reply to this address: after
  // kRecipientFaults of them it is taken to be the address's doing.
  constexpr int kRecipientFaults = 2;
  int faults = 0;
  for (;;) {
    upstream::CommandResult r;
    bool have = false;
    if (!session_) {
      std::optional<upstream::CommandResult> pipelined;
      if (auto refusal = co_await acquire(&rcpt, &pipelined)) co_return *refusal;
      if (pipelined) {
        r = std::move(*pipelined);
        have = true;
      }
    }
    if (!have && out_of_step(r)) {
      // Bytes nobody asked for arrived since the last reply: the next
      // reply read would answer an earlier command, not this recipient.
      leave(judge(relay::Stage::kReplayedRcpt, r), "unsolicited reply before RCPT");
      continue;
    }
    if (!have) r = co_await session_->command(line, bound(cfg_.timeouts.backend_reply));
    const relay::Decision d = judge(relay::Stage::kRcpt, r);
    if (d.verdict == relay::Verdict::kAnswer) {
      // RFC 5321 4.3.2: any 2xx accepts (252 too); the backend is
      // authoritative on recipients: its 4xx/5xx is the answer.
      if (r.reply.positive()) accepted_.push_back(rcpt);
      co_return with_enhanced(r.reply, "2.1.5");
    }
    const std::string detail = r.reply.code ? r.reply.summary()
                               : session_   ? session_->failure_detail()
                                            : std::string();
    leave(d, detail.empty() ? std::string("at RCPT ") + rcpt.str() : detail);
    if (d.verdict == relay::Verdict::kRecipientFault &&
        (++faults >= std::min(kRecipientFaults, pool_.max_tries()) || walk_exhausted())) {
      // The others of the transaction go on, on a fresh walk.
      restart_walk();
      log::Record("recipient_deferred")
          .add("t", id_)
          .add("rcpt", rcpt.str())
          .add("reason", to_string(d.why))
          .add("backends", static_cast<long long>(faults))
          .emit(spdlog::level::warn);
      co_return smtp::replies::recipient_unverified();
    }
    // Replay MAIL and the accepted RCPTs elsewhere, then this one.
  }
}

awaitable<smtp::Reply> RelayTransaction::data() {
  deadline_ = Clock::now() + cfg_.timeouts.transaction;
  for (;;) {
    if (!session_) {
      if (auto refusal = co_await acquire()) co_return *refusal;
    }
    // The last reply before the data: a backend that sent more replies
    // than it was asked for (one would have been taken for a recipient's)
    // is out of step, and no message goes to it.
    upstream::CommandResult r;
    if (!out_of_step(r))
      r = co_await session_->command("DATA\r\n", bound(cfg_.timeouts.backend_reply));
    const relay::Decision d = judge(relay::Stage::kData, r);
    if (d.verdict == relay::Verdict::kProceed) {
      streaming_ = true;
      data_deadline_ = Clock::now() + cfg_.timeouts.client_data_total;
      co_return smtp::replies::start_data();
    }
    if (d.verdict == relay::Verdict::kAnswer) co_return with_enhanced(r.reply, "2.0.0");
    leave(d, r.reply.code ? r.reply.summary() : session_ ? session_->failure_detail() : "");
  }
}

awaitable<void> RelayTransaction::data_chunk(std::string_view wire) {
  if (replay_broken_ || eight_bit_seen_) co_return;
  if (seven_bit_ && std::any_of(wire.begin(), wire.end(),
                                [](char c) { return static_cast<unsigned char>(c) & 0x80; })) {
    // Going out as 7-bit to a backend without 8BITMIME: it may not have it.
    eight_bit_seen_ = true;
    abort();
    co_return;
  }
  if (!replay_.append(wire)) {
    // Cannot keep the message for a replay: finish() refuses it (451).
    replay_broken_ = true;
    abort();
    co_return;
  }
  if (session_ && streaming_) {
    // Small pieces wait in unsent_ (bounded by kCoalesce) for the next
    // one or the final dot: a small message and its dot go out in one
    // write, one wake-up of the backend, instead of one per piece.
    // A client that trickles still keeps the backend busy: what waited a
    // second goes with the next piece.
    std::string_view out = wire;
    const auto now = Clock::now();
    if (!unsent_.empty() || wire.size() < kCoalesce) {
      if (unsent_.empty()) unsent_since_ = now;
      unsent_.append(wire);
      if (unsent_.size() < kCoalesce && now - unsent_since_ < kCoalesceFor) co_return;
      out = unsent_;
    }
    // Not bound by the transaction deadline (the client sets the pace
    // here) but by the DATA phase's.
    auto left = std::chrono::duration_cast<Duration>(data_deadline_ - Clock::now());
    upstream::Failure f = co_await session_->send(
        out, std::max(Duration(1), std::min(cfg_.timeouts.backend_reply, left)));
    unsent_.clear();
    if (f != upstream::Failure::kNone)
      leave(judge(relay::Stage::kMidData, upstream::CommandResult{f, {}}), "during data");
  }
}

awaitable<upstream::Failure> RelayTransaction::stream_replay() {
  std::string chunk;
  constexpr std::size_t kChunk = 64 * 1024;
  for (std::uint64_t off = 0; off < replay_.size(); off += chunk.size()) {
    if (!replay_.read(off, kChunk, chunk) || chunk.empty()) co_return upstream::Failure::kDropped;
    upstream::Failure f = co_await session_->send(chunk, bound(cfg_.timeouts.backend_reply));
    if (f != upstream::Failure::kNone) co_return f;
  }
  co_return upstream::Failure::kNone;
}

awaitable<smtp::Reply> RelayTransaction::finish() {
  using relay::Stage;
  smtp::DataEncoder enc;
  std::string final_dot;
  enc.finish(final_dot);  // the content ends with CR LF: this is ".\r\n"
  if (eight_bit_seen_) co_return smtp::replies::eight_bit_undeliverable();
  if (replay_broken_) co_return smtp::replies::local_error();
  deadline_ = Clock::now() + cfg_.timeouts.transaction;
  for (;;) {
    if (session_ && streaming_) {
      // Nothing may have come since the 354: a reply the backend sent
      // meanwhile would be read as the answer to this dot, and a backend
      // that hung up never sees it (no copy can be there: no duplicate).
      const auto peek = session_->peek();
      if (peek != net::TimedSocket::Peek::kQuiet) {
        const bool closed = peek == net::TimedSocket::Peek::kClosed;
        leave(relay::decide(Stage::kMidData,
                            closed ? relay::Outcome::kDropped : relay::Outcome::kProtocol,
                            relay::Context{first_hand_}),
              closed ? "closed before the final dot" : "unsolicited reply before the final dot");
        continue;
      }
      // The data still unsent and the final dot, in one write.  A failed
      // write did not deliver the dot whole: the replay is no duplicate.
      unsent_ += final_dot;
      upstream::Failure f = co_await session_->send(unsent_, bound(cfg_.timeouts.backend_reply));
      unsent_.clear();
      if (f != upstream::Failure::kNone) {
        leave(judge(Stage::kMidData, upstream::CommandResult{f, {}}), "sending the final dot");
        continue;
      }
      // The full backend_data_done, whatever replays took before: the
      // backend is owed that long before it is called silent.
      const auto dot_sent = Clock::now();
      auto r = co_await session_->read_reply(cfg_.timeouts.backend_data_done);
      if (r.failure == upstream::Failure::kNone)
        current_->state->observe_final_dot(
            std::chrono::duration<double>(Clock::now() - dot_sent).count(), Clock::now());
      if (r.failure == upstream::Failure::kNone && session_->has_buffered_input())
        r.failure = upstream::Failure::kProtocol;  // two replies to one dot: which one is its own?
      // The whole message and its final dot went out: whatever leaves
      // this backend now may leave a copy there (RFC 1047); DESIGN.md
      // fixes the choice: replay, and log and count a possible duplicate.
      const relay::Decision d = judge(Stage::kFinalDot, r);
      if (d.verdict == relay::Verdict::kAnswer) {
        delivered_backend_ = current_->state->name();  // the backend whose answer this is
        if (r.reply.positive()) {
          queue_id_ = queue_id_from(r.reply);
        } else {
          attempts_.push_back(
              {current_->state->name(), upstream::Failure::kPermanent, r.reply.summary()});
        }
        streaming_ = false;
        clean_ = true;
        co_return r.reply.positive() ? r.reply : with_enhanced(r.reply, "2.0.0");
      }
      std::string detail = r.reply.code ? r.reply.summary() : "after the final dot";
      if (r.failure == upstream::Failure::kProtocol)
        detail = "malformed or extra reply after the final dot";
      leave(d, detail);
      continue;
    }
    // Replay on the next backend: MAIL, RCPTs, DATA, the bytes so far.
    if (auto refusal = co_await acquire()) {
      // Never a 5xx here: the client holds 250s for the recipients.
      if (refusal->permanent()) co_return smtp::replies::no_backend();
      co_return *refusal;
    }
    auto r = co_await session_->command("DATA\r\n", bound(cfg_.timeouts.backend_reply));
    const relay::Decision d = judge(Stage::kData, r);
    if (d.verdict != relay::Verdict::kProceed) {
      leave(d, r.reply.code ? r.reply.summary() : "");
      continue;
    }
    streaming_ = true;
    if (upstream::Failure f = co_await stream_replay(); f != upstream::Failure::kNone) {
      leave(judge(Stage::kMidData, upstream::CommandResult{f, {}}), "replaying data");
      continue;
    }
  }
}

void RelayTransaction::cancel() {
  cancelled_ = true;
  if (session_) session_->cancel();
}

void RelayTransaction::abort() {
  // Closing without the final dot is the only way to tell the backend the
  // message is void (SECURITY.md 1, "Abort = close").
  if (session_) {
    if (current_)
      attempts_.push_back({current_->state->name(), upstream::Failure::kNone, "aborted"});
    session_->close();
    session_.reset();
  }
  current_ = nullptr;
  streaming_ = false;
  unsent_.clear();
  in_flight_.reset();
}

awaitable<void> RelayTransaction::release() {
  if (!session_ || !current_) {
    in_flight_.reset();
    co_return;
  }
  if (!session_->poolable()) {
    // No RSET first: QUIT ends whatever was open.
    retire(*current_, std::move(session_));
    current_ = nullptr;
    in_flight_.reset();
    co_return;
  }
  if (!clean_) {
    auto r = co_await session_->command("RSET\r\n", bound(cfg_.timeouts.backend_reply));
    if (r.failure != upstream::Failure::kNone || r.reply.code != 250) {
      session_->close();
      session_.reset();
      in_flight_.reset();
      co_return;
    }
  }
  // A backend drained or put in maintenance meanwhile gets no new
  // transaction, not even on a pooled session: close it instead.
  if (current_->state->admin() == balance::AdminState::kReady)
    current_->idle.give_back(std::move(session_));
  else
    co_await session_->quit();
  session_.reset();
  current_ = nullptr;
  in_flight_.reset();
}

}  // namespace smtplb::relay
