// auth_command_test.cpp: `AUTH mechanism [initial-response]` (RFC 4954 4)
// as the command parser hands it to the session.
//
// The parser checks the shape only: a mechanism name (upper-cased for the
// session), at most one response word, 501 5.5.4 otherwise.  Whether the
// mechanism is offered (504 5.5.4) and whether the response is base64
// (501 5.5.2) is sasl::AuthExchange's business (sasl_test.cpp).
#include <gtest/gtest.h>

#include <optional>
#include <string>

#include "smtp/command.hpp"

namespace smtplb::smtp {
namespace {

using namespace std::string_literals;

struct AuthCase {
  const char* label;
  std::string line;
  std::string mechanism;
  std::optional<std::string> initial;
};

const AuthCase kAuthCases[] = {
    {"PLAIN without response", "AUTH PLAIN", "PLAIN", std::nullopt},
    {"PLAIN with response", "AUTH PLAIN AGFsaWNlAHNlY3JldA==", "PLAIN", "AGFsaWNlAHNlY3JldA=="},
    {"lower-case verb and mechanism", "auth plain AGFsaWNl", "PLAIN", "AGFsaWNl"},
    {"LOGIN with empty response", "AUTH LOGIN =", "LOGIN", "="},
    {"mechanism we do not offer still parses", "AUTH CRAM-MD5", "CRAM-MD5", std::nullopt},
    {"underscore and digits", "AUTH x_y-2", "X_Y-2", std::nullopt},
    {"twenty characters", "AUTH SCRAM-SHA-256-PLUSXY", "SCRAM-SHA-256-PLUSXY", std::nullopt},
    {"trailing spaces", "AUTH PLAIN  ", "PLAIN", std::nullopt},
    {"extra spaces between words", "AUTH  PLAIN   AGFs", "PLAIN", "AGFs"},
    // Not base64, but that is the exchange's 501 5.5.2, not a syntax error.
    {"response judged later", "AUTH PLAIN ***", "PLAIN", "***"},
};

TEST(AuthCommand, ParsesMechanismAndInitialResponse) {
  for (const auto& c : kAuthCases) {
    ParseResult r = parse_command(c.line);
    ASSERT_TRUE(r.command) << c.label << ": " << (r.error ? r.error->summary() : "");
    EXPECT_EQ(r.command->verb, Verb::kAuth) << c.label;
    EXPECT_EQ(r.command->auth_mechanism, c.mechanism) << c.label;
    EXPECT_EQ(r.command->auth_initial, c.initial) << c.label;
    // The argument stays as written, as for the other verbs.
    EXPECT_EQ(r.command->arg, c.line.substr(5)) << c.label;
  }
}

struct AuthErrorCase {
  const char* label;
  std::string line;
  int code;
  const char* enhanced;
};

const AuthErrorCase kAuthErrorCases[] = {
    {"no mechanism", "AUTH", 501, "5.5.4"},
    {"only a space", "AUTH ", 501, "5.5.4"},
    {"only spaces", "AUTH    ", 501, "5.5.4"},
    {"two response words", "AUTH PLAIN AGFs aWNl", 501, "5.5.4"},
    {"bad character in mechanism", "AUTH PL@IN", 501, "5.5.4"},
    {"equals in mechanism", "AUTH PLAIN=x", 501, "5.5.4"},
    {"non-ASCII mechanism", "AUTH PL\xc3\x84IN", 501, "5.5.4"},
    {"mechanism of 21 characters", "AUTH SCRAM-SHA-256-PLUSXYZ", 501, "5.5.4"},
    {"tab separator", "AUTH\tPLAIN", 500, "5.5.2"},
    {"bare LF", "AUTH PLAIN\nAGFs", 500, "5.5.2"},
    {"NUL", "AUTH PLAIN\0"s, 500, "5.5.2"},
};

TEST(AuthCommand, RefusesBadSyntax) {
  for (const auto& c : kAuthErrorCases) {
    ParseResult r = parse_command(c.line);
    ASSERT_TRUE(r.error) << c.label;
    EXPECT_FALSE(r.command) << c.label;
    EXPECT_EQ(r.error->code, c.code) << c.label;
    EXPECT_EQ(r.error->enhanced, c.enhanced) << c.label;
  }
}

TEST(AuthCommand, OtherVerbsLeaveTheAuthFieldsEmpty) {
  ParseResult r = parse_command("MAIL FROM:<a@example.com> AUTH=<>");
  ASSERT_TRUE(r.command);
  EXPECT_TRUE(r.command->auth_mechanism.empty());
  EXPECT_FALSE(r.command->auth_initial);
}

}  // namespace
}  // namespace smtplb::smtp
