#include "server/connection_limiter.hpp"

namespace smtplb::server {

ConnectionLimiter::Result ConnectionLimiter::acquire(const net::IpAddress& ip, bool exempt_per_ip,
                                                     int max_total, int max_per_ip) {
  if (total_.fetch_add(1, std::memory_order_relaxed) + 1 > max_total) {
    total_.fetch_sub(1, std::memory_order_relaxed);
    return Result::kTotalFull;
  }
  const net::IpAddress key = net::client_key(ip, ipv6_prefix_);
  std::lock_guard lock(mu_);
  int& n = per_ip_[key];
  if (!exempt_per_ip && n + 1 > max_per_ip) {
    if (n == 0) per_ip_.erase(key);
    total_.fetch_sub(1, std::memory_order_relaxed);
    return Result::kClientFull;
  }
  ++n;
  return Result::kAcquired;
}

void ConnectionLimiter::release(const net::IpAddress& ip) {
  total_.fetch_sub(1, std::memory_order_relaxed);
  const net::IpAddress key = net::client_key(ip, ipv6_prefix_);
  std::lock_guard lock(mu_);
  auto it = per_ip_.find(key);
  if (it != per_ip_.end() && --it->second <= 0) per_ip_.erase(it);
}

}  // namespace smtplb::server
