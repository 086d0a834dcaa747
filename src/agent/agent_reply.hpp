// agent_reply.hpp: the line smtplb-agent answers, from the host's figures.
//
// The reply is one line in HAProxy's agent-check protocol (HAProxy 2.6
// configuration.txt, "agent-check"), so the same agent serves smtplb's
// agent poller and an HAProxy in front of the same MTAs:
//
//   up ready 63% # cpu=37 mem=21 queue=12
//
//   up          always: the agent runs.  Whether the MTA answers SMTP is the
//               balancer's health check's call; HAProxy's "up" only restores
//               a server its health checks also find up.
//   ready|drain drain when cpu >= drain_cpu, or mem >= drain_memory, or
//               queue >= drain_queue (each threshold 0 = never drain on it).
//   NN%         capacity left, the weight relative to the configured one:
//                 100 - max(cpu%, mem%, 100 * queue / queue_max)
//               rounded to nearest and clamped to [1, 100].  1, not 0: a
//               busy host below every drain threshold still gets a trickle
//               (HAProxy reads 0% as "no new traffic"; that is what drain is
//               for, and drain says why).
//   # ...       smtplb's own figures, key=value, after the '#'.  HAProxy
//               logs any word before '#' it does not know as "agent reports
//               an error"; text after '#' is its free-form description,
//               shown as "via agent : up (cpu=37 mem=21 queue=12)".
//                 cpu=N    busy CPU %, mem=N  memory used %, queue=N messages
//                 error=a,b  sources that failed: stat (/proc/stat),
//                            meminfo (/proc/meminfo), queue (the command)
//               A figure whose source failed is left out; the weight and
//               ready/drain come from the figures there are.  With no CPU,
//               memory or queue figure at all the reply is `up # error=...`:
//               no weight and no admin state, so the balancer keeps the last
//               ones it had rather than trusting a guess.
//
// Pure: src/agent/sampler.cpp gathers the figures and publishes the line.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

namespace smtplb::agent {

// Defaults of smtplb-agent's flags (src/agent/agent_options.hpp).
inline constexpr int kDefaultDrainCpu = 95;                  // --drain-cpu, %
inline constexpr int kDefaultDrainMemory = 95;               // --drain-memory, %
inline constexpr std::uint64_t kDefaultDrainQueue = 50'000;  // --drain-queue, messages
inline constexpr std::uint64_t kDefaultQueueMax = 10'000;    // --queue-max, messages

struct Thresholds {
  int drain_cpu = kDefaultDrainCpu;                // 0 = never
  int drain_memory = kDefaultDrainMemory;          // 0 = never
  std::uint64_t drain_queue = kDefaultDrainQueue;  // 0 = never
  std::uint64_t queue_max = kDefaultQueueMax;      // the queue that counts as 100% load; >= 1
};

// Sources that could not be read this time (a bit set).
enum Problem : unsigned {
  kProblemStat = 1u << 0,     // /proc/stat
  kProblemMeminfo = 1u << 1,  // /proc/meminfo
  kProblemQueue = 1u << 2,    // the queue command
};

struct Figures {
  std::optional<int> cpu;              // busy %, 0..100
  std::optional<int> memory;           // used %, 0..100
  std::optional<std::uint64_t> queue;  // messages in the MTA's queue
  unsigned problems = 0;               // Problem bits
  bool operator==(const Figures&) const = default;
};

struct Decision {
  std::optional<int> capacity;  // 1..100; nullopt without any figure
  bool drain = false;
  bool operator==(const Decision&) const = default;
};

// The formula above; `t.queue_max` 0 is taken as 1.
Decision decide(const Figures& f, const Thresholds& t);

// The reply line, LF-terminated (HAProxy needs the line end).
std::string format_reply(const Figures& f, const Decision& d);

// decide() then format_reply().
std::string reply_line(const Figures& f, const Thresholds& t);

// "stat,meminfo" for the Problem bits; "" for none.
std::string problem_names(unsigned problems);

}  // namespace smtplb::agent
