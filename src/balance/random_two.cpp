#include "balance/random_two.hpp"

#include <algorithm>

namespace smtplb::balance {

std::vector<int> RandomTwo::order(const std::vector<BackendState*>& backends,
                                  BackendState::Clock::time_point now, std::string_view) {
  std::vector<int> usable = usable_backends(backends, now);
  std::vector<int> out;
  if (usable.size() == 1) {
    out.push_back(usable[0]);
  } else if (usable.size() >= 2) {
    std::uniform_int_distribution<std::size_t> pick(0, usable.size() - 1);
    std::size_t i = pick(rng_);
    std::size_t j = pick(rng_);
    while (j == i) j = pick(rng_);
    int a = usable[i], b = usable[j];
    int first = load_score(*backends[b], now) < load_score(*backends[a], now) ? b : a;
    out.push_back(first);
    // Replays: the rest, least loaded first.
    std::vector<int> rest;
    for (int k : usable)
      if (k != first) rest.push_back(k);
    std::stable_sort(rest.begin(), rest.end(), [&](int x, int y) {
      return load_score(*backends[x], now) < load_score(*backends[y], now);
    });
    out.insert(out.end(), rest.begin(), rest.end());
  }
  append_down_backends(backends, now, out);
  return out;
}

}  // namespace smtplb::balance
