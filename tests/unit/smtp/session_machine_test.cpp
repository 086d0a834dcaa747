// session_machine_test.cpp: the SMTP session's command table.
//
// Two tables.  The first is the whole matrix: every verb in every state,
// with default facts (STARTTLS and AUTH offered, no TLS yet, an untrusted
// client on an inbound listener) -> reply code and enhanced code, action,
// state entered.  The second is scripts: a short dialog of commands and
// outcomes whose last step is checked, for the rules that depend on the
// facts (TLS, AUTH, limits, submission) and on what happened before.
#include "smtp/session_machine.hpp"

#include <gtest/gtest.h>

#include <functional>
#include <string>
#include <vector>

namespace smtplb::smtp {
namespace {

using S = SessionState;
using A = Action;

SessionFacts default_facts() {
  SessionFacts f;
  f.hostname = "lb.example";
  f.max_message_size = 1000;
  f.max_recipients = 2;
  f.tls_offered = true;
  f.auth_offered = true;
  return f;
}

Command command(std::string_view line) {
  if (line == "UNKNOWN") return Command{};  // what the parser never yields: a verb of its own
  auto parsed = parse_command(line);
  EXPECT_TRUE(parsed.command) << line;
  return parsed.command ? *parsed.command : Command{};
}

// Drives a fresh machine into `s` the way a session gets there.
SessionMachine machine_in(S s, const SessionFacts& f) {
  SessionMachine m;
  auto run = [&](std::string_view line) { return m.step(command(line), f); };
  switch (s) {
    case S::kConnected:
      break;
    case S::kGreeted:
      run("EHLO client.example");
      break;
    case S::kMail:
    case S::kRcpt:
    case S::kData:
      run("EHLO client.example");
      run("MAIL FROM:<a@example.com>");
      m.mail_result(true);
      if (s == S::kMail) break;
      run("RCPT TO:<b@example.com>");
      m.rcpt_result(true);
      if (s == S::kData) run("DATA");
      break;
    case S::kTls:
      run("STARTTLS");
      break;
    case S::kAuth: {
      SessionFacts tls = f;
      tls.tls_active = true;
      m.step(command("EHLO client.example"), tls);
      m.step(command("AUTH PLAIN"), tls);
      break;
    }
    case S::kClosed:
      run("QUIT");
      break;
  }
  EXPECT_EQ(m.state(), s);
  return m;
}

struct MatrixCase {
  S from;
  const char* line;
  int code;
  const char* enhanced;
  A action;
  S to;
};

const char* const kLines[] = {"HELO client.example",
                              "EHLO client.example",
                              "MAIL FROM:<a@example.com>",
                              "RCPT TO:<c@example.com>",
                              "DATA",
                              "RSET",
                              "NOOP",
                              "QUIT",
                              "VRFY postmaster",
                              "HELP",
                              "STARTTLS",
                              "AUTH PLAIN",
                              "BDAT 10 LAST",
                              "XCLIENT ADDR=192.0.2.1",
                              "GET / HTTP/1.1",
                              "UNKNOWN"};

// The four states where commands are read.  Code 0: the action answers.
const MatrixCase kMatrix[] = {
    // Connected: only what needs no greeting.
    {S::kConnected, "HELO client.example", 250, "", A::kGreet, S::kGreeted},
    {S::kConnected, "EHLO client.example", 250, "", A::kGreet, S::kGreeted},
    {S::kConnected, "MAIL FROM:<a@example.com>", 503, "5.5.1", A::kReply, S::kConnected},
    {S::kConnected, "RCPT TO:<c@example.com>", 503, "5.5.1", A::kReply, S::kConnected},
    {S::kConnected, "DATA", 503, "5.5.1", A::kReply, S::kConnected},
    {S::kConnected, "RSET", 250, "2.0.0", A::kReply, S::kConnected},
    {S::kConnected, "NOOP", 250, "2.0.0", A::kReply, S::kConnected},
    {S::kConnected, "QUIT", 221, "2.0.0", A::kQuit, S::kClosed},
    {S::kConnected, "VRFY postmaster", 252, "2.5.0", A::kReply, S::kConnected},
    {S::kConnected, "HELP", 214, "2.0.0", A::kReply, S::kConnected},
    {S::kConnected, "STARTTLS", 220, "2.0.0", A::kStartTls, S::kTls},
    {S::kConnected, "AUTH PLAIN", 538, "5.7.11", A::kReply, S::kConnected},
    {S::kConnected, "BDAT 10 LAST", 500, "5.5.2", A::kReply, S::kConnected},
    {S::kConnected, "XCLIENT ADDR=192.0.2.1", 500, "5.5.2", A::kReply, S::kConnected},
    {S::kConnected, "GET / HTTP/1.1", 421, "4.7.0", A::kQuit, S::kClosed},
    {S::kConnected, "UNKNOWN", 500, "5.5.2", A::kReply, S::kConnected},
    // Greeted: MAIL opens a transaction once the I/O layer agrees.
    {S::kGreeted, "HELO client.example", 250, "", A::kGreet, S::kGreeted},
    {S::kGreeted, "EHLO client.example", 250, "", A::kGreet, S::kGreeted},
    {S::kGreeted, "MAIL FROM:<a@example.com>", 0, "", A::kRelayMail, S::kGreeted},
    {S::kGreeted, "RCPT TO:<c@example.com>", 503, "5.5.1", A::kReply, S::kGreeted},
    {S::kGreeted, "DATA", 503, "5.5.1", A::kReply, S::kGreeted},
    {S::kGreeted, "RSET", 250, "2.0.0", A::kReply, S::kGreeted},
    {S::kGreeted, "NOOP", 250, "2.0.0", A::kReply, S::kGreeted},
    {S::kGreeted, "QUIT", 221, "2.0.0", A::kQuit, S::kClosed},
    {S::kGreeted, "VRFY postmaster", 252, "2.5.0", A::kReply, S::kGreeted},
    {S::kGreeted, "HELP", 214, "2.0.0", A::kReply, S::kGreeted},
    {S::kGreeted, "STARTTLS", 220, "2.0.0", A::kStartTls, S::kTls},
    {S::kGreeted, "AUTH PLAIN", 538, "5.7.11", A::kReply, S::kGreeted},
    {S::kGreeted, "BDAT 10 LAST", 500, "5.5.2", A::kReply, S::kGreeted},
    {S::kGreeted, "XCLIENT ADDR=192.0.2.1", 500, "5.5.2", A::kReply, S::kGreeted},
    {S::kGreeted, "GET / HTTP/1.1", 421, "4.7.0", A::kQuit, S::kClosed},
    {S::kGreeted, "UNKNOWN", 500, "5.5.2", A::kReply, S::kGreeted},
    // Mail: no recipient accepted yet.
    {S::kMail, "HELO client.example", 250, "", A::kGreet, S::kGreeted},
    {S::kMail, "EHLO client.example", 250, "", A::kGreet, S::kGreeted},
    {S::kMail, "MAIL FROM:<a@example.com>", 503, "5.5.1", A::kReply, S::kMail},
    {S::kMail, "RCPT TO:<c@example.com>", 0, "", A::kRelayRcpt, S::kMail},
    {S::kMail, "DATA", 503, "5.5.1", A::kReply, S::kMail},
    {S::kMail, "RSET", 250, "2.0.0", A::kReset, S::kGreeted},
    {S::kMail, "NOOP", 250, "2.0.0", A::kReply, S::kMail},
    {S::kMail, "QUIT", 221, "2.0.0", A::kQuit, S::kClosed},
    {S::kMail, "VRFY postmaster", 252, "2.5.0", A::kReply, S::kMail},
    {S::kMail, "HELP", 214, "2.0.0", A::kReply, S::kMail},
    {S::kMail, "STARTTLS", 503, "5.5.1", A::kReply, S::kMail},
    {S::kMail, "AUTH PLAIN", 538, "5.7.11", A::kReply, S::kMail},
    {S::kMail, "BDAT 10 LAST", 500, "5.5.2", A::kReply, S::kMail},
    {S::kMail, "XCLIENT ADDR=192.0.2.1", 500, "5.5.2", A::kReply, S::kMail},
    {S::kMail, "GET / HTTP/1.1", 421, "4.7.0", A::kQuit, S::kClosed},
    {S::kMail, "UNKNOWN", 500, "5.5.2", A::kReply, S::kMail},
    // Rcpt: DATA may start.
    {S::kRcpt, "HELO client.example", 250, "", A::kGreet, S::kGreeted},
    {S::kRcpt, "EHLO client.example", 250, "", A::kGreet, S::kGreeted},
    {S::kRcpt, "MAIL FROM:<a@example.com>", 503, "5.5.1", A::kReply, S::kRcpt},
    {S::kRcpt, "RCPT TO:<c@example.com>", 0, "", A::kRelayRcpt, S::kRcpt},
    {S::kRcpt, "DATA", 0, "", A::kStartData, S::kData},
    {S::kRcpt, "RSET", 250, "2.0.0", A::kReset, S::kGreeted},
    {S::kRcpt, "NOOP", 250, "2.0.0", A::kReply, S::kRcpt},
    {S::kRcpt, "QUIT", 221, "2.0.0", A::kQuit, S::kClosed},
    {S::kRcpt, "VRFY postmaster", 252, "2.5.0", A::kReply, S::kRcpt},
    {S::kRcpt, "HELP", 214, "2.0.0", A::kReply, S::kRcpt},
    {S::kRcpt, "STARTTLS", 503, "5.5.1", A::kReply, S::kRcpt},
    {S::kRcpt, "AUTH PLAIN", 538, "5.7.11", A::kReply, S::kRcpt},
    {S::kRcpt, "BDAT 10 LAST", 500, "5.5.2", A::kReply, S::kRcpt},
    {S::kRcpt, "XCLIENT ADDR=192.0.2.1", 500, "5.5.2", A::kReply, S::kRcpt},
    {S::kRcpt, "GET / HTTP/1.1", 421, "4.7.0", A::kQuit, S::kClosed},
    {S::kRcpt, "UNKNOWN", 500, "5.5.2", A::kReply, S::kRcpt},
};

TEST(SessionMachine, EveryVerbInEveryCommandState) {
  const SessionFacts f = default_facts();
  int covered = 0;
  for (const auto& c : kMatrix) {
    SCOPED_TRACE(std::string(to_string(c.from)) + " + " + c.line);
    SessionMachine m = machine_in(c.from, f);
    Step s = m.step(command(c.line), f);
    EXPECT_EQ(s.reply.code, c.code);
    EXPECT_EQ(s.reply.enhanced, c.enhanced);
    EXPECT_EQ(s.action, c.action) << to_string(s.action);
    EXPECT_EQ(m.state(), c.to) << to_string(m.state());
    ++covered;
  }
  EXPECT_EQ(covered, 4 * static_cast<int>(std::size(kLines)));
}

TEST(SessionMachine, NoCommandIsTakenWhileAnOutcomeIsAwaited) {
  // Data, Tls, Auth, Closed: the I/O layer reads no command there; one
  // that came anyway changes nothing.
  const SessionFacts f = default_facts();
  for (S s : {S::kData, S::kTls, S::kAuth, S::kClosed}) {
    for (const char* line : kLines) {
      SCOPED_TRACE(std::string(to_string(s)) + " + " + line);
      SessionMachine m = machine_in(s, f);
      Step step = m.step(command(line), f);
      EXPECT_EQ(step.reply.code, 503);
      EXPECT_EQ(step.reply.enhanced, "5.5.1");
      EXPECT_EQ(step.action, A::kReply);
      EXPECT_EQ(m.state(), s);
    }
  }
}

// A script: events, the last one checked.
struct Event {
  enum Kind {
    kLine,
    kMailOpened,
    kMailRefused,
    kRcptAccepted,
    kRcptRefused,
    kEnded,
    kTlsOk,
    kTlsFailed,
    kAuthOk,
    kAuthRefused
  } kind;
  const char* line = "";
};
Event line(const char* l) {
  return {Event::kLine, l};
}
constexpr Event kOpened{Event::kMailOpened};
constexpr Event kAccepted{Event::kRcptAccepted};
constexpr Event kRefused{Event::kRcptRefused};

struct ScriptCase {
  const char* name;
  std::function<void(SessionFacts&)> facts;
  std::vector<Event> events;
  int code;
  const char* enhanced;
  A action;
  S to;
};

void none(SessionFacts&) {}
void tls(SessionFacts& f) {
  f.tls_active = true;
}

// One line of facts, the dialog, then the expected last step.
// clang-format off
const Event kEhlo = line("EHLO c.example"), kMailFrom = line("MAIL FROM:<a@example.com>"),
            kRcptTo = line("RCPT TO:<b@example.com>"), kData = line("DATA");
const ScriptCase kScripts[] = {
    {"MailBeforeTlsWhereTlsIsRequired", [](SessionFacts& f) { f.tls_required = true; },
     {kEhlo, kMailFrom}, 530, "5.7.0", A::kReply, S::kGreeted},
    {"NonAsciiSenderNeedsSmtputf8", none,
     {kEhlo, line("MAIL FROM:<j\xc3\xb6@example.com>")}, 553, "5.6.7", A::kReply, S::kGreeted},
    {"MailParametersAfterHeloAre555", none,
     {line("HELO c.example"), line("MAIL FROM:<a@example.com> SIZE=10")}, 555, "5.5.4", A::kReply, S::kGreeted},
    {"MailWithoutParametersAfterHeloIsFine", none,
     {line("HELO c.example"), kMailFrom}, 0, "", A::kRelayMail, S::kGreeted},
    {"SubmissionNeedsAuthAtMail", [](SessionFacts& f) { f.submission = true; },
     {kEhlo, kMailFrom}, 530, "5.7.0", A::kReply, S::kGreeted},
    {"SubmissionFromTrustedNeedsNoAuth", [](SessionFacts& f) { f.submission = f.trusted = true; },
     {kEhlo, kMailFrom}, 0, "", A::kRelayMail, S::kGreeted},
    {"SubmissionAfterAuth", [](SessionFacts& f) { f.submission = f.tls_active = true; },
     {kEhlo, line("AUTH PLAIN"), {Event::kAuthOk}, kMailFrom}, 0, "", A::kRelayMail, S::kGreeted},
    {"SizeOverTheLimitAtMail", none,
     {kEhlo, line("MAIL FROM:<a@example.com> SIZE=1001")}, 552, "5.3.4", A::kReply, S::kGreeted},
    {"SizeAtTheLimitIsFine", none,
     {kEhlo, line("MAIL FROM:<a@example.com> SIZE=1000")}, 0, "", A::kRelayMail, S::kGreeted},
    {"MailRefusedByTheIoLayerLeavesNoTransaction", none,
     {kEhlo, kMailFrom, {Event::kMailRefused}, kRcptTo}, 503, "5.5.1", A::kReply, S::kGreeted},
    {"CommandWhileMailIsPending", none,
     {kEhlo, kMailFrom, line("NOOP")}, 503, "5.5.1", A::kReply, S::kGreeted},
    {"CommandWhileRcptIsPending", none,
     {kEhlo, kMailFrom, kOpened, kRcptTo, kData}, 503, "5.5.1", A::kReply, S::kMail},
    {"MaxRecipientsAccepted", none,
     {kEhlo, kMailFrom, kOpened, kRcptTo, kAccepted, kRcptTo, kAccepted, kRcptTo},
     452, "4.5.3", A::kReply, S::kRcpt},
    {"RefusedRecipientsDoNotCountTowardsTheLimit", none,
     {kEhlo, kMailFrom, kOpened, kRcptTo, kRefused, kRcptTo, kRefused, kRcptTo},
     0, "", A::kRelayRcpt, S::kMail},
    {"DataAfterOnlyRefusedRecipients", none,
     {kEhlo, kMailFrom, kOpened, kRcptTo, kRefused, kData}, 554, "5.5.1", A::kReply, S::kMail},
    {"DataAfterOneAcceptedOfTwo", none,
     {kEhlo, kMailFrom, kOpened, kRcptTo, kRefused, kRcptTo, kAccepted, kData},
     0, "", A::kStartData, S::kData},
    {"TransactionEndedAfterData", none,
     {kEhlo, kMailFrom, kOpened, kRcptTo, kAccepted, kData, {Event::kEnded}, kData},
     503, "5.5.1", A::kReply, S::kGreeted},
    {"NextTransactionAfterData", none,
     {kEhlo, kMailFrom, kOpened, kRcptTo, kAccepted, kData, {Event::kEnded}, kMailFrom},
     0, "", A::kRelayMail, S::kGreeted},
    {"EhloResetsTheTransaction", none,
     {kEhlo, kMailFrom, kOpened, kRcptTo, kAccepted, kEhlo, kRcptTo}, 503, "5.5.1", A::kReply, S::kGreeted},
    {"StartTlsWhereNotOffered", [](SessionFacts& f) { f.tls_offered = false; },
     {kEhlo, line("STARTTLS")}, 454, "4.7.0", A::kReply, S::kGreeted},
    {"StartTlsNotOfferedInsideATransaction", [](SessionFacts& f) { f.tls_offered = false; },
     {kEhlo, kMailFrom, kOpened, line("STARTTLS")}, 454, "4.7.0", A::kReply, S::kMail},
    {"StartTlsTwice", tls,
     {kEhlo, line("STARTTLS")}, 503, "5.5.1", A::kReply, S::kGreeted},
    {"TlsForgetsTheGreeting", none,
     {kEhlo, line("STARTTLS"), {Event::kTlsOk}, kMailFrom}, 503, "5.5.1", A::kReply, S::kConnected},
    {"FailedHandshakeEndsTheSession", none,
     {kEhlo, line("STARTTLS"), {Event::kTlsFailed}, line("NOOP")}, 503, "5.5.1", A::kReply, S::kClosed},
    {"AuthWhereNotOfferedEvenWithoutTls", [](SessionFacts& f) { f.auth_offered = false; },
     {kEhlo, line("AUTH PLAIN")}, 503, "5.5.1", A::kReply, S::kGreeted},
    {"AuthBeforeEhlo", tls,
     {line("AUTH PLAIN")}, 503, "5.5.1", A::kReply, S::kConnected},
    {"AuthAfterHelo", tls,
     {line("HELO c.example"), line("AUTH PLAIN")}, 503, "5.5.1", A::kReply, S::kGreeted},
    {"AuthUnderTls", tls,
     {kEhlo, line("AUTH PLAIN")}, 0, "", A::kStartAuth, S::kAuth},
    {"AuthTwice", tls,
     {kEhlo, line("AUTH PLAIN"), {Event::kAuthOk}, line("AUTH PLAIN")}, 503, "5.5.1", A::kReply, S::kGreeted},
    {"AuthAgainAfterAFailure", tls,
     {kEhlo, line("AUTH PLAIN"), {Event::kAuthRefused}, line("AUTH LOGIN")}, 0, "", A::kStartAuth, S::kAuth},
    {"AuthInsideATransaction", tls,
     {kEhlo, kMailFrom, kOpened, line("AUTH PLAIN")}, 503, "5.5.1", A::kReply, S::kMail},
    {"RsetBeforeEhloKeepsNoGreeting", none,
     {line("RSET"), kMailFrom}, 503, "5.5.1", A::kReply, S::kConnected},
};
// clang-format on

TEST(SessionMachine, Scripts) {
  for (const auto& c : kScripts) {
    SCOPED_TRACE(c.name);
    SessionFacts f = default_facts();
    c.facts(f);
    SessionMachine m;
    Step last;
    for (const Event& e : c.events) {
      switch (e.kind) {
        case Event::kLine:
          last = m.step(command(e.line), f);
          break;
        case Event::kMailOpened:
        case Event::kMailRefused:
          m.mail_result(e.kind == Event::kMailOpened);
          break;
        case Event::kRcptAccepted:
        case Event::kRcptRefused:
          m.rcpt_result(e.kind == Event::kRcptAccepted);
          break;
        case Event::kEnded:
          m.transaction_ended();
          break;
        case Event::kTlsOk:
        case Event::kTlsFailed:
          m.tls_result(e.kind == Event::kTlsOk);
          break;
        case Event::kAuthOk:
        case Event::kAuthRefused:
          m.auth_result(e.kind == Event::kAuthOk ? AuthOutcome::kAuthenticated
                                                 : AuthOutcome::kRefused);
          break;
      }
    }
    EXPECT_EQ(last.reply.code, c.code);
    EXPECT_EQ(last.reply.enhanced, c.enhanced);
    EXPECT_EQ(last.action, c.action) << to_string(last.action);
    EXPECT_EQ(m.state(), c.to) << to_string(m.state());
  }
}

TEST(SessionMachine, RefusedRecipientsAreBoundedToo) {
  SessionFacts f = default_facts();
  SessionMachine m = machine_in(S::kMail, f);
  for (int i = 0; i < f.max_recipients + SessionMachine::kMaxRefusedRecipients; ++i) {
    ASSERT_EQ(m.step(command("RCPT TO:<b@example.com>"), f).action, A::kRelayRcpt) << i;
    m.rcpt_result(false);
  }
  Step s = m.step(command("RCPT TO:<b@example.com>"), f);
  EXPECT_EQ(s.reply.code, 452);
  EXPECT_EQ(s.reply.enhanced, "4.5.3");
}

bool advertises(const Reply& r, std::string_view keyword) {
  for (const auto& l : r.lines)
    if (l == keyword) return true;
  return false;
}

TEST(SessionMachine, EhloAdvertisesWhatTheTableAccepts) {
  SessionFacts f = default_facts();
  SessionMachine plain;
  Reply r = plain.step(command("EHLO c.example"), f).reply;
  ASSERT_GE(r.lines.size(), 6u);
  EXPECT_EQ(r.lines[0], "lb.example");
  EXPECT_TRUE(advertises(r, "SIZE 1000"));
  EXPECT_TRUE(advertises(r, "STARTTLS"));
  EXPECT_FALSE(advertises(r, "AUTH PLAIN LOGIN"));  // not before TLS (SECURITY.md 6)
  EXPECT_FALSE(advertises(r, "CHUNKING"));

  f.tls_active = true;
  SessionMachine secure;
  r = secure.step(command("EHLO c.example"), f).reply;
  EXPECT_FALSE(advertises(r, "STARTTLS"));
  EXPECT_TRUE(advertises(r, "AUTH PLAIN LOGIN"));
  secure.step(command("AUTH PLAIN"), f);
  secure.auth_result(AuthOutcome::kAuthenticated);
  r = secure.step(command("EHLO c.example"), f).reply;
  EXPECT_FALSE(advertises(r, "AUTH PLAIN LOGIN"));  // AUTH twice is 503

  SessionMachine helo;
  r = helo.step(command("HELO c.example"), f).reply;
  ASSERT_EQ(r.lines.size(), 1u);
  EXPECT_EQ(r.lines[0], "lb.example");
}

TEST(SessionMachine, TlsForgetsAuthentication) {
  // AUTH needs TLS, so this only happens with an implicit-TLS session that
  // says STARTTLS, which is refused; the machine still forgets on its own.
  SessionFacts f = default_facts();
  f.tls_active = true;
  SessionMachine m;
  m.step(command("EHLO c.example"), f);
  m.step(command("AUTH PLAIN"), f);
  m.auth_result(AuthOutcome::kAuthenticated);
  EXPECT_TRUE(m.authenticated());
  f.tls_active = false;
  ASSERT_EQ(m.step(command("STARTTLS"), f).action, A::kStartTls);
  m.tls_result(true);
  EXPECT_FALSE(m.authenticated());
  EXPECT_EQ(m.greeting(), Greeting::kNone);
}

TEST(SessionMachine, AuthClosedEndsTheSession) {
  SessionFacts f = default_facts();
  SessionMachine m = machine_in(S::kAuth, f);
  m.auth_result(AuthOutcome::kClosed);
  EXPECT_EQ(m.state(), S::kClosed);
  EXPECT_FALSE(m.authenticated());
}

TEST(SessionMachine, CloseIsFinal) {
  SessionFacts f = default_facts();
  SessionMachine m = machine_in(S::kRcpt, f);
  m.close();
  EXPECT_EQ(m.state(), S::kClosed);
  EXPECT_FALSE(m.in_transaction());
  m.transaction_ended();
  m.tls_result(true);
  EXPECT_EQ(m.state(), S::kClosed);
}

TEST(SessionMachine, IsSmall) {
  // A member of every session, parked ones included (bench/idle_memory.py).
  EXPECT_LE(sizeof(SessionMachine), 12u);
}

}  // namespace
}  // namespace smtplb::smtp
