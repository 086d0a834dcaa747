// transaction.hpp: one mail transaction, MAIL to its end, kept in one place.
//
// The frontend session makes it at MAIL and drops it at the final reply,
// RSET or QUIT; the relay (RelayTransaction) works on it.  It holds what
// the client asked for (the envelope), what became of every recipient (each
// in exactly one of two lists, written by whoever decided: the relay for a
// backend's answer, the session for its own policy), the pool the first
// routed recipient pinned the transaction to, its ids for the log, and
// what only it can say: its `Received:` field and its part of the one
// summary line.  The spool and BDAT will hang off this object, not off the
// session.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "log/log.hpp"
#include "net/asio.hpp"
#include "relay/received.hpp"
#include "relay/relay_transaction.hpp"
#include "smtp/address.hpp"

namespace smtplb::relay {

class Transaction {
 public:
  Transaction(log::Scope scope, Envelope env, Clock::time_point started);
  ~Transaction();
  Transaction(const Transaction&) = delete;
  Transaction& operator=(const Transaction&) = delete;

  const std::string& id() const { return scope_.transaction; }
  const log::Scope& scope() const { return scope_; }
  const Envelope& envelope() const { return envelope_; }
  Clock::time_point started() const { return started_; }

  // Recipients, each in one list: accepted (a backend said 2xx) or refused
  // (by the session's policy or by a backend).
  const std::vector<smtp::Path>& accepted() const { return accepted_; }
  const std::vector<smtp::Path>& refused() const { return refused_; }
  void accept(const smtp::Path& rcpt) { accepted_.push_back(rcpt); }
  void refuse(const smtp::Path& rcpt) { refused_.push_back(rcpt); }
  bool tried_recipients() const { return !accepted_.empty() || !refused_.empty(); }

  // `mx: recipient`: the hosts of the first recipient's domain, which every
  // later recipient must share.
  void set_recipient_hosts(std::shared_ptr<upstream::PoolRuntime> hosts, std::string domain);
  upstream::PoolRuntime* recipient_hosts() const { return mx_hosts_.get(); }
  const std::string& recipient_domain() const { return mx_domain_; }

  // The pool the transaction is pinned to: null until start_relay().
  upstream::PoolRuntime* pool() const { return pool_; }
  // Pins the transaction to `pool` and makes its relay (once).
  RelayTransaction& start_relay(asio::any_io_executor ex, const config::Config& cfg,
                                upstream::PoolRuntime& pool);
  // Null until the first recipient was routed.
  RelayTransaction* relay() const { return relay_.get(); }

  // The trace field: the session's facts in `ri`, this transaction's id
  // and (when there is exactly one) its recipient added.
  std::string received_field(ReceivedInfo ri) const;
  // The transaction's fields of the summary line: from, pool, rcpts,
  // refused, size, tried, backend, queue_id (and possible_duplicate).
  void describe(log::Record& rec) const;
  // The summary line is written once: the first end (a final reply, an
  // abandoned transaction) writes it.
  bool logged = false;

 private:
  log::Scope scope_;
  Envelope envelope_;
  Clock::time_point started_;
  std::vector<smtp::Path> accepted_;
  std::vector<smtp::Path> refused_;
  std::shared_ptr<upstream::PoolRuntime> mx_hosts_;
  std::string mx_domain_;
  upstream::PoolRuntime* pool_ = nullptr;
  // Last: destroyed first, before the recipient hosts it may point into.
  std::unique_ptr<RelayTransaction> relay_;
};

}  // namespace smtplb::relay
