#include "balance/least_connections.hpp"

#include <algorithm>

namespace smtplb::balance {

std::vector<int> LeastConnections::order(const std::vector<BackendState*>& backends,
                                         BackendState::Clock::time_point now, std::string_view) {
  std::vector<int> out = usable_backends(backends, now);
  if (!out.empty()) {
    std::rotate(out.begin(), out.begin() + static_cast<std::ptrdiff_t>(rotation_++ % out.size()),
                out.end());
    std::stable_sort(out.begin(), out.end(), [&](int a, int b) {
      return load_score(*backends[a], now) < load_score(*backends[b], now);
    });
  }
  append_down_backends(backends, now, out);
  return out;
}

}  // namespace smtplb::balance
