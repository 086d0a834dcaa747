#include "balance/agent_protocol.hpp"

#include <gtest/gtest.h>

namespace smtplb::balance {
namespace {

using Admin = AgentReply::Admin;
using Health = AgentReply::Health;

TEST(AgentProtocol, HaproxyWords) {
  struct Case {
    const char* label;
    const char* line;
    std::optional<int> percent;
    Admin admin;
    Health health;
  } cases[] = {
      {"percentage", "75%\n", 75, Admin::kUnset, Health::kUnset},
      {"zero percent", "0%", 0, Admin::kUnset, Health::kUnset},
      {"ready", "ready\n", std::nullopt, Admin::kReady, Health::kUnset},
      {"drain", "drain", std::nullopt, Admin::kDrain, Health::kUnset},
      {"maint", "MAINT\r\n", std::nullopt, Admin::kMaint, Health::kUnset},
      {"up", "up", std::nullopt, Admin::kUnset, Health::kUp},
      {"down", "down", std::nullopt, Admin::kUnset, Health::kDown},
      {"fail", "fail", std::nullopt, Admin::kUnset, Health::kDown},
      {"stopped", "stopped", std::nullopt, Admin::kUnset, Health::kDown},
      {"several, commas", "up,ready,50%", 50, Admin::kReady, Health::kUp},
      {"tabs and spaces", "up\t ready  20%", 20, Admin::kReady, Health::kUp},
  };
  for (const auto& c : cases) {
    auto r = parse_agent_reply(c.line);
    ASSERT_TRUE(r) << c.label;
    EXPECT_EQ(r->percent, c.percent) << c.label;
    EXPECT_EQ(r->admin, c.admin) << c.label;
    EXPECT_EQ(r->health, c.health) << c.label;
  }
}

TEST(AgentProtocol, NumbersReasonAndFigures) {
  auto r = parse_agent_reply("up ready 63% maxconn:30 weight:10 cpu:37 mem:21 queue:12 # fine\n");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->maxconn, 30);
  EXPECT_EQ(r->weight, 10);
  EXPECT_EQ(r->cpu, 37);
  EXPECT_EQ(r->mem, 21);
  EXPECT_EQ(r->queue, 12);
  EXPECT_EQ(r->reason, "fine");
  auto q = parse_agent_reply("up 80% # cpu=20 mem=55 queue=7");
  ASSERT_TRUE(q);
  EXPECT_EQ(q->cpu, 20);
  EXPECT_EQ(q->mem, 55);
  EXPECT_EQ(q->queue, 7);
  EXPECT_EQ(q->reason, "cpu=20 mem=55 queue=7");
}

TEST(AgentProtocol, GarbledRepliesAreRefused) {
  for (const char* bad : {"", "\n", "hello", "150%", "-5%", "x%", "up banana", "weight:x",
                          "maxconn:", "up\x01", "up\r\nready"}) {
    EXPECT_FALSE(parse_agent_reply(bad)) << bad;
  }
  EXPECT_FALSE(parse_agent_reply(std::string(kMaxAgentReply + 1, 'u')));
}

TEST(AgentProtocol, ReasonAloneIsAReply) {
  auto r = parse_agent_reply("# nothing to say");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->reason, "nothing to say");
}

}  // namespace
}  // namespace smtplb::balance
