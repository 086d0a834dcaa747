#include "balance/round_robin.hpp"

namespace smtplb::balance {

std::vector<int> RoundRobin::order(const std::vector<BackendState*>& backends,
                                   BackendState::Clock::time_point now, std::string_view) {
  std::vector<int> out;
  const std::size_t n = backends.size();
  out.reserve(n);
  if (n == 0) return out;
  // The cursor moves only over usable backends, so a down backend's share
  // goes evenly to the others instead of all to its successor.
  std::size_t start = next_ % n;
  bool first = true;
  for (std::size_t k = 0; k < n; ++k) {
    std::size_t i = (start + k) % n;
    if (!backends[i]->usable(now) || backends[i]->effective_weight(now) == 0) continue;
    if (first) {
      next_ = i + 1;
      first = false;
    }
    out.push_back(static_cast<int>(i));
  }
  append_down_backends(backends, now, out);
  return out;
}

}  // namespace smtplb::balance
