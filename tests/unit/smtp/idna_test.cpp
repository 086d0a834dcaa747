// idna_test.cpp: Punycode (RFC 3492) and domains on their A-labels.
//
// The Punycode rows are RFC 3492 section 7.1's sample strings (code points
// in, ASCII out, both ways); the domain rows are what SECURITY.md 4 asks of
// a domain match: a U-label and its A-label are one name, ASCII case does
// not matter, anything that is not a name converts to nothing.
#include "smtp/idna.hpp"

#include <gtest/gtest.h>

#include <optional>
#include <string>

namespace smtplb::smtp {
namespace {

struct PunycodeCase {
  const char* label;
  std::u32string code_points;
  std::string encoded;
};

const PunycodeCase kPunycodeCases[] = {
    {"(A) Arabic (Egyptian)",
     U"\u0644\u064A\u0647\u0645\u0627\u0628\u062A\u0643\u0644\u0645\u0648\u0634\u0639\u0631"
     U"\u0628\u064A\u061F",
     "egbpdaj6bu4bxfgehfvwxn"},
    {"(B) Chinese (simplified)", U"\u4ED6\u4EEC\u4E3A\u4EC0\u4E48\u4E0D\u8BF4\u4E2D\u6587",
     "ihqwcrb4cv8a8dqg056pqjye"},
    {"(E) Hebrew",
     U"\u05DC\u05DE\u05D4\u05D4\u05DD\u05E4\u05E9\u05D5\u05D8\u05DC\u05D0\u05DE\u05D3\u05D1"
     U"\u05E8\u05D9\u05DD\u05E2\u05D1\u05E8\u05D9\u05EA",
     "4dbcagdahymbxekheh6e0a7fei0b"},
    {"(L) 3<nen>B<gumi><kinpachi><sensei>", U"3\u5E74B\u7D44\u91D1\u516B\u5148\u751F",
     "3B-ww4c5e180e575a65lsy2b"},
    {"(N) <pafii>de<runba>", U"\u30D1\u30D5\u30A3\u30FCde\u30EB\u30F3\u30D0", "de-jg4avhby1noc0d"},
    {"(S) -> $1.00 <-", U"-> $1.00 <-", "-> $1.00 <--"},
    {"a label with a non-BMP code point", U"a\U0001F600", "a-jv3s"},
    {"bücher", U"b\u00FCcher", "bcher-kva"},
    {"münchen", U"m\u00FCnchen", "mnchen-3ya"},
    {"ASCII only: a trailing '-'", U"abc", "abc-"},
    {"nothing", U"", ""},
};

TEST(Punycode, EncodesAndDecodesRfc3492Samples) {
  for (const auto& c : kPunycodeCases) {
    EXPECT_EQ(punycode_encode(c.code_points), c.encoded) << c.label;
    EXPECT_EQ(punycode_decode(c.encoded), c.code_points) << c.label;
  }
}

TEST(Punycode, RefusesWhatIsNotPunycodeOrNotUnicode) {
  EXPECT_FALSE(punycode_encode(U"\xD800"));         // a surrogate
  EXPECT_FALSE(punycode_encode(U"\x110000"));       // past U+10FFFF
  EXPECT_FALSE(punycode_decode("\xC3\xA9-abc"));    // 8-bit before the '-'
  EXPECT_FALSE(punycode_decode("abc!"));            // no digit
  EXPECT_FALSE(punycode_decode("z"));               // ends inside a number
  EXPECT_FALSE(punycode_decode("99999999999999"));  // overflow
}

struct DomainCase {
  const char* label;
  std::string domain;
  std::optional<std::string> a_labels;
};

const DomainCase kDomainCases[] = {
    {"ASCII, lowered", "Mail.EXAMPLE.com", "mail.example.com"},
    {"a U-label becomes its A-label",
     "b\xC3\xBC"
     "cher.example",
     "xn--bcher-kva.example"},
    {"ASCII letters of a U-label are lowered first",
     "B\xC3\xBC"
     "CHER.example",
     "xn--bcher-kva.example"},
    {"an A-label stays (lowered)", "XN--BCHER-KVA.example", "xn--bcher-kva.example"},
    {"every label",
     "m\xC3\xBCnchen.b\xC3\xBC"
     "cher",
     "xn--mnchen-3ya.xn--bcher-kva"},
    // No Unicode case mapping: the upper-case U-label is another name.
    {"an upper-case U-label is not mapped",
     "B\xC3\x9C"
     "CHER.example",
     "xn--bcher-2pa.example"},
    {"a Cyrillic look-alike is another name", "ex\xD0\xB0mple.com", "xn--exmple-4nf.com"},
    {"a leading dot (a subdomain entry) is kept",
     ".b\xC3\xBC"
     "cher.example",
     ".xn--bcher-kva.example"},
    {"ill-formed UTF-8",
     "b\xFC"
     "cher.example",
     std::nullopt},
    {"an overlong form", "\xC0\xAF.example", std::nullopt},
    {"an encoded surrogate", "\xED\xA0\x80.example", std::nullopt},
    {"an A-label over 63 octets", std::string(30, 'a') + "\xC3\xBC" + std::string(30, 'b'),
     std::nullopt},
};

TEST(Idna, ADomainMatchesOnItsALabels) {
  for (const auto& c : kDomainCases) EXPECT_EQ(to_a_labels(c.domain), c.a_labels) << c.label;
}

}  // namespace
}  // namespace smtplb::smtp
