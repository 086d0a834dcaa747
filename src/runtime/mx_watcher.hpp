// mx_watcher.hpp: keeps each `mx: DOMAIN` pool's backends current from DNS.
//
// One loop per such pool, on the first core, asks that core's dns::Lookup
// for the domain every second.  The lookup answers from its cache until the
// records' TTL runs out and only then asks the DNS, so this costs nothing
// between expiries and notices a change within a second of it; no
// transaction ever waits for it.  Each exchange's addresses become
// backends (address:port, with the exchange's name and preference), except
// one of smtplb's own listeners (a loop).  When the list changes, the
// runtime builds a new configuration generation with it (the same
// machinery as a reload: hosts that stay keep their state and sessions).
//
// A refresh that fails keeps the last good hosts while the cache still
// serves them (dns.max_stale past their TTL), logged once per run of
// failures and counted; after that, or when the DNS says the domain has no
// mail hosts (NXDOMAIN, null MX), the pool is empty and its transactions
// get 451 4.4.1 until the DNS answers again.
#pragma once

#include <atomic>
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <string>

#include "dns/lookup.hpp"
#include "net/asio.hpp"
#include "runtime/generation_builder.hpp"

namespace smtplb::runtime {

class MxWatcher {
 public:
  MxWatcher(asio::io_context& io, std::function<dns::Lookup*()> lookup,
            std::function<void()> changed, std::atomic<std::uint64_t>& failures);
  ~MxWatcher();

  // Watches the `mx: DOMAIN` pools of `cfg` and no others; a pool whose
  // domain and port stay keeps its hosts (no wait for the DNS).
  void watch(std::shared_ptr<const config::Config> cfg);
  void stop();
  const MxBackends& backends() const { return backends_; }

 private:
  struct Watch {
    std::string pool, domain;
    std::uint16_t port = 25;
    std::shared_ptr<const config::Config> cfg;
    Timer timer;
    bool stopped = false;
    std::string last_problem;       // logged once per run of the same problem
    std::set<std::string> refused;  // own-listener addresses, logged once each
  };
  awaitable<void> loop(std::shared_ptr<Watch> w);
  std::vector<config::Backend> backends_of(Watch& w, const dns::MxTarget& t);
  void problem(Watch& w, const std::string& what, bool count);

  asio::io_context& io_;
  std::function<dns::Lookup*()> lookup_;
  std::function<void()> changed_;
  std::atomic<std::uint64_t>& failures_;
  std::map<std::string, std::shared_ptr<Watch>> watches_;  // by pool name
  MxBackends backends_;
};

}  // namespace smtplb::runtime
