// metrics.hpp: the counters /metrics exports, shared by every core.
//
// Every label combination is known at start-up (listeners, pools, their
// backends, a fixed list of results), so the table is built once and never
// changes: counting a transaction is one hash lookup and one relaxed atomic
// add, no lock.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <memory>
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
  explicit Metrics(const config::Config& cfg);

  // `backend` empty when no backend took part.
  void count_transaction(std::string_view listener, std::string_view pool, std::string_view backend,
                         std::string_view result, double seconds);

  // The Prometheus text exposition of these counters (without the backend
  // gauges, which the admin model adds).
  void write(std::string& out) const;

 private:
  struct Key {
    std::string listener, pool, backend, result;
  };
  std::unordered_map<std::string, std::size_t> index_;  // "l\0p\0b\0r" -> slot
  std::vector<Key> keys_;
  std::unique_ptr<std::atomic<std::uint64_t>[]> counts_;
  std::array<std::atomic<std::uint64_t>, kDurationBuckets.size() + 1> buckets_{};
  std::atomic<std::uint64_t> duration_us_sum_{0};
  std::atomic<std::uint64_t> duration_count_{0};
};

}  // namespace smtplb::server
