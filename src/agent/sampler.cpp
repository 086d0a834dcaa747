#include "agent/sampler.hpp"

#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <cerrno>
#include <condition_variable>
#include <cstring>
#include <mutex>

#include "agent/queue_command.hpp"

namespace smtplb::agent {

namespace {

// Up to kMaxProcFile bytes of a file, cut back to whole lines if the bound
// was reached; nullopt (and `error`) if it cannot be read.
std::optional<std::string> read_proc_file(const std::string& path, std::string& error) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    error = std::strerror(errno);
    return std::nullopt;
  }
  std::string text(kMaxProcFile, '\0');
  std::size_t have = 0;
  while (have < text.size()) {
    ssize_t n = ::read(fd, text.data() + have, text.size() - have);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      error = std::strerror(errno);
      ::close(fd);
      return std::nullopt;
    }
    if (n == 0) break;
    have += static_cast<std::size_t>(n);
  }
  ::close(fd);
  if (have == text.size()) {
    std::size_t nl = text.rfind('\n');
    have = nl == std::string::npos ? 0 : nl + 1;
  }
  text.resize(have);
  return text;
}

// A log value in double quotes: our own text, but operators' commands and
// strerror() may hold blanks.
std::string quoted(std::string_view s) {
  std::string out = "\"";
  for (char c : s) {
    if (c == '"' || c == '\\') out += '\\';
    if (c == '\n')
      out += "\\n";
    else
      out += c;
  }
  return out + "\"";
}

std::string_view state_name(const Decision& d) {
  if (!d.capacity) return "unknown";
  return d.drain ? "drain" : "ready";
}

}  // namespace

std::optional<int> Sampler::sample_cpu(std::string& error) {
  const std::string path = opts_.proc_root + "/stat";
  auto text = read_proc_file(path, error);
  std::optional<CpuTimes> now;
  if (text) {
    now = parse_proc_stat(*text);
    if (!now) error = "no cpu line with at least four numbers";
  }
  // last_cpu_ outlives a failure: if no tick passes between the last good
  // sample and the next, the figure is still the last one measured.
  if (!now) return std::nullopt;
  if (auto busy = cpu_busy_percent(prev_cpu_.value_or(CpuTimes{}), *now)) last_cpu_ = busy;
  prev_cpu_ = *now;
  return last_cpu_;
}

std::optional<int> Sampler::sample_memory(std::string& error) {
  const std::string path = opts_.proc_root + "/meminfo";
  auto text = read_proc_file(path, error);
  if (!text) return std::nullopt;
  auto mem = parse_meminfo(*text);
  if (!mem) {
    error = "no MemTotal, or neither MemAvailable nor MemFree+Buffers+Cached";
    return std::nullopt;
  }
  return memory_used_percent(*mem);
}

void Sampler::sample_queue(std::stop_token stop) {
  if (opts_.queue_command.empty()) return;
  if (next_queue_run_ && Clock::now() < *next_queue_run_) return;
  QueueResult r = run_queue_command(opts_.queue_command, opts_.queue_timeout, stop);
  if (stop.stop_requested()) return;
  // From the end of this run: a slow command never runs back to back.
  next_queue_run_ = Clock::now() + opts_.queue_interval;
  queue_ = r.length;
  queue_error_ = r.error;
  spdlog::debug("event=queue_command length={} error={}",
                r.length ? std::to_string(*r.length) : "-", quoted(r.error));
}

std::string Sampler::sample(std::stop_token stop) {
  std::string stat_error, meminfo_error;
  Figures f;
  f.cpu = sample_cpu(stat_error);
  if (!f.cpu && !stat_error.empty()) f.problems |= kProblemStat;
  f.memory = sample_memory(meminfo_error);
  if (!f.memory) f.problems |= kProblemMeminfo;
  sample_queue(stop);
  f.queue = queue_;
  if (!queue_error_.empty()) f.problems |= kProblemQueue;

  Decision d = decide(f, opts_.thresholds);
  std::string line = format_reply(f, d);
  log_changes(f, d, line, stat_error, meminfo_error);
  return line;
}

void Sampler::log_changes(const Figures& f, const Decision& d, const std::string& line,
                          const std::string& stat_error, const std::string& meminfo_error) {
  std::string_view reply(line.data(), line.size() - 1);  // without its LF
  struct Source {
    unsigned bit;
    const char* name;
    std::string what;
    const std::string& error;
  };
  const Source sources[] = {
      {kProblemStat, "stat", opts_.proc_root + "/stat", stat_error},
      {kProblemMeminfo, "meminfo", opts_.proc_root + "/meminfo", meminfo_error},
      {kProblemQueue, "queue", opts_.queue_command, queue_error_},
  };
  for (const auto& s : sources) {
    bool now = f.problems & s.bit, before = logged_problems_ & s.bit;
    if (now && !before)
      spdlog::warn("event=source_failed source={} from={} error={} reply={}", s.name,
                   quoted(s.what), quoted(s.error), quoted(reply));
    else if (!now && before)
      spdlog::info("event=source_recovered source={} reply={}", s.name, quoted(reply));
  }
  logged_problems_ = f.problems;

  if (!logged_decision_ || state_name(*logged_decision_) != state_name(d))
    spdlog::info("event=state old={} new={} reply={}",
                 logged_decision_ ? state_name(*logged_decision_) : "none", state_name(d),
                 quoted(reply));
  logged_decision_ = d;
  spdlog::debug("event=sample reply={}", quoted(reply));
}

void Sampler::run(std::stop_token stop) {
  std::mutex m;
  std::condition_variable_any cv;  // only ever woken by `stop`
  auto next = Clock::now();        // the first sample at once: the listener waits for it
  for (;;) {
    {
      std::unique_lock lock(m);
      cv.wait_until(lock, stop, next, [] { return false; });
    }
    if (stop.stop_requested()) return;
    std::string line = sample(stop);
    if (stop.stop_requested()) return;
    publish_(std::move(line));
    // On the interval's grid; after a slow queue command, from now.
    next += opts_.sample_interval;
    if (next < Clock::now()) next = Clock::now() + opts_.sample_interval;
  }
}

void Sampler::start() {
  // Signals are the event loop's (asio::signal_set): the sampling thread
  // never takes them, so its blocking calls are not interrupted.
  sigset_t block, old;
  sigemptyset(&block);
  for (int sig : {SIGTERM, SIGINT, SIGHUP}) sigaddset(&block, sig);
  pthread_sigmask(SIG_BLOCK, &block, &old);
  thread_ = std::jthread([this](std::stop_token st) { run(st); });
  pthread_sigmask(SIG_SETMASK, &old, nullptr);
}

void Sampler::stop() {
  if (!thread_.joinable()) return;
  thread_.request_stop();
  thread_.join();
}

}  // namespace smtplb::agent
