#include "dns/answer_parser.hpp"

#include <gtest/gtest.h>

#include <cstdint>
#include <random>
#include <string>
#include <string_view>
#include <vector>

namespace smtplb::dns {
namespace {

using Bytes = std::vector<unsigned char>;
using std::chrono::seconds;

constexpr std::uint16_t kA = 1, kCname = 5, kSoa = 6, kMx = 15;
constexpr std::size_t kQnameOffset = 12;  // right after the header

// Wire form of a name, uncompressed (RFC 1035 §3.1).
Bytes wire_name(std::string_view name) {
  Bytes out;
  while (!name.empty() && name != ".") {
    std::size_t dot = name.find('.');
    std::string_view label = name.substr(0, dot);
    out.push_back(static_cast<unsigned char>(label.size()));
    out.insert(out.end(), label.begin(), label.end());
    name = dot == std::string_view::npos ? std::string_view{} : name.substr(dot + 1);
  }
  out.push_back(0);
  return out;
}

// A pointer to an earlier offset (RFC 1035 §4.1.4).
Bytes pointer(std::size_t offset) {
  return {static_cast<unsigned char>(0xc0 | (offset >> 8)),
          static_cast<unsigned char>(offset & 0xff)};
}

Bytes cat(Bytes a, const Bytes& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

Bytes u16(std::uint16_t v) {
  return {static_cast<unsigned char>(v >> 8), static_cast<unsigned char>(v)};
}
Bytes u32(std::uint32_t v) {
  return {static_cast<unsigned char>(v >> 24), static_cast<unsigned char>(v >> 16),
          static_cast<unsigned char>(v >> 8), static_cast<unsigned char>(v)};
}

Bytes mx_rdata(std::uint16_t pref, const Bytes& exchange) {
  return cat(u16(pref), exchange);
}

Bytes soa_rdata(std::uint32_t minimum) {
  return cat(cat(wire_name("ns.example"), wire_name("hostmaster.example")),
             cat(cat(u32(1), u32(3600)), cat(cat(u32(600), u32(86400)), u32(minimum))));
}

// Builds a response: header, one question, then answer and authority RRs.
struct Response {
  std::string qname = "example.net";
  std::uint16_t qtype = kMx;
  int rcode = 0;
  std::uint16_t flags = 0x8180;  // QR, RD, RA
  int qdcount = 1;
  std::vector<Bytes> answers, authority;
  Bytes trailer;  // after the counted sections (the additional section, unread)

  Response& answer(const Bytes& owner, std::uint16_t type, std::uint32_t ttl, const Bytes& rdata) {
    answers.push_back(rr(owner, type, ttl, rdata));
    return *this;
  }
  Response& auth(const Bytes& owner, std::uint16_t type, std::uint32_t ttl, const Bytes& rdata) {
    authority.push_back(rr(owner, type, ttl, rdata));
    return *this;
  }
  static Bytes rr(const Bytes& owner, std::uint16_t type, std::uint32_t ttl, const Bytes& rdata) {
    return cat(cat(owner, cat(cat(u16(type), u16(1)), u32(ttl))),
               cat(u16(static_cast<std::uint16_t>(rdata.size())), rdata));
  }
  Bytes bytes() const {
    Bytes m = cat(u16(0x1234), u16(static_cast<std::uint16_t>(flags | rcode)));
    m = cat(m, u16(static_cast<std::uint16_t>(qdcount)));
    m = cat(m, u16(static_cast<std::uint16_t>(answers.size())));
    m = cat(m, u16(static_cast<std::uint16_t>(authority.size())));
    m = cat(m, u16(0));
    m = cat(m, cat(wire_name(qname), cat(u16(qtype), u16(1))));
    for (const Bytes& a : answers) m = cat(m, a);
    for (const Bytes& a : authority) m = cat(m, a);
    return cat(m, trailer);
  }
};

const Bytes kQname = pointer(kQnameOffset);

TEST(DnsAnswerParser, MxRecordsWithTheLowestTtl) {
  Response r;
  r.answer(kQname, kMx, 300, mx_rdata(20, wire_name("mx2.example.net")))
      .answer(kQname, kMx, 120, mx_rdata(10, cat(Bytes{3, 'm', 'x', '1'}, kQname)));
  MxResult got = parse_mx_answer(r.bytes());
  EXPECT_EQ(got.status, Status::kOk);
  EXPECT_EQ(got.records, (std::vector<MxRecord>{{20, "mx2.example.net"}, {10, "mx1.example.net"}}));
  EXPECT_EQ(got.ttl, seconds(120));
}

TEST(DnsAnswerParser, NamesAreLowercasedAndOddBytesEscaped) {
  Response r;
  r.qname = "Example.NET";
  Bytes odd = {8, 'M', 'X', '.', 'o', 'n', 'e', '\\', 0x07};
  r.answer(wire_name("EXAMPLE.net"), kMx, 60, mx_rdata(5, cat(odd, kQname)));
  MxResult got = parse_mx_answer(r.bytes());
  ASSERT_EQ(got.status, Status::kOk);
  ASSERT_EQ(got.records.size(), 1u);
  EXPECT_EQ(got.records[0].exchange, "mx\\.one\\\\\\007.example.net");
}

TEST(DnsAnswerParser, NullMxIsARecordForTheRoot) {
  Response r;
  r.answer(kQname, kMx, 3600, mx_rdata(0, Bytes{0}));
  MxResult got = parse_mx_answer(r.bytes());
  EXPECT_EQ(got.status, Status::kOk);
  EXPECT_EQ(got.records, (std::vector<MxRecord>{{0, "."}}));
}

TEST(DnsAnswerParser, FollowsCnamesAndTakesTheirTtlIntoAccount) {
  Response r;
  r.qname = "alias.example.net";
  r.answer(kQname, kCname, 30, wire_name("target.example.org"))
      .answer(wire_name("target.example.org"), kMx, 300, mx_rdata(10, wire_name("mx.example.org")))
      .answer(wire_name("unrelated.example"), kMx, 300, mx_rdata(10, wire_name("evil.example")));
  MxResult got = parse_mx_answer(r.bytes());
  EXPECT_EQ(got.status, Status::kOk);
  EXPECT_EQ(got.records, (std::vector<MxRecord>{{10, "mx.example.org"}}));
  EXPECT_EQ(got.ttl, seconds(30));
}

TEST(DnsAnswerParser, CnameLoopEndsAsNoData) {
  Response r;
  r.qname = "a.example";
  r.answer(wire_name("a.example"), kCname, 60, wire_name("b.example"))
      .answer(wire_name("b.example"), kCname, 60, wire_name("a.example"));
  EXPECT_EQ(parse_mx_answer(r.bytes()).status, Status::kNoData);
}

TEST(DnsAnswerParser, NegativeAnswersCarryTheRfc2308Ttl) {
  struct Case {
    const char* name;
    int rcode;
    std::vector<std::pair<std::uint32_t, std::uint32_t>> soas;  // (RR TTL, MINIMUM)
    Status status;
    Ttl ttl;
  };
  const std::vector<Case> cases = {
      {"NODATA, SOA MINIMUM lower", 0, {{600, 60}}, Status::kNoData, seconds(60)},
      {"NODATA, SOA TTL lower", 0, {{30, 3600}}, Status::kNoData, seconds(30)},
      {"NODATA without SOA", 0, {}, Status::kNoData, std::nullopt},
      {"NXDOMAIN with SOA", 3, {{900, 900}}, Status::kNxDomain, seconds(900)},
      {"NXDOMAIN without SOA", 3, {}, Status::kNxDomain, std::nullopt},
      {"a TTL with the top bit set reads as zero",
       3,
       {{0x80000000u, 900}},
       Status::kNxDomain,
       seconds(0)},
  };
  for (const Case& c : cases) {
    Response r;
    r.rcode = c.rcode;
    for (auto [ttl, minimum] : c.soas)
      r.auth(wire_name("example.net"), kSoa, ttl, soa_rdata(minimum));
    Bytes m = r.bytes();
    MxResult got = parse_mx_answer(m);
    EXPECT_EQ(got.status, c.status) << c.name << ": got " << to_string(got.status);
    EXPECT_EQ(got.ttl, c.ttl) << c.name;
    EXPECT_TRUE(got.records.empty()) << c.name;
    EXPECT_EQ(parse_negative_ttl(m), c.ttl) << c.name;
  }
}

TEST(DnsAnswerParser, ServerErrorsMapToStatuses) {
  const std::vector<std::pair<int, Status>> cases = {
      {1, Status::kMalformed}, {2, Status::kServFail}, {4, Status::kOther}, {5, Status::kRefused}};
  for (auto [rcode, status] : cases) {
    Response r;
    r.rcode = rcode;
    EXPECT_EQ(parse_mx_answer(r.bytes()).status, status) << "rcode " << rcode;
  }
}

TEST(DnsAnswerParser, MalformedMessagesAreRejected) {
  auto with = [](auto change) {
    Response r;
    r.answer(kQname, kMx, 60, mx_rdata(10, wire_name("mx.example.net")));
    change(r);
    return r.bytes();
  };
  struct Case {
    const char* name;
    Bytes message;
  };
  Bytes long_name;
  for (int i = 0; i < 5; ++i) long_name = cat(long_name, cat(Bytes{60}, Bytes(60, 'a')));
  const std::vector<Case> cases = {
      {"empty", {}},
      {"short header", Bytes(11, 0)},
      {"a query, not a response", with([](Response& r) { r.flags = 0x0100; })},
      {"no question", with([](Response& r) { r.qdcount = 0; })},
      {"two questions announced", with([](Response& r) { r.qdcount = 2; })},
      {"answer to another question", with([](Response& r) { r.qtype = kA; })},
      {"pointer to itself", with([](Response& r) {
         constexpr std::size_t kAnswerOffset = kQnameOffset + 13 + 4;  // example.net, type, class
         r.answers = {cat(pointer(kAnswerOffset), Bytes(10, 0))};
       })},
      {"pointer forwards", with([](Response& r) {
         r.answers = {Response::rr(pointer(200), kMx, 60, Bytes{0, 1, 0})};
       })},
      {"name longer than 255 octets", with([&](Response& r) {
         r.answers = {Response::rr(cat(long_name, Bytes{0}), kMx, 60, Bytes{0, 1, 0})};
       })},
      {"rdata past the end",
       [] {
         Bytes m = Response{}.answer(kQname, kMx, 60, mx_rdata(1, Bytes{0})).bytes();
         m[m.size() - 4] = 0x40;  // RDLENGTH's low byte: 64 octets, 3 present
         return m;
       }()},
      {"MX rdata too short", with([](Response& r) {
         r.answers = {Response::rr(kQname, kMx, 60, {0, 1})};
       })},
      // Found by fuzz/mx_answer_fuzz: the good record before the bad one
      // must not survive in a malformed answer.
      {"MX rdata too short after a good record", with([](Response& r) {
         r.answers.push_back(Response::rr(kQname, kMx, 60, {0, 1}));
       })},
      {"MX exchange overruns its rdata", with([](Response& r) {
         Bytes rdata = mx_rdata(10, wire_name("mx.example.net"));
         rdata.pop_back();
         r.answers = {Response::rr(kQname, kMx, 60, rdata)};
         r.trailer = {0};  // the name's last byte, outside the rdata
       })},
      {"obsolete label type", with([](Response& r) {
         r.answers = {Response::rr(Bytes{0x40, 0}, kMx, 60, {0, 1, 0})};
       })},
  };
  for (const Case& c : cases) {
    auto r = parse_mx_answer(c.message);
    EXPECT_EQ(r.status, Status::kMalformed) << c.name;
    EXPECT_TRUE(r.records.empty()) << c.name;
  }
}

TEST(DnsAnswerParser, EveryTruncationIsMalformed) {
  Response r;
  r.answer(kQname, kMx, 300, mx_rdata(20, wire_name("mx2.example.net")))
      .answer(kQname, kMx, 120, mx_rdata(10, cat(Bytes{3, 'm', 'x', '1'}, kQname)))
      .auth(wire_name("example.net"), kSoa, 600, soa_rdata(60));
  Bytes m = r.bytes();
  ASSERT_EQ(parse_mx_answer(m).status, Status::kOk);
  for (std::size_t n = 0; n < m.size(); ++n) {
    Bytes cut(m.begin(), m.begin() + static_cast<std::ptrdiff_t>(n));
    EXPECT_EQ(parse_mx_answer(cut).status, Status::kMalformed) << "first " << n << " bytes";
    EXPECT_FALSE(parse_negative_ttl(cut)) << "first " << n << " bytes";
  }
}

// A poor man's fuzzer beside fuzz/mx_answer_fuzz.cpp: random bytes
// changed in a valid answer must never crash or read out of bounds (the
// ASan build checks the latter), and a success must hold sane names.
TEST(DnsAnswerParser, SurvivesRandomCorruption) {
  // Header, alias.example.net (19 octets), type and class, then the CNAME:
  // a pointer owner and 10 octets of type, class, TTL and RDLENGTH.
  constexpr std::size_t kCnameTargetOffset = kQnameOffset + 19 + 4 + 2 + 10;
  Response r;
  r.qname = "alias.example.net";
  r.answer(kQname, kCname, 30, wire_name("target.example.org"))
      .answer(wire_name("target.example.org"), kMx, 300, mx_rdata(10, wire_name("mx.example.org")))
      // Owner: the CNAME's target, by a pointer into the first answer's rdata.
      .answer(pointer(kCnameTargetOffset), kMx, 300, mx_rdata(20, cat(Bytes{2, 'm', 'x'}, kQname)))
      .auth(wire_name("example.net"), kSoa, 600, soa_rdata(60));
  const Bytes valid = r.bytes();
  ASSERT_EQ(parse_mx_answer(valid).records.size(), 2u);
  std::mt19937_64 rng(42);
  std::uniform_int_distribution<std::size_t> pos(0, valid.size() - 1);
  std::uniform_int_distribution<int> byte(0, 255), flips(1, 4);
  for (int i = 0; i < 20000; ++i) {
    Bytes m = valid;
    for (int f = flips(rng); f > 0; --f) m[pos(rng)] = static_cast<unsigned char>(byte(rng));
    MxResult got = parse_mx_answer(m);
    (void)parse_negative_ttl(m);
    for (const MxRecord& rec : got.records) EXPECT_LE(rec.exchange.size(), 4u * 255u);
  }
}

}  // namespace
}  // namespace smtplb::dns
