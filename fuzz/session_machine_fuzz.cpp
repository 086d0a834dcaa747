// session_machine_fuzz.cpp: the SMTP session machine driven by random
// command sequences and random outcomes.
//
// The first byte picks the facts (TLS offered or implicit, AUTH, submission,
// trusted, require_tls); each further byte is one event: a command, or an
// outcome the I/O layer could report (the right one for a pending action,
// or a stray one, which the machine must ignore).  A model kept beside the
// machine checks its invariants after every event:
//   - DATA is only proceeded after an accepted RCPT in the same transaction;
//   - no transaction state without an accepted MAIL, none after RSET, EHLO,
//     HELO or a TLS handshake, and none after the session closed;
//   - every reply given is well formed (2xx-5xx, one line or an EHLO list,
//     a valid enhanced code), and actions that wait for the I/O layer give
//     none; STARTTLS/AUTH proceed only where they are offered;
//   - QUIT (or HTTP) ends it: afterwards every command is refused and the
//     state stays closed;
//   - the recipient limits hold, and the state agrees with the greeting.
#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "fuzz_check.hpp"
#include "smtp/command.hpp"
#include "smtp/reply.hpp"
#include "smtp/session_machine.hpp"

namespace {

using namespace smtplb::smtp;

constexpr std::array<std::string_view, 23> kLines{
    "HELO c.example",
    "EHLO c.example",
    "MAIL FROM:<a@example.com>",
    "MAIL FROM:<a@example.com> SIZE=10",
    "MAIL FROM:<a@example.com> SIZE=99999999",
    "MAIL FROM:<j\xc3\xb6@example.com> SMTPUTF8",
    "MAIL FROM:<j\xc3\xb6@example.com>",
    "MAIL FROM:<> BODY=8BITMIME",
    "RCPT TO:<b@example.com>",
    "RCPT TO:<postmaster>",
    "DATA",
    "RSET",
    "NOOP",
    "QUIT",
    "VRFY b",
    "HELP",
    "STARTTLS",
    "AUTH PLAIN",
    "AUTH LOGIN dXNlcg==",
    "BDAT 10 LAST",
    "GET / HTTP/1.1",
    "XCLIENT ADDR=192.0.2.1",
    "FROBNICATE",
};

bool is_enhanced(std::string_view e) {
  // class.subject.detail (RFC 3463): 2/4/5, then 1-3 and 1-3 digits.
  if (e.size() < 5 || (e[0] != '2' && e[0] != '4' && e[0] != '5') || e[1] != '.') return false;
  const std::string text = std::string(e) + " x";
  auto [code, rest] = split_enhanced(text);
  return code == e && rest == "x";
}

void check_reply(const Reply& r) {
  CHECK(r.code >= 200 && r.code <= 599);
  CHECK(r.enhanced.empty() || is_enhanced(r.enhanced));
  CHECK(r.enhanced.empty() || r.enhanced[0] == static_cast<char>('0' + r.code / 100));
  CHECK(!r.lines.empty());
  std::string wire = r.wire();
  ReplyParser p;
  std::size_t start = 0;
  ReplyParser::Status st = ReplyParser::Status::kNeedMore;
  while (start < wire.size()) {
    std::size_t end = wire.find("\r\n", start);
    CHECK(end != std::string::npos);
    CHECK(st == ReplyParser::Status::kNeedMore);
    st = p.feed_line(std::string_view(wire).substr(start, end - start));
    start = end + 2;
  }
  CHECK(st == ReplyParser::Status::kDone);
  CHECK(p.take().code == r.code);
}

// What the machine should believe, kept independently.
struct Model {
  bool open = false;      // a transaction (MAIL accepted) is open
  bool accepted = false;  // ... with an accepted RCPT
  bool closed = false;    // QUIT, HTTP or a failed handshake/auth
  Action pending = Action::kReply;
};

void check_state(const SessionMachine& m, const Model& model, const SessionFacts& f) {
  const SessionState s = m.state();
  CHECK(m.in_transaction() == model.open);
  if (model.closed) CHECK(s == SessionState::kClosed);
  if (s == SessionState::kRcpt || s == SessionState::kData) CHECK(model.accepted);
  if (s == SessionState::kMail) CHECK(m.accepted() == 0);
  if (!m.in_transaction()) CHECK(m.accepted() == 0 && m.rcpt_attempts() == 0);
  CHECK(m.accepted() <= m.rcpt_attempts());
  CHECK(m.accepted() <= f.max_recipients);
  CHECK(m.rcpt_attempts() <= f.max_recipients + SessionMachine::kMaxRefusedRecipients);
  if (s == SessionState::kConnected) CHECK(m.greeting() == Greeting::kNone);
  if (s == SessionState::kGreeted || m.in_transaction() || s == SessionState::kAuth)
    CHECK(m.greeting() != Greeting::kNone);
  if (s == SessionState::kAuth) CHECK(m.greeting() == Greeting::kEhlo);
  CHECK(m.pending() == model.pending);
}

SessionFacts facts_from(std::uint8_t bits) {
  SessionFacts f;
  f.hostname = "lb.example";
  f.max_message_size = 1000;
  f.max_recipients = 1 + (bits >> 6);  // 1..4
  f.tls_offered = bits & 1;
  f.tls_active = !f.tls_offered && (bits & 2);  // implicit TLS
  f.auth_offered = bits & 4;
  f.submission = bits & 8;
  f.trusted = bits & 16;
  f.tls_required = bits & 32;
  return f;
}

const std::array<Command, kLines.size()>& commands() {
  // Parsed once: the machine, not the parser, is under test here.
  static const std::array<Command, kLines.size()> parsed_lines = [] {
    std::array<Command, kLines.size()> c;
    for (std::size_t i = 0; i < kLines.size(); ++i) {
      auto parsed = parse_command(kLines[i]);
      // FROBNICATE: the parser answers it; the machine's row is Verb::kUnknown.
      c[i] = parsed.command ? *parsed.command : Command{};
    }
    return c;
  }();
  return parsed_lines;
}

struct Driver {
  SessionMachine m;
  Model model;
  SessionFacts f;

  // An outcome nothing asked for, which must change nothing it does not
  // apply to (or what end_transaction() and a closed session do anyway).
  void stray_outcome(std::uint8_t pick, bool bit) {
    switch (pick % 6) {
      case 0:
        m.mail_result(bit);
        break;
      case 1:
        m.rcpt_result(bit);
        break;
      case 2:
        if (m.state() != SessionState::kTls) m.tls_result(bit);
        break;
      case 3:
        if (m.state() != SessionState::kAuth)
          m.auth_result(bit ? AuthOutcome::kAuthenticated : AuthOutcome::kRefused);
        break;
      case 4:
        m.transaction_ended();
        model.open = model.accepted = false;
        break;
      case 5:
        if (!bit) break;
        m.close();
        model = Model{};
        model.closed = true;
        break;
    }
    check_state(m, model, f);
  }

  // What the machine proceeded with is allowed there, and the model follows.
  void check_proceed(const Command& cmd, const Step& st, SessionState before) {
    switch (st.action) {
      case Action::kReply:
        CHECK(m.state() == before);
        break;
      case Action::kGreet:
        CHECK(cmd.verb == Verb::kHelo || cmd.verb == Verb::kEhlo);
        model.open = model.accepted = false;
        CHECK(m.state() == SessionState::kGreeted);
        break;
      case Action::kReset:
        CHECK(cmd.verb == Verb::kRset && model.open);
        model.open = model.accepted = false;
        break;
      case Action::kRelayMail:
        CHECK(cmd.verb == Verb::kMail && !model.open);
        CHECK(!f.tls_required || f.tls_active);
        CHECK(!f.submission || f.trusted || m.authenticated());
        model.pending = Action::kRelayMail;
        break;
      case Action::kRelayRcpt:
        CHECK(cmd.verb == Verb::kRcpt && model.open);
        model.pending = Action::kRelayRcpt;
        break;
      case Action::kStartData:
        // The invariant the whole relay rests on.
        CHECK(cmd.verb == Verb::kData && model.open && model.accepted);
        CHECK(m.state() == SessionState::kData);
        break;
      case Action::kStartTls:
        CHECK(cmd.verb == Verb::kStartTls && f.tls_offered && !f.tls_active && !model.open);
        CHECK(st.reply.code == 220);
        break;
      case Action::kStartAuth:
        CHECK(cmd.verb == Verb::kAuth && f.auth_offered && f.tls_active && !model.open);
        CHECK(!m.authenticated());
        break;
      case Action::kQuit:
        CHECK(cmd.verb == Verb::kQuit || cmd.verb == Verb::kHttp);
        CHECK(st.reply.code == 221 || st.reply.code == 421);
        model = Model{};
        model.closed = true;
        break;
    }
    if (cmd.verb == Verb::kRset) CHECK(!m.in_transaction());
    check_state(m, model, f);
  }

  // The I/O layer's part, with a random outcome.
  void report_outcome(const Step& st, std::uint8_t pick, bool bit) {
    switch (st.action) {
      case Action::kRelayMail:
        m.mail_result(bit);
        model.pending = Action::kReply;
        model.open = bit;
        if (bit) CHECK(m.state() == SessionState::kMail);
        break;
      case Action::kRelayRcpt:
        m.rcpt_result(bit);
        model.pending = Action::kReply;
        model.accepted = model.accepted || bit;
        break;
      case Action::kStartData:
        m.transaction_ended();
        model.open = model.accepted = false;
        CHECK(m.state() == SessionState::kGreeted);
        break;
      case Action::kStartTls:
        m.tls_result(bit);
        if (bit) {
          f.tls_active = true;
          CHECK(m.state() == SessionState::kConnected && !m.authenticated());
        } else {
          model.closed = true;
        }
        break;
      case Action::kStartAuth: {
        // The outcome bit, and which AUTH line it was, pick one of three.
        const AuthOutcome outcome = bit             ? AuthOutcome::kAuthenticated
                                    : pick % 2 == 0 ? AuthOutcome::kRefused
                                                    : AuthOutcome::kClosed;
        m.auth_result(outcome);
        if (outcome == AuthOutcome::kClosed) model.closed = true;
        if (outcome == AuthOutcome::kAuthenticated) CHECK(m.authenticated());
        break;
      }
      case Action::kReply:
      case Action::kGreet:
      case Action::kReset:
      case Action::kQuit:
        break;
    }
    check_state(m, model, f);
  }

  void command(std::uint8_t pick, bool bit) {
    const SessionState before = m.state();
    // Outcomes are reported at once, so only a closed session is busy.
    const bool busy = model.closed;
    const Command& cmd = commands()[pick];
    const Step st = m.step(cmd, f);
    const bool answers_later = st.action == Action::kRelayMail || st.action == Action::kRelayRcpt ||
                               st.action == Action::kStartData || st.action == Action::kStartAuth;
    CHECK(answers_later == (st.reply.code == 0));
    if (st.reply.code != 0) check_reply(st.reply);
    if (busy) {
      // Closed: refused, and nothing changes.
      CHECK(st.action == Action::kReply && st.reply.code == 503);
      CHECK(m.state() == before);
      check_state(m, model, f);
      return;
    }
    check_proceed(cmd, st, before);
    report_outcome(st, pick, bit);
  }
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  Driver d;
  d.f = facts_from(data[0]);
  for (std::size_t i = 1; i < size; ++i) {
    const bool bit = data[i] & 0x80;
    const std::uint8_t pick = data[i] & 0x7f;
    if (pick < kLines.size())
      d.command(pick, bit);
    else
      d.stray_outcome(pick, bit);
  }
  return 0;
}
