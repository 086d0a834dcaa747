// lookup.hpp: "where does mail for this domain go?", for one core.
//
// The Resolver asks, the Cache remembers, plan_mx() orders; this puts them
// together into the one question the MX pools ask: the domain's exchanges,
// preference by preference, each with its addresses.  Answers come from
// the cache while fresh, so a warm lookup costs no DNS traffic and no
// wait; a refresh that fails serves the last good records, marked stale,
// for the cache's bounded stale period.
//
// Per core, used from that core's thread only.
#pragma once

#include <chrono>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <unordered_map>
#include <vector>

#include "dns/cache.hpp"
#include "dns/mx_order.hpp"
#include "dns/resolver.hpp"
#include "net/clock.hpp"

namespace smtplb::dns {

struct MxHost {
  std::string name;  // the exchange (the domain itself for the implicit MX)
  std::uint16_t preference = 0;
  std::vector<boost::asio::ip::address> addresses;  // AAAA then A
  bool operator==(const MxHost&) const = default;
};

struct MxTarget {
  enum class Kind {
    kHosts,      // `hosts`, ascending preference (groups in answer order)
    kNxDomain,   // the domain does not exist: 550 5.1.2
    kNullMx,     // RFC 7505: the domain takes no mail: 556 5.1.10
    kNoHosts,    // MX records, but no exchange with an address: 451 4.4.1
    kTempFail,   // SERVFAIL, timeout, refused: 451 4.4.3
    kCancelled,  // the lookup was cancelled (shutdown): nothing was learnt
  };
  Kind kind = Kind::kTempFail;
  std::vector<MxHost> hosts;
  bool implicit = false;  // no MX records: the domain's own addresses
  bool stale = false;     // some answer is past its TTL, standing in for a failed refresh
  std::string detail;     // what the DNS said, for the logs
};

const char* to_string(MxTarget::Kind k);

class Lookup {
 public:
  Lookup(asio::any_io_executor ex, std::unique_ptr<Resolver> resolver, CachePolicy policy)
      : ex_(std::move(ex)), resolver_(std::move(resolver)), cache_(policy) {}

  awaitable<MxTarget> mx_target(std::string domain);

  const Cache& cache() const { return cache_; }
  Resolver::Counters resolver_counters() const { return resolver_->counters(); }

 private:
  awaitable<Cached<MxResult>> mx(const std::string& domain);
  awaitable<Cached<AddrResult>> addresses(const std::string& host);

  // A name being looked up already: later askers wait for that answer
  // instead of sending the same query (a burst of transactions to one
  // domain on a cold or expired cache costs one query, not one each).
  template <class T>
  struct InFlight {
    explicit InFlight(asio::any_io_executor ex) : done(std::move(ex)) {
      done.expires_at(Timer::time_point::max());
    }
    Timer done;  // cancelled when the answer is in
    std::optional<Cached<T>> answer;
  };
  template <class T, class Ask, class Put>
  awaitable<Cached<T>> shared_lookup(
      std::unordered_map<std::string, std::shared_ptr<InFlight<T>>>& in_flight, std::string key,
      Ask ask, Put put);

  asio::any_io_executor ex_;
  std::unique_ptr<Resolver> resolver_;
  Cache cache_;
  std::unordered_map<std::string, std::shared_ptr<InFlight<MxResult>>> mx_in_flight_;
  std::unordered_map<std::string, std::shared_ptr<InFlight<AddrResult>>> addr_in_flight_;
};

}  // namespace smtplb::dns
