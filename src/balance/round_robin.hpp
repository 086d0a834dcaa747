// round_robin.hpp: each transaction starts at the next usable backend.
#pragma once

#include "balance/balancer.hpp"

namespace smtplb::balance {

class RoundRobin : public Balancer {
 public:
  std::vector<int> order(const std::vector<BackendState*>& backends,
                         BackendState::Clock::time_point now, std::string_view key) override;

 private:
  std::size_t next_ = 0;
};

}  // namespace smtplb::balance
