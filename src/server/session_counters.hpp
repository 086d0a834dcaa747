// session_counters.hpp: everything client sessions count, in one list
// (smtplb_limit_hits_total, smtplb_tls_handshakes_total,
// smtplb_auth_attempts_total).  Relaxed atomics shared by every core:
// counted where it happens, read only by the admin model.
#pragma once

#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>

namespace smtplb::server {

struct SessionCounters {
  // Abuse limits, each time one refused or ended something.
  enum class Limit {
    kConnections,       // limits.max_connections (421 4.7.0)
    kConnectionsPerIp,  // limits.max_connections_per_ip (421 4.7.0)
    kConnectionRate,    // limits.max_connection_rate_per_ip (421 4.7.0)
    kMessageRate,       // limits.max_message_rate_per_ip (451 4.7.1)
    kErrors,            // limits.max_errors (421)
    kCommandTime,       // timeouts.client_command (421 4.4.2)
    kDataTime,          // timeouts.client_data / client_data_total (421 4.4.2)
    kSessionTime,       // timeouts.client_session (421 4.4.2)
    kCount,
  };
  // The metric's label value.
  static const char* to_string(Limit l);
  void count(Limit l) {
    limit_hits[static_cast<std::size_t>(l)].fetch_add(1, std::memory_order_relaxed);
  }
  std::array<std::atomic<std::uint64_t>, static_cast<std::size_t>(Limit::kCount)> limit_hits{};

  // Client-side TLS handshakes (implicit and STARTTLS) by outcome.
  std::atomic<std::uint64_t> tls_handshakes{0}, tls_handshake_failures{0};
  // AUTH attempts by outcome: accepted, refused password, refused before
  // checking (locked out client), verifier busy (454).
  std::atomic<std::uint64_t> auth_accepted{0}, auth_failed{0}, auth_locked_out{0}, auth_busy{0};
};

}  // namespace smtplb::server
