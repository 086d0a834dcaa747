#include "balance/backend_state.hpp"

#include <algorithm>
#include <cmath>

namespace smtplb::balance {

const char* BackendState::state_name(Clock::time_point now) const {
  AdminState a = admin();
  if (a == AdminState::kReady) a = agent_admin(now);
  switch (a) {
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

bool BackendState::record_suspect(Clock::time_point now, std::uint64_t transaction,
                                  bool others_usable) {
  const auto prev = suspect_transaction_.exchange(transaction, std::memory_order_relaxed);
  const auto prev_at = Clock::time_point(Clock::duration(
      suspect_at_.exchange(now.time_since_epoch().count(), std::memory_order_relaxed)));
  if (prev == 0 || prev == transaction || now - prev_at > kSuspectWindow) return false;
  return record_failure(now, others_usable);
}

bool BackendState::record_success() {
  if (failures_.load(std::memory_order_relaxed) == 0 &&
      down_until_.load(std::memory_order_relaxed) == 0)
    return false;
  failures_.store(0, std::memory_order_relaxed);
  if (down_until_.exchange(0, std::memory_order_relaxed) != 0)
    up_since_.store(Clock::now().time_since_epoch().count(), std::memory_order_relaxed);
  return true;
}

int BackendState::effective_weight(Clock::time_point now) const {
  int w = cfg_.weight;
  if (agent_fresh(now)) {
    int aw = agent_weight_.load(std::memory_order_relaxed);
    if (aw >= 0) w = aw;
    w *= agent_percent_.load(std::memory_order_relaxed);
  } else {
    w *= 100;
  }
  Clock::rep since = up_since_.load(std::memory_order_relaxed);
  if (slow_start_.count() > 0 && since != 0 && w > 0) {
    auto up_for = now - Clock::time_point(Clock::duration(since));
    if (up_for < slow_start_) {
      double share = std::chrono::duration<double>(up_for) / slow_start_;
      w = std::max(1, static_cast<int>(w * std::max(0.1, share)));
    }
  }
  return w;
}

bool BackendState::apply_agent(const AgentFigures& f, Clock::time_point now,
                               Clock::duration valid_for) {
  bool was = usable(now);
  agent_percent_.store(f.percent, std::memory_order_relaxed);
  agent_weight_.store(f.weight, std::memory_order_relaxed);
  agent_maxconn_.store(f.maxconn, std::memory_order_relaxed);
  agent_admin_.store(static_cast<int>(f.admin), std::memory_order_relaxed);
  agent_down_.store(f.down, std::memory_order_relaxed);
  agent_cpu_.store(f.cpu, std::memory_order_relaxed);
  agent_mem_.store(f.mem, std::memory_order_relaxed);
  agent_queue_.store(f.queue, std::memory_order_relaxed);
  agent_expires_.store((now + valid_for).time_since_epoch().count(), std::memory_order_relaxed);
  agent_ok_.fetch_add(1, std::memory_order_relaxed);
  bool is = usable(now);
  if (!was && is) up_since_.store(now.time_since_epoch().count(), std::memory_order_relaxed);
  return was != is;
}

double BackendState::agent_room(Clock::time_point now) const {
  if (!agent_fresh(now)) return 1.0;
  int busiest = std::max(agent_cpu(), agent_mem());
  if (busiest < 0) return 1.0;
  return std::max(0.05, (100.0 - busiest) / 100.0);
}

void BackendState::observe_final_dot(double seconds, Clock::time_point now) {
  double avg = final_dot_seconds(now);
  double next = avg == 0 ? seconds : avg + (seconds - avg) / kFinalDotSamples;
  final_dot_avg_.store(next, std::memory_order_relaxed);
  final_dot_at_.store(now.time_since_epoch().count(), std::memory_order_relaxed);
}

double BackendState::final_dot_seconds(Clock::time_point now) const {
  auto at = final_dot_at_.load(std::memory_order_relaxed);
  if (at == 0) return 0;
  double idle = std::chrono::duration<double>(now.time_since_epoch() - Clock::duration(at)).count();
  double decay = std::chrono::duration<double>(kFinalDotIdleDecay).count();
  return final_dot_avg_.load(std::memory_order_relaxed) * std::exp(-std::max(0.0, idle) / decay);
}

bool BackendState::record_check(bool ok, const std::string& reason, int rise, int fall) {
  (ok ? checks_ok_ : checks_failed_).fetch_add(1, std::memory_order_relaxed);
  last_check_.store(std::chrono::system_clock::now().time_since_epoch().count(),
                    std::memory_order_relaxed);
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
    up_since_.store(Clock::now().time_since_epoch().count(), std::memory_order_relaxed);
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

void BackendState::set_agent_reply(std::string reply) {
  std::lock_guard lock(reason_mu_);
  agent_reply_ = std::move(reply);
  agent_reply_at_ = std::chrono::system_clock::now();
}

std::pair<std::string, std::chrono::system_clock::time_point> BackendState::agent_reply() const {
  std::lock_guard lock(reason_mu_);
  return {agent_reply_, agent_reply_at_};
}

void BackendState::set_reason(const std::string& r) {
  std::lock_guard lock(reason_mu_);
  reason_ = r;
}

}  // namespace smtplb::balance
