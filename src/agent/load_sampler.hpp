// load_sampler.hpp: smtplb-agent's figures from the text the kernel and the
// MTA print.
//
// Pure: each function takes the text of a file or of a command's output and
// returns a value, or nullopt when the text is not what it should be (the
// caller reports which source failed).  No files, processes or logging here;
// src/agent/sampler.cpp reads /proc and src/agent/queue_command.cpp runs the
// queue command.
//
//   /proc/stat      the first "cpu" line: USER_HZ ticks spent in each state
//                   since boot (proc(5)); CPU use is the busy share of the
//                   ticks between two samples.
//   /proc/meminfo   MemTotal and MemAvailable (kB); memory use is the share
//                   of MemTotal that is not available.
//   queue command   `exim -bpc` (one integer) or `postqueue -j` (one JSON
//                   object per queued message, one per line).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace smtplb::agent {

// The aggregate "cpu" line of /proc/stat, in USER_HZ ticks since boot.
struct CpuTimes {
  // user + nice + system + idle + iowait + irq + softirq + steal.  guest and
  // guest_nice are left out: the kernel already counts them in user and nice.
  std::uint64_t total = 0;
  // idle + iowait: a CPU waiting for the disk is free to run something else.
  std::uint64_t idle = 0;
  bool operator==(const CpuTimes&) const = default;
};

// The first line that is "cpu" followed by blanks.  At least the four fields
// every kernel prints (user nice system idle) must be there; later fields
// missing from older kernels count as 0.  The caller passes whole lines (a
// read cut at a bound is cut back to its last LF).
std::optional<CpuTimes> parse_proc_stat(std::string_view text);

// Busy share of the ticks between two samples, 0..100, rounded to nearest.
// nullopt when no tick passed (the same sample twice, or counters that went
// back after a reset), so the caller keeps its previous figure.  Counters
// that move backwards on their own (iowait may, proc(5)) count as no change.
// `before` = {} gives the average since boot.
std::optional<int> cpu_busy_percent(const CpuTimes& before, const CpuTimes& after);

// MemTotal and the memory available for new work, both in kB.
struct MemInfo {
  std::uint64_t total_kb = 0;
  std::uint64_t available_kb = 0;
  bool operator==(const MemInfo&) const = default;
};

// MemTotal (must be > 0) and MemAvailable; kernels before 3.14 have no
// MemAvailable, and then MemFree + Buffers + Cached stands in for it (the
// estimate `free` used then).  Available is capped at total.
std::optional<MemInfo> parse_meminfo(std::string_view text);

// Share of MemTotal that is not available, 0..100, rounded to nearest.
int memory_used_percent(const MemInfo& m);

// Counts the queue in a command's output, fed in chunks as it arrives so
// that `postqueue -j` on a queue of 100000 messages needs no buffer for its
// tens of megabytes.  Accepted outputs:
//   - one integer on a line of its own, blanks around it allowed
//     (`exim -bpc`, `postqueue -p | grep -c ...`, any script);
//   - lines that each start with '{' (`postqueue -j`: one JSON object per
//     message); the count of those lines;
//   - nothing at all: an empty queue (what `postqueue -j` prints then).
// Anything else, or an integer that does not fit, is an error.
class QueueOutputParser {
 public:
  void feed(std::string_view chunk);
  // Ends the output (a last line without LF counts) and returns the queue
  // length, or nullopt if the output was none of the above.
  std::optional<std::uint64_t> finish();

 private:
  void end_line();

  // An integer line is never longer than this (u64 has 20 digits); a longer
  // line that does not start with '{' cannot be valid and is not kept.
  static constexpr std::size_t kMaxNumberLine = 64;

  bool in_line_ = false;       // inside a line that has a non-blank byte
  bool line_is_json_ = false;  // that line's first non-blank byte is '{'
  std::string number_;         // the current line, if it may be an integer
  bool number_too_long_ = false;
  std::uint64_t json_lines_ = 0;
  std::uint64_t other_lines_ = 0;  // non-blank lines that are not JSON
  std::optional<std::uint64_t> number_value_;
  bool bad_ = false;
};

// The whole output at once (tests, small outputs).
std::optional<std::uint64_t> parse_queue_output(std::string_view text);

}  // namespace smtplb::agent
