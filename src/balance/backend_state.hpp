// backend_state.hpp: what every core knows about one backend's health.
//
// Shared by all cores (one object per configured backend) through atomics
// only: passive detection on one core steers the others at once, and no
// lock is ever taken on the per-message path.  A failed connect or a
// dropped session marks the backend down for a backoff that doubles while
// it keeps failing (1 s, 2 s, 4 s ... capped), and one success clears it.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <string>

#include "config/config.hpp"

namespace smtplb::balance {

class BackendState {
 public:
  using Clock = std::chrono::steady_clock;
  static constexpr std::chrono::milliseconds kFirstBackoff{1000};
  static constexpr std::chrono::milliseconds kMaxBackoff{60000};

  BackendState(std::string pool, config::Backend cfg)
      : pool_(std::move(pool)), cfg_(std::move(cfg)) {}

  const config::Backend& config() const { return cfg_; }
  const std::string& name() const { return cfg_.name; }
  const std::string& pool() const { return pool_; }

  bool usable(Clock::time_point now) const {
    return now.time_since_epoch().count() >= down_until_.load(std::memory_order_relaxed);
  }
  Clock::time_point down_until() const {
    return Clock::time_point(Clock::duration(down_until_.load(std::memory_order_relaxed)));
  }

  // Returns true when this failure changed the backend from up to down
  // (so the caller logs the change once).
  bool record_failure(Clock::time_point now) {
    int n = failures_.fetch_add(1, std::memory_order_relaxed) + 1;
    auto backoff = kFirstBackoff * (1LL << std::min(n - 1, 6));
    if (backoff > kMaxBackoff) backoff = kMaxBackoff;
    auto until = (now + backoff).time_since_epoch().count();
    auto prev = down_until_.exchange(until, std::memory_order_relaxed);
    return prev <= now.time_since_epoch().count();
  }
  // Returns true when the backend was marked down before.
  bool record_success() {
    if (failures_.load(std::memory_order_relaxed) == 0) return false;
    failures_.store(0, std::memory_order_relaxed);
    down_until_.store(0, std::memory_order_relaxed);
    return true;
  }
  int consecutive_failures() const { return failures_.load(std::memory_order_relaxed); }

  std::atomic<int> in_flight{0};

 private:
  std::string pool_;
  config::Backend cfg_;
  std::atomic<Clock::rep> down_until_{0};
  std::atomic<int> failures_{0};
};

}  // namespace smtplb::balance
