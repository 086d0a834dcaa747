// metrics.hpp: the counters /metrics exports, shared by every core.
//
// Every label combination a configuration can produce is known when it is
// loaded (listeners, pools, their backends, a fixed list of results), so
// each configuration generation gets a fixed table: counting a transaction
// is one hash lookup and one relaxed atomic add, no lock.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "config/config.hpp"

namespace smtplb::server {

inline constexpr std::array<std::string_view, 9> kResults = {
    "delivered",   "rejected",       "deferred", "refused",  "refused_at_data",
    "client_gone", "client_timeout", "shutdown", "abandoned"};

// Bounds of the transaction-time histogram, in seconds.
inline constexpr std::array<double, 12> kDurationBuckets = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                                                            0.1,   0.25,   0.5,   1,    2.5,   10};

class Metrics {
 public:
  // The counters one configuration's label sets map to.  Immutable once
  // built, so counting is one hash lookup and one relaxed add, no lock.
  class Table {
    friend class Metrics;
    std::unordered_map<std::string, std::atomic<std::uint64_t>*> index_;  // "l\0p\0b\0r"
  };

  // The table for `cfg`: label sets seen before keep their counters (a
  // reload never resets a counter), new ones start at zero.  Thread-safe;
  // called at start-up and on reload only.
  // `backends`: each pool's backends by name, when they are not the
  // configuration's own (an `mx:` pool's come from DNS); missing: the
  // configured ones.
  using BackendNames = std::map<std::string, std::vector<std::string>, std::less<>>;
  std::shared_ptr<const Table> table_for(const config::Config& cfg,
                                         const BackendNames* backends = nullptr);

  // `backend` empty when no backend took part.  A backend the table does
  // not know (an `mx: recipient` host: any host of any domain, too many
  // to label) is counted under the pool with an empty backend.
  void count_transaction(const Table& table, std::string_view listener, std::string_view pool,
                         std::string_view backend, std::string_view result, double seconds);

  // The Prometheus text exposition of these counters (without the backend
  // gauges, which the admin model adds).
  void write(std::string& out) const;

 private:
  struct Slot {
    std::string listener, pool, backend, result;
    std::atomic<std::uint64_t> count{0};
  };
  // Slots are only ever added (under the lock), and a deque keeps their
  // addresses, so the tables of older generations stay valid.
  mutable std::mutex mutex_;
  std::deque<Slot> slots_;
  std::unordered_map<std::string, Slot*> by_key_;
  std::array<std::atomic<std::uint64_t>, kDurationBuckets.size() + 1> buckets_{};
  std::atomic<std::uint64_t> duration_us_sum_{0};
  std::atomic<std::uint64_t> duration_count_{0};
};

}  // namespace smtplb::server
