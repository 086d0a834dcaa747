// proxy_header.hpp: the PROXY protocol header a trusted proxy sends before
// SMTP (HAProxy proxy-protocol.txt: 2.1 text "version 1", 2.2 binary
// "version 2"), as a value.
//
// Pure: the session passes everything read so far and gets kNeedMore, kDone
// (with the header's length: the bytes after it are the client's SMTP) or
// kInvalid (close the connection, SECURITY.md 5).  Strict, as the spec asks
// ("any sequence which does not exactly match the protocol must be
// discarded"): single spaces, no leading zeros, CR LF within 107 bytes, v2
// version 2 and command LOCAL or PROXY only.  kNeedMore only while the bytes
// so far can still begin a valid header, and never once kMaxProxyHeader
// bytes are in, so a slow or hostile peer cannot make the caller buffer
// more.  Whether a listener expects a header at all is the caller's
// decision, never guessed from the bytes (proxy-protocol.txt 2).
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace smtplb::smtp {

struct ProxyAddress {
  // IPv4 as IPv4-mapped IPv6 (::ffff:a.b.c.d), like net::IpAddress, so
  // one compare against a config::Network serves both families.
  std::array<std::uint8_t, 16> ip{};
  bool v4 = true;  // the announced family: v1 TCP4, v2 0x11
  std::uint16_t port = 0;
  bool operator==(const ProxyAddress&) const = default;
};

struct ProxyHeader {
  // v2 LOCAL (or PROXY over UNSPEC) or v1 "PROXY UNKNOWN": no client
  // named; the session uses the real peer's address, never its trust.
  bool local = false;
  ProxyAddress source, destination;  // when !local
  int version = 1;                   // 1 or 2
  bool operator==(const ProxyHeader&) const = default;
};

struct ProxyParse {
  enum class Status { kNeedMore, kDone, kInvalid };
  Status status = Status::kNeedMore;
  std::size_t consumed = 0;  // kDone: the header's length; bytes after it belong to SMTP
  ProxyHeader header;        // kDone
  std::string error;         // kInvalid: why, for the log (fixed text, no peer bytes)
};

// proxy-protocol.txt 2.1: the longest v1 line, "PROXY UNKNOWN" with two
// full IPv6 addresses and ports, is 107 bytes including the CR LF.
inline constexpr std::size_t kMaxProxyV1 = 107;
// v2: the 16-byte fixed part, then the length it announces.
inline constexpr std::size_t kProxyV2Fixed = 16;
// The spec designs both formats to fit the smallest segment every TCP host
// must take, 536 bytes (576 - 40, proxy-protocol.txt 2), so a header with
// TLVs (ALPN, authority, SSL, unique id) up to that size is accepted and
// anything longer is refused rather than buffered: 16 + 520 = 536.
inline constexpr std::size_t kMaxProxyV2Payload = 520;
inline constexpr std::size_t kMaxProxyHeader = kProxyV2Fixed + kMaxProxyV2Payload;

// `in` is what has been read so far from the connection.  kNeedMore while a
// valid header could still follow (never at kMaxProxyHeader bytes or more).
// Never reads past `in`; allocates nothing but the error text.
ProxyParse parse_proxy_header(std::string_view in);

// The header smtplb itself sends a backend ahead of SMTP (`identity:
// proxy_v1|proxy_v2`, SECURITY.md 5): command PROXY over TCP, no TLVs, in
// the canonical form parse_proxy_header() reads back to the same
// addresses.  TCP4 when both addresses are IPv4 (`v4`, in the mapped
// form), else TCP6 with an IPv4 one written as ::ffff:a.b.c.d (v1) or its
// 16 mapped bytes (v2), so a mixed pair still goes out, just as IPv6.
//   v1: "PROXY TCP4 192.0.2.1 198.51.100.25 56324 25\r\n" (at most 104 bytes)
//   v2: the 12-byte signature, 0x21 (version 2, PROXY), 0x11 or 0x21 (TCP
//       over IPv4 or IPv6), the length 12 or 36, then source address,
//       destination address, source port, destination port, in network
//       byte order (28 or 52 bytes in all).
std::string encode_proxy_v1(const ProxyAddress& source, const ProxyAddress& destination);
std::string encode_proxy_v2(const ProxyAddress& source, const ProxyAddress& destination);

}  // namespace smtplb::smtp
