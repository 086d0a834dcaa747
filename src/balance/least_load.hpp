// least_load.hpp: the backend with the most room wins.
//
// Score (lower is better) = (transactions in flight + 1) per unit of
// effective weight, divided by the room the backend's agent reports:
//   room = (100 - max(cpu %, memory used %)) / 100, at least 0.05,
// and the effective weight already carries the agent's percentage (its
// capacity left, which smtplb-agent derives from CPU, memory and the MTA's
// queue).  Without an agent, room is 1 and this is least_connections.
#pragma once

#include "balance/balancer.hpp"

namespace smtplb::balance {

class LeastLoad : public Balancer {
 public:
  std::vector<int> order(const std::vector<BackendState*>& backends,
                         BackendState::Clock::time_point now, std::string_view key) override;

 private:
  std::size_t rotation_ = 0;
};

double least_load_score(const BackendState& b, BackendState::Clock::time_point now);

}  // namespace smtplb::balance
