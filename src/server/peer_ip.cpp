#include "server/peer_ip.hpp"

#include <algorithm>

namespace smtplb::server {

std::string ip_string(const tcp::endpoint& ep) {
  auto a = ep.address();
  if (a.is_v6() && a.to_v6().is_v4_mapped())
    return asio::ip::make_address_v4(asio::ip::v4_mapped, a.to_v6()).to_string();
  return a.to_string();
}

std::array<std::uint8_t, 16> ip_bytes(const tcp::endpoint& ep) {
  std::array<std::uint8_t, 16> ip{};
  auto a = ep.address();
  if (a.is_v4()) {
    ip[10] = ip[11] = 0xff;
    auto b = a.to_v4().to_bytes();
    std::copy(b.begin(), b.end(), ip.begin() + 12);
  } else {
    auto b = a.to_v6().to_bytes();
    std::copy(b.begin(), b.end(), ip.begin());
  }
  return ip;
}

std::string ip_text(const std::array<std::uint8_t, 16>& ip) {
  asio::ip::address_v6::bytes_type b;
  std::copy(ip.begin(), ip.end(), b.begin());
  asio::ip::address_v6 a(b);
  if (a.is_v4_mapped()) return asio::ip::make_address_v4(asio::ip::v4_mapped, a).to_string();
  return a.to_string();
}

}  // namespace smtplb::server
