// generation_builder.hpp: a configuration generation from a loaded Config.
//
// Used at start-up (generation 1) and on every reload.  On reload a backend
// whose pool and settings (address, weight, limits, agent, the pool's
// slow_start) did not change keeps its BackendState: health, ejection,
// slow start, in-flight and session counts, the operator's drain.  One
// whose settings changed starts afresh, as a new backend would, but keeps
// the operator's drain or maint: a reload must not put back into service a
// backend someone took out by hand.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "config/config.hpp"
#include "server/generation.hpp"
#include "server/metrics.hpp"

namespace smtplb::app {

// Null with `errors` filled when a backend's address does not resolve.
// Backend host names are looked up with the system resolver here, once per
// (re)load; pools whose backends come from DNS are the `mx:` capability.
std::shared_ptr<const server::Generation> build_generation(
    std::shared_ptr<const config::Config> cfg, const server::Generation* previous,
    server::Metrics& metrics, std::vector<std::string>& errors);

// What a reload cannot change, because it is bound once at start-up
// (listening sockets, threads, the admin listener): one message per change,
// empty when there is none.
std::vector<std::string> restart_only_changes(const config::Config& running,
                                              const config::Config& next);

// Backends by "pool/address" that `next` adds to, and removes from, `prev`.
struct BackendChanges {
  std::vector<std::string> added, removed, changed;
  int kept = 0;
};
BackendChanges compare_backends(const server::Generation& prev, const server::Generation& next);

}  // namespace smtplb::app
