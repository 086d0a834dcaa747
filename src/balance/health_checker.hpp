// health_checker.hpp: active SMTP health checks (`health_check` of a pool).
//
// Every `interval` (less up to 10% jitter, so checks of many backends do not
// march in step) each backend gets what a polite client does: connect, the
// 220 banner, EHLO, the `expect`ed keywords, QUIT -- with the PROXY header
// (a local one), TLS and XCLIENT check its `tls:` and `identity:` ask for,
// as the relay's own sessions (BackendSession::open).  A refused connect, a
// banner other than 220 (421, 554), silence past `timeout`, a missing
// keyword, TLS that fails or XCLIENT not offered is a failure; `fall` failures in a row take the
// backend down and `rise` successes bring it up, each change logged once with its reason. The
// checks run as coroutines on one core's io_context: a slow or silent backend costs a timer, never
// a thread.
//
// Agent checks (`agent: {port, interval}` on a backend) run the same way:
// every interval smtplb connects to the agent port, reads its one-line
// HAProxy agent-check reply (balance/agent_protocol.hpp) and applies it for
// three intervals.  A garbled, oversized or silent reply is logged and
// counted and changes nothing: the last good one stays until it expires,
// and then the backend is as if it had no agent.
#pragma once

#include <atomic>
#include <functional>
#include <memory>
#include <vector>

#include "balance/backend_state.hpp"
#include "config/config.hpp"
#include "net/asio.hpp"

namespace smtplb::balance {

class HealthChecker {
 public:
  struct Target {
    balance::BackendState* state;
    tcp::endpoint endpoint;
    const config::HealthCheck* check;  // null: no SMTP checks
    const config::Agent* agent;        // null: no agent checks
  };

  HealthChecker(asio::io_context& io, const config::Config& cfg, std::vector<Target> targets);
  ~HealthChecker();
  void start();
  // Thread-safe: ends every check loop (shutdown, reload).
  void stop();
  // After stop(): every loop has returned, so the checker may be destroyed
  // (called on the checker's io_context).
  bool finished() const { return *running_ == 0; }

 private:
  struct Entry {
    Target target;
    std::unique_ptr<Timer> timer;
    std::unique_ptr<Timer> agent_timer;
  };
  // Counts a loop as running for its lifetime (one thread: no atomics).
  // Shared, because a loop's frame may be destroyed after the checker (at
  // exit the io_context destroys the frames still suspended in it).
  struct Running {
    explicit Running(std::shared_ptr<int> n) : n_(std::move(n)) { ++*n_; }
    ~Running() { --*n_; }
    Running(const Running&) = delete;
    Running& operator=(const Running&) = delete;
    std::shared_ptr<int> n_;
  };
  // Runs `step` every `interval` (the first time after first_lo..first_hi
  // of it, then up to 10% sooner than the interval) until stop().
  awaitable<void> every(Timer& timer, config::Duration interval, double first_lo, double first_hi,
                        std::uint64_t seed, std::function<awaitable<void>()> step);
  awaitable<void> check_and_record(Entry& e);
  awaitable<void> agent_once(Target t);
  awaitable<std::pair<bool, std::string>> check_once(Target t);  // by value: outlives stop()

  asio::io_context& io_;
  const config::Config& cfg_;
  std::vector<std::unique_ptr<Entry>> entries_;
  std::shared_ptr<std::atomic<bool>> stopped_ = std::make_shared<std::atomic<bool>>(false);
  std::shared_ptr<int> running_ = std::make_shared<int>(0);
};

}  // namespace smtplb::balance
