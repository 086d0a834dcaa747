// candidate_walk.hpp: the walk over one transaction's candidate backends.
//
// The pool's order is made once per transaction (PoolRuntime::order: the
// algorithm's choice, MX preferences, hosts known down last); the walk then
// hands out one backend at a time, within `max_tries` (1 + `retries`):
//  * a backend marked down since the order was made yields to the untried
//    ones still up (re-partitioned at each step, stable, so the order
//    among equals holds);
//  * one drained or in maintenance is skipped without a try;
//  * one at its `max_rate`, or with every session it may open busy, is
//    set aside and offered again after a short wait, within `pool_wait`:
//    room, not health, so it costs no try; past `pool_wait` the walk ends
//    as kPoolFull (451 4.4.5), never an unbounded queue.
// Pure: time comes in as an argument, the backends' states as predicates,
// so every rule is unit-tested (tests/unit/balance/candidate_walk_test.cpp).
#pragma once

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <vector>

#include "net/clock.hpp"

namespace smtplb::balance {

class CandidateWalk {
 public:
  using Clock = smtplb::Clock;

  struct Step {
    enum Kind {
      kTry,        // try `backend`
      kWait,       // only backends at their limits are left: wait a little, then again()
      kExhausted,  // every candidate tried, or max_tries reached
      kPoolFull,   // backends at their limits past pool_wait
    } kind;
    int backend = -1;
  };

  void start(std::vector<int> order, int max_tries, Clock::time_point now,
             Clock::duration pool_wait) {
    order_ = std::move(order);
    max_tries_ = max_tries;
    next_ = 0;
    tried_ = 0;
    at_limit_.clear();
    wait_until_ = now + pool_wait;
  }
  // Backends at their limits are waited for until `t` (each command that
  // needs a backend gets its own pool_wait).
  void wait_until(Clock::time_point t) { wait_until_ = t; }

  // The next backend to try.  `usable(i)`: up (not ejected, not failing
  // its checks); `ready(i)`: not drained nor in maintenance; `room(i)`:
  // under its max_rate now (a token is taken when it says yes).
  template <class Usable, class Ready, class Room>
  Step next(Clock::time_point now, Usable&& usable, Ready&& ready, Room&& room) {
    for (;;) {
      if (next_ >= order_.size() || tried_ >= max_tries_) {
        if (at_limit_.empty() || tried_ >= max_tries_) return {Step::kExhausted};
        if (now >= wait_until_) return {Step::kPoolFull};
        return {Step::kWait};
      }
      const auto rest = order_.begin() + static_cast<std::ptrdiff_t>(next_);
      std::stable_partition(rest, order_.end(), usable);
      const int i = order_[next_++];
      if (!ready(i)) continue;
      if (!room(i)) {
        at_limit_.push_back(i);
        continue;
      }
      ++tried_;
      return {Step::kTry, i};
    }
  }

  // After a kWait: the backends set aside come back, in their order.
  void again() {
    order_.insert(order_.begin() + static_cast<std::ptrdiff_t>(next_), at_limit_.begin(),
                  at_limit_.end());
    at_limit_.clear();
  }
  // The backend just tried had no room after all (every session busy):
  // set aside like one at its rate, and the try does not count.
  void no_room() {
    at_limit_.push_back(order_[next_ - 1]);
    --tried_;
  }
  // The try does not count (a capability the message needs is missing).
  void uncounted() { --tried_; }
  // The same backend once more, not counted (a pooled session the backend
  // had closed meanwhile: a fresh one is no second try).
  void same_again() {
    --tried_;
    --next_;
  }
  bool exhausted() const { return next_ >= order_.size() || tried_ >= max_tries_; }

 private:
  std::vector<int> order_;
  std::vector<int> at_limit_;
  std::size_t next_ = 0;
  int tried_ = 0;
  int max_tries_ = 0;
  Clock::time_point wait_until_{};
};

}  // namespace smtplb::balance
