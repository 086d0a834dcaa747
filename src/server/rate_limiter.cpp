#include "server/rate_limiter.hpp"

#include <algorithm>

namespace smtplb::server {

bool RateLimiter::allow(const net::IpAddress& ip, Clock::time_point now) {
  if (rate_ <= 0) return true;
  // As ConnectionLimiter::set_ipv6_prefix: never /0.
  const net::IpAddress key = net::client_key(ip, std::clamp(ipv6_prefix_, 1, 128));
  std::lock_guard lock(mu_);
  auto [it, inserted] = buckets_.try_emplace(key, Bucket{burst_, now});
  Bucket& b = it->second;
  if (!inserted) {
    double secs = std::chrono::duration<double>(now - b.last).count();
    b.tokens = std::min(burst_, b.tokens + secs * rate_);
    b.last = now;
  }
  bool ok = b.tokens >= 1.0;
  if (ok) b.tokens -= 1.0;
  if (inserted && buckets_.size() > kMaxEntries) prune(now);
  return ok;
}

void RateLimiter::prune(Clock::time_point now) {
  for (auto it = buckets_.begin(); it != buckets_.end();) {
    double secs = std::chrono::duration<double>(now - it->second.last).count();
    if (it->second.tokens + secs * rate_ >= burst_)
      it = buckets_.erase(it);
    else
      ++it;
  }
}

}  // namespace smtplb::server
