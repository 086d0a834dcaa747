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

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "config/config.hpp"
#include "runtime/generation.hpp"
#include "server/metrics.hpp"

namespace smtplb::runtime {

// The backends DNS gave each `mx: DOMAIN` pool, by pool name (MxWatcher).
using MxBackends = std::map<std::string, std::vector<config::Backend>, std::less<>>;

// Null with `errors` filled when a backend's address does not resolve.
// Listed backends' host names are looked up with the system resolver here,
// once per (re)load.  An `mx: DOMAIN` pool gets `mx[pool]` (none yet: an
// empty pool until the DNS answers); an `mx: recipient` pool has no fixed
// backends (each core finds them per transaction).
std::shared_ptr<const runtime::Generation> build_generation(
    std::shared_ptr<const config::Config> cfg, const runtime::Generation* previous,
    server::Metrics& metrics, std::vector<std::string>& errors, const MxBackends* mx = nullptr);

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
BackendChanges compare_backends(const runtime::Generation& prev, const runtime::Generation& next);

}  // namespace smtplb::runtime
