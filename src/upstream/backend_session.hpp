// backend_session.hpp: one SMTP client session to a backend MTA.
//
// Named states (connecting -> ready -> closed) and one reply reader that
// treats the backend as untrusted input (smtp::ReplyParser): one reply per
// command, strictly in order, nothing behind it (command(), peek()).
// The session records the backend's EHLO capabilities so the relay never
// sends SMTPUTF8, 8BITMIME or SIZE to a backend that did not offer them.
//
// open() is the whole greeting a backend's configuration asks for, in
// order: connect; the PROXY header (`identity: proxy_v1|proxy_v2`, before
// anything else); TLS at once (`tls: {mode: implicit}`, RFC 8314); the 220
// banner; EHLO; with `mode: starttls` STARTTLS, its 220, the handshake and
// EHLO again (RFC 3207 4.2: what was learnt in plain text is forgotten);
// with `identity: xclient` a check that XCLIENT is offered.  TLS is never
// optional once configured: no STARTTLS offered, a refusal, a byte
// buffered behind the 220 (response injection, CVE-2021-38371) or a failed
// handshake or certificate check is Failure::kTls, never a plain-text
// session (SECURITY.md 3).
#pragma once

#include <array>
#include <chrono>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "balance/backend_state.hpp"
#include "config/config.hpp"
#include "net/timed_socket.hpp"
#include "net/tls.hpp"
#include "smtp/line_reader.hpp"
#include "smtp/reply.hpp"
#include "upstream/failure.hpp"
#include "upstream/identity.hpp"

namespace smtplb::upstream {

struct Capabilities {
  bool esmtp = false;
  bool pipelining = false;
  bool size = false;
  std::uint64_t size_limit = 0;  // 0: none announced
  bool eightbitmime = false;
  bool smtputf8 = false;
  bool enhanced_status_codes = false;
  std::vector<std::string> keywords;  // every EHLO keyword, upper case (health_check.expect)
  bool has(std::string_view keyword) const;
};

struct CommandResult {
  Failure failure = Failure::kNone;  // kNone: `reply` holds the backend's answer
  smtp::Reply reply;
};

class BackendSession {
 public:
  using Duration = std::chrono::milliseconds;
  // connecting -> ready -> closed; a session in use is owned by one
  // transaction and not in its pool, which is all "busy" means.
  enum class State { kConnecting, kReady, kClosed };

  BackendSession(asio::any_io_executor ex, balance::BackendState& backend,
                 const config::Config& cfg);
  ~BackendSession();
  // This session holds one of the backend's max_connections slots, given
  // back when it is destroyed.
  void hold_slot() { holds_slot_ = true; }

  // How long each step of open() may take.
  struct OpenTimeouts {
    Duration connect;
    Duration reply;  // banner, EHLO, STARTTLS
    Duration tls;    // the handshake
  };
  // Connect and greet as above, with the configured backend timeouts or
  // the given ones (health checks).  `client`: whom the PROXY header
  // names; null for a connection that carries no client (health checks).
  awaitable<Failure> open(const tcp::endpoint& ep, const ClientIdentity* client);
  awaitable<Failure> open(const tcp::endpoint& ep, OpenTimeouts t, const ClientIdentity* client);
  // The last reply that made open() fail (banner or EHLO), for logs.
  const smtp::Reply& open_reply() const { return open_reply_; }
  // Why open() or send_xclient() failed, in words, for logs (OpenSSL's
  // reason for a handshake, "STARTTLS not offered", the backend's reply).
  const std::string& failure_detail() const { return detail_; }
  // XCLIENT with this client's attributes (Postfix XCLIENT_README), one
  // 220 for each line, then EHLO again: before each MAIL, on a new and on
  // a pooled session alike, since attributes last for the connection and
  // a pooled one carries many clients (SECURITY.md 5).
  awaitable<Failure> send_xclient(const ClientIdentity& client, Duration d);
  // The identity mode of its backend.
  config::Identity identity() const { return backend_.config().identity; }
  // May serve another client after this one: not a PROXY connection, and
  // not an XCLIENT one whose backend stopped offering XCLIENT after the
  // last one (Postfix authorizes XCLIENT by the client address in effect,
  // so a connection that named a client outside
  // smtpd_authorized_xclient_hosts can name no other client), or that
  // greeted with HELO for a HELO client (no keywords: nobody knows).
  bool poolable() const {
    return !one_client_per_connection(identity()) &&
           (identity() != config::Identity::kXclient || xclient_offered_);
  }
  bool is_tls() const { return sock_.is_tls(); }

  // One command, one reply, and nothing behind it: a second reply (or any
  // byte) buffered behind the first is Failure::kProtocol, the session closed.
  awaitable<CommandResult> command(std::string_view line, Duration d);
  // `d` bounds the whole reply, not each read: a backend that dribbles a
  // byte at a time cannot hold a transaction past it.
  awaitable<CommandResult> read_reply(Duration d);
  awaitable<Failure> send(std::string_view bytes, Duration d);
  // QUIT politely, bounded, then close.
  awaitable<void> quit();
  void close();
  // Stops whatever is pending (forced shutdown); the operation fails.
  void cancel() { sock_.cancel(); }

  balance::BackendState& backend() { return backend_; }
  // What the backend offers in the session's current greeting (after an
  // XCLIENT, the client's: MAIL is built from these).
  const Capabilities& caps() const { return caps_; }
  // What it offered smtplb's own EHLO at open(): what it can do, whoever a
  // later XCLIENT named (a pooled session whose last client said HELO
  // still relays 8BITMIME for the next one).
  const Capabilities& offered() const { return offered_; }
  bool is_open() const { return state_ != State::kClosed && sock_.is_open(); }
  // Bytes the backend sent that no command asked for (SECURITY.md 8).
  bool has_unsolicited_input() const { return lines_.has_pending() || sock_.available() > 0; }
  // Bytes already read behind the last reply: after the last reply a
  // command (or a pipelined group) expects, a protocol violation
  // (DESIGN.md "Backend replies are a strict sequence").  Free: no syscall.
  bool has_buffered_input() const { return lines_.has_pending(); }
  // Whether the backend spoke or hung up since its last expected reply,
  // without waiting (before the final dot: nothing may have come since
  // the 354).
  net::TimedSocket::Peek peek() const {
    return lines_.has_pending() ? net::TimedSocket::Peek::kInput : sock_.peek();
  }

  Clock::time_point created() const { return created_; }
  Clock::time_point last_used() const { return last_used_; }
  void touch() { last_used_ = Clock::now(); }
  bool reused = false;  // taken from the pool rather than freshly opened
  // Taken from the pool and not yet reset: the next pipelined group starts
  // with RSET (RFC 2920 allows it anywhere in a group), which saves the
  // round trip of a RSET of its own.
  bool rset_pending = false;

 private:
  Failure failure_from(const error_code& ec);
  // EHLO `name` (smtplb's hostname when empty; HELO when EHLO is refused,
  // or only HELO with `helo_only`); learns the capabilities, and the
  // XCLIENT attributes when `learn_xclient`.
  awaitable<Failure> hello(Duration d, bool learn_xclient, std::string_view name = {},
                           bool helo_only = false);
  // STARTTLS on a greeted session, then the handshake.
  awaitable<Failure> starttls(Duration reply, Duration handshake);
  // The client side of the handshake, SNI and verification per `tls:`.
  awaitable<Failure> handshake(Duration d);
  // The name the certificate must carry: `tls.sni`, else the MX host name
  // the backend was found under, else the address's host.
  std::string server_name() const;
  Failure fail(Failure f, std::string detail);
  // STARTTLS and XCLIENT both answer 220 when they take effect: kNone, or
  // the failure (421: shutting down; another code: `refused`), recorded.
  Failure expect_220(const CommandResult& r, std::string_view verb, Failure refused);

  bool holds_slot_ = false;

  balance::BackendState& backend_;
  const config::Config& cfg_;
  net::TimedSocket sock_;
  smtp::LineReader lines_{smtp::ReplyParser::kMaxReplyLine};
  smtp::ReplyParser parser_;
  std::array<char, 4096> buf_{};
  Capabilities caps_;
  Capabilities offered_;
  std::optional<smtp::XclientSupport> xclient_;  // from the EHLO before any XCLIENT
  bool xclient_offered_ = false;                 // by the last EHLO
  net::TlsInfo tls_;
  bool tls_broken_ = false;  // a TLS-level error: its session is not resumed
  smtp::Reply open_reply_;
  std::string detail_;
  State state_ = State::kConnecting;
  Clock::time_point created_ = Clock::now();
  Clock::time_point last_used_ = created_;
};

Capabilities parse_ehlo(const smtp::Reply& r);

}  // namespace smtplb::upstream
