// backend_state.hpp: what every core knows about one backend.
//
// Shared by all cores (one object per configured backend) through atomics:
// passive detection on one core steers the others at once, and no lock is
// taken on the per-message path (the reason text, read by the admin API and
// written on state changes only, has its own small lock).
//
// A backend takes new transactions when all three agree:
//  * the operator: ready (not drain, not maint; the admin API sets these);
//  * active health checks: up (rise successes bring it up, fall failures
//    take it down; presumed up before the first check);
//  * passive detection: not ejected.  A refused connect, a timeout, a 421
//    or a dropped session in real traffic ejects it for a backoff that
//    doubles while it keeps failing (1 s, 2 s, 4 s ... 60 s); a successful
//    transaction or health check clears it.  The last usable backend of a
//    pool is never ejected on passive evidence alone.
#pragma once

#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <mutex>
#include <string>
#include <utility>

#include "config/config.hpp"

namespace smtplb::balance {

enum class AdminState { kReady = 0, kDrain = 1, kMaint = 2 };

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

  // May take a new transaction now.
  bool usable(Clock::time_point now) const {
    return admin() == AdminState::kReady && !check_down() && !ejected(now);
  }
  // Not usable, but worth trying when nothing usable is left (down by
  // checks or ejection); drain and maint are the operator's word: never.
  bool last_resort(Clock::time_point now) const {
    return admin() == AdminState::kReady && !usable(now);
  }
  bool ejected(Clock::time_point now) const {
    return now.time_since_epoch().count() < down_until_.load(std::memory_order_relaxed);
  }
  Clock::time_point down_until() const {
    return Clock::time_point(Clock::duration(down_until_.load(std::memory_order_relaxed)));
  }
  // "up", "down", "drain" or "maint", for the API and logs.
  const char* state_name(Clock::time_point now) const;

  // Passive detection.  Returns true when this failure ejected a backend
  // that was usable (so the caller logs the change once).  With
  // `others_usable` false the failure is counted but the backend stays:
  // ejecting the last one would only turn a flaky backend into none.
  bool record_failure(Clock::time_point now, bool others_usable = true);
  // Returns true when the backend had been ejected or failing.
  bool record_success();
  int consecutive_failures() const { return failures_.load(std::memory_order_relaxed); }

  // Active health checks (one checker per backend, one thread).  Returns
  // true when the verdict flipped.
  bool record_check(bool ok, const std::string& reason, int rise, int fall);
  bool check_down() const { return check_down_.load(std::memory_order_relaxed); }
  std::uint64_t checks_ok() const { return checks_ok_.load(std::memory_order_relaxed); }
  std::uint64_t checks_failed() const { return checks_failed_.load(std::memory_order_relaxed); }

  AdminState admin() const {
    return static_cast<AdminState>(admin_.load(std::memory_order_relaxed));
  }
  void set_admin(AdminState s, const std::string& why);

  std::string reason() const;
  void set_reason(const std::string& r);

  std::atomic<int> in_flight{0};  // transactions holding a session to it now

  // max_connections: every open relay session, idle pooled ones included.
  // True when a new session may be opened (and it is then counted).
  bool try_open_session() {
    int max = cfg_.max_connections;
    int n = sessions_.load(std::memory_order_relaxed);
    do {
      if (max > 0 && n >= max) return false;
    } while (!sessions_.compare_exchange_weak(n, n + 1, std::memory_order_relaxed));
    return true;
  }
  void close_session() { sessions_.fetch_sub(1, std::memory_order_relaxed); }
  int sessions() const { return sessions_.load(std::memory_order_relaxed); }
  // max_rate: may a new transaction start now?  A token bucket as GCRA
  // (one atomic "theoretical arrival time"), so no lock across cores.
  bool try_rate(Clock::time_point now);

  // Transactions that left this backend, by reason (client::Failure's
  // values; the admin model names them).
  static constexpr int kReasons = 16;
  void count_left(int reason) {
    if (reason >= 0 && reason < kReasons) left_[reason].fetch_add(1, std::memory_order_relaxed);
  }
  std::uint64_t left(int reason) const { return left_[reason].load(std::memory_order_relaxed); }

 private:
  std::string pool_;
  config::Backend cfg_;
  std::atomic<Clock::rep> down_until_{0};
  std::atomic<int> failures_{0};
  std::atomic<int> admin_{0};
  std::atomic<bool> check_down_{false};
  // Owned by the health checker's thread.
  int check_streak_ = 0;  // > 0: consecutive successes, < 0: failures
  std::atomic<std::uint64_t> checks_ok_{0}, checks_failed_{0};
  std::array<std::atomic<std::uint64_t>, kReasons> left_{};
  std::atomic<int> sessions_{0};
  std::atomic<Clock::rep> rate_tat_{0};
  mutable std::mutex reason_mu_;
  std::string reason_;
};

// Counts a transaction on a backend for the time it holds a session.
class InFlight {
 public:
  InFlight() = default;
  explicit InFlight(BackendState& b) : b_(&b) {
    b_->in_flight.fetch_add(1, std::memory_order_relaxed);
  }
  InFlight(InFlight&& o) noexcept : b_(std::exchange(o.b_, nullptr)) {}
  InFlight& operator=(InFlight&& o) noexcept {
    reset();
    b_ = std::exchange(o.b_, nullptr);
    return *this;
  }
  ~InFlight() { reset(); }
  void reset() {
    if (b_) b_->in_flight.fetch_sub(1, std::memory_order_relaxed);
    b_ = nullptr;
  }

 private:
  BackendState* b_ = nullptr;
};

}  // namespace smtplb::balance
