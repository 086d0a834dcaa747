// proxy_header_test.cpp: the PROXY protocol header parser (HAProxy
// proxy-protocol.txt 2.1 and 2.2).
//
// SECURITY.md 5: a malformed header (no CRLF in 107 bytes, leading zeros,
// bad v2 version/command/length) closes the connection; v2 LOCAL and v1
// UNKNOWN mean the real peer.  Every strict prefix of a valid header waits
// for more; nothing waits past kMaxProxyHeader bytes.
#include "smtp/proxy_header.hpp"

#include <arpa/inet.h>
#include <gtest/gtest.h>

#include <array>
#include <cstdint>
#include <cstring>
#include <initializer_list>
#include <ostream>
#include <string>
#include <vector>

namespace smtplb::smtp {

// gtest prints the status by name (internal linkage: the test's alone).
static void PrintTo(ProxyParse::Status s, std::ostream* os) {
  switch (s) {
    case ProxyParse::Status::kNeedMore:
      *os << "kNeedMore";
      return;
    case ProxyParse::Status::kDone:
      *os << "kDone";
      return;
    case ProxyParse::Status::kInvalid:
      *os << "kInvalid";
      return;
  }
}

namespace {

using namespace std::string_literals;
using Status = ProxyParse::Status;

const std::string kSig = "\r\n\r\n\0\r\nQUIT\n"s;

// The 128-bit form the parser reports: IPv4 mapped into IPv6.
std::array<std::uint8_t, 16> ip(const char* text) {
  std::array<std::uint8_t, 16> a{};
  if (std::strchr(text, ':')) {
    EXPECT_EQ(inet_pton(AF_INET6, text, a.data()), 1) << text;
  } else {
    a[10] = a[11] = 0xff;
    EXPECT_EQ(inet_pton(AF_INET, text, a.data() + 12), 1) << text;
  }
  return a;
}

std::string bytes(std::initializer_list<int> b) {
  std::string s;
  for (int x : b) s.push_back(static_cast<char>(x));
  return s;
}

std::string be16(unsigned v) {
  return bytes({static_cast<int>(v >> 8), static_cast<int>(v & 0xff)});
}

// A v2 header announcing `len` bytes, followed by `rest`.
std::string v2_len(int ver_cmd, int fam, unsigned len, const std::string& rest) {
  return kSig + bytes({ver_cmd, fam}) + be16(len) + rest;
}

// A v2 header whose length is that of `payload`.
std::string v2(int ver_cmd, int fam, const std::string& payload) {
  return v2_len(ver_cmd, fam, static_cast<unsigned>(payload.size()), payload);
}

std::string tlv(int type, const std::string& value) {
  return bytes({type}) + be16(static_cast<unsigned>(value.size())) + value;
}

// 192.0.2.1:56324 -> 198.51.100.25:25
const std::string kTcp4Block = bytes({192, 0, 2, 1, 198, 51, 100, 25}) + be16(56324) + be16(25);
// 2001:db8::1:40000 -> 2001:db8::25:25
const std::string kTcp6Block =
    bytes({0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1,
           0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x25}) +
    be16(40000) + be16(25);
const std::string kTlvs = tlv(0x04, "\0\0\0"s) + tlv(0x02, "mx.example.com");
const std::string kSmtp = "EHLO client.example\r\n";
const std::string kV6Max = "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff";  // 39 characters

struct ValidCase {
  const char* label;
  std::string in;
  std::size_t consumed;
  int version;
  bool local;
  const char* src = nullptr;  // when !local
  std::uint16_t sport = 0;
  const char* dst = nullptr;
  std::uint16_t dport = 0;
  bool v4 = true;
};

const std::string kV1Tcp4 = "PROXY TCP4 192.0.2.1 198.51.100.25 56324 25\r\n";

const ValidCase kValidCases[] = {
    // v1
    {"v1 TCP4", kV1Tcp4, kV1Tcp4.size(), 1, false, "192.0.2.1", 56324, "198.51.100.25", 25},
    {"v1 TCP4 then SMTP", kV1Tcp4 + kSmtp, kV1Tcp4.size(), 1, false, "192.0.2.1", 56324,
     "198.51.100.25", 25},
    {"v1 TCP4 extremes", "PROXY TCP4 0.0.0.0 255.255.255.255 0 65535\r\n", 44, 1, false, "0.0.0.0",
     0, "255.255.255.255", 65535},
    {"v1 TCP4 zero octets and ports", "PROXY TCP4 10.0.0.1 10.200.0.9 0 0\r\n", 36, 1, false,
     "10.0.0.1", 0, "10.200.0.9", 0},
    {"v1 TCP6", "PROXY TCP6 2001:db8::1 2001:db8::25 40000 25\r\n", 46, 1, false, "2001:db8::1",
     40000, "2001:db8::25", 25, false},
    {"v1 TCP6 upper case", "PROXY TCP6 2001:DB8::1 ::1 40000 587\r\n" + kSmtp, 38, 1, false,
     "2001:db8::1", 40000, "::1", 587, false},
    {"v1 TCP6 mapped IPv4 as inet_ntop writes it", "PROXY TCP6 ::ffff:192.0.2.1 :: 1 25\r\n", 37, 1,
     false, "192.0.2.1", 1, "::", 25, false},
    {"v1 TCP6 longest (104 bytes)",
     "PROXY TCP6 " + kV6Max + " " + kV6Max + " 65535 65535\r\n" + kSmtp, 104, 1, false,
     "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", 65535, "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
     65535, false},
    {"v1 UNKNOWN short form", "PROXY UNKNOWN\r\n" + kSmtp, 15, 1, true},
    {"v1 UNKNOWN with addresses is ignored", "PROXY UNKNOWN 192.0.2.1 198.51.100.25 56324 25\r\n",
     48, 1, true},
    {"v1 UNKNOWN with anything", "PROXY UNKNOWN what ever  \t!\r\n", 29, 1, true},
    {"v1 UNKNOWN longest (107 bytes)",
     "PROXY UNKNOWN " + kV6Max + " " + kV6Max + " 65535 65535\r\n", 107, 1, true},
    // v2
    {"v2 PROXY TCP4", v2(0x21, 0x11, kTcp4Block), 28, 2, false, "192.0.2.1", 56324, "198.51.100.25",
     25},
    {"v2 PROXY TCP4 then SMTP", v2(0x21, 0x11, kTcp4Block) + kSmtp, 28, 2, false, "192.0.2.1",
     56324, "198.51.100.25", 25},
    {"v2 PROXY TCP4 with TLVs", v2(0x21, 0x11, kTcp4Block + kTlvs) + kSmtp, 28 + kTlvs.size(), 2,
     false, "192.0.2.1", 56324, "198.51.100.25", 25},
    {"v2 PROXY TCP6", v2(0x21, 0x21, kTcp6Block) + kSmtp, 52, 2, false, "2001:db8::1", 40000,
     "2001:db8::25", 25, false},
    {"v2 PROXY TCP6 with TLVs", v2(0x21, 0x21, kTcp6Block + kTlvs), 52 + kTlvs.size(), 2, false,
     "2001:db8::1", 40000, "2001:db8::25", 25, false},
    {"v2 PROXY TCP4 at the size bound",
     v2(0x21, 0x11, kTcp4Block + tlv(0x04, std::string(kMaxProxyV2Payload - 12 - 3, 'x'))),
     kMaxProxyHeader, 2, false, "192.0.2.1", 56324, "198.51.100.25", 25},
    {"v2 LOCAL without addresses", v2(0x20, 0x00, "") + kSmtp, 16, 2, true},
    {"v2 LOCAL with addresses ignores them", v2(0x20, 0x11, kTcp4Block + kTlvs) + kSmtp,
     28 + kTlvs.size(), 2, true},
    {"v2 LOCAL TCP4 with no address bytes", v2(0x20, 0x11, ""), 16, 2, true},
    {"v2 LOCAL over UDP", v2(0x20, 0x12, kTcp4Block), 28, 2, true},
    {"v2 LOCAL over UNIX", v2(0x20, 0x31, std::string(216, '\0')), 232, 2, true},
    {"v2 PROXY UNSPEC ignores addresses", v2(0x21, 0x00, kTcp4Block), 28, 2, true},
};

void expect_valid(const ValidCase& c, std::string_view in) {
  ProxyParse r = parse_proxy_header(in);
  ASSERT_EQ(r.status, Status::kDone) << c.label << ": " << r.error;
  EXPECT_EQ(r.consumed, c.consumed) << c.label;
  EXPECT_EQ(r.header.version, c.version) << c.label;
  EXPECT_EQ(r.header.local, c.local) << c.label;
  EXPECT_TRUE(r.error.empty()) << c.label;
  if (c.local) {
    EXPECT_EQ(r.header.source, ProxyAddress{}) << c.label;
    EXPECT_EQ(r.header.destination, ProxyAddress{}) << c.label;
    return;
  }
  EXPECT_EQ(r.header.source.ip, ip(c.src)) << c.label;
  EXPECT_EQ(r.header.source.port, c.sport) << c.label;
  EXPECT_EQ(r.header.source.v4, c.v4) << c.label;
  EXPECT_EQ(r.header.destination.ip, ip(c.dst)) << c.label;
  EXPECT_EQ(r.header.destination.port, c.dport) << c.label;
  EXPECT_EQ(r.header.destination.v4, c.v4) << c.label;
}

TEST(ProxyHeader, ParsesValidHeaders) {
  for (const auto& c : kValidCases) {
    expect_valid(c, c.in);
    // The header alone says the same: nothing after it is looked at.
    expect_valid(c, std::string_view(c.in).substr(0, c.consumed));
  }
}

TEST(ProxyHeader, EveryStrictPrefixOfAValidHeaderNeedsMore) {
  for (const auto& c : kValidCases) {
    for (std::size_t n = 0; n < c.consumed; ++n) {
      ProxyParse r = parse_proxy_header(std::string_view(c.in).substr(0, n));
      EXPECT_EQ(r.status, Status::kNeedMore) << c.label << ", first " << n << " bytes: " << r.error;
    }
  }
}

struct InvalidCase {
  const char* label;
  std::string in;
};

const InvalidCase kV1InvalidCases[] = {
    {"leading zero in octet", "PROXY TCP4 192.0.2.01 198.51.100.25 56324 25\r\n"},
    {"leading zero in first octet", "PROXY TCP4 010.0.2.1 198.51.100.25 56324 25\r\n"},
    {"double zero octet", "PROXY TCP4 192.00.2.1 198.51.100.25 56324 25\r\n"},
    {"leading zero in source port", "PROXY TCP4 192.0.2.1 198.51.100.25 056324 25\r\n"},
    {"leading zero in destination port", "PROXY TCP4 192.0.2.1 198.51.100.25 56324 025\r\n"},
    {"double zero port", "PROXY TCP4 192.0.2.1 198.51.100.25 00 25\r\n"},
    {"octet 256", "PROXY TCP4 192.0.2.256 198.51.100.25 56324 25\r\n"},
    {"four-digit octet", "PROXY TCP4 192.0.2.1000 198.51.100.25 56324 25\r\n"},
    {"port 65536", "PROXY TCP4 192.0.2.1 198.51.100.25 65536 25\r\n"},
    {"destination port 99999", "PROXY TCP4 192.0.2.1 198.51.100.25 56324 99999\r\n"},
    {"six-digit port", "PROXY TCP4 192.0.2.1 198.51.100.25 100000 25\r\n"},
    {"signed port", "PROXY TCP4 192.0.2.1 198.51.100.25 +5632 25\r\n"},
    {"double space after PROXY", "PROXY  TCP4 192.0.2.1 198.51.100.25 56324 25\r\n"},
    {"double space after family", "PROXY TCP4  192.0.2.1 198.51.100.25 56324 25\r\n"},
    {"double space between ports", "PROXY TCP4 192.0.2.1 198.51.100.25 56324  25\r\n"},
    {"trailing space", "PROXY TCP4 192.0.2.1 198.51.100.25 56324 25 \r\n"},
    {"tab for space", "PROXY TCP4\t192.0.2.1 198.51.100.25 56324 25\r\n"},
    {"extra field", "PROXY TCP4 192.0.2.1 198.51.100.25 56324 25 x\r\n"},
    {"missing destination port", "PROXY TCP4 192.0.2.1 198.51.100.25 56324\r\n"},
    {"missing ports", "PROXY TCP4 192.0.2.1 198.51.100.25\r\n"},
    {"family only", "PROXY TCP4\r\n"},
    {"nothing after PROXY", "PROXY \r\n"},
    {"no space after PROXY", "PROXY\r\n"},
    {"three-part address", "PROXY TCP4 192.0.2 198.51.100.25 56324 25\r\n"},
    {"five-part address", "PROXY TCP4 192.0.2.1.5 198.51.100.25 56324 25\r\n"},
    {"trailing dot", "PROXY TCP4 192.0.2.1. 198.51.100.25 56324 25\r\n"},
    {"empty octet", "PROXY TCP4 192..2.1 198.51.100.25 56324 25\r\n"},
    {"host name for address", "PROXY TCP4 mx.example 198.51.100.25 56324 25\r\n"},
    {"TCP4 with IPv6 source", "PROXY TCP4 2001:db8::1 198.51.100.25 56324 25\r\n"},
    {"TCP4 with IPv6 destination", "PROXY TCP4 192.0.2.1 ::1 56324 25\r\n"},
    {"TCP6 with IPv4 addresses", "PROXY TCP6 192.0.2.1 198.51.100.25 56324 25\r\n"},
    {"TCP6 with IPv4 destination", "PROXY TCP6 2001:db8::1 198.51.100.25 56324 25\r\n"},
    {"IPv6 triple colon", "PROXY TCP6 2001:db8:::1 ::1 56324 25\r\n"},
    {"IPv6 two double colons", "PROXY TCP6 1::2::3 ::1 56324 25\r\n"},
    {"IPv6 five-digit group", "PROXY TCP6 12345::1 ::1 56324 25\r\n"},
    {"IPv6 too few groups", "PROXY TCP6 1:2:3:4:5:6:7 ::1 56324 25\r\n"},
    {"IPv6 bad digit", "PROXY TCP6 2001:db8::g ::1 56324 25\r\n"},
    {"IPv6 zone", "PROXY TCP6 fe80::1%eth0 ::1 56324 25\r\n"},
    {"IPv6 in brackets", "PROXY TCP6 [2001:db8::1] ::1 56324 25\r\n"},
    {"LF without CR", "PROXY TCP4 192.0.2.1 198.51.100.25 56324 25\n" + std::string("EHLO x\r\n")},
    {"LF without CR after UNKNOWN", "PROXY UNKNOWN\nEHLO x\r\n"},
    {"LF inside the line", "PROXY TCP4 192.0.2.1\n198.51.100.25 56324 25\r\n"},
    {"CR without LF", "PROXY TCP4 192.0.2.1 198.51.100.25 56324 25\rEHLO x\r\n"},
    {"CR CR LF", "PROXY TCP4 192.0.2.1 198.51.100.25 56324 25\r\r\n"},
    {"no CRLF within 107 bytes", "PROXY UNKNOWN " + std::string(93, 'x')},
    {"CRLF at bytes 107-108", "PROXY UNKNOWN " + std::string(92, 'x') + "\r\n"},
    {"CRLF far too late", "PROXY UNKNOWN " + std::string(200, 'x') + "\r\n"},
    {"lower-case proxy", "proxy TCP4 192.0.2.1 198.51.100.25 56324 25\r\n"},
    {"lower-case family", "PROXY tcp4 192.0.2.1 198.51.100.25 56324 25\r\n"},
    {"unknown family", "PROXY TCP5 192.0.2.1 198.51.100.25 56324 25\r\n"},
    {"UDP4", "PROXY UDP4 192.0.2.1 198.51.100.25 56324 25\r\n"},
    {"UNKNOWN run on", "PROXY UNKNOWNX\r\n"},
    {"NUL in address", "PROXY TCP4 192.0.2.1\0 198.51.100.25 56324 25\r\n"s},
    // Refused before the line ends: no CR LF could make these valid.
    {"bad family before CRLF", "PROXY XYZ"},
    {"octet 256 before CRLF", "PROXY TCP4 256"},
    {"leading zero before CRLF", "PROXY TCP4 192.0.2.1 198.51.100.25 01"},
    {"double space before CRLF", "PROXY TCP4 192.0.2.1  "},
    {"field after the ports before CRLF", "PROXY TCP4 192.0.2.1 198.51.100.25 56324 25 "},
    {"wrong family before CRLF", "PROXY TCP6 192."},
    {"short line then CR", "PROXY TCP4 192.0.2.1\r"},
};

const InvalidCase kV2InvalidCases[] = {
    {"version 1", v2(0x11, 0x11, kTcp4Block)},
    {"version 0", v2(0x01, 0x11, kTcp4Block)},
    {"version 3", v2(0x31, 0x11, kTcp4Block)},
    {"version 15", v2(0xf1, 0x11, kTcp4Block)},
    {"command 2", v2(0x22, 0x11, kTcp4Block)},
    {"command 15", v2(0x2f, 0x11, kTcp4Block)},
    {"PROXY over UDP4", v2(0x21, 0x12, kTcp4Block)},
    {"PROXY over UDP6", v2(0x21, 0x22, kTcp6Block)},
    {"PROXY over UNIX stream", v2(0x21, 0x31, std::string(216, '\0'))},
    {"PROXY over UNIX datagram", v2(0x21, 0x32, std::string(216, '\0'))},
    {"unassigned family", v2(0x21, 0x41, kTcp4Block)},
    {"unassigned protocol", v2(0x21, 0x13, kTcp4Block)},
    {"INET with UNSPEC protocol", v2(0x21, 0x10, kTcp4Block)},
    {"LOCAL with unassigned family", v2(0x20, 0xff, "")},
    {"TCP4 length 11", v2_len(0x21, 0x11, 11, kTcp4Block)},
    {"TCP4 length 0", v2(0x21, 0x11, "")},
    {"TCP6 length 35", v2_len(0x21, 0x21, 35, kTcp6Block)},
    {"TCP6 with an IPv4 block", v2(0x21, 0x21, kTcp4Block)},
    {"length over the bound", v2(0x21, 0x11, kTcp4Block + tlv(0x04, std::string(506, 'x')))},
    {"length over the bound, refused at 16 bytes", v2_len(0x20, 0x00, kMaxProxyV2Payload + 1, "")},
    {"length 65535", v2_len(0x21, 0x11, 0xffff, kTcp4Block)},
    // Refused as soon as the byte is there.
    {"bad version, 13 bytes", kSig + bytes({0x11})},
    {"bad command, 13 bytes", kSig + bytes({0x23})},
    {"UDP, 14 bytes", kSig + bytes({0x21, 0x12})},
    {"signature with a wrong 12th byte", "\r\n\r\n\0\r\nQUIT\r"s + bytes({0x21, 0x11})},
    {"signature with a wrong 5th byte", "\r\n\r\nX\r\nQUIT\n"s},
};

const InvalidCase kGarbageCases[] = {
    {"EHLO", "EHLO x\r\n"},
    {"HELO", "HELO x"},
    {"HTTP", "GET / HTTP/1.1\r\n"},
    {"TLS ClientHello", bytes({0x16, 0x03, 0x01, 0x00, 0xa5})},
    {"leading space", " PROXY TCP4 192.0.2.1 198.51.100.25 56324 25\r\n"},
    {"PROXY with no space", "PROXYTCP4"},
    {"PROX and a space", "PROX "},
    {"one wrong byte", "X"},
    {"CRLF then text", "\r\nEHLO"},
    {"NUL", "\0"s},
};

void expect_invalid(const InvalidCase& c) {
  ProxyParse r = parse_proxy_header(c.in);
  EXPECT_EQ(r.status, Status::kInvalid) << c.label;
  EXPECT_EQ(r.consumed, 0u) << c.label;
  EXPECT_FALSE(r.error.empty()) << c.label;
  // Fixed text for the log: nothing of the peer's bytes.
  for (unsigned char ch : r.error) EXPECT_TRUE(ch >= 0x20 && ch < 0x7f) << c.label;
  EXPECT_LE(r.error.size(), 64u) << c.label;
}

TEST(ProxyHeader, RejectsMalformedV1) {
  for (const auto& c : kV1InvalidCases) expect_invalid(c);
}

TEST(ProxyHeader, RejectsMalformedV2) {
  for (const auto& c : kV2InvalidCases) expect_invalid(c);
}

TEST(ProxyHeader, RejectsWhatIsNoProxyHeader) {
  for (const auto& c : kGarbageCases) {
    expect_invalid(c);
    EXPECT_EQ(parse_proxy_header(c.in).error, "no PROXY header") << c.label;
  }
}

TEST(ProxyHeader, InvalidStaysInvalidWithMoreBytes) {
  // What the session reads next cannot rescue a refused header.
  auto check = [](const auto& table) {
    for (const auto& c : table) {
      ProxyParse r = parse_proxy_header(c.in + "\r\n" + kSmtp);
      EXPECT_EQ(r.status, Status::kInvalid) << c.label;
    }
  };
  check(kV1InvalidCases);
  check(kV2InvalidCases);
  check(kGarbageCases);
}

TEST(ProxyHeader, WaitsOnTheStartOfEitherVersion) {
  const std::string kNeedMore[] = {
      "",
      "P",
      "PROXY",
      "PROXY ",
      "PROXY TCP",
      "PROXY UNKN",
      "PROXY UNKNOWN",
      "PROXY UNKNOWN \x01\xff"s,
      "PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r",  // the LF is still to come
      "PROXY TCP6 ::ffff:1",
      "\r",
      "\r\n",
      "\r\n\r\n\0"s,
      kSig,
      kSig + bytes({0x21}),
      kSig + bytes({0x21, 0x11}),
      kSig + bytes({0x21, 0x11, 0x00}),
      "PROXY UNKNOWN " + std::string(92, 'x'),  // 106 bytes
  };
  for (const auto& in : kNeedMore) {
    ProxyParse r = parse_proxy_header(in);
    EXPECT_EQ(r.status, Status::kNeedMore) << "size " << in.size() << ": " << r.error;
  }
}

TEST(ProxyHeader, NeverWaitsPastTheBound) {
  // The largest v2 header waits for its last byte and no longer.
  std::string big = v2_len(0x21, 0x11, kMaxProxyV2Payload, std::string(kMaxProxyV2Payload, 'x'));
  ASSERT_EQ(big.size(), kMaxProxyHeader);
  EXPECT_EQ(parse_proxy_header(std::string_view(big).substr(0, kMaxProxyHeader - 1)).status,
            Status::kNeedMore);
  EXPECT_EQ(parse_proxy_header(big).status, Status::kDone);
  // v1: 107 bytes with no CR LF is the end of the wait.
  std::string line = "PROXY UNKNOWN " + std::string(kMaxProxyV1, 'x');
  EXPECT_EQ(parse_proxy_header(line.substr(0, kMaxProxyV1 - 1)).status, Status::kNeedMore);
  EXPECT_EQ(parse_proxy_header(line.substr(0, kMaxProxyV1)).status, Status::kInvalid);
}

TEST(ProxyHeader, ExplainsWhy) {
  struct Why {
    std::string in;
    const char* error;
  };
  const Why kWhy[] = {
      {"PROXY TCP4 192.0.2.01 198.51.100.25 1 25\r\n", "PROXY v1: bad source address"},
      {"PROXY TCP4 192.0.2.1 198.51.100.025 1 25\r\n", "PROXY v1: bad destination address"},
      {"PROXY TCP4 192.0.2.1 198.51.100.25 01 25\r\n", "PROXY v1: bad source port"},
      {"PROXY TCP4 192.0.2.1 198.51.100.25 1 65536\r\n", "PROXY v1: bad destination port"},
      {"PROXY TCP4 192.0.2.1\r\n", "PROXY v1: missing fields"},
      {"PROXY TCP4 192.0.2.1 198.51.100.25 1 25 \r\n", "PROXY v1: too many fields"},
      {"PROXY tcp4\r\n", "PROXY v1: bad protocol"},
      {"PROXY TCP4 192.0.2.1  198.51.100.25 1 25\r\n", "PROXY v1: double space"},
      {"PROXY UNKNOWN\n", "PROXY v1: LF without CR"},
      {"PROXY UNKNOWN\rX", "PROXY v1: CR without LF"},
      {"PROXY UNKNOWN " + std::string(93, 'x'), "PROXY v1: no CRLF within 107 bytes"},
      {v2(0x11, 0x11, kTcp4Block), "PROXY v2: bad version"},
      {v2(0x22, 0x11, kTcp4Block), "PROXY v2: bad command"},
      {v2(0x21, 0x12, kTcp4Block), "PROXY v2: not a TCP family"},
      {v2(0x21, 0x41, kTcp4Block), "PROXY v2: bad family"},
      {v2_len(0x21, 0x11, 11, kTcp4Block), "PROXY v2: length too short for the family"},
      {v2_len(0x21, 0x11, 521, ""), "PROXY v2: header over 536 bytes"},
      {"EHLO x\r\n", "no PROXY header"},
  };
  for (const auto& w : kWhy) {
    ProxyParse r = parse_proxy_header(w.in);
    EXPECT_EQ(r.status, Status::kInvalid) << w.error;
    EXPECT_EQ(r.error, w.error);
  }
}

}  // namespace
}  // namespace smtplb::smtp
