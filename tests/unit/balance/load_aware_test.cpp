#include <gtest/gtest.h>

#include <cmath>
#include <map>
#include <memory>
#include <string>

#include "balance/balancer.hpp"
#include "balance/hash_sender.hpp"

namespace smtplb::balance {
namespace {

using Clock = BackendState::Clock;

struct Pool {
  std::vector<std::unique_ptr<BackendState>> owned;
  std::vector<BackendState*> states;
  BackendState& add(const std::string& name, int weight = 1) {
    config::Backend b;
    b.name = name;
    b.weight = weight;
    owned.push_back(std::make_unique<BackendState>("p", b));
    states.push_back(owned.back().get());
    return *owned.back();
  }
  std::string first(Balancer& bal, std::string_view key = {}) {
    return states[bal.order(states, Clock::now(), key).front()]->name();
  }
};

TEST(LeastConnections, PicksFewestInFlightPerWeight) {
  Pool p;
  auto& a = p.add("a");
  auto& b = p.add("b");
  auto& c = p.add("c", 2);
  a.in_flight = 3;
  b.in_flight = 1;
  c.in_flight = 3;  // (3+1)/2 = 2 > (1+1)/1 = 2? equal: ties rotate
  auto bal = make_balancer(config::Algorithm::kLeastConnections);
  b.in_flight = 0;  // (0+1)/1 = 1: clearly least
  EXPECT_EQ(p.first(*bal), "b");
  auto order = bal->order(p.states, Clock::now());
  ASSERT_EQ(order.size(), 3u);
  EXPECT_EQ(p.states[order.back()]->name(), "a");
}

TEST(LeastConnections, IdlePoolStillSpreads) {
  Pool p;
  p.add("a");
  p.add("b");
  auto bal = make_balancer(config::Algorithm::kLeastConnections);
  std::map<std::string, int> n;
  for (int i = 0; i < 100; ++i) ++n[p.first(*bal)];
  EXPECT_EQ(n["a"], 50);
  EXPECT_EQ(n["b"], 50);
}

TEST(RandomTwo, PrefersTheLessLoadedOfTwo) {
  Pool p;
  auto& a = p.add("a");
  p.add("b");
  a.in_flight = 10;
  auto bal = make_balancer(config::Algorithm::kRandomTwo, 42);
  // With two backends both are always drawn: the idle one wins every time.
  for (int i = 0; i < 50; ++i) EXPECT_EQ(p.first(*bal), "b");
}

TEST(RandomTwo, SpreadsAnIdlePoolWithinBounds) {
  Pool p;
  for (const char* n : {"a", "b", "c", "d"}) p.add(n);
  auto bal = make_balancer(config::Algorithm::kRandomTwo, 7);
  std::map<std::string, int> n;
  for (int i = 0; i < 4000; ++i) ++n[p.first(*bal)];
  for (const auto& [name, count] : n) {
    EXPECT_GT(count, 800) << name;  // expected 1000 each
    EXPECT_LT(count, 1200) << name;
  }
}

TEST(HashSender, SameDomainSameBackend) {
  Pool p;
  for (const char* n : {"a", "b", "c"}) p.add(n);
  auto bal = make_balancer(config::Algorithm::kHashSender);
  for (const char* d : {"example.com", "example.org", "bulk.example.net"}) {
    std::string first = p.first(*bal, d);
    for (int i = 0; i < 10; ++i) EXPECT_EQ(p.first(*bal, d), first) << d;
  }
}

TEST(HashSender, OnlyTheDownBackendsShareMoves) {
  Pool p;
  for (const char* n : {"a", "b", "c", "d"}) p.add(n);
  auto bal = make_balancer(config::Algorithm::kHashSender);
  std::map<std::string, std::string> before;
  for (int i = 0; i < 400; ++i) {
    std::string d = "d" + std::to_string(i) + ".example";
    before[d] = p.first(*bal, d);
  }
  p.states[2]->set_admin(AdminState::kMaint, "test");  // c leaves
  int moved = 0;
  for (const auto& [d, b] : before) {
    std::string now = p.first(*bal, d);
    if (b == "c") {
      EXPECT_NE(now, "c");
    } else {
      EXPECT_EQ(now, b) << d;
    }
    moved += now != b;
  }
  EXPECT_GT(moved, 50);  // c held about a quarter
  EXPECT_LT(moved, 160);
}

TEST(HashSender, HotDomainSpillsOverBoundedLoad) {
  Pool p;
  for (const char* n : {"a", "b"}) p.add(n);
  auto bal = make_balancer(config::Algorithm::kHashSender);
  std::string home = p.first(*bal, "hot.example");
  auto& h = home == "a" ? *p.states[0] : *p.states[1];
  h.in_flight = 10;  // far over 1.25 x the average
  EXPECT_NE(p.first(*bal, "hot.example"), home);
}

TEST(BackendState, DrainAndMaintTakeNothingNotEvenAsLastResort) {
  Pool p;
  auto& a = p.add("a");
  auto& b = p.add("b");
  a.set_admin(AdminState::kDrain, "operator");
  b.record_failure(Clock::now());
  for (auto alg : {config::Algorithm::kRoundRobin, config::Algorithm::kLeastConnections}) {
    auto bal = make_balancer(alg);
    auto order = bal->order(p.states, Clock::now());
    ASSERT_EQ(order.size(), 1u);
    EXPECT_EQ(p.states[order[0]]->name(), "b");  // down is a last resort; drain never
  }
  EXPECT_STREQ(a.state_name(Clock::now()), "drain");
  EXPECT_STREQ(b.state_name(Clock::now()), "down");
}

TEST(BackendState, LastUsableBackendIsNotEjectedOnPassiveEvidence) {
  Pool p;
  auto& a = p.add("a");
  EXPECT_FALSE(a.record_failure(Clock::now(), /*others_usable=*/false));
  EXPECT_TRUE(a.usable(Clock::now()));
  EXPECT_EQ(a.consecutive_failures(), 1);
}

TEST(BackendState, ChecksFlipAfterFallAndRise) {
  Pool p;
  auto& a = p.add("a");
  EXPECT_FALSE(a.record_check(false, "banner 421", 2, 3));
  EXPECT_FALSE(a.record_check(false, "banner 421", 2, 3));
  EXPECT_TRUE(a.usable(Clock::now()));
  EXPECT_TRUE(a.record_check(false, "banner 421", 2, 3));  // third failure: down
  EXPECT_FALSE(a.usable(Clock::now()));
  EXPECT_EQ(a.reason(), "banner 421");
  EXPECT_FALSE(a.record_check(true, "", 2, 3));
  EXPECT_FALSE(a.record_check(false, "x", 2, 3));  // streak broken
  EXPECT_FALSE(a.record_check(true, "", 2, 3));
  EXPECT_TRUE(a.record_check(true, "", 2, 3));  // two in a row: up
  EXPECT_TRUE(a.usable(Clock::now()));
  EXPECT_EQ(a.checks_failed(), 4u);
  EXPECT_EQ(a.checks_ok(), 3u);
}

TEST(BackendState, GoodCheckEndsAPassiveEjection) {
  Pool p;
  auto& a = p.add("a");
  a.record_failure(Clock::now());
  a.record_check(false, "refused", 1, 1);
  EXPECT_FALSE(a.usable(Clock::now()));
  EXPECT_TRUE(a.record_check(true, "", 1, 1));
  EXPECT_TRUE(a.usable(Clock::now()));
}

TEST(InFlight, CountsWhileHeld) {
  Pool p;
  auto& a = p.add("a");
  {
    InFlight f(a);
    EXPECT_EQ(a.in_flight.load(), 1);
    InFlight g = std::move(f);
    EXPECT_EQ(a.in_flight.load(), 1);
  }
  EXPECT_EQ(a.in_flight.load(), 0);
}

}  // namespace
}  // namespace smtplb::balance

namespace smtplb::balance {
namespace {

BackendState::AgentFigures agent(int pct, bool down = false) {
  BackendState::AgentFigures f;
  f.percent = pct;
  f.down = down;
  return f;
}

TEST(EffectiveWeight, AgentPercentScalesAndExpires) {
  config::Backend cfg;
  cfg.name = "a";
  cfg.weight = 4;
  BackendState s("p", cfg);
  auto t0 = Clock::now();
  EXPECT_EQ(s.effective_weight(t0), 400);
  s.apply_agent(agent(25), t0, std::chrono::seconds(1));
  EXPECT_EQ(s.effective_weight(t0), 100);
  // Three intervals without a good reply: as if there were no agent.
  EXPECT_EQ(s.effective_weight(t0 + std::chrono::seconds(2)), 400);
}

TEST(EffectiveWeight, SlowStartRampsAfterComingBackUp) {
  config::Backend cfg;
  cfg.name = "a";
  BackendState s("p", cfg, std::chrono::seconds(10));
  auto t0 = Clock::now();
  EXPECT_TRUE(s.apply_agent(agent(100, /*down=*/true), t0, std::chrono::hours(1)));
  EXPECT_FALSE(s.usable(t0));
  EXPECT_TRUE(s.apply_agent(agent(100), t0, std::chrono::hours(1)));  // back up at t0
  EXPECT_EQ(s.effective_weight(t0), 10);                              // the 10% floor
  EXPECT_EQ(s.effective_weight(t0 + std::chrono::seconds(5)), 50);
  EXPECT_EQ(s.effective_weight(t0 + std::chrono::seconds(10)), 100);
}

TEST(LeastLoad, AgentRoomWins) {
  config::Backend ca, cb;
  ca.name = "a";
  cb.name = "b";
  BackendState a("p", ca), b("p", cb);
  std::vector<BackendState*> states{&a, &b};
  auto now = Clock::now();
  BackendState::AgentFigures busy = agent(100), idle = agent(100);
  busy.cpu = 90;
  idle.cpu = 10;
  a.apply_agent(busy, now, std::chrono::hours(1));
  b.apply_agent(idle, now, std::chrono::hours(1));
  auto bal = make_balancer(config::Algorithm::kLeastLoad);
  for (int i = 0; i < 5; ++i) EXPECT_EQ(states[bal->order(states, now).front()]->name(), "b");
  // Enough transactions on b outweigh a's load: 90% busy is a tenth of the room.
  b.in_flight = 20;
  EXPECT_EQ(states[bal->order(states, now).front()]->name(), "a");
}

TEST(FinalDotTime, AveragesAnswersAndDecaysWhileIdle) {
  config::Backend c;
  c.name = "a";
  BackendState a("p", c);
  auto t0 = Clock::now();
  EXPECT_EQ(a.final_dot_seconds(t0), 0.0);
  a.observe_final_dot(0.010, t0);
  EXPECT_DOUBLE_EQ(a.final_dot_seconds(t0), 0.010);  // the first answer sets it
  a.observe_final_dot(0.110, t0);
  EXPECT_NEAR(a.final_dot_seconds(t0), 0.020, 1e-9);  // one tenth of the way to 0.110
  // Left alone, it decays: e^-1 after kFinalDotIdleDecay.
  EXPECT_NEAR(a.final_dot_seconds(t0 + BackendState::kFinalDotIdleDecay), 0.020 / std::exp(1.0),
              1e-9);
  for (int i = 0; i < 100; ++i) a.observe_final_dot(0.002, t0);
  EXPECT_NEAR(a.final_dot_seconds(t0), 0.002, 1e-6);
}

TEST(LeastLoad, SlowAnswersOutweighFewerTransactions) {
  Pool p;
  auto& fast = p.add("fast");
  auto& slow = p.add("slow");
  auto now = Clock::now();
  fast.observe_final_dot(0.002, now);
  slow.observe_final_dot(0.200, now);  // a queue in front of its work
  auto bal = make_balancer(config::Algorithm::kLeastLoad);
  // 19 transactions on the fast one still wait less than 1 on the slow:
  // 20 x 2 ms < 1 x 200 ms.
  fast.in_flight = 19;
  EXPECT_EQ(p.states[bal->order(p.states, now).front()]->name(), "fast");
  // Left alone, the slow one's figure decays and it is tried again.
  auto later = now + 3 * BackendState::kFinalDotIdleDecay;  // 200 ms -> ~10 ms
  EXPECT_EQ(p.states[bal->order(p.states, later).front()]->name(), "slow");
  // Answers under a millisecond are all equal: in-flight decides.
  Pool q;
  auto& x = q.add("x");
  auto& y = q.add("y");
  x.observe_final_dot(0.0002, now);
  y.observe_final_dot(0.0009, now);
  x.in_flight = 2;
  EXPECT_EQ(q.states[bal->order(q.states, now).front()]->name(), "y");
}

}  // namespace
}  // namespace smtplb::balance
