#include "balance/least_load.hpp"

#include <algorithm>

namespace smtplb::balance {

double least_load_score(const BackendState& b, BackendState::Clock::time_point now) {
  const double final_dot = std::max(kFinalDotFloor, b.final_dot_seconds(now));
  return load_score(b, now) / b.agent_room(now) * final_dot;
}

std::vector<int> LeastLoad::order(const std::vector<BackendState*>& backends,
                                  BackendState::Clock::time_point now, std::string_view) {
  return order_by_score(backends, now, rotation_,
                        [&](const BackendState& b) { return least_load_score(b, now); });
}

}  // namespace smtplb::balance
