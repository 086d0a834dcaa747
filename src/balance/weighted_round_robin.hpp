// weighted_round_robin.hpp: smooth weighted round robin (as nginx does it).
//
// Every pick adds each usable backend's weight to its running score, takes
// the highest and subtracts the total from it: weights 3:1 give a a b a,
// never a burst of three in a row.
#pragma once

#include <vector>

#include "balance/balancer.hpp"

namespace smtplb::balance {

class WeightedRoundRobin : public Balancer {
 public:
  std::vector<int> order(const std::vector<BackendState*>& backends,
                         BackendState::Clock::time_point now, std::string_view key) override;

 private:
  std::vector<long long> current_;
};

}  // namespace smtplb::balance
