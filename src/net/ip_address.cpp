#include "net/ip_address.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>

#include <algorithm>
#include <cstring>

namespace smtplb::net {

namespace {

// ::ffff:0:0/96, the IPv4-mapped prefix (RFC 4291 2.5.5.2).
constexpr std::uint8_t kV4MappedPrefix[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
constexpr std::size_t kV4Offset = 12;  // where the IPv4 address starts

}  // namespace

IpAddress::IpAddress(const boost::asio::ip::address& a) {
  if (a.is_v6()) {
    bytes_ = a.to_v6().to_bytes();
    return;
  }
  std::copy(std::begin(kV4MappedPrefix), std::end(kV4MappedPrefix), bytes_.begin());
  const auto v4 = a.to_v4().to_bytes();
  std::copy(v4.begin(), v4.end(), bytes_.begin() + kV4Offset);
}

std::optional<IpAddress> IpAddress::parse(std::string_view s) {
  // inet_pton reads to the first NUL: "127.0.0.1\0junk" would pass as 127.0.0.1.
  if (s.find('\0') != std::string_view::npos) return std::nullopt;
  const std::string str(s);  // inet_pton wants it NUL-terminated
  in_addr v4;
  if (inet_pton(AF_INET, str.c_str(), &v4) == 1) {
    IpAddress ip;
    std::copy(std::begin(kV4MappedPrefix), std::end(kV4MappedPrefix), ip.bytes_.begin());
    std::memcpy(ip.bytes_.data() + kV4Offset, &v4, 4);
    return ip;
  }
  IpAddress ip;
  if (inet_pton(AF_INET6, str.c_str(), ip.bytes_.data()) == 1) return ip;
  return std::nullopt;
}

bool IpAddress::is_v4() const {
  return std::equal(std::begin(kV4MappedPrefix), std::end(kV4MappedPrefix), bytes_.begin());
}

bool IpAddress::is_unspecified() const {
  const auto* from = is_v4() ? bytes_.begin() + kV4Offset : bytes_.begin();
  return std::all_of(from, bytes_.end(), [](std::uint8_t b) { return b == 0; });
}

bool IpAddress::is_loopback() const {
  static constexpr Bytes kLoopback6{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1};
  if (is_v4()) return bytes_[kV4Offset] == 127;  // 127.0.0.0/8 (RFC 1122 3.2.1.3)
  return bytes_ == kLoopback6;
}

boost::asio::ip::address IpAddress::to_asio() const {
  if (!is_v4()) return boost::asio::ip::address_v6(bytes_);
  return boost::asio::ip::address_v4({bytes_[12], bytes_[13], bytes_[14], bytes_[15]});
}

// Asio's to_string is inet_ntop's, which writes RFC 5952's form; an IPv4
// address goes through address_v4 so it is never "::ffff:192.0.2.1".
std::string IpAddress::text() const {
  return to_asio().to_string();
}

IpAddress IpAddress::masked(int bits) const {
  IpAddress out = *this;
  int left = std::clamp(bits, 0, 128);
  for (auto& b : out.bytes_) {
    if (left < 8) b &= left <= 0 ? 0 : static_cast<std::uint8_t>(0xff << (8 - left));
    left -= 8;
  }
  return out;
}

IpAddress client_key(const IpAddress& ip, int ipv6_prefix) {
  return ip.is_v4() ? ip : ip.masked(ipv6_prefix);
}

}  // namespace smtplb::net

std::size_t std::hash<smtplb::net::IpAddress>::operator()(
    const smtplb::net::IpAddress& ip) const noexcept {
  // FNV-1a over the 16 bytes.
  std::size_t h = 1469598103934665603ull;
  for (auto b : ip.bytes()) h = (h ^ b) * 1099511628211ull;
  return h;
}
