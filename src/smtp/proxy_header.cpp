#include "smtp/proxy_header.hpp"

#include <arpa/inet.h>

#include <algorithm>
#include <cstring>
#include <initializer_list>

namespace smtplb::smtp {

namespace {

constexpr std::string_view kV1Prefix = "PROXY ";
// proxy-protocol.txt 2.2; the NUL at the 5th byte keeps it from being taken
// as a C string, hence the explicit length.
constexpr std::string_view kV2Signature("\r\n\r\n\0\r\nQUIT\n", 12);
constexpr std::string_view kUnknown = "UNKNOWN";
// "ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255": the longest text
// inet_pton(AF_INET6) takes (INET6_ADDRSTRLEN without its NUL).
constexpr std::size_t kMaxIpv6Text = 45;

// v2 byte 14, proxy-protocol.txt 2.2 "in practice, the following protocol
// bytes are expected".
constexpr std::uint8_t kUnspec = 0x00;
constexpr std::uint8_t kTcp4 = 0x11;
constexpr std::uint8_t kUdp4 = 0x12;
constexpr std::uint8_t kTcp6 = 0x21;
constexpr std::uint8_t kUdp6 = 0x22;
constexpr std::uint8_t kUnixStream = 0x31;
constexpr std::uint8_t kUnixDgram = 0x32;
constexpr std::size_t kTcp4Block = 2 * 4 + 2 * 2;
constexpr std::size_t kTcp6Block = 2 * 16 + 2 * 2;

// The error texts below spell these out.
static_assert(kMaxProxyV1 == 107 && kMaxProxyHeader == 536);

using Status = ProxyParse::Status;

ProxyParse need_more() {
  return ProxyParse{};
}

ProxyParse invalid(const char* why) {
  ProxyParse p;
  p.status = Status::kInvalid;
  p.error = why;
  return p;
}

ProxyParse done(const ProxyHeader& h, std::size_t consumed) {
  ProxyParse p;
  p.status = Status::kDone;
  p.header = h;
  p.consumed = consumed;
  return p;
}

bool is_digit(char c) {
  return c >= '0' && c <= '9';
}

bool is_hex(char c) {
  return is_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

// A dotted quad, each number 0-255 in decimal with no leading zero ("to
// avoid any possible confusion with octal numbers", proxy-protocol.txt 2.1).
// With complete false, whether `s` can still grow into one.
bool parse_ipv4(std::string_view s, bool complete, std::array<std::uint8_t, 16>& out) {
  std::array<std::uint8_t, 4> octets{};
  std::size_t n = 0;  // octets finished
  unsigned value = 0;
  std::size_t digits = 0;
  for (char c : s) {
    if (c == '.') {
      if (digits == 0 || n == 3) return false;
      octets[n++] = static_cast<std::uint8_t>(value);
      value = 0;
      digits = 0;
    } else if (is_digit(c)) {
      if (digits == 1 && value == 0) return false;  // leading zero
      value = value * 10 + static_cast<unsigned>(c - '0');
      if (++digits > 3 || value > 255) return false;
    } else {
      return false;
    }
  }
  if (!complete) return true;
  if (n != 3 || digits == 0) return false;
  octets[3] = static_cast<std::uint8_t>(value);
  out = {};
  out[10] = 0xff;
  out[11] = 0xff;
  std::copy(octets.begin(), octets.end(), out.begin() + 12);
  return true;
}

// Whether `s` can still grow into an IPv6 address inet_pton takes: hex
// groups of at most 4 digits, at most one "::", and an optional dotted IPv4
// tail after a colon (inet_ntop writes ::ffff:a.b.c.d for mapped addresses,
// so senders do too).  Looser than inet_pton, but every check only looks
// back, so any prefix of an accepted text passes, and the 107-byte bound
// ends the wait for the rest.
bool ipv6_prefix_ok(std::string_view s) {
  if (s.size() > kMaxIpv6Text) return false;
  bool seen_double = false, seen_colon = false, seen_dot = false;
  std::size_t run = 0;  // characters since the last ':'
  for (std::size_t i = 0; i < s.size(); ++i) {
    char c = s[i];
    if (c == ':') {
      if (seen_dot) return false;
      if (i > 0 && s[i - 1] == ':') {
        if (seen_double || (i > 1 && s[i - 2] == ':')) return false;
        seen_double = true;
      }
      seen_colon = true;
      run = 0;
    } else if (c == '.') {
      if (!seen_colon || run == 0) return false;
      seen_dot = true;
      run = 0;
    } else if (seen_dot ? is_digit(c) : is_hex(c)) {
      if (++run > 4) return false;
    } else {
      return false;
    }
  }
  // The group before a dot is the first IPv4 octet: decimal only.
  if (seen_dot) {
    std::size_t first_dot = s.find('.');
    std::size_t group = s.rfind(':', first_dot) + 1;
    for (std::size_t i = group; i < first_dot; ++i)
      if (!is_digit(s[i])) return false;
  }
  return true;
}

bool parse_ipv6(std::string_view s, bool complete, std::array<std::uint8_t, 16>& out) {
  if (!ipv6_prefix_ok(s)) return false;
  if (!complete) return true;
  // inet_pton wants a C string; the text is at most 45 bytes, so a stack
  // buffer serves and nothing is allocated.
  char text[kMaxIpv6Text + 1] = {};
  std::memcpy(text, s.data(), s.size());
  return inet_pton(AF_INET6, text, out.data()) == 1;
}

// 0-65535 in decimal, no leading zero; a lone "0" is a port.
bool parse_port(std::string_view s, bool complete, std::uint16_t& out) {
  if (s.size() > 5) return false;
  unsigned value = 0;
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (!is_digit(s[i]) || (i == 1 && s[0] == '0')) return false;
    value = value * 10 + static_cast<unsigned>(s[i] - '0');
  }
  if (value > 65535) return false;
  if (complete && s.empty()) return false;
  out = static_cast<std::uint16_t>(value);
  return true;
}

// The v1 line after "PROXY " and before CR LF: "TCP4|TCP6 src dst sport
// dport", or "UNKNOWN" followed by anything the receiver "must ignore".
// With complete false the line is still arriving, and the question is
// whether what is there can begin a valid line.  Returns why not, or null.
const char* check_v1_line(std::string_view line, bool complete, ProxyHeader& h) {
  if (line.starts_with(kUnknown)) {
    if (line.size() > kUnknown.size() && line[kUnknown.size()] != ' ') return "bad protocol";
    h.local = true;
    return nullptr;
  }
  constexpr std::size_t kFields = 5;
  std::array<std::string_view, kFields> fields;
  std::size_t n = 0;
  for (std::size_t start = 0;;) {
    if (n == kFields) return "too many fields";
    std::size_t sp = line.find(' ', start);
    if (sp == start) return "double space";
    fields[n++] = line.substr(start, sp == std::string_view::npos ? sp : sp - start);
    if (sp == std::string_view::npos) break;
    start = sp + 1;
  }
  bool v4 = true;
  for (std::size_t i = 0; i < n; ++i) {
    // Every field but the last one so far is followed by its space: whole.
    bool whole = complete || i + 1 < n;
    std::string_view f = fields[i];
    switch (i) {
      case 0:
        if (f == "TCP4" || f == "TCP6") {
          v4 = f == "TCP4";
        } else if (whole || !(std::string_view("TCP4").starts_with(f) ||
                              std::string_view("TCP6").starts_with(f) || kUnknown.starts_with(f))) {
          return "bad protocol";
        }
        break;
      case 1:
      case 2: {
        ProxyAddress& a = i == 1 ? h.source : h.destination;
        a.v4 = v4;
        bool ok = v4 ? parse_ipv4(f, whole, a.ip) : parse_ipv6(f, whole, a.ip);
        if (!ok) return i == 1 ? "bad source address" : "bad destination address";
        break;
      }
      default: {
        ProxyAddress& a = i == 3 ? h.source : h.destination;
        if (!parse_port(f, whole, a.port))
          return i == 3 ? "bad source port" : "bad destination port";
        break;
      }
    }
  }
  if (complete && n < kFields) return "missing fields";
  return nullptr;
}

ProxyParse v1_invalid(const char* why) {
  // One short fixed text per cause; the peer's bytes stay out of the log.
  ProxyParse p = invalid("PROXY v1: ");
  p.error += why;
  return p;
}

// `in` starts with "PROXY ".  The spec asks the receiver to wait for CR LF
// before decoding; we also check the fields as they arrive so a line that
// cannot be valid is refused at once ("abort the connection as soon as
// possible", proxy-protocol.txt 2.1).
ProxyParse parse_v1(std::string_view in) {
  std::size_t window = std::min(in.size(), kMaxProxyV1);
  std::size_t eol = in.substr(0, window).find_first_of("\r\n");
  ProxyHeader h;
  h.version = 1;
  if (eol == std::string_view::npos) {
    if (in.size() >= kMaxProxyV1) return v1_invalid("no CRLF within 107 bytes");
    if (const char* why = check_v1_line(in.substr(kV1Prefix.size()), false, h))
      return v1_invalid(why);
    return need_more();
  }
  // "The receiver must not tolerate a single CR or LF character to end the
  // line" (2.1).
  if (in[eol] == '\n') return v1_invalid("LF without CR");
  if (eol + 2 > kMaxProxyV1) return v1_invalid("no CRLF within 107 bytes");
  if (const char* why = check_v1_line(in.substr(kV1Prefix.size(), eol - kV1Prefix.size()), true, h))
    return v1_invalid(why);
  if (eol + 1 == in.size()) return need_more();  // the LF is still to come
  if (in[eol + 1] != '\n') return v1_invalid("CR without LF");
  return done(h, eol + 2);
}

std::uint16_t be16(std::string_view s, std::size_t at) {
  return static_cast<std::uint16_t>((static_cast<unsigned char>(s[at]) << 8) |
                                    static_cast<unsigned char>(s[at + 1]));
}

// An address of `n` (4 or 16) bytes into the last `n` bytes of `ip`, where
// the IPv4-mapped form keeps it.
void copy_address(std::string_view s, std::size_t at, std::size_t n,
                  std::array<std::uint8_t, 16>& ip) {
  std::memcpy(ip.data() + (ip.size() - n), s.data() + at, n);
}

// `in` starts with the 12-byte signature.  Each fixed byte is judged as soon
// as it is there; the addresses once the whole announced length is.
ProxyParse parse_v2(std::string_view in) {
  const std::size_t sig = kV2Signature.size();
  ProxyHeader h;
  h.version = 2;
  if (in.size() > sig) {
    auto ver_cmd = static_cast<unsigned char>(in[sig]);
    if ((ver_cmd >> 4) != 2) return invalid("PROXY v2: bad version");
    unsigned cmd = ver_cmd & 0x0f;
    if (cmd > 1) return invalid("PROXY v2: bad command");
    h.local = cmd == 0;
  }
  std::size_t block = 0;  // the address block the family needs
  if (in.size() > sig + 1) {
    auto fam = static_cast<std::uint8_t>(in[sig + 1]);
    switch (fam) {
      case kTcp4:
        block = kTcp4Block;
        break;
      case kTcp6:
        block = kTcp6Block;
        break;
      case kUnspec:
        // "The receiver should ignore address information" (2.2): the real
        // peer's address, as for LOCAL.
        h.local = true;
        break;
      case kUdp4:
      case kUdp6:
      case kUnixStream:
      case kUnixDgram:
        // Valid, but not a TCP client: SMTP cannot have come that way.
        // LOCAL ignores the family altogether.
        if (!h.local) return invalid("PROXY v2: not a TCP family");
        break;
      default:
        // Unassigned values "must be rejected as invalid by receivers".
        return invalid("PROXY v2: bad family");
    }
  }
  if (in.size() < kProxyV2Fixed) return need_more();
  std::size_t len = be16(in, sig + 2);
  if (len > kMaxProxyV2Payload) return invalid("PROXY v2: header over 536 bytes");
  // LOCAL discards the whole block, "including the family which is
  // ignored", so only PROXY needs room for the addresses.
  if (!h.local && len < block) return invalid("PROXY v2: length too short for the family");
  std::size_t total = kProxyV2Fixed + len;
  if (in.size() < total) return need_more();
  if (!h.local) {
    // src addr, dst addr, src port, dst port, network byte order; what
    // follows up to `total` is TLVs, which we do not need and skip.
    const std::size_t at = kProxyV2Fixed;
    const bool v4 = block == kTcp4Block;
    const std::size_t alen = v4 ? 4 : 16;
    for (ProxyAddress* a : {&h.source, &h.destination}) {
      a->v4 = v4;
      if (v4) {
        a->ip[10] = 0xff;
        a->ip[11] = 0xff;
      }
    }
    copy_address(in, at, alen, h.source.ip);
    copy_address(in, at + alen, alen, h.destination.ip);
    h.source.port = be16(in, at + 2 * alen);
    h.destination.port = be16(in, at + 2 * alen + 2);
  }
  return done(h, total);
}

// The encoders' family: TCP4 only when both ends are IPv4.
bool both_v4(const ProxyAddress& a, const ProxyAddress& b) {
  return a.v4 && b.v4;
}

std::string address_text(const ProxyAddress& a, bool v4) {
  char text[INET6_ADDRSTRLEN] = {};
  // inet_ntop cannot fail here: a known family and a buffer of the size
  // its manual asks for.
  if (v4)
    inet_ntop(AF_INET, a.ip.data() + 12, text, sizeof text);
  else
    inet_ntop(AF_INET6, a.ip.data(), text, sizeof text);
  return text;
}

void append_be16(std::string& out, std::uint16_t v) {
  out.push_back(static_cast<char>(v >> 8));
  out.push_back(static_cast<char>(v & 0xff));
}

void append_ip(std::string& out, const ProxyAddress& a, bool v4) {
  const std::size_t from = v4 ? 12 : 0;
  for (std::size_t i = from; i < a.ip.size(); ++i) out.push_back(static_cast<char>(a.ip[i]));
}

}  // namespace

ProxyParse parse_proxy_header(std::string_view in) {
  if (in.starts_with(kV2Signature)) return parse_v2(in);
  if (in.starts_with(kV1Prefix)) return parse_v1(in);
  // Too short to tell yet: wait while it may still become either one.
  if (kV2Signature.starts_with(in) || kV1Prefix.starts_with(in)) return need_more();
  return invalid("no PROXY header");
}

std::string encode_proxy_v1(const ProxyAddress& source, const ProxyAddress& destination) {
  const bool v4 = both_v4(source, destination);
  std::string out(v4 ? "PROXY TCP4 " : "PROXY TCP6 ");
  out += address_text(source, v4);
  out += ' ';
  out += address_text(destination, v4);
  out += ' ';
  out += std::to_string(source.port);
  out += ' ';
  out += std::to_string(destination.port);
  out += "\r\n";
  return out;
}

std::string encode_proxy_v2(const ProxyAddress& source, const ProxyAddress& destination) {
  const bool v4 = both_v4(source, destination);
  const std::size_t block = v4 ? kTcp4Block : kTcp6Block;
  std::string out(kV2Signature);
  out.push_back(static_cast<char>(0x21));  // version 2, command PROXY
  out.push_back(static_cast<char>(v4 ? kTcp4 : kTcp6));
  append_be16(out, static_cast<std::uint16_t>(block));
  append_ip(out, source, v4);
  append_ip(out, destination, v4);
  append_be16(out, source.port);
  append_be16(out, destination.port);
  return out;
}

}  // namespace smtplb::smtp
