#include "balance/balancer.hpp"

#include <algorithm>

#include "balance/round_robin.hpp"
#include "balance/weighted_round_robin.hpp"

namespace smtplb::balance {

std::unique_ptr<Balancer> make_balancer(config::Algorithm a) {
  switch (a) {
    case config::Algorithm::kWeightedRoundRobin:
      return std::make_unique<WeightedRoundRobin>();
    default:
      // The loader refuses algorithms this build does not have.
      return std::make_unique<RoundRobin>();
  }
}

void append_down_backends(const std::vector<BackendState*>& backends,
                          BackendState::Clock::time_point now, std::vector<int>& order) {
  std::vector<int> down;
  for (std::size_t i = 0; i < backends.size(); ++i)
    if (!backends[i]->usable(now) && backends[i]->config().weight > 0)
      down.push_back(static_cast<int>(i));
  std::stable_sort(down.begin(), down.end(), [&](int a, int b) {
    return backends[a]->down_until() < backends[b]->down_until();
  });
  order.insert(order.end(), down.begin(), down.end());
}

}  // namespace smtplb::balance
