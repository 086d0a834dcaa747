// backend_session_test.cpp: what BackendSession::open() and send_xclient()
// do with a backend's `tls:` and `identity:` (upstream/backend_session.hpp),
// against a scripted server on loopback: STARTTLS required and never
// skipped, response injection behind the STARTTLS 220 (CVE-2021-38371),
// XCLIENT required and sent as the client greeted, the PROXY header first.
// The TLS handshakes themselves are exercised end to end by
// tests/integration/test_backend_tls.py.
#include "upstream/backend_session.hpp"

#include <gtest/gtest.h>

#include <map>
#include <string>
#include <vector>

namespace smtplb::upstream {
namespace {

using namespace std::chrono_literals;
using namespace std::string_literals;

// A backend that answers each command by its verb (upper case) from a
// table ("250 ok" when not listed) and records what it read.
struct ScriptedServer {
  std::string banner = "220 scripted ESMTP";
  std::map<std::string, std::string> replies;  // verb -> reply lines, CR LF separated
  std::size_t preamble = 0;                    // bytes read before the banner (PROXY)
  std::string got_preamble;
  std::vector<std::string> commands;
};

awaitable<void> serve(tcp::acceptor& acc, ScriptedServer& s) {
  auto [ec, sock] = co_await acc.async_accept(use_nothrow);
  if (ec) co_return;
  if (s.preamble) {
    s.got_preamble.resize(s.preamble);
    auto [e1, n1] = co_await asio::async_read(sock, asio::buffer(s.got_preamble), use_nothrow);
    if (e1) co_return;
  }
  std::string out = s.banner + "\r\n";
  auto [e2, n2] = co_await asio::async_write(sock, asio::buffer(out), use_nothrow);
  if (e2) co_return;
  std::string buf;
  for (;;) {
    auto [e3, n3] =
        co_await asio::async_read_until(sock, asio::dynamic_buffer(buf), "\r\n", use_nothrow);
    if (e3) co_return;
    std::string line = buf.substr(0, n3 - 2);
    buf.erase(0, n3);
    s.commands.push_back(line);
    std::string verb = line.substr(0, line.find(' '));
    for (char& c : verb) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
    auto it = s.replies.find(verb);
    std::string reply = (it != s.replies.end() ? it->second : "250 ok"s) + "\r\n";
    auto [e4, n4] = co_await asio::async_write(sock, asio::buffer(reply), use_nothrow);
    if (e4 || verb == "QUIT") co_return;
  }
}

struct Harness {
  asio::io_context io;
  tcp::acceptor acc{io, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0)};
  config::Config cfg;
  std::unique_ptr<balance::BackendState> state;
  ScriptedServer server;

  explicit Harness(config::Backend b) {
    cfg.hostname = "lb.test.example";
    b.name = "scripted";
    state = std::make_unique<balance::BackendState>("p", b);
  }

  // open() (and then `then`, if given) against the scripted server.
  Failure open(const ClientIdentity* client, BackendSession& s,
               std::function<awaitable<void>(BackendSession&)> then = nullptr) {
    Failure result = Failure::kNone;
    asio::co_spawn(io, serve(acc, server), asio::detached);
    asio::co_spawn(
        io,
        [&]() -> awaitable<void> {
          result = co_await s.open(acc.local_endpoint(),
                                   BackendSession::OpenTimeouts{2000ms, 2000ms, 2000ms}, client);
          if (result == Failure::kNone && then) co_await then(s);
          s.close();
        },
        asio::detached);
    io.run_for(5s);
    return result;
  }
};

const char* kEhloTls = "250-scripted\r\n250-PIPELINING\r\n250 STARTTLS";
const char* kEhloXclient =
    "250-scripted\r\n250-PIPELINING\r\n250 XCLIENT NAME ADDR PORT PROTO HELO";

config::Backend with_starttls() {
  config::Backend b;
  b.tls.mode = config::TlsMode::kStartTls;
  std::string why;
  b.tls.client = net::ClientTls::make(false, "", why);
  return b;
}

TEST(BackendSession, StarttlsNotOfferedIsATlsFailureNeverPlainText) {
  Harness h(with_starttls());
  BackendSession s(h.io.get_executor(), *h.state, h.cfg);
  EXPECT_EQ(h.open(nullptr, s), Failure::kTls);
  EXPECT_EQ(s.failure_detail(), "STARTTLS not offered");
  EXPECT_EQ(h.server.commands, std::vector<std::string>{"EHLO lb.test.example"});
}

TEST(BackendSession, StarttlsRefusedIsATlsFailure) {
  Harness h(with_starttls());
  h.server.replies["EHLO"] = kEhloTls;
  h.server.replies["STARTTLS"] = "454 4.7.0 TLS not available";
  BackendSession s(h.io.get_executor(), *h.state, h.cfg);
  EXPECT_EQ(h.open(nullptr, s), Failure::kTls);
  EXPECT_EQ(s.failure_detail(), "STARTTLS refused: 454 4.7.0 TLS not available");
}

TEST(BackendSession, BytesBehindTheStarttls220FailTheConnection) {
  Harness h(with_starttls());
  h.server.replies["EHLO"] = kEhloTls;
  h.server.replies["STARTTLS"] = "220 2.0.0 Ready to start TLS\r\n250 2.0.0 injected";
  BackendSession s(h.io.get_executor(), *h.state, h.cfg);
  EXPECT_EQ(h.open(nullptr, s), Failure::kTls);
  EXPECT_EQ(s.failure_detail(), "bytes after the STARTTLS 220 (response injection)");
  EXPECT_EQ(h.server.commands, (std::vector<std::string>{"EHLO lb.test.example", "STARTTLS"}));
  EXPECT_FALSE(s.is_open());
}

TEST(BackendSession, XclientRequiredButNotOffered) {
  config::Backend b;
  b.identity = config::Identity::kXclient;
  Harness h(b);
  BackendSession s(h.io.get_executor(), *h.state, h.cfg);
  EXPECT_EQ(h.open(nullptr, s), Failure::kNoXclient);
  EXPECT_EQ(s.failure_detail(), "EHLO offers no XCLIENT");
}

TEST(BackendSession, XclientWithoutAddrIsNotEnough) {
  config::Backend b;
  b.identity = config::Identity::kXclient;
  Harness h(b);
  h.server.replies["EHLO"] = "250-scripted\r\n250 XCLIENT NAME HELO";
  BackendSession s(h.io.get_executor(), *h.state, h.cfg);
  EXPECT_EQ(h.open(nullptr, s), Failure::kNoXclient);
  EXPECT_EQ(s.failure_detail(), "XCLIENT without ADDR");
}

ClientIdentity a_client(const char* proto) {
  ClientIdentity c;
  c.ip = net::IpAddress(asio::ip::make_address("192.0.2.7"));
  c.port = 4000;
  c.helo = "client.example";
  c.proto = proto;
  return c;
}

TEST(BackendSession, XclientThenGreetsAsTheClientDid) {
  for (const char* proto : {"ESMTP", "SMTP"}) {
    config::Backend b;
    b.identity = config::Identity::kXclient;
    Harness h(b);
    h.server.replies["EHLO"] = kEhloXclient;
    h.server.replies["XCLIENT"] = "220 scripted ESMTP";
    BackendSession s(h.io.get_executor(), *h.state, h.cfg);
    const ClientIdentity c = a_client(proto);
    Failure xf = Failure::kStalled;
    EXPECT_EQ(h.open(nullptr, s,
                     [&](BackendSession& bs) -> awaitable<void> {
                       xf = co_await bs.send_xclient(c, 2000ms);
                     }),
              Failure::kNone);
    EXPECT_EQ(xf, Failure::kNone) << proto;
    const std::string greet = proto == "SMTP"s ? "HELO client.example" : "EHLO client.example";
    EXPECT_EQ(h.server.commands,
              (std::vector<std::string>{"EHLO lb.test.example",
                                        "XCLIENT ADDR=192.0.2.7 PORT=4000 NAME=[UNAVAILABLE] "
                                        "HELO=client.example PROTO="s +
                                            proto,
                                        greet}))
        << proto;
  }
}

TEST(BackendSession, XclientConnectionIsPooledOnlyWhileXclientIsStillOffered) {
  for (bool still_offered : {true, false}) {
    config::Backend b;
    b.identity = config::Identity::kXclient;
    Harness h(b);
    h.server.replies["EHLO"] = kEhloXclient;
    // After XCLIENT the server answers EHLO as it likes; the table has
    // one reply per verb, so the first EHLO must offer XCLIENT either way:
    // switch the table once XCLIENT came.
    h.server.replies["XCLIENT"] = "220 scripted ESMTP";
    BackendSession s(h.io.get_executor(), *h.state, h.cfg);
    const ClientIdentity c = a_client("ESMTP");
    bool poolable = false;
    h.open(nullptr, s, [&](BackendSession& bs) -> awaitable<void> {
      if (!still_offered) h.server.replies["EHLO"] = "250-scripted\r\n250 PIPELINING";
      Failure f = co_await bs.send_xclient(c, 2000ms);
      EXPECT_EQ(f, Failure::kNone);
      poolable = bs.poolable();
    });
    EXPECT_EQ(poolable, still_offered);
  }
}

TEST(BackendSession, XclientRefusedIsItsOwnFailure) {
  config::Backend b;
  b.identity = config::Identity::kXclient;
  Harness h(b);
  h.server.replies["EHLO"] = kEhloXclient;
  h.server.replies["XCLIENT"] = "550 5.7.0 Error: insufficient authorization";
  BackendSession s(h.io.get_executor(), *h.state, h.cfg);
  const ClientIdentity c = a_client("ESMTP");
  Failure xf = Failure::kNone;
  h.open(nullptr, s,
         [&](BackendSession& bs) -> awaitable<void> { xf = co_await bs.send_xclient(c, 2000ms); });
  EXPECT_EQ(xf, Failure::kXclientRefused);
}

TEST(BackendSession, ProxyHeaderComesBeforeTheBanner) {
  config::Backend b;
  b.identity = config::Identity::kProxyV2;
  Harness h(b);
  h.server.preamble = 28;  // v2, TCP over IPv4
  BackendSession s(h.io.get_executor(), *h.state, h.cfg);
  ClientIdentity c = a_client("ESMTP");
  c.local_ip = net::IpAddress(asio::ip::make_address("198.51.100.25"));
  c.local_port = 25;
  EXPECT_EQ(h.open(&c, s), Failure::kNone);
  EXPECT_EQ(h.server.got_preamble, "\r\n\r\n\0\r\nQUIT\n\x21\x11\x00\x0c"s +
                                       "\xc0\x00\x02\x07\xc6\x33\x64\x19\x0f\xa0\x00\x19"s);
  EXPECT_FALSE(s.poolable());
}

TEST(BackendSession, HealthCheckOfAProxyBackendSendsLocal) {
  config::Backend b;
  b.identity = config::Identity::kProxyV2;
  Harness h(b);
  h.server.preamble = 16;
  BackendSession s(h.io.get_executor(), *h.state, h.cfg);
  EXPECT_EQ(h.open(nullptr, s), Failure::kNone);
  EXPECT_EQ(h.server.got_preamble, "\r\n\r\n\0\r\nQUIT\n\x20\x00\x00\x00"s);
}

}  // namespace
}  // namespace smtplb::upstream
