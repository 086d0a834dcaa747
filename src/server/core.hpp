// core.hpp: everything one thread owns (DESIGN.md: one io_context per core).
//
// A Core has its own io_context, acceptors (SO_REUSEPORT, so the kernel
// spreads connections over the cores), sessions, balancers and pooled
// backend sessions.  What the cores share is read-only (the Config) or
// atomic (backend health, connection counts): no lock on the message path.
#pragma once

#include <atomic>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "balance/backend_state.hpp"
#include "client/pool_runtime.hpp"
#include "config/config.hpp"
#include "net/asio.hpp"
#include "route/router.hpp"
#include "server/connection_limiter.hpp"
#include "server/metrics.hpp"
#include "server/rate_limiter.hpp"

namespace smtplb::server {

class FrontendSession;

// What all cores share, built once at start-up.
struct Shared {
  std::shared_ptr<const config::Config> cfg;
  // One state per configured backend, per pool, with its resolved address.
  struct BackendEntry {
    std::unique_ptr<balance::BackendState> state;
    tcp::endpoint endpoint;
  };
  std::map<std::string, std::vector<BackendEntry>> backends;  // by pool name
  ConnectionLimiter limiter;
  std::unique_ptr<RateLimiter> connection_rate;  // per client address, untrusted only
  std::unique_ptr<RateLimiter> message_rate;
  std::atomic<std::uint64_t> possible_duplicates{0};
  std::unique_ptr<Metrics> metrics;
  std::uint32_t id_base = 0;  // random per process, so ids differ across restarts
};

class Core {
 public:
  Core(int index, Shared& shared);
  ~Core();

  asio::io_context& io() { return io_; }
  // Opens this core's acceptors; throws std::runtime_error naming the
  // listener on a bind error (start-up only).
  void listen();
  void run() { io_.run(); }

  // Stop accepting; idle sessions get 421 now, busy ones after their
  // transaction.  Thread-safe (posts to the core).
  void begin_shutdown();
  // Deadline passed: every session gets 421 and is closed.  Thread-safe.
  void force_close();

  const config::Config& cfg() const { return *shared_.cfg; }
  Shared& shared() { return shared_; }
  client::PoolRuntime* pool(std::string_view name);
  const route::Router& router() const { return router_; }
  bool shutting_down() const { return shutting_down_; }
  int index() const { return index_; }
  std::string next_session_id();
  std::size_t session_count() const { return sessions_.size(); }

  void add(FrontendSession* s) { sessions_.insert(s); }
  void remove(FrontendSession* s) { sessions_.erase(s); }

 private:
  awaitable<void> accept_loop(tcp::acceptor& acceptor, const config::Listener& l);
  awaitable<void> sweep_loop();
  awaitable<void> refuse(tcp::socket sock);

  int index_;
  Shared& shared_;
  // Declaration order is destruction order, reversed, and it matters: the
  // io_context destroys the coroutine frames still in it (sessions cut
  // off by a forced stop), whose destructors use sessions_; everything
  // holding sockets or timers (pools, acceptors, the sweep timer) must go
  // before the io_context.
  std::set<FrontendSession*> sessions_;
  asio::io_context io_{1};
  route::Router router_;
  std::map<std::string, std::unique_ptr<client::PoolRuntime>, std::less<>> pools_;
  std::vector<std::unique_ptr<tcp::acceptor>> acceptors_;
  bool shutting_down_ = false;
  std::uint64_t session_counter_ = 0;
  asio::steady_timer sweep_timer_{io_};
};

}  // namespace smtplb::server
