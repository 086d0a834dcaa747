// connection_limiter.hpp: limits.max_connections (total) and
// limits.max_connections_per_ip, shared by every core.
//
// Taken once per connection, never per message, so a short mutex around
// the per-address counts is fine here.  Trusted networks are exempt from
// the per-address limit (as Postfix exempts mynetworks).
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <map>
#include <mutex>

namespace smtplb::server {

class ConnectionLimiter {
 public:
  using Ip = std::array<std::uint8_t, 16>;

  // True when the connection may proceed; then release() must follow.
  enum class Result { kAcquired, kTotalFull, kClientFull };
  Result acquire(const Ip& ip, bool exempt_per_ip, int max_total, int max_per_ip);
  void release(const Ip& ip);
  int total() const { return total_.load(std::memory_order_relaxed); }

 private:
  std::atomic<int> total_{0};
  std::mutex mu_;
  std::map<Ip, int> per_ip_;
};

// Holds one acquired slot for the life of a session.
class ConnectionSlot {
 public:
  ConnectionSlot(ConnectionLimiter& l, const ConnectionLimiter::Ip& ip) : l_(&l), ip_(ip) {}
  ~ConnectionSlot() {
    if (l_) l_->release(ip_);
  }
  ConnectionSlot(const ConnectionSlot&) = delete;
  ConnectionSlot& operator=(const ConnectionSlot&) = delete;

 private:
  ConnectionLimiter* l_;
  ConnectionLimiter::Ip ip_;
};

}  // namespace smtplb::server
