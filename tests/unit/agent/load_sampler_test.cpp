// load_sampler_test.cpp: smtplb-agent's figures from /proc text and from a
// queue command's output (src/agent/load_sampler.hpp).
#include "agent/load_sampler.hpp"

#include <gtest/gtest.h>

#include <optional>
#include <string>
#include <vector>

namespace smtplb::agent {
namespace {

// A /proc/stat as Linux 6.1 prints it (shortened after the cpu lines).
constexpr std::string_view kProcStat =
    "cpu  10132153 290696 3084719 46828483 16683 0 25195 0 175628 0\n"
    "cpu0 1393280 32966 572056 13366824 6192 0 17875 0 18454 0\n"
    "intr 199292614 0 3 0 0\n"
    "ctxt 464061364\n";

TEST(ParseProcStat, Cases) {
  struct Case {
    const char* name;
    std::string_view text;
    std::optional<CpuTimes> want;
  };
  const std::vector<Case> cases = {
      // total leaves out guest (175628): the kernel counts it in user already.
      {"linux 6.1", kProcStat,
       CpuTimes{10132153 + 290696 + 3084719 + 46828483 + 16683 + 25195, 46828483 + 16683}},
      {"tabs and a last line without LF", "cpu\t1 2 3 4 5 6 7 8", CpuTimes{36, 9}},
      {"old kernel: four fields", "cpu  100 0 50 850\n", CpuTimes{1000, 850}},
      {"first the aggregate, not cpu0", "cpu0 9 9 9 9\ncpu  1 1 1 1\n", CpuTimes{4, 1}},
      {"preceded by other lines", "ctxt 5\ncpu 1 0 0 3\n", CpuTimes{4, 3}},
      {"three fields", "cpu  1 2 3\n", std::nullopt},
      {"a word among the numbers", "cpu  1 2 x 4\n", std::nullopt},
      {"a negative number", "cpu  1 2 -3 4\n", std::nullopt},
      {"overflowing u64", "cpu  99999999999999999999 0 0 0\n", std::nullopt},
      {"no cpu line", "intr 1 2 3\nctxt 4\n", std::nullopt},
      {"cpus is not cpu", "cpus 1 2 3 4\n", std::nullopt},
      {"empty", "", std::nullopt},
  };
  for (const auto& c : cases) {
    auto got = parse_proc_stat(c.text);
    EXPECT_EQ(got.has_value(), c.want.has_value()) << c.name;
    if (got && c.want) {
      EXPECT_EQ(got->total, c.want->total) << c.name;
      EXPECT_EQ(got->idle, c.want->idle) << c.name;
    }
  }
}

TEST(CpuBusyPercent, Cases) {
  struct Case {
    const char* name;
    CpuTimes before, after;
    std::optional<int> want;
  };
  const std::vector<Case> cases = {
      {"idle", {1000, 900}, {2000, 1900}, 0},
      {"all busy", {1000, 900}, {2000, 900}, 100},
      {"37% busy", {0, 0}, {100, 63}, 37},
      {"rounds half up: 12.5 -> 13", {0, 0}, {200, 175}, 13},
      {"rounds down: 12.4 -> 12", {0, 0}, {1000, 876}, 12},
      {"since boot: delta from zero", {}, {2000, 1900}, 5},
      {"no tick passed: keep the last figure", {500, 400}, {500, 400}, std::nullopt},
      {"counters reset: keep the last figure", {500, 400}, {100, 50}, std::nullopt},
      // iowait may go back on its own (proc(5)): no idle time in the interval.
      {"idle went back", {1000, 900}, {1100, 850}, 100},
      {"idle grew more than total", {1000, 900}, {1010, 950}, 0},
  };
  for (const auto& c : cases) {
    EXPECT_EQ(cpu_busy_percent(c.before, c.after), c.want) << c.name;
  }
}

TEST(ParseMeminfo, Cases) {
  struct Case {
    const char* name;
    std::string_view text;
    std::optional<MemInfo> want;
  };
  const std::vector<Case> cases = {
      {"linux 6.1",
       "MemTotal:       16318056 kB\nMemFree:         1208348 kB\n"
       "MemAvailable:   12891356 kB\nBuffers:          683532 kB\nCached:         10519816 kB\n",
       MemInfo{16318056, 12891356}},
      {"order does not matter", "MemAvailable: 10 kB\nMemTotal: 40 kB\n", MemInfo{40, 10}},
      {"no MemAvailable (before 3.14): MemFree + Buffers + Cached",
       "MemTotal: 1000 kB\nMemFree: 100 kB\nBuffers: 50 kB\nCached: 250 kB\n", MemInfo{1000, 400}},
      {"available capped at total", "MemTotal: 100 kB\nMemAvailable: 150 kB\n", MemInfo{100, 100}},
      {"without the unit", "MemTotal: 100\nMemAvailable: 25\n", MemInfo{100, 25}},
      {"no MemTotal", "MemAvailable: 10 kB\n", std::nullopt},
      {"MemTotal 0", "MemTotal: 0 kB\nMemAvailable: 0 kB\n", std::nullopt},
      {"no available figure at all", "MemTotal: 100 kB\nMemFree: 10 kB\n", std::nullopt},
      {"a bad value", "MemTotal: lots kB\nMemAvailable: 1 kB\n", std::nullopt},
      {"empty", "", std::nullopt},
  };
  for (const auto& c : cases) {
    auto got = parse_meminfo(c.text);
    EXPECT_EQ(got.has_value(), c.want.has_value()) << c.name;
    if (got && c.want) {
      EXPECT_EQ(*got, *c.want) << c.name;
    }
  }
}

TEST(MemoryUsedPercent, Cases) {
  struct Case {
    MemInfo m;
    int want;
  };
  const std::vector<Case> cases = {
      {{1000, 1000}, 0}, {{1000, 0}, 100},
      {{1000, 790}, 21}, {{1000, 795}, 21},  // 20.5 -> 21 (half up)
      {{1000, 796}, 20}, {{16318056, 12891356}, 21},
  };
  for (const auto& c : cases) {
    EXPECT_EQ(memory_used_percent(c.m), c.want)
        << "total " << c.m.total_kb << " available " << c.m.available_kb;
  }
}

// postqueue -j: one JSON object per queued message (postqueue(1)).
constexpr std::string_view kPostqueueLine =
    R"({"queue_name": "deferred", "queue_id": "4Dq3yH0lMRz4Kq", "arrival_time": 1700000000, )"
    R"("message_size": 1234, "forced_expire": false, "sender": "a@example.com", )"
    R"("recipients": [{"address": "b@example.net", "delay_reason": "connect timed out"}]})"
    "\n";

TEST(ParseQueueOutput, Cases) {
  std::string three_json =
      std::string(kPostqueueLine) + std::string(kPostqueueLine) + std::string(kPostqueueLine);
  struct Case {
    const char* name;
    std::string text;
    std::optional<std::uint64_t> want;
  };
  const std::vector<Case> cases = {
      {"exim -bpc", "12\n", 12},
      {"zero", "0\n", 0},
      {"no LF", "42", 42},
      {"blanks around", "  \t7 \r\n", 7},
      {"blank lines around", "\n\n7\n\n", 7},
      {"postqueue -j, three messages", three_json, 3},
      {"postqueue -j, last line without LF", three_json.substr(0, three_json.size() - 1), 3},
      {"postqueue -j on an empty queue prints nothing", "", 0},
      {"only blank lines", "\n \n", 0},
      {"largest u64", "18446744073709551615\n", 18446744073709551615ull},
      {"u64 overflow", "18446744073709551616\n", std::nullopt},
      {"a very long number", std::string(200, '9') + "\n", std::nullopt},
      {"two numbers", "1\n2\n", std::nullopt},
      {"a number and JSON", "1\n" + std::string(kPostqueueLine), std::nullopt},
      {"a negative number", "-1\n", std::nullopt},
      {"a number with text", "12 messages\n", std::nullopt},
      {"postqueue -p text", "-Queue ID-  --Size--\nABC123  1000 Mon\n", std::nullopt},
      {"mail system is down", "postqueue: fatal: Queue report unavailable - mail system is down\n",
       std::nullopt},
  };
  for (const auto& c : cases) {
    EXPECT_EQ(parse_queue_output(c.text), c.want) << c.name;
  }
}

TEST(QueueOutputParser, ChunksSplitAnywhereGiveTheSameCount) {
  std::string text;
  for (int i = 0; i < 50; ++i) text += kPostqueueLine;
  for (std::size_t step : {1u, 2u, 3u, 7u, 64u, 1000u}) {
    QueueOutputParser p;
    for (std::size_t i = 0; i < text.size(); i += step)
      p.feed(std::string_view(text).substr(i, step));
    EXPECT_EQ(p.finish(), 50u) << "chunks of " << step;
  }
  for (std::size_t step : {1u, 2u, 5u}) {
    QueueOutputParser p;
    std::string_view number = " 12345\n";
    for (std::size_t i = 0; i < number.size(); i += step) p.feed(number.substr(i, step));
    EXPECT_EQ(p.finish(), 12345u) << "chunks of " << step;
  }
}

}  // namespace
}  // namespace smtplb::agent
