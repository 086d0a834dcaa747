// balancer.hpp: one interface for every balancing algorithm.
//
// A balancer turns the pool's backends into an ordered list of candidates
// for one transaction (Pingora's select_with): the first is the one to use,
// a replay takes the next untried one.  Backends that are down come last,
// in the order they come back up, so a stale mark never stops the mail
// when nothing better exists.  Each core owns its balancers: no locks.
#pragma once

#include <memory>
#include <vector>

#include "balance/backend_state.hpp"
#include "config/config.hpp"

namespace smtplb::balance {

class Balancer {
 public:
  virtual ~Balancer() = default;
  // Candidate indices into `backends`, best first; every index once.
  virtual std::vector<int> order(const std::vector<BackendState*>& backends,
                                 BackendState::Clock::time_point now) = 0;
};

std::unique_ptr<Balancer> make_balancer(config::Algorithm a);

// Appends the unusable backends, soonest back up first, after `order`.
void append_down_backends(const std::vector<BackendState*>& backends,
                          BackendState::Clock::time_point now, std::vector<int>& order);

}  // namespace smtplb::balance
