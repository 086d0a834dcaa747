// main.cpp: smtplb-agent, the load agent an operator runs on each MTA host.
//
// It answers HAProxy's agent check (smtplb's `agent:` backends, or an
// HAProxy `agent-check`) with the host's capacity left and ready/drain,
// computed from CPU use, memory use and optionally the MTA's queue length
// (src/agent/agent_reply.hpp has the reply format and the formula).
//
//   smtplb-agent [--listen 0.0.0.0:9777] [--proc-root /proc] [--sample-interval 1s]
//                [--queue-command "postqueue -j"] [--queue-interval 10s] [--queue-timeout 5s]
//                [--queue-max 10000] [--drain-cpu 95] [--drain-memory 95] [--drain-queue 50000]
//                [--log-level info]
//
// The port is bound at once (a taken address exits 1 at once) but opens
// only when the first sample is in, so no balancer is ever answered with a
// guess.  Exit status: 0 after SIGTERM or SIGINT (and for --help,
// --version); 1 when it cannot listen; 2 for a bad flag.  Logs go to
// stderr, one key=value line per event.
#include <signal.h>
#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/spdlog.h>

#include <CLI/CLI.hpp>
#include <boost/asio.hpp>
#include <iostream>
#include <optional>

#include "agent/agent_options.hpp"
#include "agent/agent_server.hpp"
#include "agent/sampler.hpp"

#ifndef SMTPLB_VERSION
#define SMTPLB_VERSION "0.0.0"
#endif

namespace {

using namespace smtplb::agent;

// A CLI11 check that the value parses as a duration of at least 1ms.
CLI::Validator duration_check() {
  return CLI::Validator(
      [](std::string& s) -> std::string {
        auto d = parse_duration(s);
        if (!d || d->count() <= 0) return "not a duration such as 500ms, 1s, 2m or 1h: " + s;
        return {};
      },
      "DURATION");
}

void init_logging(const std::string& level) {
  auto logger = spdlog::stderr_logger_mt("smtplb-agent");
  logger->set_pattern("%Y-%m-%dT%H:%M:%S.%e%z %l %v");
  logger->set_level(spdlog::level::from_str(level));
  logger->flush_on(spdlog::level::trace);
  spdlog::set_default_logger(logger);
}

// Fills `opts` and `log_level` from the command line.  Returns the exit
// status when the agent should not run: 0 after --help or --version, 2 for
// a bad flag (the systemd unit does not restart on 2:
// RestartPreventExitStatus=2).
std::optional<int> parse_command_line(int argc, char** argv, AgentOptions& opts,
                                      std::string& log_level) {
  std::string sample_interval = "1s", queue_interval = "10s", queue_timeout = "5s";
  CLI::App app{
      "smtplb-agent: reports this MTA host's load to smtplb (HAProxy agent-check protocol)"};
  app.set_version_flag("--version", std::string("smtplb-agent ") + SMTPLB_VERSION);
  app.add_option("--listen", opts.listen, "address:port to answer on ([v6]:port for IPv6)")
      ->capture_default_str();
  app.add_option("--proc-root", opts.proc_root, "where stat and meminfo are read")
      ->capture_default_str();
  app.add_option("--sample-interval", sample_interval, "how often CPU and memory are sampled")
      ->check(duration_check())
      ->capture_default_str();
  app.add_option("--queue-command", opts.queue_command,
                 "prints the MTA's queue length: an integer, or `postqueue -j` lines "
                 "(run by /bin/sh -c; none by default)");
  app.add_option("--queue-interval", queue_interval, "how often the queue command runs")
      ->check(duration_check())
      ->capture_default_str();
  app.add_option("--queue-timeout", queue_timeout, "the queue command is killed after this")
      ->check(duration_check())
      ->capture_default_str();
  app.add_option("--queue-max", opts.thresholds.queue_max,
                 "queue length that counts as fully loaded (100%)")
      ->check(CLI::Range(std::uint64_t{1}, std::uint64_t{1'000'000'000}))
      ->capture_default_str();
  app.add_option("--drain-cpu", opts.thresholds.drain_cpu, "drain at this busy CPU % (0 = never)")
      ->check(CLI::Range(0, 100))
      ->capture_default_str();
  app.add_option("--drain-memory", opts.thresholds.drain_memory,
                 "drain at this used memory % (0 = never)")
      ->check(CLI::Range(0, 100))
      ->capture_default_str();
  app.add_option("--drain-queue", opts.thresholds.drain_queue,
                 "drain at this many queued messages (0 = never)")
      ->capture_default_str();
  app.add_option("--log-level", log_level, "trace, debug, info, warn, error")
      ->check(CLI::IsMember({"trace", "debug", "info", "warn", "error"}))
      ->capture_default_str();
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : 2;
  }
  opts.sample_interval = *parse_duration(sample_interval);
  opts.queue_interval = *parse_duration(queue_interval);
  opts.queue_timeout = *parse_duration(queue_timeout);
  return std::nullopt;
}

void log_start(const AgentOptions& opts, const tcp::endpoint& ep) {
  spdlog::info(
      "event=start version={} listen={}:{} proc_root=\"{}\" sample_interval={}ms "
      "queue_command=\"{}\" queue_interval={}ms queue_timeout={}ms queue_max={} drain_cpu={} "
      "drain_memory={} drain_queue={}",
      SMTPLB_VERSION, ep.address().to_string(), ep.port(), opts.proc_root,
      opts.sample_interval.count(), opts.queue_command, opts.queue_interval.count(),
      opts.queue_timeout.count(), opts.thresholds.queue_max, opts.thresholds.drain_cpu,
      opts.thresholds.drain_memory, opts.thresholds.drain_queue);
}

}  // namespace

int main(int argc, char** argv) {
  AgentOptions opts;
  std::string log_level = "info";
  if (auto exit_status = parse_command_line(argc, argv, opts, log_level)) return *exit_status;
  init_logging(log_level);

  auto listen = parse_listen(opts.listen);
  boost::system::error_code ec;
  auto address =
      listen ? boost::asio::ip::make_address(listen->host, ec) : boost::asio::ip::address();
  if (!listen || ec) {
    std::cerr << "--listen: not an IP address and port: " << opts.listen << "\n";
    return 2;
  }

  boost::asio::io_context io(1);
  // First: a signal from now on stops the agent cleanly, even while the
  // first sample (and its queue command) is still running.
  boost::asio::signal_set signals(io, SIGTERM, SIGINT);
  signals.async_wait([&](const boost::system::error_code& sec, int sig) {
    if (sec) return;
    spdlog::info("event=stop signal={}", sig == SIGTERM ? "TERM" : "INT");
    io.stop();
  });

  // Bound now, so a taken address fails at once; listening only once the
  // first reply is known (a connection before that would be refused, not
  // answered with a guess).
  std::unique_ptr<AgentServer> server;
  try {
    server = std::make_unique<AgentServer>(io, tcp::endpoint(address, listen->port));
  } catch (const boost::system::system_error& e) {
    spdlog::error("event=listen_failed address={} error=\"{}\"", opts.listen, e.code().message());
    return 1;
  }

  int status = 0;
  bool listening = false;
  auto on_line = [&](std::string line) {
    server->set_reply(std::move(line));
    if (listening) return;
    listening = true;
    if (auto lec = server->start()) {
      spdlog::error("event=listen_failed address={} error=\"{}\"", opts.listen, lec.message());
      status = 1;
      io.stop();
      return;
    }
    log_start(opts, server->local_endpoint());
  };
  // The sampler's thread hands each line to the event loop's thread.
  Sampler sampler(opts, [&io, &on_line](std::string line) {
    boost::asio::post(io,
                      [&on_line, line = std::move(line)]() mutable { on_line(std::move(line)); });
  });
  sampler.start();
  io.run();
  server->stop();
  sampler.stop();  // kills a queue command still running; before `io` goes: it posts there
  return status;
}
