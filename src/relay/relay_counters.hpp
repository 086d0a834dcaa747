// relay_counters.hpp: everything the relay counts, in one list
// (smtplb_possible_duplicates_total, smtplb_spill_failures_total).
// Process-wide relaxed atomics: the replay buffer that fails to spill has
// no other way to the metrics, and one process runs one relay.
#pragma once

#include <atomic>
#include <cstdint>

namespace smtplb::relay {

struct RelayCounters {
  // Messages a backend may hold twice: replayed after a silent (or broken)
  // final dot, or delivered with a 250 the client never got.
  std::atomic<std::uint64_t> possible_duplicates{0};
  // Replay buffers that could not spill to temp_directory (452 4.3.1).
  std::atomic<std::uint64_t> spill_failures{0};
};

RelayCounters& counters();

}  // namespace smtplb::relay
