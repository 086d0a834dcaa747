#include "dns/answer_parser.hpp"

#include <algorithm>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace smtplb::dns {
namespace {

// RFC 1035 §3.2.2, §3.2.4 and §4.1.1 numbers.
constexpr std::uint16_t kTypeCname = 5;
constexpr std::uint16_t kTypeSoa = 6;
constexpr std::uint16_t kTypeMx = 15;
constexpr std::uint16_t kClassIn = 1;
constexpr int kRcodeNoError = 0, kRcodeFormErr = 1, kRcodeServFail = 2, kRcodeNxDomain = 3,
              kRcodeRefused = 5;
constexpr std::size_t kHeaderSize = 12;
constexpr std::size_t kMaxNameOctets = 255;  // RFC 1035 §3.1, on the wire
// A chain longer than this is a loop or an attack; resolvers stop at about
// as many (BIND follows 16).
constexpr int kMaxCnameHops = 16;

using Bytes = std::span<const unsigned char>;

std::uint16_t u16(Bytes m, std::size_t at) {
  return static_cast<std::uint16_t>((m[at] << 8) | m[at + 1]);
}
std::uint32_t u32(Bytes m, std::size_t at) {
  return (std::uint32_t{m[at]} << 24) | (std::uint32_t{m[at + 1]} << 16) |
         (std::uint32_t{m[at + 2]} << 8) | std::uint32_t{m[at + 3]};
}

// RFC 2181 §8: a TTL with the top bit set is to be read as zero.
std::chrono::seconds ttl_of(std::uint32_t raw) {
  return std::chrono::seconds(raw > 0x7fffffffu ? 0 : raw);
}

// One label in presentation form (RFC 1035 §5.1), lowercased (names
// compare without case, RFC 4343): bytes that would change the meaning of
// the text ('.', '\\') or are not printable are escaped, so a hostile
// label cannot pose as two.
void append_label(std::string& out, Bytes label) {
  for (unsigned char c : label) {
    if (c >= 'A' && c <= 'Z') {
      out += static_cast<char>(c - 'A' + 'a');
    } else if (c == '.' || c == '\\') {
      out += '\\';
      out += static_cast<char>(c);
    } else if (c > 0x20 && c < 0x7f) {
      out += static_cast<char>(c);
    } else {
      out += '\\';
      out += static_cast<char>('0' + c / 100);
      out += static_cast<char>('0' + c / 10 % 10);
      out += static_cast<char>('0' + c % 10);
    }
  }
}

// Reads the name at `pos` and moves `pos` past the part stored there (up to
// and including the first compression pointer, RFC 1035 §4.1.4).  Returns
// "." for the root, else labels joined by dots with no trailing dot.
std::optional<std::string> read_name(Bytes m, std::size_t& pos) {
  std::string out;
  std::size_t p = pos;
  std::size_t segment_start = p;  // where the labels being read began
  std::size_t octets = 0;
  bool jumped = false;
  for (;;) {
    if (p >= m.size()) return std::nullopt;
    unsigned len = m[p];
    if ((len & 0xc0) == 0xc0) {
      if (p + 1 >= m.size()) return std::nullopt;
      std::size_t target = ((len & 0x3fu) << 8) | m[p + 1];
      // Only backwards, before everything read so far: each jump lands
      // strictly earlier, so a loop of pointers cannot go on.
      if (target >= segment_start) return std::nullopt;
      if (!jumped) pos = p + 2;
      jumped = true;
      p = segment_start = target;
      continue;
    }
    if ((len & 0xc0) != 0) return std::nullopt;  // the obsolete extended label types
    octets += len + 1;
    if (octets > kMaxNameOctets) return std::nullopt;
    if (len == 0) {
      if (!jumped) pos = p + 1;
      break;
    }
    if (p + 1 + len > m.size()) return std::nullopt;
    if (!out.empty()) out += '.';
    append_label(out, m.subspan(p + 1, len));
    p += 1 + len;
  }
  if (out.empty()) return std::string(1, '.');  // the root
  return out;
}

struct Rr {
  std::string owner;
  std::uint16_t type = 0;
  std::uint16_t klass = 0;
  std::uint32_t ttl = 0;
  std::size_t rdata = 0;  // offset in the message
  std::size_t rdlength = 0;
};

std::optional<Rr> read_rr(Bytes m, std::size_t& pos) {
  Rr rr;
  auto owner = read_name(m, pos);
  if (!owner || pos + 10 > m.size()) return std::nullopt;
  rr.owner = std::move(*owner);
  rr.type = u16(m, pos);
  rr.klass = u16(m, pos + 2);
  rr.ttl = u32(m, pos + 4);
  rr.rdlength = u16(m, pos + 8);
  rr.rdata = pos + 10;
  if (rr.rdata + rr.rdlength > m.size()) return std::nullopt;
  pos = rr.rdata + rr.rdlength;
  return rr;
}

// A name that must fill the rest of an RR's data exactly.
std::optional<std::string> read_rdata_name(Bytes m, std::size_t at, const Rr& rr) {
  std::size_t end = at;
  auto name = read_name(m, end);
  if (!name || end != rr.rdata + rr.rdlength) return std::nullopt;
  return name;
}

struct Message {
  int rcode = 0;
  std::string qname;
  std::uint16_t qtype = 0;
  std::vector<Rr> answers;
  std::vector<Rr> authority;
};

// The header, the single question, the answer and authority sections (the
// additional section is never needed).
std::optional<Message> read_message(Bytes m) {
  if (m.size() < kHeaderSize) return std::nullopt;
  Message msg;
  std::uint16_t flags = u16(m, 2);
  if ((flags & 0x8000) == 0) return std::nullopt;  // QR: not a response
  msg.rcode = flags & 0x000f;
  std::uint16_t qdcount = u16(m, 4), ancount = u16(m, 6), nscount = u16(m, 8);
  if (qdcount != 1) return std::nullopt;
  std::size_t pos = kHeaderSize;
  auto qname = read_name(m, pos);
  if (!qname || pos + 4 > m.size()) return std::nullopt;
  msg.qname = std::move(*qname);
  msg.qtype = u16(m, pos);
  pos += 4;
  // Each RR takes at least 11 octets, so the loops end with the message.
  for (unsigned i = 0; i < ancount; ++i) {
    auto rr = read_rr(m, pos);
    if (!rr) return std::nullopt;
    msg.answers.push_back(std::move(*rr));
  }
  for (unsigned i = 0; i < nscount; ++i) {
    auto rr = read_rr(m, pos);
    if (!rr) return std::nullopt;
    msg.authority.push_back(std::move(*rr));
  }
  return msg;
}

Ttl negative_ttl(Bytes m, const Message& msg) {
  for (const Rr& rr : msg.authority) {
    if (rr.type != kTypeSoa || rr.klass != kClassIn) continue;
    // MNAME and RNAME, then SERIAL, REFRESH, RETRY, EXPIRE and MINIMUM.
    std::size_t pos = rr.rdata;
    if (!read_name(m, pos) || !read_name(m, pos)) return std::nullopt;
    if (pos + 20 != rr.rdata + rr.rdlength) return std::nullopt;
    return std::min(ttl_of(rr.ttl), ttl_of(u32(m, pos + 16)));
  }
  return std::nullopt;
}

Ttl lowest(Ttl a, std::chrono::seconds b) {
  return a ? std::min(*a, b) : b;
}

}  // namespace

MxResult parse_mx_answer(Bytes m) {
  MxResult out;
  auto msg = read_message(m);
  if (!msg || msg->qtype != kTypeMx) {
    out.status = Status::kMalformed;
    return out;
  }
  switch (msg->rcode) {
    case kRcodeNoError:
      break;
    case kRcodeNxDomain:
      out.status = Status::kNxDomain;
      out.ttl = negative_ttl(m, *msg);
      return out;
    case kRcodeServFail:
      out.status = Status::kServFail;
      return out;
    case kRcodeRefused:
      out.status = Status::kRefused;
      return out;
    case kRcodeFormErr:
      out.status = Status::kMalformed;
      return out;
    default:
      out.status = Status::kOther;
      return out;
  }

  // Follow the CNAMEs from the name asked for; the MX records that count
  // are those of the last name in the chain.
  std::string name = msg->qname;
  Ttl chain_ttl;
  for (int hop = 0; hop < kMaxCnameHops; ++hop) {
    auto cname = std::find_if(msg->answers.begin(), msg->answers.end(), [&](const Rr& rr) {
      return rr.type == kTypeCname && rr.klass == kClassIn && rr.owner == name;
    });
    if (cname == msg->answers.end()) break;
    auto target = read_rdata_name(m, cname->rdata, *cname);
    if (!target) {
      out.status = Status::kMalformed;
      return out;
    }
    name = std::move(*target);
    chain_ttl = lowest(chain_ttl, ttl_of(cname->ttl));
  }

  Ttl ttl = chain_ttl;
  for (const Rr& rr : msg->answers) {
    if (rr.type != kTypeMx || rr.klass != kClassIn || rr.owner != name) continue;
    if (rr.rdlength < 3) {
      // A malformed answer says nothing: no record of it may be used.
      out.status = Status::kMalformed;
      out.records.clear();
      return out;
    }
    auto exchange = read_rdata_name(m, rr.rdata + 2, rr);
    if (!exchange) {
      out.status = Status::kMalformed;
      out.records.clear();
      return out;
    }
    out.records.push_back(MxRecord{u16(m, rr.rdata), std::move(*exchange)});
    ttl = lowest(ttl, ttl_of(rr.ttl));
  }
  if (out.records.empty()) {
    out.status = Status::kNoData;
    Ttl negative = negative_ttl(m, *msg);
    out.ttl = negative && chain_ttl ? std::min(*negative, *chain_ttl) : negative;
    return out;
  }
  out.status = Status::kOk;
  out.ttl = ttl;
  return out;
}

Ttl parse_negative_ttl(Bytes m) {
  auto msg = read_message(m);
  if (!msg) return std::nullopt;
  return negative_ttl(m, *msg);
}

}  // namespace smtplb::dns
