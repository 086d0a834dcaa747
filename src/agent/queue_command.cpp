#include "agent/queue_command.hpp"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstring>
#include <thread>

#include "agent/agent_options.hpp"
#include "agent/load_sampler.hpp"

extern char** environ;

namespace smtplb::agent {

namespace {

using Clock = std::chrono::steady_clock;

// How often the exit of a command that closed its output is looked for.
constexpr auto kExitPollStep = std::chrono::milliseconds(5);

std::string errno_text(const char* what, int err) {
  return std::string(what) + ": " + std::strerror(err);
}

int remaining_ms(Clock::time_point deadline) {
  auto left = std::chrono::ceil<std::chrono::milliseconds>(deadline - Clock::now()).count();
  return left > 0 ? static_cast<int>(left) : 0;
}

// Reads the command's output into `parser` until EOF; "" then, else why it
// stopped early.
std::string read_output(int fd, QueueOutputParser& parser, Clock::time_point deadline,
                        std::chrono::milliseconds timeout) {
  std::array<char, 64 * 1024> buf;
  std::uint64_t total = 0;
  for (;;) {
    pollfd p{fd, POLLIN, 0};
    int n = ::poll(&p, 1, remaining_ms(deadline));
    if (n < 0) {
      if (errno == EINTR) continue;
      return errno_text("poll", errno);
    }
    if (n == 0) return "timed out after " + std::to_string(timeout.count()) + "ms";
    ssize_t got = ::read(fd, buf.data(), buf.size());
    if (got < 0) {
      if (errno == EINTR || errno == EAGAIN) continue;
      return errno_text("read", errno);
    }
    if (got == 0) return {};
    total += static_cast<std::uint64_t>(got);
    if (total > kMaxQueueOutput) return "output over " + std::to_string(kMaxQueueOutput) + " bytes";
    parser.feed(std::string_view(buf.data(), static_cast<std::size_t>(got)));
  }
}

// Waits until the child has exited, without reaping it (WNOWAIT keeps its
// pid, and so its process group id, from being reused).
std::string wait_exit(pid_t pid, Clock::time_point deadline, std::chrono::milliseconds timeout,
                      const std::stop_token& stop) {
  for (;;) {
    siginfo_t info{};
    if (::waitid(P_PID, static_cast<id_t>(pid), &info, WEXITED | WNOHANG | WNOWAIT) < 0) {
      if (errno == EINTR) continue;
      return errno_text("waitid", errno);
    }
    if (info.si_pid == pid) return {};
    if (stop.stop_requested()) return "stopped";
    if (Clock::now() >= deadline)
      return "timed out after " + std::to_string(timeout.count()) + "ms";
    // The output is closed and the exit is due any moment: a short wait on
    // the sampler's own thread.
    std::this_thread::sleep_for(kExitPollStep);
  }
}

// posix_spawn's attributes and file actions, destroyed on every path.
struct SpawnSetup {
  posix_spawn_file_actions_t actions;
  posix_spawnattr_t attr;
  SpawnSetup() {
    posix_spawn_file_actions_init(&actions);
    posix_spawnattr_init(&attr);
  }
  ~SpawnSetup() {
    posix_spawn_file_actions_destroy(&actions);
    posix_spawnattr_destroy(&attr);
  }
  SpawnSetup(const SpawnSetup&) = delete;
  SpawnSetup& operator=(const SpawnSetup&) = delete;
};

}  // namespace

QueueResult run_queue_command(const std::string& command, std::chrono::milliseconds timeout,
                              std::stop_token stop) {
  const auto deadline = Clock::now() + timeout;
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) return {std::nullopt, errno_text("pipe", errno)};

  pid_t pid = 0;
  int rc;
  {
    SpawnSetup s;
    posix_spawn_file_actions_addopen(&s.actions, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_adddup2(&s.actions, fds[1], 1);  // dup2 clears O_CLOEXEC
    // Its own process group, so a kill reaches what the shell started too;
    // no signal blocked or ignored, whatever this process does with them.
    posix_spawnattr_setflags(
        &s.attr, POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
    posix_spawnattr_setpgroup(&s.attr, 0);
    sigset_t none;
    sigemptyset(&none);
    posix_spawnattr_setsigmask(&s.attr, &none);
    sigset_t defaults;
    sigemptyset(&defaults);
    for (int sig : {SIGPIPE, SIGHUP, SIGINT, SIGQUIT, SIGTERM}) sigaddset(&defaults, sig);
    posix_spawnattr_setsigdefault(&s.attr, &defaults);
    const char* argv[] = {"sh", "-c", command.c_str(), nullptr};
    rc = ::posix_spawn(&pid, "/bin/sh", &s.actions, &s.attr, const_cast<char* const*>(argv),
                       environ);
  }
  ::close(fds[1]);
  if (rc != 0) {
    ::close(fds[0]);
    return {std::nullopt, errno_text("spawn /bin/sh", rc)};
  }

  QueueOutputParser parser;
  std::string error;
  {
    std::stop_callback on_stop(stop, [pid] { ::kill(-pid, SIGKILL); });
    error = read_output(fds[0], parser, deadline, timeout);
    if (error.empty()) error = wait_exit(pid, deadline, timeout, stop);
    if (!error.empty()) ::kill(-pid, SIGKILL);
  }  // no kill after this point: the child may be reaped
  ::close(fds[0]);
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (stop.stop_requested()) return {std::nullopt, "stopped"};
  if (!error.empty()) return {std::nullopt, error};
  if (WIFSIGNALED(status))
    return {std::nullopt, "killed by signal " + std::to_string(WTERMSIG(status))};
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
    return {std::nullopt, "exit status " + std::to_string(WEXITSTATUS(status))};
  auto length = parser.finish();
  if (!length) return {std::nullopt, "output is neither one integer nor postqueue -j lines"};
  return {length, {}};
}

}  // namespace smtplb::agent
