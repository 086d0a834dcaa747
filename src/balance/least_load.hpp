// least_load.hpp: the backend with the most room wins.
//
// Score (lower is better), an estimate of how long a new transaction would
// wait there:
//   (transactions in flight + 1) per unit of effective weight
//   / room, the room the backend's agent reports:
//       (100 - max(cpu %, memory used %)) / 100, at least 0.05
//   x the time the backend takes to answer the final dot, averaged
//     (BackendState::final_dot_seconds), at least kFinalDotFloor.
// The effective weight already carries the agent's percentage (its
// capacity left, which smtplb-agent derives from CPU, memory and the MTA's
// queue).  The last factor is what in-flight counts miss: a backend with
// less capacity than its share holds a queue, and every message it takes
// waits in it; counting its answer time moves that share to the backends
// that answer sooner.  Without an agent and with equal answer times this
// is least_connections.
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

// Answer times below this count as equal: a millisecond more or less is
// noise, not load.
inline constexpr double kFinalDotFloor = 0.001;

double least_load_score(const BackendState& b, BackendState::Clock::time_point now);

}  // namespace smtplb::balance
