// replay_policy.hpp: what a backend's answer at each stage of a transaction
// means for the client, the message and the backend's standing.
//
// One pure function, decide(stage, outcome, context), is the whole replay
// policy (DESIGN.md "The data path" step 5, "Backend replies are a strict
// sequence"); RelayTransaction asks it at every step and does what it says.
// classify() turns a backend's reply into an outcome for the command it
// answers: a reply of the wrong kind for its command (354 to MAIL or RCPT,
// 250 to DATA, a 1xx/3xx to the final dot) is a protocol violation, never
// a refusal to pass on.
//
// The rules, in short:
//  * A 5xx is final only from a backend that is first-hand for the client:
//    one whose replies are all the 2xx the client holds.  A replay
//    backend's refusal (of MAIL, of a recipient the client holds a 250 for,
//    of DATA or of the final dot) moves the transaction to the next backend,
//    and the client gets 451 4.4.x when none is left: never a bounce for
//    mail that another backend may have stored, never a silent partial
//    delivery.
//  * A protocol violation abandons the attempt (the connection is closed,
//    never pooled) and replays; it is charged to the backend's health only
//    when it repeats on unrelated transactions (Health::kSuspect), so one
//    odd recipient cannot take the pool down.
//  * At the RCPT the client is asking about, a stall or a protocol
//    violation may be that recipient's doing (slow verification, a reply
//    the backend garbles for that address): kRecipientFault, which the
//    transaction retries on another backend and then answers for that
//    recipient alone with a 4xx.
//  * Whatever leaves a backend after its final dot went out whole may have
//    been stored there (RFC 1047): possible_duplicate.
#pragma once

#include "smtp/reply.hpp"
#include "upstream/failure.hpp"

namespace smtplb::relay {

enum class Stage {
  kConnect,       // TCP connect, PROXY header, TLS handshake
  kGreeting,      // banner, EHLO/HELO, STARTTLS, XCLIENT
  kMail,          // MAIL FROM
  kReplayedRcpt,  // RCPT of a recipient the client already holds a 2xx for
  kRcpt,          // RCPT of the recipient the client is asking about now
  kData,          // the DATA command
  kMidData,       // writing the message, up to and including its final dot
  kFinalDot,      // waiting for the reply to the final dot
};

enum class Outcome {
  kPositive,      // the reply the stage expects: 2xx, or 354 to DATA
  kTransient,     // 4xx other than 421
  kPermanent,     // 5xx
  kShuttingDown,  // 421: the backend is going away
  kDropped,       // the connection closed or was reset (refused, at kConnect)
  kStalled,       // no complete reply in time (a connect timeout, at kConnect)
  kProtocol,      // malformed, of the wrong kind for the command, or unasked for
};

enum class Verdict {
  kProceed,         // go on with this backend
  kAnswer,          // the backend's reply is the client's answer; the backend stays
  kReplay,          // leave this backend; the transaction moves to the next one
  kRecipientFault,  // leave this backend; repeated, the recipient alone gets 4xx
};

enum class Health {
  kNone,     // no sign of ill health (a refusal, a disagreement)
  kCharge,   // counts towards passive ejection now
  kSuspect,  // counts only when it repeats on an unrelated transaction
};

struct Context {
  // Every 2xx the client holds for this transaction came from this
  // backend: it did not start by replaying recipients another one took.
  bool first_hand = true;
};

struct Decision {
  Verdict verdict = Verdict::kProceed;
  upstream::Failure why = upstream::Failure::kNone;  // why the backend was left, for logs
  Health health = Health::kNone;
  bool possible_duplicate = false;  // the backend may have stored the message

  friend bool operator==(const Decision&, const Decision&) = default;
};

// The outcome of a complete, well-formed reply to the command of `stage`.
Outcome classify(Stage stage, const smtp::Reply& reply);

// The outcome of a failed read or write (upstream::Failure from the session).
Outcome outcome_of(upstream::Failure f);

Decision decide(Stage stage, Outcome outcome, const Context& ctx);

const char* to_string(Stage s);
const char* to_string(Outcome o);
const char* to_string(Verdict v);

}  // namespace smtplb::relay
