#include "balance/hash_sender.hpp"

#include <algorithm>
#include <cmath>

namespace smtplb::balance {

std::uint64_t fnv1a64(std::string_view s) {
  std::uint64_t h = 1469598103934665603ull;
  for (unsigned char c : s) h = (h ^ c) * 1099511628211ull;
  // FNV's low bits mix poorly for short keys: finish with a 64-bit mixer.
  h ^= h >> 33;
  h *= 0xff51afd7ed558ccdull;
  h ^= h >> 33;
  return h;
}

void HashSender::build(const std::vector<BackendState*>& backends) {
  ring_.clear();
  for (std::size_t i = 0; i < backends.size(); ++i) {
    int points = kPointsPerWeight * std::max(1, backends[i]->config().weight);
    for (int p = 0; p < points; ++p)
      ring_.emplace_back(fnv1a64(backends[i]->name() + "#" + std::to_string(p)),
                         static_cast<int>(i));
  }
  std::sort(ring_.begin(), ring_.end());
  built_for_ = backends.size();
}

std::vector<int> HashSender::order(const std::vector<BackendState*>& backends,
                                   BackendState::Clock::time_point now, std::string_view key) {
  if (built_for_ != backends.size() || ring_.empty()) build(backends);
  std::vector<int> usable = usable_backends(backends, now);
  std::vector<int> out;
  if (!usable.empty()) {
    double total = 1;  // the transaction being placed
    for (int i : usable) total += backends[i]->in_flight.load(std::memory_order_relaxed);
    const double bound = std::ceil(kLoadBound * total / static_cast<double>(usable.size()));
    std::vector<bool> seen(backends.size(), false), is_usable(backends.size(), false);
    for (int i : usable) is_usable[i] = true;
    std::vector<int> over;  // usable but over the bound: after the others
    auto it = std::lower_bound(ring_.begin(), ring_.end(), std::make_pair(fnv1a64(key), -1));
    for (std::size_t n = 0; n < ring_.size() && out.size() + over.size() < usable.size(); ++n) {
      if (it == ring_.end()) it = ring_.begin();
      int b = (it++)->second;
      if (seen[b] || !is_usable[b]) continue;
      seen[b] = true;
      if (backends[b]->in_flight.load(std::memory_order_relaxed) + 1 > bound)
        over.push_back(b);
      else
        out.push_back(b);
    }
    out.insert(out.end(), over.begin(), over.end());
  }
  append_down_backends(backends, now, out);
  return out;
}

}  // namespace smtplb::balance
