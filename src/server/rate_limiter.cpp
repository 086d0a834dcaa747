#include "server/rate_limiter.hpp"

#include <algorithm>

#include "server/connection_limiter.hpp"

namespace smtplb::server {

std::size_t RateLimiter::IpHash::operator()(const Ip& ip) const {
  // FNV-1a over the 16 bytes.
  std::size_t h = 1469598103934665603ull;
  for (auto b : ip) h = (h ^ b) * 1099511628211ull;
  return h;
}

bool RateLimiter::allow(const Ip& ip, Clock::time_point now) {
  if (rate_ <= 0) return true;
  const Ip key = ConnectionLimiter::client_key(ip, ipv6_prefix_);
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
