// agent_options.hpp: smtplb-agent's settings, each with its default, and
// the two value syntaxes its flags use.  Pure.
//
//   smtplb-agent --listen 0.0.0.0:9777 --proc-root /proc --sample-interval 1s
//                --queue-command "postqueue -j" --queue-interval 10s
//                --queue-timeout 5s --queue-max 10000
//                --drain-cpu 95 --drain-memory 95 --drain-queue 50000
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "agent/agent_reply.hpp"

namespace smtplb::agent {

using Duration = std::chrono::milliseconds;

struct AgentOptions {
  // Where the balancer connects (its `agent: { port: ... }`, HAProxy's
  // agent-port); 9777 is the port DESIGN.md's example uses.
  std::string listen = "0.0.0.0:9777";
  // Where `stat` and `meminfo` are read from: /proc, or a directory of fixed
  // files in tests.
  std::string proc_root = "/proc";
  // CPU and memory are sampled this often; the CPU figure is the busy share
  // of the last interval.
  Duration sample_interval = std::chrono::seconds(1);
  // Run by /bin/sh -c; empty = no queue figure.
  std::string queue_command;
  // `postqueue -j` walks the whole queue: run it less often than /proc is
  // read.  The last figure is reported in between.
  Duration queue_interval = std::chrono::seconds(10);
  // The command is killed (its whole process group) after this long, and
  // the queue figure is left out until a run succeeds.
  Duration queue_timeout = std::chrono::seconds(5);
  Thresholds thresholds;
};

// Bounds of what the agent does per connection and per command: not for
// operators to tune.
// Writing the reply and waiting for the balancer to close, per connection.
inline constexpr Duration kConnectionDeadline = std::chrono::seconds(1);
// Connections served at once; more are closed at accept.
inline constexpr std::size_t kMaxConnections = 256;
// Bytes of the balancer's `agent-send` text read (and discarded) per connection.
inline constexpr std::size_t kMaxDiscard = 4096;
// Output of the queue command read before it is killed: `postqueue -j`
// prints a few hundred bytes per message, so this covers ~100000 messages.
inline constexpr std::uint64_t kMaxQueueOutput = 64ull << 20;
// Bytes of a /proc file read; the fields used are near the top.
inline constexpr std::size_t kMaxProcFile = 64 << 10;

// "500ms", "1s", "2m", "1h": a whole number and its unit.
std::optional<Duration> parse_duration(std::string_view s);

struct ListenAddress {
  std::string host;  // an IP literal, without brackets
  std::uint16_t port = 0;
  bool operator==(const ListenAddress&) const = default;
};
// "0.0.0.0:9777", "[::]:9777", "127.0.0.1:0".  The host is not checked here
// (the caller parses it as an address); the port must be 0..65535.
std::optional<ListenAddress> parse_listen(std::string_view s);

}  // namespace smtplb::agent
