// queue_command_test.cpp: running the queue command (src/agent/queue_command.hpp)
// for real, through /bin/sh: its output counted, its failures reported, and
// every way it can hang cut short.
#include "agent/queue_command.hpp"

#include <gtest/gtest.h>
#include <signal.h>

#include <chrono>
#include <thread>
#include <vector>

namespace smtplb::agent {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

TEST(QueueCommand, Outputs) {
  struct Case {
    const char* command;
    std::optional<std::uint64_t> want;
    const char* error;  // the start of the error, when want is nullopt
  };
  const std::vector<Case> cases = {
      {"echo 12", 12, ""},
      {"printf '{\"queue_id\": \"A\"}\\n{\"queue_id\": \"B\"}\\n'", 2, ""},
      {"true", 0, ""},                     // postqueue -j on an empty queue prints nothing
      {"echo 12; echo oops >&2", 12, ""},  // stderr is not counted
      {"exit 69", std::nullopt, "exit status 69"},
      {"echo 12; exit 1", std::nullopt, "exit status 1"},
      {"echo twelve", std::nullopt, "output is neither"},
      {"kill -9 $$", std::nullopt, "killed by signal 9"},
      {"/nonexistent/postqueue -j", std::nullopt, "exit status 127"},
      // The agent's own stdin is not the command's.
      {"cat", 0, ""},
  };
  for (const auto& c : cases) {
    QueueResult r = run_queue_command(c.command, 5s);
    EXPECT_EQ(r.length, c.want) << c.command << ": " << r.error;
    EXPECT_EQ(r.error.rfind(c.error, 0), 0u) << c.command << ": got error \"" << r.error << "\"";
  }
}

TEST(QueueCommand, ManyLinesAreCountedWithoutKeepingThem) {
  // 100000 postqueue -j lines, about 10 MB through the pipe.
  QueueResult r = run_queue_command(
      "i=0; line='{\"queue_id\": \"4Dq3yH0lMRz4Kq\", \"recipients\": [{\"address\": "
      "\"someone@example.net\", \"delay_reason\": \"connect to mx.example.net timed out\"}]}'; "
      "yes \"$line\" | head -n 100000",
      30s);
  EXPECT_EQ(r.length, 100000u) << r.error;
}

TEST(QueueCommand, HangingCommandIsKilledAtTheTimeout) {
  auto t0 = Clock::now();
  QueueResult r = run_queue_command("sleep 30", 200ms);
  auto took = Clock::now() - t0;
  EXPECT_FALSE(r.length);
  EXPECT_EQ(r.error, "timed out after 200ms");
  EXPECT_LT(took, 3s);
}

TEST(QueueCommand, GrandchildHoldingTheOutputIsKilledToo) {
  // The shell exits at once, but what it started keeps stdout open: the
  // whole process group goes at the timeout, not just the shell.
  auto t0 = Clock::now();
  QueueResult r = run_queue_command("echo 5; sleep 30 & exit 0", 300ms);
  EXPECT_FALSE(r.length);
  EXPECT_EQ(r.error, "timed out after 300ms");
  EXPECT_LT(Clock::now() - t0, 3s);
}

TEST(QueueCommand, OutputThatNeverEndsIsCutAtTheTimeout) {
  QueueResult r = run_queue_command("while :; do echo 1; done", 300ms);
  EXPECT_FALSE(r.length);
  EXPECT_FALSE(r.error.empty());
}

TEST(QueueCommand, StopKillsARunningCommand) {
  std::stop_source stop;
  std::thread stopper([&] {
    std::this_thread::sleep_for(100ms);  // let the command start
    stop.request_stop();
  });
  auto t0 = Clock::now();
  QueueResult r = run_queue_command("sleep 30", 20s, stop.get_token());
  stopper.join();
  EXPECT_FALSE(r.length);
  EXPECT_EQ(r.error, "stopped");
  EXPECT_LT(Clock::now() - t0, 5s);
}

TEST(QueueCommand, SignalsTheAgentIgnoresAreTheCommandsDefault) {
  // An ignored signal survives exec; the command must get SIGPIPE at its
  // default (a `postqueue -j | head` would otherwise never see it).  The
  // command prints its own SIGPIPE bit of SigIgn (proc(5); SIGPIPE is 13).
  struct sigaction ign {};
  struct sigaction old {};
  ign.sa_handler = SIG_IGN;
  sigaction(SIGPIPE, &ign, &old);
  QueueResult r = run_queue_command(
      "ign=$(sed -n 's/^SigIgn:[[:space:]]*//p' /proc/$$/status); echo $(( (0x$ign >> 12) & 1 ))",
      5s);
  sigaction(SIGPIPE, &old, nullptr);
  EXPECT_EQ(r.length, 0u) << r.error;
}

}  // namespace
}  // namespace smtplb::agent
