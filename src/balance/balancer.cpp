#include "balance/balancer.hpp"

#include <algorithm>
#include <random>

#include "balance/hash_sender.hpp"
#include "balance/least_connections.hpp"
#include "balance/least_load.hpp"
#include "balance/random_two.hpp"
#include "balance/round_robin.hpp"
#include "balance/weighted_round_robin.hpp"

namespace smtplb::balance {

std::unique_ptr<Balancer> make_balancer(config::Algorithm a, std::uint64_t seed) {
  if (seed == 0) seed = (std::uint64_t{std::random_device{}()} << 32) | std::random_device{}();
  switch (a) {
    case config::Algorithm::kWeightedRoundRobin:
      return std::make_unique<WeightedRoundRobin>();
    case config::Algorithm::kLeastConnections:
      return std::make_unique<LeastConnections>();
    case config::Algorithm::kRandomTwo:
      return std::make_unique<RandomTwo>(seed);
    case config::Algorithm::kHashSender:
      return std::make_unique<HashSender>();
    case config::Algorithm::kLeastLoad:
      return std::make_unique<LeastLoad>();
    case config::Algorithm::kRoundRobin:
      break;
  }
  return std::make_unique<RoundRobin>();
}

double load_score(const BackendState& b, BackendState::Clock::time_point now) {
  int w = std::max(1, b.effective_weight(now));
  return (b.in_flight.load(std::memory_order_relaxed) + 1.0) * 100.0 / w;
}

std::vector<int> usable_backends(const std::vector<BackendState*>& backends,
                                 BackendState::Clock::time_point now) {
  std::vector<int> out;
  for (std::size_t i = 0; i < backends.size(); ++i)
    if (backends[i]->usable(now) && backends[i]->effective_weight(now) > 0)
      out.push_back(static_cast<int>(i));
  return out;
}

void append_down_backends(const std::vector<BackendState*>& backends,
                          BackendState::Clock::time_point now, std::vector<int>& order) {
  std::vector<int> down;
  for (std::size_t i = 0; i < backends.size(); ++i)
    if (backends[i]->last_resort(now) && backends[i]->config().weight > 0)
      down.push_back(static_cast<int>(i));
  std::stable_sort(down.begin(), down.end(), [&](int a, int b) {
    return backends[a]->down_until() < backends[b]->down_until();
  });
  order.insert(order.end(), down.begin(), down.end());
}

}  // namespace smtplb::balance
