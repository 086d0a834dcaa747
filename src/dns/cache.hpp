// cache.hpp: one core's memory of MX and address answers.
//
// Per core, so no locks (each core asks the DNS for itself; a few duplicate
// queries are cheaper than a shared lock on the transaction path).  Time
// comes from the caller (`now`), so tests run on a fake clock.
//
// How long an answer is kept:
//  * records: their TTL, clamped to [min_ttl, max_ttl].  The floor lets a
//    burst of transactions share one lookup even with TTL 0; the ceiling
//    makes a changed MX show within the hour whatever the zone says.
//  * NXDOMAIN and NODATA: the RFC 2308 §5 negative TTL when the answer had
//    an SOA, else negative_ttl, capped at max_negative_ttl (§5: one to
//    three hours work well).
//  * SERVFAIL, timeout, refused and other failures: failure_ttl (5 s; 0
//    turns it off), so a broken domain costs one timeout x attempts per
//    core and not one per transaction.  RFC 2308 §7.1 allows up to 5 min.
//  * cancelled lookups are never stored.
//
// Serve stale (RFC 8767).  Records whose TTL ran out stay for stale_for
// more.  When the refresh fails (a failure, not a definitive answer),
// put_*() hands back the old records marked kStale, and find_*() keeps
// handing them back for failure_ttl before the next refresh is due, so a
// DNS outage delays no mail for an hour.  Only records are served stale: a
// stale NXDOMAIN would bounce mail on old evidence, so a failed refresh of
// a negative answer reports the failure (a 4xx) instead.
//
// At most max_entries answers (MX and address together); the least
// recently used goes first.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <list>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <variant>

#include "dns/result.hpp"
#include "net/clock.hpp"

namespace smtplb::dns {

struct CachePolicy {
  std::chrono::seconds min_ttl{5};
  std::chrono::seconds max_ttl{std::chrono::hours(1)};
  std::chrono::seconds negative_ttl{60};  // NXDOMAIN/NODATA without an SOA
  std::chrono::seconds max_negative_ttl{std::chrono::hours(1)};
  std::chrono::seconds failure_ttl{5};
  std::chrono::seconds stale_for{std::chrono::hours(1)};
  std::size_t max_entries = 10000;
};

enum class Freshness {
  kFresh,  // within its TTL, or just answered
  kStale,  // past its TTL, standing in for a refresh that failed
};

template <class T>
struct Cached {
  T value;
  Freshness freshness = Freshness::kFresh;
};

class Cache {
 public:
  using Clock = smtplb::Clock;

  explicit Cache(CachePolicy policy = {}) : policy_(policy) {}

  // The answer to use without asking the DNS, or nullopt: ask, then put.
  // Names compare without case and without a trailing dot.
  std::optional<Cached<MxResult>> find_mx(std::string_view domain, Clock::time_point now);
  std::optional<Cached<AddrResult>> find_addresses(std::string_view host, Clock::time_point now);

  // Stores what the DNS said and returns what to use: that answer, or the
  // stale records when it is a failure and the cache still has them.
  Cached<MxResult> put_mx(std::string_view domain, MxResult answer, Clock::time_point now);
  Cached<AddrResult> put_addresses(std::string_view host, AddrResult answer, Clock::time_point now);

  void clear();
  std::size_t size() const { return index_.size(); }

  struct Counters {
    std::uint64_t hits = 0;        // fresh answers served
    std::uint64_t stale_hits = 0;  // stale records served in a failure's place
    std::uint64_t misses = 0;      // the caller had to ask
    std::uint64_t evictions = 0;   // dropped for room
  };
  const Counters& counters() const { return counters_; }

 private:
  using Value = std::variant<MxResult, AddrResult>;
  struct Entry {
    std::string key;
    Value value;
    Clock::time_point expires;      // fresh before this
    Clock::time_point stale_until;  // may stand in for a failed refresh before this
    // Serving stale after a failed refresh: the next refresh is due then.
    std::optional<Clock::time_point> retry_after;
  };
  using List = std::list<Entry>;  // most recently used first

  const Value* find(std::string key, Clock::time_point now, Freshness& freshness);
  // Stores a lookup's outcome (never kCancelled nor kBusy); returns the
  // value to use and its freshness.
  std::pair<const Value*, Freshness> put(std::string key, Value value, Clock::time_point now);
  // The last good answer standing in for a refresh that failed or was not
  // sent (not asked again before failure_ttl), while it is within its
  // stale period.
  std::optional<std::pair<const Value*, Freshness>> stand_in(const std::string& key,
                                                             Clock::time_point now);
  // put() for one record type, with the outcomes that learnt nothing.
  template <class T>
  Cached<T> store(std::string key, T answer, Clock::time_point now);
  Clock::duration keep_for(const Value& v) const;
  void touch(List::iterator it) { lru_.splice(lru_.begin(), lru_, it); }

  CachePolicy policy_;
  List lru_;
  std::unordered_map<std::string, List::iterator> index_;
  Counters counters_;
};

}  // namespace smtplb::dns
