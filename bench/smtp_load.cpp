// smtp_load.cpp: an SMTP load client for the benchmarks in bench/.
//
// C connections in parallel (one coroutine each, spread over --threads
// io_contexts), each sending M messages (-m 1: one message per connection,
// then QUIT and a new connection), in plain text, over STARTTLS or over
// implicit TLS, for a duration or a number of messages: a closed loop, every
// connection always busy.  MAIL, RCPT and DATA go in one write when the
// server offers PIPELINING.  Every message carries a unique Message-ID and
// X-Test-Id (PREFIX.N) so that a sink can count lost and duplicated mail.
//
// Each transaction is timed from MAIL to the 250 after the final dot, and the
// first message of each connection also from the start of the connect (in
// one-message-per-connection mode that is the whole cost of a message).
// Every network wait has a deadline (--timeout); a failed step is counted by
// stage and reply (or error), the connection is dropped and a new one made.
// At the end one JSON object goes to stdout: counts, rates, latency
// percentiles and the client's own CPU time (getrusage), so a report can
// show whether the client was the bottleneck.  See bench/README.md.
//
// Boost.Asio (header-only) and OpenSSL; no other dependency.

#include <openssl/err.h>
#include <openssl/objects.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <signal.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <boost/asio.hpp>
#include <boost/asio/ssl.hpp>
#include <charconv>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <exception>
#include <fstream>
#include <iostream>
#include <map>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <string_view>
#include <thread>
#include <tuple>
#include <utility>
#include <vector>

namespace {

namespace asio = boost::asio;
namespace ssl = asio::ssl;
using asio::awaitable;
using asio::ip::tcp;
using error_code = boost::system::error_code;
using Clock = std::chrono::steady_clock;
constexpr auto use_nothrow = asio::as_tuple(asio::use_awaitable);

constexpr std::size_t kMaxReply = 64 * 1024;  // one reply, all its lines
constexpr std::size_t kMaxFirstErrors = 10;

// ---------------------------------------------------------------- options

enum class TlsMode { kNone, kStartTls, kImplicit };

struct Target {
  std::string host;
  std::string text;  // as given: HOST:PORT
  tcp::endpoint endpoint;
};

struct Options {
  std::vector<Target> servers;
  int connections = 10;
  long per_connection = 1;  // 0: no limit
  std::size_t size = 1024;
  double duration = 0;  // seconds; 0: not given
  long messages = 0;    // 0: not given
  TlsMode tls = TlsMode::kNone;
  std::string ca;           // verify the server with it; empty: no verification
  std::string server_name;  // SNI and the name to verify; default: the host
  bool resume = false;
  bool pipelining = true;
  std::string helo = "load.example.com";
  std::string from = "load-sender@example.com";
  std::string to = "load-rcpt@example.com";
  double timeout = 30;
  int threads = 1;
  std::string id_prefix;
  std::string ids_out;
  double error_pause = 0.01;
  double max_time = 0;  // 0: derived
};

const char* to_string(TlsMode m) {
  switch (m) {
    case TlsMode::kNone:
      return "none";
    case TlsMode::kStartTls:
      return "starttls";
    case TlsMode::kImplicit:
      return "implicit";
  }
  return "?";
}

const char* kUsage =
    "usage: smtp_load --server HOST:PORT [--server HOST:PORT ...] [options]\n"
    "  -c, --connections N      parallel connections (default 10)\n"
    "  -m, --per-connection M   messages per connection, 0 = no limit (default 1: one\n"
    "                           message per connection, reconnecting)\n"
    "  -s, --size SIZE          message size, headers included: 1024, 1KB, 100KB, 1MB\n"
    "                           (default 1KB)\n"
    "  -d, --duration SECONDS   run this long (default 5 unless --messages)\n"
    "  -n, --messages N         stop after N messages were tried (with --duration:\n"
    "                           whichever comes first)\n"
    "      --starttls           STARTTLS after EHLO (required: no STARTTLS offered is an "
    "error)\n"
    "      --tls                implicit TLS from the first byte (port-465 style)\n"
    "      --ca FILE            verify the server's certificate with this CA (default: no\n"
    "                           verification)\n"
    "      --server-name NAME   SNI and the name verified (default: the server's host)\n"
    "      --resume             resume TLS sessions (default: a full handshake each time)\n"
    "      --no-pipelining      one command at a time even when PIPELINING is offered\n"
    "      --helo NAME  --from ADDR  --to ADDR   envelope and EHLO name\n"
    "      --timeout SECONDS    deadline of each network operation (default 30)\n"
    "      --threads T          io_context threads, connections spread over them (default 1)\n"
    "      --id-prefix STR      Message-ID / X-Test-Id prefix (default: time.pid)\n"
    "      --ids-out FILE       write the X-Test-Id of every accepted message and its\n"
    "                           latency in ms (as connect_latency_ms / latency_ms), one a line\n"
    "      --error-pause SECONDS  wait after a failure before reconnecting (default 0.01)\n"
    "      --max-time SECONDS   hard stop (default: duration + 2 x timeout + 5, or 3600)\n"
    "Prints one JSON object on stdout.  Exit status 0: no failure; 1: some messages\n"
    "failed or the hard stop was reached; 2: bad usage or setup.\n";

[[noreturn]] void usage_error(const std::string& msg) {
  std::cerr << "smtp_load: " << msg << "\n" << kUsage;
  std::exit(2);
}

long parse_long(const std::string& opt, const std::string& v, long min) {
  long out = 0;
  auto [p, ec] = std::from_chars(v.data(), v.data() + v.size(), out);
  if (ec != std::errc{} || p != v.data() + v.size() || out < min)
    usage_error(opt + ": bad number `" + v + "`");
  return out;
}

double parse_seconds(const std::string& opt, const std::string& v) {
  char* end = nullptr;
  const double d = std::strtod(v.c_str(), &end);
  if (v.empty() || *end != '\0' || !(d >= 0) || d > 1e7)
    usage_error(opt + ": bad number of seconds `" + v + "`");
  return d;
}

std::size_t parse_size(const std::string& opt, const std::string& v) {
  std::size_t n = 0;
  auto [p, ec] = std::from_chars(v.data(), v.data() + v.size(), n);
  if (ec != std::errc{} || p == v.data()) usage_error(opt + ": bad size `" + v + "`");
  std::string unit(p, v.data() + v.size());
  for (auto& c : unit) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  std::size_t mult = 1;
  if (unit.empty() || unit == "B")
    mult = 1;
  else if (unit == "K" || unit == "KB")
    mult = 1024;
  else if (unit == "M" || unit == "MB")
    mult = 1024 * 1024;
  else
    usage_error(opt + ": bad size `" + v + "` (e.g. 1024, 1KB, 100KB, 1MB)");
  if (n > (std::size_t{1} << 32) / mult) usage_error(opt + ": size too large");
  return n * mult;
}

Target parse_target(const std::string& v) {
  Target t;
  t.text = v;
  std::string host, port;
  if (!v.empty() && v[0] == '[') {
    auto close = v.find(']');
    if (close == std::string::npos || close + 1 >= v.size() || v[close + 1] != ':')
      usage_error("--server: bad address `" + v + "` (HOST:PORT, [V6]:PORT)");
    host = v.substr(1, close - 1);
    port = v.substr(close + 2);
  } else {
    auto colon = v.rfind(':');
    if (colon == std::string::npos || colon == 0)
      usage_error("--server: bad address `" + v + "` (HOST:PORT)");
    host = v.substr(0, colon);
    port = v.substr(colon + 1);
  }
  const long p = parse_long("--server", port, 1);
  if (p > 65535) usage_error("--server: bad port in `" + v + "`");
  t.host = host;
  error_code ec;
  auto addr = asio::ip::make_address(host, ec);
  if (!ec) {
    t.endpoint = tcp::endpoint(addr, static_cast<unsigned short>(p));
    return t;
  }
  asio::io_context ioc;
  tcp::resolver resolver(ioc);
  auto results = resolver.resolve(host, port, ec);
  if (ec || results.empty()) usage_error("--server: cannot resolve `" + host + "`");
  t.endpoint = results.begin()->endpoint();
  return t;
}

Options parse_options(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    std::string value;
    bool has_value = false;
    if (arg.rfind("--", 0) == 0) {
      auto eq = arg.find('=');
      if (eq != std::string::npos) {
        value = arg.substr(eq + 1);
        arg = arg.substr(0, eq);
        has_value = true;
      }
    }
    auto next = [&]() -> std::string {
      if (has_value) return value;
      if (i + 1 >= argc) usage_error(arg + " needs a value");
      return argv[++i];
    };
    auto flag = [&]() {
      if (has_value) usage_error(arg + " takes no value");
    };
    if (arg == "-h" || arg == "--help") {
      std::cout << kUsage;
      std::exit(0);
    } else if (arg == "--server") {
      o.servers.push_back(parse_target(next()));
    } else if (arg == "-c" || arg == "--connections") {
      o.connections = static_cast<int>(std::min(parse_long(arg, next(), 1), 100000L));
    } else if (arg == "-m" || arg == "--per-connection") {
      o.per_connection = parse_long(arg, next(), 0);
    } else if (arg == "-s" || arg == "--size") {
      o.size = parse_size(arg, next());
    } else if (arg == "-d" || arg == "--duration") {
      o.duration = parse_seconds(arg, next());
    } else if (arg == "-n" || arg == "--messages") {
      o.messages = parse_long(arg, next(), 1);
    } else if (arg == "--starttls") {
      flag();
      o.tls = TlsMode::kStartTls;
    } else if (arg == "--tls") {
      flag();
      o.tls = TlsMode::kImplicit;
    } else if (arg == "--ca") {
      o.ca = next();
    } else if (arg == "--server-name") {
      o.server_name = next();
    } else if (arg == "--resume") {
      flag();
      o.resume = true;
    } else if (arg == "--no-pipelining") {
      flag();
      o.pipelining = false;
    } else if (arg == "--helo") {
      o.helo = next();
    } else if (arg == "--from") {
      o.from = next();
    } else if (arg == "--to") {
      o.to = next();
    } else if (arg == "--timeout") {
      o.timeout = parse_seconds(arg, next());
      if (o.timeout <= 0) usage_error("--timeout must be positive");
    } else if (arg == "--threads") {
      o.threads = static_cast<int>(std::min(parse_long(arg, next(), 1), 256L));
    } else if (arg == "--id-prefix") {
      o.id_prefix = next();
    } else if (arg == "--ids-out") {
      o.ids_out = next();
    } else if (arg == "--error-pause") {
      o.error_pause = parse_seconds(arg, next());
    } else if (arg == "--max-time") {
      o.max_time = parse_seconds(arg, next());
    } else {
      usage_error("unknown option `" + arg + "`");
    }
  }
  if (o.servers.empty()) usage_error("--server HOST:PORT is required");
  if (o.duration == 0 && o.messages == 0) o.duration = 5;
  if (o.max_time == 0) o.max_time = o.duration > 0 ? o.duration + 2 * o.timeout + 5 : 3600;
  if (o.threads > o.connections) o.threads = o.connections;
  for (const auto& s : {o.helo, o.from, o.to, o.id_prefix})
    if (s.find_first_of("\r\n<> \t") != std::string::npos)
      usage_error("--helo, --from, --to and --id-prefix take no spaces, <, > or line breaks");
  if (o.id_prefix.empty())
    o.id_prefix = std::to_string(std::time(nullptr)) + "." + std::to_string(::getpid());
  return o;
}

// ---------------------------------------------------------------- statistics

struct Stats {
  std::uint64_t claimed = 0;  // messages taken to be tried
  std::uint64_t ok = 0;
  std::uint64_t failed = 0;
  std::uint64_t connect_attempts = 0;
  std::uint64_t sessions = 0;  // connections that got through EHLO (and TLS)
  std::uint64_t sessions_pipelining = 0;
  std::uint64_t handshakes = 0;
  std::uint64_t handshakes_resumed = 0;
  std::uint64_t quit_errors = 0;
  std::uint64_t bytes_sent = 0;
  std::vector<std::uint32_t> txn_us;   // MAIL -> 250 after the dot
  std::vector<std::uint32_t> conn_us;  // connect -> 250 of the connection's first message
  std::vector<std::uint32_t> hs_us;    // TLS handshake
  // With --ids-out: each accepted message's id and its latency (connect ->
  // 250 for a connection's first message, MAIL -> 250 for the others).
  std::vector<std::pair<std::uint64_t, std::uint32_t>> ok_ids;
  std::string tls;  // the first handshake's version, cipher, group
  std::map<std::string, std::uint64_t> errors;
  std::vector<std::string> first_errors;
  std::uint64_t exceptions = 0;

  // Counts an error under `key`; the first few are kept with the server
  // and the reply (detail, empty for I/O errors: the key says it all).
  void error(const std::string& key, const std::string& detail, const std::string& server) {
    ++errors[key];
    if (first_errors.size() < kMaxFirstErrors)
      first_errors.push_back(server + " " + key + (detail.empty() ? "" : ": " + detail));
  }
};

std::uint32_t micros(Clock::duration d) {
  const auto us = std::chrono::duration_cast<std::chrono::microseconds>(d).count();
  return static_cast<std::uint32_t>(std::clamp<long long>(us, 0, 0xffffffffLL));
}

// ---------------------------------------------------------------- TLS

int tls_index() {
  static const int index = SSL_CTX_get_ex_new_index(0, nullptr, nullptr, nullptr, nullptr);
  return index;
}

// One per thread: OpenSSL contexts shared between threads contend on locks.
struct TlsClient {
  ssl::context ctx{ssl::context::tls_client};
  SSL_SESSION* session = nullptr;  // the last resumable session (--resume)
  TlsClient() = default;
  TlsClient(const TlsClient&) = delete;
  TlsClient& operator=(const TlsClient&) = delete;
  ~TlsClient() {
    if (session) SSL_SESSION_free(session);
  }
};

int on_new_session(SSL* s, SSL_SESSION* session) {
  auto* t = static_cast<TlsClient*>(SSL_CTX_get_ex_data(SSL_get_SSL_CTX(s), tls_index()));
  if (!t || SSL_SESSION_is_resumable(session) != 1) return 0;
  if (t->session) SSL_SESSION_free(t->session);
  t->session = session;
  return 1;  // we keep OpenSSL's reference
}

std::unique_ptr<TlsClient> make_tls(const Options& o, std::string& error) {
  auto t = std::make_unique<TlsClient>();
  SSL_CTX* c = t->ctx.native_handle();
  SSL_CTX_set_min_proto_version(c, TLS1_2_VERSION);
  if (!o.ca.empty()) {
    error_code ec;
    t->ctx.load_verify_file(o.ca, ec);
    if (ec) {
      error = "cannot load CA file `" + o.ca + "`: " + ec.message();
      return nullptr;
    }
    t->ctx.set_verify_mode(ssl::verify_peer);
  } else {
    t->ctx.set_verify_mode(ssl::verify_none);
  }
  if (o.resume) {
    SSL_CTX_set_session_cache_mode(c, SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE);
    SSL_CTX_set_ex_data(c, tls_index(), t.get());
    SSL_CTX_sess_set_new_cb(c, &on_new_session);
  } else {
    SSL_CTX_set_session_cache_mode(c, SSL_SESS_CACHE_OFF);
    SSL_CTX_set_options(c, SSL_OP_NO_TICKET);
  }
  return t;
}

// ---------------------------------------------------------------- connection

struct Reply {
  error_code ec;
  bool malformed = false;
  int code = 0;
  std::string text;  // the lines after the code, joined by '\n'

  bool io_ok() const { return !ec && !malformed; }
  // The reply, for an error report (empty for an I/O error).
  std::string describe() const {
    if (ec) return {};
    if (malformed) return "malformed reply: " + text.substr(0, 120);
    std::string first = text.substr(0, text.find('\n'));
    return std::to_string(code) + " " + first.substr(0, 120);
  }
  // The stats key: the code, or the error.
  std::string key() const {
    if (ec) return ec.message();
    if (malformed) return "malformed reply";
    return std::to_string(code);
  }
};

bool has_extension(const std::string& ehlo_text, std::string_view keyword) {
  std::size_t pos = ehlo_text.find('\n');  // the first line is the greeting
  while (pos != std::string::npos) {
    const std::size_t start = pos + 1;
    const std::size_t end = ehlo_text.find('\n', start);
    std::string_view line(ehlo_text.data() + start,
                          (end == std::string::npos ? ehlo_text.size() : end) - start);
    std::string_view word = line.substr(0, line.find(' '));
    if (word.size() == keyword.size() &&
        std::equal(word.begin(), word.end(), keyword.begin(),
                   [](char a, char b) { return std::toupper(static_cast<unsigned char>(a)) == b; }))
      return true;
    pos = end;
  }
  return false;
}

// A TCP connection, with TLS once handshake() ran, whose every operation has
// a deadline: a timer cancels the socket's operations, which then report
// timed_out.  The timer's handler shares a small state block with the
// connection, not a pointer to it: it may run after the connection is gone.
class Conn {
 public:
  Conn(asio::any_io_executor ex, Clock::duration timeout)
      : timer_(ex), sock_(ex), timeout_(timeout) {}
  ~Conn() { state_->alive = false; }
  Conn(const Conn&) = delete;
  Conn& operator=(const Conn&) = delete;

  awaitable<error_code> connect(const tcp::endpoint& ep) {
    arm();
    auto [ec] = co_await sock_.async_connect(ep, use_nothrow);
    ec = disarm(ec);
    if (!ec) {
      error_code ignored;
      sock_.set_option(tcp::no_delay(true), ignored);
    }
    co_return ec;
  }

  // Starts TLS (client side) on the connection.
  awaitable<error_code> handshake(TlsClient& tls, const std::string& name, bool verify,
                                  bool resume) {
    tls_ = std::make_unique<TlsStream>(sock_, tls.ctx);
    SSL* s = tls_->native_handle();
    if (resume && tls.session) SSL_set_session(s, tls.session);
    error_code ec;
    asio::ip::make_address(name, ec);
    const bool name_is_ip = !ec;  // SNI carries host names only (RFC 6066 3)
    if (!name.empty() && !name_is_ip) SSL_set_tlsext_host_name(s, name.c_str());
    if (verify && !name.empty()) {
      if (name_is_ip) {
        X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(s), name.c_str());
      } else {
        SSL_set_hostflags(s, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
        SSL_set1_host(s, name.c_str());
      }
    }
    arm();
    auto [hec] = co_await tls_->async_handshake(ssl::stream_base::client, use_nothrow);
    ERR_clear_error();
    co_return disarm(hec);
  }

  bool resumed() const { return tls_ && SSL_session_reused(tls_->native_handle()) == 1; }

  // "TLSv1.3 TLS_AES_256_GCM_SHA384 X25519": what the handshake agreed on.
  std::string tls_summary() const {
    if (!tls_) return {};
    SSL* s = tls_->native_handle();
    std::string out = SSL_get_version(s);
    if (const char* c = SSL_get_cipher_name(s)) out += std::string(" ") + c;
    const int group = SSL_get_negotiated_group(s);
    if (group > 0) {
      const char* name = OBJ_nid2sn(group);
      if (name) out += std::string(" ") + name;
    }
    return out;
  }

  awaitable<error_code> write(std::string_view data) {
    arm();
    auto [ec, n] = co_await start_write(asio::buffer(data.data(), data.size()));
    (void)n;
    co_return disarm(ec);
  }

  // Reads one (possibly multi-line) reply.
  awaitable<Reply> read_reply() {
    Reply r;
    for (;;) {
      const std::size_t eol = in_.find('\n', pos_);
      if (eol == std::string::npos) {
        if (in_.size() - pos_ > kMaxReply) {
          r.malformed = true;
          r.text = "reply longer than 64 KiB";
          co_return r;
        }
        if (pos_ > 0) {
          in_.erase(0, pos_);
          pos_ = 0;
        }
        const std::size_t old = in_.size();
        in_.resize(old + 4096);
        arm();
        auto [ec, n] = co_await start_read(asio::buffer(in_.data() + old, 4096));
        in_.resize(old + n);
        r.ec = disarm(ec);
        if (r.ec) co_return r;
        continue;
      }
      std::string_view line(in_.data() + pos_, eol - pos_);
      pos_ = eol + 1;
      if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
      int code = 0;
      const bool digits = line.size() >= 3 && std::isdigit(static_cast<unsigned char>(line[0])) &&
                          std::isdigit(static_cast<unsigned char>(line[1])) &&
                          std::isdigit(static_cast<unsigned char>(line[2]));
      if (digits) code = (line[0] - '0') * 100 + (line[1] - '0') * 10 + (line[2] - '0');
      if (!digits || (line.size() > 3 && line[3] != ' ' && line[3] != '-') ||
          (r.code != 0 && code != r.code)) {
        r.malformed = true;
        r.text = std::string(line.substr(0, 120));
        co_return r;
      }
      r.code = code;
      if (!r.text.empty() || line.size() > 4) {
        if (!r.text.empty()) r.text += '\n';
        if (line.size() > 4) r.text.append(line.substr(4));
      }
      if (r.text.size() > kMaxReply) {
        r.malformed = true;
        co_return r;
      }
      if (line.size() <= 3 || line[3] == ' ') co_return r;
    }
  }

  // Bytes received and not yet parsed (must be none right after STARTTLS).
  std::size_t buffered() const { return in_.size() - pos_; }

  void close() {
    error_code ec;
    tls_.reset();
    sock_.shutdown(tcp::socket::shutdown_both, ec);
    sock_.close(ec);
  }

 private:
  using TlsStream = ssl::stream<tcp::socket&>;
  struct TimerState {
    std::uint64_t generation = 0;
    bool fired = false;
    bool alive = true;
  };

  void arm() {
    const std::uint64_t gen = ++state_->generation;
    state_->fired = false;
    timer_.expires_after(timeout_);
    timer_.async_wait([st = state_, gen, this](error_code ec) {
      if (ec || !st->alive || gen != st->generation) return;
      st->fired = true;
      error_code ignored;
      sock_.cancel(ignored);
    });
  }

  error_code disarm(error_code ec) {
    ++state_->generation;
    timer_.cancel();
    if (state_->fired && ec == asio::error::operation_aborted) return asio::error::timed_out;
    return ec;
  }

  // Plain functions choosing the stream: each coroutine above awaits what
  // they return, one suspension point per operation (GCC 12 mishandles
  // co_await in several branches of one expression).
  awaitable<std::tuple<error_code, std::size_t>> start_read(asio::mutable_buffer buf) {
    if (tls_) return tls_->async_read_some(buf, use_nothrow);
    return sock_.async_read_some(buf, use_nothrow);
  }
  awaitable<std::tuple<error_code, std::size_t>> start_write(asio::const_buffer buf) {
    if (tls_) return asio::async_write(*tls_, buf, use_nothrow);
    return asio::async_write(sock_, buf, use_nothrow);
  }

  asio::steady_timer timer_;
  tcp::socket sock_;
  Clock::duration timeout_;
  std::unique_ptr<TlsStream> tls_;
  std::string in_;
  std::size_t pos_ = 0;
  std::shared_ptr<TimerState> state_ = std::make_shared<TimerState>();
};

// ---------------------------------------------------------------- the load

struct Shared {
  const Options& opt;
  std::atomic<long> remaining;  // messages left to try (--messages)
  std::atomic<std::uint64_t> next_id{1};
  Clock::time_point deadline;  // (--duration)
  std::string commands;        // MAIL, RCPT, DATA lines
  std::string body;            // filler lines, longer than any message body
};

struct Worker {
  Shared& shared;
  // Declared before the io_context: a hard stop leaves coroutines (and their
  // SSL streams) that die with the io_context.
  std::unique_ptr<TlsClient> tls;
  asio::io_context ioc{1};
  Stats stats;
  int live = 0;  // coroutines still running
  asio::steady_timer watchdog{ioc};
  bool aborted = false;
  std::string date;  // the Date: header value, refreshed once a second
  std::time_t date_second = 0;
  explicit Worker(Shared& s) : shared(s) {}

  const std::string& date_header() {
    const std::time_t now = std::time(nullptr);
    if (now != date_second) {
      date_second = now;
      std::tm tm{};
      gmtime_r(&now, &tm);
      char buf[64];
      std::strftime(buf, sizeof buf, "%a, %d %b %Y %H:%M:%S +0000", &tm);
      date = buf;
    }
    return date;
  }
};

// The next message to try, or none once the run is over.
std::optional<std::uint64_t> claim(Shared& sh) {
  if (sh.opt.duration > 0 && Clock::now() >= sh.deadline) return std::nullopt;
  if (sh.opt.messages > 0 && sh.remaining.fetch_sub(1) <= 0) return std::nullopt;
  return sh.next_id.fetch_add(1);
}

// Header + body, exactly `size` octets when that is more than the header,
// then the final dot.  No line starts with a dot: nothing to stuff.
void build_message(Worker& w, std::uint64_t id, std::string& msg) {
  const Options& o = w.shared.opt;
  const std::string ident = o.id_prefix + "." + std::to_string(id);
  msg.clear();
  msg += "From: <";
  msg += o.from;
  msg += ">\r\nTo: <";
  msg += o.to;
  msg += ">\r\nSubject: smtp_load ";
  msg += ident;
  msg += "\r\nDate: ";
  msg += w.date_header();
  msg += "\r\nMessage-ID: <";
  msg += ident;
  msg += "@smtp-load.invalid>\r\nX-Test-Id: ";
  msg += ident;
  msg += "\r\n\r\n";
  if (o.size > msg.size() + 2) {
    // Whole filler lines, then one shorter line ending the body exactly.
    std::size_t left = o.size - msg.size();
    const std::string& body = w.shared.body;  // 78-octet lines
    const std::size_t whole = left >= 80 ? (left - 2) / 78 * 78 : 0;
    msg.append(body, 0, whole);
    left -= whole;
    msg.append(left - 2, 'z');
    msg += "\r\n";
  }
  msg += ".\r\n";
}

struct Session {
  const Target& target;
  Conn conn;
  bool pipelining = false;
  Clock::time_point started;
  long messages = 0;
  Session(const Target& t, asio::any_io_executor ex, Clock::duration timeout)
      : target(t), conn(ex, timeout) {}
  const std::string& server() const { return target.text; }
};

// Writes a command and reads its reply (a write error comes back as the
// reply's error).
awaitable<Reply> request(Session& s, std::string_view line) {
  const error_code written = co_await s.conn.write(line);
  if (written) {
    Reply r;
    r.ec = written;
    co_return r;
  }
  Reply r = co_await s.conn.read_reply();
  co_return r;
}

// The TLS handshake (implicit or after STARTTLS), timed and counted.
awaitable<bool> start_tls(Worker& w, Session& s, const Target& target) {
  const Options& o = w.shared.opt;
  const std::string& name = o.server_name.empty() ? target.host : o.server_name;
  const auto t0 = Clock::now();
  const error_code ec = co_await s.conn.handshake(*w.tls, name, !o.ca.empty(), o.resume);
  if (ec) {
    w.stats.error("tls-handshake " + ec.message(), "", target.text);
    co_return false;
  }
  w.stats.hs_us.push_back(micros(Clock::now() - t0));
  ++w.stats.handshakes;
  if (s.conn.resumed()) ++w.stats.handshakes_resumed;
  if (w.stats.tls.empty()) w.stats.tls = s.conn.tls_summary();
  co_return true;
}

// Connects, greets, EHLO, STARTTLS when asked; false (error counted) when
// any step failed.
awaitable<bool> open_session(Worker& w, Session& s, const Target& target) {
  const Options& o = w.shared.opt;
  Stats& st = w.stats;
  ++st.connect_attempts;
  const error_code connected = co_await s.conn.connect(target.endpoint);
  if (connected) {
    st.error("connect " + connected.message(), "", target.text);
    co_return false;
  }
  if (o.tls == TlsMode::kImplicit) {
    const bool tls_ok = co_await start_tls(w, s, target);
    if (!tls_ok) co_return false;
  }
  const Reply greeting = co_await s.conn.read_reply();
  if (!greeting.io_ok() || greeting.code != 220) {
    st.error("greeting " + greeting.key(), greeting.describe(), s.server());
    co_return false;
  }
  const std::string ehlo = "EHLO " + o.helo + "\r\n";
  const Reply first_ehlo = co_await request(s, ehlo);
  if (!first_ehlo.io_ok() || first_ehlo.code != 250) {
    st.error("ehlo " + first_ehlo.key(), first_ehlo.describe(), s.server());
    co_return false;
  }
  std::string extensions = first_ehlo.text;
  if (o.tls == TlsMode::kStartTls) {
    if (!has_extension(first_ehlo.text, "STARTTLS")) {
      st.error("starttls not offered", "", target.text);
      co_return false;
    }
    const Reply go_ahead = co_await request(s, "STARTTLS\r\n");
    if (!go_ahead.io_ok() || go_ahead.code != 220) {
      st.error("starttls " + go_ahead.key(), go_ahead.describe(), s.server());
      co_return false;
    }
    if (s.conn.buffered() != 0) {
      st.error("starttls data after 220", "", target.text);
      co_return false;
    }
    const bool tls_ok = co_await start_tls(w, s, target);
    if (!tls_ok) co_return false;
    const Reply second_ehlo = co_await request(s, ehlo);
    if (!second_ehlo.io_ok() || second_ehlo.code != 250) {
      st.error("ehlo-tls " + second_ehlo.key(), second_ehlo.describe(), s.server());
      co_return false;
    }
    extensions = second_ehlo.text;
  }
  s.pipelining = o.pipelining && has_extension(extensions, "PIPELINING");
  ++st.sessions;
  if (s.pipelining) ++st.sessions_pipelining;
  co_return true;
}

bool positive(const Reply& r) {
  return r.io_ok() && r.code >= 200 && r.code < 300;
}

// One command and its reply; false (error counted under `stage`) unless the
// reply is `want` (2xx when want is 0).
awaitable<bool> command(Session& s, Stats& st, std::string_view line, const char* stage, int want) {
  const Reply r = co_await request(s, line);
  const bool good = want == 0 ? positive(r) : (r.io_ok() && r.code == want);
  if (!good) st.error(std::string(stage) + " " + r.key(), r.describe(), s.server());
  co_return good;
}

// One transaction; false (error counted) when it failed.
awaitable<bool> transaction(Worker& w, Session& s, std::uint64_t id, std::string& msg) {
  Stats& st = w.stats;
  const std::string& cmds = w.shared.commands;
  const auto t0 = Clock::now();
  if (s.pipelining) {
    const error_code written = co_await s.conn.write(cmds);
    if (written) {
      st.error("mail " + written.message(), "", s.server());
      co_return false;
    }
    // Every reply is read before judging them, unless the connection broke.
    Reply mail = co_await s.conn.read_reply();
    if (!mail.io_ok()) {
      st.error("mail " + mail.key(), mail.describe(), s.server());
      co_return false;
    }
    Reply rcpt = co_await s.conn.read_reply();
    if (!rcpt.io_ok()) {
      st.error("rcpt " + rcpt.key(), rcpt.describe(), s.server());
      co_return false;
    }
    Reply data = co_await s.conn.read_reply();
    if (!positive(mail)) {
      st.error("mail " + mail.key(), mail.describe(), s.server());
      co_return false;
    }
    if (!positive(rcpt)) {
      st.error("rcpt " + rcpt.key(), rcpt.describe(), s.server());
      co_return false;
    }
    if (!data.io_ok() || data.code != 354) {
      st.error("data " + data.key(), data.describe(), s.server());
      co_return false;
    }
  } else {
    const std::size_t mail_end = cmds.find('\n') + 1;
    const std::size_t rcpt_end = cmds.find('\n', mail_end) + 1;
    const std::string_view all(cmds);
    const bool mail = co_await command(s, st, all.substr(0, mail_end), "mail", 0);
    if (!mail) co_return false;
    const bool rcpt = co_await command(s, st, all.substr(mail_end, rcpt_end - mail_end), "rcpt", 0);
    if (!rcpt) co_return false;
    const bool data = co_await command(s, st, all.substr(rcpt_end), "data", 354);
    if (!data) co_return false;
  }
  build_message(w, id, msg);
  const error_code sent = co_await s.conn.write(msg);
  if (sent) {
    st.error("message " + sent.message(), "", s.server());
    co_return false;
  }
  st.bytes_sent += msg.size();
  Reply done = co_await s.conn.read_reply();
  if (!positive(done)) {
    st.error("message " + done.key(), done.describe(), s.server());
    co_return false;
  }
  const auto t1 = Clock::now();
  st.txn_us.push_back(micros(t1 - t0));
  if (s.messages == 0) st.conn_us.push_back(micros(t1 - s.started));
  co_return true;
}

awaitable<void> quit(Session& s, Stats& st) {
  const bool good = co_await command(s, st, "QUIT\r\n", "quit", 221);
  if (!good) ++st.quit_errors;
  s.conn.close();
}

awaitable<void> pause(Worker& w) {
  if (w.shared.opt.error_pause <= 0) co_return;
  asio::steady_timer t(w.ioc, std::chrono::duration_cast<Clock::duration>(
                                  std::chrono::duration<double>(w.shared.opt.error_pause)));
  auto [ec] = co_await t.async_wait(use_nothrow);
  (void)ec;
}

awaitable<void> run_connection(Worker& w, const Target& target) {
  const Options& o = w.shared.opt;
  const auto timeout =
      std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(o.timeout));
  std::unique_ptr<Session> s;
  std::string msg;
  msg.reserve(o.size + 512);
  for (;;) {
    const std::optional<std::uint64_t> id = claim(w.shared);
    if (!id) break;
    ++w.stats.claimed;
    if (!s) {
      s = std::make_unique<Session>(target, w.ioc.get_executor(), timeout);
      s->started = Clock::now();
      const bool opened = co_await open_session(w, *s, target);
      if (!opened) {
        ++w.stats.failed;
        s->conn.close();
        s.reset();
        co_await pause(w);
        continue;
      }
    }
    const bool ok = co_await transaction(w, *s, *id, msg);
    if (!ok) {
      ++w.stats.failed;
      s->conn.close();
      s.reset();
      co_await pause(w);
      continue;
    }
    ++w.stats.ok;
    if (!o.ids_out.empty())
      w.stats.ok_ids.emplace_back(
          *id, s->messages == 0 ? w.stats.conn_us.back() : w.stats.txn_us.back());
    ++s->messages;
    if (o.per_connection > 0 && s->messages >= o.per_connection) {
      co_await quit(*s, w.stats);
      s.reset();
    }
  }
  if (s) co_await quit(*s, w.stats);
}

void connection_done(Worker& w, std::exception_ptr e) {
  if (e) {
    ++w.stats.exceptions;
    try {
      std::rethrow_exception(e);
    } catch (const std::exception& ex) {
      w.stats.error("exception", ex.what(), "");
    } catch (...) {
      w.stats.error("exception", "unknown", "");
    }
  }
  if (--w.live == 0) w.watchdog.cancel();
}

// ---------------------------------------------------------------- report

struct Percentiles {
  std::size_t count = 0;
  double mean = 0, p50 = 0, p90 = 0, p99 = 0, max = 0;
};

Percentiles percentiles(std::vector<std::uint32_t>& us) {
  Percentiles p;
  p.count = us.size();
  if (us.empty()) return p;
  std::sort(us.begin(), us.end());
  auto at = [&](double q) {
    // Nearest rank.
    auto rank = static_cast<std::size_t>(std::ceil(q * static_cast<double>(us.size())));
    rank = std::clamp<std::size_t>(rank, 1, us.size());
    return us[rank - 1] / 1000.0;
  };
  double sum = 0;
  for (auto v : us) sum += v;
  p.mean = sum / static_cast<double>(us.size()) / 1000.0;
  p.p50 = at(0.50);
  p.p90 = at(0.90);
  p.p99 = at(0.99);
  p.max = us.back() / 1000.0;
  return p;
}

std::string json_string(std::string_view s) {
  std::string out = "\"";
  for (unsigned char c : s) {
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\t':
        out += "\\t";
        break;
      default:
        if (c < 0x20 || c >= 0x7f) {
          char buf[8];
          std::snprintf(buf, sizeof buf, "\\u%04x", c);
          out += buf;
        } else {
          out += static_cast<char>(c);
        }
    }
  }
  return out + "\"";
}

std::string num(double v, int decimals = 3) {
  if (!std::isfinite(v)) return "null";
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.*f", decimals, v);
  return buf;
}

std::string json_percentiles(const Percentiles& p) {
  std::ostringstream o;
  o << "{\"count\": " << p.count << ", \"mean\": " << num(p.mean) << ", \"p50\": " << num(p.p50)
    << ", \"p90\": " << num(p.p90) << ", \"p99\": " << num(p.p99) << ", \"max\": " << num(p.max)
    << "}";
  return o.str();
}

double cpu_seconds(const timeval& tv) {
  return static_cast<double>(tv.tv_sec) + static_cast<double>(tv.tv_usec) / 1e6;
}

}  // namespace

int main(int argc, char** argv) {
  ::signal(SIGPIPE, SIG_IGN);
  const Options opt = parse_options(argc, argv);

  Shared shared{opt, {opt.messages}, {1}, {}, {}, {}};
  shared.commands = "MAIL FROM:<" + opt.from + ">\r\nRCPT TO:<" + opt.to + ">\r\nDATA\r\n";
  {
    const std::string line = std::string(76, 'x') + "\r\n";  // 78 octets
    const std::size_t lines = opt.size / 78 + 1;
    shared.body.reserve(lines * 78);
    for (std::size_t i = 0; i < lines; ++i) {
      std::string l = line;
      // Some variety: the line number at the start (never a dot).
      const std::string n = std::to_string(i);
      l.replace(0, std::min(n.size(), std::size_t{70}), n.substr(0, 70));
      shared.body += l;
    }
  }

  tls_index();  // before any thread
  std::vector<std::unique_ptr<Worker>> workers;
  for (int t = 0; t < opt.threads; ++t) {
    auto w = std::make_unique<Worker>(shared);
    if (opt.tls != TlsMode::kNone) {
      std::string error;
      w->tls = make_tls(opt, error);
      if (!w->tls) {
        std::cerr << "smtp_load: " << error << "\n";
        return 2;
      }
    }
    workers.push_back(std::move(w));
  }

  rusage ru0{};
  getrusage(RUSAGE_SELF, &ru0);
  const auto start = Clock::now();
  shared.deadline = start + std::chrono::duration_cast<Clock::duration>(
                                std::chrono::duration<double>(opt.duration > 0 ? opt.duration : 0));
  const auto hard_stop =
      std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(opt.max_time));

  // Connection i runs on thread i % T against server (i / T) % S, so that
  // every thread loads every server.
  const std::size_t nservers = opt.servers.size();
  for (int i = 0; i < opt.connections; ++i) {
    Worker& w = *workers[static_cast<std::size_t>(i % opt.threads)];
    const Target& target = opt.servers[static_cast<std::size_t>(i / opt.threads) % nservers];
    ++w.live;
    asio::co_spawn(w.ioc, run_connection(w, target),
                   [&w](std::exception_ptr e) { connection_done(w, e); });
  }
  for (auto& wp : workers) {
    Worker& w = *wp;
    w.watchdog.expires_after(hard_stop);
    w.watchdog.async_wait([&w](error_code ec) {
      if (ec) return;
      w.aborted = true;
      w.ioc.stop();
    });
  }
  std::vector<std::thread> threads;
  for (std::size_t t = 1; t < workers.size(); ++t) {
    threads.emplace_back([&w = *workers[t]] {
      try {
        w.ioc.run();
      } catch (const std::exception& e) {
        w.stats.error("exception", e.what(), "");
        ++w.stats.exceptions;
      }
    });
  }
  try {
    workers[0]->ioc.run();
  } catch (const std::exception& e) {
    workers[0]->stats.error("exception", e.what(), "");
    ++workers[0]->stats.exceptions;
  }
  for (auto& t : threads) t.join();
  const auto end = Clock::now();
  rusage ru1{};
  getrusage(RUSAGE_SELF, &ru1);

  // Merge the threads' statistics.
  Stats all;
  bool aborted = false;
  for (auto& wp : workers) {
    Stats& s = wp->stats;
    aborted = aborted || wp->aborted;
    all.claimed += s.claimed;
    all.ok += s.ok;
    all.failed += s.failed;
    all.connect_attempts += s.connect_attempts;
    all.sessions += s.sessions;
    all.sessions_pipelining += s.sessions_pipelining;
    all.handshakes += s.handshakes;
    all.handshakes_resumed += s.handshakes_resumed;
    all.quit_errors += s.quit_errors;
    all.bytes_sent += s.bytes_sent;
    all.exceptions += s.exceptions;
    if (all.tls.empty()) all.tls = s.tls;
    all.txn_us.insert(all.txn_us.end(), s.txn_us.begin(), s.txn_us.end());
    all.conn_us.insert(all.conn_us.end(), s.conn_us.begin(), s.conn_us.end());
    all.hs_us.insert(all.hs_us.end(), s.hs_us.begin(), s.hs_us.end());
    all.ok_ids.insert(all.ok_ids.end(), s.ok_ids.begin(), s.ok_ids.end());
    for (const auto& [k, v] : s.errors) all.errors[k] += v;
    for (const auto& e : s.first_errors)
      if (all.first_errors.size() < kMaxFirstErrors) all.first_errors.push_back(e);
  }
  // Messages still in flight at a hard stop count as failed.
  const std::uint64_t in_flight = all.claimed - all.ok - all.failed;
  all.failed += in_flight;
  if (in_flight > 0) all.errors["in flight at the hard stop (--max-time)"] += in_flight;
  const double wall = std::chrono::duration<double>(end - start).count();
  const double user = cpu_seconds(ru1.ru_utime) - cpu_seconds(ru0.ru_utime);
  const double sys = cpu_seconds(ru1.ru_stime) - cpu_seconds(ru0.ru_stime);
  const double cpu = user + sys;

  bool ids_written = true;
  if (!opt.ids_out.empty()) {
    std::sort(all.ok_ids.begin(), all.ok_ids.end());
    std::ofstream f(opt.ids_out, std::ios::trunc);
    for (auto [id, us] : all.ok_ids) f << opt.id_prefix << '.' << id << ' ' << us / 1000.0 << '\n';
    f.close();
    ids_written = static_cast<bool>(f);
    if (!ids_written) std::cerr << "smtp_load: cannot write " << opt.ids_out << "\n";
  }

  const Percentiles txn = percentiles(all.txn_us);
  const Percentiles conn = percentiles(all.conn_us);
  const Percentiles hs = percentiles(all.hs_us);
  auto rate = [&](double n) { return wall > 0 ? n / wall : 0.0; };

  std::ostringstream j;
  j << "{\n";
  j << "  \"tool\": \"smtp_load\",\n";
  j << "  \"params\": {\"servers\": [";
  for (std::size_t i = 0; i < opt.servers.size(); ++i)
    j << (i ? ", " : "") << json_string(opt.servers[i].text);
  j << "], \"connections\": " << opt.connections << ", \"per_connection\": " << opt.per_connection
    << ", \"size\": " << opt.size << ", \"duration_s\": " << num(opt.duration)
    << ", \"messages\": " << opt.messages << ", \"tls\": " << json_string(to_string(opt.tls))
    << ", \"verify\": " << (opt.ca.empty() ? "false" : "true")
    << ", \"resume\": " << (opt.resume ? "true" : "false")
    << ", \"pipelining_allowed\": " << (opt.pipelining ? "true" : "false")
    << ", \"threads\": " << opt.threads << ", \"timeout_s\": " << num(opt.timeout)
    << ", \"id_prefix\": " << json_string(opt.id_prefix) << "},\n";
  j << "  \"wall_s\": " << num(wall, 4) << ",\n";
  j << "  \"messages_ok\": " << all.ok << ",\n";
  j << "  \"messages_failed\": " << all.failed << ",\n";
  j << "  \"msgs_per_s\": " << num(rate(static_cast<double>(all.ok)), 1) << ",\n";
  j << "  \"connect_attempts\": " << all.connect_attempts << ",\n";
  j << "  \"sessions\": " << all.sessions << ",\n";
  j << "  \"sessions_per_s\": " << num(rate(static_cast<double>(all.sessions)), 1) << ",\n";
  j << "  \"sessions_pipelining\": " << all.sessions_pipelining << ",\n";
  j << "  \"handshakes\": " << all.handshakes << ",\n";
  j << "  \"handshakes_resumed\": " << all.handshakes_resumed << ",\n";
  j << "  \"tls\": " << json_string(all.tls) << ",\n";
  j << "  \"handshakes_per_s\": " << num(rate(static_cast<double>(all.handshakes)), 1) << ",\n";
  j << "  \"quit_errors\": " << all.quit_errors << ",\n";
  j << "  \"bytes_sent\": " << all.bytes_sent << ",\n";
  j << "  \"latency_ms\": " << json_percentiles(txn) << ",\n";
  j << "  \"connect_latency_ms\": " << json_percentiles(conn) << ",\n";
  j << "  \"handshake_ms\": " << json_percentiles(hs) << ",\n";
  j << "  \"cpu\": {\"user_s\": " << num(user) << ", \"sys_s\": " << num(sys)
    << ", \"total_s\": " << num(cpu) << ", \"us_per_msg\": "
    << (all.ok ? num(cpu / static_cast<double>(all.ok) * 1e6, 1) : std::string("null"))
    << ", \"pct_of_wall\": " << num(wall > 0 ? 100.0 * cpu / wall : 0.0, 1)
    << ", \"threads\": " << opt.threads << "},\n";
  j << "  \"errors\": {";
  {
    bool first = true;
    for (const auto& [k, v] : all.errors) {
      j << (first ? "" : ", ") << json_string(k) << ": " << v;
      first = false;
    }
  }
  j << "},\n";
  j << "  \"first_errors\": [";
  for (std::size_t i = 0; i < all.first_errors.size(); ++i)
    j << (i ? ", " : "") << json_string(all.first_errors[i]);
  j << "],\n";
  j << "  \"exceptions\": " << all.exceptions << ",\n";
  j << "  \"in_flight_at_stop\": " << in_flight << ",\n";
  j << "  \"aborted\": " << (aborted ? "true" : "false") << "\n";
  j << "}\n";
  std::cout << j.str() << std::flush;

  // Destroy the io_contexts (and any coroutine a hard stop left) before the
  // shared state they point at.
  workers.clear();
  if (aborted || all.failed > 0 || all.exceptions > 0 || !ids_written) return 1;
  return all.ok > 0 ? 0 : 1;
}
