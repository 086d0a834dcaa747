// address_test.cpp: RFC 5321 paths and mailboxes, with RFC 6531 (SMTPUTF8).
//
// Local parts are kept exactly as written (SECURITY.md 4), source routes are
// dropped (RFC 5321 appendix C), "<>" is only a reverse path and
// "<postmaster>" only a forward path; non-ASCII must be well-formed UTF-8.
#include "smtp/address.hpp"

#include <gtest/gtest.h>

#include <string>

namespace smtplb::smtp {
namespace {

using namespace std::string_literals;

constexpr PathKind kFrom = PathKind::kReversePath;
constexpr PathKind kTo = PathKind::kForwardPath;

std::string label_of(std::size_t n, char c = 'a') {
  return std::string(n, c);
}

// A domain of `total` octets made of 63-octet labels.
std::string long_domain(std::size_t total) {
  std::string d;
  while (total - d.size() > 63) d += std::string(62, 'd') + ".";
  d += std::string(total - d.size(), 'd');
  return d;
}

struct ValidCase {
  const char* label;
  std::string text;
  PathKind kind;
  bool null;
  std::string local;
  std::string domain;
  std::size_t consumed;  // 0: the whole text
};

const ValidCase kValidCases[] = {
    {"plain", "<a@example.com>", kTo, false, "a", "example.com", 0},
    {"case kept", "<First.Last@Example.COM>", kTo, false, "First.Last", "Example.COM", 0},
    {"atext specials", "<a!#$%&'*+-/=?^_`{|}~@example.com>", kTo, false, "a!#$%&'*+-/=?^_`{|}~",
     "example.com", 0},
    {"quoted local part", "<\"john doe\"@example.com>", kTo, false, "\"john doe\"", "example.com",
     0},
    {"quoted with escaped quote", "<\"a\\\"b\"@example.com>", kTo, false, "\"a\\\"b\"",
     "example.com", 0},
    {"quoted holding @ kept byte-exact", "<\"u@other.test\"@example.com>", kTo, false,
     "\"u@other.test\"", "example.com", 0},
    {"quoted holding >", "<\"a>b\"@example.com>", kTo, false, "\"a>b\"", "example.com", 0},
    {"quoted empty", "<\"\"@example.com>", kTo, false, "\"\"", "example.com", 0},
    {"percent hack kept for policy", "<u%other.test@example.com>", kTo, false, "u%other.test",
     "example.com", 0},
    {"bang path kept for policy", "<other.test!u@example.com>", kTo, false, "other.test!u",
     "example.com", 0},
    {"IPv4 literal", "<u@[192.0.2.1]>", kTo, false, "u", "[192.0.2.1]", 0},
    {"IPv6 literal", "<u@[IPv6:2001:db8::1]>", kTo, false, "u", "[IPv6:2001:db8::1]", 0},
    {"IPv6 tag any case", "<u@[ipv6:::1]>", kTo, false, "u", "[ipv6:::1]", 0},
    {"IPv6 with IPv4 tail", "<u@[IPv6:::ffff:192.0.2.1]>", kTo, false, "u",
     "[IPv6:::ffff:192.0.2.1]", 0},
    {"source route dropped", "<@relay.example:u@example.com>", kTo, false, "u", "example.com", 0},
    {"two-hop source route dropped", "<@a.example,@[192.0.2.1]:u@example.com>", kFrom, false, "u",
     "example.com", 0},
    {"postmaster", "<postmaster>", kTo, false, "postmaster", "", 0},
    {"Postmaster any case, kept", "<PostMaster>", kTo, false, "PostMaster", "", 0},
    {"postmaster behind source route", "<@a.example:postmaster>", kTo, false, "postmaster", "", 0},
    {"postmaster with domain is a mailbox", "<postmaster@example.com>", kFrom, false, "postmaster",
     "example.com", 0},
    {"null reverse path", "<>", kFrom, true, "", "", 0},
    {"parameters after the path", "<a@example.com> SIZE=10", kFrom, false, "a", "example.com", 15},
    {"UTF-8 local part", "<\xe7\x94\xa8\xe6\x88\xb7@example.com>", kTo, false,
     "\xe7\x94\xa8\xe6\x88\xb7", "example.com", 0},
    {"UTF-8 domain",
     "<u@b\xc3\xbc"
     "cher.example>",
     kTo, false, "u",
     "b\xc3\xbc"
     "cher.example",
     0},
    {"UTF-8 both", "<\xe7\x94\xa8@\xe4\xbe\x8b\xe5\xad\x90.\xe5\xb9\xbf\xe5\x91\x8a>", kTo, false,
     "\xe7\x94\xa8", "\xe4\xbe\x8b\xe5\xad\x90.\xe5\xb9\xbf\xe5\x91\x8a", 0},
    {"4-byte UTF-8", "<\xf0\x9f\x98\x80@example.com>", kTo, false, "\xf0\x9f\x98\x80",
     "example.com", 0},
    {"UTF-8 in quoted local part", "<\"\xc3\xa9 x\"@example.com>", kTo, false, "\"\xc3\xa9 x\"",
     "example.com", 0},
    {"64-octet local part", "<" + label_of(64) + "@example.com>", kTo, false, label_of(64),
     "example.com", 0},
    {"63-octet label", "<a@" + label_of(63) + ".example>", kTo, false, "a",
     label_of(63) + ".example", 0},
    {"single-label domain", "<a@localhost>", kTo, false, "a", "localhost", 0},
    {"digit and hyphen labels", "<a@1-2.example>", kTo, false, "a", "1-2.example", 0},
};

TEST(Address, ParsesValidPaths) {
  for (const auto& c : kValidCases) {
    PathResult r = parse_path(c.text, c.kind);
    ASSERT_TRUE(r.path) << c.label << ": " << r.error;
    EXPECT_TRUE(r.error.empty()) << c.label;
    EXPECT_EQ(r.path->null, c.null) << c.label;
    EXPECT_EQ(r.path->mailbox.local_part, c.local) << c.label;
    EXPECT_EQ(r.path->mailbox.domain, c.domain) << c.label;
    EXPECT_EQ(r.consumed, c.consumed ? c.consumed : c.text.size()) << c.label;
  }
}

struct InvalidCase {
  const char* label;
  std::string text;
  PathKind kind;
};

const InvalidCase kInvalidCases[] = {
    {"empty", "", kTo},
    {"no angle brackets", "a@example.com", kTo},
    {"missing '>'", "<a@example.com", kTo},
    {"null forward path", "<>", kTo},
    {"postmaster as reverse path", "<postmaster>", kFrom},
    {"no domain", "<a>", kTo},
    {"empty domain", "<a@>", kTo},
    {"empty local part", "<@example.com>", kTo},
    {"source route without colon", "<@a.example>", kTo},
    {"empty source route hop", "<@:u@example.com>", kTo},
    {"source route bad hop", "<@a.example,b.example:u@example.com>", kTo},
    {"source route bad domain", "<@-a.example:u@example.com>", kTo},
    {"leading dot", "<.a@example.com>", kTo},
    {"trailing dot", "<a.@example.com>", kTo},
    {"double dot", "<a..b@example.com>", kTo},
    {"space in local part", "<a b@example.com>", kTo},
    {"two @", "<a@b@example.com>", kTo},
    {"comma in local part", "<a,b@example.com>", kTo},
    {"double dot in domain", "<a@example..com>", kTo},
    {"leading hyphen label", "<a@-example.com>", kTo},
    {"trailing hyphen label", "<a@example-.com>", kTo},
    {"two trailing dots", "<a@example.com..>", kTo},
    {"leading dot domain", "<a@.example.com>", kTo},
    {"underscore in domain", "<a@ex_ample.com>", kTo},
    {"space in domain", "<a@exa mple.com>", kTo},
    {"short IPv4 literal", "<a@[192.0.2]>", kTo},
    {"IPv4 literal octet over 255", "<a@[256.0.2.1]>", kTo},
    {"IPv4 literal leading zero", "<a@[192.0.2.01]>", kTo},
    {"IPv4 literal hex", "<a@[0xc0.0.2.1]>", kTo},
    {"IPv4 in IPv6 tag", "<a@[IPv6:192.0.2.1]>", kTo},
    {"bad IPv6", "<a@[IPv6:2001:db8::g]>", kTo},
    {"IPv6 without tag", "<a@[2001:db8::1]>", kTo},
    {"general address literal", "<a@[x-tag:foo]>", kTo},
    {"empty literal", "<a@[]>", kTo},
    {"unclosed literal", "<a@[192.0.2.1>", kTo},
    {"NUL inside IPv4 literal", "<a@[192.0.2.1\0junk]>"s, kTo},
    {"NUL inside IPv6 literal", "<a@[IPv6:::1\0junk]>"s, kTo},
    {"NUL in local part", "<a\0b@example.com>"s, kTo},
    {"NUL in domain", "<a@exa\0mple.com>"s, kTo},
    {"unterminated quote", "<\"abc@example.com>", kTo},
    {"text after quoted part", "<\"a\"b@example.com>", kTo},
    {"quoted without domain", "<\"a\">", kTo},
    {"control byte in quoted part", "<\"a\x01\"@example.com>", kTo},
    {"escaped control byte in quoted part", "<\"a\\\x01\"@example.com>", kTo},
    {"65-octet local part", "<" + label_of(65) + "@example.com>", kTo},
    {"64-octet label", "<a@" + label_of(64) + ".example>", kTo},
    {"256-octet domain", "<a@" + long_domain(256) + ">", kTo},
    {"path over 256 octets", "<" + label_of(64) + "@" + long_domain(190) + ">", kTo},
    {"bad UTF-8 lead byte", "<\xff@example.com>", kTo},
    {"bad UTF-8 continuation", "<a@\xc3(.example>", kTo},
    {"overlong UTF-8", "<\xc0\xaf@example.com>", kTo},
    {"overlong 3-byte UTF-8", "<\xe0\x80\xaf@example.com>", kTo},
    {"UTF-8 surrogate", "<\xed\xa0\x80@example.com>", kTo},
    {"UTF-8 over U+10FFFF", "<\xf4\x90\x80\x80@example.com>", kTo},
    {"truncated UTF-8", "<\xe4\xb8@example.com>", kTo},
    {"lone continuation byte", "<\x80@example.com>", kTo},
    {"bad UTF-8 in quoted part", "<\"\xff\"@example.com>", kTo},
    {"bad UTF-8 in domain", "<a@ex\xfe.com>", kTo},
};

TEST(Address, RejectsInvalidPaths) {
  for (const auto& c : kInvalidCases) {
    PathResult r = parse_path(c.text, c.kind);
    EXPECT_FALSE(r.path) << c.label << ": accepted as " << r.path->str();
    EXPECT_FALSE(r.error.empty()) << c.label;
  }
}

TEST(Address, LongestPathFits) {
  // 64 + 1 + 189 + 2 brackets = 256 octets (RFC 5321 4.5.3.1.3).
  std::string text = "<" + label_of(64) + "@" + long_domain(189) + ">";
  ASSERT_EQ(text.size(), 256u);
  EXPECT_TRUE(parse_path(text, kTo).path);
}

TEST(Address, NullPathOnlyForMail) {
  EXPECT_TRUE(parse_path("<>", kFrom).path->null);
  EXPECT_FALSE(parse_path("<>", kTo).path);
}

struct DomainCase {
  const char* label;
  std::string text;
  bool domain;   // is_valid_domain
  bool literal;  // is_valid_address_literal
};

const DomainCase kDomainCases[] = {
    {"domain", "example.com", true, false},
    {"one label", "localhost", true, false},
    {"UTF-8",
     "b\xc3\xbc"
     "cher.example",
     true, false},
    {"empty", "", false, false},
    {"trailing dot", "example.com.", false, false},
    {"IPv4 literal", "[192.0.2.1]", false, true},
    {"IPv6 literal", "[IPv6:::1]", false, true},
    {"IPv6 full", "[IPv6:2001:db8:0:0:0:0:0:1]", false, true},
    {"bare IPv4 is a domain by syntax", "192.0.2.1", true, false},
    {"brackets only", "[]", false, false},
    {"IPv6 tag only", "[IPv6:]", false, false},
    {"missing close", "[192.0.2.1", false, false},
};

TEST(Address, ValidatesDomainsAndLiterals) {
  for (const auto& c : kDomainCases) {
    EXPECT_EQ(is_valid_domain(c.text), c.domain) << c.label;
    EXPECT_EQ(is_valid_address_literal(c.text), c.literal) << c.label;
  }
}

TEST(Address, MailboxHelpers) {
  Mailbox m = parse_path("<U@[192.0.2.1]>", kTo).path->mailbox;
  EXPECT_TRUE(m.is_address_literal());
  EXPECT_FALSE(m.has_non_ascii());
  EXPECT_EQ(m.str(), "U@[192.0.2.1]");

  Mailbox u = parse_path("<\xc3\xa9@example.com>", kTo).path->mailbox;
  EXPECT_FALSE(u.is_address_literal());
  EXPECT_TRUE(u.has_non_ascii());

  Mailbox pm = parse_path("<Postmaster>", kTo).path->mailbox;
  EXPECT_EQ(pm.str(), "Postmaster");
  EXPECT_FALSE(pm.is_address_literal());

  Path null = *parse_path("<>", kFrom).path;
  EXPECT_EQ(null.str(), "");
}

TEST(Address, AsciiLowerLeavesNonAsciiAlone) {
  EXPECT_EQ(ascii_lower("ExAmPle.COM"), "example.com");
  EXPECT_EQ(ascii_lower("B\xc3\x9c"
                        "CHER"),
            "b\xc3\x9c"
            "cher");
  EXPECT_EQ(ascii_lower(""), "");
}

}  // namespace
}  // namespace smtplb::smtp

namespace smtplb::smtp {
namespace {

TEST(ParsePath, TrailingDotDomainIsKeptAsWritten) {
  // SECURITY.md 4: "u@example.com." must reach the relay policy (which
  // does not take it for example.com) rather than die as a syntax error.
  auto r = parse_path("<u@example.com.>", PathKind::kForwardPath);
  ASSERT_TRUE(r.path) << r.error;
  EXPECT_EQ(r.path->mailbox.domain, "example.com.");
}

}  // namespace
}  // namespace smtplb::smtp
