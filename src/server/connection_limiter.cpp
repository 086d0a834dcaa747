#include "server/connection_limiter.hpp"

#include <algorithm>
#include <iterator>

namespace smtplb::server {

ConnectionLimiter::Ip ConnectionLimiter::client_key(const Ip& ip, int ipv6_prefix) {
  static constexpr std::uint8_t kMapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
  if (std::equal(std::begin(kMapped), std::end(kMapped), ip.begin())) return ip;
  Ip key = ip;
  int bits = std::clamp(ipv6_prefix, 1, 128);
  for (auto& b : key) {
    if (bits < 8) b &= bits <= 0 ? 0 : static_cast<std::uint8_t>(0xff << (8 - bits));
    bits -= 8;
  }
  return key;
}

ConnectionLimiter::Result ConnectionLimiter::acquire(const Ip& ip, bool exempt_per_ip,
                                                     int max_total, int max_per_ip) {
  if (total_.fetch_add(1, std::memory_order_relaxed) + 1 > max_total) {
    total_.fetch_sub(1, std::memory_order_relaxed);
    return Result::kTotalFull;
  }
  const Ip key = client_key(ip, ipv6_prefix_);
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

void ConnectionLimiter::release(const Ip& ip) {
  total_.fetch_sub(1, std::memory_order_relaxed);
  const Ip key = client_key(ip, ipv6_prefix_);
  std::lock_guard lock(mu_);
  auto it = per_ip_.find(key);
  if (it != per_ip_.end() && --it->second <= 0) per_ip_.erase(it);
}

}  // namespace smtplb::server
