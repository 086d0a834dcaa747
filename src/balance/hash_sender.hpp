// hash_sender.hpp: the sender's domain picks the backend, by consistent
// hashing with bounded loads (Mirrokni, Thorup, Zadimoghaddam 2018).
//
// Each backend owns kPointsPerWeight points per unit of weight on a hash
// ring; a domain goes to the first usable backend clockwise from its hash
// whose load is under kLoadBound times the average.  When a backend goes
// down only the domains it held move; a hot domain spills over to the next
// backend instead of piling onto one.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "balance/balancer.hpp"

namespace smtplb::balance {

class HashSender : public Balancer {
 public:
  static constexpr int kPointsPerWeight = 64;
  static constexpr double kLoadBound = 1.25;

  std::vector<int> order(const std::vector<BackendState*>& backends,
                         BackendState::Clock::time_point now, std::string_view key) override;

 private:
  void build(const std::vector<BackendState*>& backends);
  std::vector<std::pair<std::uint64_t, int>> ring_;  // (point, backend index), sorted
  std::size_t built_for_ = 0;
};

std::uint64_t fnv1a64(std::string_view s);

}  // namespace smtplb::balance
