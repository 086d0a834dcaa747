// relay_transaction_test.cpp: one transaction (relay/relay_transaction.hpp)
// against two scripted backends on loopback, as a table: at every stage
// (banner, EHLO, MAIL, RCPT, DATA, the final dot) every kind of answer
// (4xx, 5xx, 421, a reply of the wrong kind, a malformed one, an extra one,
// a drop, a stall), with what the client is told and which backend ends up
// holding the message.  The replay policy's own rows are in
// tests/unit/relay/replay_policy_test.cpp; this proves RelayTransaction does
// what they say, with real sockets, in simulated time: a backend that
// stalls moves the clock (Clock::warp) while it says nothing, so smtplb's
// timeout fires after a few milliseconds, not after backend_reply, and a
// busy machine cannot turn a slow answer into a stall.
#include <gtest/gtest.h>

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "relay/transaction.hpp"

namespace smtplb::relay {
namespace {

using namespace std::chrono_literals;
using namespace std::string_literals;

// What a scripted backend does at one step.
struct Step {
  enum Kind { kReply, kDrop, kStall } kind = kReply;
  std::string reply;  // kReply: sent as is (CR LF added), may hold several lines
};
Step reply(std::string r) {
  return {Step::kReply, std::move(r)};
}
const Step kDrop{Step::kDrop, {}};
const Step kStall{Step::kStall, {}};

// A backend: the normal ESMTP dialog, but for the steps in `faults`
// ("BANNER", "EHLO", "MAIL", "RCPT", "DATA", "EOD").  A message counts as
// stored when the backend's answer to its final dot starts with 250.
struct Script {
  std::map<std::string, Step> faults;
  int stored = 0;
  int data_commands = 0;
};

std::string normal_reply(const std::string& step) {
  if (step == "BANNER") return "220 scripted ESMTP";
  if (step == "EHLO") return "250-scripted\r\n250-PIPELINING\r\n250 8BITMIME";
  if (step == "MAIL") return "250 2.1.0 ok";
  if (step == "RCPT") return "250 2.1.5 ok";
  if (step == "DATA") return "354 go ahead";
  if (step == "EOD") return "250 2.0.0 Ok: queued as Q1";
  if (step == "QUIT") return "221 bye";
  return "250 ok";
}

// Simulated time: while `*running`, the clock jumps kTick every
// millisecond of real time.  Each jump is followed by a timer that has
// already expired, which makes the io_context look at its timers again
// (smtplb's among them).  A stall of backend_reply (250 ms) so takes about
// 25 ms; a backend that answers does so within a tick, long before any
// timeout of 25 ticks could fire.
constexpr auto kTick = 10ms;
awaitable<void> run_time_on(std::shared_ptr<bool> running) {
  Timer t(co_await asio::this_coro::executor);
  while (*running) {
    Clock::warp(kTick);
    t.expires_after(1ms);
    co_await t.async_wait(use_nothrow);
  }
}

// Does `step`; false when the connection is to end (dropped, stalled).
awaitable<bool> act(tcp::socket& sock, Script& s, const std::string& step) {
  auto it = s.faults.find(step);
  const Step st = it != s.faults.end() ? it->second : reply(normal_reply(step));
  if (st.kind == Step::kDrop) {
    error_code ignored;
    sock.close(ignored);
    co_return false;
  }
  if (st.kind == Step::kStall) {
    // Read and ignore until the peer gives up, moving time on meanwhile.
    auto stalled = std::make_shared<bool>(true);
    asio::co_spawn(sock.get_executor(), run_time_on(stalled), asio::detached);
    std::array<char, 4096> buf;
    for (;;) {
      auto [ec, n] = co_await sock.async_read_some(asio::buffer(buf), use_nothrow);
      if (ec) break;
    }
    *stalled = false;
    co_return false;
  }
  if (step == "EOD" && st.reply.rfind("250", 0) == 0) ++s.stored;
  std::string out = st.reply + "\r\n";
  auto [ec, n] = co_await asio::async_write(sock, asio::buffer(out), use_nothrow);
  co_return !ec;
}

awaitable<void> serve_one(tcp::socket sock, Script& s) {
  if (!co_await act(sock, s, "BANNER")) co_return;
  std::string buf;
  for (;;) {
    auto [ec, n] =
        co_await asio::async_read_until(sock, asio::dynamic_buffer(buf), "\r\n", use_nothrow);
    if (ec) co_return;
    std::string line = buf.substr(0, n - 2);
    buf.erase(0, n);
    std::string verb = line.substr(0, 4);
    for (char& c : verb) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
    if (verb == "DATA") ++s.data_commands;
    const std::string step = verb == "HELO" ? "EHLO" : verb;
    if (!co_await act(sock, s, step)) co_return;
    if (verb == "QUIT") co_return;
    auto it = s.faults.find("DATA");
    const bool opened =
        verb == "DATA" && (it == s.faults.end() || (it->second.kind == Step::kReply &&
                                                    it->second.reply.rfind("354", 0) == 0));
    if (!opened) continue;
    // The message, to its final dot; then the answer to the dot.
    auto [e2, m] =
        co_await asio::async_read_until(sock, asio::dynamic_buffer(buf), "\r\n.\r\n", use_nothrow);
    if (e2) co_return;
    buf.erase(0, m);
    if (!co_await act(sock, s, "EOD")) co_return;
  }
}

awaitable<void> serve(tcp::acceptor& acc, Script& s) {
  for (;;) {
    auto [ec, sock] = co_await acc.async_accept(use_nothrow);
    if (ec) co_return;
    // As MTAs do: otherwise Nagle holds the second of two pipelined
    // replies for smtplb's delayed ACK, 40 ms a round.
    error_code ignored;
    sock.set_option(tcp::no_delay(true), ignored);
    asio::co_spawn(acc.get_executor(), serve_one(std::move(sock), s), asio::detached);
  }
}

// The client's side of one transaction: RCPT, DATA, the message, its dot.
struct Outcome {
  std::vector<int> codes;  // the replies the client got, in order
  bool possible_duplicate = false;
  // The transaction's recipient lists after RCPT: each recipient in one.
  std::size_t accepted = 0, refused = 0;
};

Outcome relay(Script& a, Script& b) {
  config::Config cfg;
  cfg.hostname = "lb.test.example";
  cfg.timeouts.backend_connect = 500ms;
  cfg.timeouts.backend_reply = 250ms;
  cfg.timeouts.backend_data_done = 250ms;
  cfg.timeouts.transaction = 10s;
  cfg.timeouts.pool_wait = 100ms;
  config::Pool pool;
  pool.name = "p";
  pool.retries = 2;
  std::vector<std::shared_ptr<balance::BackendState>> states;
  upstream::PoolRuntime rt;
  rt.cfg = &pool;
  rt.balancer = balance::make_balancer(config::Algorithm::kRoundRobin, 1);
  Outcome out;
  bool done = false;

  // Destroyed first (declared last), with every frame that uses the above;
  // the pooled sessions it serves are closed before (rt.backends.clear()).
  asio::io_context io;
  tcp::acceptor acc_a(io, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
  tcp::acceptor acc_b(io, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
  for (auto* acc : {&acc_a, &acc_b}) {
    config::Backend bc;
    bc.name = acc == &acc_a ? "a" : "b";
    states.push_back(std::make_shared<balance::BackendState>("p", bc));
    rt.states.push_back(states.back().get());
    rt.backends.push_back(std::make_shared<upstream::BackendRuntime>(upstream::BackendRuntime{
        states.back().get(), acc->local_endpoint(), upstream::ConnectionPool(cfg.backend_pool),
        states.back(), nullptr}));
  }
  asio::co_spawn(io, serve(acc_a, a), asio::detached);
  asio::co_spawn(io, serve(acc_b, b), asio::detached);

  Envelope env;
  env.sender = *smtp::parse_path("<sender@example.org>", smtp::PathKind::kReversePath).path;
  const smtp::Path rcpt =
      *smtp::parse_path("<rcpt@example.com>", smtp::PathKind::kForwardPath).path;
  asio::co_spawn(
      io,
      [&]() -> awaitable<void> {
        Transaction txn(log::Scope{"s1", "s1-1"}, env, Clock::now());
        RelayTransaction& tx = txn.start_relay(io.get_executor(), cfg, rt);
        smtp::Reply r = co_await tx.rcpt(rcpt);
        out.codes.push_back(r.code);
        out.accepted = txn.accepted().size();
        out.refused = txn.refused().size();
        if (r.positive()) {
          r = co_await tx.data();
          out.codes.push_back(r.code);
          if (r.code == 354) {
            co_await tx.data_chunk("Subject: scripted\r\n\r\nhello\r\n");
            r = co_await tx.finish();
            out.codes.push_back(r.code);
          }
        }
        out.possible_duplicate = tx.possible_duplicate();
        co_await tx.release();
        done = true;
      },
      asio::detached);
  while (!done && io.run_one_for(5s) > 0) {
  }
  EXPECT_TRUE(done) << "the transaction never ended";
  // The pooled sessions' sockets belong to `io`: closed while it lives.
  rt.backends.clear();
  return out;
}

struct Row {
  const char* name;
  std::map<std::string, Step> a;  // the first backend's faults
  std::map<std::string, Step> b;  // the second's
  std::vector<int> codes;         // RCPT, DATA, final dot (as far as they go)
  int stored_a, stored_b;
  bool possible_duplicate;
};

const std::vector<int> kDelivered{250, 354, 250};

TEST(RelayTransaction, EveryStageEveryAnswer) {
  const Row rows[] = {
      {"healthy", {}, {}, kDelivered, 1, 0, false},
      // Before MAIL: whatever goes wrong, the next backend.
      {"banner 421", {{"BANNER", reply("421 4.3.2 busy")}}, {}, kDelivered, 0, 1, false},
      {"banner 554", {{"BANNER", reply("554 5.3.2 no")}}, {}, kDelivered, 0, 1, false},
      {"banner dropped", {{"BANNER", kDrop}}, {}, kDelivered, 0, 1, false},
      {"banner stalled", {{"BANNER", kStall}}, {}, kDelivered, 0, 1, false},
      {"banner malformed", {{"BANNER", reply("220-a\r\n554 b")}}, {}, kDelivered, 0, 1, false},
      {"EHLO and HELO refused", {{"EHLO", reply("502 5.5.1 no")}}, {}, kDelivered, 0, 1, false},
      {"EHLO stalled", {{"EHLO", kStall}}, {}, kDelivered, 0, 1, false},
      // MAIL: a first-hand 5xx is final (at the RCPT, MAIL being answered
      // before a backend was chosen); the rest replays.
      {"MAIL 451", {{"MAIL", reply("451 4.3.0 later")}}, {}, kDelivered, 0, 1, false},
      {"MAIL 550", {{"MAIL", reply("550 5.7.1 no")}}, {}, {550}, 0, 0, false},
      {"MAIL 421", {{"MAIL", reply("421 4.3.2 bye")}}, {}, kDelivered, 0, 1, false},
      {"MAIL 354", {{"MAIL", reply("354 go")}}, {}, kDelivered, 0, 1, false},
      {"MAIL extra reply", {{"MAIL", reply("250 ok\r\n250 extra")}}, {}, kDelivered, 0, 1, false},
      {"MAIL mixed codes", {{"MAIL", reply("250-ok\r\n550 no")}}, {}, kDelivered, 0, 1, false},
      {"MAIL dropped", {{"MAIL", kDrop}}, {}, kDelivered, 0, 1, false},
      {"MAIL stalled", {{"MAIL", kStall}}, {}, kDelivered, 0, 1, false},
      // RCPT: the backend is authoritative on the recipient.
      {"RCPT 550", {{"RCPT", reply("550 5.1.1 no such user")}}, {}, {550}, 0, 0, false},
      {"RCPT 451", {{"RCPT", reply("451 4.2.0 greylisted")}}, {}, {451}, 0, 0, false},
      {"RCPT 252", {{"RCPT", reply("252 2.1.5 will try")}}, {}, {252, 354, 250}, 1, 0, false},
      {"RCPT 421", {{"RCPT", reply("421 4.3.2 bye")}}, {}, kDelivered, 0, 1, false},
      {"RCPT dropped", {{"RCPT", kDrop}}, {}, kDelivered, 0, 1, false},
      // One backend garbles or stalls: the other answers for the recipient.
      {"RCPT 354 at one", {{"RCPT", reply("354 go")}}, {}, kDelivered, 0, 1, false},
      {"RCPT mixed codes at one",
       {{"RCPT", reply("250-ok\r\n550 no")}},
       {},
       kDelivered,
       0,
       1,
       false},
      {"RCPT stalled at one", {{"RCPT", kStall}}, {}, kDelivered, 0, 1, false},
      // Both do: that recipient alone is deferred.
      {"RCPT 354 at both",
       {{"RCPT", reply("354 go")}},
       {{"RCPT", reply("354 go")}},
       {451},
       0,
       0,
       false},
      {"RCPT stalled at both", {{"RCPT", kStall}}, {{"RCPT", kStall}}, {451}, 0, 0, false},
      // DATA: 354 only; a first-hand 5xx is final.
      {"DATA 554", {{"DATA", reply("554 5.5.1 no")}}, {}, {250, 554}, 0, 0, false},
      {"DATA 451", {{"DATA", reply("451 4.3.0 later")}}, {}, kDelivered, 0, 1, false},
      {"DATA 421", {{"DATA", reply("421 4.3.2 bye")}}, {}, kDelivered, 0, 1, false},
      {"DATA 250", {{"DATA", reply("250 what")}}, {}, kDelivered, 0, 1, false},
      {"DATA 354 and an extra reply",
       {{"DATA", reply("354 go\r\n250 2.0.0 extra")}},
       {},
       kDelivered,
       0,
       1,
       false},
      {"DATA dropped", {{"DATA", kDrop}}, {}, kDelivered, 0, 1, false},
      {"DATA stalled", {{"DATA", kStall}}, {}, kDelivered, 0, 1, false},
      // The final dot: 2xx/5xx final; after the dot went out, leaving may
      // leave a copy (possible duplicate).
      {"final dot 554", {{"EOD", reply("554 5.6.0 content")}}, {}, {250, 354, 554}, 0, 0, false},
      {"final dot 451", {{"EOD", reply("451 4.3.0 later")}}, {}, kDelivered, 0, 1, false},
      {"final dot 421", {{"EOD", reply("421 4.3.2 bye")}}, {}, kDelivered, 0, 1, true},
      {"final dot 354", {{"EOD", reply("354 what")}}, {}, kDelivered, 0, 1, true},
      {"final dot dropped", {{"EOD", kDrop}}, {}, kDelivered, 0, 1, true},
      {"final dot stalled", {{"EOD", kStall}}, {}, kDelivered, 0, 1, true},
      {"final dot 250 and an extra reply",
       {{"EOD", reply("250 2.0.0 queued\r\n250 2.0.0 extra")}},
       {},
       kDelivered,
       1,
       1,
       true},
      // A replay backend's refusal is never final (issue 21, 1-2).
      {"replay: DATA 554",
       {{"DATA", kDrop}},
       {{"DATA", reply("554 5.5.1 no")}},
       {250, 451},
       0,
       0,
       false},
      {"replay: MAIL 550",
       {{"DATA", kDrop}},
       {{"MAIL", reply("550 5.7.1 no")}},
       {250, 451},
       0,
       0,
       false},
      {"replay: RCPT 550",
       {{"DATA", kDrop}},
       {{"RCPT", reply("550 5.1.1 no")}},
       {250, 451},
       0,
       0,
       false},
      {"replay: final dot 554",
       {{"EOD", kStall}},
       {{"EOD", reply("554 5.6.0 no")}},
       {250, 354, 451},
       0,
       0,
       true},
      {"both drop at the dot", {{"EOD", kDrop}}, {{"EOD", kDrop}}, {250, 354, 451}, 0, 0, true},
  };
  for (const Row& row : rows) {
    SCOPED_TRACE(row.name);
    Script a{row.a}, b{row.b};
    Outcome o = relay(a, b);
    EXPECT_EQ(o.codes, row.codes);
    EXPECT_EQ(a.stored, row.stored_a) << "stored at a";
    EXPECT_EQ(b.stored, row.stored_b) << "stored at b";
    EXPECT_EQ(o.possible_duplicate, row.possible_duplicate);
    const bool accepted = !o.codes.empty() && o.codes[0] / 100 == 2;
    EXPECT_EQ(o.accepted, accepted ? 1u : 0u) << "accepted recipients";
    EXPECT_EQ(o.refused, accepted ? 0u : 1u) << "refused recipients";
  }
}

}  // namespace
}  // namespace smtplb::relay
