// peer_ip.hpp: a client's address in the forms the session needs: text for
// logs and the Received field, and the 16-byte form (IPv4 mapped) the
// limiters and policy key on.
#pragma once

#include <array>
#include <cstdint>
#include <string>

#include "net/asio.hpp"

namespace smtplb::server {

// "192.0.2.1" for an IPv4 (or IPv4-mapped) endpoint, "2001:db8::1" else.
std::string ip_string(const tcp::endpoint& ep);
std::array<std::uint8_t, 16> ip_bytes(const tcp::endpoint& ep);
// The 128-bit form (IPv4 mapped) as text: "192.0.2.1" or "2001:db8::1".
std::string ip_text(const std::array<std::uint8_t, 16>& ip);

}  // namespace smtplb::server
