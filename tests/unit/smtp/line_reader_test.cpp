// line_reader_test.cpp: splitting buffered input into bounded command lines.
//
// SECURITY.md 7: a line over the bound gets exactly one kTooLong and the rest
// of it is skipped to its CR LF, so the next command gets its own reply.
// Only CR LF ends a line: bare CR and LF stay inside it for the parser to
// refuse (SECURITY.md 2).
#include "smtp/line_reader.hpp"

#include <gtest/gtest.h>

#include <string>
#include <string_view>
#include <vector>

#include "smtp/command.hpp"

namespace smtplb::smtp {
namespace {

using Kind = LineReader::Kind;

// What next() handed out, copied (the views die at the next call).
struct Got {
  Kind kind;
  std::string line;
  bool operator==(const Got&) const = default;
};

std::ostream& operator<<(std::ostream& os, const Got& g) {
  const char* k = g.kind == Kind::kLine ? "line" : g.kind == Kind::kTooLong ? "too-long" : "more";
  return os << "{" << k << " \"" << g.line << "\"}";
}

// Drains every item available now.
void drain(LineReader& r, std::vector<Got>& out) {
  for (;;) {
    LineReader::Item it = r.next();
    if (it.kind == Kind::kNeedMore) return;
    out.push_back({it.kind, std::string(it.line)});
  }
}

std::vector<Got> read_in_pieces(std::size_t max_line, std::string_view in, std::size_t piece) {
  LineReader r(max_line);
  std::vector<Got> out;
  for (std::size_t i = 0; i < in.size(); i += piece) {
    r.append(in.substr(i, piece));
    drain(r, out);
  }
  return out;
}

Got line(std::string s) {
  return {Kind::kLine, std::move(s)};
}
Got too_long() {
  return {Kind::kTooLong, ""};
}

constexpr std::size_t kMax = kMaxCommandLine;  // 512 octets with CRLF

struct ReadCase {
  const char* label;
  std::string in;
  std::vector<Got> want;
};

const ReadCase kReadCases[] = {
    {"one line", "NOOP\r\n", {line("NOOP")}},
    {"pipelined lines",
     "MAIL FROM:<a@b.c>\r\nRCPT TO:<d@e.f>\r\nDATA\r\n",
     {line("MAIL FROM:<a@b.c>"), line("RCPT TO:<d@e.f>"), line("DATA")}},
    {"empty line", "\r\n", {line("")}},
    {"bare LF does not end a line", "NOOP\n", {}},
    {"bare LF stays in the line", "NO\nOP\r\n", {line("NO\nOP")}},
    {"bare CR stays in the line",
     "RCPT TO:<a@b.c>\rRCPT TO:<x@y.z>\r\n",
     {line("RCPT TO:<a@b.c>\rRCPT TO:<x@y.z>")}},
    {"NUL stays in the line", std::string("NO\0OP\r\n", 7), {line(std::string("NO\0OP", 5))}},
    {"EHLO injection is one line",
     "EHLO a.example\nX-Injected: 1\r\n",
     {line("EHLO a.example\nX-Injected: 1")}},
    {"CR LF split across reads", "NOOP\r", {}},
    {"incomplete line waits", "NOOP", {}},
    {"510 octets plus CRLF fits", std::string(510, 'a') + "\r\n", {line(std::string(510, 'a'))}},
    {"511 octets and a CR wait for the LF", std::string(511, 'a') + "\r", {}},
    {"511 octets plus CRLF too long",
     std::string(511, 'a') + "\r\nNOOP\r\n",
     {too_long(), line("NOOP")}},
    {"1007-octet line is one error",
     "NOOP " + std::string(1000, 'x') + "\r\nNOOP\r\n",
     {too_long(), line("NOOP")}},
    {"huge line is one error",
     std::string(100000, 'x') + "\r\nQUIT\r\n",
     {too_long(), line("QUIT")}},
    {"two long lines, two errors",
     std::string(600, 'a') + "\r\n" + std::string(600, 'b') + "\r\nNOOP\r\n",
     {too_long(), too_long(), line("NOOP")}},
    {"bare LF does not end a long line",
     std::string(600, 'a') + "\nNOOP\r\nQUIT\r\n",
     {too_long(), line("QUIT")}},
    {"long line's CR LF split across reads",
     std::string(600, 'a') + "\r\nNOOP\r\n",
     {too_long(), line("NOOP")}},
};

// The session answers an over-long AUTH line with AUTH's own 500 5.5.6
// (RFC 4954 4), so a refused line keeps its first octets (issue 14), the
// same however the line was split across reads.
TEST(LineReader, ATooLongLineKeepsItsHead) {
  const std::string auth = "AUTH PLAIN " + std::string(600, 'A');
  const std::string head = auth.substr(0, LineReader::kTooLongHead);
  for (const std::string& in : {auth + "\r\nNOOP\r\n", auth}) {
    for (std::size_t piece : {1u, 7u, 100u, 513u, 5000u}) {
      LineReader r(kMax);
      std::vector<std::string> heads;
      for (std::size_t i = 0; i < in.size(); i += piece) {
        r.append(std::string_view(in).substr(i, piece));
        for (auto it = r.next(); it.kind != Kind::kNeedMore; it = r.next())
          if (it.kind == Kind::kTooLong) heads.emplace_back(it.head);
      }
      EXPECT_EQ(heads, std::vector<std::string>{head}) << in.size() << " piece " << piece;
    }
  }
  LineReader r(kMax);
  r.append("AU" + std::string(600, 'x') + "\r\n");
  auto it = r.next();
  EXPECT_EQ(it.kind, Kind::kTooLong);
  EXPECT_EQ(it.head, "AU" + std::string(LineReader::kTooLongHead - 2, 'x'));
}

TEST(LineReader, SplitsLinesInOneFeed) {
  for (const auto& c : kReadCases) {
    LineReader r(kMax);
    r.append(c.in);
    std::vector<Got> got;
    drain(r, got);
    EXPECT_EQ(got, c.want) << c.label;
  }
}

TEST(LineReader, SplitFeedingGivesTheSameLines) {
  for (const auto& c : kReadCases) {
    for (std::size_t piece : {1u, 2u, 3u, 7u, 100u, 511u, 512u, 513u}) {
      EXPECT_EQ(read_in_pieces(kMax, c.in, piece), c.want) << c.label << " piece " << piece;
    }
  }
}

TEST(LineReader, OverLongLineWithoutLfIsReportedOnceThenResyncs) {
  LineReader r(kMax);
  r.append(std::string(600, 'x'));
  EXPECT_EQ(r.next().kind, Kind::kTooLong);
  EXPECT_EQ(r.next().kind, Kind::kNeedMore);
  r.append(std::string(600, 'x'));  // more of the same line: skipped silently
  EXPECT_EQ(r.next().kind, Kind::kNeedMore);
  r.append(std::string(600, 'x'));
  EXPECT_EQ(r.next().kind, Kind::kNeedMore);
  r.append("xx\r\nNOOP\r\n");
  LineReader::Item it = r.next();
  ASSERT_EQ(it.kind, Kind::kLine);
  EXPECT_EQ(it.line, "NOOP");
  EXPECT_EQ(r.next().kind, Kind::kNeedMore);
}

TEST(LineReader, BufferStaysBoundedWhileDiscarding) {
  LineReader r(kMax);
  for (int i = 0; i < 1000; ++i) {
    r.append(std::string(1000, 'x'));
    r.next();
    EXPECT_LE(r.pending().size(), kMax + 1000);
  }
}

TEST(LineReader, LastBufferedLineStaysIntact) {
  // The returned view points into the buffer; taking the last buffered line
  // must not disturb its bytes.
  LineReader r(kMax);
  r.append("HELO x\r\n");
  LineReader::Item it = r.next();
  ASSERT_EQ(it.kind, Kind::kLine);
  EXPECT_EQ(it.line, "HELO x");
  EXPECT_FALSE(r.has_pending());
}

TEST(LineReader, PendingHoldsBytesAfterTheLastLine) {
  // The start of DATA content, or pipelined commands, after "DATA\r\n".
  LineReader r(kMax);
  r.append("DATA\r\nSubject: x\r\n");
  LineReader::Item it = r.next();
  ASSERT_EQ(it.kind, Kind::kLine);
  EXPECT_EQ(it.line, "DATA");
  ASSERT_TRUE(r.has_pending());
  EXPECT_EQ(r.pending(), "Subject: x\r\n");
  r.consume(9);
  EXPECT_EQ(r.pending(), "x\r\n");
  r.consume(3);
  EXPECT_FALSE(r.has_pending());
  EXPECT_EQ(r.pending(), "");
  r.append("NOOP\r\n");
  it = r.next();
  ASSERT_EQ(it.kind, Kind::kLine);
  EXPECT_EQ(it.line, "NOOP");
}

TEST(LineReader, ClearDropsBytesAfterStartTls) {
  // SECURITY.md 3 (CVE-2011-0411): what came in the same read as STARTTLS
  // is dropped.
  LineReader r(kMax);
  r.append("STARTTLS\r\nMAIL FROM:<e@x.test>\r\n");
  LineReader::Item it = r.next();
  ASSERT_EQ(it.kind, Kind::kLine);
  EXPECT_EQ(it.line, "STARTTLS");
  r.clear();
  EXPECT_FALSE(r.has_pending());
  EXPECT_EQ(r.next().kind, Kind::kNeedMore);
  r.append("EHLO c.example\r\n");
  it = r.next();
  ASSERT_EQ(it.kind, Kind::kLine);
  EXPECT_EQ(it.line, "EHLO c.example");
}

TEST(LineReader, BareCrInLineIsRefusedByTheParser) {
  // SECURITY.md 2: the reader keeps the bare CR in the line; the parser
  // refuses the whole line with 500 5.5.2, so b@other.test goes nowhere.
  LineReader r(kMax);
  r.append("RCPT TO:<a@example.com>\rRCPT TO:<b@other.test>\r\n");
  LineReader::Item it = r.next();
  ASSERT_EQ(it.kind, Kind::kLine);
  ParseResult pr = parse_command(it.line);
  ASSERT_TRUE(pr.error);
  EXPECT_EQ(pr.error->code, 500);
  EXPECT_EQ(pr.error->enhanced, "5.5.2");
  EXPECT_EQ(r.next().kind, Kind::kNeedMore);
}

TEST(LineReader, LargerBoundForParameterCommands) {
  LineReader r(kMaxParameterCommandLine);
  std::string mail = "MAIL FROM:<a@b.c> " + std::string(1500, 'X');
  r.append(mail + "\r\n");
  LineReader::Item it = r.next();
  ASSERT_EQ(it.kind, Kind::kLine);
  EXPECT_EQ(it.line, mail);
}

}  // namespace
}  // namespace smtplb::smtp
