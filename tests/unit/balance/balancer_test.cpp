#include "balance/balancer.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <memory>
#include <string>

namespace smtplb::balance {
namespace {

using Clock = BackendState::Clock;

struct Fixture {
  std::vector<std::unique_ptr<BackendState>> owned;
  std::vector<BackendState*> states;
  void add(const std::string& name, int weight) {
    config::Backend b;
    b.name = name;
    b.weight = weight;
    owned.push_back(std::make_unique<BackendState>("p", b));
    states.push_back(owned.back().get());
  }
};

std::string first_picks(Balancer& bal, Fixture& f, int n, Clock::time_point now) {
  std::string out;
  for (int i = 0; i < n; ++i) out += f.states[bal.order(f.states, now).front()]->name();
  return out;
}

TEST(RoundRobin, AlternatesAndOffersEveryBackendOnce) {
  Fixture f;
  f.add("a", 1);
  f.add("b", 1);
  f.add("c", 1);
  auto bal = make_balancer(config::Algorithm::kRoundRobin);
  auto now = Clock::now();
  EXPECT_EQ(first_picks(*bal, f, 6, now), "abcabc");
  auto order = bal->order(f.states, now);
  EXPECT_EQ(order.size(), 3u);
}

TEST(RoundRobin, DownBackendsComeLastAndShareIsEven) {
  Fixture f;
  f.add("a", 1);
  f.add("b", 1);
  f.add("c", 1);
  auto now = Clock::now();
  f.states[1]->record_failure(now);  // b down for a while
  auto bal = make_balancer(config::Algorithm::kRoundRobin);
  EXPECT_EQ(first_picks(*bal, f, 4, now), "acac");
  auto order = bal->order(f.states, now);
  ASSERT_EQ(order.size(), 3u);
  EXPECT_EQ(f.states[order.back()]->name(), "b");
}

TEST(WeightedRoundRobin, ThreeToOneIsSmoothNotBursty) {
  Fixture f;
  f.add("a", 3);
  f.add("b", 1);
  auto bal = make_balancer(config::Algorithm::kWeightedRoundRobin);
  std::string seq = first_picks(*bal, f, 40, Clock::now());
  // Smooth weighted round robin (nginx): b is spread out, every window of
  // four picks holds exactly one b, so a never gets more than its share.
  EXPECT_EQ(seq.substr(0, 8), "aabaaaba");
  for (std::size_t i = 0; i + 4 <= seq.size(); ++i)
    EXPECT_EQ(std::count(seq.begin() + i, seq.begin() + i + 4, 'b'), 1) << seq;
}

TEST(WeightedRoundRobin, ReplayCandidatesFollowHeaviestFirst) {
  Fixture f;
  f.add("a", 1);
  f.add("b", 5);
  f.add("c", 2);
  auto bal = make_balancer(config::Algorithm::kWeightedRoundRobin);
  auto order = bal->order(f.states, Clock::now());
  ASSERT_EQ(order.size(), 3u);
  EXPECT_EQ(f.states[order[0]]->name(), "b");
  EXPECT_EQ(f.states[order[1]]->name(), "c");
  EXPECT_EQ(f.states[order[2]]->name(), "a");
}

TEST(WeightedRoundRobin, ZeroWeightTakesNothing) {
  Fixture f;
  f.add("a", 0);
  f.add("b", 1);
  auto bal = make_balancer(config::Algorithm::kWeightedRoundRobin);
  EXPECT_EQ(first_picks(*bal, f, 3, Clock::now()), "bbb");
}

TEST(BackendState, BackoffDoublesWhileFailingAndClearsOnSuccess) {
  config::Backend b;
  b.name = "a";
  BackendState s("p", b);
  auto t0 = Clock::now();
  EXPECT_TRUE(s.usable(t0));
  EXPECT_TRUE(s.record_failure(t0));  // up -> down: logged once
  EXPECT_FALSE(s.usable(t0 + std::chrono::milliseconds(900)));
  EXPECT_TRUE(s.usable(t0 + std::chrono::milliseconds(1000)));
  EXPECT_FALSE(s.record_failure(t0));  // still down: no second log line
  EXPECT_FALSE(s.usable(t0 + std::chrono::milliseconds(1900)));
  EXPECT_TRUE(s.usable(t0 + std::chrono::milliseconds(2000)));
  for (int i = 0; i < 20; ++i) s.record_failure(t0);
  EXPECT_TRUE(s.usable(t0 + BackendState::kMaxBackoff));  // capped
  EXPECT_TRUE(s.record_success());
  EXPECT_TRUE(s.usable(t0));
  EXPECT_EQ(s.consecutive_failures(), 0);
}

TEST(Balancer, AllDownStillOffersEverythingSoonestBackFirst) {
  Fixture f;
  f.add("a", 1);
  f.add("b", 1);
  auto now = Clock::now();
  f.states[0]->record_failure(now);
  f.states[0]->record_failure(now);  // a: 2 s
  f.states[1]->record_failure(now);  // b: 1 s
  auto bal = make_balancer(config::Algorithm::kRoundRobin);
  auto order = bal->order(f.states, now);
  ASSERT_EQ(order.size(), 2u);
  EXPECT_EQ(f.states[order[0]]->name(), "b");
  EXPECT_EQ(f.states[order[1]]->name(), "a");
}

}  // namespace
}  // namespace smtplb::balance
