// connection_pool_test.cpp: what upstream::ConnectionPool hands out again
// (upstream/connection_pool.hpp), with real open BackendSessions to a
// scripted backend on loopback: the most recently used session first,
// marked `reused`; nothing past `connection_pool.idle_timeout` of its last
// use or `max_age` of its opening (closed instead); no more than
// `max_idle`; never a closed session, nor one on which the backend spoke
// while idle (SECURITY.md 8: unsolicited input); expired() returns exactly
// the sessions past their limits; drain_all() empties the pool.
//
// take() and expired() are given the time: the tests pass times computed
// from each session's created() and last_used(), so the limits are tested
// at their exact edges without waiting for any of them.
#include "upstream/connection_pool.hpp"

#include <gtest/gtest.h>

#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace smtplb::upstream {
namespace {

using namespace std::chrono_literals;

// A backend: banner 220, EHLO 250, QUIT 221, anything else 250.  It keeps
// every connection's socket so that a test can make it speak unasked, and
// counts how its connections ended.
struct ScriptedBackend {
  int quits = 0;                                    // ended by the client's QUIT
  int hung_up = 0;                                  // ended by the client closing without QUIT
  std::vector<std::shared_ptr<tcp::socket>> conns;  // in accept order
};

awaitable<void> serve_one(std::shared_ptr<tcp::socket> sock, ScriptedBackend& b) {
  auto reply = [&](std::string r) -> awaitable<bool> {
    r += "\r\n";
    auto [ec, n] = co_await asio::async_write(*sock, asio::buffer(r), use_nothrow);
    co_return !ec;
  };
  if (!co_await reply("220 scripted ESMTP")) co_return;
  std::string buf;
  for (;;) {
    auto [ec, n] =
        co_await asio::async_read_until(*sock, asio::dynamic_buffer(buf), "\r\n", use_nothrow);
    if (ec) {
      ++b.hung_up;
      co_return;
    }
    std::string verb = buf.substr(0, 4);
    buf.erase(0, n);
    for (char& c : verb) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
    if (verb == "EHLO") {
      if (!co_await reply("250-scripted\r\n250 PIPELINING")) co_return;
    } else if (verb == "QUIT") {
      ++b.quits;
      co_await reply("221 bye");
      co_return;
    } else if (!co_await reply("250 ok")) {
      co_return;
    }
  }
}

awaitable<void> serve(tcp::acceptor& acc, ScriptedBackend& b) {
  for (;;) {
    auto [ec, sock] = co_await acc.async_accept(use_nothrow);
    if (ec) co_return;
    auto s = std::make_shared<tcp::socket>(std::move(sock));
    // Unasked lines go out at once, not after the client's delayed ACK.
    error_code ignored;
    s->set_option(tcp::no_delay(true), ignored);
    b.conns.push_back(s);
    asio::co_spawn(acc.get_executor(), serve_one(s, b), asio::detached);
  }
}

struct Harness {
  asio::io_context io;
  tcp::acceptor acc{io, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0)};
  config::Config cfg;
  std::unique_ptr<balance::BackendState> state;
  ScriptedBackend backend;
  ConnectionPool pool{cfg.backend_pool};

  Harness() {
    cfg.hostname = "lb.test.example";
    config::Backend b;
    b.name = "scripted";
    state = std::make_unique<balance::BackendState>("p", b);
    asio::co_spawn(io, serve(acc, backend), asio::detached);
  }
  ~Harness() {
    error_code ignored;
    acc.close(ignored);
  }

  // Runs the io_context until `done` holds, for at most 2 s.  The
  // acceptor always has work pending, so each run_one_for() waits for an
  // event rather than spinning.
  bool run_until(const std::function<bool()>& done) {
    const auto deadline = Clock::now() + 2s;
    while (!done() && Clock::now() < deadline) io.run_one_for(5ms);
    return done();
  }

  // A session opened (banner and EHLO) to the scripted backend.  Its
  // timeouts add up to less than run_until()'s bound: the coroutine never
  // outlives the locals it writes to.
  std::unique_ptr<BackendSession> open() {
    auto s = std::make_unique<BackendSession>(io.get_executor(), *state, cfg);
    bool done = false;
    Failure f = Failure::kStalled;
    asio::co_spawn(
        io,
        [&]() -> awaitable<void> {
          f = co_await s->open(acc.local_endpoint(),
                               BackendSession::OpenTimeouts{500ms, 500ms, 500ms}, nullptr);
          done = true;
        },
        asio::detached);
    run_until([&] { return done; });
    EXPECT_EQ(f, Failure::kNone);
    EXPECT_TRUE(s->is_open());
    return s;
  }

  // The backend writes `line` on its `i`th connection, unasked.
  void say(std::size_t i, std::string line) {
    bool written = false;
    auto out = std::make_shared<std::string>(std::move(line) + "\r\n");
    asio::async_write(*backend.conns.at(i), asio::buffer(*out),
                      [&written, out](error_code, std::size_t) { written = true; });
    run_until([&] { return written; });
  }

  // QUITs every session, as the sweeper does with expired ones.
  void quit_all(std::vector<std::unique_ptr<BackendSession>>& sessions) {
    std::size_t n = 0;
    for (auto& s : sessions)
      asio::co_spawn(
          io,
          [&s, &n]() -> awaitable<void> {
            co_await s->quit();
            ++n;
          },
          asio::detached);
    run_until([&] { return n == sessions.size(); });
  }
};

TEST(ConnectionPool, TakesTheMostRecentlyUsedFirstAndMarksItReused) {
  Harness h;
  auto a = h.open(), b = h.open(), c = h.open();
  EXPECT_FALSE(a->reused);
  const BackendSession* pa = a.get();
  const BackendSession* pb = b.get();
  const BackendSession* pc = c.get();
  h.pool.give_back(std::move(a));
  h.pool.give_back(std::move(b));
  h.pool.give_back(std::move(c));
  EXPECT_EQ(h.pool.idle(), 3u);

  for (const BackendSession* expected : {pc, pb, pa}) {
    auto s = h.pool.take(Clock::now());
    ASSERT_NE(s, nullptr);
    EXPECT_EQ(s.get(), expected);
    EXPECT_TRUE(s->reused);
    EXPECT_TRUE(s->is_open());
  }
  EXPECT_EQ(h.pool.take(Clock::now()), nullptr);
  EXPECT_EQ(h.pool.idle(), 0u);
}

TEST(ConnectionPool, SessionPastItsLimitsIsNotTakenAndIsClosed) {
  // The time take() is given: `offset` after the session's last use (its
  // give_back) or its opening.
  enum Since { kLastUse, kOpening };
  struct Row {
    const char* name;
    config::Duration idle_timeout, max_age;
    Since since;
    Clock::duration offset;
    bool taken;
  };
  const Row rows[] = {
      {"idle for less than idle_timeout", 10s, 1h, kLastUse, 10s - 1ms, true},
      {"idle for idle_timeout", 10s, 1h, kLastUse, 10s, false},
      {"idle for longer", 10s, 1h, kLastUse, 1min, false},
      {"younger than max_age", 1h, 10s, kOpening, 10s - 1ms, true},
      {"max_age old", 1h, 10s, kOpening, 10s, false},
      // Used since it was opened, so idle for less than idle_timeout:
      // max_age counts from the opening all the same.
      {"max_age old though used since", 10s, 10s, kOpening, 10s, false},
  };
  for (const Row& r : rows) {
    SCOPED_TRACE(r.name);
    Harness h;
    h.cfg.backend_pool.idle_timeout = r.idle_timeout;
    h.cfg.backend_pool.max_age = r.max_age;
    auto s = h.open();
    const BackendSession* ps = s.get();
    h.pool.give_back(std::move(s));
    ASSERT_EQ(h.pool.idle(), 1u);
    // open() stamped both times; give_back() stamped its last use again.
    const Clock::time_point opened = ps->created();
    const Clock::time_point used = ps->last_used();
    ASSERT_GT(used, opened);

    auto got = h.pool.take((r.since == kLastUse ? used : opened) + r.offset);
    EXPECT_EQ(got != nullptr, r.taken);
    EXPECT_EQ(h.pool.idle(), 0u);
    if (!r.taken) {
      // Closed rather than left open: the backend sees the connection end
      // (without a QUIT, on this path).
      EXPECT_TRUE(h.run_until([&] { return h.backend.hung_up == 1; }));
      EXPECT_EQ(h.backend.quits, 0);
    }
  }
}

TEST(ConnectionPool, GiveBackBeyondMaxIdleClosesTheExtraOne) {
  Harness h;
  h.cfg.backend_pool.max_idle = 2;
  auto a = h.open(), b = h.open(), c = h.open();
  const BackendSession* pa = a.get();
  const BackendSession* pb = b.get();
  h.pool.give_back(std::move(a));
  h.pool.give_back(std::move(b));
  h.pool.give_back(std::move(c));
  EXPECT_EQ(h.pool.idle(), 2u);
  EXPECT_TRUE(h.run_until([&] { return h.backend.hung_up == 1; }));

  // The two that fit are still there and open.
  auto first = h.pool.take(Clock::now());
  auto second = h.pool.take(Clock::now());
  ASSERT_NE(first, nullptr);
  ASSERT_NE(second, nullptr);
  EXPECT_EQ(first.get(), pb);
  EXPECT_EQ(second.get(), pa);
  EXPECT_TRUE(first->is_open());
  EXPECT_TRUE(second->is_open());
  EXPECT_EQ(h.pool.take(Clock::now()), nullptr);
}

TEST(ConnectionPool, ClosedSessionIsNeverPooled) {
  Harness h;
  auto s = h.open();
  s->close();
  h.pool.give_back(std::move(s));
  h.pool.give_back(nullptr);
  EXPECT_EQ(h.pool.idle(), 0u);
  EXPECT_EQ(h.pool.take(Clock::now()), nullptr);

  // Nor one closed while it waited in the pool.
  auto t = h.open();
  BackendSession* pt = t.get();
  h.pool.give_back(std::move(t));
  pt->close();
  EXPECT_EQ(h.pool.take(Clock::now()), nullptr);
  EXPECT_EQ(h.pool.idle(), 0u);
}

TEST(ConnectionPool, SessionTheBackendSpokeOnWhileIdleIsNotTaken) {
  // SECURITY.md 8: whatever the backend sends unasked (a 421 before it
  // hangs up, or bytes that would be read as the answer to the next
  // command) makes the session unusable.
  struct Row {
    const char* name;
    const char* unsolicited;  // null: nothing
    bool taken;
  };
  const Row rows[] = {
      {"silent while idle", nullptr, true},
      {"421 while idle", "421 4.3.2 bye", false},
      {"a stray 250 while idle", "250 2.0.0 ok", false},
  };
  for (const Row& r : rows) {
    SCOPED_TRACE(r.name);
    Harness h;
    auto s = h.open();
    BackendSession* ps = s.get();
    h.pool.give_back(std::move(s));
    if (r.unsolicited) {
      h.say(0, r.unsolicited);
      // Until the bytes are in the session's socket (loopback: at once).
      ASSERT_TRUE(h.run_until([&] { return ps->has_unsolicited_input(); }));
    }
    auto got = h.pool.take(Clock::now());
    EXPECT_EQ(got != nullptr, r.taken);
    EXPECT_EQ(h.pool.idle(), 0u);
    if (!r.taken) {
      EXPECT_TRUE(h.run_until([&] { return h.backend.hung_up == 1; }));
    }
  }
}

TEST(ConnectionPool, ExpiredReturnsExactlyTheSessionsPastTheirLimits) {
  // Four sessions, opened and given back in this order, so each was
  // opened and last used strictly after the one before.  expired() is
  // asked at a time `offset` after session `at`'s opening or last use.
  enum Since { kLastUse, kOpening };
  struct Row {
    const char* name;
    config::Duration idle_timeout, max_age;
    Since since;
    int at;
    Clock::duration offset;
    std::vector<int> expired;
  };
  const Row rows[] = {
      {"none yet", 10s, 1h, kLastUse, 0, 10s - 1ms, {}},
      {"idle too long: the two used first", 10s, 1h, kLastUse, 1, 10s, {0, 1}},
      {"too old: the three opened first", 1h, 10s, kOpening, 2, 10s, {0, 1, 2}},
      {"all of them", 10s, 1h, kLastUse, 3, 10s, {0, 1, 2, 3}},
  };
  for (const Row& r : rows) {
    SCOPED_TRACE(r.name);
    Harness h;
    h.cfg.backend_pool.idle_timeout = r.idle_timeout;
    h.cfg.backend_pool.max_age = r.max_age;
    std::vector<std::unique_ptr<BackendSession>> owned;
    for (int i = 0; i < 4; ++i) owned.push_back(h.open());
    std::vector<const BackendSession*> raw;
    for (auto& s : owned) {
      raw.push_back(s.get());
      h.pool.give_back(std::move(s));
    }
    std::vector<Clock::time_point> opened, used;
    for (const BackendSession* s : raw) {
      opened.push_back(s->created());
      used.push_back(s->last_used());
    }
    for (int i = 1; i < 4; ++i) {
      ASSERT_LT(opened[i - 1], opened[i]);
      ASSERT_LT(used[i - 1], used[i]);
    }
    const Clock::time_point now = (r.since == kLastUse ? used[r.at] : opened[r.at]) + r.offset;

    auto out = h.pool.expired(now);
    std::vector<const BackendSession*> got, want;
    for (const auto& s : out) got.push_back(s.get());
    for (int i : r.expired) want.push_back(raw[i]);
    EXPECT_EQ(got, want);
    // Still open: the caller says QUIT to them (the sweeper).
    for (const auto& s : out) EXPECT_TRUE(s->is_open());
    EXPECT_EQ(h.pool.idle(), 4 - r.expired.size());
    // The fresh ones stay, and are taken most recently used first.
    for (int i = 3; i >= static_cast<int>(r.expired.size()); --i) {
      auto s = h.pool.take(now);
      ASSERT_NE(s, nullptr);
      EXPECT_EQ(s.get(), raw[i]);
    }
    EXPECT_EQ(h.pool.take(now), nullptr);
    h.quit_all(out);
    EXPECT_EQ(h.backend.quits, static_cast<int>(r.expired.size()));
  }
}

TEST(ConnectionPool, DrainAllEmptiesIt) {
  Harness h;
  std::vector<const BackendSession*> given;
  for (int i = 0; i < 3; ++i) {
    auto s = h.open();
    given.push_back(s.get());
    h.pool.give_back(std::move(s));
  }
  auto drained = h.pool.drain_all();
  EXPECT_EQ(h.pool.idle(), 0u);
  EXPECT_EQ(h.pool.take(Clock::now()), nullptr);
  ASSERT_EQ(drained.size(), 3u);
  for (std::size_t i = 0; i < drained.size(); ++i) {
    EXPECT_EQ(drained[i].get(), given[i]);
    EXPECT_TRUE(drained[i]->is_open());  // for the caller to QUIT
  }
  h.quit_all(drained);
  EXPECT_EQ(h.backend.quits, 3);
}

}  // namespace
}  // namespace smtplb::upstream
