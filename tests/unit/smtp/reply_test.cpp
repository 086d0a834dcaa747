// reply_test.cpp: Reply values, enhanced codes, and the backend ReplyParser.
//
// Backend replies are untrusted input (SECURITY.md 8): mixed codes, over-long
// lines, too many lines and control bytes are errors that fail the backend
// connection; nothing raw reaches a client.
#include "smtp/reply.hpp"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "smtp/replies.hpp"

namespace smtplb::smtp {
namespace {

using namespace std::string_literals;
using Status = ReplyParser::Status;

struct ParseCase {
  const char* label;
  std::vector<std::string> lines;
  int code;
  std::string enhanced;
  std::vector<std::string> text;
};

const ParseCase kParseCases[] = {
    {"single line with enhanced code", {"250 2.0.0 OK"}, 250, "2.0.0", {"OK"}},
    {"single line without enhanced code",
     {"220 mx.example.com ESMTP"},
     220,
     "",
     {"mx.example.com ESMTP"}},
    {"code only", {"250"}, 250, "", {""}},
    {"code and space", {"250 "}, 250, "", {""}},
    {"enhanced code only", {"550 5.1.1"}, 550, "5.1.1", {""}},
    {"EHLO reply",
     {"250-mx.example.com Hello", "250-PIPELINING", "250-SIZE 10240000", "250 8BITMIME"},
     250,
     "",
     {"mx.example.com Hello", "PIPELINING", "SIZE 10240000", "8BITMIME"}},
    {"multi-line with enhanced codes",
     {"550-5.7.1 Rejected", "550-5.7.1 see https://x.example", "550 5.7.1 bye"},
     550,
     "5.7.1",
     {"Rejected", "see https://x.example", "bye"}},
    {"empty continuation text", {"250-", "250 x"}, 250, "", {"", "x"}},
    {"enhanced code of the wrong class is text", {"250 5.0.0 odd"}, 250, "", {"5.0.0 odd"}},
    {"three-digit subject and detail", {"451 4.123.456 later"}, 451, "4.123.456", {"later"}},
    {"four-digit detail is not a code", {"451 4.1.1234 x"}, 451, "", {"4.1.1234 x"}},
    {"enhanced code glued to text is not one", {"250 2.0.0OK"}, 250, "", {"2.0.0OK"}},
    {"tab allowed", {"250 a\tb"}, 250, "", {"a\tb"}},
    {"well-formed UTF-8 text kept", {"250 caf\xc3\xa9"}, 250, "", {"caf\xc3\xa9"}},
    // Any other 8-bit byte is '?' before it can reach a client.
    {"ill-formed UTF-8 becomes ?", {"550 5.1.1 caf\xe9 \xff\xfe"}, 550, "5.1.1", {"caf? ??"}},
    {"a C1 control becomes ?",
     {"250 a\xc2\x85"
      "b"},
     250,
     "",
     {"a??b"}},
    {"U+2028 becomes ?",
     {"250 a\xe2\x80\xa8"
      "b"},
     250,
     "",
     {"a???b"}},
    {"a line at a time", {"250-ok \xc3\xa9", "250 bad \xc3"}, 250, "", {"ok \xc3\xa9", "bad ?"}},
    {"354 has no enhanced code",
     {"354 End data with <CR><LF>.<CR><LF>"},
     354,
     "",
     {"End data with <CR><LF>.<CR><LF>"}},
    {"421 closing", {"421 4.3.2 shutting down"}, 421, "4.3.2", {"shutting down"}},
    {"510 octets plus CRLF fits",
     {"250 " + std::string(506, 'a')},
     250,
     "",
     {std::string(506, 'a')}},
};

TEST(ReplyParser, ParsesValidReplies) {
  for (const auto& c : kParseCases) {
    ReplyParser p;
    for (std::size_t i = 0; i < c.lines.size(); ++i) {
      Status want = i + 1 == c.lines.size() ? Status::kDone : Status::kNeedMore;
      ASSERT_EQ(p.feed_line(c.lines[i]), want) << c.label << " line " << i;
    }
    EXPECT_EQ(p.error(), ReplyError::kNone) << c.label;
    Reply r = p.take();
    EXPECT_EQ(r.code, c.code) << c.label;
    EXPECT_EQ(r.enhanced, c.enhanced) << c.label;
    EXPECT_EQ(r.lines, c.text) << c.label;
  }
}

struct ErrorCase {
  const char* label;
  std::vector<std::string> lines;  // the last one fails
  ReplyError error;
};

std::vector<std::string> many_lines(std::size_t n, const std::string& last) {
  std::vector<std::string> v(n - 1, "250-x");
  v.push_back(last);
  return v;
}

const ErrorCase kErrorCases[] = {
    {"mixed codes", {"250-a", "251 b"}, ReplyError::kMixedCodes},
    {"mixed codes in the middle", {"250-a", "250-b", "550-c"}, ReplyError::kMixedCodes},
    {"mixed classes", {"250-a", "550 b"}, ReplyError::kMixedCodes},
    {"511 octets plus CRLF too long", {"250 " + std::string(507, 'a')}, ReplyError::kLineTooLong},
    {"huge line", {"250 " + std::string(100000, 'a')}, ReplyError::kLineTooLong},
    {"101 lines", many_lines(101, "250 x"), ReplyError::kTooManyLines},
    {"101st line a continuation", many_lines(101, "250-x"), ReplyError::kTooManyLines},
    {"bare CR", {"250 a\rb"}, ReplyError::kControlBytes},
    {"bare LF", {"250 a\nb"}, ReplyError::kControlBytes},
    {"NUL", {"250 a\0b"s}, ReplyError::kControlBytes},
    {"escape", {"250 a\x1b[31mred"}, ReplyError::kControlBytes},
    {"DEL", {"250 a\x7f"}, ReplyError::kControlBytes},
    {"control byte in a later line", {"250-ok", "250 a\x01"}, ReplyError::kControlBytes},
    {"empty line", {""}, ReplyError::kBadSyntax},
    {"two digits", {"25"}, ReplyError::kBadSyntax},
    {"letters", {"abc def"}, ReplyError::kBadSyntax},
    {"four digits", {"2500 x"}, ReplyError::kBadSyntax},
    {"bad separator", {"250x"}, ReplyError::kBadSyntax},
    {"tab separator", {"250\tx"}, ReplyError::kBadSyntax},
    {"1xx", {"199 x"}, ReplyError::kBadSyntax},
    {"6xx", {"600 x"}, ReplyError::kBadSyntax},
    {"0xx", {"050 x"}, ReplyError::kBadSyntax},
    {"leading space", {" 250 x"}, ReplyError::kBadSyntax},
    {"bad later line", {"250-a", "junk"}, ReplyError::kBadSyntax},
};

TEST(ReplyParser, RejectsMalformedReplies) {
  for (const auto& c : kErrorCases) {
    ReplyParser p;
    for (std::size_t i = 0; i + 1 < c.lines.size(); ++i)
      ASSERT_EQ(p.feed_line(c.lines[i]), Status::kNeedMore) << c.label << " line " << i;
    EXPECT_EQ(p.feed_line(c.lines.back()), Status::kError) << c.label;
    EXPECT_EQ(p.error(), c.error) << c.label << ": got " << to_string(p.error());
  }
}

TEST(ReplyParser, HundredLinesAreAllowed) {
  ReplyParser p;
  std::vector<std::string> lines = many_lines(100, "250 last");
  for (std::size_t i = 0; i + 1 < lines.size(); ++i)
    ASSERT_EQ(p.feed_line(lines[i]), Status::kNeedMore);
  EXPECT_EQ(p.feed_line(lines.back()), Status::kDone);
  EXPECT_EQ(p.take().lines.size(), 100u);
}

TEST(ReplyParser, StaysFailedUntilTaken) {
  ReplyParser p;
  EXPECT_EQ(p.feed_line("250-a"), Status::kNeedMore);
  EXPECT_EQ(p.feed_line("251 b"), Status::kError);
  EXPECT_EQ(p.feed_line("250 fine"), Status::kError);
  EXPECT_EQ(p.error(), ReplyError::kMixedCodes);
  p.take();
  EXPECT_EQ(p.error(), ReplyError::kNone);
  EXPECT_EQ(p.feed_line("250 fine"), Status::kDone);
}

TEST(ReplyParser, TakeResetsForTheNextReply) {
  ReplyParser p;
  ASSERT_EQ(p.feed_line("250-a"), Status::kNeedMore);
  ASSERT_EQ(p.feed_line("250 b"), Status::kDone);
  Reply first = p.take();
  EXPECT_EQ(first.lines.size(), 2u);
  ASSERT_EQ(p.feed_line("354 go"), Status::kDone);
  Reply second = p.take();
  EXPECT_EQ(second.code, 354);
  EXPECT_EQ(second.lines, std::vector<std::string>{"go"});
}

TEST(ReplyParser, WireFormParsesBackToTheSameReply) {
  Reply r;
  r.code = 250;
  r.enhanced = "2.0.0";
  r.lines = {"mx.example.com", "PIPELINING", "8BITMIME"};
  std::string wire = r.wire();
  ReplyParser p;
  Status s = Status::kNeedMore;
  std::size_t start = 0;
  while (start < wire.size()) {
    std::size_t crlf = wire.find("\r\n", start);
    ASSERT_NE(crlf, std::string::npos);
    s = p.feed_line(std::string_view(wire).substr(start, crlf - start));
    start = crlf + 2;
  }
  ASSERT_EQ(s, Status::kDone);
  Reply back = p.take();
  EXPECT_EQ(back.code, r.code);
  EXPECT_EQ(back.enhanced, r.enhanced);
  EXPECT_EQ(back.lines, r.lines);
}

struct EnhancedCase {
  const char* label;
  std::string text;
  std::string code;
  std::string rest;
};

const EnhancedCase kEnhancedCases[] = {
    {"code and text", "2.1.5 Recipient OK", "2.1.5", "Recipient OK"},
    {"code only", "5.7.1", "5.7.1", ""},
    {"code and space", "4.4.2 ", "4.4.2", ""},
    {"three-digit parts", "5.123.456 x", "5.123.456", "x"},
    {"class 3 is not a code", "3.0.0 x", "", "3.0.0 x"},
    {"class 6 is not a code", "6.0.0 x", "", "6.0.0 x"},
    {"four-digit subject", "2.1234.5 x", "", "2.1234.5 x"},
    {"four-digit detail", "2.1.1234 x", "", "2.1.1234 x"},
    {"missing detail", "2.0 x", "", "2.0 x"},
    {"empty subject", "2..0 x", "", "2..0 x"},
    {"glued text", "2.0.0x", "", "2.0.0x"},
    {"not at start", "x 2.0.0", "", "x 2.0.0"},
    {"empty", "", "", ""},
    {"two-digit class", "25.0.0 x", "", "25.0.0 x"},
};

TEST(Reply, SplitsEnhancedStatusCodes) {
  for (const auto& c : kEnhancedCases) {
    auto [code, rest] = split_enhanced(c.text);
    EXPECT_EQ(code, c.code) << c.label;
    EXPECT_EQ(rest, c.rest) << c.label;
  }
}

struct WireCase {
  const char* label;
  Reply reply;
  std::string wire;
  std::string summary;
};

Reply reply_of(int code, std::string enhanced, std::vector<std::string> lines) {
  Reply r;
  r.code = code;
  r.enhanced = std::move(enhanced);
  r.lines = std::move(lines);
  return r;
}

const WireCase kWireCases[] = {
    {"one line", reply_of(250, "2.0.0", {"OK"}), "250 2.0.0 OK\r\n", "250 2.0.0 OK"},
    {"no enhanced code", reply_of(220, "", {"mx ESMTP"}), "220 mx ESMTP\r\n", "220 mx ESMTP"},
    {"multi-line repeats the enhanced code", reply_of(550, "5.7.1", {"a", "b"}),
     "550-5.7.1 a\r\n550 5.7.1 b\r\n", "550 5.7.1 a b"},
    {"no lines", reply_of(250, "", {}), "250 \r\n", "250"},
    {"empty line with enhanced code", reply_of(250, "2.0.0", {""}), "250 2.0.0\r\n", "250 2.0.0 "},
    {"multi-line without enhanced code", reply_of(250, "", {"x", "PIPELINING", "SIZE 10"}),
     "250-x\r\n250-PIPELINING\r\n250 SIZE 10\r\n", "250 x PIPELINING SIZE 10"},
};

TEST(Reply, WireAndSummaryForms) {
  for (const auto& c : kWireCases) {
    EXPECT_EQ(c.reply.wire(), c.wire) << c.label;
    EXPECT_EQ(c.reply.summary(), c.summary) << c.label;
  }
}

TEST(Reply, ClassifiesCodes) {
  struct {
    int code;
    bool positive, transient, permanent, closes;
  } const cases[] = {
      {220, true, false, false, false}, {221, true, false, false, true},
      {250, true, false, false, false}, {354, false, false, false, false},  // 3xx is no completion
      {421, false, true, false, true},  {451, false, true, false, false},
      {550, false, false, true, false}, {554, false, false, true, false},
  };
  for (const auto& c : cases) {
    Reply r = make_reply(c.code, "", "x");
    EXPECT_EQ(r.positive(), c.positive) << c.code;
    EXPECT_EQ(r.transient(), c.transient) << c.code;
    EXPECT_EQ(r.permanent(), c.permanent) << c.code;
    EXPECT_EQ(r.closes_session(), c.closes) << c.code;
  }
}

TEST(Reply, ErrorsHaveNames) {
  for (ReplyError e :
       {ReplyError::kNone, ReplyError::kBadSyntax, ReplyError::kMixedCodes,
        ReplyError::kLineTooLong, ReplyError::kTooManyLines, ReplyError::kControlBytes}) {
    EXPECT_STRNE(to_string(e), "?");
  }
}

// DESIGN.md "Replies the client sees": the codes are the contract.
struct ContractCase {
  const char* label;
  Reply reply;
  int code;
  const char* enhanced;
};

const ContractCase kContractCases[] = {
    {"banner", replies::banner("mx.example.com"), 220, ""},
    {"accepted", replies::ok(), 250, "2.0.0"},
    {"unknown command", replies::unknown_command(), 500, "5.5.2"},
    {"line too long", replies::line_too_long(), 500, "5.5.2"},
    {"bare CR/LF/NUL in a command", replies::bad_line_ending(), 500, "5.5.2"},
    {"bad argument", replies::syntax("x"), 501, "5.5.4"},
    {"unknown parameter", replies::unknown_parameter("FOO"), 555, "5.5.4"},
    {"bad sequence", replies::bad_sequence("x"), 503, "5.5.1"},
    {"authentication required", replies::auth_required(), 530, "5.7.0"},
    {"too big", replies::message_too_big(), 552, "5.3.4"},
    {"relay denied", replies::relay_denied(), 554, "5.7.1"},
    {"bare CR/LF in data", replies::bare_line_ending_in_data(), 554, "5.6.0"},
    {"message line over max_line_length", replies::text_line_too_long(), 554, "5.6.0"},
    {"shutting down", replies::shutting_down("mx.example.com"), 421, "4.3.2"},
    {"too many recipients", replies::too_many_recipients(), 452, "4.5.3"},
    {"other pool", replies::other_pool(), 452, "4.5.3"},
    {"HTTP in place of SMTP", replies::forbidden_protocol(), 421, "4.7.0"},
    {"too many connections", replies::too_many_connections(), 421, "4.7.0"},
    {"timeout", replies::timeout(), 421, "4.4.2"},
    {"no backend", replies::no_backend(), 451, "4.4.1"},
};

TEST(Replies, CodesMatchTheContract) {
  for (const auto& c : kContractCases) {
    EXPECT_EQ(c.reply.code, c.code) << c.label;
    EXPECT_EQ(c.reply.enhanced, c.enhanced) << c.label;
    // Every reply we compose is one we would accept from a backend.
    std::string wire = c.reply.wire();
    ASSERT_TRUE(wire.ends_with("\r\n")) << c.label;
    ReplyParser p;
    EXPECT_EQ(p.feed_line(std::string_view(wire).substr(0, wire.size() - 2)), Status::kDone)
        << c.label;
  }
}

}  // namespace
}  // namespace smtplb::smtp

namespace smtplb::smtp {
namespace {

TEST(ReplyWire, RebuiltBackendLinesNeverExceed512Octets) {
  // A 508-octet backend line that lacked an enhanced code gets one added
  // when it is passed on; the line is cut rather than sent overlong.
  Reply r;
  r.code = 550;
  r.enhanced = "5.0.0";
  r.lines = {std::string(508, 'x'), "short"};
  std::string w = r.wire();
  std::size_t start = 0;
  while (start < w.size()) {
    std::size_t end = w.find("\r\n", start);
    ASSERT_NE(end, std::string::npos);
    EXPECT_LE(end + 2 - start, 512u);
    start = end + 2;
  }
  EXPECT_NE(w.find("550 5.0.0 short\r\n"), std::string::npos);
}

}  // namespace
}  // namespace smtplb::smtp
