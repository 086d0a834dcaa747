// runtime_counters.hpp: everything the runtime (reload, MX refresh,
// accepting) counts, in one list (smtplb_reloads_total,
// smtplb_mx_refresh_failures_total, smtplb_accept_errors_total,
// smtplb_dns_queries_total).
#pragma once

#include <atomic>
#include <cstdint>

#include "dns/resolver.hpp"

namespace smtplb::runtime {

struct RuntimeCounters {
  std::atomic<std::uint64_t> reloads_ok{0}, reloads_refused{0};
  // `mx: DOMAIN` refreshes that failed (each run of failures once).
  std::atomic<std::uint64_t> mx_refresh_failures{0};
  // accept() failures (out of descriptors, mostly): logged at most once a
  // second, every one counted here.
  std::atomic<std::uint64_t> accept_errors{0};
  // Every core's resolver (smtplb_dns_queries_total).
  dns::ResolverTotals dns;
};

}  // namespace smtplb::runtime
