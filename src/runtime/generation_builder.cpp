#include "runtime/generation_builder.hpp"

#include <netdb.h>

#include <cstring>
#include <set>

namespace smtplb::runtime {

namespace {

std::optional<tcp::endpoint> resolve(const config::Endpoint& e, std::string& err) {
  error_code ec;
  auto addr = asio::ip::make_address(e.host, ec);
  if (!ec) return tcp::endpoint(addr, e.port);
  addrinfo hints{};
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* res = nullptr;
  int rc = getaddrinfo(e.host.c_str(), nullptr, &hints, &res);
  if (rc != 0 || !res) {
    err = gai_strerror(rc);
    return std::nullopt;
  }
  tcp::endpoint ep;
  if (res->ai_family == AF_INET) {
    auto* sa = reinterpret_cast<sockaddr_in*>(res->ai_addr);
    ep = tcp::endpoint(asio::ip::address_v4(ntohl(sa->sin_addr.s_addr)), e.port);
  } else {
    auto* sa = reinterpret_cast<sockaddr_in6*>(res->ai_addr);
    asio::ip::address_v6::bytes_type b;
    std::memcpy(b.data(), &sa->sin6_addr, 16);
    ep = tcp::endpoint(asio::ip::address_v6(b), e.port);
  }
  freeaddrinfo(res);
  return ep;
}

const runtime::BackendEntry* find_backend(const runtime::Generation* gen, std::string_view pool,
                                          std::string_view name) {
  if (!gen) return nullptr;
  const auto* list = gen->pool_backends(pool);
  if (!list) return nullptr;
  for (const auto& e : *list)
    if (e.state->name() == name) return &e;
  return nullptr;
}

std::shared_ptr<server::RateLimiter> rate_limiter(const std::shared_ptr<server::RateLimiter>& old,
                                                  const config::Rate& old_rate,
                                                  const config::Rate& rate, int ipv6_prefix) {
  // The same rate keeps its buckets, so a reload is no way around a limit.
  if (old && old_rate == rate && old->ipv6_prefix() == ipv6_prefix) return old;
  return std::make_shared<server::RateLimiter>(rate, ipv6_prefix);
}

}  // namespace

std::shared_ptr<const runtime::Generation> build_generation(
    std::shared_ptr<const config::Config> cfg, const runtime::Generation* previous,
    server::Metrics& metrics, std::vector<std::string>& errors, const MxBackends* mx) {
  auto gen = std::make_shared<runtime::Generation>();
  gen->number = previous ? previous->number + 1 : 1;
  gen->cfg = cfg;
  for (const auto& p : cfg->pools) {
    const config::Pool* old_pool = previous ? previous->cfg->find_pool(p.name) : nullptr;
    auto& list = gen->backends[p.name];
    const std::vector<config::Backend>* backends = &p.backends;
    static const std::vector<config::Backend> kNone;
    if (p.mx == config::MxMode::kDomain) {
      auto it = mx ? mx->find(p.name) : MxBackends::const_iterator{};
      backends = mx && it != mx->end() ? &it->second : &kNone;
    }
    for (const auto& b : *backends) {
      std::string err;
      auto ep = resolve(b.address, err);
      if (!ep) {
        errors.push_back("pool " + p.name + ": cannot resolve backend " + b.name + ": " + err);
        continue;
      }
      const runtime::BackendEntry* old = find_backend(previous, p.name, b.name);
      if (old && old->state->config() == b && old_pool && old_pool->slow_start == p.slow_start &&
          old->endpoint == *ep) {
        list.push_back({old->state, *ep});
        continue;
      }
      auto st = std::make_shared<balance::BackendState>(p.name, b, p.slow_start);
      if (old && old->state->admin() != balance::AdminState::kReady)
        st->set_admin(old->state->admin(), old->state->reason());
      list.push_back({std::move(st), *ep});
    }
  }
  if (!errors.empty()) return nullptr;
  const auto& limits = cfg->limits;
  gen->connection_rate =
      rate_limiter(previous ? previous->connection_rate : nullptr,
                   previous ? previous->cfg->limits.max_connection_rate_per_ip : config::Rate{},
                   limits.max_connection_rate_per_ip, limits.ipv6_prefix);
  gen->message_rate =
      rate_limiter(previous ? previous->message_rate : nullptr,
                   previous ? previous->cfg->limits.max_message_rate_per_ip : config::Rate{},
                   limits.max_message_rate_per_ip, limits.ipv6_prefix);
  server::Metrics::BackendNames names;
  for (const auto& [pool, list] : gen->backends)
    for (const auto& e : list) names[pool].push_back(e.state->name());
  gen->metrics = metrics.table_for(*cfg, &names);
  return gen;
}

std::vector<std::string> restart_only_changes(const config::Config& running,
                                              const config::Config& next) {
  std::vector<std::string> out;
  auto listeners = [](const config::Config& c) {
    std::set<std::string> s;
    for (const auto& l : c.listeners) s.insert(l.name + " on " + l.listen.str());
    return s;
  };
  auto before = listeners(running), after = listeners(next);
  for (const auto& l : after)
    if (!before.count(l)) out.push_back("listeners: " + l + " is new; a restart adds it");
  for (const auto& l : before)
    if (!after.count(l)) out.push_back("listeners: " + l + " is gone; a restart removes it");
  if (running.workers != next.workers)
    out.push_back("workers: changed from " + std::to_string(running.workers) + " to " +
                  std::to_string(next.workers) + "; a restart applies it");
  const bool admin_same = running.admin.has_value() == next.admin.has_value() &&
                          (!running.admin || (running.admin->listen == next.admin->listen &&
                                              running.admin->token_file == next.admin->token_file));
  if (!admin_same) out.push_back("admin: changed; a restart applies it");
  if (running.dns != next.dns) out.push_back("dns: changed; a restart applies it");
  return out;
}

BackendChanges compare_backends(const runtime::Generation& prev, const runtime::Generation& next) {
  BackendChanges c;
  for (const auto& [pool, list] : next.backends) {
    for (const auto& e : list) {
      const auto* old = find_backend(&prev, pool, e.state->name());
      if (!old)
        c.added.push_back(pool + "/" + e.state->name());
      else if (old->state == e.state)
        ++c.kept;
      else
        c.changed.push_back(pool + "/" + e.state->name());
    }
  }
  for (const auto& [pool, list] : prev.backends)
    for (const auto& e : list)
      if (!find_backend(&next, pool, e.state->name()))
        c.removed.push_back(pool + "/" + e.state->name());
  return c;
}

}  // namespace smtplb::runtime
