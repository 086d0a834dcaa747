// pool_runtime.hpp: one pool as one core sees it: the shared backend
// states, this core's balancer and this core's idle sessions.
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
};

struct PoolRuntime {
  const config::Pool* cfg = nullptr;
  std::vector<balance::BackendState*> states;             // index-aligned with backends
  std::vector<std::unique_ptr<BackendRuntime>> backends;  // stable addresses
  std::unique_ptr<balance::Balancer> balancer;
};

}  // namespace smtplb::client
