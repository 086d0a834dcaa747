// frontend_auth.cpp: the AUTH exchange (RFC 4954), once the session
// machine has let AUTH through (offered, under TLS, after EHLO, outside a
// transaction, not yet authenticated).  Its own file because it is the one
// command that reads more lines (334 challenges and their responses, with
// a longer line limit) and waits on the password check and the failure
// throttle; the machine is told the outcome by dispatch().
#include "log/log.hpp"
#include "net/clock.hpp"
#include "server/frontend_session.hpp"
#include "smtp/replies.hpp"
#include "smtp/sasl.hpp"

namespace smtplb::server {

namespace replies = smtp::replies;

awaitable<smtp::Reply> FrontendSession::on_auth(const smtp::Command& cmd, bool& close) {
  auto& shared = core_.shared();
  if (!shared.auth_throttle->on_attempt(ip_, Clock::now()).allowed) {
    shared.sessions.auth_locked_out.fetch_add(1, std::memory_order_relaxed);
    log::Record("auth_refused", scope())
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
    // No password was checked: the attempt frees its place in the
    // throttle's budget, or ten cancelled exchanges would lock the
    // address out like ten wrong passwords.
    shared.auth_throttle->on_abandoned(ip_);
    co_return *reply;
  }
  auto credentials = std::get<smtp::sasl::Credentials>(std::move(step));
  auth::Verdict verdict = co_await shared.verifier->verify(
      cfg_->auth->passwords, credentials.username, std::move(credentials.password));
  if (verdict == auth::Verdict::kBusy) {
    shared.sessions.auth_busy.fetch_add(1, std::memory_order_relaxed);
    shared.auth_throttle->on_abandoned(ip_);
    co_return replies::auth_temporary_failure();
  }
  if (verdict == auth::Verdict::kRejected)
    co_return co_await auth_failure(credentials.username, replies::auth_failed());
  shared.sessions.auth_accepted.fetch_add(1, std::memory_order_relaxed);
  shared.auth_throttle->on_success(ip_);
  auth_user_ = credentials.username;
  log::Record("auth", scope())
      .add("client", client_ip_)
      .add("user", auth_user_)
      .add("mechanism", smtp::sasl::to_string(credentials.mechanism))
      .emit(spdlog::level::info);
  co_return replies::auth_succeeded();
}

awaitable<smtp::Reply> FrontendSession::auth_failure(std::string_view user, smtp::Reply reply) {
  auto& shared = core_.shared();
  shared.sessions.auth_failed.fetch_add(1, std::memory_order_relaxed);
  auto delay = shared.auth_throttle->on_failure(ip_, Clock::now());
  log::Record("auth_failed", scope())
      .add("client", client_ip_)
      .add("user", user)
      .add("delay_ms", static_cast<long long>(
                           std::chrono::duration_cast<std::chrono::milliseconds>(delay).count()))
      .emit(spdlog::level::warn);
  if (delay > Clock::duration::zero()) {
    // Bounded by the throttle's max_delay (30 s), and cut short by a
    // shutdown (on_shutdown), so that the 421 comes before the process
    // stops.
    Timer timer(core_.io().get_executor(), delay);
    auth_delay_ = &timer;
    co_await timer.async_wait(use_nothrow);
    auth_delay_ = nullptr;
  }
  co_return reply;
}

}  // namespace smtplb::server
