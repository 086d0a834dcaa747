// xclient_test.cpp: reading a backend's XCLIENT offer and building the
// XCLIENT lines that tell it who the client is (Postfix XCLIENT_README).
//
// SECURITY.md 5: values are xtext-encoded; only advertised attributes are
// sent; every advertised one is sent each time, [UNAVAILABLE] when unknown,
// so a pooled connection never keeps the previous client's identity; no
// line is over 512 octets with its CR LF.
#include "smtp/xclient.hpp"

#include <gtest/gtest.h>

#include <optional>
#include <string>
#include <vector>

#include "smtp/xtext.hpp"

namespace smtplb::smtp {
namespace {

XclientSupport all_attributes() {
  return XclientSupport{true, true, true, true, true, true};
}

struct KeywordCase {
  const char* label;
  std::string line;
  std::optional<XclientSupport> support;
};

const KeywordCase kKeywordCases[] = {
    {"Postfix's full list", "XCLIENT NAME ADDR PORT PROTO HELO REVERSE_NAME IDENT LOGIN DESTADDR",
     all_attributes()},
    {"README example", "XCLIENT NAME ADDR PROTO HELO",
     XclientSupport{true, true, false, true, true, false}},
    {"lower case", "xclient addr login", XclientSupport{false, true, false, false, false, true}},
    {"extra spaces", "XCLIENT  ADDR   PORT ",
     XclientSupport{false, true, true, false, false, false}},
    {"no attributes", "XCLIENT", XclientSupport{}},
    {"only unknown attributes", "XCLIENT DESTADDR DESTPORT", XclientSupport{}},
    {"another keyword", "XFORWARD NAME ADDR PROTO HELO", std::nullopt},
    {"keyword as a prefix", "XCLIENTS NAME", std::nullopt},
    {"PIPELINING", "PIPELINING", std::nullopt},
    {"empty", "", std::nullopt},
};

TEST(Xclient, ParsesTheEhloKeyword) {
  for (const auto& c : kKeywordCases)
    EXPECT_EQ(parse_xclient_keyword(c.line), c.support) << c.label;
}

TEST(Xclient, FindsTheKeywordInAnEhloReply) {
  Reply ehlo;
  ehlo.code = 250;
  ehlo.lines = {"backend.example", "PIPELINING", "SIZE 10240000", "XCLIENT ADDR NAME HELO",
                "8BITMIME"};
  EXPECT_EQ(find_xclient(ehlo), (XclientSupport{true, true, false, false, true, false}));
  ehlo.lines = {"backend.example", "PIPELINING", "8BITMIME"};
  EXPECT_EQ(find_xclient(ehlo), std::nullopt);
  // The greeting line is the server's name, never a keyword.
  ehlo.lines = {"XCLIENT ADDR", "PIPELINING"};
  EXPECT_EQ(find_xclient(ehlo), std::nullopt);
}

XclientAttributes typical() {
  XclientAttributes a;
  a.addr = "192.0.2.1";
  a.port = 56324;
  a.name = "mail.client.example";
  a.helo = "mail.client.example";
  a.proto = "ESMTP";
  a.login = "alice";
  return a;
}

struct CommandCase {
  const char* label;
  XclientAttributes client;
  XclientSupport advertised;
  std::vector<std::string> lines;
};

XclientAttributes with(void (*edit)(XclientAttributes&)) {
  XclientAttributes a = typical();
  edit(a);
  return a;
}

const CommandCase kCommandCases[] = {
    {"everything on one line",
     typical(),
     all_attributes(),
     {"XCLIENT ADDR=192.0.2.1 PORT=56324 NAME=mail.client.example HELO=mail.client.example "
      "PROTO=ESMTP LOGIN=alice\r\n"}},
    {"only what is advertised",
     typical(),
     XclientSupport{true, true, false, false, true, false},
     {"XCLIENT ADDR=192.0.2.1 NAME=mail.client.example HELO=mail.client.example\r\n"}},
    {"nothing advertised, nothing sent", typical(), XclientSupport{}, {}},
    {"IPv6 address gets its prefix",
     with([](XclientAttributes& a) { a.addr = "2001:db8::1"; }),
     XclientSupport{false, true, false, false, false, false},
     {"XCLIENT ADDR=IPV6:2001:db8::1\r\n"}},
    {"IPv4-mapped address goes as IPv4",
     with([](XclientAttributes& a) { a.addr = "::ffff:192.0.2.1"; }),
     XclientSupport{false, true, false, false, false, false},
     {"XCLIENT ADDR=192.0.2.1\r\n"}},
    {"unknown values are [UNAVAILABLE]",
     XclientAttributes{},
     all_attributes(),
     {"XCLIENT ADDR=[UNAVAILABLE] PORT=[UNAVAILABLE] NAME=[UNAVAILABLE] HELO=[UNAVAILABLE] "
      "PROTO=[UNAVAILABLE] LOGIN=[UNAVAILABLE]\r\n"}},
    {"no login resets the previous client's",
     with([](XclientAttributes& a) { a.login.clear(); }),
     XclientSupport{false, false, false, false, false, true},
     {"XCLIENT LOGIN=[UNAVAILABLE]\r\n"}},
    {"PROTO other than SMTP or ESMTP is unknown",
     with([](XclientAttributes& a) { a.proto = "ESMTPSA"; }),
     XclientSupport{false, false, false, true, false, false},
     {"XCLIENT PROTO=[UNAVAILABLE]\r\n"}},
    {"port 0 is a port",
     with([](XclientAttributes& a) { a.port = 0; }),
     XclientSupport{false, false, true, false, false, false},
     {"XCLIENT PORT=0\r\n"}},
    {"HELO injection stays one value",
     with([](XclientAttributes& a) { a.helo = "x LOGIN=root\r\nMAIL FROM:<a@b>"; }),
     XclientSupport{false, false, false, false, true, false},
     {"XCLIENT HELO=x+20LOGIN+3Droot+0D+0AMAIL+20FROM:<a@b>\r\n"}},
    {"login with plus and UTF-8",
     with([](XclientAttributes& a) { a.login = "j\xc3\xbcrgen+x"; }),
     XclientSupport{false, false, false, false, false, true},
     {"XCLIENT LOGIN=j+C3+BCrgen+2Bx\r\n"}},
};

TEST(Xclient, BuildsCommands) {
  for (const auto& c : kCommandCases)
    EXPECT_EQ(xclient_commands(c.client, c.advertised), c.lines) << c.label;
}

// Every line within 512 octets, "XCLIENT " then NAME=xtext words, CR LF.
void expect_well_formed(const std::vector<std::string>& lines, const char* label) {
  for (const auto& line : lines) {
    EXPECT_LE(line.size(), kMaxXclientLine) << label;
    ASSERT_TRUE(line.starts_with("XCLIENT ")) << label;
    ASSERT_TRUE(line.ends_with("\r\n")) << label;
    std::string_view rest(line);
    rest.remove_prefix(8);
    rest.remove_suffix(2);
    EXPECT_EQ(rest.find("  "), std::string_view::npos) << label;
    while (!rest.empty()) {
      std::size_t sp = rest.find(' ');
      std::string_view word = rest.substr(0, sp);
      std::size_t eq = word.find('=');
      ASSERT_NE(eq, std::string_view::npos) << label;
      EXPECT_TRUE(xtext::decode(word.substr(eq + 1))) << label << ": " << word;
      rest.remove_prefix(sp == std::string_view::npos ? rest.size() : sp + 1);
    }
  }
}

TEST(Xclient, LongValuesSplitIntoSeveralLines) {
  XclientAttributes a = typical();
  // Two 255-octet names (the most a host name may be) cannot share a line.
  a.name = std::string(255, 'n');
  a.helo = std::string(255, 'h');
  std::vector<std::string> lines = xclient_commands(a, all_attributes());
  expect_well_formed(lines, "two long names");
  ASSERT_EQ(lines.size(), 2u);
  EXPECT_EQ(lines[0], "XCLIENT ADDR=192.0.2.1 PORT=56324 NAME=" + a.name + "\r\n");
  EXPECT_EQ(lines[1], "XCLIENT HELO=" + a.helo + " PROTO=ESMTP LOGIN=alice\r\n");
}

TEST(Xclient, AValueTooLongForAnyLineGoesAsUnavailable) {
  XclientAttributes a = typical();
  // 255 UTF-8 octets triple in xtext: 765 octets, over any line.
  a.helo = std::string(255, '\xc3');
  std::vector<std::string> lines = xclient_commands(a, all_attributes());
  expect_well_formed(lines, "UTF-8 HELO");
  ASSERT_EQ(lines.size(), 1u);
  EXPECT_NE(lines[0].find(" HELO=[UNAVAILABLE] "), std::string::npos) << lines[0];
}

TEST(Xclient, ALongestValueThatFitsAloneIsSentWhole) {
  XclientAttributes a;
  // "XCLIENT " + "NAME=" + value + CR LF = 512.
  a.name = std::string(512 - 8 - 5 - 2, 'n');
  std::vector<std::string> lines = xclient_commands(a, all_attributes());
  expect_well_formed(lines, "longest NAME");
  ASSERT_EQ(lines.size(), 3u);
  EXPECT_EQ(lines[1], "XCLIENT NAME=" + a.name + "\r\n");
  EXPECT_EQ(lines[1].size(), kMaxXclientLine);
  a.name += 'n';
  lines = xclient_commands(a, all_attributes());
  expect_well_formed(lines, "one over");
  ASSERT_EQ(lines.size(), 1u);
  EXPECT_NE(lines[0].find(" NAME=[UNAVAILABLE] "), std::string::npos) << lines[0];
}

}  // namespace
}  // namespace smtplb::smtp
