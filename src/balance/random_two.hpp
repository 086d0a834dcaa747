// random_two.hpp: the power of two choices: two usable backends at random,
// the less loaded (in flight per weight) wins.  Nearly as good as
// least_connections, without every core herding onto the same backend.
#pragma once

#include <random>

#include "balance/balancer.hpp"

namespace smtplb::balance {

class RandomTwo : public Balancer {
 public:
  explicit RandomTwo(std::uint64_t seed) : rng_(seed) {}
  std::vector<int> order(const std::vector<BackendState*>& backends,
                         BackendState::Clock::time_point now, std::string_view key) override;

 private:
  std::mt19937_64 rng_;
};

}  // namespace smtplb::balance
