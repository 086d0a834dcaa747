#include "runtime/runtime.hpp"

#include <sys/resource.h>

#include <fstream>
#include <random>
#include <sstream>
#include <thread>

#include "admin/admin_server.hpp"
#include "app/admin_model.hpp"
#include "log/log.hpp"
#include "net/clock.hpp"
#include "runtime/core.hpp"
#include "runtime/generation_builder.hpp"
#include "runtime/reloader.hpp"

namespace smtplb::runtime {

namespace {

// After the forced close, how long the cores get to write their 421s.
constexpr std::chrono::seconds kForcedCloseGrace{2};

// Each client connection costs a descriptor; backend sessions are pooled
// and shared, and a few hundred more cover them, the listeners and logs.
// The soft limit is raised to the hard one (Debian's soft default, 1024,
// would cap smtplb near 500 clients), and a limit below what
// limits.max_connections needs is said out loud rather than found at 3am.
void raise_descriptor_limit(const config::Config& cfg) {
  rlimit rl{};
  if (getrlimit(RLIMIT_NOFILE, &rl) != 0) return;
  if (rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
    getrlimit(RLIMIT_NOFILE, &rl);
  }
  const rlim_t needed = static_cast<rlim_t>(cfg.limits.max_connections) + 256;
  if (rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < needed)
    log::Record("descriptor_limit")
        .add("limit", static_cast<long long>(rl.rlim_cur))
        .add("needed", static_cast<long long>(needed))
        .add("hint", "raise LimitNOFILE (systemd) or ulimit -n, or lower limits.max_connections")
        .emit(spdlog::level::warn);
}

}  // namespace

int run(std::shared_ptr<const config::Config> cfg) {
  raise_descriptor_limit(*cfg);
  runtime::Shared shared;
  shared.id_base = std::random_device{}();
  shared.verifier = std::make_unique<auth::PasswordVerifier>();
  {
    // The thresholds of the configuration smtplb started with (a reload
    // keeps the throttle and its state).
    auth::ThrottlePolicy policy;
    policy.ipv6_prefix_bits = cfg->limits.ipv6_prefix;
    shared.limiter.set_ipv6_prefix(cfg->limits.ipv6_prefix);
    if (cfg->auth) {
      policy.free_failures = cfg->auth->delay_after;
      policy.refuse_after = cfg->auth->max_failures;
      policy.refusal = std::chrono::duration_cast<std::chrono::seconds>(cfg->auth->lockout);
    }
    shared.auth_throttle = std::make_unique<auth::AuthThrottle>(policy);
  }
  {
    std::vector<std::string> errors;
    shared.generation = build_generation(cfg, nullptr, *shared.metrics, errors);
    if (!shared.generation) {
      for (const auto& e : errors) spdlog::critical("{}", e);
      return 1;
    }
    shared.shutdown_ms =
        std::chrono::duration_cast<std::chrono::milliseconds>(cfg->timeouts.shutdown).count();
  }

  int workers = cfg->workers > 0
                    ? cfg->workers
                    : static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  std::vector<std::unique_ptr<runtime::Core>> cores;
  try {
    for (int i = 0; i < workers; ++i) cores.push_back(std::make_unique<runtime::Core>(i, shared));
  } catch (const std::exception& e) {
    spdlog::critical("{}", e.what());  // the DNS resolver of an `mx:` pool
    return 1;
  }
  // Active health checks, reloads and the admin API run on the first core;
  // checks cost timers, not threads.
  std::vector<runtime::Core*> core_list;
  for (auto& c : cores) core_list.push_back(c.get());
  Reloader reloader(shared, core_list);
  reloader.start();
  app::AdminModel admin_model(shared, [&reloader] { return reloader.reload("api"); });
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
  Timer force_timer(signals_io), stop_timer(signals_io);
  bool stopping = false;
  std::function<void(error_code, int)> on_signal = [&](error_code ec, int sig) {
    if (ec) return;
    if (sig == SIGHUP) {
      if (!stopping) asio::post(cores.front()->io(), [&reloader] { reloader.reload("SIGHUP"); });
    } else if (!stopping) {
      stopping = true;
      log::Record("shutdown")
          .add("signal", sig == SIGTERM ? "TERM" : "INT")
          .add("deadline_ms", static_cast<long long>(shared.shutdown_ms.load()))
          .emit();
      asio::post(cores.front()->io(), [&reloader] { reloader.stop(); });
      if (admin_server) asio::post(cores.front()->io(), [&] { admin_server->stop(); });
      for (auto& c : cores) c->begin_shutdown();
      force_timer.expires_after(std::chrono::milliseconds(shared.shutdown_ms.load()));
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

}  // namespace smtplb::runtime
