// generation.hpp: one loaded configuration and what was built from it.
//
// Start-up builds generation 1; every reload that passes `check` builds the
// next.  A backend that stays (same pool, same settings) keeps its
// BackendState, so health, passive ejection, the operator's drain, slow
// start and in-flight counts carry over.  Cores adopt a new generation for
// new transactions; a transaction in flight keeps the one it began with
// (shared ownership), so nothing it uses is freed under it.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "balance/backend_state.hpp"
#include "config/config.hpp"
#include "net/asio.hpp"
#include "server/metrics.hpp"
#include "server/rate_limiter.hpp"

namespace smtplb::runtime {

struct BackendEntry {
  std::shared_ptr<balance::BackendState> state;
  tcp::endpoint endpoint;
};

struct Generation {
  std::uint64_t number = 1;
  std::shared_ptr<const config::Config> cfg;
  std::map<std::string, std::vector<BackendEntry>, std::less<>> backends;  // by pool name
  // Per client address, untrusted clients only; kept across a reload when
  // their rate did not change, so a reload is no way around them.
  std::shared_ptr<server::RateLimiter> connection_rate;
  std::shared_ptr<server::RateLimiter> message_rate;
  std::shared_ptr<const server::Metrics::Table> metrics;

  const std::vector<BackendEntry>* pool_backends(std::string_view pool) const {
    auto it = backends.find(pool);
    return it == backends.end() ? nullptr : &it->second;
  }
};

}  // namespace smtplb::runtime
