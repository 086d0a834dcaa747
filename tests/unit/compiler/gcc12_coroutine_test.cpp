// gcc12_coroutine_test.cpp: the g++ 12 coroutine miscompilations that
// comments in the source work around, each as a minimal reproducer.
//
// 1. A `co_await` in one arm of a conditional operator: the comments "No
//    co_await inside ?: here" (relay/relay_acquire.cpp and others).
// 2. A `co_await` in an `if` condition of a coroutine that has no local
//    variables (GCC PR 106188): the comments on FrontendSession::run()
//    (server/frontend_session.cpp), one coroutine for the opening and
//    STARTTLS inline.
// 3. A conditional operator inside the argument list of a co_awaited
//    coroutine call: the comment in balance/health_checker_test.cpp.
//
// g++ 12.2 (Debian 12) builds each of them wrongly and the process dies
// ("free(): invalid size", a segfault, a trap on a corrupt resume index, or
// ASan's bad-free).  Under g++ 12 each test expects that crash, in a child
// process; on any other compiler it expects the code to work.  When one fails
// under a newer g++ the bug is gone there: its workarounds can go, and its
// test with them.
#include <gtest/gtest.h>

#include <string>

#include "net/asio.hpp"

namespace smtplb {
namespace {

// 1. A co_await in one arm of a conditional operator.
struct Reply {
  int code = 0;
  std::string text;
};

awaitable<Reply> read_reply() {
  co_return Reply{250, "ok"};
}

// The pattern the workaround comments forbid.
awaitable<Reply> step(bool sent) {
  Reply r = sent ? co_await read_reply() : Reply{0, "not sent"};
  co_return r;
}

// Runs `round(i)` for i = 0..99 on an io_context: how many came out wrong.
// The patterns under test are in the coroutines each round awaits, never
// in this driver.
template <typename Round>
int rounds_wrong(Round round) {
  asio::io_context io;
  int wrong = 0;
  asio::co_spawn(
      io,
      [&]() -> awaitable<void> {
        for (int i = 0; i < 100; ++i)
          if (!co_await round(i)) ++wrong;
      },
      asio::detached);
  io.run();
  return wrong;
}

int run_pattern() {
  return rounds_wrong([](int) -> awaitable<bool> {
    Reply a = co_await step(true);
    Reply b = co_await step(false);
    co_return a.code == 250 && a.text == "ok" && b.code == 0 && b.text == "not sent";
  });
}

#if defined(__GNUC__) && !defined(__clang__) && __GNUC__ == 12
TEST(Gcc12Coroutines, CoAwaitInAConditionalOperatorBreaksTheFrame) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_DEATH(run_pattern(), "");
}
#else
TEST(Gcc12Coroutines, CoAwaitInAConditionalOperatorWorksOnThisCompiler) {
  EXPECT_EQ(run_pattern(), 0);
}
#endif

// 2. GCC PR 106188.  When a coroutine has no local variable, g++ 12 puts the
// temporaries of a co_await in an `if` (or `switch`, `while`) condition where
// they overlap the frame's own fields: `this` or the resume index is read
// back corrupt.  The `&&` does not matter (`if (!co_await x)` alone does), nor
// whether the co_await runs: the frame is broken either way.  One local
// variable anywhere in the body hides the bug, which is why FrontendSession
// opens and handles STARTTLS inside run() (it has locals) rather than in
// coroutines of their own.
struct Opening {
  bool proxy_protocol = true;
  int opened = 0;

  awaitable<bool> read_proxy_header() { co_return true; }

  // No local variable here: one would hide the bug.
  awaitable<bool> open() {
    if (proxy_protocol && !co_await read_proxy_header()) co_return false;
    ++opened;
    co_return true;
  }
};

int run_if_condition_pattern() {
  return rounds_wrong([](int i) -> awaitable<bool> {
    Opening o;
    o.proxy_protocol = i % 2 == 0;
    const bool ok = co_await o.open();
    co_return ok&& o.opened == 1;
  });
}

#if defined(__GNUC__) && !defined(__clang__) && __GNUC__ == 12
TEST(Gcc12Coroutines, CoAwaitInAnIfConditionWithoutLocalsBreaksTheFrame) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_DEATH(run_if_condition_pattern(), "");
}
#else
TEST(Gcc12Coroutines, CoAwaitInAnIfConditionWithoutLocalsWorksOnThisCompiler) {
  EXPECT_EQ(run_if_condition_pattern(), 0);
}
#endif

// 3. A conditional operator in the argument of a co_awaited call.  g++ 12
// evaluates both arms and destroys the std::string temporaries more often
// than it constructs them: a double free, or a free of a pointer malloc never
// returned.
awaitable<std::size_t> send_line(std::string line) {
  line += "\r\n";
  co_return line.size();
}

awaitable<std::size_t> answer(bool ehlo, const std::string& capabilities) {
  const std::size_t n = co_await send_line(ehlo ? capabilities : "250 ok");
  co_return n;
}

int run_conditional_argument_pattern() {
  static const std::string capabilities = "250-scripted\r\n250-PIPELINING\r\n250 8BITMIME";
  return rounds_wrong([](int i) -> awaitable<bool> {
    const bool ehlo = i % 2 == 0;
    const std::size_t n = co_await answer(ehlo, capabilities);
    co_return n == (ehlo ? capabilities.size() : 6) + 2;
  });
}

#if defined(__GNUC__) && !defined(__clang__) && __GNUC__ == 12
TEST(Gcc12Coroutines, ConditionalInACoAwaitedCallsArgumentBreaksItsTemporaries) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_DEATH(run_conditional_argument_pattern(), "");
}
#else
TEST(Gcc12Coroutines, ConditionalInACoAwaitedCallsArgumentWorksOnThisCompiler) {
  EXPECT_EQ(run_conditional_argument_pattern(), 0);
}
#endif

}  // namespace
}  // namespace smtplb
