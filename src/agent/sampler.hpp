// sampler.hpp: smtplb-agent's background sampling.
//
// At once, then every `sample_interval`, a thread of its own reads
// PROC_ROOT/stat and PROC_ROOT/meminfo, every `queue_interval` it runs the
// queue command (which may take up to `queue_timeout`), and it hands the
// resulting reply line to `publish`.  The event loop never waits for any of this: it answers
// with the last line it was given (src/agent/agent_server.hpp).
//
// The CPU figure of the first sample is the average since boot (the delta
// from zero ticks); every later one covers the time since the previous
// sample.  A source that fails is left out of the reply and named in its
// `error=` field (src/agent/agent_reply.hpp); the log says so once when it
// starts failing and once when it recovers, and once per change between
// ready and drain.
#pragma once

#include <chrono>
#include <functional>
#include <optional>
#include <stop_token>
#include <string>
#include <thread>

#include "agent/agent_options.hpp"
#include "agent/agent_reply.hpp"
#include "agent/load_sampler.hpp"

namespace smtplb::agent {

class Sampler {
 public:
  using Publish = std::function<void(std::string line)>;

  Sampler(AgentOptions opts, Publish publish)
      : opts_(std::move(opts)), publish_(std::move(publish)) {}
  ~Sampler() { stop(); }
  Sampler(const Sampler&) = delete;
  Sampler& operator=(const Sampler&) = delete;

  // Samples at once, then every interval, on a thread of its own,
  // publishing each line.
  void start();
  // Stops and joins the thread; a queue command running is killed.
  void stop();

 private:
  using Clock = std::chrono::steady_clock;

  void run(std::stop_token stop);
  // One sample: the reply line.
  std::string sample(std::stop_token stop);
  std::optional<int> sample_cpu(std::string& error);
  std::optional<int> sample_memory(std::string& error);
  void sample_queue(std::stop_token stop);
  void log_changes(const Figures& f, const Decision& d, const std::string& line,
                   const std::string& stat_error, const std::string& meminfo_error);

  const AgentOptions opts_;
  const Publish publish_;

  // Only the sampling thread touches these.
  std::optional<CpuTimes> prev_cpu_;  // the last good /proc/stat
  std::optional<int> last_cpu_;       // kept while no tick passes
  std::optional<Clock::time_point> next_queue_run_;
  std::optional<std::uint64_t> queue_;
  std::string queue_error_;  // "" while the last run succeeded
  unsigned logged_problems_ = 0;
  std::optional<Decision> logged_decision_;

  std::jthread thread_;
};

}  // namespace smtplb::agent
