// pool_runtime.hpp: one pool as one core sees it: the shared backend
// states, this core's balancer and this core's idle sessions, for one
// configuration generation.
#pragma once

#include <memory>
#include <random>
#include <string_view>
#include <vector>

#include "balance/balancer.hpp"
#include "upstream/connection_pool.hpp"

namespace smtplb::upstream {

struct BackendRuntime {
  balance::BackendState* state;
  tcp::endpoint endpoint;
  ConnectionPool idle;
  // What `state` and the idle sessions refer to, kept alive while any
  // generation's view still uses this runtime.
  std::shared_ptr<balance::BackendState> state_owner;
  std::shared_ptr<const config::Config> cfg_owner;
};

struct PoolRuntime {
  const config::Pool* cfg = nullptr;
  std::vector<balance::BackendState*> states;  // index-aligned with backends
  // Stable addresses; shared with the next generation's pool when the
  // backend stays across a reload, so its idle sessions do too.
  std::vector<std::shared_ptr<BackendRuntime>> backends;
  std::unique_ptr<balance::Balancer> balancer;
  // What `cfg` points into, when the pool outlives the view that made it
  // (an `mx: recipient` pool kept per domain).
  std::shared_ptr<const config::Config> cfg_owner;
  // MX pools: each backend's MX preference, index-aligned; empty otherwise.
  std::vector<int> preferences;
  std::mt19937_64 rng{std::random_device{}()};

  // One transaction's candidates, best first (indices into backends).  In
  // an MX pool, RFC 5321 5.1's order: lower preferences first, and within
  // one preference the algorithm's order where it balances by load or
  // affinity (least_load, least_connections, random_two, hash_sender),
  // otherwise (round_robin, weighted_round_robin) a uniform random one.
  // Hosts known to be down go after every usable one, preference by
  // preference, as a last resort.
  std::vector<int> order(balance::BackendState::Clock::time_point now, std::string_view key);
  // How many backends one transaction may try: 1 + retries; in an MX pool
  // every host at least, as a sending MTA would.
  int max_tries() const;
};

}  // namespace smtplb::upstream
