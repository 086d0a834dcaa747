#include "client/health_checker.hpp"

#include <random>

#include "client/backend_session.hpp"
#include "log/log.hpp"

namespace smtplb::client {

HealthChecker::HealthChecker(asio::io_context& io, const config::Config& cfg,
                             std::vector<Target> targets)
    : io_(io), cfg_(cfg) {
  for (auto& t : targets)
    entries_.push_back(
        std::make_unique<Entry>(Entry{t, std::make_unique<asio::steady_timer>(io_)}));
}

HealthChecker::~HealthChecker() {
  stopped_->store(true);
}

void HealthChecker::start() {
  std::random_device rd;
  for (auto& e : entries_)
    asio::co_spawn(io_, loop(*e, (std::uint64_t{rd()} << 32) | rd()), asio::detached);
}

void HealthChecker::stop() {
  asio::post(io_, [this, stopped = stopped_] {
    if (stopped->exchange(true)) return;
    for (auto& e : entries_) e->timer->cancel();
  });
}

awaitable<std::pair<bool, std::string>> HealthChecker::check_once(Target t) {
  BackendSession s(io_.get_executor(), *t.state, cfg_);
  auto timeout = std::chrono::duration_cast<std::chrono::milliseconds>(t.check->timeout);
  Failure f = co_await s.open(t.endpoint, timeout, timeout);
  if (f != Failure::kNone) {
    std::string why = to_string(f);
    if (s.open_reply().code) why += ": " + s.open_reply().summary();
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

awaitable<void> HealthChecker::loop(Entry& e, std::uint64_t seed) {
  auto stopped = stopped_;
  std::mt19937_64 rng(seed);
  const auto interval = e.target.check->interval;
  // The first check comes early (but not all at once); later ones every
  // interval, up to 10% sooner.
  std::uniform_real_distribution<double> first(0.05, 0.2), jitter(0.9, 1.0);
  double factor = first(rng);
  while (!stopped->load()) {
    e.timer->expires_after(
        std::chrono::duration_cast<std::chrono::milliseconds>(interval * factor));
    co_await e.timer->async_wait(use_nothrow);
    if (stopped->load()) co_return;
    factor = jitter(rng);
    auto [ok, why] = co_await check_once(e.target);
    if (stopped->load()) co_return;
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
}

}  // namespace smtplb::client
