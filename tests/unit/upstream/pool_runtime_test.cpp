// The candidate order of an MX pool (upstream/pool_runtime.hpp): RFC 5321
// 5.1's preferences first, a uniform random order within one preference
// for the algorithms that do not balance by load, and hosts known down last.
#include "upstream/pool_runtime.hpp"

#include <gtest/gtest.h>

#include <map>

#include "server/own_address.hpp"

namespace smtplb::upstream {
namespace {

using Clock = balance::BackendState::Clock;

struct MxPool {
  config::Pool cfg;
  std::vector<std::shared_ptr<balance::BackendState>> owned;
  PoolRuntime rt;

  explicit MxPool(config::Algorithm a, const std::vector<int>& prefs) {
    cfg.name = "p";
    cfg.algorithm = a;
    cfg.mx = config::MxMode::kDomain;
    rt.cfg = &cfg;
    rt.balancer = balance::make_balancer(a, 42);
    rt.rng.seed(7);
    for (std::size_t i = 0; i < prefs.size(); ++i) {
      config::Backend b;
      b.name = "h" + std::to_string(i);
      b.mx_preference = prefs[i];
      owned.push_back(std::make_shared<balance::BackendState>("p", b));
      rt.states.push_back(owned.back().get());
      rt.preferences.push_back(prefs[i]);
    }
  }
  std::vector<int> order() { return rt.order(Clock::now(), ""); }
};

TEST(MxPoolOrder, LowerPreferenceFirstAndEveryHostTried) {
  // h0 and h2 at 20, h1 and h3 at 10, h4 at 30.
  MxPool p(config::Algorithm::kRoundRobin, {20, 10, 20, 10, 30});
  for (int i = 0; i < 50; ++i) {
    auto o = p.order();
    ASSERT_EQ(o.size(), 5u);
    for (std::size_t k = 1; k < o.size(); ++k)
      EXPECT_LE(p.rt.preferences[o[k - 1]], p.rt.preferences[o[k]]);
  }
  p.cfg.retries = 1;
  EXPECT_EQ(p.rt.max_tries(), 5);  // every host, whatever `retries` says
}

TEST(MxPoolOrder, EqualPreferencesInUniformRandomOrder) {
  // Three hosts at one preference: each of the 6 orders equally likely.
  // Chi-square with 5 degrees of freedom: 20.515 is the 0.001 critical
  // value, so a correct shuffle fails this one run in a thousand, and the
  // seeded engine makes it the same run every time.
  MxPool p(config::Algorithm::kRoundRobin, {10, 10, 10});
  std::map<std::vector<int>, int> seen;
  constexpr int kTrials = 6000;
  for (int i = 0; i < kTrials; ++i) ++seen[p.order()];
  ASSERT_EQ(seen.size(), 6u);
  double chi2 = 0, expected = kTrials / 6.0;
  for (const auto& [order, n] : seen) chi2 += (n - expected) * (n - expected) / expected;
  EXPECT_LT(chi2, 20.515);
}

TEST(MxPoolOrder, LoadAwareAlgorithmsKeepTheirOrderWithinAPreference) {
  MxPool p(config::Algorithm::kLeastConnections, {10, 10, 20});
  p.owned[0]->in_flight = 3;  // h1 is less loaded within preference 10
  for (int i = 0; i < 10; ++i) EXPECT_EQ(p.order(), (std::vector<int>{1, 0, 2}));
}

TEST(MxPoolOrder, DownHostsGoLastPreferenceByPreference) {
  MxPool p(config::Algorithm::kRoundRobin, {10, 20, 30});
  auto now = Clock::now();
  // h0 (preference 10) fails its checks: the usable ones come first.
  p.owned[0]->record_check(false, "down", 1, 1);
  ASSERT_FALSE(p.owned[0]->usable(now));
  EXPECT_EQ(p.order(), (std::vector<int>{1, 2, 0}));
}

TEST(MxPoolOrder, ListedPoolsAreUnchanged) {
  config::Pool cfg;
  cfg.retries = 2;
  PoolRuntime rt;
  rt.cfg = &cfg;
  rt.balancer = balance::make_balancer(config::Algorithm::kRoundRobin);
  std::vector<std::shared_ptr<balance::BackendState>> owned;
  for (int i = 0; i < 5; ++i) {
    config::Backend b;
    b.name = "b" + std::to_string(i);
    owned.push_back(std::make_shared<balance::BackendState>("p", b));
    rt.states.push_back(owned.back().get());
  }
  EXPECT_EQ(rt.max_tries(), 3);
  EXPECT_EQ(rt.order(Clock::now(), "").size(), 5u);
}

TEST(OwnListener, ExactAndWildcardListenersAreLoops) {
  config::Config cfg;
  cfg.listeners.push_back({"a", {"127.0.0.1", 2525}, config::Role::kInbound});
  cfg.listeners.push_back({"b", {"0.0.0.0", 25}, config::Role::kInbound});
  auto ep = [](const char* a, int port) {
    return tcp::endpoint(asio::ip::make_address(a), static_cast<std::uint16_t>(port));
  };
  EXPECT_TRUE(server::is_own_listener(cfg, ep("127.0.0.1", 2525)));
  EXPECT_FALSE(server::is_own_listener(cfg, ep("127.0.0.2", 2525)));  // another address
  EXPECT_FALSE(server::is_own_listener(cfg, ep("127.0.0.1", 2526)));  // another port
  EXPECT_TRUE(server::is_own_listener(cfg, ep("127.0.0.9", 25)));     // wildcard: loopback
  EXPECT_TRUE(server::is_own_listener(cfg, ep("::ffff:127.0.0.9", 25)));
  EXPECT_FALSE(server::is_own_listener(cfg, ep("192.0.2.1", 25)));  // not this host
}

}  // namespace
}  // namespace smtplb::upstream
