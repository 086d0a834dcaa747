// frontend_log.cpp: what the session tells the operator: the connect line,
// the state trace (debug), the one summary line per transaction (STYLE.md:
// sender, recipients, size, backend, attempts, result, backend queue id,
// with the session and transaction ids) and its counters, and the rare 250
// that was lost on the way to the client.  Apart so that the handlers read as the dialog and
// the log's fields are in one place.
#include <spdlog/spdlog.h>

#include "log/log.hpp"
#include "server/frontend_session.hpp"

namespace smtplb::server {

void FrontendSession::log_connect() const {
  log::Record("connect", scope())
      .add("listener", listener_->name)
      .add("client", client_ip_)
      .add("port", client_port_)
      .add("trusted", trusted_ ? "yes" : "no")
      .emit(spdlog::level::debug);
}

void FrontendSession::trace_state(smtp::SessionState before, smtp::Verb verb) const {
  // OpenSMTPD's smtp_enter_state trace: old -> new, once per command that
  // changed the state (its outcome included); free unless debugging.
  const smtp::SessionState after = machine_.state();
  if (after == before || !spdlog::should_log(spdlog::level::debug)) return;
  log::Record("state", scope())
      .add("verb", smtp::to_string(verb))
      .add("from", smtp::to_string(before))
      .add("to", smtp::to_string(after))
      .emit(spdlog::level::debug);
}

std::string FrontendSession::protocol_name() const {
  // RFC 3848 / RFC 6531: S for TLS, A for an authenticated client.
  std::string suffix = std::string(sock_.is_tls() ? "S" : "") + (auth_user_.empty() ? "" : "A");
  if (txn_ && txn_->envelope().needs_smtputf8) return "UTF8SMTP" + suffix;
  if (machine_.greeting() == smtp::Greeting::kEhlo) return "ESMTP" + suffix;
  return suffix.empty() ? "SMTP" : "ESMTP" + suffix;
}

void FrontendSession::log_transaction(const smtp::Reply& final_reply, const char* result) {
  txn_->logged = true;
  const relay::RelayTransaction* relay = txn_->relay();
  const upstream::PoolRuntime* pool = txn_->pool();
  auto us = std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - txn_->started());
  core_.shared().metrics->count_transaction(
      *view_->gen->metrics, listener_->name,
      pool && pool->cfg ? std::string_view(pool->cfg->name) : "",
      relay ? std::string_view(relay->backend_name()) : "", result,
      static_cast<double>(us.count()) / 1e6);
  log::Record rec("transaction", txn_->scope());
  rec.add("listener", listener_->name)
      .add("client", client_ip_)
      .add("helo", helo_name_)
      .add("user", auth_user_);
  txn_->describe(rec);
  rec.add("result", result).add("reply", final_reply.code ? final_reply.summary() : "");
  if (relay && relay->possible_duplicate()) rec.add("possible_duplicate", "yes");
  rec.add("us", static_cast<long long>(us.count()));
  rec.emit();
}

void FrontendSession::log_reply_lost(const log::Scope& scope, const smtp::Reply& reply) const {
  log::Record("reply_lost", scope)
      .add("reply", reply.summary())
      .add("possible_duplicate", "yes")
      .add("detail", "delivered, but the 250 could not be written to the client")
      .emit(spdlog::level::warn);
}

}  // namespace smtplb::server
