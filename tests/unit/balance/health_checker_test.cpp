// health_checker_test.cpp: active SMTP health checks
// (balance/health_checker.hpp) against scripted backends on loopback whose
// behaviour a test switches between checks: a good one (220 banner, EHLO
// with given keywords, QUIT) and bad ones (a 421 banner, silence, a
// refused connect, an `expect`ed keyword missing from EHLO).  Proves that
// `fall` failures in a row take a backend down and `rise` successes bring
// it back, neither one check sooner; that the reason is recorded; that a
// silent backend fails after `timeout` and the checks go on; and that
// stop() ends every loop, a check in flight included.  The verdict logic
// alone (BackendState::record_check) is a table at the end.
//
// Intervals are tens of milliseconds.  Tests wait for the checker's own
// count of checks (checks_ok() + checks_failed()), never for a fixed time,
// and switch a backend's behaviour between two checks.
#include "balance/health_checker.hpp"

#include <gtest/gtest.h>

#include <array>
#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace smtplb::balance {
namespace {

using namespace std::chrono_literals;
using Clock = BackendState::Clock;

// How a scripted backend answers a connection (as it is when accepted).
enum class Mode {
  kGood,       // 220 banner, EHLO with `ehlo`, QUIT 221, anything else 250
  kBanner421,  // 421 banner, then it hangs up
  kSilent,     // accepts, reads, never says a word
};

struct Script {
  Mode mode = Mode::kGood;
  std::string ehlo = "250-scripted\r\n250-PIPELINING\r\n250 8BITMIME";
  int connections = 0;
  int quits = 0;
};

awaitable<void> serve_one(tcp::socket sock, Script& s) {
  ++s.connections;
  auto reply = [&](std::string r) -> awaitable<bool> {
    r += "\r\n";
    auto [ec, n] = co_await asio::async_write(sock, asio::buffer(r), use_nothrow);
    co_return !ec;
  };
  if (s.mode == Mode::kBanner421) {
    co_await reply("421 4.3.2 try again later");
    co_return;
  }
  if (s.mode == Mode::kSilent) {
    std::array<char, 512> buf;
    for (;;) {
      auto [ec, n] = co_await sock.async_read_some(asio::buffer(buf), use_nothrow);
      if (ec) co_return;
    }
  }
  if (!co_await reply("220 scripted ESMTP")) co_return;
  std::string buf;
  for (;;) {
    auto [ec, n] =
        co_await asio::async_read_until(sock, asio::dynamic_buffer(buf), "\r\n", use_nothrow);
    if (ec) co_return;
    std::string verb = buf.substr(0, 4);
    buf.erase(0, n);
    for (char& c : verb) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
    if (verb == "QUIT") {
      ++s.quits;
      co_await reply("221 bye");
      co_return;
    }
    // Not a conditional inside the co_await: g++ 12 destroys the
    // temporary std::string of such an expression twice.  Reproducer:
    // Gcc12Coroutines.ConditionalInACoAwaitedCallsArgument* in
    // tests/unit/compiler/gcc12_coroutine_test.cpp.
    std::string answer = verb == "EHLO" ? s.ehlo : "250 ok";
    if (!co_await reply(std::move(answer))) co_return;
  }
}

awaitable<void> serve(tcp::acceptor& acc, Script& s) {
  for (;;) {
    auto [ec, sock] = co_await acc.async_accept(use_nothrow);
    if (ec) co_return;
    asio::co_spawn(acc.get_executor(), serve_one(std::move(sock), s), asio::detached);
  }
}

// An agent (agent_protocol.hpp) that says "up" to every connection.
awaitable<void> serve_agent(tcp::acceptor& acc) {
  for (;;) {
    auto [ec, sock] = co_await acc.async_accept(use_nothrow);
    if (ec) co_return;
    std::string up = "up\n";
    co_await asio::async_write(sock, asio::buffer(up), use_nothrow);
  }
}

// One backend: its scripted server, its state, its `health_check`.
struct Backend {
  tcp::acceptor acc;
  tcp::endpoint ep;
  Script script;
  config::HealthCheck check;
  std::unique_ptr<BackendState> state;

  Backend(asio::io_context& io, const std::string& name)
      : acc(io, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0)), ep(acc.local_endpoint()) {
    check.interval = 20ms;
    check.timeout = 200ms;
    check.rise = 2;
    check.fall = 3;
    config::Backend b;
    b.name = name;
    state = std::make_unique<BackendState>("p", b);
    asio::co_spawn(io, serve(acc, script), asio::detached);
  }
  // A refused connect from now on: nothing listens on the port.
  void refuse() {
    error_code ignored;
    acc.close(ignored);
  }
  int checks() const { return static_cast<int>(state->checks_ok() + state->checks_failed()); }
  std::string state_name() const { return state->state_name(Clock::now()); }
};

struct Harness {
  asio::io_context io;
  config::Config cfg;
  std::vector<std::unique_ptr<Backend>> backends;
  std::unique_ptr<HealthChecker> checker;

  Harness() { cfg.hostname = "lb.test.example"; }
  ~Harness() {
    if (checker) {
      checker->stop();
      run_until([&] { return checker->finished(); });
    }
    for (auto& b : backends) b->refuse();
  }

  Backend& add(const std::string& name = "scripted") {
    backends.push_back(std::make_unique<Backend>(io, name));
    return *backends.back();
  }
  void start(std::vector<HealthChecker::Target> targets = {}) {
    if (targets.empty())
      for (auto& b : backends) targets.push_back({b->state.get(), b->ep, &b->check, nullptr});
    checker = std::make_unique<HealthChecker>(io, cfg, std::move(targets));
    checker->start();
  }

  // Runs the io_context until `done` holds (checked after every handler),
  // for at most `limit`.
  bool run_until(const std::function<bool()>& done, Clock::duration limit = 2s) {
    const auto deadline = Clock::now() + limit;
    while (!done() && Clock::now() < deadline) {
      if (io.stopped()) io.restart();
      io.run_one_for(5ms);
    }
    return done();
  }
  // Until backend `b` has been checked `n` times in all.
  bool checked(Backend& b, int n) {
    return run_until([&] { return b.checks() >= n; });
  }
};

// A bad behaviour, and the reason it is recorded under.
struct Fault {
  const char* name;
  std::function<void(Backend&)> apply;
  std::string reason;
};

std::vector<Fault> faults() {
  return {
      {"421 banner", [](Backend& b) { b.script.mode = Mode::kBanner421; },
       "banner_refused: 421 4.3.2 try again later"},
      {"silence", [](Backend& b) { b.script.mode = Mode::kSilent; }, "stalled"},
      {"refused connect", [](Backend& b) { b.refuse(); }, "connect_refused"},
      {"expected keyword missing",
       [](Backend& b) {
         b.check.expect = {"PIPELINING", "SIZE"};  // the script offers no SIZE
       },
       "EHLO lacks SIZE"},
  };
}

TEST(HealthChecker, FallFailuresInARowTakeItDownNotFewer) {
  for (const Fault& f : faults()) {
    SCOPED_TRACE(f.name);
    Harness h;
    Backend& b = h.add();
    b.check.timeout = 40ms;  // the silent row waits this long per check
    f.apply(b);
    h.start();
    for (int i = 1; i < b.check.fall; ++i) {
      ASSERT_TRUE(h.checked(b, i));
      EXPECT_FALSE(b.state->check_down()) << "after " << i << " failures";
      EXPECT_EQ(b.state_name(), "up");
      EXPECT_EQ(b.state->reason(), "");
    }
    ASSERT_TRUE(h.checked(b, b.check.fall));
    EXPECT_EQ(b.state->checks_failed(), static_cast<std::uint64_t>(b.check.fall));
    EXPECT_EQ(b.state->checks_ok(), 0u);
    EXPECT_TRUE(b.state->check_down());
    EXPECT_EQ(b.state_name(), "down");
    EXPECT_FALSE(b.state->usable(Clock::now()));
    EXPECT_EQ(b.state->reason(), f.reason);
  }
}

TEST(HealthChecker, RiseSuccessesBringItBackNotFewer) {
  for (const Fault& f : faults()) {
    if (f.name == std::string("refused connect")) continue;  // the port cannot be had back
    SCOPED_TRACE(f.name);
    Harness h;
    Backend& b = h.add();
    b.check.timeout = 40ms;
    b.check.fall = 1;
    b.check.rise = 3;
    f.apply(b);
    h.start();
    ASSERT_TRUE(h.checked(b, 1));
    ASSERT_TRUE(b.state->check_down());
    // Healed between two checks.
    const int quits_before = b.script.quits;  // a keyword check QUITs too
    b.script.mode = Mode::kGood;
    b.check.expect.clear();
    for (int i = 1; i < b.check.rise; ++i) {
      ASSERT_TRUE(h.checked(b, 1 + i));
      EXPECT_TRUE(b.state->check_down()) << "after " << i << " successes";
      EXPECT_EQ(b.state_name(), "down");
      EXPECT_EQ(b.state->reason(), f.reason);
    }
    ASSERT_TRUE(h.checked(b, 1 + b.check.rise));
    EXPECT_EQ(b.state->checks_ok(), static_cast<std::uint64_t>(b.check.rise));
    EXPECT_FALSE(b.state->check_down());
    EXPECT_EQ(b.state_name(), "up");
    EXPECT_TRUE(b.state->usable(Clock::now()));
    EXPECT_EQ(b.state->reason(), "");
    // Every good check ended with a QUIT, as a polite client's does.
    EXPECT_EQ(b.script.quits - quits_before, b.check.rise);
  }
}

TEST(HealthChecker, AnInterruptedStreakStartsOver) {
  Harness h;
  Backend& b = h.add();
  b.check.fall = 2;
  b.check.rise = 2;
  h.start();
  // Checks in order: the backend's behaviour for each, and whether it is
  // down after it.  One failure between successes (or the reverse) is
  // never enough.
  struct Step {
    Mode mode;
    bool down;
  };
  const Step steps[] = {
      {Mode::kBanner421, false}, {Mode::kGood, false},      {Mode::kBanner421, false},
      {Mode::kGood, false},      {Mode::kBanner421, false}, {Mode::kBanner421, true},
      {Mode::kGood, true},       {Mode::kBanner421, true},  {Mode::kGood, true},
      {Mode::kGood, false},
  };
  int n = 0;
  for (const Step& s : steps) {
    b.script.mode = s.mode;
    ASSERT_TRUE(h.checked(b, ++n));
    EXPECT_EQ(b.state->check_down(), s.down) << "after check " << n;
  }
}

TEST(HealthChecker, SilentBackendFailsAfterTimeoutAndTheChecksGoOn) {
  Harness h;
  Backend& b = h.add();
  b.script.mode = Mode::kSilent;
  b.check.interval = 20ms;
  b.check.timeout = 60ms;
  b.check.fall = 1;
  const auto t0 = Clock::now();
  h.start();
  ASSERT_TRUE(h.run_until([&] { return b.script.connections == 1; }));
  const auto connected = Clock::now();
  ASSERT_TRUE(h.checked(b, 1));
  const auto failed = Clock::now();
  // It waited for the banner as long as `timeout`, and not much longer.
  EXPECT_GE(failed - connected, b.check.timeout - 5ms);
  EXPECT_LT(failed - t0, b.check.interval + b.check.timeout + 500ms);
  EXPECT_EQ(b.state->checks_failed(), 1u);
  EXPECT_EQ(b.state->reason(), "stalled");
  // And the loop goes on to the next check.
  EXPECT_TRUE(h.run_until([&] { return b.script.connections == 2; }));
}

TEST(HealthChecker, ExpectedKeywordsOfferedPass) {
  Harness h;
  Backend& b = h.add();
  b.check.expect = {"PIPELINING", "8bitmime"};  // any case
  b.check.fall = 1;
  h.start();
  ASSERT_TRUE(h.checked(b, 2));
  EXPECT_EQ(b.state->checks_ok(), 2u);
  EXPECT_EQ(b.state->checks_failed(), 0u);
  EXPECT_EQ(b.state_name(), "up");
}

TEST(HealthChecker, StopEndsEveryLoopAndACheckInFlightChangesNothing) {
  Harness h;
  Backend& good = h.add("good");
  Backend& silent = h.add("silent");
  silent.script.mode = Mode::kSilent;
  silent.check.timeout = 100ms;
  silent.check.fall = 1;
  tcp::acceptor agent_acc(h.io, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
  asio::co_spawn(h.io, serve_agent(agent_acc), asio::detached);
  config::Agent agent;
  agent.port = agent_acc.local_endpoint().port();
  agent.interval = 20ms;
  h.start({{good.state.get(), good.ep, &good.check, &agent},
           {silent.state.get(), silent.ep, &silent.check, nullptr}});

  // Every loop has run: the good backend checked, its agent heard, and
  // the silent one's check waiting for a banner.
  ASSERT_TRUE(h.run_until([&] {
    return good.checks() >= 1 && good.state->agent_replies() >= 1 &&
           silent.script.connections == 1 && silent.checks() == 0;
  }));
  EXPECT_FALSE(h.checker->finished());
  h.checker->stop();
  EXPECT_TRUE(h.run_until([&] { return h.checker->finished(); }, 1s));

  // Nothing more happens: no check, no agent round, and the silent
  // backend's check that was in flight was not counted.
  const int good_checks = good.checks(), good_connections = good.script.connections;
  const auto agent_replies = good.state->agent_replies();
  h.io.restart();
  h.io.run_for(60ms);  // three intervals of each loop
  EXPECT_EQ(good.checks(), good_checks);
  EXPECT_EQ(good.script.connections, good_connections);
  EXPECT_EQ(good.state->agent_replies(), agent_replies);
  EXPECT_EQ(silent.checks(), 0);
  EXPECT_EQ(silent.script.connections, 1);
  EXPECT_FALSE(silent.state->check_down());
  agent_acc.close();
}

// BackendState::record_check alone: a sequence of verdicts ('+' a good
// check, '-' a failed one) and the state after each ('u' up, 'd' down).
TEST(HealthCheckerRecordCheck, VerdictFollowsRiseAndFall) {
  struct Row {
    const char* name;
    int rise, fall;
    std::string checks;
    std::string states;
  };
  const Row rows[] = {
      {"presumed up; fall-1 failures leave it up", 2, 3, "--", "uu"},
      {"fall failures take it down", 2, 3, "---", "uud"},
      {"a success starts the failures over", 2, 3, "--+---", "uuuuud"},
      {"more failures while down change nothing", 2, 1, "----", "dddd"},
      {"rise-1 successes leave it down", 3, 1, "-++", "ddd"},
      {"rise successes bring it back", 3, 1, "-+++", "dddu"},
      {"a failure starts the successes over", 2, 1, "-+-++", "ddddu"},
      {"successes while up change nothing", 2, 2, "+++", "uuu"},
      {"rise 1 and fall 1 follow every check", 1, 1, "-+-+", "dudu"},
      {"down, up, down again", 2, 2, "--++--", "udduud"},
  };
  for (const Row& r : rows) {
    SCOPED_TRACE(r.name);
    ASSERT_EQ(r.checks.size(), r.states.size());
    config::Backend cfg;
    cfg.name = "b";
    BackendState st("p", cfg);
    std::string reason_when_down;
    std::uint64_t ok = 0, failed = 0;
    for (std::size_t i = 0; i < r.checks.size(); ++i) {
      const bool good = r.checks[i] == '+';
      const bool was_down = st.check_down();
      const std::string why = good ? "" : "failure " + std::to_string(i);
      const bool flipped = st.record_check(good, why, r.rise, r.fall);
      const bool down = r.states[i] == 'd';
      EXPECT_EQ(st.check_down(), down) << "after check " << i;
      EXPECT_EQ(flipped, down != was_down) << "after check " << i;
      EXPECT_STREQ(st.state_name(Clock::now()), down ? "down" : "up") << "after check " << i;
      // The reason is the failure that took it down, until it is up again.
      if (flipped) reason_when_down = down ? why : "";
      EXPECT_EQ(st.reason(), reason_when_down) << "after check " << i;
      ++(good ? ok : failed);
    }
    EXPECT_EQ(st.checks_ok(), ok);
    EXPECT_EQ(st.checks_failed(), failed);
  }
}

}  // namespace
}  // namespace smtplb::balance
