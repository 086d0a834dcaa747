// relay_transaction.cpp: the client-facing steps of one transaction (RCPT,
// DATA, the message, the final dot) and leaving a backend; getting one is in
// relay_acquire.cpp.
#include "relay/relay_transaction.hpp"

#include <algorithm>
#include <atomic>

#include "log/log.hpp"
#include "relay/reply_helpers.hpp"
#include "relay/transaction.hpp"
#include "smtp/replies.hpp"

namespace smtplb::relay {

namespace {

// A number unique to each transaction of this process (record_suspect).
std::uint64_t next_transaction_key() {
  static std::atomic<std::uint64_t> next{1};
  return next.fetch_add(1, std::memory_order_relaxed);
}

}  // namespace

RelayTransaction::RelayTransaction(asio::any_io_executor ex, const config::Config& cfg,
                                   upstream::PoolRuntime& pool, Transaction& txn)
    : ex_(std::move(ex)),
      cfg_(cfg),
      pool_(pool),
      txn_(txn),
      env_(txn.envelope()),
      key_(next_transaction_key()),
      deadline_(Clock::now() + cfg.timeouts.transaction),
      replay_(cfg.limits.replay_memory, cfg.temp_directory, cfg.limits.replay_memory_total) {
  restart_walk();
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

Decision RelayTransaction::judge(Stage stage, const upstream::CommandResult& r) const {
  const Outcome o =
      r.failure != upstream::Failure::kNone ? outcome_of(r.failure) : classify(stage, r.reply);
  return decide(stage, o, Context{first_hand_});
}

void RelayTransaction::leave(const Decision& d, std::string detail) {
  if (d.possible_duplicate) possible_duplicate_ = true;
  if (current_) {
    balance::BackendState& st = *current_->state;
    attempts_.push_back({st.name(), d.why, detail});
    st.count_left(static_cast<int>(d.why));
    const auto now = Clock::now();
    bool others_usable = false;
    for (auto* other : pool_.states) others_usable |= other != &st && other->usable(now);
    bool ejected = false;
    if (d.health == Health::kCharge)
      ejected = st.record_failure(now, others_usable);
    else if (d.health == Health::kSuspect)
      ejected = st.record_suspect(now, key_, others_usable);
    if (ejected) {
      // Logged once, on the change from usable to down (passive detection).
      log::Record("backend_down", txn_.scope())
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
  Health h = Health::kNone;
  if (f == upstream::Failure::kProtocol)
    h = Health::kSuspect;
  else if (upstream::counts_against_backend(f))
    h = Health::kCharge;
  leave(Decision{Verdict::kReplay, f, h}, std::move(detail));
}

void RelayTransaction::restart_walk() {
  // hash_sender keys on the sender's domain (the null sender hashes as "").
  const auto now = Clock::now();
  walk_.start(pool_.order(now, smtp::ascii_lower(env_.sender.mailbox.domain)), pool_.max_tries(),
              now, cfg_.timeouts.pool_wait);
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

awaitable<smtp::Reply> RelayTransaction::rcpt(const smtp::Path& rcpt) {
  smtp::Reply r = co_await rcpt_reply(rcpt);
  // RFC 5321 4.3.2: any 2xx accepts (252 too).
  if (r.positive())
    txn_.accept(rcpt);
  else
    txn_.refuse(rcpt);
  co_return r;
}

awaitable<smtp::Reply> RelayTransaction::rcpt_reply(const smtp::Path& rcpt) {
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
      leave(judge(Stage::kReplayedRcpt, r), "unsolicited reply before RCPT");
      continue;
    }
    if (!have) r = co_await session_->command(line, bound(cfg_.timeouts.backend_reply));
    const Decision d = judge(Stage::kRcpt, r);
    if (d.verdict == Verdict::kAnswer) {
      // The backend is authoritative on recipients: its 4xx/5xx is the
      // answer.
      co_return with_enhanced(r.reply, "2.1.5");
    }
    const std::string detail = r.reply.code ? r.reply.summary()
                               : session_   ? session_->failure_detail()
                                            : std::string();
    leave(d, detail.empty() ? std::string("at RCPT ") + rcpt.str() : detail);
    if (d.verdict == Verdict::kRecipientFault &&
        (++faults >= std::min(kRecipientFaults, pool_.max_tries()) || walk_.exhausted())) {
      // The others of the transaction go on, on a fresh walk.
      restart_walk();
      log::Record("recipient_deferred", txn_.scope())
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
    const Decision d = judge(Stage::kData, r);
    if (d.verdict == Verdict::kProceed) {
      streaming_ = true;
      data_deadline_ = Clock::now() + cfg_.timeouts.client_data_total;
      co_return smtp::replies::start_data();
    }
    if (d.verdict == Verdict::kAnswer) co_return with_enhanced(r.reply, "2.0.0");
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
      leave(judge(Stage::kMidData, upstream::CommandResult{f, {}}), "during data");
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
  smtp::DataEncoder enc;
  std::string final_dot;
  enc.finish(final_dot);  // the content ends with CR LF: this is ".\r\n"
  if (eight_bit_seen_) co_return smtp::replies::eight_bit_undeliverable();
  if (replay_broken_) co_return smtp::replies::no_replay_storage();
  deadline_ = Clock::now() + cfg_.timeouts.transaction;
  for (;;) {
    if (session_ && streaming_) {
      // Nothing may have come since the 354: a reply the backend sent
      // meanwhile would be read as the answer to this dot, and a backend
      // that hung up never sees it (no copy can be there: no duplicate).
      const auto peek = session_->peek();
      if (peek != net::TimedSocket::Peek::kQuiet) {
        const bool closed = peek == net::TimedSocket::Peek::kClosed;
        leave(decide(Stage::kMidData, closed ? Outcome::kDropped : Outcome::kProtocol,
                     Context{first_hand_}),
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
      const Decision d = judge(Stage::kFinalDot, r);
      if (d.verdict == Verdict::kAnswer) {
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
    const Decision d = judge(Stage::kData, r);
    if (d.verdict != Verdict::kProceed) {
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
