// relay_transaction.hpp: the backend side of one client transaction, with
// transactional failover (DESIGN.md "The data path", steps 3-6).
//
// MAIL and RCPT are forwarded cut-through and the backend's replies become
// the client's.  DATA is streamed to the backend as it arrives and kept in
// a ReplayBuffer.  At every step the backend's reply (or its silence, or
// its hanging up) goes to the replay policy (relay/replay_policy.hpp),
// which says: proceed, answer the client, or replay -- MAIL, the accepted
// RCPTs, the data so far -- on the next candidate of the pool's balancer,
// within `retries` and `timeouts.transaction`, while the client waits.
//
// Backend replies are a strict sequence: one reply per command, in order,
// nothing behind the last one expected, nothing between the 354 and the
// reply to the final dot.  Anything else abandons the attempt.
//
// `timeouts.transaction` bounds how long the client waits for any one
// reply that needs a backend (RCPT, DATA, end of data), replays included.
//
// Replay and recipients: the client already has a 250 for every recipient
// the first backend accepted.  A replay backend that refuses one of them,
// or refuses MAIL, DATA or the final dot, is not used for this transaction:
// the next candidate is tried, and if none accepts the client gets
// 451 4.4.x, so it retries the whole message later.  Never a silent
// partial delivery, never a bounce for mail another backend may hold.
#pragma once

#include <array>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "balance/candidate_walk.hpp"
#include "relay/replay_buffer.hpp"
#include "relay/replay_policy.hpp"
#include "smtp/command.hpp"
#include "smtp/data_encoder.hpp"
#include "upstream/identity.hpp"
#include "upstream/pool_runtime.hpp"

namespace smtplb::relay {

struct Attempt {
  std::string backend;
  upstream::Failure failure = upstream::Failure::kNone;
  std::string detail;  // the backend's reply, for the log
};

struct Envelope {
  smtp::Path sender;
  smtp::MailParams params;
  bool needs_smtputf8 = false;  // SMTPUTF8 given (or non-ASCII addresses)
  bool needs_8bitmime = false;  // BODY=8BITMIME given
  upstream::ClientIdentity client;
};

class Transaction;

class RelayTransaction {
 public:
  // Works on `txn` (its envelope, recipients and log scope), which
  // outlives it: Transaction::start_relay() makes it.
  RelayTransaction(asio::any_io_executor ex, const config::Config& cfg, upstream::PoolRuntime& pool,
                   Transaction& txn);
  ~RelayTransaction();

  // Asked before each replay: has the client gone (EOF or reset on its
  // socket)?  Then nobody waits for the answer and no replay is made.
  void set_client_gone_check(std::function<bool()> check) { client_gone_check_ = std::move(check); }

  // The backend's reply to this recipient (or 451 4.4.x when no backend
  // could be had, or when every backend tried stalled or garbled its reply
  // for this one address), recorded in the transaction's accepted or
  // refused recipients.
  awaitable<smtp::Reply> rcpt(const smtp::Path& rcpt);
  // 354 when a backend is ready for the data; otherwise the reply to give.
  awaitable<smtp::Reply> data();
  // Encoded (dot-stuffed, CR LF) message bytes, in order.
  awaitable<void> data_chunk(std::string_view wire);
  // After the client's final dot: the answer, with replays as needed.
  awaitable<smtp::Reply> finish();
  // The message is refused (bare CR/LF, too big, client gone): close the
  // backend connection without the final dot.
  void abort();
  // Forced shutdown: whatever waits on the backend fails now.
  void cancel();
  // The transaction is over (RSET, QUIT, end of data): the backend session
  // goes back to its pool when it is in a clean state.
  awaitable<void> release();

  const std::vector<Attempt>& attempts() const { return attempts_; }
  const std::string& backend_name() const { return delivered_backend_; }
  const std::string& queue_id() const { return queue_id_; }
  bool possible_duplicate() const { return possible_duplicate_; }
  // A replay was not made because the client had gone.
  bool client_gone() const { return client_gone_; }
  std::uint64_t data_size() const { return replay_.size(); }

 private:
  using Duration = std::chrono::milliseconds;
  Duration bound(Duration d) const;
  awaitable<smtp::Reply> rcpt_reply(const smtp::Path& rcpt);
  bool past_deadline() const { return Clock::now() >= deadline_; }

  // What MAIL and the replayed RCPTs on a session came to.
  struct Started {
    Decision decision;   // kProceed, or why this backend cannot take it
    smtp::Reply reply;   // the reply that decided, for the client and logs
    std::string detail;  // for logs when there is no reply (XCLIENT)
    bool stale = false;  // a pooled session the backend had closed: not its fault
  };

  // Gets a backend session with MAIL and every accepted RCPT done.  On
  // failure returns the reply for the client (a first-hand backend's 5xx
  // to MAIL, or 451 4.4.x).  With `pending` and a backend that pipelines,
  // that RCPT goes in the same write as MAIL (one round trip for a new
  // transaction) and its result is left in `pending_result`.
  awaitable<std::optional<smtp::Reply>> acquire(
      const smtp::Path* pending = nullptr,
      std::optional<upstream::CommandResult>* pending_result = nullptr);
  awaitable<std::unique_ptr<upstream::BackendSession>> get_session(upstream::BackendRuntime& b,
                                                                   upstream::Failure& why,
                                                                   std::string& detail);
  // A session this transaction is done with: back to the pool, or, for a
  // PROXY backend (one client per connection), QUIT and closed.
  void put_back(upstream::BackendRuntime& b, std::unique_ptr<upstream::BackendSession> s);
  void retire(upstream::BackendRuntime& b, std::unique_ptr<upstream::BackendSession> s);
  // The warn line for a backend that cannot be used as configured (TLS,
  // XCLIENT), with the reason in words.
  void log_unusable(const upstream::BackendRuntime& b, upstream::Failure f,
                    const std::string& detail) const;
  // What came of trying backend `b` in acquire().
  enum class Took { kSession, kRefusal, kNext };
  awaitable<Took> try_backend(upstream::BackendRuntime& b, const smtp::Path* pending,
                              std::optional<upstream::CommandResult>* pending_result);
  awaitable<Took> settle(upstream::BackendRuntime& b, const Started& st);
  void set_aside_incapable(upstream::BackendRuntime& b);
  awaitable<Started> start_pipelined(upstream::BackendSession& s, const smtp::Path* pending,
                                     std::optional<upstream::CommandResult>* pending_result);
  awaitable<Started> start_transaction(upstream::BackendSession& s, const smtp::Path* pending,
                                       std::optional<upstream::CommandResult>* pending_result);
  std::string mail_line(const upstream::Capabilities& caps) const;
  // The message needs an extension these capabilities lack (remembering
  // SMTPUTF8's absence for the final answer).
  bool lacks_extension(const upstream::Capabilities& caps);
  // The replay policy's word on a reply (or a failed read) at `stage`.
  Decision judge(Stage stage, const upstream::CommandResult& r) const;
  // Leaves the current backend as the policy decided: logged as an
  // attempt, charged to its health as `d.health` says, the session closed.
  void leave(const Decision& d, std::string detail);
  // A backend that failed before MAIL (connect, greeting, TLS, XCLIENT).
  void fail_backend(upstream::Failure f, std::string detail);
  // Back to the start of the pool's order with a fresh budget: after one
  // recipient's fault, the others go on as in a new walk.
  void restart_walk();
  awaitable<upstream::Failure> stream_replay();
  // Before a command on a session in use: did the backend speak (or hang
  // up) since its last expected reply?  Then `r` says how, and true.
  bool out_of_step(upstream::CommandResult& r) const;
  // The client has gone: checked before each replay.
  bool check_client_gone();

  asio::any_io_executor ex_;
  const config::Config& cfg_;
  upstream::PoolRuntime& pool_;
  Transaction& txn_;
  const Envelope& env_;  // txn_'s
  // Told to BackendState::record_suspect: unique per transaction.
  std::uint64_t key_;
  Clock::time_point deadline_;
  balance::CandidateWalk walk_;

  std::unique_ptr<upstream::BackendSession> session_;
  upstream::BackendRuntime* current_ = nullptr;
  // current_ took every recipient the client holds a 2xx for first-hand
  // (it replayed none): only such a backend's refusal can be final.
  bool first_hand_ = true;
  balance::InFlight in_flight_;  // counts this transaction on current_ while it holds session_
  // Message data read from the client but not yet written to the backend
  // (data_chunk): at most about kCoalesce octets, for about kCoalesceFor.
  static constexpr std::size_t kCoalesce = 16 * 1024;
  static constexpr std::chrono::seconds kCoalesceFor{1};
  std::string unsent_;
  Clock::time_point unsent_since_{};
  bool streaming_ = false;  // session_ has had DATA 354 and every byte so far (written or unsent_)
  bool clean_ = true;       // session_ can go back to the pool as it is
  ReplayBuffer replay_;
  std::vector<Attempt> attempts_;
  std::string delivered_backend_;
  std::string queue_id_;
  bool possible_duplicate_ = false;
  bool replay_broken_ = false;               // the spill file failed: no replay possible
  std::optional<smtp::Reply> mail_refusal_;  // a first-hand backend's 5xx to MAIL: final
  bool cancelled_ = false;                   // forced shutdown: no new backend
  bool client_gone_ = false;
  bool lacked_smtputf8_ = false;  // a backend lacked the SMTPUTF8 the message needs
  // BODY=8BITMIME and no backend offers 8BITMIME: sent without BODY=, and
  // refused at the end (554 5.6.3) if a byte turns out to be 8-bit.
  bool seven_bit_ = false;
  bool eight_bit_seen_ = false;
  std::function<bool()> client_gone_check_;
  Clock::time_point data_deadline_ = Clock::time_point::max();
};

}  // namespace smtplb::relay
