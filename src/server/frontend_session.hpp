// frontend_session.hpp: the server side of one client connection: its I/O.
//
// Reads top to bottom (STYLE.md): banner, then one command at a time; the
// session machine (smtp/session_machine.hpp) decides what each command may
// do in the session's state and gives the reply or the action to carry
// out; the handlers here do the I/O that needs (the relay, the message,
// the AUTH exchange, the TLS handshake) and report the outcome back to it.
// One loop writes, counts and logs.  Replies
// are queued and flushed whenever the session would wait for input, which
// is exactly RFC 2920's pipelining: replies in order, in as few writes as
// the client's batching allows, and nothing read past DATA is executed as
// a command.  Every wait has its bound: timeouts.client_command per read,
// client_data per read in DATA and client_data_total for a whole DATA
// phase, client_session for the connection.
#pragma once

#include <array>
#include <memory>
#include <optional>
#include <string>

#include "net/clock.hpp"
#include "net/ip_address.hpp"
#include "net/timed_socket.hpp"
#include "net/tls.hpp"
#include "relay/transaction.hpp"
#include "runtime/core.hpp"
#include "server/connection_limiter.hpp"
#include "server/policy.hpp"
#include "smtp/command.hpp"
#include "smtp/line_reader.hpp"
#include "smtp/reply.hpp"
#include "smtp/session_machine.hpp"

namespace smtplb::server {

class FrontendSession : public runtime::SessionLink {
 public:
  // `peer`: the client's address, as the accept saw it.
  FrontendSession(runtime::Core& core, std::shared_ptr<runtime::CoreView> view,
                  const config::Listener& listener, tcp::socket sock, const tcp::endpoint& peer,
                  std::unique_ptr<ConnectionSlot> slot);
  ~FrontendSession();

  // Runs the session, which owns itself from here on: a coroutine while it
  // works, a bare completion handler while it waits for a command.
  static void start(std::unique_ptr<FrontendSession> s);

  // Shutdown: an idle session (waiting for a command, no transaction)
  // stops waiting at once; a busy one finishes its transaction first.
  void on_shutdown();
  void force_close();
  // Core: a parked session's deadline passed.
  void on_park_deadline();

 private:
  enum class ReadResult { kLine, kTooLong, kClosed, kTimeout, kShutdown, kParked };
  using Duration = std::chrono::milliseconds;

  // One stretch of work: from the start (`fresh`) or a wake-up, to the end
  // of the session or the next time it parks.
  static void serve(std::unique_ptr<FrontendSession> s, bool fresh);
  // `fresh`: PROXY header, implicit TLS and banner first.  Then the
  // command loop; true: parked (the caller hands the session to park()),
  // false: the session is over and closed.
  awaitable<bool> run(bool fresh);
  // Waiting for the next command with nothing in progress costs no
  // coroutine frame, timer or buffer (the way nginx keeps idle connections
  // cheap): the session waits for readability with a plain handler, its
  // deadline kept by the Core, and serve() starts again when the client
  // speaks, the deadline passes or shutdown cancels the wait.
  bool can_park() const;
  static void park(std::unique_ptr<FrontendSession> s);
  static void wake(std::unique_ptr<FrontendSession> s, error_code ec);
  // Gives back the buffers an empty reader and reply queue keep.
  void shrink_buffers();

  // `may_park`: the command loop's read, which may end in kParked instead
  // of waiting.
  awaitable<ReadResult> read_line(std::string& line, bool may_park = false);
  // The client's next bytes, at input(): the core's scratch area in
  // plaintext (no buffer held while waiting), the session's own under TLS.
  // Taken out before the next wait.
  awaitable<std::pair<error_code, std::size_t>> read_input(Duration d);
  static constexpr std::size_t kTlsReadSize = 16 * 1024;  // one TLS record
  const char* input() const {
    if (sock_.is_tls()) return tls_input_->data();
    return static_cast<const char*>(core_.scratch().data());
  }

  // The session's parts live in files of their own, one purpose each:
  //   frontend_session.cpp      the command loop, reading, writing, parking
  //   frontend_opening.cpp      PROXY header, TLS handshake, STARTTLS's forgetting
  //   frontend_auth.cpp         the AUTH exchange
  //   frontend_transaction.cpp  MAIL and RCPT: envelope, policy, routing, relay
  //   frontend_data.cpp         DATA: the message, through the final reply
  //   frontend_log.cpp          the transaction's log line and counters, the state trace

  // `proxy_protocol` listeners: the PROXY header, then the client's address
  // and the per-client limits; false: close (logged).
  awaitable<bool> read_proxy_header();
  // Sets trusted_ from trusted_networks for the client as this session
  // sees it: never trusted when a PROXY header named no client (v2 LOCAL,
  // v1 UNKNOWN: the address is the balancer's, not its trust).  Every
  // trust decision (at connect, after the PROXY header, at a reload's new
  // transaction) goes through here.
  void refresh_trust() { trusted_ = !no_client_ && server::is_trusted(*cfg_, ip_); }
  // The per-client limits the accept left to a PROXY listener, now for the
  // announced client; false: refused (counted and logged).
  bool admit_proxied_client();
  // How much the next read of a PROXY header may take: with implicit TLS
  // not one byte past the header, which OpenSSL must see.
  std::size_t proxy_read_size(std::string_view so_far) const;
  // The TLS handshake (implicit TLS, or after STARTTLS's 220); false: the
  // connection is unusable (logged).
  awaitable<bool> start_tls();
  // RFC 3207 4.2: what the session learnt before TLS (the machine forgets
  // its part in tls_result()).
  void forget_before_tls();
  // AUTH PLAIN/LOGIN (RFC 4954), after TLS only.  Sets `close` when the
  // client is locked out or gone.
  awaitable<smtp::Reply> on_auth(const smtp::Command& cmd, bool& close);
  // A failed AUTH: counted, logged, and answered after the throttle's delay.
  awaitable<smtp::Reply> auth_failure(std::string_view user, smtp::Reply reply);
  // RFC 3207 4.2, CVE-2011-0411: input pipelined behind STARTTLS came in
  // plaintext, where anyone on the path could have written it; it is
  // dropped, never executed under TLS.
  void discard_pipelined_before_tls();
  static constexpr std::chrono::seconds kProxyHeaderTimeout{3};
  awaitable<bool> flush();
  void queue(const smtp::Reply& r) { out_ += r.wire(); }
  Duration read_bound(Duration per_read) const;

  // What the session machine cannot know, as of this command.
  smtp::SessionFacts facts() const;
  // The reply a read that brought no command ends the session with.
  smtp::Reply input_ended(ReadResult rr);
  // limits.max_errors: true when this reply is one error too many.
  bool too_many_errors(const smtp::Reply& reply);
  // The machine's action for one command, carried out; the reply to give
  // (code 0: already given).  STARTTLS is run()'s (see there).
  awaitable<smtp::Reply> dispatch(const smtp::Command& cmd, smtp::Step& step, bool& close);
  void adopt_current_view();
  // MAIL, once the machine let it through: the limits the I/O layer keeps
  // (message rate), then the envelope.
  smtp::Reply on_mail(const smtp::Command& cmd);
  relay::Envelope envelope_for(const smtp::Command& cmd);
  // RCPT, once the machine let it through: relay policy, routing, the
  // backend's answer.
  awaitable<smtp::Reply> on_rcpt(const smtp::Command& cmd);
  // Refuses `rcpt` in the open transaction: logged with it.
  smtp::Reply refuse_rcpt(const smtp::Path& rcpt, smtp::Reply reply);
  // `mx: recipient`: finds `domain`'s mail hosts for the transaction, or
  // the reply that refuses the RCPT (550 5.1.2, 556 5.1.10,
  // 451 4.4.1/4.4.3).
  awaitable<std::optional<smtp::Reply>> recipient_hosts(const config::Pool& p,
                                                        const std::string& domain);
  // DATA: the whole phase, through the reply after the final dot.  Sets
  // `close` when the session must end (client gone, timeout).
  awaitable<smtp::Reply> on_data(bool& close);
  // Why a message read to its end is refused (kAborted: the reading
  // stopped before it, and the session ends).
  enum class DataEnd { kComplete, kTooBig, kBareLineEnding, kLongLine, kAborted };
  // Reads and relays the message to its final dot; on kAborted, `reply` is
  // the client's last reply (code 0: none, the client is gone).
  awaitable<DataEnd> read_message(smtp::Reply& reply);
  // The client gone or too slow in mid-DATA: logged, counted; the reply.
  smtp::Reply data_read_failed(error_code ec);
  // The backend's answer to the final dot (or the refusal), logged and
  // given; sets `close` when the client is gone.
  awaitable<smtp::Reply> finish_message(DataEnd end, bool& close);
  std::string received_header() const;
  awaitable<void> end_transaction();
  std::string protocol_name() const;
  void log_connect() const;
  // Debug: the machine's state before and after one command.
  void trace_state(smtp::SessionState before, smtp::Verb verb) const;
  void log_transaction(const smtp::Reply& final_reply, const char* result);
  void log_reply_lost(const log::Scope& scope, const smtp::Reply& reply) const;
  // The open transaction's relay: there from its first routed recipient
  // (the machine lets DATA through only after one).
  relay::RelayTransaction& relay() const { return *txn_->relay(); }
  bool relaying() const { return txn_ && txn_->relay(); }

  runtime::Core& core_;
  // The configuration generation of the current transaction (or of the
  // connection, before the first MAIL); cfg_ and listener_ point into it.
  std::shared_ptr<runtime::CoreView> view_;
  const config::Config* cfg_;
  const config::Listener* listener_;
  net::TimedSocket sock_;
  std::unique_ptr<ConnectionSlot> slot_;
  std::string client_ip_;
  // The session id, 16 hex digits (Core::next_session_id): inline, no
  // allocation per connection.  Next to the small members: no padding.
  std::array<char, 17> id_;
  std::string_view id() const { return id_.data(); }
  // Whom a log line is about: this session, and its open transaction.
  log::Scope scope() const { return txn_ ? txn_->scope() : log::Scope{id(), {}}; }
  std::uint16_t client_port_ = 0;
  net::IpAddress ip_;
  net::IpAddress local_ip_;  // where the client connected (PROXY: as announced)
  std::uint16_t local_port_ = 0;
  bool trusted_ = false;
  // The PROXY header named no client (v2 LOCAL, v1 UNKNOWN): ip_ stays the
  // balancer's, for the logs and the per-client limits, but its trust in
  // trusted_networks is not the client's to use (issue 14).
  bool no_client_ = false;
  Clock::time_point started_ = Clock::now();

  // Takes the longest command line (AUTH's, with RFC 4954's initial
  // response); each verb's own limit is checked once the line is whole.
  smtp::LineReader reader_{smtp::kMaxAnyCommandLine};
  std::unique_ptr<std::array<char, kTlsReadSize>> tls_input_;
  std::string out_;
  bool idle_wait_ = false;  // blocked on a command read with no transaction open
  // A failed AUTH's delay, while it runs: shutdown ends it early.
  Timer* auth_delay_ = nullptr;
  bool forced_ = false;
  int errors_ = 0;
  // Parked: how the wait ended (kLine: readable), the line's deadline.
  ReadResult woke_ = ReadResult::kLine;
  bool parked_ = false;
  bool park_expired_ = false;
  Clock::time_point park_deadline_{};
  runtime::Core::Parked::iterator parked_at_{};  // valid while `parked_`

  // Session and transaction state: the state and its rules are the
  // machine's; what it cannot hold (names, the TLS details, the envelope,
  // the relay) is here.
  smtp::SessionMachine machine_;
  std::string helo_name_;
  std::unique_ptr<net::TlsInfo> tls_;  // null: no TLS
  std::string auth_user_;              // empty: not authenticated
  // What only an open transaction (MAIL to its end) needs, allocated at
  // MAIL: a session waiting between transactions costs none of it.
  std::unique_ptr<relay::Transaction> txn_;  // null: no transaction
  int tx_count_ = 0;
};

}  // namespace smtplb::server
