// data_encoder_test.cpp: dot-stuffing of message content for a backend.
//
// RFC 5321 4.5.2: every content line starting with "." gets one more, so
// that no content line can read as the end of data (SECURITY.md 1,
// "Re-encode strictly").
#include "smtp/data_encoder.hpp"

#include <gtest/gtest.h>

#include <string>
#include <string_view>
#include <vector>

#include "smtp/data_decoder.hpp"

namespace smtplb::smtp {
namespace {

using namespace std::string_literals;

std::string encode_whole(std::string_view content) {
  DataEncoder enc;
  std::string out;
  enc.encode(content, out);
  enc.finish(out);
  return out;
}

std::string encode_in_pieces(std::string_view content, std::size_t piece) {
  DataEncoder enc;
  std::string out;
  for (std::size_t i = 0; i < content.size(); i += piece) enc.encode(content.substr(i, piece), out);
  enc.finish(out);
  return out;
}

// The stream split into lines at CR LF (the last, the final dot, included).
std::vector<std::string> wire_lines(std::string_view wire) {
  std::vector<std::string> lines;
  std::size_t start = 0;
  for (;;) {
    std::size_t crlf = wire.find("\r\n", start);
    if (crlf == std::string_view::npos) break;
    lines.emplace_back(wire.substr(start, crlf - start));
    start = crlf + 2;
  }
  return lines;
}

struct EncodeCase {
  const char* label;
  std::string content;
  std::string wire;
};

const EncodeCase kEncodeCases[] = {
    {"empty message", "", ".\r\n"},
    {"one line", "a\r\n", "a\r\n.\r\n"},
    {"no final CRLF gets one", "a", "a\r\n.\r\n"},
    {"lone dot line stuffed", ".\r\n", "..\r\n.\r\n"},
    {"double dot line stuffed", "..\r\n", "...\r\n.\r\n"},
    {"dot first line stuffed", ".a\r\nb\r\n", "..a\r\nb\r\n.\r\n"},
    {"dot later line stuffed", "a\r\n.b\r\n", "a\r\n..b\r\n.\r\n"},
    {"every dot line stuffed", ".\r\n.\r\n.\r\n", "..\r\n..\r\n..\r\n.\r\n"},
    {"dot inside a line untouched", "a.b\r\n", "a.b\r\n.\r\n"},
    {"dot at line end untouched", "a.\r\n", "a.\r\n.\r\n"},
    {"dot without final CRLF", ".", "..\r\n.\r\n"},
    {"NUL dot untouched", "\0.\r\n"s, "\0.\r\n.\r\n"s},
    {"empty lines", "\r\n\r\n", "\r\n\r\n.\r\n"},
    {"8-bit untouched", "\xc3\xa9\xff\r\n", "\xc3\xa9\xff\r\n.\r\n"},
};

TEST(DataEncoder, StuffsLeadingDotsAndAddsFinalDot) {
  for (const auto& c : kEncodeCases) EXPECT_EQ(encode_whole(c.content), c.wire) << c.label;
}

TEST(DataEncoder, PiecewiseEncodingMatchesOneCall) {
  for (const auto& c : kEncodeCases) {
    for (std::size_t piece : {1u, 2u, 3u, 5u}) {
      EXPECT_EQ(encode_in_pieces(c.content, piece), c.wire) << c.label << " piece " << piece;
    }
  }
}

TEST(DataEncoder, DotAtChunkStartAfterLineEndIsStuffed) {
  DataEncoder enc;
  std::string out;
  enc.encode("a\r\n", out);
  enc.encode(".b\r\n", out);
  enc.encode("c", out);
  enc.encode(".d\r\n", out);  // not at a line start: "c.d"
  enc.finish(out);
  EXPECT_EQ(out, "a\r\n..b\r\nc.d\r\n.\r\n");
}

TEST(DataEncoder, FinishResetsForTheNextMessage) {
  DataEncoder enc;
  std::string out;
  enc.encode("a", out);
  enc.finish(out);
  enc.encode(".b\r\n", out);
  enc.finish(out);
  EXPECT_EQ(out, "a\r\n.\r\n..b\r\n.\r\n");
}

TEST(DataEncoder, ResetStartsAtLineStart) {
  DataEncoder enc;
  std::string out;
  enc.encode("partial", out);
  enc.reset();
  out.clear();
  enc.encode(".x\r\n", out);
  EXPECT_EQ(out, "..x\r\n");
}

TEST(DataEncoder, NoContentLineIsALoneDot) {
  for (const auto& c : kEncodeCases) {
    std::vector<std::string> lines = wire_lines(encode_whole(c.content));
    ASSERT_FALSE(lines.empty()) << c.label;
    EXPECT_EQ(lines.back(), ".") << c.label;
    for (std::size_t i = 0; i + 1 < lines.size(); ++i) EXPECT_NE(lines[i], ".") << c.label;
  }
}

// SECURITY.md 1: lines made by `normalize` are re-stuffed, so "a\r.\rb" can
// never reach a backend as CR LF . CR LF.
struct NormalizeCase {
  const char* label;
  std::string data;  // as the client sent it, up to the real final dot
  std::string wire;  // what the backend gets
};

const NormalizeCase kNormalizeCases[] = {
    {"CR dot CR", "a\r.\rb\r\n.\r\n", "a\r\n..\r\nb\r\n.\r\n"},
    {"LF dot LF", "a\n.\nb\r\n.\r\n", "a\r\n..\r\nb\r\n.\r\n"},
    {"LF dot CRLF", "a\n.\r\nb\r\n.\r\n", "a\r\n..\r\nb\r\n.\r\n"},
    {"CR dot CRLF", "a\r.\r\nb\r\n.\r\n", "a\r\n..\r\nb\r\n.\r\n"},
    {"CRLF dot LF", "a\r\n.\nb\r\n.\r\n", "a\r\n..\r\nb\r\n.\r\n"},
    {"CR dot LF", "a\r.\nb\r\n.\r\n", "a\r\n..\r\nb\r\n.\r\n"},
    {"dot LF at start", ".\nb\r\n.\r\n", "..\r\nb\r\n.\r\n"},
};

TEST(DataEncoder, NormalizedDotLinesAreReStuffed) {
  for (const auto& c : kNormalizeCases) {
    DataDecoder dec;
    std::string content;
    DataDecoder::Result r = dec.feed(c.data, content);
    ASSERT_TRUE(r.done) << c.label;
    ASSERT_EQ(r.consumed, c.data.size()) << c.label;
    EXPECT_TRUE(dec.saw_bare_line_ending()) << c.label;
    std::string wire = encode_whole(content);
    EXPECT_EQ(wire, c.wire) << c.label;
    std::vector<std::string> lines = wire_lines(wire);
    for (std::size_t i = 0; i + 1 < lines.size(); ++i) EXPECT_NE(lines[i], ".") << c.label;
  }
}

TEST(DataEncoder, EncodedStreamDecodesBackToTheContent) {
  for (const auto& c : kEncodeCases) {
    std::string wire = encode_whole(c.content);
    DataDecoder dec;
    std::string back;
    DataDecoder::Result r = dec.feed(wire, back);
    EXPECT_TRUE(r.done) << c.label;
    EXPECT_EQ(r.consumed, wire.size()) << c.label;
    EXPECT_FALSE(dec.saw_bare_line_ending()) << c.label;
    // finish() adds the missing CRLF of a last line without one.
    std::string want = c.content;
    if (!want.empty() && !want.ends_with("\r\n")) want += "\r\n";
    EXPECT_EQ(back, want) << c.label;
  }
}

}  // namespace
}  // namespace smtplb::smtp
