// core.hpp: everything one thread owns (DESIGN.md: one io_context per core).
//
// A Core has its own io_context, acceptors (SO_REUSEPORT, so the kernel
// spreads connections over the cores), sessions, balancers and pooled
// backend sessions.  What the cores share is read-only (the configuration
// generation) or atomic (backend health, connection counts): no lock on the
// message path.
#pragma once

#include <array>
#include <atomic>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "auth/auth_throttle.hpp"
#include "auth/password_verifier.hpp"
#include "balance/backend_state.hpp"
#include "config/config.hpp"
#include "dns/lookup.hpp"
#include "net/asio.hpp"
#include "route/router.hpp"
#include "runtime/generation.hpp"
#include "runtime/runtime_counters.hpp"
#include "server/connection_limiter.hpp"
#include "server/metrics.hpp"
#include "server/rate_limiter.hpp"
#include "server/session_counters.hpp"
#include "upstream/pool_runtime.hpp"

namespace smtplb::server {
class FrontendSession;
}

namespace smtplb::runtime {

// A session's place in its core's list (FrontendSession derives from it):
// listing a session allocates nothing.
struct SessionLink {
  SessionLink* prev = nullptr;
  SessionLink* next = nullptr;
};

// What all cores share.  `generation` is replaced on reload by the first
// core (which also runs the admin API and the health checks, its only
// readers); the other cores get their copy through Core::adopt.
struct Shared {
  std::shared_ptr<const Generation> generation;
  std::shared_ptr<server::Metrics> metrics = std::make_shared<server::Metrics>();
  server::ConnectionLimiter limiter;
  // The counter lists of the components (the relay's is process-wide:
  // relay/relay_counters.hpp).
  server::SessionCounters sessions;
  RuntimeCounters counters;
  // timeouts.shutdown of the generation in force, for the signal thread.
  std::atomic<std::int64_t> shutdown_ms{0};
  // AUTH: crypt(3) on worker threads, and failures per client address
  // (touched per AUTH, never per message).
  std::unique_ptr<auth::PasswordVerifier> verifier;
  std::unique_ptr<auth::AuthThrottle> auth_throttle;
  std::uint32_t id_base = 0;  // random per process, so ids differ across restarts
};

// A generation as one core uses it: its router and its pools (balancer
// state and idle backend sessions are per core).  A session holds the view
// its transaction began with.
struct CoreView {
  std::shared_ptr<const Generation> gen;
  route::Router router;
  std::map<std::string, std::shared_ptr<upstream::PoolRuntime>, std::less<>> pools;

  explicit CoreView(std::shared_ptr<const Generation> g) : gen(std::move(g)), router(*gen->cfg) {}
  const config::Config& cfg() const { return *gen->cfg; }
  upstream::PoolRuntime* pool(std::string_view name) const;
};

class Core {
 public:
  Core(int index, Shared& shared);
  ~Core();

  asio::io_context& io() { return io_; }
  // Where plaintext sessions of this core read into: taken out at once
  // after each read (TimedSocket::read_when_ready), so no session holds a
  // read buffer while it waits.
  asio::mutable_buffer scratch() { return asio::buffer(scratch_); }
  // Opens this core's acceptors; throws std::runtime_error naming the
  // listener on a bind error (start-up only).
  void listen();
  void run() { io_.run(); }

  // Stop accepting; idle sessions get 421 now, busy ones after their
  // transaction.  Thread-safe (posts to the core).
  void begin_shutdown();
  // Deadline passed: every session gets 421 and is closed.  Thread-safe.
  void force_close();

  Shared& shared() { return shared_; }
  // The generation new transactions use (this core's thread only).
  const std::shared_ptr<CoreView>& view() const { return view_; }
  // Reload: new transactions use `gen` from now on; backends that stay
  // keep their idle sessions, the others' are closed politely as they come
  // free.  Thread-safe (posts to the core).
  void adopt(std::shared_ptr<const Generation> gen);

  // This core's DNS: resolver and cache (null while no pool has `mx:`).
  dns::Lookup* lookup() { return lookup_.get(); }
  // `mx: recipient`: the pool of `domain`'s mail hosts as the DNS gave them
  // (`t.kind` kHosts), for the pool `p` of the current view.  Kept per
  // domain (at most kMaxRecipientDomains, least recently used go first)
  // and rebuilt when the hosts change; a host keeps its backend state and
  // idle sessions across domains and rebuilds.  Null when no host is left
  // (every address one of our own listeners).
  // `p` belongs to `owner`, the configuration of the caller's transaction
  // (kept alive by the pool); only the current one's pools are cached.
  std::shared_ptr<upstream::PoolRuntime> recipient_pool(
      const std::shared_ptr<const config::Config>& owner, const config::Pool& p,
      const std::string& domain, const dns::MxTarget& t);
  static constexpr std::size_t kMaxRecipientDomains = 1000;
  bool shutting_down() const { return shutting_down_; }
  int index() const { return index_; }
  std::string next_session_id();

  void add(server::FrontendSession* s);
  void remove(server::FrontendSession* s);

  // Sessions parked between commands (FrontendSession::park), by deadline:
  // one timer for all of them, so a parked session holds no timer wait of
  // its own.  At its deadline a session gets on_park_deadline().
  using Parked = std::multimap<Clock::time_point, server::FrontendSession*>;
  Parked::iterator park(Clock::time_point deadline, server::FrontendSession* s);
  void unpark(Parked::iterator it);

 private:
  awaitable<void> accept_loop(tcp::acceptor& acceptor, std::string listener);
  // A failed accept: logged at most once a second with a count; out of
  // descriptors, the waiting clients are shed with 421 via the reserve.
  void accept_failed(tcp::acceptor& acceptor, const std::string& listener, const error_code& ec);
  int shed_with_reserve(tcp::acceptor& acceptor);
  awaitable<void> sweep_loop();
  awaitable<void> refuse(tcp::socket sock);
  std::shared_ptr<CoreView> build_view(std::shared_ptr<const Generation> gen) const;
  void make_lookup(const config::Config& cfg);
  void quit_idle(upstream::BackendRuntime& b, bool all, Clock::time_point now);
  // The sessions as they are now (what is called may end some).
  std::vector<server::FrontendSession*> session_list() const;
  // Wakes the parked sessions whose deadline passed; waits for the next.
  void on_park_timer();

  // 64 KiB: one DATA read, or every command a pipelining client sent.
  std::vector<char> scratch_ = std::vector<char>(64 * 1024);

  int index_;
  Shared& shared_;
  // Declaration order is destruction order, reversed, and it matters: the
  // io_context destroys the coroutine frames still in it (sessions cut
  // off by a forced stop, parked sessions' handlers), whose destructors use
  // sessions_ and parked_; everything holding sockets or timers (pools,
  // acceptors, the sweep and park timers) must go before the io_context.
  SessionLink sessions_;  // circular, this one the head
  std::size_t session_count_ = 0;
  Parked parked_;
  bool destroying_ = false;  // ~Core() has begun: park_timer_ is gone
  asio::io_context io_{1};
  std::shared_ptr<CoreView> view_;
  // Backends a reload removed whose runtimes sessions of older views may
  // still hold: the sweeper QUITs what they give back until they are gone.
  std::vector<std::weak_ptr<upstream::BackendRuntime>> retired_;
  std::unique_ptr<dns::Lookup> lookup_;
  struct RecipientPool {
    std::shared_ptr<upstream::PoolRuntime> pool;
    std::vector<dns::MxHost> hosts;
    Clock::time_point used;
  };
  std::map<std::string, RecipientPool> recipient_pools_;  // "pool\0domain"
  // Every recipient-pool host by "pool\0address:port", shared by the
  // domains it serves; the sweeper closes idle sessions and forgets hosts
  // no domain uses any more.
  std::map<std::string, std::weak_ptr<upstream::BackendRuntime>> recipient_hosts_;
  std::vector<std::unique_ptr<tcp::acceptor>> acceptors_;
  // One descriptor held back for shedding clients when none are left.
  int reserve_fd_ = -1;
  std::uint64_t accept_errors_ = 0;  // since the last accept_error line
  std::uint64_t accepts_shed_ = 0;
  Clock::time_point accept_error_logged_{};
  bool shutting_down_ = false;
  std::uint64_t session_counter_ = 0;
  Timer sweep_timer_{io_};
  Timer park_timer_{io_};
  Clock::time_point park_timer_at_ = Clock::time_point::max();  // max: not armed
};

}  // namespace smtplb::runtime
