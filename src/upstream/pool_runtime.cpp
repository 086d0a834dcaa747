#include "upstream/pool_runtime.hpp"

#include <algorithm>

namespace smtplb::upstream {

std::vector<int> PoolRuntime::order(balance::BackendState::Clock::time_point now,
                                    std::string_view key) {
  std::vector<int> o = balancer->order(states, now, key);
  if (preferences.empty()) return o;
  // The balancer put the usable ones first; keep that split.
  auto usable_end =
      std::stable_partition(o.begin(), o.end(), [&](int i) { return states[i]->usable(now); });
  const auto a = cfg ? cfg->algorithm : config::Algorithm::kRoundRobin;
  const bool at_random =
      a == config::Algorithm::kRoundRobin || a == config::Algorithm::kWeightedRoundRobin;
  auto by_preference = [&](int x, int y) { return preferences[x] < preferences[y]; };
  for (auto [first, last] : {std::pair{o.begin(), usable_end}, std::pair{usable_end, o.end()}}) {
    // Shuffled, then stably sorted by preference: a uniform random order
    // within each preference.
    if (at_random) std::shuffle(first, last, rng);
    std::stable_sort(first, last, by_preference);
  }
  return o;
}

int PoolRuntime::max_tries() const {
  const int tries = 1 + (cfg ? cfg->retries : 0);
  if (preferences.empty()) return tries;
  return std::max(tries, static_cast<int>(states.size()));
}

}  // namespace smtplb::upstream
