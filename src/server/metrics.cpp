#include "server/metrics.hpp"

#include <cstdio>

namespace smtplb::server {

namespace {

std::string key_of(std::string_view l, std::string_view p, std::string_view b, std::string_view r) {
  std::string k;
  k.reserve(l.size() + p.size() + b.size() + r.size() + 3);
  k.append(l).push_back('\0');
  k.append(p).push_back('\0');
  k.append(b).push_back('\0');
  k.append(r);
  return k;
}

// Prometheus label values: backslash, quote and newline escaped.
std::string label(std::string_view v) {
  std::string out;
  for (char c : v) {
    if (c == '\\' || c == '"') out.push_back('\\');
    if (c == '\n') {
      out += "\\n";
      continue;
    }
    out.push_back(c);
  }
  return out;
}

}  // namespace

std::shared_ptr<const Metrics::Table> Metrics::table_for(const config::Config& cfg,
                                                         const BackendNames* backends) {
  auto table = std::make_shared<Table>();
  std::lock_guard lock(mutex_);
  auto add = [&](const std::string& l, const std::string& p, const std::string& b) {
    for (const auto& r : kResults) {
      std::string key = key_of(l, p, b, r);
      auto it = by_key_.find(key);
      if (it == by_key_.end()) {
        Slot& slot = slots_.emplace_back();
        slot.listener = l;
        slot.pool = p;
        slot.backend = b;
        slot.result = std::string(r);
        it = by_key_.emplace(key, &slot).first;
      }
      table->index_.emplace(std::move(key), &it->second->count);
    }
  };
  for (const auto& l : cfg.listeners) {
    add(l.name, "", "");
    for (const auto& p : cfg.pools) {
      add(l.name, p.name, "");
      auto it = backends ? backends->find(p.name) : BackendNames::const_iterator{};
      if (backends && it != backends->end()) {
        for (const auto& b : it->second) add(l.name, p.name, b);
      } else {
        for (const auto& b : p.backends) add(l.name, p.name, b.name);
      }
    }
  }
  return table;
}

void Metrics::count_transaction(const Table& table, std::string_view listener,
                                std::string_view pool, std::string_view backend,
                                std::string_view result, double seconds) {
  auto it = table.index_.find(key_of(listener, pool, backend, result));
  if (it == table.index_.end() && !backend.empty())
    it = table.index_.find(key_of(listener, pool, "", result));
  if (it != table.index_.end()) it->second->fetch_add(1, std::memory_order_relaxed);
  std::size_t b = 0;
  while (b < kDurationBuckets.size() && seconds > kDurationBuckets[b]) ++b;
  buckets_[b].fetch_add(1, std::memory_order_relaxed);
  duration_us_sum_.fetch_add(static_cast<std::uint64_t>(seconds * 1e6), std::memory_order_relaxed);
  duration_count_.fetch_add(1, std::memory_order_relaxed);
}

void Metrics::write(std::string& out) const {
  out +=
      "# HELP smtplb_transactions_total Transactions by listener, pool, backend that took the "
      "final answer, and result.\n# TYPE smtplb_transactions_total counter\n";
  {
    std::lock_guard lock(mutex_);
    for (const Slot& k : slots_) {
      std::uint64_t n = k.count.load(std::memory_order_relaxed);
      out += "smtplb_transactions_total{listener=\"" + label(k.listener) + "\",pool=\"" +
             label(k.pool) + "\",backend=\"" + label(k.backend) + "\",result=\"" + k.result +
             "\"} " + std::to_string(n) + "\n";
    }
  }
  out +=
      "# HELP smtplb_transaction_duration_seconds Time from MAIL to the final reply.\n"
      "# TYPE smtplb_transaction_duration_seconds histogram\n";
  std::uint64_t cumulative = 0;
  char buf[64];
  for (std::size_t b = 0; b < kDurationBuckets.size(); ++b) {
    cumulative += buckets_[b].load(std::memory_order_relaxed);
    std::snprintf(buf, sizeof buf, "%g", kDurationBuckets[b]);
    out += "smtplb_transaction_duration_seconds_bucket{le=\"" + std::string(buf) + "\"} " +
           std::to_string(cumulative) + "\n";
  }
  cumulative += buckets_[kDurationBuckets.size()].load(std::memory_order_relaxed);
  out += "smtplb_transaction_duration_seconds_bucket{le=\"+Inf\"} " + std::to_string(cumulative) +
         "\n";
  std::snprintf(buf, sizeof buf, "%.6f",
                static_cast<double>(duration_us_sum_.load(std::memory_order_relaxed)) / 1e6);
  out += "smtplb_transaction_duration_seconds_sum " + std::string(buf) + "\n";
  out += "smtplb_transaction_duration_seconds_count " +
         std::to_string(duration_count_.load(std::memory_order_relaxed)) + "\n";
}

}  // namespace smtplb::server
