#include "runtime/core.hpp"

#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <stdexcept>

#include "balance/mx_backends.hpp"
#include "log/log.hpp"
#include "net/clock.hpp"
#include "net/ip_address.hpp"
#include "server/frontend_session.hpp"
#include "server/policy.hpp"
#include "smtp/replies.hpp"

namespace smtplb::runtime {

namespace {

// How often idle backend sessions past their limits are closed.
constexpr std::chrono::seconds kSweepInterval{1};
// After a failed accept (EMFILE...), wait before the next one rather than spin.
constexpr std::chrono::milliseconds kAcceptBackoff{100};

using reuse_port = asio::detail::socket_option::boolean<SOL_SOCKET, SO_REUSEPORT>;

}  // namespace

upstream::PoolRuntime* CoreView::pool(std::string_view name) const {
  auto it = pools.find(name);
  return it == pools.end() ? nullptr : it->second.get();
}

Core::Core(int index, Shared& shared)
    : index_(index), shared_(shared), view_(build_view(shared.generation)) {
  sessions_.prev = sessions_.next = &sessions_;
  make_lookup(view_->cfg());
  reserve_fd_ = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
}

void Core::make_lookup(const config::Config& cfg) {
  if (lookup_) return;
  bool mx = false;
  for (const auto& p : cfg.pools) mx = mx || p.mx != config::MxMode::kNone;
  if (!mx) return;
  dns::ResolverOptions o;
  o.servers = cfg.dns.servers;
  o.timeout = std::chrono::duration_cast<std::chrono::milliseconds>(cfg.dns.timeout);
  o.attempts = cfg.dns.attempts;
  o.max_in_flight = cfg.dns.max_in_flight;
  o.totals = &shared_.counters.dns;
  auto made = dns::Resolver::make(io_.get_executor(), o);
  if (!made.resolver) throw std::runtime_error("dns: " + made.error);
  dns::CachePolicy policy;
  auto secs = [](config::Duration d) {
    return std::max(std::chrono::seconds(1), std::chrono::duration_cast<std::chrono::seconds>(d));
  };
  policy.min_ttl = secs(cfg.dns.min_ttl);
  policy.max_ttl = std::max(policy.min_ttl, secs(cfg.dns.max_ttl));
  policy.stale_for = secs(cfg.dns.max_stale);
  policy.max_entries = static_cast<std::size_t>(cfg.dns.cache_entries);
  lookup_ = std::make_unique<dns::Lookup>(io_.get_executor(), std::move(made.resolver), policy);
}

std::shared_ptr<upstream::PoolRuntime> Core::recipient_pool(
    const std::shared_ptr<const config::Config>& owner, const config::Pool& p,
    const std::string& domain, const dns::MxTarget& t) {
  const auto now = Clock::now();
  const std::string key = p.name + '\0' + domain;
  auto it = recipient_pools_.find(key);
  if (it != recipient_pools_.end() && it->second.hosts == t.hosts && it->second.pool->cfg == &p) {
    it->second.used = now;
    return it->second.pool;
  }
  auto rt = std::make_shared<upstream::PoolRuntime>();
  rt->cfg = &p;
  rt->cfg_owner = owner;
  rt->balancer = balance::make_balancer(p.algorithm);
  std::vector<balance::MxBackend> refused;  // our own listeners: never a backend
  for (auto& [b, ep] : balance::mx_backends(t, p.port, *owner, refused)) {
    auto& slot = recipient_hosts_[p.name + '\0' + b.name];
    auto runtime = slot.lock();
    if (!runtime) {
      auto state = std::make_shared<balance::BackendState>(p.name, b, p.slow_start);
      runtime = std::make_shared<upstream::BackendRuntime>(upstream::BackendRuntime{
          state.get(), ep, upstream::ConnectionPool(view_->cfg().backend_pool), state,
          view_->gen->cfg});
      slot = runtime;
    }
    rt->states.push_back(runtime->state);
    // The preference is this domain's, not the host's first one.
    rt->preferences.push_back(b.mx_preference);
    rt->backends.push_back(std::move(runtime));
  }
  if (rt->backends.empty()) return nullptr;
  // A transaction that began before a reload: its pool, not the cache's.
  if (owner != view_->gen->cfg) return rt;
  if (recipient_pools_.size() >= kMaxRecipientDomains && it == recipient_pools_.end()) {
    // Room for one more: the least recently used goes (transactions using
    // it keep their own reference).
    auto oldest = recipient_pools_.begin();
    for (auto i = recipient_pools_.begin(); i != recipient_pools_.end(); ++i)
      if (i->second.used < oldest->second.used) oldest = i;
    recipient_pools_.erase(oldest);
  }
  recipient_pools_[key] = RecipientPool{rt, t.hosts, now};
  return rt;
}

Core::~Core() {
  // The io_context, destroyed next, destroys the handlers of parked
  // sessions, which unpark: park_timer_ is gone by then.
  destroying_ = true;
  if (reserve_fd_ >= 0) ::close(reserve_fd_);
}

std::shared_ptr<CoreView> Core::build_view(std::shared_ptr<const Generation> gen) const {
  auto view = std::make_shared<CoreView>(gen);
  for (const auto& p : gen->cfg->pools) {
    auto rt = std::make_shared<upstream::PoolRuntime>();
    rt->cfg = &p;
    rt->balancer = balance::make_balancer(p.algorithm);
    const upstream::PoolRuntime* before = view_ ? view_->pool(p.name) : nullptr;
    for (const auto& entry : *gen->pool_backends(p.name)) {
      std::shared_ptr<upstream::BackendRuntime> b;
      // A backend that stays keeps its runtime, idle sessions included.
      if (before) {
        for (const auto& old : before->backends)
          if (old->state == entry.state.get() && old->endpoint == entry.endpoint) b = old;
      }
      if (!b)
        b = std::make_shared<upstream::BackendRuntime>(upstream::BackendRuntime{
            entry.state.get(), entry.endpoint, upstream::ConnectionPool(gen->cfg->backend_pool),
            entry.state, gen->cfg});
      rt->states.push_back(b->state);
      if (p.mx != config::MxMode::kNone)
        rt->preferences.push_back(b->state->config().mx_preference);
      rt->backends.push_back(std::move(b));
    }
    view->pools.emplace(p.name, std::move(rt));
  }
  return view;
}

void Core::adopt(std::shared_ptr<const Generation> gen) {
  asio::post(io_, [this, gen = std::move(gen)] {
    auto next = build_view(gen);
    // Runtimes the new view does not share are retired: their idle
    // sessions go now, the ones in use when they come back.
    for (const auto& [name, pool] : view_->pools) {
      for (const auto& b : pool->backends) {
        bool kept = false;
        if (auto* np = next->pool(name))
          for (const auto& nb : np->backends) kept = kept || nb == b;
        if (kept) continue;
        quit_idle(*b, true, Clock::now());
        retired_.push_back(b);
      }
    }
    view_ = std::move(next);
    // Recipient pools point into the old configuration: built afresh on
    // demand (their hosts keep their state and sessions).
    recipient_pools_.clear();
    try {
      make_lookup(view_->cfg());
    } catch (const std::exception& e) {
      log::Record("dns_unavailable").add("error", e.what()).emit(spdlog::level::err);
    }
  });
}

std::string Core::next_session_id() {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%08x%02x%06llx", shared_.id_base, index_ & 0xff,
                static_cast<unsigned long long>(++session_counter_ & 0xffffff));
  return buf;
}

void Core::listen() {
  for (const auto& l : view_->cfg().listeners) {
    auto addr = asio::ip::make_address(l.listen.host);
    tcp::endpoint ep(addr, l.listen.port);
    auto acc = std::make_unique<tcp::acceptor>(io_);
    error_code ec;
    acc->open(ep.protocol(), ec);
    if (!ec) acc->set_option(tcp::acceptor::reuse_address(true), ec);
    // Every core binds the same address; the kernel spreads connections.
    if (!ec) acc->set_option(reuse_port(true), ec);
    if (!ec) acc->bind(ep, ec);
    if (!ec) acc->listen(asio::socket_base::max_listen_connections, ec);
    if (ec)
      throw std::runtime_error("listener " + l.name + " on " + l.listen.str() + ": " +
                               ec.message());
    asio::co_spawn(io_, accept_loop(*acc, l.name), asio::detached);
    acceptors_.push_back(std::move(acc));
  }
  asio::co_spawn(io_, sweep_loop(), asio::detached);
}

awaitable<void> Core::refuse(tcp::socket sock) {
  net::TimedSocket s(std::move(sock));
  co_await s.write_all(smtp::replies::too_many_connections().wire(), std::chrono::seconds(5));
  s.close();
}

void Core::accept_failed(tcp::acceptor& acceptor, const std::string& listener,
                         const error_code& ec) {
  const bool no_descriptors =
      ec == asio::error::no_descriptors || ec.value() == ENFILE || ec.value() == EMFILE;
  int shed = 0;
  if (no_descriptors) shed = shed_with_reserve(acceptor);
  // One line a second at most, with how many failed since the last one:
  // a descriptor shortage must not become a log storm.
  ++accept_errors_;
  shared_.counters.accept_errors.fetch_add(1, std::memory_order_relaxed);
  accepts_shed_ += shed;
  const auto now = Clock::now();
  if (now - accept_error_logged_ < std::chrono::seconds(1)) return;
  log::Record("accept_error")
      .add("listener", listener)
      .add("error", ec.message())
      .add("count", static_cast<long long>(accept_errors_))
      .add("refused_421", static_cast<long long>(accepts_shed_))
      .emit(spdlog::level::warn);
  accept_error_logged_ = now;
  accept_errors_ = 0;
  accepts_shed_ = 0;
}

int Core::shed_with_reserve(tcp::acceptor& acceptor) {
  // Out of descriptors, the waiting clients would sit in the backlog with
  // no banner.  The reserve descriptor makes room for one accept at a
  // time: each gets 421 4.3.2 and a close (Postfix and nginx do the same).
  static constexpr std::string_view kReply =
      "421 4.3.2 Too many open connections, try again later\r\n";
  constexpr int kMaxShedPerRound = 64;
  int shed = 0;
  while (reserve_fd_ >= 0 && shed < kMaxShedPerRound) {
    ::close(reserve_fd_);
    reserve_fd_ = -1;
    const int fd =
        ::accept4(acceptor.native_handle(), nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd >= 0) {
      const ssize_t n = ::send(fd, kReply.data(), kReply.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
      (void)n;  // best effort: the close says the rest
      ::close(fd);
      ++shed;
    }
    reserve_fd_ = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (fd < 0) break;  // nothing more waiting (or still no room)
  }
  return shed;
}

awaitable<void> Core::accept_loop(tcp::acceptor& acceptor, std::string listener) {
  for (;;) {
    // The peer's address comes with the accept (no getpeername per
    // connection).
    tcp::endpoint ep;
    auto [ec, sock] = co_await acceptor.async_accept(ep, use_nothrow);
    if (shutting_down_) co_return;
    if (ec) {
      if (ec == asio::error::operation_aborted) co_return;
      accept_failed(acceptor, listener, ec);
      Timer t(io_, kAcceptBackoff);
      co_await t.async_wait(use_nothrow);
      continue;
    }
    error_code rec;
    // Replies go out as soon as they are written: with Nagle a second small
    // write (a TLS 1.3 session ticket, then the EHLO reply) waits for the
    // client's delayed ACK, 40 ms.
    sock.set_option(tcp::no_delay(true), rec);
    // Non-blocking once, for Asio and for the session's own reads alike:
    // otherwise each sets it on first use, one ioctl apiece.
    sock.non_blocking(true, rec);
    const net::IpAddress ip(ep);
    // The connection begins with the generation of the moment (a reload
    // never adds, removes or moves a listener, so this one is in it).
    std::shared_ptr<CoreView> view = view_;
    const config::Config& cfg = view->cfg();
    const config::Listener* l = cfg.find_listener(listener);
    if (!l) continue;
    if (l->proxy_protocol && !server::is_proxy(cfg, ip)) {
      // SECURITY.md 5: a PROXY header is believed only from proxy_networks;
      // anyone else on this listener is closed at once, without a 220.
      log::Record("proxy_refused")
          .add("listener", l->name)
          .add("peer", ip.text())
          .add("reason", "not in proxy_networks")
          .emit(spdlog::level::warn);
      continue;
    }
    // Behind a PROXY header the peer is the upstream balancer: per-client
    // limits wait for the client's address (FrontendSession), only the
    // total counts here.
    const bool trusted = l->proxy_protocol || server::is_trusted(cfg, ip);
    const char* refusal = nullptr;
    if (!trusted && !view->gen->connection_rate->allow(ip, Clock::now())) {
      refusal = "connection rate";
      shared_.sessions.count(server::SessionCounters::Limit::kConnectionRate);
    } else {
      switch (shared_.limiter.acquire(ip, trusted, cfg.limits.max_connections,
                                      cfg.limits.max_connections_per_ip)) {
        case server::ConnectionLimiter::Result::kAcquired:
          break;
        case server::ConnectionLimiter::Result::kTotalFull:
          refusal = "connection limit";
          shared_.sessions.count(server::SessionCounters::Limit::kConnections);
          break;
        case server::ConnectionLimiter::Result::kClientFull:
          refusal = "connection limit per client";
          shared_.sessions.count(server::SessionCounters::Limit::kConnectionsPerIp);
          break;
      }
    }
    if (refusal) {
      log::Record("connection_refused")
          .add("listener", l->name)
          .add("client", ip.text())
          .add("reason", refusal)
          .emit(spdlog::level::warn);
      asio::co_spawn(io_, refuse(std::move(sock)), asio::detached);
      continue;
    }
    auto slot = std::make_unique<server::ConnectionSlot>(shared_.limiter, ip);
    auto session = std::make_unique<server::FrontendSession>(*this, std::move(view), *l,
                                                             std::move(sock), ep, std::move(slot));
    server::FrontendSession::start(std::move(session));
  }
}

void Core::quit_idle(upstream::BackendRuntime& b, bool all, Clock::time_point now) {
  // The QUIT may outlive the runtime (a reload removed the backend): it
  // keeps what the session refers to, the backend's state and its
  // configuration, until it is done.
  for (auto& s : all ? b.idle.drain_all() : b.idle.expired(now))
    asio::co_spawn(
        io_,
        [s = std::move(s), state = b.state_owner, cfg = b.cfg_owner]() mutable -> awaitable<void> {
          co_await s->quit();
          s.reset();  // before `state` and `cfg`: captures go in no set order
        },
        asio::detached);
}

awaitable<void> Core::sweep_loop() {
  while (!shutting_down_) {
    sweep_timer_.expires_after(kSweepInterval);
    co_await sweep_timer_.async_wait(use_nothrow);
    auto now = Clock::now();
    for (auto& [name, pool] : view_->pools) {
      for (auto& b : pool->backends) {
        // A drained backend's idle sessions go at once: it takes nothing new.
        bool drop_all = shutting_down_ || b->state->admin() != balance::AdminState::kReady ||
                        b->state->agent_admin(now) != balance::AdminState::kReady;
        quit_idle(*b, drop_all, now);
      }
    }
    std::erase_if(retired_, [&](const std::weak_ptr<upstream::BackendRuntime>& w) {
      auto b = w.lock();
      if (b) quit_idle(*b, true, now);
      return !b;
    });
    std::erase_if(recipient_hosts_, [&](const auto& entry) {
      auto b = entry.second.lock();
      if (b) quit_idle(*b, b->state->admin() != balance::AdminState::kReady, now);
      return !b;
    });
  }
}

void Core::add(server::FrontendSession* s) {
  SessionLink* l = s;
  l->prev = sessions_.prev;
  l->next = &sessions_;
  sessions_.prev->next = l;
  sessions_.prev = l;
  ++session_count_;
}

void Core::remove(server::FrontendSession* s) {
  SessionLink* l = s;
  l->prev->next = l->next;
  l->next->prev = l->prev;
  l->prev = l->next = nullptr;
  --session_count_;
}

std::vector<server::FrontendSession*> Core::session_list() const {
  std::vector<server::FrontendSession*> v;
  v.reserve(session_count_);
  for (const SessionLink* l = sessions_.next; l != &sessions_; l = l->next)
    v.push_back(static_cast<server::FrontendSession*>(const_cast<SessionLink*>(l)));
  return v;
}

Core::Parked::iterator Core::park(Clock::time_point deadline, server::FrontendSession* s) {
  auto it = parked_.emplace(deadline, s);
  if (deadline < park_timer_at_) {
    park_timer_at_ = deadline;
    park_timer_.expires_at(deadline);
    park_timer_.async_wait([this](error_code ec) {
      if (!ec) on_park_timer();
    });
  }
  return it;
}

void Core::unpark(Parked::iterator it) {
  parked_.erase(it);
  if (!parked_.empty() || destroying_) return;
  // Nothing to wait for: a shutting down core's io_context must run out
  // of work once its sessions are gone.
  park_timer_at_ = Clock::time_point::max();
  park_timer_.cancel();
}

void Core::on_park_timer() {
  // A wait that was re-armed to an earlier deadline may still come here
  // once: nothing expired then, and the timer is armed for the first one.
  const auto now = Clock::now();
  park_timer_at_ = Clock::time_point::max();
  while (!parked_.empty() && parked_.begin()->first <= now) {
    server::FrontendSession* s = parked_.begin()->second;
    parked_.erase(parked_.begin());
    s->on_park_deadline();
  }
  if (parked_.empty()) return;
  park_timer_at_ = parked_.begin()->first;
  park_timer_.expires_at(park_timer_at_);
  park_timer_.async_wait([this](error_code ec) {
    if (!ec) on_park_timer();
  });
}

void Core::begin_shutdown() {
  asio::post(io_, [this] {
    shutting_down_ = true;
    for (auto& a : acceptors_) {
      error_code ec;
      a->close(ec);
    }
    sweep_timer_.cancel();
    auto now = Clock::now();
    for (auto& [name, pool] : view_->pools)
      for (auto& b : pool->backends) quit_idle(*b, true, now);
    for (auto& w : retired_)
      if (auto b = w.lock()) quit_idle(*b, true, now);
    for (auto& [key, w] : recipient_hosts_)
      if (auto b = w.lock()) quit_idle(*b, true, now);
    for (auto* s : session_list()) s->on_shutdown();
  });
}

void Core::force_close() {
  asio::post(io_, [this] {
    for (auto* s : session_list()) s->force_close();
  });
}

}  // namespace smtplb::runtime
