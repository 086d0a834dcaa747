// xtext_test.cpp: the RFC 3461 section 4 xtext encoding of XCLIENT values.
//
// What matters for smtplb: an encoded value never holds a space, CR, LF or
// "=", so a client's HELO name or login cannot add an attribute or a
// command to the XCLIENT line; and the decoder takes only what the grammar
// allows.
#include "smtp/xtext.hpp"

#include <gtest/gtest.h>

#include <optional>
#include <string>

namespace smtplb::smtp::xtext {
namespace {

using namespace std::string_literals;

struct EncodeCase {
  const char* label;
  std::string raw;
  std::string encoded;
};

const EncodeCase kEncodeCases[] = {
    {"empty", "", ""},
    {"host name as is", "mx.example.com", "mx.example.com"},
    {"address literal as is", "[192.0.2.1]", "[192.0.2.1]"},
    {"IPv6 as is", "IPV6:2001:db8::1", "IPV6:2001:db8::1"},
    {"first and last xchar", "!~", "!~"},
    {"plus", "a+b", "a+2Bb"},
    {"equals", "a=b", "a+3Db"},
    {"space", "a b", "a+20b"},
    {"CR LF", "a\r\nMAIL FROM:<x>", "a+0D+0AMAIL+20FROM:<x>"},
    {"NUL", "\0"s, "+00"},
    {"DEL", "\x7f", "+7F"},
    {"tab", "\t", "+09"},
    {"UTF-8 in upper-case hex", "j\xc3\xbcrgen", "j+C3+BCrgen"},
    {"top byte", "\xff", "+FF"},
    {"a value that looks encoded", "+41", "+2B41"},
};

TEST(Xtext, Encodes) {
  for (const auto& c : kEncodeCases) {
    EXPECT_EQ(encode(c.raw), c.encoded) << c.label;
    EXPECT_EQ(decode(c.encoded), c.raw) << c.label;
  }
}

struct DecodeCase {
  const char* label;
  std::string text;
  std::optional<std::string> raw;  // nullopt: refused
};

const DecodeCase kDecodeCases[] = {
    {"hexchar for an xchar", "+41+42C", "ABC"},
    {"hexchar at the end", "ab+2B", "ab+"},
    {"only hexchars", "+00+FF", "\0\xff"s},
    {"UNAVAILABLE", "[UNAVAILABLE]", "[UNAVAILABLE]"},
    {"lower-case hex", "a+2bb", std::nullopt},
    {"bare plus", "a+b", std::nullopt},
    {"plus at the end", "ab+", std::nullopt},
    {"plus and one digit at the end", "ab+2", std::nullopt},
    {"non-hex digit", "+G0", std::nullopt},
    {"bare equals", "a=b", std::nullopt},
    {"space", "a b", std::nullopt},
    {"CR", "a\rb", std::nullopt},
    {"LF", "a\nb", std::nullopt},
    {"NUL", "a\0b"s, std::nullopt},
    {"DEL", "a\x7f", std::nullopt},
    {"raw UTF-8", "j\xc3\xbcrgen", std::nullopt},
    {"plus followed by a sign", "+-1", std::nullopt},
};

TEST(Xtext, DecodesStrictly) {
  for (const auto& c : kDecodeCases) EXPECT_EQ(decode(c.text), c.raw) << c.label;
}

TEST(Xtext, EveryByteRoundTripsAndEncodesPrintable) {
  std::string all;
  for (int i = 0; i < 256; ++i) all.push_back(static_cast<char>(i));
  std::string text = encode(all);
  for (unsigned char c : text) {
    EXPECT_GE(c, '!');
    EXPECT_LE(c, '~');
    EXPECT_NE(c, '=');
  }
  // 94 xchars minus "+" and "=" stand for themselves, the other 164 take 3.
  EXPECT_EQ(text.size(), 92u + 164u * 3u);
  EXPECT_EQ(decode(text), all);
}

}  // namespace
}  // namespace smtplb::smtp::xtext
