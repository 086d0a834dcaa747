#include "dns/mx_order.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <random>
#include <string>
#include <vector>

namespace smtplb::dns {
namespace {

struct PlanCase {
  const char* name;
  std::string domain;
  std::vector<MxRecord> records;
  MxVerdict verdict;
  bool implicit;
  std::vector<MxGroup> groups;
};

TEST(MxOrder, PlansFollowRfc5321AndRfc7505) {
  const std::vector<PlanCase> cases = {
      {"two preferences, lowest first, names normalized",
       "example.net",
       {{20, "mx2.example.net."}, {10, "MX1.Example.NET"}},
       MxVerdict::kHosts,
       false,
       {{10, {"mx1.example.net"}}, {20, {"mx2.example.net"}}}},
      {"equal preferences form one group in answer order",
       "example.net",
       {{10, "a.example.net"}, {10, "b.example.net"}, {10, "c.example.net"}},
       MxVerdict::kHosts,
       false,
       {{10, {"a.example.net", "b.example.net", "c.example.net"}}}},
      {"no MX records: the implicit MX is the domain at preference 0",
       "Example.ORG.",
       {},
       MxVerdict::kHosts,
       true,
       {{0, {"example.org"}}}},
      {"no MX records for the root: nothing to deliver to",
       ".",
       {},
       MxVerdict::kNoUsableHost,
       false,
       {}},
      {"null MX: a single 0 .", "example.com", {{0, "."}}, MxVerdict::kNullMx, false, {}},
      {"null MX repeated by the server is still the null MX",
       "example.com",
       {{0, "."}, {0, "."}},
       MxVerdict::kNullMx,
       false,
       {}},
      {"an empty exchange is the root", "example.com", {{0, ""}}, MxVerdict::kNullMx, false, {}},
      {"a root exchange at another preference names no host: an error, no fallback",
       "example.com",
       {{10, "."}},
       MxVerdict::kNoUsableHost,
       false,
       {}},
      {"a null MX mixed with hosts is ignored, the hosts are used",
       "example.com",
       {{0, "."}, {10, "mx.example.com"}},
       MxVerdict::kHosts,
       false,
       {{10, {"mx.example.com"}}}},
      {"a host at two preferences keeps the most preferred, once",
       "example.com",
       {{20, "a.example.com"}, {10, "b.example.com"}, {10, "a.example.com"}},
       MxVerdict::kHosts,
       false,
       {{10, {"a.example.com", "b.example.com"}}}},
      {"the same host in two spellings is one host",
       "example.com",
       {{10, "MX.example.com."}, {10, "mx.example.com"}},
       MxVerdict::kHosts,
       false,
       {{10, {"mx.example.com"}}}},
      {"preferences are numbers, not strings",
       "example.com",
       {{100, "c"}, {9, "a"}, {10, "b"}, {65535, "d"}},
       MxVerdict::kHosts,
       false,
       {{9, {"a"}}, {10, {"b"}}, {100, {"c"}}, {65535, {"d"}}}},
  };
  for (const PlanCase& c : cases) {
    MxPlan plan = plan_mx(c.domain, c.records);
    EXPECT_EQ(plan.verdict, c.verdict) << c.name << ": got " << to_string(plan.verdict);
    EXPECT_EQ(plan.implicit, c.implicit) << c.name;
    EXPECT_EQ(plan.groups, c.groups) << c.name;
  }
}

TEST(MxOrder, PlansAtMostTheMostPreferredTenHosts) {
  // SECURITY.md 7, bounded DNS: every planned host is an address lookup
  // before the transaction can start, so a domain publishing hundreds of
  // MX records (that time out) must not make one RCPT wait for them all.
  std::vector<MxRecord> records;
  for (int i = 0; i < 5; ++i) records.push_back({20, "b" + std::to_string(i) + ".example.net"});
  for (int i = 0; i < 8; ++i) records.push_back({10, "a" + std::to_string(i) + ".example.net"});
  for (int i = 0; i < 200; ++i) records.push_back({30, "c" + std::to_string(i) + ".example.net"});
  MxPlan plan = plan_mx("example.net", records);
  ASSERT_EQ(plan.verdict, MxVerdict::kHosts);
  ASSERT_EQ(plan.groups.size(), 2u);
  EXPECT_EQ(plan.groups[0].preference, 10);
  EXPECT_EQ(plan.groups[0].hosts.size(), 8u);
  EXPECT_EQ(plan.groups[1].preference, 20);
  EXPECT_EQ(plan.groups[1].hosts, (std::vector<std::string>{"b0.example.net", "b1.example.net"}));
  EXPECT_EQ(kMaxMxHosts, 10u);
}

TEST(MxOrder, TryOrderKeepsGroupsInPreferenceOrderAndOffersEveryHostOnce) {
  MxPlan plan = plan_mx("example.net", {{20, "c"}, {10, "a"}, {10, "b"}, {30, "e"}, {20, "d"}});
  std::mt19937_64 rng(7);
  for (int i = 0; i < 200; ++i) {
    std::vector<std::string> order = try_order(plan, rng);
    ASSERT_EQ(order.size(), 5u);
    std::vector<std::string> first(order.begin(), order.begin() + 2);
    std::vector<std::string> second(order.begin() + 2, order.begin() + 4);
    std::sort(first.begin(), first.end());
    std::sort(second.begin(), second.end());
    EXPECT_EQ(first, (std::vector<std::string>{"a", "b"}));
    EXPECT_EQ(second, (std::vector<std::string>{"c", "d"}));
    EXPECT_EQ(order[4], "e");
  }
}

TEST(MxOrder, NullMxAndNoUsableHostGiveNothingToTry) {
  std::mt19937_64 rng(1);
  EXPECT_TRUE(try_order(plan_mx("example.com", {{0, "."}}), rng).empty());
  EXPECT_TRUE(try_order(plan_mx("example.com", {{10, "."}}), rng).empty());
}

// Pearson's chi-square statistic of how often each permutation of three
// equally preferred hosts came first-second-third.
template <class Shuffle>
double chi_square_over_permutations(int trials, Shuffle shuffle) {
  std::map<std::vector<std::string>, int> seen;
  for (int i = 0; i < trials; ++i) ++seen[shuffle()];
  EXPECT_EQ(seen.size(), 6u) << "every permutation must occur";
  const double expected = trials / 6.0;
  double chi2 = 0;
  for (const auto& [perm, n] : seen) chi2 += (n - expected) * (n - expected) / expected;
  return chi2;
}

// 6 permutations give 5 degrees of freedom; the upper 0.1% point of the
// chi-square distribution with 5 degrees of freedom is 20.515.  A uniform
// shuffle stays below it with probability 0.999 (and with the seed fixed,
// always); the bias of a broken shuffle (next test) is far above it.
constexpr double kChiSquare5DofAlpha0001 = 20.515;
constexpr int kTrials = 60000;  // 10000 expected per permutation

TEST(MxOrder, EqualPreferenceOrderIsUniformOverPermutations) {
  MxPlan plan = plan_mx("example.net", {{10, "a"}, {10, "b"}, {10, "c"}});
  std::mt19937_64 rng(20240601);
  double chi2 = chi_square_over_permutations(kTrials, [&] { return try_order(plan, rng); });
  EXPECT_LT(chi2, kChiSquare5DofAlpha0001);
}

// The test has teeth: the classic mistake of swapping each element with any
// position (27 equally likely paths onto 6 permutations) is caught.
TEST(MxOrder, ChiSquareBoundCatchesTheNaiveSwapShuffle) {
  std::mt19937_64 rng(20240601);
  double chi2 = chi_square_over_permutations(kTrials, [&] {
    std::vector<std::string> v = {"a", "b", "c"};
    std::uniform_int_distribution<std::size_t> any(0, v.size() - 1);
    for (std::size_t i = 0; i < v.size(); ++i) std::swap(v[i], v[any(rng)]);
    return v;
  });
  EXPECT_GT(chi2, kChiSquare5DofAlpha0001);
}

}  // namespace
}  // namespace smtplb::dns
