// session_machine.hpp: the server side of an SMTP session as a pure state
// machine: which command is allowed in which state, and what it leads to.
//
// One table (session_machine.cpp, as OpenSMTPD's `commands[]` in
// smtp_session.c) pairs every verb with a check and a proceed; in between,
// a per-state gate says where the verb is out of sequence (503 5.5.1).
// Every state change goes through enter().  The machine does no I/O: it is
// given a parsed Command and the facts it cannot know itself (TLS, AUTH,
// the listener's role, the limits), and returns a Step, a value: the reply
// to give, or the Action the I/O layer must carry out first (relay a
// RCPT, read the message, do the TLS handshake...).  The I/O layer then
// reports the outcome (the relay accepted the RCPT, the transaction ended,
// the handshake failed) so that the state stays the truth.
//
// Cheap by design, for it runs on every command of the hot path: a few
// bytes of state, a table of plain function pointers, no allocation but
// the reply itself.
#pragma once

#include <cstdint>
#include <string_view>

#include "smtp/command.hpp"
#include "smtp/reply.hpp"

namespace smtplb::smtp {

enum class SessionState : std::uint8_t {
  kConnected,  // banner given; no HELO/EHLO yet (or TLS just began)
  kGreeted,    // HELO/EHLO given, no transaction
  kMail,       // MAIL accepted, no recipient accepted yet
  kRcpt,       // at least one recipient accepted: DATA may start
  kData,       // DATA proceeded: the I/O layer reads the message
  kTls,        // 220 to STARTTLS given: the handshake runs
  kAuth,       // the AUTH exchange runs
  kClosed,     // QUIT answered, or the session ended
};
inline constexpr int kSessionStates = 8;

const char* to_string(SessionState s);

enum class Greeting : std::uint8_t { kNone, kHelo, kEhlo };

// What the I/O layer does with a Step.
enum class Action : std::uint8_t {
  kReply,      // give the reply; nothing else
  kGreet,      // keep the client's HELO/EHLO name, end any open transaction, give the reply
  kReset,      // end the open transaction (if any), give the reply
  kRelayMail,  // open a transaction (the I/O layer's own limits may still refuse it),
               // then mail_result(); the I/O layer gives the reply
  kRelayRcpt,  // relay policy, routing and the backend's answer, then rcpt_result()
  kStartData,  // the DATA phase through the reply to the final dot, then transaction_ended()
  kStartTls,   // give the reply (220), then the handshake, then tls_result()
  kStartAuth,  // the AUTH exchange, then auth_result(); the I/O layer gives the reply
  kQuit,       // give the reply, then end the session (QUIT, or an HTTP request)
};

const char* to_string(Action a);

// What the machine cannot know: the listener, the connection and the
// configuration of the moment, as the I/O layer sees them for this command.
struct SessionFacts {
  std::string_view hostname;  // in the greeting and closing replies
  std::uint64_t max_message_size = 0;
  int max_recipients = 0;
  bool tls_offered = false;   // STARTTLS on this listener
  bool tls_active = false;    // the connection is under TLS
  bool tls_required = false;  // no MAIL before TLS (listener require_tls)
  bool auth_offered = false;  // AUTH configured on this listener
  bool submission = false;    // the listener's role: MAIL needs AUTH unless trusted
  bool trusted = false;       // the client is in trusted_networks
};

struct Step {
  Action action = Action::kReply;
  Reply reply;  // code 0: none yet (the I/O layer answers once its part is done)
};

enum class AuthOutcome : std::uint8_t { kAuthenticated, kRefused, kClosed };

class SessionMachine {
 public:
  // RCPTs beyond max_recipients a transaction may have refused before every
  // further RCPT gets 452: a client cannot probe addresses without end.
  static constexpr int kMaxRefusedRecipients = 100;

  // One command, in the state of the moment.
  Step step(const Command& cmd, const SessionFacts& facts);

  // Outcomes the I/O layer reports.
  // kRelayMail: the transaction is open (true) or the I/O layer refused it.
  void mail_result(bool opened);
  // kRelayRcpt: the recipient was accepted (a 2xx reached the client).
  void rcpt_result(bool accepted);
  // The transaction is over, whatever ended it (final dot, a refused DATA,
  // RSET, the session's end); nothing when none is open.
  void transaction_ended();
  // kStartTls: true, the connection is under TLS and everything learnt
  // before is forgotten (RFC 3207 4.2); false, the session is over.
  void tls_result(bool ok);
  void auth_result(AuthOutcome outcome);
  // The session ends (timeout, shutdown, the client gone).
  void close() { enter(SessionState::kClosed); }

  SessionState state() const { return state_; }
  Greeting greeting() const { return greeting_; }
  bool authenticated() const { return authenticated_; }
  bool in_transaction() const {
    return state_ == SessionState::kMail || state_ == SessionState::kRcpt ||
           state_ == SessionState::kData;
  }
  // An outcome the machine waits for (kRelayMail, kRelayRcpt); kReply: none.
  Action pending() const { return pending_; }
  int accepted() const { return accepted_; }
  int rcpt_attempts() const { return rcpt_attempts_; }

 private:
  struct Rules;  // the command table and its check/proceed functions
  void enter(SessionState next);

  SessionState state_ = SessionState::kConnected;
  Greeting greeting_ = Greeting::kNone;
  bool authenticated_ = false;
  Action pending_ = Action::kReply;
  // The open transaction's recipients: accepted, and RCPTs tried.
  int accepted_ = 0;
  int rcpt_attempts_ = 0;
};

}  // namespace smtplb::smtp
