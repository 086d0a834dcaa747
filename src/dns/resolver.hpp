// resolver.hpp: MX and address lookups for one core, c-ares driven by the
// core's io_context.
//
// One Resolver per core, used only from that core's thread (no locks, like
// every per-core object).  c-ares does the protocol: retries, the server
// list, TCP when an answer is truncated.  It never blocks and starts no
// thread here: its sockets are watched with asio::posix::stream_descriptor
// (c-ares owns and closes them; a watch is released, never closed, when
// c-ares says it is done with a socket) and its retry clock is one
// steady_timer.
//
// Bounds.  c-ares sends each query up to `attempts` times per server, the
// first with `timeout` and doubling on each round of the server list; on
// top of that every lookup ends within timeout x attempts (kTimeout), so
// the configured figures are the longest a transaction waits for the DNS.
// At most `max_in_flight` queries are out at once (counted until c-ares
// lets go of them, which may be after their lookup has ended); as many
// more queue for a place, and the time they queue counts in their bound.
// A lookup that was never sent (queue full, or its bound ran out in the
// queue) ends with kBusy, which the cache never stores.
//
// Lifetime.  Destroying the Resolver ends every lookup in flight with
// kCancelled.  Their coroutines resume later from the io_context, never
// inside the destructor, and must not use the resolver again.  A lookup
// whose coroutine is cancelled (a cancellation slot, as with
// `co_await (resolve_mx(d) || timer.async_wait(...))`) ends with kCancelled
// at once; c-ares finishes the query on its own and the answer is dropped.
// Like any Asio I/O object, the Resolver goes before its io_context.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "config/units.hpp"
#include "dns/result.hpp"
#include "net/asio.hpp"

namespace smtplb::dns {

// What resolvers count: one resolver's own, or every core's together when
// they share one (/metrics; relaxed atomics, read from the admin thread).
struct ResolverTotals {
  std::atomic<std::uint64_t> queries{0};    // sent to c-ares (an address lookup is two)
  std::atomic<std::uint64_t> timeouts{0};   // sent, and ended by the timeout x attempts bound
  std::atomic<std::uint64_t> cancelled{0};  // ended by a cancellation slot
  std::atomic<std::uint64_t> queued{0};     // waited for a place under max_in_flight
  std::atomic<std::uint64_t> busy{0};  // never sent: the queue was full, or its bound ran out there
};

// The `dns:` key of DESIGN.md (`{ servers: [127.0.0.1:53], timeout: 2s,
// attempts: 2 }`), with its defaults.
struct ResolverOptions {
  std::vector<config::Endpoint> servers;  // IP literals; empty: /etc/resolv.conf
  std::chrono::milliseconds timeout{2000};
  int attempts = 2;
  // Queries c-ares may have out at once (`dns.max_in_flight`); as many
  // more wait, within their own bound, for one to end; past that a lookup
  // ends with kBusy at once.  Clients choose the names (one recipient
  // domain each), so without a bound they choose how hard we hit the DNS.
  int max_in_flight = 1000;
  // Where to count (shared by the cores, outliving the resolvers); unset:
  // each resolver counts on its own.
  ResolverTotals* totals = nullptr;
};

class Resolver {
 public:
  struct Made {
    std::unique_ptr<Resolver> resolver;  // null when error is set
    std::string error;
  };
  // At start-up or reload, on the core's executor.  Fails on a server that
  // is not an IP literal, a timeout or attempts below 1, or when c-ares
  // cannot start (it reads /etc/resolv.conf when `servers` is empty).
  static Made make(asio::any_io_executor ex, const ResolverOptions& options);

  ~Resolver();
  Resolver(const Resolver&) = delete;
  Resolver& operator=(const Resolver&) = delete;

  // The MX records of `domain` (ares_query: no search list, no hosts
  // file).  kNoData is the caller's cue for the implicit MX (plan_mx with
  // no records).
  awaitable<MxResult> resolve_mx(std::string domain);
  // The AAAA and A records of `host`, asked at once and merged by
  // combine_families().
  awaitable<AddrResult> resolve_addresses(std::string host);

  // The counts now (ResolverTotals'), of ResolverOptions::totals when set.
  struct Counters {
    std::uint64_t queries = 0, timeouts = 0, cancelled = 0, queued = 0, busy = 0;
  };
  Counters counters() const;

  class Core;  // the c-ares channel and its watches (resolver.cpp)

 private:
  explicit Resolver(std::shared_ptr<Core> core) : core_(std::move(core)) {}
  // Shared only so that the Asio handlers c-ares's sockets and timer leave
  // behind can tell, through a weak_ptr, that it is gone.
  std::shared_ptr<Core> core_;
};

}  // namespace smtplb::dns
