// relay_transaction.hpp: the backend side of one client transaction, with
// transactional failover (DESIGN.md "The data path", steps 3-6).
//
// MAIL and RCPT are forwarded cut-through and the backend's replies become
// the client's.  DATA is streamed to the backend as it arrives and kept in
// a ReplayBuffer.  When the backend fails at any step (refused or timed-out
// connect, 421, a 4xx to MAIL/DATA/end of data, a drop, a stall), the
// transaction -- MAIL, the accepted RCPTs, the data so far -- is replayed
// on the next candidate of the pool's balancer, within `retries` and
// `timeouts.transaction`, while the client waits.  A 5xx is final.  A
// message that got 2xx at end of data is never sent anywhere else.
//
// `timeouts.transaction` bounds how long the client waits for any one
// reply that needs a backend (RCPT, DATA, end of data), replays included.
//
// Replay and recipients: the client already has a 250 for every recipient
// the first backend accepted.  A replay backend that refuses one of them
// (4xx or 5xx) is not used for this transaction: the next candidate is
// tried, and if none accepts them all the client gets 451 4.4.x, so it
// retries the whole message later.  Never a silent partial delivery.
#pragma once

#include <array>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "client/identity.hpp"
#include "client/pool_runtime.hpp"
#include "client/replay_buffer.hpp"
#include "smtp/command.hpp"
#include "smtp/data_encoder.hpp"

namespace smtplb::client {

struct Attempt {
  std::string backend;
  Failure failure = Failure::kNone;
  std::string detail;  // the backend's reply, for the log
};

struct Envelope {
  smtp::Path sender;
  smtp::MailParams params;
  bool needs_smtputf8 = false;  // SMTPUTF8 given (or non-ASCII addresses)
  bool needs_8bitmime = false;  // BODY=8BITMIME given
  ClientIdentity client;
};

class RelayTransaction {
 public:
  RelayTransaction(asio::any_io_executor ex, const config::Config& cfg, PoolRuntime& pool,
                   Envelope env);
  ~RelayTransaction();

  // The backend's reply to this recipient (or 451 4.4.x when no backend
  // could be had).
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
  bool has_backend() const { return session_ != nullptr; }
  std::uint64_t data_size() const { return replay_.size(); }

 private:
  using Duration = std::chrono::milliseconds;
  Duration bound(Duration d) const;
  bool past_deadline() const { return Clock::now() >= deadline_; }

  // Gets a backend session with MAIL and every accepted RCPT done.  On
  // failure returns the reply for the client (a backend's 5xx to MAIL, or
  // 451 4.4.x).
  // With `pending` and a backend that pipelines, that RCPT goes in the same
  // write as MAIL (one round trip for a new transaction) and its reply is
  // left in `pending_reply`.
  awaitable<std::optional<smtp::Reply>> acquire(
      const smtp::Path* pending = nullptr, std::optional<smtp::Reply>* pending_reply = nullptr);
  awaitable<std::unique_ptr<BackendSession>> get_session(BackendRuntime& b, Failure& why,
                                                         std::string& detail);
  // A session this transaction is done with: back to the pool, or, for a
  // PROXY backend (one client per connection), QUIT and closed.
  void put_back(BackendRuntime& b, std::unique_ptr<BackendSession> s);
  void retire(BackendRuntime& b, std::unique_ptr<BackendSession> s);
  // The warn line for a backend that cannot be used as configured (TLS,
  // XCLIENT), with the reason in words.
  void log_unusable(const BackendRuntime& b, Failure f, const std::string& detail) const;
  // MAIL and the replayed RCPTs on `s`; kNone when all were accepted.
  // `stale`: a pooled session failed its RSET (closed meanwhile): not the
  // backend's fault, try it again on another session.
  awaitable<Failure> start_transaction(BackendSession& s, smtp::Reply& mail_reply,
                                       const smtp::Path* pending,
                                       std::optional<smtp::Reply>* pending_reply, bool& stale);
  std::string mail_line(const Capabilities& caps) const;
  // Leaves the current backend for this reason, counting it against the
  // backend when it is ill health.
  void fail_backend(Failure f, std::string detail);
  awaitable<Failure> stream_replay();

  asio::any_io_executor ex_;
  const config::Config& cfg_;
  PoolRuntime& pool_;
  Envelope env_;
  Clock::time_point deadline_;
  std::vector<int> candidates_;  // balancer order, fixed for the transaction
  std::size_t next_candidate_ = 0;
  int backends_tried_ = 0;

  std::unique_ptr<BackendSession> session_;
  BackendRuntime* current_ = nullptr;
  balance::InFlight in_flight_;  // counts this transaction on current_ while it holds session_
  // Message data read from the client but not yet written to the backend
  // (data_chunk): at most about kCoalesce octets, for about kCoalesceFor.
  static constexpr std::size_t kCoalesce = 16 * 1024;
  static constexpr std::chrono::seconds kCoalesceFor{1};
  std::string unsent_;
  Clock::time_point unsent_since_{};
  bool streaming_ = false;  // session_ has had DATA 354 and every byte so far (written or unsent_)
  bool clean_ = true;       // session_ can go back to the pool as it is
  std::vector<smtp::Path> accepted_;
  ReplayBuffer replay_;
  std::vector<Attempt> attempts_;
  std::string delivered_backend_;
  std::string queue_id_;
  bool possible_duplicate_ = false;
  bool replay_broken_ = false;               // the spill file failed: no replay possible
  std::optional<smtp::Reply> mail_refusal_;  // a backend's 5xx to MAIL: final
  std::string xclient_detail_;               // why XCLIENT failed (start_transaction)
  bool cancelled_ = false;                   // forced shutdown: no new backend
  Clock::time_point data_deadline_ = Clock::time_point::max();
};

}  // namespace smtplb::client
