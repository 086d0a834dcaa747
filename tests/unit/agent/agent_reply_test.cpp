// agent_reply_test.cpp: the line smtplb-agent answers (src/agent/agent_reply.hpp).
//
// The reply must stay one line HAProxy's agent-check parser takes without
// complaint: before the '#' only words it knows (up, ready, drain, N%);
// smtplb's own figures after the '#', where HAProxy keeps free text.
#include "agent/agent_reply.hpp"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace smtplb::agent {
namespace {

TEST(AgentReply, Lines) {
  Thresholds def;  // drain at cpu 95, mem 95, queue 50000; queue_max 10000
  struct Case {
    const char* name;
    Figures f;
    Thresholds t;
    std::string want;
  };
  const std::vector<Case> cases = {
      {"the example: cpu decides", {37, 21, 12, 0}, def, "up ready 63% # cpu=37 mem=21 queue=12\n"},
      {"memory decides", {10, 40, 0, 0}, def, "up ready 60% # cpu=10 mem=40 queue=0\n"},
      {"queue decides: 7500 of 10000 is 75%",
       {10, 20, 7500, 0},
       def,
       "up ready 25% # cpu=10 mem=20 queue=7500\n"},
      {"idle host", {0, 0, 0, 0}, def, "up ready 100% # cpu=0 mem=0 queue=0\n"},
      {"fully loaded but under the thresholds: 1%, not 0%",
       {100, 10, 0, 0},
       {0, 95, 50000, 10000},
       "up ready 1% # cpu=100 mem=10 queue=0\n"},
      {"queue over queue_max counts as 100%",
       {0, 0, 20000, 0},
       def,
       "up ready 1% # cpu=0 mem=0 queue=20000\n"},
      {"cpu at its threshold drains", {95, 10, 0, 0}, def, "up drain 5% # cpu=95 mem=10 queue=0\n"},
      {"cpu just under", {94, 10, 0, 0}, def, "up ready 6% # cpu=94 mem=10 queue=0\n"},
      {"memory at its threshold drains",
       {5, 95, 0, 0},
       def,
       "up drain 5% # cpu=5 mem=95 queue=0\n"},
      {"queue at its threshold drains",
       {5, 5, 50000, 0},
       def,
       "up drain 1% # cpu=5 mem=5 queue=50000\n"},
      {"queue threshold below queue_max",
       {5, 5, 300, 0},
       {95, 95, 300, 1000},
       "up drain 70% # cpu=5 mem=5 queue=300\n"},
      {"thresholds 0 never drain",
       {100, 100, 99999, 0},
       {0, 0, 0, 10000},
       "up ready 1% # cpu=100 mem=100 queue=99999\n"},
      {"no queue command: no queue field",
       {37, 21, std::nullopt, 0},
       def,
       "up ready 63% # cpu=37 mem=21\n"},
      {"queue command failed",
       {37, 21, std::nullopt, kProblemQueue},
       def,
       "up ready 63% # cpu=37 mem=21 error=queue\n"},
      {"/proc/stat unreadable: memory alone decides",
       {std::nullopt, 21, std::nullopt, kProblemStat},
       def,
       "up ready 79% # mem=21 error=stat\n"},
      {"/proc unreadable: no weight, no admin state",
       {std::nullopt, std::nullopt, std::nullopt, kProblemStat | kProblemMeminfo},
       def,
       "up # error=stat,meminfo\n"},
      {"everything failed",
       {std::nullopt, std::nullopt, std::nullopt, 7u},
       def,
       "up # error=stat,meminfo,queue\n"},
      {"/proc unreadable, the queue still drains",
       {std::nullopt, std::nullopt, 60000, kProblemStat | kProblemMeminfo},
       def,
       "up drain 1% # queue=60000 error=stat,meminfo\n"},
      {"queue_max 0 is taken as 1",
       {0, 0, 1, 0},
       {95, 95, 50000, 0},
       "up ready 1% # cpu=0 mem=0 queue=1\n"},
      {"nothing at all", {}, def, "up\n"},
  };
  for (const auto& c : cases) {
    EXPECT_EQ(reply_line(c.f, c.t), c.want) << c.name;
  }
}

TEST(AgentReply, CapacityFormula) {
  Thresholds t{0, 0, 0, 200};
  struct Case {
    std::optional<int> cpu, mem;
    std::optional<std::uint64_t> queue;
    std::optional<int> want;
  };
  const std::vector<Case> cases = {
      {37, 21, 12, 63},   // 100 - max(37, 21, 6)
      {10, 20, 150, 25},  // 100 - max(10, 20, 75)
      {10, 20, 1, 80},    // 1 of 200 rounds to 1%
      {0, 0, 0, 100},
      {100, 100, 200, 1},
      {std::nullopt, 30, std::nullopt, 70},
      {std::nullopt, std::nullopt, std::nullopt, std::nullopt},
  };
  for (const auto& c : cases) {
    Figures f{c.cpu, c.mem, c.queue, 0};
    EXPECT_EQ(decide(f, t).capacity, c.want)
        << "cpu " << c.cpu.value_or(-1) << " mem " << c.mem.value_or(-1);
  }
}

TEST(AgentReply, OnlyHaproxyWordsBeforeTheHash) {
  // HAProxy logs any word it does not know before '#' as an agent error.
  const Figures all[] = {
      {37, 21, 12, 0},
      {99, 99, 99999, 0},
      {std::nullopt, std::nullopt, std::nullopt, 7u},
      {std::nullopt, 50, std::nullopt, kProblemStat | kProblemQueue},
  };
  for (const auto& f : all) {
    std::string line = reply_line(f, Thresholds{});
    ASSERT_EQ(line.back(), '\n');
    EXPECT_EQ(line.find('\n'), line.size() - 1) << line;
    EXPECT_EQ(line.find('\r'), std::string::npos) << line;
    std::string head = line.substr(0, line.find('#'));
    std::size_t pos = 0;
    while (pos < head.size()) {
      std::size_t end = head.find_first_of(" \n", pos);
      std::string word = head.substr(pos, end - pos);
      pos = end == std::string::npos ? head.size() : end + 1;
      if (word.empty()) continue;
      bool known = word == "up" || word == "ready" || word == "drain" ||
                   (word.size() >= 2 && word.back() == '%' &&
                    word.find_first_not_of("0123456789") == word.size() - 1);
      EXPECT_TRUE(known) << "word \"" << word << "\" in " << line;
    }
  }
}

TEST(ProblemNames, Cases) {
  EXPECT_EQ(problem_names(0), "");
  EXPECT_EQ(problem_names(kProblemQueue), "queue");
  EXPECT_EQ(problem_names(kProblemQueue | kProblemStat), "stat,queue");
  EXPECT_EQ(problem_names(kProblemStat | kProblemMeminfo | kProblemQueue), "stat,meminfo,queue");
}

}  // namespace
}  // namespace smtplb::agent
