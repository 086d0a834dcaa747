#include "app/runtime.hpp"

#include <netdb.h>

#include <fstream>
#include <random>
#include <sstream>
#include <thread>

#include "admin/admin_server.hpp"
#include "app/admin_model.hpp"
#include "client/health_checker.hpp"
#include "log/log.hpp"
#include "server/core.hpp"

namespace smtplb::app {

namespace {

// After the forced close, how long the cores get to write their 421s.
constexpr std::chrono::seconds kForcedCloseGrace{2};

// Backend addresses are resolved once, at start-up (a host name in
// `address:` is looked up with the system resolver; DNS-driven pools with
// re-resolution are the `mx:` capability).
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

}  // namespace

int run(std::shared_ptr<const config::Config> cfg) {
  server::Shared shared;
  shared.cfg = cfg;
  shared.id_base = std::random_device{}();
  shared.metrics = std::make_unique<server::Metrics>(*cfg);
  shared.connection_rate =
      std::make_unique<server::RateLimiter>(cfg->limits.max_connection_rate_per_ip);
  shared.message_rate = std::make_unique<server::RateLimiter>(cfg->limits.max_message_rate_per_ip);
  for (const auto& p : cfg->pools) {
    auto& list = shared.backends[p.name];
    for (const auto& b : p.backends) {
      std::string err;
      auto ep = resolve(b.address, err);
      if (!ep) {
        spdlog::critical("pool {}: cannot resolve backend {}: {}", p.name, b.name, err);
        return 1;
      }
      list.push_back({std::make_unique<balance::BackendState>(p.name, b, p.slow_start), *ep});
    }
  }

  int workers = cfg->workers > 0
                    ? cfg->workers
                    : static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  std::vector<std::unique_ptr<server::Core>> cores;
  for (int i = 0; i < workers; ++i) cores.push_back(std::make_unique<server::Core>(i, shared));
  // Active health checks run on the first core; they cost timers, not threads.
  std::vector<client::HealthChecker::Target> targets;
  for (const auto& p : cfg->pools) {
    for (auto& entry : shared.backends.at(p.name)) {
      const auto& agent = entry.state->config().agent;
      if (!p.health_check_configured && agent.port == 0) continue;
      targets.push_back({entry.state.get(), entry.endpoint,
                         p.health_check_configured ? &p.health_check : nullptr,
                         agent.port ? &agent : nullptr});
    }
  }
  client::HealthChecker health(cores.front()->io(), *cfg, std::move(targets));
  health.start();

  // The admin API also runs on the first core: it reads shared state only.
  AdminModel admin_model(shared);
  std::unique_ptr<admin::AdminServer> admin_server;
  if (cfg->admin) {
    std::string token;
    if (!cfg->admin->token_file.empty()) {
      std::ifstream in(cfg->admin->token_file);
      std::stringstream ss;
      ss << in.rdbuf();
      token = ss.str();
      while (!token.empty() && (token.back() == '\n' || token.back() == '\r')) token.pop_back();
      if (!in || token.empty()) {
        spdlog::critical("admin.token_file {}: cannot read a token from it",
                         cfg->admin->token_file);
        return 1;
      }
    }
    admin_server = std::make_unique<admin::AdminServer>(cores.front()->io(), *cfg->admin,
                                                        std::move(token), admin_model);
    try {
      admin_server->start();
    } catch (const boost::system::system_error& e) {
      spdlog::critical("cannot listen for the admin API on {}: {}", cfg->admin->listen.str(),
                       e.code().message());
      return 1;
    }
  }

  // SMTP listeners open last: a start-up that fails (admin port taken)
  // must not have accepted mail first.
  for (auto& c : cores) {
    try {
      c->listen();
    } catch (const std::exception& e) {
      spdlog::critical("cannot listen for SMTP: {}", e.what());
      return 1;
    }
  }

  asio::io_context signals_io;
  asio::signal_set signals(signals_io, SIGTERM, SIGINT, SIGHUP);
  asio::steady_timer force_timer(signals_io), stop_timer(signals_io);
  bool stopping = false;
  std::function<void(error_code, int)> on_signal = [&](error_code ec, int sig) {
    if (ec) return;
    if (sig == SIGHUP) {
      log::Record("reload_ignored")
          .add("reason", "configuration reload is not supported by this build; restart to apply")
          .emit(spdlog::level::warn);
    } else if (!stopping) {
      stopping = true;
      log::Record("shutdown")
          .add("signal", sig == SIGTERM ? "TERM" : "INT")
          .add("deadline_ms", static_cast<long long>(cfg->timeouts.shutdown.count()))
          .emit();
      health.stop();
      if (admin_server) asio::post(cores.front()->io(), [&] { admin_server->stop(); });
      for (auto& c : cores) c->begin_shutdown();
      force_timer.expires_after(cfg->timeouts.shutdown);
      force_timer.async_wait([&](error_code e) {
        if (e) return;
        for (auto& c : cores) c->force_close();
        stop_timer.expires_after(kForcedCloseGrace);
        stop_timer.async_wait([&](error_code e2) {
          if (e2) return;
          for (auto& c : cores) c->io().stop();
        });
      });
    } else {
      // A second signal: the operator wants out now.
      for (auto& c : cores) c->io().stop();
    }
    signals.async_wait(on_signal);
  };
  signals.async_wait(on_signal);

  log::Record rec("started");
  rec.add("workers", workers);
  for (const auto& l : cfg->listeners)
    rec.add("listener", l.name + "=" + l.listen.str() + "/" + config::to_string(l.role));
  rec.emit();

  std::thread signal_thread([&] { signals_io.run(); });
  std::vector<std::thread> threads;
  for (auto& c : cores) threads.emplace_back([&c] { c->run(); });
  for (auto& t : threads) t.join();
  asio::post(signals_io, [&] {
    signals.cancel();
    force_timer.cancel();
    stop_timer.cancel();
  });
  signal_thread.join();
  log::Record("stopped").emit();
  return 0;
}

}  // namespace smtplb::app
