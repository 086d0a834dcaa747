#include "balance/weighted_round_robin.hpp"

#include <algorithm>

namespace smtplb::balance {

std::vector<int> WeightedRoundRobin::order(const std::vector<BackendState*>& backends,
                                           BackendState::Clock::time_point now, std::string_view) {
  const std::size_t n = backends.size();
  current_.resize(n, 0);
  std::vector<int> usable;
  long long total = 0;
  for (std::size_t i = 0; i < n; ++i) {
    int w = backends[i]->effective_weight(now);
    if (w > 0 && backends[i]->usable(now)) {
      usable.push_back(static_cast<int>(i));
      total += w;
    }
  }
  std::vector<int> out;
  out.reserve(n);
  if (!usable.empty()) {
    int best = -1;
    for (int i : usable) {
      current_[i] += backends[i]->effective_weight(now);
      if (best < 0 || current_[i] > current_[best]) best = i;
    }
    current_[best] -= total;
    out.push_back(best);
    // Replays go to the others, heaviest first.
    std::vector<int> rest;
    for (int i : usable)
      if (i != best) rest.push_back(i);
    std::stable_sort(rest.begin(), rest.end(), [&](int a, int b) {
      return backends[a]->effective_weight(now) > backends[b]->effective_weight(now);
    });
    out.insert(out.end(), rest.begin(), rest.end());
  }
  append_down_backends(backends, now, out);
  return out;
}

}  // namespace smtplb::balance
