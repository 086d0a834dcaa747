// data_decoder_test.cpp: DATA dot-unstuffing and end-of-data detection.
//
// The cases follow SECURITY.md section 1: only CR LF . CR LF ends the data;
// every other terminator-like sequence (the SMTP smuggling variants) is
// content, flagged as a bare line ending and normalised to CR LF.  Feeding
// the input one byte at a time must decode exactly like one feed.
#include "smtp/data_decoder.hpp"

#include <gtest/gtest.h>

#include <string>
#include <string_view>
#include <vector>

#include "smtp/data_encoder.hpp"

namespace smtplb::smtp {
namespace {

using namespace std::string_literals;

struct Decoded {
  std::string content;
  bool done = false;
  std::size_t consumed = 0;  // bytes of input up to and including the final dot line
  bool bare = false;
  bool long_line = false;
  std::uint64_t content_size = 0;
};

// `max_line`: DataDecoder's limit (0: none, the default).
Decoded decode_whole(std::string_view in, std::uint64_t max_line = 0) {
  DataDecoder d(DataDecoder::Output::kContent, max_line);
  Decoded out;
  DataDecoder::Result r = d.feed(in, out.content);
  out.done = r.done;
  out.consumed = r.consumed;
  out.bare = d.saw_bare_line_ending();
  out.long_line = d.saw_long_line();
  out.content_size = d.content_size();
  return out;
}

// Feeds `in` in pieces of `piece` bytes, stopping at the end of data as a
// session would (what follows is the next command).
Decoded decode_in_pieces(std::string_view in, std::size_t piece, std::uint64_t max_line = 0) {
  DataDecoder d(DataDecoder::Output::kContent, max_line);
  Decoded out;
  std::size_t pos = 0;
  while (pos < in.size()) {
    std::string_view chunk = in.substr(pos, piece);
    DataDecoder::Result r = d.feed(chunk, out.content);
    pos += r.consumed;
    if (r.done) {
      out.done = true;
      break;
    }
    EXPECT_EQ(r.consumed, chunk.size()) << "a feed that did not end the data must use it all";
  }
  out.consumed = pos;
  out.bare = d.saw_bare_line_ending();
  out.long_line = d.saw_long_line();
  out.content_size = d.content_size();
  return out;
}

void expect_same(const Decoded& got, const Decoded& want, std::string_view label) {
  EXPECT_EQ(got.content, want.content) << label;
  EXPECT_EQ(got.done, want.done) << label;
  EXPECT_EQ(got.consumed, want.consumed) << label;
  EXPECT_EQ(got.bare, want.bare) << label;
  EXPECT_EQ(got.long_line, want.long_line) << label;
  EXPECT_EQ(got.content_size, want.content_size) << label;
}

constexpr std::size_t kAll = std::string_view::npos;

struct DecodeCase {
  const char* label;
  std::string in;
  std::string content;
  bool done;
  std::size_t consumed;  // kAll: the whole input
  bool bare;
};

const DecodeCase kValidCases[] = {
    {"empty message", ".\r\n", "", true, 3, false},
    {"one line", "hello\r\n.\r\n", "hello\r\n", true, kAll, false},
    {"two lines", "a\r\nb\r\n.\r\n", "a\r\nb\r\n", true, kAll, false},
    {"empty lines kept", "\r\n\r\n.\r\n", "\r\n\r\n", true, kAll, false},
    {"stuffed dot removed", "..hidden\r\n.\r\n", ".hidden\r\n", true, kAll, false},
    {"stuffed lone dot", "..\r\n.\r\n", ".\r\n", true, kAll, false},
    {"stuffed double dot", "...\r\n.\r\n", "..\r\n", true, kAll, false},
    {"leading dot always removed", ".x\r\n.\r\n", "x\r\n", true, kAll, false},
    {"dot then space is not the end", ". \r\n.\r\n", " \r\n", true, kAll, false},
    {"dot inside a line is content", "a.b\r\n.\r\n", "a.b\r\n", true, kAll, false},
    {"dot at line end is content", "a.\r\n.\r\n", "a.\r\n", true, kAll, false},
    {"NUL passes untouched", "a\0b\r\n.\r\n"s, "a\0b\r\n"s, true, kAll, false},
    {"8-bit passes untouched", "caf\xc3\xa9 \xff\r\n.\r\n", "caf\xc3\xa9 \xff\r\n", true, kAll,
     false},
    {"pipelined command after end not consumed", "a\r\n.\r\nQUIT\r\n", "a\r\n", true, 6, false},
    {"second message after end not consumed", ".\r\n.\r\n", "", true, 3, false},
    {"no end yet", "a\r\nb", "a\r\nb", false, kAll, false},
    {"ends in CR, not yet known", "a\r", "a", false, kAll, false},
    {"ends at dot line start", "a\r\n.", "a\r\n", false, kAll, false},
    {"ends at dot CR", "a\r\n.\r", "a\r\n", false, kAll, false},
};

TEST(DataDecoder, ValidStreamsDecode) {
  for (const auto& c : kValidCases) {
    Decoded got = decode_whole(c.in);
    EXPECT_EQ(got.content, c.content) << c.label;
    EXPECT_EQ(got.done, c.done) << c.label;
    EXPECT_EQ(got.consumed, c.consumed == kAll ? c.in.size() : c.consumed) << c.label;
    EXPECT_EQ(got.bare, c.bare) << c.label;
    EXPECT_FALSE(got.long_line) << c.label;
    EXPECT_EQ(got.content_size, got.content.size()) << c.label;
  }
}

// SECURITY.md 1: the smuggling body, with every terminator variant that some
// MTA once accepted.  None may end the data: the smuggled commands are
// content of the one message, and the stream ends only at the real final dot.
const std::string kSmuggled =
    "MAIL FROM:<s@evil.test>\r\nRCPT TO:<v@example.com>\r\nDATA\r\nevil\r\n";

struct SmuggleCase {
  const char* label;
  std::string terminator;  // between "x" and the smuggled commands
  std::string content;     // what the message holds (bare endings normalised)
  bool bare;
};

const SmuggleCase kSmuggleCases[] = {
    {"LF dot LF", "\n.\n", "x\r\n.\r\n" + kSmuggled, true},
    {"LF dot CRLF", "\n.\r\n", "x\r\n.\r\n" + kSmuggled, true},
    {"CR dot CR", "\r.\r", "x\r\n.\r\n" + kSmuggled, true},
    {"CR dot LF", "\r.\n", "x\r\n.\r\n" + kSmuggled, true},
    {"CRLF dot LF", "\r\n.\n", "x\r\n.\r\n" + kSmuggled, true},
    {"CR dot CRLF", "\r.\r\n", "x\r\n.\r\n" + kSmuggled, true},
    {"LF dot CR", "\n.\r", "x\r\n.\r\n" + kSmuggled, true},
    {"CRLF dot CR", "\r\n.\r", "x\r\n.\r\n" + kSmuggled, true},
    {"CRLF NUL dot CRLF", "\r\n\0.\r\n"s, "x\r\n\0.\r\n"s + kSmuggled, false},
    {"CRLF dot NUL CRLF", "\r\n.\0\r\n"s, "x\r\n\0\r\n"s + kSmuggled, false},
    {"CRLF dot space CRLF", "\r\n. \r\n", "x\r\n \r\n" + kSmuggled, false},
    {"LF LF dot CRLF", "\n\n.\r\n", "x\r\n\r\n.\r\n" + kSmuggled, true},
};

TEST(DataDecoder, SmugglingTerminatorsDoNotEndData) {
  for (const auto& c : kSmuggleCases) {
    std::string in = "x" + c.terminator + kSmuggled + ".\r\n";
    Decoded got = decode_whole(in);
    EXPECT_TRUE(got.done) << c.label;
    EXPECT_EQ(got.consumed, in.size()) << c.label << ": data ended early";
    EXPECT_EQ(got.content, c.content) << c.label;
    EXPECT_EQ(got.bare, c.bare) << c.label;
  }
}

TEST(DataDecoder, SmugglingTerminatorsOneByteAtATimeDecodeLikeOneFeed) {
  for (const auto& c : kSmuggleCases) {
    std::string in = "x" + c.terminator + kSmuggled + ".\r\n";
    expect_same(decode_in_pieces(in, 1), decode_whole(in), c.label);
  }
}

TEST(DataDecoder, SmugglingTerminatorsNeverReachBackendAsEndOfData) {
  // After re-encoding, the backend sees exactly one CR LF . CR LF: the last.
  for (const auto& c : kSmuggleCases) {
    std::string in = "x" + c.terminator + kSmuggled + ".\r\n";
    Decoded got = decode_whole(in);
    DataEncoder enc;
    std::string wire;
    enc.encode(got.content, wire);
    enc.finish(wire);
    std::string stream = "\r\n" + wire;  // the DATA command's CRLF precedes the content
    EXPECT_EQ(stream.find("\r\n.\r\n"), stream.size() - 5) << c.label;
  }
}

TEST(DataDecoder, BareLfBeforeFinalDotIsRejected) {
  // The final dot after a bare LF line is not a final dot: it is a "." line.
  Decoded got = decode_whole("a\n.\r\n");
  EXPECT_FALSE(got.done);
  EXPECT_TRUE(got.bare);
  EXPECT_EQ(got.content, "a\r\n.\r\n");
}

TEST(DataDecoder, BareCrBeforeFinalDotIsRejected) {
  Decoded got = decode_whole("a\r.\r\n");
  EXPECT_FALSE(got.done);
  EXPECT_TRUE(got.bare);
  EXPECT_EQ(got.content, "a\r\n.\r\n");
}

TEST(DataDecoder, RealEndAfterBareLineEndingStillEndsData) {
  Decoded got = decode_whole("a\n.\r\n.\r\nQUIT\r\n");
  EXPECT_TRUE(got.done);
  EXPECT_EQ(got.consumed, 8u);
  EXPECT_TRUE(got.bare);
  EXPECT_EQ(got.content, "a\r\n.\r\n");
}

struct BareCase {
  const char* label;
  std::string in;
  std::string content;
};

const BareCase kBareCases[] = {
    {"bare LF mid message", "a\nb\r\n.\r\n", "a\r\nb\r\n"},
    {"bare CR mid message", "a\rb\r\n.\r\n", "a\r\nb\r\n"},
    {"LF CR is two endings", "a\n\rb\r\n.\r\n", "a\r\n\r\nb\r\n"},
    {"CR CR LF", "a\r\r\nb\r\n.\r\n", "a\r\n\r\nb\r\n"},
    {"bare LF first byte", "\na\r\n.\r\n", "\r\na\r\n"},
    {"dot LF at start", ".\nx\r\n.\r\n", ".\r\nx\r\n"},
    {"dot LF then dot CRLF is not the end", ".\n.\r\n.\r\n", ".\r\n.\r\n"},
    {"dot CR x at start", ".\rx\r\n.\r\n", ".\r\nx\r\n"},
    {"stuffed dot after bare LF", "a\n..b\r\n.\r\n", "a\r\n.b\r\n"},
    {"lone dot between bare CRs", "a\r.\rb\r\n.\r\n", "a\r\n.\r\nb\r\n"},
    {"1 MB with bare LF at 600 KB",
     std::string(600 * 1024, 'a') + "\n" + std::string(400 * 1024, 'b') + "\r\n.\r\n",
     std::string(600 * 1024, 'a') + "\r\n" + std::string(400 * 1024, 'b') + "\r\n"},
};

TEST(DataDecoder, BareLineEndingsAreFlaggedAndNormalised) {
  for (const auto& c : kBareCases) {
    Decoded got = decode_whole(c.in);
    EXPECT_TRUE(got.done) << c.label;
    EXPECT_EQ(got.consumed, c.in.size()) << c.label;
    EXPECT_TRUE(got.bare) << c.label;
    EXPECT_EQ(got.content, c.content) << c.label;
    EXPECT_EQ(got.content_size, got.content.size()) << c.label;
  }
}

TEST(DataDecoder, ContentNeverHoldsBareCrOrLf) {
  for (const auto& c : kBareCases) {
    const std::string& s = decode_whole(c.in).content;
    for (std::size_t i = 0; i < s.size(); ++i) {
      if (s[i] == '\r') {
        EXPECT_TRUE(i + 1 < s.size() && s[i + 1] == '\n') << c.label << " @" << i;
      }
      if (s[i] == '\n') {
        EXPECT_TRUE(i > 0 && s[i - 1] == '\r') << c.label << " @" << i;
      }
    }
  }
}

TEST(DataDecoder, OneByteAtATimeDecodesLikeOneFeed) {
  for (const auto& c : kValidCases)
    expect_same(decode_in_pieces(c.in, 1), decode_whole(c.in), c.label);
  for (const auto& c : kBareCases)
    expect_same(decode_in_pieces(c.in, 1), decode_whole(c.in), c.label);
}

TEST(DataDecoder, EverySplitPointDecodesLikeOneFeed) {
  // SECURITY.md 1 "segment splits": CR LF . CR LF and CR LF .. CR LF cut
  // anywhere.
  const std::string inputs[] = {
      "a\r\n..\r\nb\r\n.\r\nNOOP\r\n",
      "a\r.\rb\n.\nc\r\n.\r\n",
      "x\r\n\0.\r\ny\r\n.\r\n"s,
  };
  for (const auto& in : inputs) {
    Decoded whole = decode_whole(in);
    for (std::size_t cut = 0; cut <= in.size(); ++cut) {
      DataDecoder d;
      Decoded got;
      DataDecoder::Result r1 = d.feed(std::string_view(in).substr(0, cut), got.content);
      got.consumed = r1.consumed;
      got.done = r1.done;
      if (!r1.done) {
        DataDecoder::Result r2 = d.feed(std::string_view(in).substr(cut), got.content);
        got.consumed += r2.consumed;
        got.done = r2.done;
      }
      got.bare = d.saw_bare_line_ending();
      got.long_line = d.saw_long_line();
      got.content_size = d.content_size();
      expect_same(got, whole, "cut at " + std::to_string(cut));
    }
  }
}

struct LengthCase {
  const char* label;
  std::uint64_t max_line;  // DataDecoder's limit; 0: none
  std::string in;
  bool long_line;
};

const LengthCase kLengthCases[] = {
    // Issue 21: no limit by default; RFC 5321 4.5.3.1 asks not to impose
    // one, and Postfix relays such lines.
    {"no limit: 999 octets pass", 0, std::string(999, 'a') + "\r\n.\r\n", false},
    {"no limit: 5000 octets pass", 0, std::string(5000, 'a') + "\r\n.\r\n", false},
    {"no limit: 1 MB line passes", 0, std::string(1 << 20, 'a') + "\r\n.\r\n", false},
    // max_line 1000 is RFC 5321 4.5.3.1.6's text line: 998 octets + CR LF.
    {"1000: 998 octets ok", 1000, std::string(998, 'a') + "\r\n.\r\n", false},
    {"1000: 999 octets too long", 1000, std::string(999, 'a') + "\r\n.\r\n", true},
    {"1000: 5000 octets too long", 1000, std::string(5000, 'a') + "\r\n.\r\n", true},
    // RFC 5321 4.5.3.1.6: the transparency dot is not counted.
    {"1000: stuffed dot not counted, 998 ok", 1000, ".." + std::string(997, 'a') + "\r\n.\r\n",
     false},
    {"1000: stuffed dot not counted, 999 long", 1000, ".." + std::string(998, 'a') + "\r\n.\r\n",
     true},
    {"1000: unstuffed leading dot dropped, not counted", 1000,
     "." + std::string(998, 'a') + "\r\n.\r\n", false},
    {"1000: second line too long", 1000, "a\r\n" + std::string(999, 'b') + "\r\n.\r\n", true},
    {"1000: 998 then 998", 1000,
     std::string(998, 'a') + "\r\n" + std::string(998, 'b') + "\r\n.\r\n", false},
    {"1KB: 1022 octets ok", 1024, std::string(1022, 'a') + "\r\n.\r\n", false},
    {"1KB: 1023 octets too long", 1024, std::string(1023, 'a') + "\r\n.\r\n", true},
    {"1KB: too long line ended by a bare LF", 1024, std::string(1023, 'a') + "\nb\r\n.\r\n", true},
    {"10KB: 5000 octets ok", 10240, std::string(5000, 'a') + "\r\n.\r\n", false},
};

TEST(DataDecoder, LinesOverTheLimitAreFlaggedLong) {
  for (const auto& c : kLengthCases) {
    Decoded got = decode_whole(c.in, c.max_line);
    EXPECT_TRUE(got.done) << c.label;
    EXPECT_EQ(got.long_line, c.long_line) << c.label;
    EXPECT_EQ(got.content.size(), got.content_size) << c.label;
    expect_same(decode_in_pieces(c.in, 1, c.max_line), got, c.label);
    expect_same(decode_in_pieces(c.in, 7, c.max_line), got, c.label);
  }
}

TEST(DataDecoder, LongLinesPassUnchangedWithoutALimit) {
  const std::string line = std::string(5000, 'x') + "\r\n";
  Decoded got = decode_whole("a\r\n" + line + ".." + line + ".\r\n");
  EXPECT_TRUE(got.done);
  EXPECT_FALSE(got.long_line);
  EXPECT_EQ(got.content, "a\r\n" + line + "." + line);
}

TEST(DataDecoder, LineOverTheLimitIsFlaggedBeforeItEnds) {
  // The session stops relaying as soon as it knows, not at the line's end.
  DataDecoder d(DataDecoder::Output::kWire, 1000);
  std::string out;
  d.feed(std::string(998, 'a'), out);
  EXPECT_FALSE(d.saw_long_line());
  d.feed("a", out);
  EXPECT_TRUE(d.saw_long_line());
}

TEST(DataDecoder, LongLineStillDecodesToTheEnd) {
  // The session reads an over-long message to its end, then refuses it.
  std::string in = std::string(2000, 'a') + "\r\nb\r\n.\r\nQUIT\r\n";
  Decoded got = decode_whole(in);
  EXPECT_TRUE(got.done);
  EXPECT_EQ(got.consumed, in.size() - 6);
  EXPECT_EQ(got.content, std::string(2000, 'a') + "\r\nb\r\n");
}

TEST(DataDecoder, ContentSizeCountsDecodedOctets) {
  Decoded got = decode_whole("..a\r\nbc\r\n.\r\n");
  EXPECT_EQ(got.content, ".a\r\nbc\r\n");
  EXPECT_EQ(got.content_size, 8u);
}

// Valid, canonically stuffed streams: decode then encode gives the input.
const std::string kCanonicalStreams[] = {
    ".\r\n",
    "a\r\n.\r\n",
    "Subject: hi\r\n\r\nbody\r\n.\r\n",
    "..\r\n.\r\n",
    "...\r\n.\r\n",
    "..a\r\nb.\r\n..\r\n.\r\n",
    "x\r\n\0.\r\ny\r\n.\r\n"s,
    "\xff\xfe\r\n\r\n\r\n.\r\n",
    std::string(998, 'a') + "\r\n." + std::string(997, '.') + "\r\n.\r\n",
};

TEST(DataDecoder, DecodeThenEncodeGivesTheOriginalStream) {
  for (const auto& in : kCanonicalStreams) {
    Decoded got = decode_whole(in);
    ASSERT_TRUE(got.done) << in;
    ASSERT_FALSE(got.bare) << in;
    DataEncoder enc;
    std::string wire;
    enc.encode(got.content, wire);
    enc.finish(wire);
    EXPECT_EQ(wire, in);
  }
}

TEST(DataDecoder, CanBeFedAgainAfterTheEndForTheNextMessage) {
  DataDecoder d;
  std::string out;
  std::string in = "a\r\n.\r\n..b\r\n.\r\n";
  DataDecoder::Result r1 = d.feed(in, out);
  ASSERT_TRUE(r1.done);
  EXPECT_EQ(out, "a\r\n");
  out.clear();
  DataDecoder::Result r2 = d.feed(std::string_view(in).substr(r1.consumed), out);
  EXPECT_TRUE(r2.done);
  EXPECT_EQ(out, ".b\r\n");
}

// Wire output is exactly what DataEncoder makes of the content, for every
// input shape above (valid, smuggling, bare endings, dot lines) and every
// split of the input into two feeds.
std::string encode_content(std::string_view in) {
  DataDecoder d;
  std::string content, wire;
  d.feed(in, content);
  DataEncoder enc;
  enc.encode(content, wire);
  return wire;
}

TEST(DataDecoder, WireOutputIsTheEncodedContent) {
  std::vector<std::string> inputs;
  for (const auto& c : kValidCases) inputs.emplace_back(c.in);
  for (const auto& c : kSmuggleCases) inputs.push_back("x" + c.terminator + kSmuggled + ".\r\n");
  for (const char* in : {"..\r\n.\r\n", "...\r\n.\r\n", ".x\r\n.\r\n", ".\n.\r\n", ".\rx\r\n.\r\n",
                         "a\n.\r\n.\r\n", "a\r.\r\nb\r\n.\r\n", "..\n..\r..\r\n.\r\n"})
    inputs.emplace_back(in);
  for (const std::string& in : inputs) {
    const std::string want = encode_content(in);
    for (std::size_t cut = 0; cut <= in.size(); ++cut) {
      DataDecoder d(DataDecoder::Output::kWire);
      DataDecoder content_decoder;
      std::string wire, content;
      DataDecoder::Result r = d.feed(std::string_view(in).substr(0, cut), wire);
      if (!r.done) d.feed(std::string_view(in).substr(cut), wire);
      content_decoder.feed(in, content);
      EXPECT_EQ(wire, want) << "input " << testing::PrintToString(in) << " cut at " << cut;
      EXPECT_EQ(d.content_size(), content.size()) << testing::PrintToString(in);
    }
  }
}

}  // namespace
}  // namespace smtplb::smtp
