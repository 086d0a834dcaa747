#include "auth/auth_throttle.hpp"

#include <algorithm>
#include <iterator>

namespace smtplb::auth {

AuthThrottle::AuthThrottle(ThrottlePolicy policy) : policy_(policy) {
  // SECURITY.md §6: never refuse before the third failure.
  policy_.refuse_after = std::max(policy_.refuse_after, 3);
  policy_.free_failures = std::max(policy_.free_failures, 0);
  policy_.max_tracked = std::max<std::size_t>(policy_.max_tracked, 1);
  policy_.ipv6_prefix_bits = std::clamp(policy_.ipv6_prefix_bits, 0, 128);
}

net::IpAddress AuthThrottle::key_of(const net::IpAddress& ip) const {
  return net::client_key(ip, policy_.ipv6_prefix_bits);
}

AuthThrottle::Duration AuthThrottle::delay_for(int failures) const {
  int delayed = failures - policy_.free_failures;  // 1 for the first delayed failure
  if (delayed <= 0) return Duration::zero();
  Duration max = policy_.max_delay;
  Duration d = policy_.first_delay;
  // Doubles per failure; stops at the cap (and before any overflow).
  for (int i = 1; i < delayed && d < max; ++i) d *= 2;
  return std::min(d, max);
}

int AuthThrottle::failures_at(const net::IpAddress& key, Clock::time_point now) const {
  auto it = index_.find(key);
  if (it == index_.end()) return 0;
  const Entry& e = *it->second;
  return now - e.last_failure >= policy_.window ? 0 : e.failures;
}

void AuthThrottle::settle(const net::IpAddress& key) {
  auto it = open_.find(key);
  if (it == open_.end()) return;  // timed out already: nothing to settle
  it->second.pop_front();
  if (it->second.empty()) open_.erase(it);
}

void AuthThrottle::prune_open(Clock::time_point now) {
  for (auto it = open_.begin(); it != open_.end();) {
    Opened& o = it->second;
    while (!o.empty() && now - o.front() >= policy_.attempt_timeout) o.pop_front();
    it = o.empty() ? open_.erase(it) : std::next(it);
  }
}

AuthThrottle::Decision AuthThrottle::on_attempt(const net::IpAddress& ip, Clock::time_point now) {
  std::lock_guard lock(mu_);
  const net::IpAddress key = key_of(ip);
  auto it = index_.find(key);
  if (it != index_.end() && it->second->refused_until > now) {
    ++counters_.refusals_total;
    return {false, it->second->refused_until};
  }
  // Bounded by the connections in AUTH at once; swept when it grows past
  // what the failure table may hold.
  if (open_.size() >= policy_.max_tracked) prune_open(now);
  Opened& opened = open_[key];
  while (!opened.empty() && now - opened.front() >= policy_.attempt_timeout) opened.pop_front();
  // Each open attempt may yet be a failure: together with the failures so
  // far they stay under refuse_after.  After a refusal has run out (the
  // count kept), one attempt at a time.
  const int budget = std::max(policy_.refuse_after - failures_at(key, now), 1);
  if (static_cast<int>(opened.size()) >= budget) {
    ++counters_.refusals_total;
    return {false, opened.front() + policy_.attempt_timeout};
  }
  opened.push_back(now);
  return {};
}

AuthThrottle::Duration AuthThrottle::on_failure(const net::IpAddress& ip, Clock::time_point now) {
  std::lock_guard lock(mu_);
  ++counters_.failures_total;
  settle(key_of(ip));
  // Addresses quiet for `window` and not refused are forgotten anyway; the
  // list is in failure order, so they sit at its end.
  while (!lru_.empty() && now - lru_.back().last_failure >= policy_.window &&
         lru_.back().refused_until <= now) {
    index_.erase(lru_.back().key);
    lru_.pop_back();
  }
  const net::IpAddress key = key_of(ip);
  auto it = index_.find(key);
  if (it == index_.end()) {
    if (index_.size() >= policy_.max_tracked) {
      index_.erase(lru_.back().key);
      lru_.pop_back();
      ++counters_.evictions_total;
    }
    lru_.push_front(Entry{key, 0, now, Clock::time_point{}});
    it = index_.emplace(key, lru_.begin()).first;
  } else {
    lru_.splice(lru_.begin(), lru_, it->second);
  }
  Entry& e = *it->second;
  if (e.failures > 0 && now - e.last_failure >= policy_.window) e.failures = 0;
  e.failures = e.failures + 1;
  e.last_failure = now;
  if (e.failures >= policy_.refuse_after) e.refused_until = now + policy_.refusal;
  return delay_for(e.failures);
}

void AuthThrottle::on_success(const net::IpAddress& ip) {
  std::lock_guard lock(mu_);
  const net::IpAddress key = key_of(ip);
  settle(key);
  auto it = index_.find(key);
  if (it == index_.end()) return;
  lru_.erase(it->second);
  index_.erase(it);
}

void AuthThrottle::on_abandoned(const net::IpAddress& ip) {
  std::lock_guard lock(mu_);
  settle(key_of(ip));
}

AuthThrottle::Counters AuthThrottle::counters() const {
  std::lock_guard lock(mu_);
  Counters c = counters_;
  c.tracked = index_.size();
  c.in_progress = 0;
  for (const auto& [key, opened] : open_) c.in_progress += opened.size();
  return c;
}

}  // namespace smtplb::auth
