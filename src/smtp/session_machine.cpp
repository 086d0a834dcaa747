// session_machine.cpp: the command table of the SMTP session (RFC 5321 4.1.4
// for the order of commands, RFC 3207 for STARTTLS, RFC 4954 for AUTH).
//
// A command goes through its row in four steps, in the order the replies
// have always been given (the codes are the contract, DESIGN.md):
//   pre     checks on the facts that come before the sequence rule
//           (STARTTLS where TLS is not offered is 454, in any state);
//   gate    the row's entry for the current state: run, or the 503 5.5.1
//           (or 500 5.5.2) that the verb gets there;
//   check   the remaining refusals (limits, parameters, policy);
//   proceed the reply or action, and the state entered.
#include "smtp/session_machine.hpp"

#include <array>
#include <optional>
#include <string>
#include <utility>

#include "smtp/replies.hpp"

namespace smtplb::smtp {

namespace {

// Where a verb is not allowed in a state, and what the client is told.
enum class Gate : std::uint8_t {
  kRun,            // the row's check and proceed decide
  kSendEhloFirst,  // 503: no HELO/EHLO yet
  kNeedMail,       // 503: RCPT without a transaction
  kNeedMailRcpt,   // 503: DATA without a transaction
  kNested,         // 503: MAIL inside a transaction
  kInTransaction,  // 503: STARTTLS/AUTH inside a transaction
  kBusy,           // 503: no command is read in this state (cannot happen from the I/O layer)
  kUnrecognized,   // 500 5.5.2: a verb smtplb does not offer, in any state
};

Reply gate_reply(Gate g, Verb verb) {
  switch (g) {
    case Gate::kSendEhloFirst:
      return replies::bad_sequence("send EHLO first");
    case Gate::kNeedMail:
      return replies::bad_sequence("need MAIL before RCPT");
    case Gate::kNeedMailRcpt:
      return replies::bad_sequence("need MAIL and RCPT before DATA");
    case Gate::kNested:
      return replies::bad_sequence("nested MAIL command");
    case Gate::kInTransaction:
      return replies::bad_sequence(std::string(to_string(verb)) + " inside a transaction");
    case Gate::kBusy:
      return replies::bad_sequence("command while the previous one is in progress");
    case Gate::kUnrecognized:
    case Gate::kRun:
      break;
  }
  return replies::unknown_command();
}

using Gates = std::array<Gate, kSessionStates>;
constexpr Gate R = Gate::kRun;
constexpr Gate B = Gate::kBusy;

// Columns: Connected, Greeted, Mail, Rcpt | Data, Tls, Auth, Closed (the
// last four wait for an outcome and read no command).
constexpr Gates kAnyTime{R, R, R, R, B, B, B, B};
constexpr Gates kMailGates{Gate::kSendEhloFirst, R, Gate::kNested, Gate::kNested, B, B, B, B};
constexpr Gates kRcptGates{Gate::kNeedMail, Gate::kNeedMail, R, R, B, B, B, B};
constexpr Gates kDataGates{Gate::kNeedMailRcpt, Gate::kNeedMailRcpt, R, R, B, B, B, B};
constexpr Gates kOutsideTransaction{R, R, Gate::kInTransaction, Gate::kInTransaction, B, B, B, B};
constexpr Gates kAuthGates{
    Gate::kSendEhloFirst, R, Gate::kInTransaction, Gate::kInTransaction, B, B, B, B};
constexpr Gates kNever{
    Gate::kUnrecognized, Gate::kUnrecognized, Gate::kUnrecognized, Gate::kUnrecognized, B, B, B, B};

Step reply(Reply r) {
  return Step{Action::kReply, std::move(r)};
}

Reply greeting_reply(const Command& cmd, const SessionFacts& f, bool authenticated) {
  if (cmd.verb == Verb::kHelo) return make_reply(250, "", f.hostname);
  Reply r;
  r.code = 250;
  r.lines = {std::string(f.hostname),
             "PIPELINING",
             "SIZE " + std::to_string(f.max_message_size),
             "8BITMIME",
             "SMTPUTF8",
             "ENHANCEDSTATUSCODES"};
  // What is advertised is exactly what the table then accepts.
  if (f.tls_offered && !f.tls_active) r.lines.push_back("STARTTLS");
  // RFC 4954 4 / SECURITY.md 6: passwords only under TLS.
  if (f.auth_offered && f.tls_active && !authenticated) r.lines.push_back("AUTH PLAIN LOGIN");
  return r;
}

}  // namespace

struct SessionMachine::Rules {
  using Check = std::optional<Reply> (*)(const SessionMachine&, const Command&,
                                         const SessionFacts&);
  using Proceed = Step (*)(SessionMachine&, const Command&, const SessionFacts&);
  struct Row {
    Verb verb;
    Check pre;  // may be null
    Gates gates;
    Check check;  // may be null
    Proceed proceed;
  };

  static Step greet(SessionMachine& m, const Command& cmd, const SessionFacts& f) {
    // RFC 5321 4.1.4: EHLO in the middle of a transaction resets it.
    m.greeting_ = cmd.verb == Verb::kEhlo ? Greeting::kEhlo : Greeting::kHelo;
    m.enter(SessionState::kGreeted);
    return Step{Action::kGreet, greeting_reply(cmd, f, m.authenticated_)};
  }

  static std::optional<Reply> check_mail(const SessionMachine& m, const Command& cmd,
                                         const SessionFacts& f) {
    if (f.tls_required && !f.tls_active) return replies::tls_required();
    if (!cmd.mail.smtputf8 && cmd.path.mailbox.has_non_ascii())
      return replies::utf8_needs_smtputf8();
    // RFC 5321 3.2 / RFC 1869: service extensions are for a client that
    // said EHLO.  Taking them after HELO would promise what a backend
    // greeted the same way (XCLIENT re-greets with the client's verb)
    // cannot keep.
    if (m.greeting_ == Greeting::kHelo && (cmd.mail.size || cmd.mail.body != Body::kUnspecified ||
                                           cmd.mail.smtputf8 || cmd.mail.auth_given))
      return replies::params_need_ehlo();
    if (f.submission && !f.trusted && !m.authenticated_) return replies::auth_required();
    if (cmd.mail.size && *cmd.mail.size > f.max_message_size) return replies::message_too_big();
    return std::nullopt;
  }
  static Step mail(SessionMachine& m, const Command&, const SessionFacts&) {
    m.pending_ = Action::kRelayMail;
    return Step{Action::kRelayMail, {}};
  }

  static std::optional<Reply> check_rcpt(const SessionMachine& m, const Command&,
                                         const SessionFacts& f) {
    // max_recipients counts accepted recipients (RFC 5321 4.5.3.1.8).
    if (m.accepted_ >= f.max_recipients ||
        m.rcpt_attempts_ >= f.max_recipients + kMaxRefusedRecipients)
      return replies::too_many_recipients();
    return std::nullopt;
  }
  static Step rcpt(SessionMachine& m, const Command&, const SessionFacts&) {
    ++m.rcpt_attempts_;
    m.pending_ = Action::kRelayRcpt;
    return Step{Action::kRelayRcpt, {}};
  }

  static std::optional<Reply> check_data(const SessionMachine& m, const Command&,
                                         const SessionFacts&) {
    if (m.state_ == SessionState::kRcpt) return std::nullopt;
    if (m.rcpt_attempts_ == 0) return replies::bad_sequence("need RCPT before DATA");
    return replies::no_valid_recipients();
  }
  static Step data(SessionMachine& m, const Command&, const SessionFacts&) {
    m.enter(SessionState::kData);
    return Step{Action::kStartData, {}};
  }

  static Step rset(SessionMachine& m, const Command&, const SessionFacts&) {
    const bool open = m.in_transaction();
    if (open) m.enter(SessionState::kGreeted);
    return Step{open ? Action::kReset : Action::kReply, replies::reset_ok()};
  }
  static Step noop(SessionMachine&, const Command&, const SessionFacts&) {
    return reply(replies::noop_ok());
  }
  static Step help(SessionMachine&, const Command&, const SessionFacts&) {
    return reply(replies::help());
  }
  static Step vrfy(SessionMachine&, const Command&, const SessionFacts&) {
    return reply(replies::vrfy());
  }
  static Step quit(SessionMachine& m, const Command&, const SessionFacts& f) {
    m.enter(SessionState::kClosed);
    return Step{Action::kQuit, replies::closing(f.hostname)};
  }
  static Step http(SessionMachine& m, const Command&, const SessionFacts&) {
    // A cross-protocol attack (Postfix's smtpd_forbidden_commands): close.
    m.enter(SessionState::kClosed);
    return Step{Action::kQuit, replies::forbidden_protocol()};
  }
  static Step unrecognized(SessionMachine&, const Command&, const SessionFacts&) {
    return reply(replies::unknown_command());
  }

  static std::optional<Reply> pre_starttls(const SessionMachine&, const Command&,
                                           const SessionFacts& f) {
    if (f.tls_active) return replies::bad_sequence("TLS already active");
    if (!f.tls_offered) return replies::tls_not_available();
    return std::nullopt;
  }
  static Step starttls(SessionMachine& m, const Command&, const SessionFacts&) {
    m.enter(SessionState::kTls);
    return Step{Action::kStartTls, replies::tls_ready()};
  }

  static std::optional<Reply> pre_auth(const SessionMachine&, const Command&,
                                       const SessionFacts& f) {
    if (!f.auth_offered) return replies::bad_sequence("AUTH not available");
    // SECURITY.md 6: no password in plaintext, not even a wrong one.
    if (!f.tls_active) return replies::auth_needs_tls();
    return std::nullopt;
  }
  static std::optional<Reply> check_auth(const SessionMachine& m, const Command&,
                                         const SessionFacts&) {
    if (m.greeting_ != Greeting::kEhlo) return replies::bad_sequence("send EHLO first");
    if (m.authenticated_) return replies::auth_already_done();  // RFC 4954 4
    return std::nullopt;
  }
  static Step auth(SessionMachine& m, const Command&, const SessionFacts&) {
    m.enter(SessionState::kAuth);
    return Step{Action::kStartAuth, {}};
  }

  // Indexed by Verb, in its order.
  static constexpr std::array<Row, 16> kCommands{{
      {Verb::kHelo, nullptr, kAnyTime, nullptr, greet},
      {Verb::kEhlo, nullptr, kAnyTime, nullptr, greet},
      {Verb::kMail, nullptr, kMailGates, check_mail, mail},
      {Verb::kRcpt, nullptr, kRcptGates, check_rcpt, rcpt},
      {Verb::kData, nullptr, kDataGates, check_data, data},
      {Verb::kRset, nullptr, kAnyTime, nullptr, rset},
      {Verb::kNoop, nullptr, kAnyTime, nullptr, noop},
      {Verb::kQuit, nullptr, kAnyTime, nullptr, quit},
      {Verb::kVrfy, nullptr, kAnyTime, nullptr, vrfy},
      {Verb::kHelp, nullptr, kAnyTime, nullptr, help},
      {Verb::kStartTls, pre_starttls, kOutsideTransaction, nullptr, starttls},
      {Verb::kAuth, pre_auth, kAuthGates, check_auth, auth},
      // DESIGN.md: CHUNKING/BDAT is not advertised until it is implemented
      // end to end; until then BDAT is a command we do not know.
      {Verb::kBdat, nullptr, kNever, nullptr, unrecognized},
      // SECURITY.md: a client never sets its own address or name; XCLIENT
      // is what smtplb sends to backends, never what it takes.
      {Verb::kXclient, nullptr, kNever, nullptr, unrecognized},
      {Verb::kHttp, nullptr, kAnyTime, nullptr, http},
      // parse_command() answers an unknown verb itself (500 5.5.2); the
      // row keeps the table total and gives the same reply.
      {Verb::kUnknown, nullptr, kNever, nullptr, unrecognized},
  }};
  static constexpr bool in_verb_order() {
    for (std::size_t i = 0; i < kCommands.size(); ++i)
      if (static_cast<std::size_t>(kCommands[i].verb) != i) return false;
    return static_cast<std::size_t>(Verb::kUnknown) + 1 == kCommands.size();
  }
};

Step SessionMachine::step(const Command& cmd, const SessionFacts& facts) {
  static_assert(Rules::in_verb_order(), "kCommands has one row per Verb, in its order");
  const auto& row = Rules::kCommands[static_cast<std::size_t>(cmd.verb)];
  const Gate gate = row.gates[static_cast<std::size_t>(state_)];
  // A command while the machine waits for an outcome (the I/O layer never
  // sends one) is refused before any other check: it must not change what
  // the outcome applies to.
  if (gate == Gate::kBusy || pending_ != Action::kReply)
    return reply(gate_reply(Gate::kBusy, cmd.verb));
  if (row.pre)
    if (auto r = row.pre(*this, cmd, facts)) return reply(std::move(*r));
  if (gate != Gate::kRun) return reply(gate_reply(gate, cmd.verb));
  if (row.check)
    if (auto r = row.check(*this, cmd, facts)) return reply(std::move(*r));
  return row.proceed(*this, cmd, facts);
}

void SessionMachine::mail_result(bool opened) {
  if (pending_ != Action::kRelayMail) return;  // cannot happen
  pending_ = Action::kReply;
  if (opened) enter(SessionState::kMail);
}

void SessionMachine::rcpt_result(bool accepted) {
  if (pending_ != Action::kRelayRcpt) return;  // cannot happen
  pending_ = Action::kReply;
  if (!accepted || !in_transaction()) return;
  ++accepted_;
  if (state_ == SessionState::kMail) enter(SessionState::kRcpt);
}

void SessionMachine::transaction_ended() {
  if (in_transaction()) enter(SessionState::kGreeted);
}

void SessionMachine::tls_result(bool ok) {
  if (state_ != SessionState::kTls) return;  // cannot happen
  if (!ok) {
    enter(SessionState::kClosed);
    return;
  }
  // RFC 3207 4.2: everything learnt before TLS is forgotten; the client
  // says EHLO again.
  greeting_ = Greeting::kNone;
  authenticated_ = false;
  enter(SessionState::kConnected);
}

void SessionMachine::auth_result(AuthOutcome outcome) {
  if (state_ != SessionState::kAuth) return;  // cannot happen
  if (outcome == AuthOutcome::kClosed) {
    enter(SessionState::kClosed);
    return;
  }
  if (outcome == AuthOutcome::kAuthenticated) authenticated_ = true;
  enter(SessionState::kGreeted);
}

void SessionMachine::enter(SessionState next) {
  // The one place a state changes: what a state implies is set here.
  if (state_ == SessionState::kClosed) return;  // the end is the end
  switch (next) {
    case SessionState::kConnected:
    case SessionState::kGreeted:
    case SessionState::kClosed:
      // No transaction outside kMail, kRcpt and kData.
      accepted_ = 0;
      rcpt_attempts_ = 0;
      pending_ = Action::kReply;
      break;
    case SessionState::kMail:
      if (state_ != SessionState::kMail) accepted_ = rcpt_attempts_ = 0;
      break;
    case SessionState::kRcpt:
    case SessionState::kData:
    case SessionState::kTls:
    case SessionState::kAuth:
      break;
  }
  state_ = next;
}

const char* to_string(SessionState s) {
  switch (s) {
    case SessionState::kConnected:
      return "connected";
    case SessionState::kGreeted:
      return "greeted";
    case SessionState::kMail:
      return "mail";
    case SessionState::kRcpt:
      return "rcpt";
    case SessionState::kData:
      return "data";
    case SessionState::kTls:
      return "tls";
    case SessionState::kAuth:
      return "auth";
    case SessionState::kClosed:
      return "closed";
  }
  return "?";
}

const char* to_string(Action a) {
  switch (a) {
    case Action::kReply:
      return "reply";
    case Action::kGreet:
      return "greet";
    case Action::kReset:
      return "reset";
    case Action::kRelayMail:
      return "relay_mail";
    case Action::kRelayRcpt:
      return "relay_rcpt";
    case Action::kStartData:
      return "start_data";
    case Action::kStartTls:
      return "start_tls";
    case Action::kStartAuth:
      return "start_auth";
    case Action::kQuit:
      return "quit";
  }
  return "?";
}

}  // namespace smtplb::smtp
