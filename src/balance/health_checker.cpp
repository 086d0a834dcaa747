#include "balance/health_checker.hpp"

#include <random>

#include "balance/agent_protocol.hpp"
#include "log/log.hpp"
#include "net/clock.hpp"
#include "net/timed_socket.hpp"
#include "upstream/backend_session.hpp"

namespace smtplb::balance {

HealthChecker::HealthChecker(asio::io_context& io, const config::Config& cfg,
                             std::vector<Target> targets)
    : io_(io), cfg_(cfg) {
  for (auto& t : targets)
    entries_.push_back(std::make_unique<Entry>(
        Entry{t, std::make_unique<Timer>(io_), std::make_unique<Timer>(io_)}));
}

HealthChecker::~HealthChecker() {
  stopped_->store(true);
}

void HealthChecker::start() {
  std::random_device rd;
  for (auto& e : entries_) {
    Entry* entry = e.get();
    if (entry->target.check)
      asio::co_spawn(io_,
                     every(*entry->timer, entry->target.check->interval, 0.05, 0.2,
                           (std::uint64_t{rd()} << 32) | rd(),
                           [this, entry] { return check_and_record(*entry); }),
                     asio::detached);
    if (entry->target.agent)
      asio::co_spawn(io_,
                     every(*entry->agent_timer, entry->target.agent->interval, 0.0, 0.1,
                           (std::uint64_t{rd()} << 32) | rd(),
                           [this, entry] { return agent_once(entry->target); }),
                     asio::detached);
  }
}

void HealthChecker::stop() {
  asio::post(io_, [this, stopped = stopped_] {
    if (stopped->exchange(true)) return;
    for (auto& e : entries_) {
      e->timer->cancel();
      e->agent_timer->cancel();
    }
  });
}

awaitable<std::pair<bool, std::string>> HealthChecker::check_once(Target t) {
  upstream::BackendSession s(io_.get_executor(), *t.state, cfg_);
  auto timeout = std::chrono::duration_cast<std::chrono::milliseconds>(t.check->timeout);
  // The same greeting the relay does: PROXY header, TLS with the same
  // verification, the XCLIENT check; so a backend whose certificate fails
  // or that lost XCLIENT is down here too.  A backend that wants a PROXY
  // header on every connection (Postfix smtpd_upstream_proxy_protocol)
  // gets one naming this connection's own addresses: it carries no client.
  upstream::Failure f = co_await s.open(
      t.endpoint, upstream::BackendSession::OpenTimeouts{timeout, timeout, timeout}, nullptr);
  if (f != upstream::Failure::kNone) {
    std::string why = to_string(f);
    if (!s.failure_detail().empty())
      why += ": " + s.failure_detail();
    else if (s.open_reply().code)
      why += ": " + s.open_reply().summary();
    co_return std::pair{false, why};
  }
  for (const auto& kw : t.check->expect) {
    if (!s.caps().has(kw)) {
      co_await s.quit();
      co_return std::pair{false, "EHLO lacks " + kw};
    }
  }
  // QUIT, as a mail admin would want to see it in the backend's log.
  co_await s.quit();
  co_return std::pair{true, std::string()};
}

awaitable<void> HealthChecker::every(Timer& timer, config::Duration interval, double first_lo,
                                     double first_hi, std::uint64_t seed,
                                     std::function<awaitable<void>()> step) {
  auto stopped = stopped_;
  Running running(running_);
  std::mt19937_64 rng(seed);
  // The first round comes early (but not all at once); later ones every
  // interval, up to 10% sooner, so that many backends' checks do not march
  // in step.
  std::uniform_real_distribution<double> first(first_lo, first_hi), jitter(0.9, 1.0);
  double factor = first(rng);
  while (!stopped->load()) {
    timer.expires_after(std::chrono::duration_cast<std::chrono::milliseconds>(interval * factor));
    co_await timer.async_wait(use_nothrow);
    if (stopped->load()) co_return;
    factor = jitter(rng);
    co_await step();
  }
}

awaitable<void> HealthChecker::check_and_record(Entry& e) {
  auto stopped = stopped_;
  auto [ok, why] = co_await check_once(e.target);
  if (stopped->load()) co_return;
  // smtplb out of descriptors says nothing about the backend.
  if (why.rfind(upstream::to_string(upstream::Failure::kLocalLimit), 0) == 0) co_return;
  auto& st = *e.target.state;
  if (st.record_check(ok, why, e.target.check->rise, e.target.check->fall)) {
    log::Record("backend_check")
        .add("pool", st.pool())
        .add("backend", st.name())
        .add("state", ok ? "up" : "down")
        .add("reason", ok ? "health check passed" : why)
        .emit(ok ? spdlog::level::info : spdlog::level::warn);
  }
}

awaitable<void> HealthChecker::agent_once(Target t) {
  auto& st = *t.state;
  const auto interval = std::chrono::duration_cast<std::chrono::milliseconds>(t.agent->interval);
  const auto timeout = std::min<std::chrono::milliseconds>(interval, std::chrono::seconds(2));
  auto ignore = [&](const std::string& why) {
    st.count_agent_garbled();
    log::Record("agent_ignored")
        .add("pool", st.pool())
        .add("backend", st.name())
        .add("reason", why)
        .emit(spdlog::level::warn);
  };
  net::TimedSocket sock(io_.get_executor());
  tcp::endpoint ep(t.endpoint.address(), t.agent->port);
  if (error_code ec = co_await sock.connect(ep, timeout); ec) {
    ignore("connect: " + ec.message());
    co_return;
  }
  // The reply is one line, then the agent closes: read to EOF, bounded.
  std::string reply;
  std::array<char, 256> buf;
  const auto deadline = Clock::now() + timeout;
  for (;;) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
    if (left <= std::chrono::milliseconds::zero()) {
      ignore("no complete reply within " + std::to_string(timeout.count()) + "ms");
      co_return;
    }
    auto [ec, n] = co_await sock.read_some(asio::buffer(buf), left);
    reply.append(buf.data(), n);
    if (reply.size() > kMaxAgentReply) {
      ignore("reply over " + std::to_string(kMaxAgentReply) + " octets");
      co_return;
    }
    if (ec == asio::error::eof || reply.find('\n') != std::string::npos) break;
    if (ec) {
      ignore(ec == asio::error::timed_out ? "silent" : "read: " + ec.message());
      co_return;
    }
  }
  sock.close();
  reply = reply.substr(0, reply.find('\n'));
  auto parsed = parse_agent_reply(reply);
  if (!parsed) {
    ignore("garbled reply \"" + log::escape(reply.substr(0, 80)) + "\"");
    co_return;
  }
  balance::BackendState::AgentFigures f;
  auto now = Clock::now();
  // Words the agent did not send keep their neutral value, as in HAProxy.
  f.percent = parsed->percent.value_or(st.agent_percent(now));
  f.weight = parsed->weight.value_or(-1);
  f.maxconn = parsed->maxconn.value_or(-1);
  f.admin = parsed->admin == AgentReply::Admin::kDrain   ? balance::AdminState::kDrain
            : parsed->admin == AgentReply::Admin::kMaint ? balance::AdminState::kMaint
            : parsed->admin == AgentReply::Admin::kReady ? balance::AdminState::kReady
                                                         : st.agent_admin(now);
  f.down = parsed->health == AgentReply::Health::kDown ? true
           : parsed->health == AgentReply::Health::kUp ? false
                                                       : st.agent_down(now);
  f.cpu = parsed->cpu.value_or(-1);
  f.mem = parsed->mem.value_or(-1);
  f.queue = parsed->queue.value_or(-1);
  if (!reply.empty() && reply.back() == '\r') reply.pop_back();
  st.set_agent_reply(reply);
  if (st.apply_agent(f, now, t.agent->interval * 3)) {
    log::Record("backend_agent")
        .add("pool", st.pool())
        .add("backend", st.name())
        .add("state", st.state_name(now))
        .add("reply", reply)
        .emit(st.usable(now) ? spdlog::level::info : spdlog::level::warn);
  }
}

}  // namespace smtplb::balance
