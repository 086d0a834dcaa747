// gcc12_coroutine_test.cpp: the g++ 12 coroutine miscompilation that the
// comments "No co_await inside ?: here" (relay/relay_acquire.cpp and
// others) work around, as a minimal reproducer.
//
// g++ 12.2 (Debian 12) builds a coroutine whose `co_await` sits in one arm
// of a conditional operator with a broken frame: destroying it frees a
// pointer into the middle of the frame ("free(): invalid size", or ASan's
// bad-free).  Under g++ 12 this test expects that crash, in a child process;
// on any other compiler it expects the code to work.  When it fails under a
// newer g++ the bug is gone there: the workarounds can go, and this test with
// them.
#include <gtest/gtest.h>

#include <string>

#include "net/asio.hpp"

namespace smtplb {
namespace {

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

int run_pattern() {
  asio::io_context io;
  int wrong = 0;
  asio::co_spawn(
      io,
      [&]() -> awaitable<void> {
        for (int i = 0; i < 100; ++i) {
          Reply a = co_await step(true);
          Reply b = co_await step(false);
          if (a.code != 250 || a.text != "ok" || b.code != 0 || b.text != "not sent") ++wrong;
        }
      },
      asio::detached);
  io.run();
  return wrong;
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

}  // namespace
}  // namespace smtplb
