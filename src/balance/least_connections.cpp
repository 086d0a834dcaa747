#include "balance/least_connections.hpp"

#include <algorithm>

namespace smtplb::balance {

std::vector<int> LeastConnections::order(const std::vector<BackendState*>& backends,
                                         BackendState::Clock::time_point now, std::string_view) {
  return order_by_score(backends, now, rotation_,
                        [&](const BackendState& b) { return load_score(b, now); });
}

}  // namespace smtplb::balance
