#include "upstream/backend_session.hpp"

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include <cerrno>
#include <charconv>

#include "log/log.hpp"
#include "smtp/xclient.hpp"

namespace smtplb::upstream {

namespace {

bool keyword_is(std::string_view line, std::string_view kw, std::string_view* arg) {
  if (line.size() < kw.size()) return false;
  for (std::size_t i = 0; i < kw.size(); ++i) {
    char c = line[i];
    if (c >= 'a' && c <= 'z') c = static_cast<char>(c - 32);
    if (c != kw[i]) return false;
  }
  if (line.size() > kw.size() && line[kw.size()] != ' ' && line[kw.size()] != '=') return false;
  if (arg) *arg = line.size() > kw.size() ? line.substr(kw.size() + 1) : std::string_view();
  return true;
}

}  // namespace

bool Capabilities::has(std::string_view keyword) const {
  for (const auto& k : keywords) {
    if (k.size() != keyword.size()) continue;
    bool same = true;
    for (std::size_t i = 0; i < k.size() && same; ++i) {
      char c = keyword[i];
      if (c >= 'a' && c <= 'z') c = static_cast<char>(c - 32);
      same = k[i] == c;
    }
    if (same) return true;
  }
  return false;
}

Capabilities parse_ehlo(const smtp::Reply& r) {
  Capabilities c;
  c.esmtp = true;
  // The first line is the greeting; each further line is one keyword.
  for (std::size_t i = 1; i < r.lines.size(); ++i) {
    std::string_view l = r.lines[i];
    std::string kw(l.substr(0, l.find(' ')));
    for (char& ch : kw)
      if (ch >= 'a' && ch <= 'z') ch = static_cast<char>(ch - 32);
    c.keywords.push_back(std::move(kw));
    std::string_view arg;
    if (keyword_is(l, "PIPELINING", nullptr))
      c.pipelining = true;
    else if (keyword_is(l, "8BITMIME", nullptr))
      c.eightbitmime = true;
    else if (keyword_is(l, "SMTPUTF8", nullptr))
      c.smtputf8 = true;
    else if (keyword_is(l, "ENHANCEDSTATUSCODES", nullptr))
      c.enhanced_status_codes = true;
    else if (keyword_is(l, "SIZE", &arg)) {
      c.size = true;
      std::uint64_t n = 0;
      auto [p, ec] = std::from_chars(arg.data(), arg.data() + arg.size(), n);
      if (ec == std::errc()) c.size_limit = n;
    }
  }
  return c;
}

BackendSession::BackendSession(asio::any_io_executor ex, balance::BackendState& backend,
                               const config::Config& cfg)
    : backend_(backend), cfg_(cfg), sock_(ex) {}

BackendSession::~BackendSession() {
  if (sock_.is_open()) close();  // as close() says, for TLS resumption
  if (holds_slot_) backend_.close_session();
}

Failure BackendSession::failure_from(const error_code& ec) {
  // An error of the TLS layer itself (a bad record, an alert): OpenSSL's
  // rule applies, that session is not resumed (close()).
  if (ec.category() == asio::error::get_ssl_category()) tls_broken_ = true;
  if (ec == asio::error::timed_out) return Failure::kStalled;
  return Failure::kDropped;
}

Failure BackendSession::expect_220(const CommandResult& r, std::string_view verb, Failure refused) {
  const std::string v(verb);
  if (r.failure != Failure::kNone) {
    detail_ = "no reply to " + v;
    return r.failure;
  }
  if (r.reply.code == 220) return Failure::kNone;
  open_reply_ = r.reply;
  if (r.reply.code == 421) return fail(Failure::kShuttingDown, "421 to " + v);
  return fail(refused, v + " refused: " + r.reply.summary());
}

Failure BackendSession::fail(Failure f, std::string detail) {
  detail_ = std::move(detail);
  close();
  return f;
}

awaitable<Failure> BackendSession::open(const tcp::endpoint& ep, const ClientIdentity* client) {
  co_return co_await open(ep,
                          OpenTimeouts{cfg_.timeouts.backend_connect, cfg_.timeouts.backend_reply,
                                       cfg_.timeouts.tls_handshake},
                          client);
}

awaitable<Failure> BackendSession::open(const tcp::endpoint& ep, OpenTimeouts t,
                                        const ClientIdentity* client) {
  state_ = State::kConnecting;
  detail_.clear();
  const config::Backend& bc = backend_.config();
  error_code ec = co_await sock_.connect(ep, t.connect);
  if (ec) {
    close();
    if (ec == asio::error::no_descriptors || ec.value() == ENFILE || ec.value() == EMFILE) {
      detail_ = "no file descriptor left for the connection";
      co_return Failure::kLocalLimit;  // smtplb's shortage, not the backend's failure
    }
    co_return ec == asio::error::timed_out ? Failure::kConnectTimeout : Failure::kConnectRefused;
  }
  if (one_client_per_connection(bc.identity)) {
    // The PROXY header comes first, before TLS and before the banner
    // (proxy-protocol.txt 2: the receiver reads it before anything else).
    error_code ignored;
    const std::string header =
        proxy_preamble(bc.identity, client, sock_.socket().local_endpoint(ignored), ep);
    Failure f = co_await send(header, t.reply);
    if (f != Failure::kNone) co_return fail(f, "sending the PROXY header");
  }
  if (bc.tls.mode == config::TlsMode::kImplicit) {
    Failure f = co_await handshake(t.tls);
    if (f != Failure::kNone) co_return f;
  }
  auto banner = co_await read_reply(t.reply);
  if (banner.failure != Failure::kNone) {
    close();
    co_return banner.failure;
  }
  if (banner.reply.code != 220) {
    open_reply_ = banner.reply;
    close();
    co_return Failure::kBannerRefused;
  }
  Failure f = co_await hello(t.reply, true);
  if (f != Failure::kNone) co_return f;
  if (bc.tls.mode == config::TlsMode::kStartTls) {
    f = co_await starttls(t.reply, t.tls);
    if (f != Failure::kNone) co_return f;
    // RFC 3207 4.2: forget what the plain-text EHLO said; ask again.
    f = co_await hello(t.reply, true);
    if (f != Failure::kNone) co_return f;
  }
  if (bc.identity == config::Identity::kXclient) {
    // DESIGN.md: identity is never silently lost.  A backend that does not
    // take XCLIENT (or not the client's address) is not used at all.
    if (!xclient_) co_return fail(Failure::kNoXclient, "EHLO offers no XCLIENT");
    if (!xclient_->addr) co_return fail(Failure::kNoXclient, "XCLIENT without ADDR");
  }
  offered_ = caps_;
  state_ = State::kReady;
  created_ = last_used_ = Clock::now();
  co_return Failure::kNone;
}

awaitable<Failure> BackendSession::hello(Duration d, bool learn_xclient, std::string_view name,
                                         bool helo_only) {
  const std::string me(name.empty() ? std::string_view(cfg_.hostname) : name);
  if (helo_only) {
    auto helo = co_await command("HELO " + me + "\r\n", d);
    if (helo.failure != Failure::kNone) co_return helo.failure;
    if (helo.reply.code != 250) {
      open_reply_ = helo.reply;
      close();
      co_return helo.reply.code == 421 ? Failure::kShuttingDown : Failure::kEhloRefused;
    }
    caps_ = Capabilities();
    xclient_offered_ = false;
    co_return Failure::kNone;
  }
  auto ehlo = co_await command("EHLO " + me + "\r\n", d);
  if (ehlo.failure != Failure::kNone) {
    close();
    co_return ehlo.failure;
  }
  if (ehlo.reply.code == 250) {
    caps_ = parse_ehlo(ehlo.reply);
    auto xclient = smtp::find_xclient(ehlo.reply);
    xclient_offered_ = xclient.has_value();
    if (learn_xclient) xclient_ = xclient;
    co_return Failure::kNone;
  }
  if (ehlo.reply.code == 421) {
    open_reply_ = ehlo.reply;
    close();
    co_return Failure::kShuttingDown;
  }
  // RFC 5321 3.2: a server that does not know EHLO gets HELO.
  open_reply_ = ehlo.reply;
  auto helo = co_await command("HELO " + me + "\r\n", d);
  if (helo.failure != Failure::kNone || helo.reply.code != 250) {
    close();
    co_return helo.failure != Failure::kNone ? helo.failure : Failure::kEhloRefused;
  }
  caps_ = Capabilities();
  xclient_offered_ = false;
  if (learn_xclient) xclient_.reset();
  co_return Failure::kNone;
}

awaitable<Failure> BackendSession::starttls(Duration reply, Duration handshake_timeout) {
  // Never plain text once TLS is configured (SECURITY.md 3): a backend
  // that stops offering STARTTLS may be behind a downgrading middlebox.
  if (!caps_.has("STARTTLS")) co_return fail(Failure::kTls, "STARTTLS not offered");
  // Not command(): bytes behind this 220 are the attack below, named so.
  const Failure sent = co_await send("STARTTLS\r\n", reply);
  CommandResult r{sent, {}};
  if (sent == Failure::kNone) r = co_await read_reply(reply);
  if (Failure f = expect_220(r, "STARTTLS", Failure::kTls); f != Failure::kNone) co_return f;
  // CVE-2021-38371: anything behind the 220 was sent in plain text by
  // whoever sits on the path and would be read as if it came over TLS.
  // Bytes that arrive later than this look are not a TLS record and fail
  // the handshake instead.
  if (has_unsolicited_input())
    co_return fail(Failure::kTls, "bytes after the STARTTLS 220 (response injection)");
  co_return co_await handshake(handshake_timeout);
}

std::string BackendSession::server_name() const {
  const config::Backend& bc = backend_.config();
  if (!bc.tls.sni.empty()) return bc.tls.sni;
  if (!bc.mx_host.empty()) return bc.mx_host;
  return bc.address.host;
}

awaitable<Failure> BackendSession::handshake(Duration d) {
  const config::Backend& bc = backend_.config();
  net::ClientTls* client = bc.tls.client.get();
  if (!client) co_return fail(Failure::kTls, "no TLS context");  // the loader makes one
  const std::string name = server_name();
  // The last session this backend gave, to resume; SSL_set_session takes
  // a reference of its own, so ours is dropped right after.
  SSL_SESSION* resume = client->session_to_resume();
  const bool offered = resume != nullptr;
  const bool named = sock_.prepare_client_tls(client->context(), name, client->verify(), resume);
  if (resume) SSL_SESSION_free(resume);
  if (!named) co_return fail(Failure::kTls, "OpenSSL refused the server name " + name);
  error_code ec = co_await sock_.handshake(client->context(), asio::ssl::stream_base::client, d);
  if (ec) {
    std::string why = ec == asio::error::timed_out ? "handshake timed out" : ec.message();
    if (SSL* ssl = sock_.tls_handle(); ssl && client->verify()) {
      long v = SSL_get_verify_result(ssl);
      if (v != X509_V_OK)
        why = std::string("certificate verify failed: ") + X509_verify_cert_error_string(v) +
              " (name " + name + ")";
    }
    ERR_clear_error();
    co_return fail(Failure::kTls, why);
  }
  tls_ = net::tls_info(sock_.tls_handle());
  backend_.count_tls(tls_.resumed);
  log::Record("backend_tls")
      .add("pool", backend_.pool())
      .add("backend", backend_.name())
      .add("server_name", name)
      .add("version", tls_.version)
      .add("cipher", tls_.cipher)
      .add("session_offered", offered ? "yes" : "no")
      .add("resumed", tls_.resumed ? "yes" : "no")
      .emit(spdlog::level::debug);
  co_return Failure::kNone;
}

awaitable<Failure> BackendSession::send_xclient(const ClientIdentity& client, Duration d) {
  detail_.clear();
  if (!xclient_) co_return fail(Failure::kNoXclient, "EHLO offers no XCLIENT");
  // One round trip per line and one for the EHLO after it: XCLIENT
  // replaces the session's greeting, so nothing may be pipelined behind
  // it (XCLIENT_README: the server answers as to a new connection).
  for (const auto& line : smtp::xclient_commands(xclient_attributes(client), *xclient_)) {
    auto r = co_await command(line, d);
    if (Failure f = expect_220(r, "XCLIENT", Failure::kXclientRefused); f != Failure::kNone)
      co_return f;
  }
  // Then greet as the client did (XCLIENT_README's example: "EHLO
  // spike.porcupine.org" after XCLIENT): Postfix takes the HELO name and
  // the protocol from this command, not from the attributes, so EHLO with
  // smtplb's name would undo HELO=, and EHLO after PROTO=SMTP would say
  // ESMTP.  The name was validated at the client's HELO (SECURITY.md 2).
  // The attributes the first EHLO offered stay what later XCLIENTs use.
  Failure f = co_await hello(d, false, client.helo, client.proto == "SMTP");
  if (f != Failure::kNone && detail_.empty()) detail_ = "EHLO after XCLIENT failed";
  co_return f;
}

awaitable<CommandResult> BackendSession::read_reply(Duration d) {
  CommandResult r;
  const auto deadline = Clock::now() + d;
  for (;;) {
    auto item = lines_.next();
    if (item.kind == smtp::LineReader::Kind::kTooLong) {
      r.failure = Failure::kProtocol;
      close();
      co_return r;
    }
    if (item.kind == smtp::LineReader::Kind::kLine) {
      auto st = parser_.feed_line(item.line);
      if (st == smtp::ReplyParser::Status::kError) {
        r.failure = Failure::kProtocol;
        close();
        co_return r;
      }
      if (st == smtp::ReplyParser::Status::kDone) {
        r.reply = parser_.take();
        backend_.observe_reply(
            std::chrono::duration<double>(Clock::now() - (deadline - d)).count());
        co_return r;
      }
      continue;
    }
    auto left = std::chrono::duration_cast<Duration>(deadline - Clock::now());
    if (left <= Duration::zero()) {
      r.failure = Failure::kStalled;
      close();
      co_return r;
    }
    auto [ec, n] = co_await sock_.read_some(asio::buffer(buf_), left);
    if (ec) {
      r.failure = failure_from(ec);
      close();
      co_return r;
    }
    lines_.append(std::string_view(buf_.data(), n));
  }
}

awaitable<Failure> BackendSession::send(std::string_view bytes, Duration d) {
  error_code ec = co_await sock_.write_all(bytes, d);
  if (ec) {
    close();
    co_return failure_from(ec);
  }
  co_return Failure::kNone;
}

awaitable<CommandResult> BackendSession::command(std::string_view line, Duration d) {
  Failure f = co_await send(line, d);
  if (f != Failure::kNone) co_return CommandResult{f, {}};
  CommandResult r = co_await read_reply(d);
  if (r.failure == Failure::kNone && lines_.has_pending()) {
    // One reply per command (RFC 2920): a second one in the same read
    // would be taken as the answer to the next command.
    detail_ = "bytes behind the reply to " + std::string(line.substr(0, line.find(' ')));
    while (!detail_.empty() && (detail_.back() == '\n' || detail_.back() == '\r'))
      detail_.pop_back();
    close();
    r.failure = Failure::kProtocol;
  }
  co_return r;
}

awaitable<void> BackendSession::quit() {
  if (is_open()) {
    // A short bound: the backend's answer changes nothing for us.
    auto r = co_await command("QUIT\r\n", std::chrono::seconds(2));
    (void)r;
  }
  close();
}

void BackendSession::close() {
  state_ = State::kClosed;
  if (SSL* ssl = sock_.tls_handle(); ssl && !tls_broken_ && SSL_is_init_finished(ssl)) {
    // OpenSSL takes a connection freed without a close_notify sent as
    // broken and marks its session not resumable -- the very session
    // object ClientTls keeps for the next connection (TLS 1.3 tickets are
    // the live connection's).  A connection we close on purpose (QUIT,
    // pool expiry, a failover for an SMTP reason) is no sign of a bad
    // session: say so, so the next connection resumes.  SMTP has ended
    // the dialog already; no close_notify is waited for.
    SSL_set_shutdown(ssl, SSL_SENT_SHUTDOWN | SSL_RECEIVED_SHUTDOWN);
  }
  sock_.close();
}

}  // namespace smtplb::upstream
