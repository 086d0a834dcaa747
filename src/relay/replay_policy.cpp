#include "relay/replay_policy.hpp"

namespace smtplb::relay {

namespace {

using upstream::Failure;

Decision proceed() {
  return {};
}
Decision answer(upstream::Failure why = upstream::Failure::kNone) {
  return {Verdict::kAnswer, why, Health::kNone};
}
Decision replay(upstream::Failure why, Health h, bool dup = false) {
  return {Verdict::kReplay, why, h, dup};
}
Decision recipient_fault(upstream::Failure why) {
  return {Verdict::kRecipientFault, why, Health::kSuspect};
}

// The failure a stage's broken connection is logged as.
upstream::Failure dropped_at(Stage s) {
  return s == Stage::kConnect ? upstream::Failure::kConnectRefused : upstream::Failure::kDropped;
}
upstream::Failure stalled_at(Stage s) {
  if (s == Stage::kConnect) return upstream::Failure::kConnectTimeout;
  if (s == Stage::kFinalDot) return upstream::Failure::kSilentFinalDot;
  return upstream::Failure::kStalled;
}

// What every stage does with a broken connection, a 421 or a protocol
// violation: leave the backend.  Only a violation waits for a second,
// unrelated transaction before it counts against the backend.
Decision broken(Stage s, Outcome o) {
  const bool dup = s == Stage::kFinalDot;  // the dot went out whole
  switch (o) {
    case Outcome::kShuttingDown:
      return replay(upstream::Failure::kShuttingDown, Health::kCharge, dup);
    case Outcome::kDropped:
      return replay(dropped_at(s), Health::kCharge, dup);
    case Outcome::kStalled:
      return replay(stalled_at(s), Health::kCharge, dup);
    default:
      return replay(upstream::Failure::kProtocol, Health::kSuspect, dup);
  }
}

// A refusal from a backend that is not first-hand cannot be the client's
// answer: the client holds 250s another backend gave.
Decision refusal(Outcome o, const Context& ctx) {
  if (o == Outcome::kPermanent && ctx.first_hand) return answer(upstream::Failure::kPermanent);
  if (o == Outcome::kPermanent) return replay(upstream::Failure::kPermanent, Health::kNone);
  return replay(upstream::Failure::kTransient, Health::kNone);
}

}  // namespace

Outcome classify(Stage stage, const smtp::Reply& r) {
  if (r.code == 421) return Outcome::kShuttingDown;
  const int cls = r.code / 100;
  if (cls == 4) return Outcome::kTransient;
  if (cls == 5) return Outcome::kPermanent;
  switch (stage) {
    case Stage::kData:
      // Only 354 opens the data phase; a 2xx to DATA is out of step.
      return r.code == 354 ? Outcome::kPositive : Outcome::kProtocol;
    case Stage::kGreeting:
    case Stage::kMail:
    case Stage::kReplayedRcpt:
    case Stage::kRcpt:
    case Stage::kFinalDot:
      // RFC 5321 4.3.2: 2xx, 4xx or 5xx; a 1xx/3xx (354 to MAIL) is not
      // an answer to these commands.
      return cls == 2 ? Outcome::kPositive : Outcome::kProtocol;
    case Stage::kConnect:
    case Stage::kMidData:
      break;  // nothing was asked: any reply is unsolicited
  }
  return Outcome::kProtocol;
}

Outcome outcome_of(upstream::Failure f) {
  switch (f) {
    case upstream::Failure::kNone:
      return Outcome::kPositive;
    case upstream::Failure::kConnectRefused:
    case upstream::Failure::kDropped:
      return Outcome::kDropped;
    case upstream::Failure::kConnectTimeout:
    case upstream::Failure::kStalled:
    case upstream::Failure::kSilentFinalDot:
      return Outcome::kStalled;
    case upstream::Failure::kShuttingDown:
      return Outcome::kShuttingDown;
    case upstream::Failure::kTransient:
      return Outcome::kTransient;
    case upstream::Failure::kPermanent:
      return Outcome::kPermanent;
    default:
      return Outcome::kProtocol;
  }
}

Decision decide(Stage stage, Outcome o, const Context& ctx) {
  const bool nothing_asked = stage == Stage::kConnect || stage == Stage::kMidData;
  if (o == Outcome::kPositive) {
    if (stage == Stage::kRcpt || stage == Stage::kFinalDot) return answer();
    return proceed();
  }
  if (o == Outcome::kTransient || o == Outcome::kPermanent) {
    switch (stage) {
      case Stage::kConnect:
      case Stage::kMidData:
        break;  // a reply nobody asked for: below
      case Stage::kGreeting:
        return replay(upstream::Failure::kBannerRefused, Health::kCharge);
      case Stage::kRcpt:
        // The backend is authoritative on the recipient the client asks
        // about (cut-through, no backscatter); the session goes on.
        return answer();
      case Stage::kReplayedRcpt:
        return replay(upstream::Failure::kRecipientRefused, Health::kNone);
      case Stage::kMail:
      case Stage::kData:
      case Stage::kFinalDot:
        return refusal(o, ctx);
    }
  }
  // Unasked-for 4xx/5xx are a violation; a 421 may come at any time
  // (RFC 5321 3.8: a server closing down sends it unasked).
  if (nothing_asked && (o == Outcome::kTransient || o == Outcome::kPermanent))
    return broken(stage, Outcome::kProtocol);
  // A stall or a garbled reply at the recipient the client is asking
  // about may be that recipient's doing: it gets its own retry budget.
  if (stage == Stage::kRcpt && (o == Outcome::kStalled || o == Outcome::kProtocol))
    return recipient_fault(o == Outcome::kStalled ? upstream::Failure::kStalled
                                                  : upstream::Failure::kProtocol);
  return broken(stage, o);
}

const char* to_string(Stage s) {
  switch (s) {
    case Stage::kConnect:
      return "connect";
    case Stage::kGreeting:
      return "greeting";
    case Stage::kMail:
      return "mail";
    case Stage::kReplayedRcpt:
      return "replayed_rcpt";
    case Stage::kRcpt:
      return "rcpt";
    case Stage::kData:
      return "data";
    case Stage::kMidData:
      return "mid_data";
    case Stage::kFinalDot:
      return "final_dot";
  }
  return "?";
}

const char* to_string(Outcome o) {
  switch (o) {
    case Outcome::kPositive:
      return "positive";
    case Outcome::kTransient:
      return "4xx";
    case Outcome::kPermanent:
      return "5xx";
    case Outcome::kShuttingDown:
      return "421";
    case Outcome::kDropped:
      return "dropped";
    case Outcome::kStalled:
      return "stalled";
    case Outcome::kProtocol:
      return "protocol";
  }
  return "?";
}

const char* to_string(Verdict v) {
  switch (v) {
    case Verdict::kProceed:
      return "proceed";
    case Verdict::kAnswer:
      return "answer";
    case Verdict::kReplay:
      return "replay";
    case Verdict::kRecipientFault:
      return "recipient_fault";
  }
  return "?";
}

}  // namespace smtplb::relay
