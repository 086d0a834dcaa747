// sasl_test.cpp: strict base64 and the AUTH PLAIN/LOGIN exchange (RFC 4954,
// RFC 4616, draft-murchison-sasl-login).
//
// SECURITY.md 6: bad base64 or a misplaced "=" is 501 5.5.2, "*" is 501
// 5.7.0, a line over 12288 octets is 500 5.5.6, PLAIN without exactly two
// NULs or with an authzid other than the user is 535 5.7.8, and so are
// unusable names and passwords (empty, over the caps, control characters
// in the name, NUL in the password).
#include "smtp/sasl.hpp"

#include <gtest/gtest.h>

#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "smtp/replies.hpp"

namespace smtplb::smtp::sasl {
namespace {

using namespace std::string_literals;

struct DecodeCase {
  const char* label;
  std::string text;
  std::optional<std::string> bytes;  // nullopt: refused
};

const DecodeCase kDecodeCases[] = {
    // RFC 4648 10 test vectors.
    {"empty", "", ""},
    {"one byte", "Zg==", "f"},
    {"two bytes", "Zm8=", "fo"},
    {"three bytes", "Zm9v", "foo"},
    {"four bytes", "Zm9vYg==", "foob"},
    {"five bytes", "Zm9vYmE=", "fooba"},
    {"six bytes", "Zm9vYmFy", "foobar"},
    {"PLAIN message with NULs", "AGFsaWNlAHNlY3JldA==", "\0alice\0secret"s},
    {"the last two alphabet characters", "+/+/", "\xfb\xff\xbf"},
    {"all zero bits", "AAAA", "\0\0\0"s},
    // Refused.
    {"pad at the start", "=AAA", std::nullopt},
    {"pad second", "A=AA", std::nullopt},
    {"pad third then data", "AA=A", std::nullopt},
    {"only pad", "====", std::nullopt},
    {"three pads", "A===", std::nullopt},
    {"pad in the middle", "Zg==Zg==", std::nullopt},
    {"missing pad", "Zg", std::nullopt},
    {"length 3", "Zm8", std::nullopt},
    {"length 5", "Zm9vY", std::nullopt},
    {"one pad short", "Zg=", std::nullopt},
    {"non-zero pad bits, one byte", "Zh==", std::nullopt},
    {"non-zero pad bits, two bytes", "Zm9=", std::nullopt},
    {"leading space", " Zm9v", std::nullopt},
    {"trailing space", "Zm9v ", std::nullopt},
    {"space inside", "Zm9v Zm9v", std::nullopt},
    {"CR LF at the end", "Zm9v\r\n", std::nullopt},
    {"URL-safe alphabet", "-_-_", std::nullopt},
    {"NUL", "Zm9\0"s, std::nullopt},
    {"non-ASCII", "Zm\xc3\xa9", std::nullopt},
    {"cancel star", "*", std::nullopt},
    {"lone pad", "=", std::nullopt},
};

TEST(Base64, DecodesStrictly) {
  for (const auto& c : kDecodeCases) {
    std::optional<std::string> got = base64_decode(c.text);
    EXPECT_EQ(got, c.bytes) << c.label;
  }
}

TEST(Base64, EncodesRfc4648Vectors) {
  for (const auto& c : kDecodeCases) {
    if (!c.bytes) continue;
    EXPECT_EQ(base64_encode(*c.bytes), c.text) << c.label;
  }
}

TEST(Base64, EveryByteValueRoundTrips) {
  std::string all;
  for (int i = 0; i < 256; ++i) all.push_back(static_cast<char>(i));
  // Each length modulo 3, so each padding case meets every byte.
  for (std::size_t n = 0; n < 4; ++n) {
    std::string bytes = all.substr(n);
    std::string text = base64_encode(bytes);
    EXPECT_EQ(text.size() % 4, 0u) << n;
    EXPECT_EQ(base64_decode(text), bytes) << n;
  }
}

TEST(Sasl, MechanismNamesAreCaseInsensitive) {
  EXPECT_EQ(parse_mechanism("PLAIN"), Mechanism::kPlain);
  EXPECT_EQ(parse_mechanism("plain"), Mechanism::kPlain);
  EXPECT_EQ(parse_mechanism("LoGiN"), Mechanism::kLogin);
  EXPECT_EQ(parse_mechanism("CRAM-MD5"), std::nullopt);
  EXPECT_EQ(parse_mechanism("PLAINX"), std::nullopt);
  EXPECT_EQ(parse_mechanism(""), std::nullopt);
  EXPECT_STREQ(to_string(Mechanism::kPlain), "PLAIN");
  EXPECT_STREQ(to_string(Mechanism::kLogin), "LOGIN");
}

// The LOGIN prompts clients expect, literally.
const std::string kUsernamePrompt = "VXNlcm5hbWU6";
const std::string kPasswordPrompt = "UGFzc3dvcmQ6";

TEST(Sasl, LoginPromptsAreUsernameAndPassword) {
  EXPECT_EQ(base64_decode(kUsernamePrompt), "Username:");
  EXPECT_EQ(base64_decode(kPasswordPrompt), "Password:");
}

std::string b64(const std::string& s) {
  return base64_encode(s);
}

Credentials plain(std::string user, std::string password) {
  return Credentials{Mechanism::kPlain, std::move(user), std::move(password)};
}

Credentials login(std::string user, std::string password) {
  return Credentials{Mechanism::kLogin, std::move(user), std::move(password)};
}

struct ExchangeCase {
  const char* label;
  std::string mechanism;
  std::optional<std::string> initial;
  std::vector<std::string> responses;   // the client's lines, one per challenge
  std::vector<std::string> challenges;  // the challenge texts expected, in order
  std::optional<Credentials> credentials;
  int code = 0;  // when no credentials: the final reply
  const char* enhanced = "";
};

const std::string kPasswordAtCap(kMaxPassword, 'p');
const std::string kPasswordOverCap(kMaxPassword + 1, 'p');
const std::string kUserAtCap(kMaxUsername, 'u');
const std::string kUserOverCap(kMaxUsername + 1, 'u');
// A PLAIN response exactly kMaxAuthLine octets long once encoded.
const std::string kLongestPlain = "\0alice\0"s + std::string(kMaxAuthLine / 4 * 3 - 7, 'x');

const ExchangeCase kExchangeCases[] = {
    // PLAIN
    {"PLAIN with initial response",
     "PLAIN",
     b64("\0alice\0secret"s),
     {},
     {},
     plain("alice", "secret")},
    {"PLAIN in lower case", "plain", b64("\0alice\0secret"s), {}, {}, plain("alice", "secret")},
    {"PLAIN with authzid equal to the user",
     "PLAIN",
     b64("alice\0alice\0secret"s),
     {},
     {},
     plain("alice", "secret")},
    {"PLAIN after an empty challenge",
     "PLAIN",
     std::nullopt,
     {b64("\0alice\0secret"s)},
     {""},
     plain("alice", "secret")},
    {"PLAIN with a UTF-8 user name",
     "PLAIN",
     b64("\0j\xc3\xbcrgen\0secret"s),
     {},
     {},
     plain("j\xc3\xbcrgen", "secret")},
    {"PLAIN password may hold tabs and spaces",
     "PLAIN",
     b64("\0alice\0s e\tc"s),
     {},
     {},
     plain("alice", "s e\tc")},
    {"PLAIN password at the cap",
     "PLAIN",
     b64("\0alice\0"s + kPasswordAtCap),
     {},
     {},
     plain("alice", kPasswordAtCap)},
    {"PLAIN user name at the cap",
     "PLAIN",
     b64("\0"s + kUserAtCap + "\0pw"s),
     {},
     {},
     plain(kUserAtCap, "pw")},
    {"PLAIN authzid other than the user",
     "PLAIN",
     b64("admin\0alice\0secret"s),
     {},
     {},
     std::nullopt,
     535,
     "5.7.8"},
    {"PLAIN with one NUL", "PLAIN", b64("alice\0secret"s), {}, {}, std::nullopt, 535, "5.7.8"},
    {"PLAIN with no NUL", "PLAIN", b64("alice secret"), {}, {}, std::nullopt, 535, "5.7.8"},
    {"PLAIN with three NULs",
     "PLAIN",
     b64("\0alice\0sec\0ret"s),
     {},
     {},
     std::nullopt,
     535,
     "5.7.8"},
    {"PLAIN with an empty user", "PLAIN", b64("\0\0secret"s), {}, {}, std::nullopt, 535, "5.7.8"},
    {"PLAIN with an empty password",
     "PLAIN",
     b64("\0alice\0"s),
     {},
     {},
     std::nullopt,
     535,
     "5.7.8"},
    {"PLAIN password over the cap",
     "PLAIN",
     b64("\0alice\0"s + kPasswordOverCap),
     {},
     {},
     std::nullopt,
     535,
     "5.7.8"},
    {"PLAIN user name over the cap",
     "PLAIN",
     b64("\0"s + kUserOverCap + "\0pw"s),
     {},
     {},
     std::nullopt,
     535,
     "5.7.8"},
    {"PLAIN user name with LF",
     "PLAIN",
     b64("\0al\nice\0secret"s),
     {},
     {},
     std::nullopt,
     535,
     "5.7.8"},
    {"PLAIN user name with CR",
     "PLAIN",
     b64("\0alice\r\0secret"s),
     {},
     {},
     std::nullopt,
     535,
     "5.7.8"},
    {"PLAIN user name with a tab",
     "PLAIN",
     b64("\0al\tice\0secret"s),
     {},
     {},
     std::nullopt,
     535,
     "5.7.8"},
    {"PLAIN user name with DEL",
     "PLAIN",
     b64("\0alice\x7f\0secret"s),
     {},
     {},
     std::nullopt,
     535,
     "5.7.8"},
    {"PLAIN empty initial response \"=\"", "PLAIN", "=", {}, {}, std::nullopt, 535, "5.7.8"},
    {"PLAIN initial response with misplaced pad",
     "PLAIN",
     "=AAA",
     {},
     {},
     std::nullopt,
     501,
     "5.5.2"},
    {"PLAIN initial response not base64",
     "PLAIN",
     "alice:secret",
     {},
     {},
     std::nullopt,
     501,
     "5.5.2"},
    {"PLAIN initial response \"*\"", "PLAIN", "*", {}, {}, std::nullopt, 501, "5.5.2"},
    {"PLAIN present but empty initial response", "PLAIN", "", {}, {}, std::nullopt, 501, "5.5.2"},
    // Issue 14: the AUTH line carries as much initial response as a
    // continuation line does (RFC 4954 4), and the caps on the user name
    // and the password still hold.
    {"PLAIN long initial response with the longest user and password",
     "PLAIN",
     b64(std::string(kMaxUsername, 'u') + '\0' + std::string(kMaxUsername, 'u') + '\0' +
         kPasswordAtCap),
     {},
     {},
     plain(std::string(kMaxUsername, 'u'), kPasswordAtCap)},
    {"PLAIN long initial response with a password over the cap",
     "PLAIN",
     b64("\0alice\0"s + kPasswordOverCap),
     {},
     {},
     std::nullopt,
     535,
     "5.7.8"},
    {"PLAIN initial response of exactly 12288 octets is read",
     "PLAIN",
     b64(kLongestPlain),
     {},
     {},
     std::nullopt,
     535,
     "5.7.8"},
    {"PLAIN initial response of 12289 octets",
     "PLAIN",
     b64(kLongestPlain) + "A",
     {},
     {},
     std::nullopt,
     500,
     "5.5.6"},
    {"PLAIN initial response over 12288",
     "PLAIN",
     std::string(kMaxAuthLine + 4, 'A'),
     {},
     {},
     std::nullopt,
     500,
     "5.5.6"},
    {"PLAIN cancelled", "PLAIN", std::nullopt, {"*"}, {""}, std::nullopt, 501, "5.7.0"},
    {"PLAIN response not base64",
     "PLAIN",
     std::nullopt,
     {"not base64!"},
     {""},
     std::nullopt,
     501,
     "5.5.2"},
    {"PLAIN response with a trailing space",
     "PLAIN",
     std::nullopt,
     {b64("\0alice\0secret"s) + " "},
     {""},
     std::nullopt,
     501,
     "5.5.2"},
    {"PLAIN response \"=\" is not empty base64",
     "PLAIN",
     std::nullopt,
     {"="},
     {""},
     std::nullopt,
     501,
     "5.5.2"},
    {"PLAIN empty response", "PLAIN", std::nullopt, {""}, {""}, std::nullopt, 535, "5.7.8"},
    {"PLAIN response of exactly 12288 octets is read",
     "PLAIN",
     std::nullopt,
     {b64(kLongestPlain)},
     {""},
     std::nullopt,
     535,
     "5.7.8"},
    {"PLAIN response of 12289 octets",
     "PLAIN",
     std::nullopt,
     {b64(kLongestPlain) + "A"},
     {""},
     std::nullopt,
     500,
     "5.5.6"},
    {"PLAIN response far over 12288",
     "PLAIN",
     std::nullopt,
     {std::string(65536, 'A')},
     {""},
     std::nullopt,
     500,
     "5.5.6"},
    // LOGIN
    {"LOGIN",
     "LOGIN",
     std::nullopt,
     {b64("alice"), b64("secret")},
     {kUsernamePrompt, kPasswordPrompt},
     login("alice", "secret")},
    {"LOGIN in mixed case",
     "LoGiN",
     std::nullopt,
     {b64("alice"), b64("secret")},
     {kUsernamePrompt, kPasswordPrompt},
     login("alice", "secret")},
    {"LOGIN with the user name as initial response",
     "LOGIN",
     b64("alice"),
     {b64("secret")},
     {kPasswordPrompt},
     login("alice", "secret")},
    {"LOGIN user name \"=\" is empty", "LOGIN", "=", {}, {}, std::nullopt, 535, "5.7.8"},
    {"LOGIN empty user name",
     "LOGIN",
     std::nullopt,
     {""},
     {kUsernamePrompt},
     std::nullopt,
     535,
     "5.7.8"},
    {"LOGIN user name with CR LF asks no password",
     "LOGIN",
     std::nullopt,
     {b64("alice\r\nx")},
     {kUsernamePrompt},
     std::nullopt,
     535,
     "5.7.8"},
    {"LOGIN user name over the cap",
     "LOGIN",
     std::nullopt,
     {b64(kUserOverCap)},
     {kUsernamePrompt},
     std::nullopt,
     535,
     "5.7.8"},
    {"LOGIN empty password",
     "LOGIN",
     std::nullopt,
     {b64("alice"), ""},
     {kUsernamePrompt, kPasswordPrompt},
     std::nullopt,
     535,
     "5.7.8"},
    {"LOGIN password with NUL",
     "LOGIN",
     std::nullopt,
     {b64("alice"), b64("secret\0junk"s)},
     {kUsernamePrompt, kPasswordPrompt},
     std::nullopt,
     535,
     "5.7.8"},
    {"LOGIN password over the cap",
     "LOGIN",
     std::nullopt,
     {b64("alice"), b64(kPasswordOverCap)},
     {kUsernamePrompt, kPasswordPrompt},
     std::nullopt,
     535,
     "5.7.8"},
    {"LOGIN cancelled at the user name",
     "LOGIN",
     std::nullopt,
     {"*"},
     {kUsernamePrompt},
     std::nullopt,
     501,
     "5.7.0"},
    {"LOGIN cancelled at the password",
     "LOGIN",
     std::nullopt,
     {b64("alice"), "*"},
     {kUsernamePrompt, kPasswordPrompt},
     std::nullopt,
     501,
     "5.7.0"},
    {"LOGIN password not base64",
     "LOGIN",
     std::nullopt,
     {b64("alice"), "s3cr3t!"},
     {kUsernamePrompt, kPasswordPrompt},
     std::nullopt,
     501,
     "5.5.2"},
    {"LOGIN password line too long",
     "LOGIN",
     std::nullopt,
     {b64("alice"), std::string(kMaxAuthLine + 1, 'A')},
     {kUsernamePrompt, kPasswordPrompt},
     std::nullopt,
     500,
     "5.5.6"},
    // Others
    {"CRAM-MD5 is not offered", "CRAM-MD5", std::nullopt, {}, {}, std::nullopt, 504, "5.5.4"},
    {"XOAUTH2 with a response is not offered",
     "XOAUTH2",
     b64("user=x"),
     {},
     {},
     std::nullopt,
     504,
     "5.5.4"},
    {"a name that only begins with PLAIN",
     "PLAINTEXT",
     std::nullopt,
     {},
     {},
     std::nullopt,
     504,
     "5.5.4"},
    {"empty mechanism", "", std::nullopt, {}, {}, std::nullopt, 504, "5.5.4"},
};

TEST(AuthExchange, RunsEachCaseToItsEnd) {
  for (const auto& c : kExchangeCases) {
    AuthExchange ex;
    std::optional<std::string_view> initial;
    if (c.initial) initial = *c.initial;
    Step step = ex.start(c.mechanism, initial);
    std::vector<std::string> challenges;
    std::size_t next = 0;
    while (const auto* ch = std::get_if<Challenge>(&step)) {
      EXPECT_FALSE(ex.done()) << c.label;
      challenges.push_back(ch->text);
      ASSERT_LT(next, c.responses.size()) << c.label << ": one challenge too many";
      step = ex.respond(c.responses[next++]);
    }
    EXPECT_TRUE(ex.done()) << c.label;
    EXPECT_EQ(next, c.responses.size()) << c.label << ": ended before every response was read";
    EXPECT_EQ(challenges, c.challenges) << c.label;
    if (c.credentials) {
      const auto* got = std::get_if<Credentials>(&step);
      ASSERT_TRUE(got) << c.label << ": " << std::get<Reply>(step).summary();
      EXPECT_EQ(*got, *c.credentials) << c.label;
    } else {
      const auto* got = std::get_if<Reply>(&step);
      ASSERT_TRUE(got) << c.label << ": expected a reply";
      EXPECT_EQ(got->code, c.code) << c.label;
      EXPECT_EQ(got->enhanced, c.enhanced) << c.label;
    }
  }
}

TEST(AuthExchange, ChallengesAre334WithoutEnhancedCode) {
  AuthExchange plain;
  EXPECT_EQ(std::get<Challenge>(plain.start("PLAIN", std::nullopt)).reply().wire(), "334 \r\n");
  AuthExchange login;
  EXPECT_EQ(std::get<Challenge>(login.start("LOGIN", std::nullopt)).reply().wire(),
            "334 VXNlcm5hbWU6\r\n");
}

TEST(AuthExchange, RespondWithoutAChallengeIsBadSequence) {
  AuthExchange fresh;
  Step s = fresh.respond(b64("alice"));
  ASSERT_TRUE(std::holds_alternative<Reply>(s));
  EXPECT_EQ(std::get<Reply>(s).code, 503);
  EXPECT_EQ(std::get<Reply>(s).enhanced, "5.5.1");

  AuthExchange finished;
  ASSERT_TRUE(
      std::holds_alternative<Credentials>(finished.start("PLAIN", b64("\0alice\0secret"s))));
  Step again = finished.respond(b64("\0alice\0secret"s));
  ASSERT_TRUE(std::holds_alternative<Reply>(again));
  EXPECT_EQ(std::get<Reply>(again).code, 503);
}

TEST(AuthExchange, StartBeginsAFreshExchange) {
  AuthExchange ex;
  ASSERT_TRUE(std::holds_alternative<Challenge>(ex.start("LOGIN", std::nullopt)));
  ASSERT_TRUE(std::holds_alternative<Challenge>(ex.respond(b64("mallory"))));
  // A new AUTH: the LOGIN half-way through is forgotten, user name included.
  ASSERT_TRUE(std::holds_alternative<Challenge>(ex.start("LOGIN", b64("alice"))));
  Step s = ex.respond(b64("secret"));
  ASSERT_TRUE(std::holds_alternative<Credentials>(s));
  EXPECT_EQ(std::get<Credentials>(s), login("alice", "secret"));
}

struct ReplyCase {
  const char* label;
  Reply reply;
  int code;
  const char* enhanced;
};

// DESIGN.md and SECURITY.md 6 fix these codes; the texts are free.
const ReplyCase kReplyCases[] = {
    {"auth_succeeded", replies::auth_succeeded(), 235, "2.7.0"},
    {"auth_failed", replies::auth_failed(), 535, "5.7.8"},
    {"auth_bad_base64", replies::auth_bad_base64(), 501, "5.5.2"},
    {"auth_cancelled", replies::auth_cancelled(), 501, "5.7.0"},
    {"auth_line_too_long", replies::auth_line_too_long(), 500, "5.5.6"},
    {"auth_needs_tls", replies::auth_needs_tls(), 538, "5.7.11"},
    {"auth_unknown_mechanism", replies::auth_unknown_mechanism(), 504, "5.5.4"},
    {"auth_already_done", replies::auth_already_done(), 503, "5.5.1"},
    {"auth_too_many_failures", replies::auth_too_many_failures(), 421, "4.7.0"},
    {"auth_temporary_failure", replies::auth_temporary_failure(), 454, "4.7.0"},
    {"tls_ready", replies::tls_ready(), 220, "2.0.0"},
    {"tls_not_available", replies::tls_not_available(), 454, "4.7.0"},
    {"tls_required", replies::tls_required(), 530, "5.7.0"},
};

TEST(Replies, AuthAndTlsRepliesKeepTheirContractCodes) {
  for (const auto& c : kReplyCases) {
    EXPECT_EQ(c.reply.code, c.code) << c.label;
    EXPECT_EQ(c.reply.enhanced, c.enhanced) << c.label;
    ASSERT_EQ(c.reply.lines.size(), 1u) << c.label;
    EXPECT_FALSE(c.reply.lines[0].empty()) << c.label;
  }
  EXPECT_EQ(replies::auth_needs_tls().lines[0],
            "Encryption required for requested authentication mechanism");
  EXPECT_EQ(replies::tls_ready().lines[0], "Ready to start TLS");
  EXPECT_EQ(replies::tls_required().lines[0], "Must issue a STARTTLS command first");
  // 421 closes the session; the others leave it open.
  EXPECT_TRUE(replies::auth_too_many_failures().closes_session());
  EXPECT_FALSE(replies::auth_failed().closes_session());
}

}  // namespace
}  // namespace smtplb::smtp::sasl
