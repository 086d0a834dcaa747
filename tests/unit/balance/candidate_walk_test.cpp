// candidate_walk_test.cpp: the walk over a transaction's candidates
// (balance/candidate_walk.hpp), on a fixed clock: order kept, down backends
// last, drained ones skipped, limits waited for within pool_wait, tries
// counted only for real attempts.
#include "balance/candidate_walk.hpp"

#include <gtest/gtest.h>

#include <set>

namespace smtplb::balance {
namespace {

using namespace std::chrono_literals;
using Step = CandidateWalk::Step;
const auto kT0 = CandidateWalk::Clock::time_point{} + 1h;

struct Pool {
  std::set<int> down, drained, full;
  Step next(CandidateWalk& w, CandidateWalk::Clock::time_point now = kT0) {
    return w.next(
        now, [&](int i) { return !down.count(i); }, [&](int i) { return !drained.count(i); },
        [&](int i) { return !full.count(i); });
  }
};

TEST(CandidateWalk, TriesInOrderWithinMaxTries) {
  CandidateWalk w;
  Pool p;
  w.start({2, 0, 1}, 2, kT0, 5s);
  EXPECT_EQ(p.next(w).backend, 2);
  EXPECT_EQ(p.next(w).backend, 0);
  EXPECT_EQ(p.next(w).kind, Step::kExhausted);  // max_tries 2
  EXPECT_TRUE(w.exhausted());
}

TEST(CandidateWalk, ABackendDownSinceTheOrderYieldsToTheOthers) {
  CandidateWalk w;
  Pool p;
  w.start({0, 1, 2}, 3, kT0, 5s);
  p.down = {1};
  EXPECT_EQ(p.next(w).backend, 0);
  EXPECT_EQ(p.next(w).backend, 2);
  EXPECT_EQ(p.next(w).backend, 1);  // still tried, last: a stale mark never stops mail
}

TEST(CandidateWalk, DrainedBackendsAreSkippedWithoutATry) {
  CandidateWalk w;
  Pool p;
  p.drained = {0};
  w.start({0, 1}, 1, kT0, 5s);
  EXPECT_EQ(p.next(w).backend, 1);
  EXPECT_EQ(p.next(w).kind, Step::kExhausted);
}

TEST(CandidateWalk, BackendsAtTheirLimitsAreWaitedForThenTried) {
  CandidateWalk w;
  Pool p;
  p.full = {0, 1};
  w.start({0, 1}, 3, kT0, 5s);
  EXPECT_EQ(p.next(w).kind, Step::kWait);
  p.full = {1};
  w.again();
  EXPECT_EQ(p.next(w, kT0 + 20ms).backend, 0);
  EXPECT_EQ(p.next(w, kT0 + 20ms).kind, Step::kWait);  // 1 is still full
  EXPECT_EQ(p.next(w, kT0 + 5s).kind, Step::kPoolFull);
}

TEST(CandidateWalk, NoRoomAfterAllCostsNoTry) {
  CandidateWalk w;
  Pool p;
  w.start({0, 1}, 1, kT0, 5s);
  EXPECT_EQ(p.next(w).backend, 0);
  w.no_room();  // every session of 0 busy
  EXPECT_EQ(p.next(w).backend, 1);
  EXPECT_EQ(p.next(w).kind, Step::kExhausted);
}

TEST(CandidateWalk, UncountedAndSameAgain) {
  CandidateWalk w;
  Pool p;
  w.start({0, 1}, 1, kT0, 5s);
  EXPECT_EQ(p.next(w).backend, 0);
  w.same_again();  // a stale pooled session: 0 once more
  EXPECT_EQ(p.next(w).backend, 0);
  w.uncounted();  // 0 lacks an extension: no try spent
  EXPECT_EQ(p.next(w).backend, 1);
  EXPECT_EQ(p.next(w).kind, Step::kExhausted);
}

TEST(CandidateWalk, EachCommandGetsItsOwnPoolWait) {
  CandidateWalk w;
  Pool p;
  p.full = {0};
  w.start({0}, 1, kT0, 5s);
  EXPECT_EQ(p.next(w, kT0 + 6s).kind, Step::kPoolFull);
  w.again();
  w.wait_until(kT0 + 11s);
  EXPECT_EQ(p.next(w, kT0 + 6s).kind, Step::kWait);
}

}  // namespace
}  // namespace smtplb::balance
