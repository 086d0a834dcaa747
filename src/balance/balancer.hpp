// balancer.hpp: one interface for every balancing algorithm.
//
// A balancer turns the pool's backends into an ordered list of candidates
// for one transaction (Pingora's select_with): the first is the one to use,
// a replay takes the next untried one.  Backends that are down come last,
// in the order they come back up, so a stale mark never stops the mail
// when nothing better exists; draining and maintenance backends never.  Each core owns its
// balancers: no locks.
#pragma once

#include <algorithm>
#include <memory>
#include <string_view>
#include <vector>

#include "balance/backend_state.hpp"
#include "config/config.hpp"

namespace smtplb::balance {

class Balancer {
 public:
  virtual ~Balancer() = default;
  // Candidate indices into `backends`, best first, each at most once.
  // `key` is the sender's domain (hash_sender's affinity; others ignore it).
  virtual std::vector<int> order(const std::vector<BackendState*>& backends,
                                 BackendState::Clock::time_point now,
                                 std::string_view key = {}) = 0;
};

// `seed` makes the random algorithms repeatable in tests; 0 seeds from
// std::random_device.
std::unique_ptr<Balancer> make_balancer(config::Algorithm a, std::uint64_t seed = 0);

// Load of a backend for the load-aware algorithms: transactions in flight
// per unit of effective weight, counting the one about to be placed.
double load_score(const BackendState& b, BackendState::Clock::time_point now);
// The usable backends ordered by `score` (lower first), ties in turn
// (`rotation` advances per call), then the down ones as a last resort.
template <class Score>
std::vector<int> order_by_score(const std::vector<BackendState*>& backends,
                                BackendState::Clock::time_point now, std::size_t& rotation,
                                Score score);

// The usable backends with weight, in index order.
std::vector<int> usable_backends(const std::vector<BackendState*>& backends,
                                 BackendState::Clock::time_point now);

// Appends the down (not drained) backends, soonest back up first.
void append_down_backends(const std::vector<BackendState*>& backends,
                          BackendState::Clock::time_point now, std::vector<int>& order);

template <class Score>
std::vector<int> order_by_score(const std::vector<BackendState*>& backends,
                                BackendState::Clock::time_point now, std::size_t& rotation,
                                Score score) {
  std::vector<int> out = usable_backends(backends, now);
  if (!out.empty()) {
    std::rotate(out.begin(), out.begin() + static_cast<std::ptrdiff_t>(rotation++ % out.size()),
                out.end());
    std::stable_sort(out.begin(), out.end(),
                     [&](int a, int b) { return score(*backends[a]) < score(*backends[b]); });
  }
  append_down_backends(backends, now, out);
  return out;
}

}  // namespace smtplb::balance
