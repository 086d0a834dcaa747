// queue_command.hpp: runs the operator's queue command (`postqueue -j`,
// `exim -bpc`) and counts the queue in its output.
//
// The command runs as `/bin/sh -c COMMAND` in a process group of its own,
// stdin from /dev/null, stdout into a pipe read as it arrives
// (QueueOutputParser keeps no more than a line), stderr inherited (so the
// MTA's complaint lands in the agent's journal).  It is bounded three ways:
// after `timeout`, after kMaxQueueOutput bytes of output, and when `stop` is
// requested, the whole process group gets SIGKILL.  The child is reaped in
// every case, and never before the last kill: a process group id cannot be
// reused while its leader is an unreaped zombie, so a late kill can never
// reach a stranger.
//
// Blocking: call it from the sampler's thread, never from the event loop.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <stop_token>
#include <string>

namespace smtplb::agent {

struct QueueResult {
  std::optional<std::uint64_t> length;  // set on success
  std::string error;                    // why not, for the log; "" on success
};

QueueResult run_queue_command(const std::string& command, std::chrono::milliseconds timeout,
                              std::stop_token stop = {});

}  // namespace smtplb::agent
