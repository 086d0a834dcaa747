#include "auth/auth_throttle.hpp"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace smtplb::auth {
namespace {

using std::chrono::milliseconds;
using std::chrono::minutes;
using std::chrono::seconds;
using Ip = net::IpAddress;
using Time = AuthThrottle::Clock::time_point;

const Time t0 = Time{} + std::chrono::hours(1000);  // the fake clock's "now" at start

Ip v4(std::uint8_t a, std::uint8_t b, std::uint8_t c, std::uint8_t d) {
  return Ip(Ip::Bytes{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, a, b, c, d});
}
// 2001:db8:0:<net>::<host>
Ip v6(std::uint8_t net, std::uint8_t host) {
  return Ip(Ip::Bytes{0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, net, 0, 0, 0, 0, 0, 0, 0, host});
}

std::int64_t ms(AuthThrottle::Duration d) {
  return std::chrono::duration_cast<milliseconds>(d).count();
}

TEST(AuthThrottle, DelaysGrowAfterTwoFreeFailuresThenRefuse) {
  AuthThrottle t;  // defaults: 2 free, 1 s doubling to 30 s, refused at 10 for 10 min
  const Ip ip = v4(192, 0, 2, 1);
  struct Step {
    int failure;
    std::int64_t delay_ms;
  };
  const Step steps[] = {
      {1, 0},    {2, 0},     {3, 1000},  {4, 2000},  {5, 4000},
      {6, 8000}, {7, 16000}, {8, 30000}, {9, 30000}, {10, 30000},
  };
  Time now = t0;
  for (const Step& s : steps) {
    ASSERT_TRUE(t.on_attempt(ip, now).allowed) << "before failure " << s.failure;
    AuthThrottle::Duration d = t.on_failure(ip, now);
    EXPECT_EQ(ms(d), s.delay_ms) << "failure " << s.failure;
    now += d + seconds(1);  // the client retries a second after the 535
  }
  Time refused_at = now - seconds(31);  // the tenth failure
  auto refused = t.on_attempt(ip, now);
  EXPECT_FALSE(refused.allowed);
  EXPECT_EQ(refused.refused_until, refused_at + minutes(10));
  EXPECT_FALSE(t.on_attempt(ip, refused.refused_until - seconds(1)).allowed);
  EXPECT_TRUE(t.on_attempt(ip, refused.refused_until).allowed);
  EXPECT_TRUE(t.on_attempt(v4(192, 0, 2, 2), now).allowed) << "other addresses go on";

  auto c = t.counters();
  EXPECT_EQ(c.failures_total, 10u);
  EXPECT_EQ(c.refusals_total, 2u);
  EXPECT_EQ(c.tracked, 1u);
}

TEST(AuthThrottle, FailingAgainAfterARefusalRefusesAgainAtOnce) {
  AuthThrottle t;
  const Ip ip = v4(192, 0, 2, 1);
  for (int i = 0; i < 10; ++i) t.on_failure(ip, t0);
  Time after = t0 + minutes(10);
  ASSERT_TRUE(t.on_attempt(ip, after).allowed);
  EXPECT_EQ(ms(t.on_failure(ip, after)), 30000);
  EXPECT_FALSE(t.on_attempt(ip, after).allowed) << "the count was kept";
}

TEST(AuthThrottle, SuccessAndQuietTimeForgetFailures) {
  struct Case {
    const char* name;
    seconds quiet;  // between the fourth failure and the next
    bool success;
    std::int64_t next_delay_ms;
  };
  const Case cases[] = {
      {"straight on", seconds(1), false, 4000},
      {"not quiet long enough", minutes(15) - seconds(1), false, 4000},
      {"quiet for the window", minutes(15), false, 0},
      {"a success", seconds(1), true, 0},
  };
  for (const Case& c : cases) {
    AuthThrottle t;
    const Ip ip = v4(198, 51, 100, 7);
    for (int i = 0; i < 4; ++i) t.on_failure(ip, t0);
    if (c.success) t.on_success(ip);
    EXPECT_EQ(ms(t.on_failure(ip, t0 + c.quiet)), c.next_delay_ms) << c.name;
  }
}

TEST(AuthThrottle, NeverRefusesBeforeTheThirdFailure) {
  struct Case {
    int refuse_after;
    int refused_after;  // failures before the first refusal
  };
  const Case cases[] = {{0, 3}, {1, 3}, {2, 3}, {3, 3}, {5, 5}};
  for (const Case& c : cases) {
    AuthThrottle t(ThrottlePolicy{.refuse_after = c.refuse_after});
    const Ip ip = v4(192, 0, 2, 9);
    int failures = 0;
    while (t.on_attempt(ip, t0).allowed && failures < 20) {
      t.on_failure(ip, t0);
      ++failures;
    }
    EXPECT_EQ(failures, c.refused_after) << "refuse_after " << c.refuse_after;
  }
}

TEST(AuthThrottle, DelayIsCappedWithoutOverflow) {
  AuthThrottle t(ThrottlePolicy{.max_delay = minutes(1), .refuse_after = 1000});
  const Ip ip = v4(192, 0, 2, 1);
  AuthThrottle::Duration last{};
  for (int i = 0; i < 500; ++i) last = t.on_failure(ip, t0);
  EXPECT_EQ(ms(last), 60000);
}

TEST(AuthThrottle, CountsIpv6PerSlash64AndIpv4PerAddress) {
  struct Case {
    const char* name;
    int prefix_bits;
    Ip first, second;
    bool shared;
  };
  const Case cases[] = {
      {"two hosts of one /64", 64, v6(1, 1), v6(1, 2), true},
      {"two /64s", 64, v6(1, 1), v6(2, 1), false},
      {"per address when asked", 128, v6(1, 1), v6(1, 2), false},
      {"IPv4 neighbours", 64, v4(192, 0, 2, 1), v4(192, 0, 2, 2), false},
  };
  for (const Case& c : cases) {
    AuthThrottle t(ThrottlePolicy{.ipv6_prefix_bits = c.prefix_bits});
    for (int i = 0; i < 3; ++i) t.on_failure(c.first, t0);
    EXPECT_EQ(ms(t.on_failure(c.second, t0)), c.shared ? 2000 : 0) << c.name;
  }
}

TEST(AuthThrottle, TracksAtMostMaxTrackedAddressesDroppingTheOldest) {
  AuthThrottle t(ThrottlePolicy{.max_tracked = 3});
  for (std::uint8_t i = 1; i <= 5; ++i) {
    for (int k = 0; k < 3; ++k) t.on_failure(v4(192, 0, 2, i), t0 + seconds(i));
  }
  auto c = t.counters();
  EXPECT_EQ(c.tracked, 3u);
  EXPECT_EQ(c.evictions_total, 2u);
  Time later = t0 + seconds(10);
  EXPECT_EQ(ms(t.on_failure(v4(192, 0, 2, 1), later)), 0) << "the oldest was forgotten";
  EXPECT_EQ(ms(t.on_failure(v4(192, 0, 2, 5), later)), 2000) << "the newest was kept";
  EXPECT_EQ(t.counters().tracked, 3u);
}

TEST(AuthThrottle, QuietAddressesAreDroppedButRefusedOnesKept) {
  AuthThrottle t;
  for (int i = 0; i < 10; ++i) t.on_failure(v4(203, 0, 113, 1), t0);  // refused for 10 min
  t.on_failure(v4(203, 0, 113, 2), t0);
  ASSERT_EQ(t.counters().tracked, 2u);
  // 15 min on, a failure elsewhere prunes the quiet address; the refusal is
  // over too, so both go.
  t.on_failure(v4(203, 0, 113, 3), t0 + minutes(15));
  EXPECT_EQ(t.counters().tracked, 1u);

  AuthThrottle longer(ThrottlePolicy{.refusal = minutes(60)});
  for (int i = 0; i < 10; ++i) longer.on_failure(v4(203, 0, 113, 1), t0);
  longer.on_failure(v4(203, 0, 113, 3), t0 + minutes(15));
  EXPECT_EQ(longer.counters().tracked, 2u) << "still refused: kept";
  EXPECT_FALSE(longer.on_attempt(v4(203, 0, 113, 1), t0 + minutes(15)).allowed);
}

// Issue 14: 40 connections from one address that all say AUTH before the
// first verdict are not all checked.
TEST(AuthThrottle, AttemptsInProgressCountAgainstTheBudget) {
  AuthThrottle t;  // refused at 10
  const Ip ip = v4(192, 0, 2, 1);
  int allowed = 0;
  for (int i = 0; i < 40; ++i) allowed += t.on_attempt(ip, t0).allowed ? 1 : 0;
  EXPECT_EQ(allowed, 10) << "at most refuse_after open at once";
  EXPECT_EQ(t.counters().refusals_total, 30u);
  EXPECT_EQ(t.counters().in_progress, 10u);
  EXPECT_TRUE(t.on_attempt(v4(192, 0, 2, 2), t0).allowed) << "other addresses go on";
  // Their verdicts: ten failures, and the address is refused.
  for (int i = 0; i < 10; ++i) t.on_failure(ip, t0);
  EXPECT_EQ(t.counters().in_progress, 1u) << "settled";
  auto d = t.on_attempt(ip, t0);
  EXPECT_FALSE(d.allowed);
  EXPECT_EQ(d.refused_until, t0 + minutes(10));
}

TEST(AuthThrottle, FailuresAndOpenAttemptsShareTheBudget) {
  AuthThrottle t;
  const Ip ip = v4(192, 0, 2, 1);
  for (int i = 0; i < 7; ++i) {
    ASSERT_TRUE(t.on_attempt(ip, t0).allowed);
    t.on_failure(ip, t0);
  }
  int allowed = 0;
  for (int i = 0; i < 10; ++i) allowed += t.on_attempt(ip, t0).allowed ? 1 : 0;
  EXPECT_EQ(allowed, 3) << "7 failures leave room for 3 more guesses";
}

TEST(AuthThrottle, ASuccessSettlesItsAttemptWithoutAFailure) {
  AuthThrottle t(ThrottlePolicy{.refuse_after = 3});
  const Ip ip = v4(192, 0, 2, 1);
  for (int i = 0; i < 50; ++i) {
    ASSERT_TRUE(t.on_attempt(ip, t0).allowed) << "success " << i;
    t.on_success(ip);
  }
  // Three in parallel, all right: the next ones go on too.
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(t.on_attempt(ip, t0).allowed);
  EXPECT_FALSE(t.on_attempt(ip, t0).allowed) << "three open fill the budget";
  for (int i = 0; i < 3; ++i) t.on_success(ip);
  EXPECT_TRUE(t.on_attempt(ip, t0).allowed);
  EXPECT_EQ(t.counters().failures_total, 0u);
  EXPECT_EQ(t.counters().tracked, 0u) << "successes leave no failure entry";
}

TEST(AuthThrottle, AnAttemptWithoutAVerdictClosesAfterTheTimeout) {
  AuthThrottle t(ThrottlePolicy{.attempt_timeout = seconds(60)});
  const Ip ip = v4(192, 0, 2, 1);
  for (int i = 0; i < 10; ++i) ASSERT_TRUE(t.on_attempt(ip, t0 + seconds(i)).allowed);
  auto d = t.on_attempt(ip, t0 + seconds(30));
  EXPECT_FALSE(d.allowed) << "ten open (sessions torn down while hashing)";
  EXPECT_EQ(d.refused_until, t0 + seconds(60));
  EXPECT_TRUE(t.on_attempt(ip, t0 + seconds(60)).allowed) << "the oldest has closed";
  EXPECT_FALSE(t.on_attempt(ip, t0 + seconds(60)).allowed);
  // A failure after its attempt closed is counted all the same.
  t.on_failure(ip, t0 + seconds(200));
  EXPECT_EQ(t.counters().failures_total, 1u);
}

TEST(AuthThrottle, AnAttemptThatCheckedNoPasswordFreesItsPlaceAtOnce) {
  AuthThrottle t(ThrottlePolicy{.refuse_after = 3});
  const Ip ip = v4(192, 0, 2, 1);
  for (int i = 0; i < 50; ++i) {
    ASSERT_TRUE(t.on_attempt(ip, t0).allowed) << "abandoned " << i;
    t.on_abandoned(ip);  // bad base64, a cancel, 454, the client gone
  }
  EXPECT_EQ(t.counters().failures_total, 0u);
  EXPECT_EQ(t.counters().in_progress, 0u);
  // Still three at once at most: an attempt open is not yet abandoned.
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(t.on_attempt(ip, t0).allowed);
  EXPECT_FALSE(t.on_attempt(ip, t0).allowed);
  t.on_abandoned(ip);
  EXPECT_TRUE(t.on_attempt(ip, t0).allowed);
  // Failures still count: two plus one open fill the budget of three.
  for (int i = 0; i < 4; ++i) t.on_failure(ip, t0);
  EXPECT_FALSE(t.on_attempt(ip, t0).allowed) << "refused after the failures";
}

TEST(AuthThrottle, AfterARefusalOneAttemptAtATime) {
  AuthThrottle t;
  const Ip ip = v4(192, 0, 2, 1);
  for (int i = 0; i < 10; ++i) t.on_failure(ip, t0);
  Time after = t0 + minutes(10);
  EXPECT_TRUE(t.on_attempt(ip, after).allowed);
  EXPECT_FALSE(t.on_attempt(ip, after).allowed) << "the count was kept: one guess in flight";
}

TEST(AuthThrottle, OpenAttemptsAreCountedPerSlash64) {
  AuthThrottle t;
  int allowed = 0;
  for (std::uint8_t host = 1; host <= 40; ++host) allowed += t.on_attempt(v6(1, host), t0).allowed;
  EXPECT_EQ(allowed, 10);
  EXPECT_TRUE(t.on_attempt(v6(2, 1), t0).allowed) << "another /64";
}

TEST(AuthThrottle, OpenAttemptsStayBoundedOverManyAddresses) {
  AuthThrottle t(ThrottlePolicy{.max_tracked = 100, .attempt_timeout = seconds(60)});
  for (int i = 0; i < 1000; ++i)
    t.on_attempt(v4(10, 0, static_cast<std::uint8_t>(i / 256), static_cast<std::uint8_t>(i)),
                 t0 + seconds(i));
  EXPECT_LE(t.counters().in_progress, 200u);
}

}  // namespace
}  // namespace smtplb::auth
