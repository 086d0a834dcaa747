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

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <mutex>
#include <string>
#include <utility>

#include "config/config.hpp"
#include "net/clock.hpp"

namespace smtplb::balance {

enum class AdminState { kReady = 0, kDrain = 1, kMaint = 2 };

class BackendState {
 public:
  using Clock = smtplb::Clock;
  static constexpr std::chrono::milliseconds kFirstBackoff{1000};
  static constexpr std::chrono::milliseconds kMaxBackoff{60000};

  BackendState(std::string pool, config::Backend cfg,
               std::chrono::milliseconds slow_start = std::chrono::milliseconds(0))
      : pool_(std::move(pool)), cfg_(std::move(cfg)), slow_start_(slow_start) {}

  const config::Backend& config() const { return cfg_; }
  const std::string& name() const { return cfg_.name; }
  const std::string& pool() const { return pool_; }

  // May take a new transaction now.
  bool usable(Clock::time_point now) const {
    return admin() == AdminState::kReady && agent_admin(now) == AdminState::kReady &&
           !check_down() && !agent_down(now) && !ejected(now);
  }
  // Not usable, but worth trying when nothing usable is left (down by
  // checks, agent or ejection); drain and maint, the operator's or the
  // agent's word, never.
  bool last_resort(Clock::time_point now) const {
    return admin() == AdminState::kReady && agent_admin(now) == AdminState::kReady && !usable(now);
  }

  // The weight the algorithms use, in hundredths: the configured weight
  // (or the agent's weight:N), scaled by the agent's percentage (as
  // HAProxy does) and, during slow_start after coming back up, by the
  // share of that time gone by (at least 10%).
  int effective_weight(Clock::time_point now) const;

  // Agent checks (one checker per backend, one thread).  A reply stays in
  // force for `valid_for`; then the backend is as if it had no agent.
  struct AgentFigures {
    int percent = 100;
    int weight = -1;   // -1: the configured one
    int maxconn = -1;  // -1: none from the agent
    AdminState admin = AdminState::kReady;
    bool down = false;
    int cpu = -1, mem = -1, queue = -1;  // -1: not sent
  };
  // Returns true when the backend's usability changed.
  bool apply_agent(const AgentFigures& f, Clock::time_point now, Clock::duration valid_for);
  bool agent_fresh(Clock::time_point now) const {
    return now.time_since_epoch().count() < agent_expires_.load(std::memory_order_relaxed);
  }
  AdminState agent_admin(Clock::time_point now) const {
    return agent_fresh(now) ? static_cast<AdminState>(agent_admin_.load(std::memory_order_relaxed))
                            : AdminState::kReady;
  }
  bool agent_down(Clock::time_point now) const {
    return agent_fresh(now) && agent_down_.load(std::memory_order_relaxed);
  }
  int agent_percent(Clock::time_point now) const {
    return agent_fresh(now) ? agent_percent_.load(std::memory_order_relaxed) : 100;
  }
  // Room left by the agent's CPU and memory figures, 0.05..1 (1 without them).
  double agent_room(Clock::time_point now) const;

  // How long the backend takes to answer the final dot (its own work on
  // the message, and any queue in front of that work), for least_load: a
  // moving average over the last ~kFinalDotSamples answers, decaying
  // towards zero while no answer comes (time constant kFinalDotIdleDecay),
  // so a backend left alone for being slow is tried again and can show it
  // has recovered.  Zero before the first answer.  Cores update it without
  // a lock; two updates racing may lose one sample, which an average of
  // this kind shrugs off.
  static constexpr double kFinalDotSamples = 10;
  static constexpr std::chrono::seconds kFinalDotIdleDecay{5};
  void observe_final_dot(double seconds, Clock::time_point now);
  double final_dot_seconds(Clock::time_point now) const;
  int agent_cpu() const { return agent_cpu_.load(std::memory_order_relaxed); }
  int agent_mem() const { return agent_mem_.load(std::memory_order_relaxed); }
  int agent_queue() const { return agent_queue_.load(std::memory_order_relaxed); }
  std::uint64_t agent_replies() const { return agent_ok_.load(std::memory_order_relaxed); }
  std::uint64_t agent_garbled() const { return agent_bad_.load(std::memory_order_relaxed); }
  void count_agent_garbled() { agent_bad_.fetch_add(1, std::memory_order_relaxed); }
  // The last reply applied, as the agent sent it, and when (for the API).
  void set_agent_reply(std::string reply);
  std::pair<std::string, std::chrono::system_clock::time_point> agent_reply() const;
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
  // A fault that may be the transaction's doing rather than the
  // backend's (a protocol violation, a stall at one recipient): counted as
  // a failure only when the last one came from another transaction within
  // kSuspectWindow (DESIGN.md: one odd recipient must not take the pool
  // down).  `transaction`: any number unique to the transaction.
  static constexpr std::chrono::minutes kSuspectWindow{5};
  bool record_suspect(Clock::time_point now, std::uint64_t transaction, bool others_usable = true);
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
    int agent_max = agent_fresh(Clock::now()) ? agent_maxconn_.load(std::memory_order_relaxed) : -1;
    if (agent_max >= 0 && (max == 0 || agent_max < max)) max = std::max(agent_max, 1);
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

  // Backend reply times (every command's reply, the final dot's included),
  // for the histogram /metrics exports.
  static constexpr std::array<double, 10> kReplyBuckets = {0.0005, 0.001, 0.0025, 0.005, 0.01,
                                                           0.025,  0.05,  0.1,    0.5,   2};
  void observe_reply(double seconds) {
    std::size_t b = 0;
    while (b < kReplyBuckets.size() && seconds > kReplyBuckets[b]) ++b;
    reply_buckets_[b].fetch_add(1, std::memory_order_relaxed);
    reply_us_sum_.fetch_add(static_cast<std::uint64_t>(seconds * 1e6), std::memory_order_relaxed);
  }
  std::uint64_t reply_bucket(std::size_t b) const {
    return reply_buckets_[b].load(std::memory_order_relaxed);
  }
  std::uint64_t reply_us_sum() const { return reply_us_sum_.load(std::memory_order_relaxed); }
  // When the last active check and agent reply came (0: never), for the API.
  std::chrono::system_clock::time_point last_check() const {
    return std::chrono::system_clock::time_point(
        std::chrono::system_clock::duration(last_check_.load(std::memory_order_relaxed)));
  }

  // New TLS connections to it (relay and health checks) and how many of
  // them resumed an earlier session rather than paying a full handshake.
  void count_tls(bool resumed) {
    tls_handshakes_.fetch_add(1, std::memory_order_relaxed);
    if (resumed) tls_resumed_.fetch_add(1, std::memory_order_relaxed);
  }
  std::uint64_t tls_handshakes() const { return tls_handshakes_.load(std::memory_order_relaxed); }
  std::uint64_t tls_resumed() const { return tls_resumed_.load(std::memory_order_relaxed); }

  // Transactions that left this backend, by reason (upstream::Failure's
  // values; the admin model names them).
  static constexpr int kReasons = 24;
  void count_left(int reason) {
    if (reason >= 0 && reason < kReasons) left_[reason].fetch_add(1, std::memory_order_relaxed);
  }
  std::uint64_t left(int reason) const { return left_[reason].load(std::memory_order_relaxed); }

 private:
  std::string pool_;
  config::Backend cfg_;
  std::atomic<Clock::rep> down_until_{0};
  std::atomic<int> failures_{0};
  std::atomic<std::uint64_t> suspect_transaction_{0};
  std::atomic<Clock::rep> suspect_at_{0};
  std::atomic<int> admin_{0};
  std::atomic<bool> check_down_{false};
  // Owned by the health checker's thread.
  int check_streak_ = 0;  // > 0: consecutive successes, < 0: failures
  std::atomic<std::uint64_t> checks_ok_{0}, checks_failed_{0};
  std::array<std::atomic<std::uint64_t>, kReasons> left_{};
  std::atomic<int> sessions_{0};
  std::atomic<std::uint64_t> tls_handshakes_{0}, tls_resumed_{0};
  std::array<std::atomic<std::uint64_t>, kReplyBuckets.size() + 1> reply_buckets_{};
  std::atomic<std::uint64_t> reply_us_sum_{0};
  std::atomic<std::chrono::system_clock::rep> last_check_{0};
  std::chrono::milliseconds slow_start_;
  std::atomic<Clock::rep> up_since_{0};  // when it last came back up (slow start)
  std::atomic<int> agent_percent_{100}, agent_weight_{-1}, agent_maxconn_{-1}, agent_admin_{0};
  std::atomic<bool> agent_down_{false};
  std::atomic<int> agent_cpu_{-1}, agent_mem_{-1}, agent_queue_{-1};
  std::atomic<Clock::rep> agent_expires_{0};
  std::atomic<std::uint64_t> agent_ok_{0}, agent_bad_{0};
  std::atomic<Clock::rep> rate_tat_{0};
  std::atomic<double> final_dot_avg_{0};
  std::atomic<Clock::rep> final_dot_at_{0};
  mutable std::mutex reason_mu_;  // for reason_ and the agent's last reply
  std::string reason_;
  std::string agent_reply_;
  std::chrono::system_clock::time_point agent_reply_at_{};
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
