// auth_throttle.hpp: slows down and then refuses password guessing, per
// client address, shared by every core (SECURITY.md §6, RFC 4954 §9).
//
// The session asks on_attempt() before each AUTH (refused: 421 4.7.0 and
// close), tells on_failure() about each 535 and waits the delay it returns
// before sending that 535, and tells on_success() about a 235:
//
//   failure   1  2  3   4   5   6    7    8    9    10
//   delay     0  0  1s  2s  4s  8s  16s  30s  30s  30s, then refused 10 min
//
// Failures are forgotten once an address has gone `window` without one,
// and a success forgets them at once.  A refusal does not reset the count:
// an address that comes back after it and fails again is refused again at
// once, until it has gone `window` without failing.  The first two
// failures (typos) are never delayed and refusal never comes before the
// third (refuse_after is raised to 3 if set lower).
//
// IPv6 clients are counted per /64 by default (ipv6_prefix_bits): one
// host usually holds a whole /64 and could otherwise rotate addresses for
// fresh counts.  IPv4 (IPv4-mapped) addresses count one by one.
//
// Attempts in progress count too (issue 14): on_attempt() opens one, and
// its 535 (on_failure) or 235 (on_success) settles it, so that parallel
// connections from one address cannot all be checked before the first
// failure is counted.  An address may have at most `refuse_after` minus
// its failures so far (at least one) attempts open at once; one more gets
// 421 4.7.0 like a refusal, though it starts none.  An attempt that ends
// having checked no password (bad base64, a cancel, 454, the client gone
// before its credentials) is closed by on_abandoned(), so that it frees its
// place at once and never counts as a failure.  One whose verdict never
// comes (the session torn down while its password was being hashed)
// closes by itself after `attempt_timeout`.
//
// Bounded: at most max_tracked addresses; the one that failed least
// recently is forgotten first (so a flood of failures from more addresses
// than that can push a refused one out early), and addresses quiet for
// `window` and not refused are dropped as failures come in.  A short std::mutex guards the table:
// it is touched only when a client says AUTH (on_attempt reads, failures and successes write),
// never per message, so sharing it costs nothing on the mail path, and an address has one count
// whichever core its connections land on.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <list>
#include <mutex>
#include <unordered_map>

#include "net/clock.hpp"
#include "net/ip_address.hpp"

namespace smtplb::auth {

struct ThrottlePolicy {
  int free_failures = 2;                        // failures answered without delay
  std::chrono::milliseconds first_delay{1000};  // before the first delayed 535; doubles after
  // Under any client's command timeout (RFC 5321 §4.5.3.2: 5 min); a
  // longer wait would only tie up the session.
  std::chrono::milliseconds max_delay{std::chrono::seconds(30)};
  int refuse_after = 10;  // failures (within `window`) that start a refusal; at least 3
  std::chrono::seconds refusal{std::chrono::minutes(10)};
  std::chrono::seconds window{std::chrono::minutes(15)};  // quiet time that forgets failures
  std::size_t max_tracked = 10000;                        // addresses remembered
  int ipv6_prefix_bits = 64;                              // 128: each IPv6 address apart
  // How long an attempt whose verdict never came (see above) stays open.
  // An AUTH exchange that takes longer is then counted only when it fails.
  std::chrono::seconds attempt_timeout{std::chrono::minutes(1)};
};

class AuthThrottle {
 public:
  using Clock = smtplb::Clock;
  using Duration = Clock::duration;

  struct Decision {
    bool allowed = true;
    Clock::time_point refused_until{};  // when !allowed: 421 4.7.0 until then
  };

  explicit AuthThrottle(ThrottlePolicy policy = {});

  // Before an AUTH command: may it go on?  Opens an attempt when it may,
  // counts a refusal when not.
  Decision on_attempt(const net::IpAddress& ip, Clock::time_point now);
  // After a failed AUTH: settles an attempt, and says how long to wait
  // before replying 535 5.7.8.
  Duration on_failure(const net::IpAddress& ip, Clock::time_point now);
  // After a successful AUTH: settles an attempt, forgets the failures.
  void on_success(const net::IpAddress& ip);
  // After an AUTH that checked no password: settles an attempt, nothing
  // else.
  void on_abandoned(const net::IpAddress& ip);

  struct Counters {
    std::uint64_t failures_total = 0;
    std::uint64_t refusals_total = 0;  // AUTH attempts refused (421)
    std::uint64_t evictions_total = 0;
    std::size_t tracked = 0;      // addresses remembered now (with failures)
    std::size_t in_progress = 0;  // attempts open now, all addresses
  };
  Counters counters() const;

  const ThrottlePolicy& policy() const { return policy_; }

 private:
  struct Entry {
    net::IpAddress key;
    int failures = 0;
    Clock::time_point last_failure;
    Clock::time_point refused_until;  // in the past: not refused
  };
  using List = std::list<Entry>;  // most recent failure first

  using Opened = std::deque<Clock::time_point>;  // open attempts, oldest first

  net::IpAddress key_of(const net::IpAddress& ip) const;
  Duration delay_for(int failures) const;
  int failures_at(const net::IpAddress& key, Clock::time_point now) const;  // within `window`
  void settle(const net::IpAddress& key);  // the oldest open attempt
  void prune_open(Clock::time_point now);

  ThrottlePolicy policy_;
  mutable std::mutex mu_;
  List lru_;                                                  // guarded by mu_
  std::unordered_map<net::IpAddress, List::iterator> index_;  // guarded by mu_
  // Addresses with attempts open; apart from lru_ so that an attempt that
  // never fails leaves no failure entry behind.
  std::unordered_map<net::IpAddress, Opened> open_;  // guarded by mu_
  Counters counters_;                                // guarded by mu_; tracked unused
};

}  // namespace smtplb::auth
