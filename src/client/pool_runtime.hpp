// pool_runtime.hpp: one pool as one core sees it: the shared backend
// states, this core's balancer and this core's idle sessions, for one
// configuration generation.
#pragma once

#include <memory>
#include <vector>

#include "balance/balancer.hpp"
#include "client/connection_pool.hpp"

namespace smtplb::client {

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
};

}  // namespace smtplb::client
