// command_test.cpp: the command parser and the ESMTP MAIL/RCPT parameters.
//
// SECURITY.md 2: bare CR/LF/NUL in a command is 500 5.5.2; a HELO/EHLO name
// is a domain or an address literal and nothing else (501 5.5.4); unknown
// parameters are 555 5.5.4 and never forwarded; HTTP verbs are recognised
// so the session can close at once.
#include "smtp/command.hpp"

#include <gtest/gtest.h>

#include <cstdint>
#include <limits>
#include <string>

namespace smtplb::smtp {
namespace {

using namespace std::string_literals;

constexpr std::uint64_t kU64Max = std::numeric_limits<std::uint64_t>::max();

struct VerbCase {
  const char* label;
  std::string line;
  Verb verb;
};

const VerbCase kVerbCases[] = {
    {"HELO", "HELO mx.example.com", Verb::kHelo},
    {"EHLO", "EHLO mx.example.com", Verb::kEhlo},
    {"lower-case verb", "ehlo mx.example.com", Verb::kEhlo},
    {"mixed-case verb", "MaIl FROM:<a@example.com>", Verb::kMail},
    {"MAIL", "MAIL FROM:<a@example.com>", Verb::kMail},
    {"RCPT", "RCPT TO:<a@example.com>", Verb::kRcpt},
    {"DATA", "DATA", Verb::kData},
    {"DATA with trailing space", "DATA ", Verb::kData},
    {"RSET", "RSET", Verb::kRset},
    {"NOOP", "NOOP", Verb::kNoop},
    {"NOOP with argument", "NOOP anything goes", Verb::kNoop},
    {"QUIT", "QUIT", Verb::kQuit},
    {"VRFY", "VRFY user", Verb::kVrfy},
    {"HELP", "HELP", Verb::kHelp},
    {"HELP with topic", "HELP MAIL", Verb::kHelp},
    {"STARTTLS", "STARTTLS", Verb::kStartTls},
    {"AUTH", "AUTH PLAIN AGFsaWNlAHNlY3JldA==", Verb::kAuth},
    {"BDAT", "BDAT 0 LAST", Verb::kBdat},
    // A verb of its own, so that the session machine refuses it (500 5.5.2).
    {"XCLIENT", "XCLIENT ADDR=192.0.2.1", Verb::kXclient},
    {"GET", "GET / HTTP/1.1", Verb::kHttp},
    {"POST", "POST /submit HTTP/1.0", Verb::kHttp},
    {"CONNECT", "CONNECT mx.example.com:25 HTTP/1.1", Verb::kHttp},
    {"HEAD", "HEAD / HTTP/1.1", Verb::kHttp},
    {"PUT", "PUT /x HTTP/1.1", Verb::kHttp},
    {"OPTIONS", "OPTIONS * HTTP/1.1", Verb::kHttp},
    {"lower-case get", "get /", Verb::kHttp},
    {"bare GET", "GET", Verb::kHttp},
    // Whatever follows the verb: the session closes before anything else
    // could answer it as a bad line and keep it open.
    {"GET with a bare LF", "GET /\nHost: x", Verb::kHttp},
    {"POST with a NUL", std::string("POST /a\0b HTTP/1.1", 19), Verb::kHttp},
    {"GET far over 512 octets", "GET /" + std::string(600, 'a') + " HTTP/1.1", Verb::kHttp},
};

TEST(Command, RecognisesVerbs) {
  for (const auto& c : kVerbCases) {
    ParseResult r = parse_command(c.line);
    ASSERT_TRUE(r.command) << c.label << ": " << (r.error ? r.error->summary() : "");
    EXPECT_FALSE(r.error) << c.label;
    EXPECT_EQ(r.command->verb, c.verb) << c.label;
  }
}

TEST(Command, KeepsArgumentsAsWritten) {
  EXPECT_EQ(parse_command("VRFY Some User").command->arg, "Some User");
  EXPECT_EQ(parse_command("AUTH PLAIN AGFsaWNl").command->arg, "PLAIN AGFsaWNl");
  EXPECT_EQ(parse_command("BDAT 100 LAST").command->arg, "100 LAST");
  EXPECT_EQ(parse_command("HELP").command->arg, "");
}

struct ErrorCase {
  const char* label;
  std::string line;
  int code;
  const char* enhanced;
};

void expect_error(const ErrorCase& c) {
  ParseResult r = parse_command(c.line);
  EXPECT_FALSE(r.command) << c.label;
  ASSERT_TRUE(r.error) << c.label;
  EXPECT_EQ(r.error->code, c.code) << c.label << ": " << r.error->summary();
  EXPECT_EQ(r.error->enhanced, c.enhanced) << c.label << ": " << r.error->summary();
}

const ErrorCase kUnknownCases[] = {
    {"unknown verb", "FROBNICATE now please", 500, "5.5.2"},
    {"empty line", "", 500, "5.5.2"},
    {"spaces only", "   ", 500, "5.5.2"},
    {"leading space", " NOOP", 500, "5.5.2"},
    {"XFORWARD is not trusted", "XFORWARD ADDR=192.0.2.1", 500, "5.5.2"},
    {"PROXY is an unknown command", "PROXY TCP4 192.0.2.1 192.0.2.2 1 25", 500, "5.5.2"},
    {"verb prefix", "MAILFROM:<a@b.c>", 500, "5.5.2"},
    {"verb with tab", "NOOP\tx", 500, "5.5.2"},
};

TEST(Command, UnknownCommandsGet500) {
  for (const auto& c : kUnknownCases) expect_error(c);
}

// SECURITY.md 2 (RFC 5321 2.3.8, CVE-2015-9096).
const ErrorCase kBareCases[] = {
    {"RCPT smuggled after bare CR", "RCPT TO:<a@example.com>\rRCPT TO:<b@other.test>", 500,
     "5.5.2"},
    {"RCPT smuggled after bare LF", "RCPT TO:<a@example.com>\nRCPT TO:<b@other.test>", 500,
     "5.5.2"},
    {"NUL in MAIL", "MAIL FROM:<a@example.com>\0"s, 500, "5.5.2"},
    {"NUL in address", "MAIL FROM:<a\0@example.com>"s, 500, "5.5.2"},
    {"trailing CR", "NOOP\r", 500, "5.5.2"},
    {"LF in verb", "NO\nOP", 500, "5.5.2"},
    {"CR in DATA", "DATA\r", 500, "5.5.2"},
    {"NUL in unknown verb", "X\0Y"s, 500, "5.5.2"},
};

TEST(Command, BareCrLfOrNulInCommandIsRejected) {
  for (const auto& c : kBareCases) expect_error(c);
}

struct HeloCase {
  const char* label;
  std::string arg;
  std::string domain;  // empty: rejected with 501 5.5.4
};

const HeloCase kHeloCases[] = {
    {"domain", "mx.example.com", "mx.example.com"},
    {"single label", "localhost", "localhost"},
    {"trailing spaces trimmed", "mx.example.com  ", "mx.example.com"},
    {"underscore tolerated", "win_host.example", "win_host.example"},
    {"IPv4 literal", "[192.0.2.1]", "[192.0.2.1]"},
    {"IPv6 literal", "[IPv6:2001:db8::1]", "[IPv6:2001:db8::1]"},
    {"UTF-8 name",
     "b\xc3\xbc"
     "cher.example",
     "b\xc3\xbc"
     "cher.example"},
    {"header injection with LF", "a.example\nX-Injected: 1", ""},
    {"header injection with CR LF", "a.example\r\nX-Injected: 1", ""},
    {"header injection with CR", "a.example\rX-Injected: 1", ""},
    {"NUL", "a.example\0"s, ""},
    {"Received injection", "x) by mx.example.com (", ""},
    {"space inside", "a b", ""},
    {"parenthesis", "a(b)", ""},
    {"semicolon", "a.example;", ""},
    {"angle brackets", "<a.example>", ""},
    {"leading dot", ".example.com", ""},
    {"double dot", "a..example", ""},
    {"tab", "a\texample", ""},
    {"bad IPv4 literal", "[192.0.2]", ""},
    {"bad IPv6 literal", "[IPv6:zz::1]", ""},
    {"unclosed literal", "[192.0.2.1", ""},
    {"general literal", "[x-tag:foo]", ""},
    {"too long", std::string(256, 'a'), ""},
    {"missing", "", ""},
    {"spaces only", "   ", ""},
};

TEST(Command, HeloArgumentMustBeDomainOrAddressLiteral) {
  for (const char* verb : {"HELO ", "EHLO "}) {
    for (const auto& c : kHeloCases) {
      std::string line = verb + c.arg;
      ParseResult r = parse_command(line);
      if (c.domain.empty()) {
        EXPECT_FALSE(r.command) << verb << c.label;
        ASSERT_TRUE(r.error) << verb << c.label;
        EXPECT_EQ(r.error->code, 501) << verb << c.label;
        EXPECT_EQ(r.error->enhanced, "5.5.4") << verb << c.label;
      } else {
        ASSERT_TRUE(r.command) << verb << c.label << ": " << r.error->summary();
        EXPECT_EQ(r.command->domain, c.domain) << verb << c.label;
      }
    }
  }
}

// Issue 14: a name that is not UTF-8, or that holds a control character
// or a Unicode line break, would reach the Received field.
const HeloCase kHeloUnicodeCases[] = {
    {"CJK U-labels", "\xe6\x97\xa5\xe6\x9c\xac.example", "\xe6\x97\xa5\xe6\x9c\xac.example"},
    {"four-octet sequence", "\xf0\x9f\x98\x80.example", "\xf0\x9f\x98\x80.example"},
    {"U+00A1, just after C1", "a\xc2\xa1.example", "a\xc2\xa1.example"},
    {"U+2027, just before U+2028", "a\xe2\x80\xa7.example", "a\xe2\x80\xa7.example"},
    {"U+202A, just after U+2029", "a\xe2\x80\xaa.example", "a\xe2\x80\xaa.example"},
    {"Latin-1 byte, not UTF-8", "caf\xe9.example", ""},
    {"lone continuation byte", "\x80x.example", ""},
    {"truncated sequence at the end", "x.example\xc3", ""},
    {"truncated sequence inside", "x\xe6\x97.example", ""},
    {"overlong encoding of '.'", "x\xc0\xae.example", ""},
    {"UTF-16 surrogate", "x\xed\xa0\x80.example", ""},
    {"beyond U+10FFFF", "x\xf4\x90\x80\x80.example", ""},
    {"0xFF", "x\xff.example", ""},
    {"C1 U+0080", "a\xc2\x80.example", ""},
    {"C1 NEL U+0085",
     "a\xc2\x85"
     "b.example",
     ""},
    {"C1 CSI U+009B", "a\xc2\x9b.example", ""},
    {"C1 U+009F", "a\xc2\x9f.example", ""},
    {"LINE SEPARATOR U+2028",
     "a\xe2\x80\xa8"
     "b.example",
     ""},
    {"PARAGRAPH SEPARATOR U+2029",
     "a\xe2\x80\xa9"
     "b.example",
     ""},
    {"C0 DEL", "a\x7f.example", ""},
    {"C0 ESC", "a\x1b.example", ""},
};

TEST(Command, HeloNameMustBePrintableUtf8) {
  for (const char* verb : {"HELO ", "EHLO "}) {
    for (const auto& c : kHeloUnicodeCases) {
      std::string line = verb + c.arg;
      ParseResult r = parse_command(line);
      if (c.domain.empty()) {
        EXPECT_FALSE(r.command) << verb << c.label;
        ASSERT_TRUE(r.error) << verb << c.label;
        EXPECT_EQ(r.error->code, 501) << verb << c.label;
        EXPECT_EQ(r.error->enhanced, "5.5.4") << verb << c.label;
      } else {
        ASSERT_TRUE(r.command) << verb << c.label << ": " << r.error->summary();
        EXPECT_EQ(r.command->domain, c.domain) << verb << c.label;
      }
    }
  }
}

TEST(Command, EhloWithoutArgumentIsRejected) {
  expect_error({"EHLO alone", "EHLO", 501, "5.5.4"});
  expect_error({"HELO alone", "HELO", 501, "5.5.4"});
}

const ErrorCase kNoArgumentCases[] = {
    {"DATA with argument", "DATA now", 501, "5.5.4"},
    {"RSET with argument", "RSET x", 501, "5.5.4"},
    {"QUIT with argument", "QUIT x", 501, "5.5.4"},
    {"STARTTLS with argument", "STARTTLS x", 501, "5.5.4"},
    {"VRFY without argument", "VRFY", 501, "5.5.4"},
};

TEST(Command, ArgumentsWhereNoneAllowedAreRejected) {
  for (const auto& c : kNoArgumentCases) expect_error(c);
}

struct PathCase {
  const char* label;
  std::string line;
  bool null;
  std::string address;  // Path::str()
};

const PathCase kPathCases[] = {
    {"MAIL", "MAIL FROM:<a@example.com>", false, "a@example.com"},
    {"MAIL null sender", "MAIL FROM:<>", true, ""},
    {"MAIL space after colon tolerated", "MAIL FROM: <a@example.com>", false, "a@example.com"},
    {"lower-case FROM", "mail from:<a@example.com>", false, "a@example.com"},
    {"MAIL trailing space", "MAIL FROM:<a@example.com> ", false, "a@example.com"},
    {"RCPT", "RCPT TO:<b@example.com>", false, "b@example.com"},
    {"RCPT postmaster", "RCPT TO:<postmaster>", false, "postmaster"},
    {"RCPT Postmaster case kept", "RCPT TO:<PostMaster>", false, "PostMaster"},
    {"RCPT source route dropped", "RCPT TO:<@relay.example:b@example.com>", false, "b@example.com"},
    {"RCPT quoted local part", "RCPT TO:<\"a b\"@example.com>", false, "\"a b\"@example.com"},
    {"RCPT UTF-8", "RCPT TO:<\xe7\x94\xa8\xe6\x88\xb7@example.com>", false,
     "\xe7\x94\xa8\xe6\x88\xb7@example.com"},
};

TEST(Command, MailAndRcptCarryTheirPath) {
  for (const auto& c : kPathCases) {
    ParseResult r = parse_command(c.line);
    ASSERT_TRUE(r.command) << c.label << ": " << r.error->summary();
    EXPECT_EQ(r.command->path.null, c.null) << c.label;
    EXPECT_EQ(r.command->path.str(), c.address) << c.label;
  }
}

const ErrorCase kBadPathCases[] = {
    {"no brackets", "MAIL FROM:a@example.com", 501, "5.5.4"},
    {"missing FROM", "MAIL <a@example.com>", 501, "5.5.4"},
    {"TO in MAIL", "MAIL TO:<a@example.com>", 501, "5.5.4"},
    {"FROM in RCPT", "RCPT FROM:<a@example.com>", 501, "5.5.4"},
    {"MAIL alone", "MAIL", 501, "5.5.4"},
    {"null path only for MAIL", "RCPT TO:<>", 501, "5.5.4"},
    {"postmaster only for RCPT", "MAIL FROM:<postmaster>", 501, "5.5.4"},
    {"junk after address", "MAIL FROM:<a@example.com>junk", 501, "5.5.4"},
    {"missing '>'", "MAIL FROM:<a@example.com", 501, "5.5.4"},
    {"bad domain", "RCPT TO:<a@-example.com>", 501, "5.5.4"},
    {"bad UTF-8", "RCPT TO:<\xff@example.com>", 501, "5.5.4"},
};

TEST(Command, BadPathsGet501) {
  for (const auto& c : kBadPathCases) expect_error(c);
}

struct ParamCase {
  const char* label;
  std::string params;  // after "MAIL FROM:<a@example.com> "
  std::optional<std::uint64_t> size;
  Body body;
  bool smtputf8;
  bool auth;
};

const ParamCase kParamCases[] = {
    {"none", "", std::nullopt, Body::kUnspecified, false, false},
    {"SIZE", "SIZE=1000", 1000, Body::kUnspecified, false, false},
    {"SIZE zero", "SIZE=0", 0, Body::kUnspecified, false, false},
    {"SIZE lower case", "size=12", 12, Body::kUnspecified, false, false},
    {"SIZE max", "SIZE=18446744073709551615", kU64Max, Body::kUnspecified, false, false},
    {"SIZE overflow by one", "SIZE=18446744073709551616", kU64Max, Body::kUnspecified, false,
     false},
    {"SIZE 20 nines overflows", "SIZE=99999999999999999999", kU64Max, Body::kUnspecified, false,
     false},
    {"BODY=8BITMIME", "BODY=8BITMIME", std::nullopt, Body::k8BitMime, false, false},
    {"BODY=7BIT", "BODY=7bit", std::nullopt, Body::k7Bit, false, false},
    {"SMTPUTF8", "SMTPUTF8", std::nullopt, Body::kUnspecified, true, false},
    {"AUTH=<>", "AUTH=<>", std::nullopt, Body::kUnspecified, false, true},
    {"AUTH=address", "AUTH=x@example.com", std::nullopt, Body::kUnspecified, false, true},
    {"all of them", "SIZE=5 BODY=8BITMIME SMTPUTF8 AUTH=<>", 5, Body::k8BitMime, true, true},
    {"extra spaces", "SIZE=5   BODY=8BITMIME  ", 5, Body::k8BitMime, false, false},
};

TEST(Command, MailParametersAreParsed) {
  for (const auto& c : kParamCases) {
    std::string line = "MAIL FROM:<a@example.com> " + c.params;
    ParseResult r = parse_command(line);
    ASSERT_TRUE(r.command) << c.label << ": " << r.error->summary();
    EXPECT_EQ(r.command->mail.size, c.size) << c.label;
    EXPECT_EQ(r.command->mail.body, c.body) << c.label;
    EXPECT_EQ(r.command->mail.smtputf8, c.smtputf8) << c.label;
    EXPECT_EQ(r.command->mail.auth_given, c.auth) << c.label;
  }
}

const ErrorCase kBadParamCases[] = {
    {"SIZE negative", "MAIL FROM:<a@example.com> SIZE=-1", 501, "5.5.4"},
    {"SIZE not a number", "MAIL FROM:<a@example.com> SIZE=abc", 501, "5.5.4"},
    {"SIZE with sign", "MAIL FROM:<a@example.com> SIZE=+5", 501, "5.5.4"},
    {"SIZE without value", "MAIL FROM:<a@example.com> SIZE", 501, "5.5.4"},
    {"SIZE empty value", "MAIL FROM:<a@example.com> SIZE=", 501, "5.5.4"},
    {"SIZE twice", "MAIL FROM:<a@example.com> SIZE=1 SIZE=2", 501, "5.5.4"},
    {"SIZE 21 digits", "MAIL FROM:<a@example.com> SIZE=100000000000000000000", 501, "5.5.4"},
    {"SIZE decimal", "MAIL FROM:<a@example.com> SIZE=1.5", 501, "5.5.4"},
    {"BODY twice", "MAIL FROM:<a@example.com> BODY=7BIT BODY=8BITMIME", 501, "5.5.4"},
    {"BODY without value", "MAIL FROM:<a@example.com> BODY", 501, "5.5.4"},
    {"SMTPUTF8 with value", "MAIL FROM:<a@example.com> SMTPUTF8=yes", 501, "5.5.4"},
    {"SMTPUTF8 twice", "MAIL FROM:<a@example.com> SMTPUTF8 SMTPUTF8", 501, "5.5.4"},
    {"AUTH without value", "MAIL FROM:<a@example.com> AUTH", 501, "5.5.4"},
    {"empty keyword", "MAIL FROM:<a@example.com> =x", 501, "5.5.4"},
    {"keyword starts with hyphen", "MAIL FROM:<a@example.com> -X=1", 501, "5.5.4"},
    {"equals sign in value", "MAIL FROM:<a@example.com> X=a=b", 501, "5.5.4"},
    {"underscore in keyword", "MAIL FROM:<a@example.com> X_Y=1", 501, "5.5.4"},
    {"unknown parameter", "MAIL FROM:<a@example.com> FOO=bar", 555, "5.5.4"},
    {"unknown flag", "MAIL FROM:<a@example.com> X-FOO", 555, "5.5.4"},
    {"DSN RET not supported", "MAIL FROM:<a@example.com> RET=HDRS", 555, "5.5.4"},
    {"BODY=BINARYMIME not supported", "MAIL FROM:<a@example.com> BODY=BINARYMIME", 555, "5.5.4"},
    {"unknown after known", "MAIL FROM:<a@example.com> SIZE=1 XCLIENT=1", 555, "5.5.4"},
    {"RCPT NOTIFY", "RCPT TO:<a@example.com> NOTIFY=NEVER", 555, "5.5.4"},
    {"RCPT ORCPT", "RCPT TO:<a@example.com> ORCPT=rfc822;a@example.com", 555, "5.5.4"},
    {"RCPT SIZE", "RCPT TO:<a@example.com> SIZE=1", 555, "5.5.4"},
    {"RCPT flag", "RCPT TO:<a@example.com> SMTPUTF8", 555, "5.5.4"},
};

TEST(Command, BadOrUnknownParametersAreRefused) {
  for (const auto& c : kBadParamCases) expect_error(c);
}

TEST(Command, UnknownParameterIsNamedInTheReply) {
  ParseResult r = parse_command("MAIL FROM:<a@example.com> FOO=bar");
  ASSERT_TRUE(r.error);
  EXPECT_NE(r.error->summary().find("FOO"), std::string::npos) << r.error->summary();
}

TEST(Command, EchoedParameterIsShortAndPrintable) {
  // RFC 5321 4.5.3.1.5: a reply line is at most 512 octets; and no raw
  // client bytes go back in a reply (STYLE.md).
  const std::string long_key(1500, 'X');
  const std::string lines[] = {
      "MAIL FROM:<a@example.com> " + long_key + "=1",
      "RCPT TO:<a@example.com> " + long_key,
      "MAIL FROM:<a@example.com> BODY=" + std::string(1500, 'b'),
      "MAIL FROM:<a@example.com> BODY=\xd0\xd0\xff\x80",
  };
  for (const auto& line : lines) {
    ParseResult r = parse_command(line);
    ASSERT_TRUE(r.error) << line.substr(0, 40);
    EXPECT_EQ(r.error->code, 555);
    std::string wire = r.error->wire();
    EXPECT_LE(wire.size(), 512u) << line.substr(0, 40);
    for (std::size_t i = 0; i + 2 < wire.size(); ++i) {
      unsigned char c = wire[i];
      EXPECT_TRUE(c >= 0x20 && c < 0x7f) << "byte " << int(c) << " at " << i;
    }
  }
}

TEST(Command, LineLimitsDependOnTheVerb) {
  EXPECT_EQ(max_line_for(Verb::kMail), kMaxParameterCommandLine);
  EXPECT_EQ(max_line_for(Verb::kRcpt), kMaxParameterCommandLine);
  EXPECT_EQ(max_line_for(Verb::kEhlo), kMaxCommandLine);
  EXPECT_EQ(max_line_for(Verb::kUnknown), kMaxCommandLine);
  EXPECT_EQ(kMaxCommandLine, 512u);
}

// RFC 4954 4: an AUTH line carries an initial response of up to 12288
// octets (issue 14); the session must read such a line whole, so the bound
// is the verb, the longest mechanism name, the response and CR LF.
TEST(Command, AuthLineTakesATwelveKilobyteInitialResponse) {
  EXPECT_EQ(max_line_for(Verb::kAuth), kMaxAuthCommandLine);
  EXPECT_EQ(kMaxAuthCommandLine, std::string_view("AUTH ").size() + 20 + 1 + 12288 + 2);
  const std::string response(12288, 'A');
  const std::string line = "AUTH SCRAM-SHA-256-PLUS " + response;  // a 20-octet mechanism
  ASSERT_LE(line.size() + 2, max_line_for(Verb::kAuth));
  ParseResult p = parse_command(line);
  ASSERT_TRUE(p.command) << line.size();
  EXPECT_EQ(p.command->verb, Verb::kAuth);
  EXPECT_EQ(p.command->auth_mechanism, "SCRAM-SHA-256-PLUS");
  EXPECT_EQ(p.command->auth_initial, response);
  // The other verbs keep their limits.
  EXPECT_EQ(max_line_for(Verb::kNoop), kMaxCommandLine);
  EXPECT_EQ(max_line_for(Verb::kVrfy), kMaxCommandLine);
}

TEST(Command, VerbOfALineIsItsFirstWordInAnyCase) {
  struct Case {
    std::string_view line;
    Verb want;
  } cases[] = {
      {"AUTH PLAIN AAAA", Verb::kAuth},
      {"auth plain", Verb::kAuth},
      {"AUTH", Verb::kAuth},
      {"AUTHPLAIN", Verb::kUnknown},
      {"AUTH\tPLAIN", Verb::kUnknown},
      {"MAIL FROM:<a@b.c>", Verb::kMail},
      {"", Verb::kUnknown},
      {" AUTH PLAIN", Verb::kUnknown},
  };
  for (const auto& c : cases) EXPECT_EQ(verb_of(c.line), c.want) << c.line;
}

TEST(Command, VerbsHaveNames) {
  EXPECT_STREQ(to_string(Verb::kEhlo), "EHLO");
  EXPECT_STREQ(to_string(Verb::kStartTls), "STARTTLS");
  EXPECT_STREQ(to_string(Verb::kUnknown), "UNKNOWN");
}

}  // namespace
}  // namespace smtplb::smtp
