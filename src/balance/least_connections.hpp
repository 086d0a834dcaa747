// least_connections.hpp: the backend with the fewest transactions in flight
// per unit of weight; ties go round robin, so an idle pool still spreads.
#pragma once

#include "balance/balancer.hpp"

namespace smtplb::balance {

class LeastConnections : public Balancer {
 public:
  std::vector<int> order(const std::vector<BackendState*>& backends,
                         BackendState::Clock::time_point now, std::string_view key) override;

 private:
  std::size_t rotation_ = 0;
};

}  // namespace smtplb::balance
