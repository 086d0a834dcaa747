#include "balance/least_load.hpp"

#include <algorithm>

namespace smtplb::balance {

double least_load_score(const BackendState& b, BackendState::Clock::time_point now) {
  return load_score(b, now) / b.agent_room(now);
}

std::vector<int> LeastLoad::order(const std::vector<BackendState*>& backends,
                                  BackendState::Clock::time_point now, std::string_view) {
  std::vector<int> out = usable_backends(backends, now);
  if (!out.empty()) {
    // Ties (an idle pool) go in turn.
    std::rotate(out.begin(), out.begin() + static_cast<std::ptrdiff_t>(rotation_++ % out.size()),
                out.end());
    std::stable_sort(out.begin(), out.end(), [&](int a, int b) {
      return least_load_score(*backends[a], now) < least_load_score(*backends[b], now);
    });
  }
  append_down_backends(backends, now, out);
  return out;
}

}  // namespace smtplb::balance
