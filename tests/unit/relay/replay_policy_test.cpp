// replay_policy_test.cpp: the replay policy as one table, every stage x
// every outcome, first-hand and replay backend (relay/replay_policy.hpp).
// A row reads: at this stage, this outcome from a backend that is (or is
// not) first-hand gives this verdict, is logged as this failure, counts
// this way against the backend, and may (or may not) have stored the mail.
#include "relay/replay_policy.hpp"

#include <gtest/gtest.h>

#include <map>
#include <tuple>

namespace smtplb::relay {
namespace {

using upstream::Failure;
constexpr bool kFirst = true;
constexpr bool kReplayed = false;
constexpr bool kDup = true;
constexpr bool kNoDup = false;

struct Row {
  Stage stage;
  Outcome outcome;
  bool first_hand;
  Verdict verdict;
  upstream::Failure why;
  Health health;
  bool dup;
};

// Every combination; for most, first-hand or not makes no difference and
// the row is written twice on purpose, so a change to one shows here.
const Row kTable[] = {
    // connect: refused or timed out; any bytes before asking are a violation
    {Stage::kConnect, Outcome::kPositive, kFirst, Verdict::kProceed, upstream::Failure::kNone,
     Health::kNone, kNoDup},
    {Stage::kConnect, Outcome::kDropped, kFirst, Verdict::kReplay,
     upstream::Failure::kConnectRefused, Health::kCharge, kNoDup},
    {Stage::kConnect, Outcome::kStalled, kFirst, Verdict::kReplay,
     upstream::Failure::kConnectTimeout, Health::kCharge, kNoDup},
    {Stage::kConnect, Outcome::kShuttingDown, kFirst, Verdict::kReplay,
     upstream::Failure::kShuttingDown, Health::kCharge, kNoDup},
    {Stage::kConnect, Outcome::kTransient, kFirst, Verdict::kReplay, upstream::Failure::kProtocol,
     Health::kSuspect, kNoDup},
    {Stage::kConnect, Outcome::kPermanent, kFirst, Verdict::kReplay, upstream::Failure::kProtocol,
     Health::kSuspect, kNoDup},
    {Stage::kConnect, Outcome::kProtocol, kFirst, Verdict::kReplay, upstream::Failure::kProtocol,
     Health::kSuspect, kNoDup},

    // greeting: banner, EHLO, STARTTLS, XCLIENT
    {Stage::kGreeting, Outcome::kPositive, kFirst, Verdict::kProceed, upstream::Failure::kNone,
     Health::kNone, kNoDup},
    {Stage::kGreeting, Outcome::kTransient, kFirst, Verdict::kReplay,
     upstream::Failure::kBannerRefused, Health::kCharge, kNoDup},
    {Stage::kGreeting, Outcome::kPermanent, kReplayed, Verdict::kReplay,
     upstream::Failure::kBannerRefused, Health::kCharge, kNoDup},
    {Stage::kGreeting, Outcome::kShuttingDown, kFirst, Verdict::kReplay,
     upstream::Failure::kShuttingDown, Health::kCharge, kNoDup},
    {Stage::kGreeting, Outcome::kDropped, kFirst, Verdict::kReplay, upstream::Failure::kDropped,
     Health::kCharge, kNoDup},
    {Stage::kGreeting, Outcome::kStalled, kFirst, Verdict::kReplay, upstream::Failure::kStalled,
     Health::kCharge, kNoDup},
    {Stage::kGreeting, Outcome::kProtocol, kFirst, Verdict::kReplay, upstream::Failure::kProtocol,
     Health::kSuspect, kNoDup},

    // MAIL: a 5xx is final only first-hand (DESIGN.md: reaches the client)
    {Stage::kMail, Outcome::kPositive, kFirst, Verdict::kProceed, upstream::Failure::kNone,
     Health::kNone, kNoDup},
    {Stage::kMail, Outcome::kTransient, kFirst, Verdict::kReplay, upstream::Failure::kTransient,
     Health::kNone, kNoDup},
    {Stage::kMail, Outcome::kTransient, kReplayed, Verdict::kReplay, upstream::Failure::kTransient,
     Health::kNone, kNoDup},
    {Stage::kMail, Outcome::kPermanent, kFirst, Verdict::kAnswer, upstream::Failure::kPermanent,
     Health::kNone, kNoDup},
    {Stage::kMail, Outcome::kPermanent, kReplayed, Verdict::kReplay, upstream::Failure::kPermanent,
     Health::kNone, kNoDup},
    {Stage::kMail, Outcome::kShuttingDown, kFirst, Verdict::kReplay,
     upstream::Failure::kShuttingDown, Health::kCharge, kNoDup},
    {Stage::kMail, Outcome::kDropped, kFirst, Verdict::kReplay, upstream::Failure::kDropped,
     Health::kCharge, kNoDup},
    {Stage::kMail, Outcome::kStalled, kFirst, Verdict::kReplay, upstream::Failure::kStalled,
     Health::kCharge, kNoDup},
    // 354 (or any 1xx/3xx) to MAIL: fail over, never passed on (issue 13, 3)
    {Stage::kMail, Outcome::kProtocol, kFirst, Verdict::kReplay, upstream::Failure::kProtocol,
     Health::kSuspect, kNoDup},

    // RCPT of a recipient the client holds a 250 for: any refusal moves on
    {Stage::kReplayedRcpt, Outcome::kPositive, kReplayed, Verdict::kProceed,
     upstream::Failure::kNone, Health::kNone, kNoDup},
    {Stage::kReplayedRcpt, Outcome::kTransient, kReplayed, Verdict::kReplay,
     upstream::Failure::kRecipientRefused, Health::kNone, kNoDup},
    {Stage::kReplayedRcpt, Outcome::kPermanent, kReplayed, Verdict::kReplay,
     upstream::Failure::kRecipientRefused, Health::kNone, kNoDup},
    {Stage::kReplayedRcpt, Outcome::kShuttingDown, kReplayed, Verdict::kReplay,
     upstream::Failure::kShuttingDown, Health::kCharge, kNoDup},
    {Stage::kReplayedRcpt, Outcome::kDropped, kReplayed, Verdict::kReplay,
     upstream::Failure::kDropped, Health::kCharge, kNoDup},
    {Stage::kReplayedRcpt, Outcome::kStalled, kReplayed, Verdict::kReplay,
     upstream::Failure::kStalled, Health::kCharge, kNoDup},
    {Stage::kReplayedRcpt, Outcome::kProtocol, kReplayed, Verdict::kReplay,
     upstream::Failure::kProtocol, Health::kSuspect, kNoDup},

    // RCPT the client is asking about: the backend's 2xx/4xx/5xx is the answer
    {Stage::kRcpt, Outcome::kPositive, kFirst, Verdict::kAnswer, upstream::Failure::kNone,
     Health::kNone, kNoDup},
    {Stage::kRcpt, Outcome::kPositive, kReplayed, Verdict::kAnswer, upstream::Failure::kNone,
     Health::kNone, kNoDup},
    {Stage::kRcpt, Outcome::kTransient, kFirst, Verdict::kAnswer, upstream::Failure::kNone,
     Health::kNone, kNoDup},
    {Stage::kRcpt, Outcome::kPermanent, kFirst, Verdict::kAnswer, upstream::Failure::kNone,
     Health::kNone, kNoDup},
    {Stage::kRcpt, Outcome::kPermanent, kReplayed, Verdict::kAnswer, upstream::Failure::kNone,
     Health::kNone, kNoDup},
    {Stage::kRcpt, Outcome::kShuttingDown, kFirst, Verdict::kReplay,
     upstream::Failure::kShuttingDown, Health::kCharge, kNoDup},
    {Stage::kRcpt, Outcome::kDropped, kFirst, Verdict::kReplay, upstream::Failure::kDropped,
     Health::kCharge, kNoDup},
    // slow verification of one address (issue 21, 5), a reply garbled for
    // one address (issue 13, 2): that recipient's budget, not the pool's
    {Stage::kRcpt, Outcome::kStalled, kFirst, Verdict::kRecipientFault, upstream::Failure::kStalled,
     Health::kSuspect, kNoDup},
    {Stage::kRcpt, Outcome::kProtocol, kFirst, Verdict::kRecipientFault,
     upstream::Failure::kProtocol, Health::kSuspect, kNoDup},
    {Stage::kRcpt, Outcome::kProtocol, kReplayed, Verdict::kRecipientFault,
     upstream::Failure::kProtocol, Health::kSuspect, kNoDup},

    // DATA: 354 proceeds; a replay backend's 5xx is not final (issue 21, 1)
    {Stage::kData, Outcome::kPositive, kFirst, Verdict::kProceed, upstream::Failure::kNone,
     Health::kNone, kNoDup},
    {Stage::kData, Outcome::kTransient, kFirst, Verdict::kReplay, upstream::Failure::kTransient,
     Health::kNone, kNoDup},
    {Stage::kData, Outcome::kPermanent, kFirst, Verdict::kAnswer, upstream::Failure::kPermanent,
     Health::kNone, kNoDup},
    {Stage::kData, Outcome::kPermanent, kReplayed, Verdict::kReplay, upstream::Failure::kPermanent,
     Health::kNone, kNoDup},
    {Stage::kData, Outcome::kShuttingDown, kFirst, Verdict::kReplay,
     upstream::Failure::kShuttingDown, Health::kCharge, kNoDup},
    {Stage::kData, Outcome::kDropped, kFirst, Verdict::kReplay, upstream::Failure::kDropped,
     Health::kCharge, kNoDup},
    {Stage::kData, Outcome::kStalled, kFirst, Verdict::kReplay, upstream::Failure::kStalled,
     Health::kCharge, kNoDup},
    {Stage::kData, Outcome::kProtocol, kFirst, Verdict::kReplay, upstream::Failure::kProtocol,
     Health::kSuspect, kNoDup},

    // writing the message: the dot did not go out whole, so no duplicate
    {Stage::kMidData, Outcome::kPositive, kFirst, Verdict::kProceed, upstream::Failure::kNone,
     Health::kNone, kNoDup},
    {Stage::kMidData, Outcome::kDropped, kFirst, Verdict::kReplay, upstream::Failure::kDropped,
     Health::kCharge, kNoDup},
    {Stage::kMidData, Outcome::kStalled, kFirst, Verdict::kReplay, upstream::Failure::kStalled,
     Health::kCharge, kNoDup},
    {Stage::kMidData, Outcome::kShuttingDown, kFirst, Verdict::kReplay,
     upstream::Failure::kShuttingDown, Health::kCharge, kNoDup},
    // the backend spoke before the dot (an extra reply behind its 354)
    {Stage::kMidData, Outcome::kTransient, kFirst, Verdict::kReplay, upstream::Failure::kProtocol,
     Health::kSuspect, kNoDup},
    {Stage::kMidData, Outcome::kPermanent, kFirst, Verdict::kReplay, upstream::Failure::kProtocol,
     Health::kSuspect, kNoDup},
    {Stage::kMidData, Outcome::kProtocol, kFirst, Verdict::kReplay, upstream::Failure::kProtocol,
     Health::kSuspect, kNoDup},

    // the final dot went out whole: leaving now may leave a copy behind
    {Stage::kFinalDot, Outcome::kPositive, kFirst, Verdict::kAnswer, upstream::Failure::kNone,
     Health::kNone, kNoDup},
    {Stage::kFinalDot, Outcome::kPositive, kReplayed, Verdict::kAnswer, upstream::Failure::kNone,
     Health::kNone, kNoDup},
    {Stage::kFinalDot, Outcome::kTransient, kFirst, Verdict::kReplay, upstream::Failure::kTransient,
     Health::kNone, kNoDup},
    {Stage::kFinalDot, Outcome::kPermanent, kFirst, Verdict::kAnswer, upstream::Failure::kPermanent,
     Health::kNone, kNoDup},
    // after a silent dot elsewhere the next backend is a replay backend:
    // its 5xx must not bounce mail the first may have stored (issue 21, 2)
    {Stage::kFinalDot, Outcome::kPermanent, kReplayed, Verdict::kReplay,
     upstream::Failure::kPermanent, Health::kNone, kNoDup},
    {Stage::kFinalDot, Outcome::kShuttingDown, kFirst, Verdict::kReplay,
     upstream::Failure::kShuttingDown, Health::kCharge, kDup},
    {Stage::kFinalDot, Outcome::kDropped, kFirst, Verdict::kReplay, upstream::Failure::kDropped,
     Health::kCharge, kDup},
    {Stage::kFinalDot, Outcome::kStalled, kFirst, Verdict::kReplay,
     upstream::Failure::kSilentFinalDot, Health::kCharge, kDup},
    {Stage::kFinalDot, Outcome::kProtocol, kFirst, Verdict::kReplay, upstream::Failure::kProtocol,
     Health::kSuspect, kDup},
};

TEST(ReplayPolicy, EveryRowOfTheTable) {
  for (const Row& row : kTable) {
    SCOPED_TRACE(std::string(to_string(row.stage)) + " x " + to_string(row.outcome) +
                 (row.first_hand ? " (first-hand)" : " (replay backend)"));
    Decision d = decide(row.stage, row.outcome, Context{row.first_hand});
    EXPECT_EQ(d.verdict, row.verdict) << "got " << to_string(d.verdict);
    EXPECT_EQ(d.why, row.why) << "got " << upstream::to_string(d.why);
    EXPECT_EQ(d.health, row.health);
    EXPECT_EQ(d.possible_duplicate, row.dup);
  }
}

TEST(ReplayPolicy, TheTableCoversEveryStageAndOutcome) {
  const Stage stages[] = {Stage::kConnect, Stage::kGreeting, Stage::kMail,    Stage::kReplayedRcpt,
                          Stage::kRcpt,    Stage::kData,     Stage::kMidData, Stage::kFinalDot};
  const Outcome outcomes[] = {Outcome::kPositive,     Outcome::kTransient, Outcome::kPermanent,
                              Outcome::kShuttingDown, Outcome::kDropped,   Outcome::kStalled,
                              Outcome::kProtocol};
  std::map<std::pair<Stage, Outcome>, int> seen;
  for (const Row& row : kTable) ++seen[{row.stage, row.outcome}];
  for (Stage s : stages)
    for (Outcome o : outcomes)
      EXPECT_TRUE(seen.count({s, o})) << to_string(s) << " x " << to_string(o) << " has no row";
}

TEST(ReplayPolicy, OnlyAFirstHandBackendCanMakeARefusalFinal) {
  // Whatever the stage, a replay backend's refusal never becomes the
  // client's answer for mail it already holds 250s for.
  for (Stage s : {Stage::kMail, Stage::kReplayedRcpt, Stage::kData, Stage::kFinalDot})
    for (Outcome o : {Outcome::kTransient, Outcome::kPermanent}) {
      Decision d = decide(s, o, Context{false});
      EXPECT_EQ(d.verdict, Verdict::kReplay) << to_string(s) << " x " << to_string(o);
    }
}

TEST(ReplayPolicy, ReplyKindsByCommand) {
  struct Case {
    Stage stage;
    int code;
    Outcome want;
  };
  const Case cases[] = {
      {Stage::kMail, 250, Outcome::kPositive},
      {Stage::kMail, 354, Outcome::kProtocol},
      {Stage::kMail, 451, Outcome::kTransient},
      {Stage::kMail, 421, Outcome::kShuttingDown},
      {Stage::kMail, 550, Outcome::kPermanent},
      {Stage::kRcpt, 250, Outcome::kPositive},
      {Stage::kRcpt, 251, Outcome::kPositive},
      {Stage::kRcpt, 252, Outcome::kPositive},
      {Stage::kRcpt, 354, Outcome::kProtocol},
      {Stage::kRcpt, 550, Outcome::kPermanent},
      {Stage::kReplayedRcpt, 354, Outcome::kProtocol},
      {Stage::kData, 354, Outcome::kPositive},
      {Stage::kData, 250, Outcome::kProtocol},
      {Stage::kData, 334, Outcome::kProtocol},
      {Stage::kData, 554, Outcome::kPermanent},
      {Stage::kData, 451, Outcome::kTransient},
      {Stage::kFinalDot, 250, Outcome::kPositive},
      {Stage::kFinalDot, 354, Outcome::kProtocol},
      {Stage::kFinalDot, 554, Outcome::kPermanent},
      {Stage::kFinalDot, 421, Outcome::kShuttingDown},
      {Stage::kGreeting, 220, Outcome::kPositive},
      {Stage::kGreeting, 354, Outcome::kProtocol},
      {Stage::kMidData, 250, Outcome::kProtocol},
      {Stage::kConnect, 220, Outcome::kProtocol},
  };
  for (const Case& c : cases) {
    smtp::Reply r;
    r.code = c.code;
    EXPECT_EQ(classify(c.stage, r), c.want) << to_string(c.stage) << " " << c.code;
  }
}

TEST(ReplayPolicy, SessionFailuresMapToOutcomes) {
  EXPECT_EQ(outcome_of(upstream::Failure::kConnectRefused), Outcome::kDropped);
  EXPECT_EQ(outcome_of(upstream::Failure::kDropped), Outcome::kDropped);
  EXPECT_EQ(outcome_of(upstream::Failure::kConnectTimeout), Outcome::kStalled);
  EXPECT_EQ(outcome_of(upstream::Failure::kStalled), Outcome::kStalled);
  EXPECT_EQ(outcome_of(upstream::Failure::kShuttingDown), Outcome::kShuttingDown);
  EXPECT_EQ(outcome_of(upstream::Failure::kProtocol), Outcome::kProtocol);
}

}  // namespace
}  // namespace smtplb::relay
