#include "balance/backend_state.hpp"

#include <algorithm>

namespace smtplb::balance {

const char* BackendState::state_name(Clock::time_point now) const {
  switch (admin()) {
    case AdminState::kDrain:
      return "drain";
    case AdminState::kMaint:
      return "maint";
    case AdminState::kReady:
      break;
  }
  return usable(now) ? "up" : "down";
}

bool BackendState::record_failure(Clock::time_point now, bool others_usable) {
  int n = failures_.fetch_add(1, std::memory_order_relaxed) + 1;
  if (!others_usable) return false;
  auto backoff = kFirstBackoff * (1LL << std::min(n - 1, 6));
  if (backoff > kMaxBackoff) backoff = kMaxBackoff;
  auto until = (now + backoff).time_since_epoch().count();
  auto prev = down_until_.exchange(until, std::memory_order_relaxed);
  return prev <= now.time_since_epoch().count();
}

bool BackendState::record_success() {
  if (failures_.load(std::memory_order_relaxed) == 0 &&
      down_until_.load(std::memory_order_relaxed) == 0)
    return false;
  failures_.store(0, std::memory_order_relaxed);
  down_until_.store(0, std::memory_order_relaxed);
  return true;
}

bool BackendState::record_check(bool ok, const std::string& reason, int rise, int fall) {
  (ok ? checks_ok_ : checks_failed_).fetch_add(1, std::memory_order_relaxed);
  if (ok)
    check_streak_ = check_streak_ > 0 ? check_streak_ + 1 : 1;
  else
    check_streak_ = check_streak_ < 0 ? check_streak_ - 1 : -1;
  bool down = check_down();
  if (!down && !ok && -check_streak_ >= fall) {
    check_down_.store(true, std::memory_order_relaxed);
    set_reason(reason);
    return true;
  }
  if (down && ok && check_streak_ >= rise) {
    check_down_.store(false, std::memory_order_relaxed);
    record_success();  // an ejected backend comes back through a good check
    set_reason("");
    return true;
  }
  return false;
}

bool BackendState::try_rate(Clock::time_point now) {
  double rate = cfg_.max_rate.per_second;
  if (rate <= 0) return true;
  // Emission interval T, burst tolerance of `burst` arrivals (the N of N/s).
  const auto t =
      std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(1.0 / rate));
  const auto tolerance = t * static_cast<Clock::rep>(std::max(1.0, cfg_.max_rate.burst) - 1);
  Clock::rep tat = rate_tat_.load(std::memory_order_relaxed);
  for (;;) {
    Clock::time_point cur{Clock::duration{tat}};
    Clock::time_point start = std::max(cur, now);
    if (start - now > tolerance) return false;
    Clock::rep next = (start + t).time_since_epoch().count();
    if (rate_tat_.compare_exchange_weak(tat, next, std::memory_order_relaxed)) return true;
  }
}

void BackendState::set_admin(AdminState s, const std::string& why) {
  admin_.store(static_cast<int>(s), std::memory_order_relaxed);
  set_reason(why);
}

std::string BackendState::reason() const {
  std::lock_guard lock(reason_mu_);
  return reason_;
}

void BackendState::set_reason(const std::string& r) {
  std::lock_guard lock(reason_mu_);
  reason_ = r;
}

}  // namespace smtplb::balance
