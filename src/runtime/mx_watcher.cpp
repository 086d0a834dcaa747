#include "runtime/mx_watcher.hpp"

#include "balance/mx_backends.hpp"
#include "log/log.hpp"
#include "net/clock.hpp"

namespace smtplb::runtime {

namespace {

// How often each pool's domain is looked up (in the cache, mostly).
constexpr std::chrono::seconds kPoll{1};

std::string describe(const std::vector<config::Backend>& list) {
  std::string s;
  for (const auto& b : list)
    s += (s.empty() ? "" : ",") + b.mx_host + "/" + std::to_string(b.mx_preference) + "=" + b.name;
  return s.empty() ? "none" : s;
}

}  // namespace

MxWatcher::MxWatcher(asio::io_context& io, std::function<dns::Lookup*()> lookup,
                     std::function<void()> changed, std::atomic<std::uint64_t>& failures)
    : io_(io), lookup_(std::move(lookup)), changed_(std::move(changed)), failures_(failures) {}

MxWatcher::~MxWatcher() {
  stop();
}

void MxWatcher::stop() {
  for (auto& [name, w] : watches_) {
    w->stopped = true;
    w->timer.cancel();
  }
  watches_.clear();
}

void MxWatcher::watch(std::shared_ptr<const config::Config> cfg) {
  std::map<std::string, std::shared_ptr<Watch>> next;
  MxBackends kept;
  for (const auto& p : cfg->pools) {
    if (p.mx != config::MxMode::kDomain) continue;
    auto it = watches_.find(p.name);
    if (it != watches_.end() && it->second->domain == p.mx_domain && it->second->port == p.port) {
      it->second->cfg = cfg;  // the same domain: keep its loop and hosts
      next.emplace(p.name, it->second);
      watches_.erase(it);
      if (auto b = backends_.find(p.name); b != backends_.end()) kept.emplace(p.name, b->second);
      continue;
    }
    auto w = std::shared_ptr<Watch>(
        new Watch{p.name, p.mx_domain, p.port, cfg, Timer(io_), false, {}, {}});
    next.emplace(p.name, w);
    asio::co_spawn(io_, loop(w), asio::detached);
  }
  stop();  // what is left of watches_: pools gone or changed
  watches_ = std::move(next);
  backends_ = std::move(kept);
}

void MxWatcher::problem(Watch& w, const std::string& what, bool count) {
  if (what == w.last_problem) return;
  w.last_problem = what;
  if (what.empty()) {
    log::Record("mx_refreshed").add("pool", w.pool).add("domain", w.domain).emit();
    return;
  }
  if (count) failures_.fetch_add(1, std::memory_order_relaxed);
  auto it = backends_.find(w.pool);
  log::Record("mx_refresh_failed")
      .add("pool", w.pool)
      .add("domain", w.domain)
      .add("reason", what)
      .add("hosts", describe(it == backends_.end() ? std::vector<config::Backend>{} : it->second))
      .emit(spdlog::level::warn);
}

std::vector<config::Backend> MxWatcher::backends_of(Watch& w, const dns::MxTarget& t) {
  std::vector<balance::MxBackend> refused;
  std::vector<config::Backend> out;
  for (auto& m : balance::mx_backends(t, w.port, *w.cfg, refused))
    out.push_back(std::move(m.backend));
  std::set<std::string> names;
  for (const auto& r : refused) {
    names.insert(r.backend.name);
    // Once per address while the DNS keeps naming it, not every poll.
    if (w.refused.count(r.backend.name)) continue;
    log::Record("mx_host_refused")
        .add("pool", w.pool)
        .add("domain", w.domain)
        .add("host", r.backend.mx_host)
        .add("address", r.backend.name)
        .add("reason", "one of smtplb's own listeners (a mail loop)")
        .emit(spdlog::level::warn);
  }
  w.refused = std::move(names);
  return out;
}

awaitable<void> MxWatcher::loop(std::shared_ptr<Watch> w) {
  while (!w->stopped) {
    dns::Lookup* lookup = lookup_();
    if (!lookup) co_return;
    dns::MxTarget t = co_await lookup->mx_target(w->domain);
    if (w->stopped) co_return;
    std::vector<config::Backend> list;
    bool keep = false;
    switch (t.kind) {
      case dns::MxTarget::Kind::kHosts:
        list = backends_of(*w, t);
        problem(*w, t.stale ? "DNS refresh failed; serving the last good answer" : "", t.stale);
        break;
      case dns::MxTarget::Kind::kTempFail:
        // Nothing left to serve (the stale period is over, or there never
        // was an answer): the pool has no hosts.
        problem(*w, "DNS lookup failed: " + t.detail, true);
        break;
      case dns::MxTarget::Kind::kCancelled:
        keep = true;
        break;
      default:
        problem(*w,
                std::string("the domain takes no mail: ") + dns::to_string(t.kind) + " " + t.detail,
                true);
        break;
    }
    if (!keep) {
      auto& current = backends_[w->pool];
      if (list != current) {
        log::Record("mx_hosts")
            .add("pool", w->pool)
            .add("domain", w->domain)
            .add("hosts", describe(list))
            .add("was", describe(current))
            .emit(list.empty() ? spdlog::level::warn : spdlog::level::info);
        current = std::move(list);
        changed_();
      }
    }
    w->timer.expires_after(kPoll);
    co_await w->timer.async_wait(use_nothrow);
  }
}

}  // namespace smtplb::runtime
