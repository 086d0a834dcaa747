// clock.hpp: the one clock every deadline, timer and time-stamped decision
// in smtplb reads, and the timer type that waits on it.
//
// In service it is std::chrono::steady_clock.  Tests may move it forward
// (Clock::warp): a backend's silence then lasts its whole timeout in no
// real time, so a table of stalls at every stage runs in milliseconds and
// its verdicts do not depend on the machine's load ("simulated time",
// issue 13).  The offset is one relaxed atomic load per now(); nothing in
// service ever moves it.
#pragma once

#include <atomic>
#include <boost/asio/basic_waitable_timer.hpp>
#include <chrono>

namespace smtplb {

struct Clock {
  using duration = std::chrono::steady_clock::duration;
  using rep = duration::rep;
  using period = duration::period;
  using time_point = std::chrono::time_point<Clock>;
  static constexpr bool is_steady = true;

  static time_point now() noexcept {
    return time_point(std::chrono::steady_clock::now().time_since_epoch() +
                      duration(offset_.load(std::memory_order_relaxed)));
  }
  // Tests only: time jumps forward by `d` for every reader.  A timer that
  // is already waiting fires at the io_context's next look at its timers
  // (a timer started after the warp makes it look; see Clock users in
  // tests/unit/relay/).
  static void warp(duration d) noexcept { offset_.fetch_add(d.count(), std::memory_order_relaxed); }

 private:
  static inline std::atomic<rep> offset_{0};
};

}  // namespace smtplb

namespace smtplb {
// Every timer in smtplb waits on Clock, so that a warp reaches it.
using Timer = boost::asio::basic_waitable_timer<Clock>;
}  // namespace smtplb
