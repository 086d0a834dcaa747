// connection_pool.hpp: idle sessions to one backend, on one core.
//
// A session goes back to the pool only in a clean state (after the reply
// to the final dot, or after RSET).  It is taken again only within
// `connection_pool.idle_timeout` of its last use and `max_age` of its
// opening; the relay sends RSET before reusing it, and a session that
// turns out stale costs a reconnect, never the transaction.  The sweeper
// says QUIT to sessions that expired while idle, as a polite client does.
#pragma once

#include <deque>
#include <memory>

#include "upstream/backend_session.hpp"

namespace smtplb::upstream {

class ConnectionPool {
 public:
  explicit ConnectionPool(const config::BackendPool& cfg) : cfg_(cfg) {}

  // A pooled session still within its limits, or null.
  std::unique_ptr<BackendSession> take(Clock::time_point now);
  void give_back(std::unique_ptr<BackendSession> s);
  // Expired idle sessions, for the caller to QUIT.
  std::vector<std::unique_ptr<BackendSession>> expired(Clock::time_point now);
  // Every idle session (shutdown).
  std::vector<std::unique_ptr<BackendSession>> drain_all();
  std::size_t idle() const { return idle_.size(); }

 private:
  bool fresh(const BackendSession& s, Clock::time_point now) const;

  const config::BackendPool& cfg_;
  std::deque<std::unique_ptr<BackendSession>> idle_;  // most recently used at the back
};

}  // namespace smtplb::upstream
