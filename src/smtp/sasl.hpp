// sasl.hpp: the server side of SMTP AUTH (RFC 4954) for the two password
// mechanisms smtplb offers, PLAIN (RFC 4616) and LOGIN
// (draft-murchison-sasl-login), as an exchange of values.
//
// Pure: the session starts an AuthExchange with the AUTH command's
// mechanism and initial response, sends each 334 challenge it gets back,
// feeds the client's next line to respond(), and stops at the first
// Credentials (check them off the event loop, then 235 or 535) or Reply
// (send it; the exchange is over).  Nothing here knows a user or a hash.
//
// The reply for each failure is contract (SECURITY.md 6, DESIGN.md):
//   unknown mechanism                               504 5.5.4
//   "*" from the client (cancel, RFC 4954 4)        501 5.7.0
//   not strict base64 (RFC 4648 4)                  501 5.5.2
//   a response line over kMaxAuthLine octets        500 5.5.6
//   PLAIN without exactly two NULs, an empty or
//   unusable user name, an authzid other than the
//   user, an empty or over-long password            535 5.7.8
// All malformed credentials get the same 535 a wrong password gets, so the
// session counts them as failures (brute force, SECURITY.md 6) and the
// client learns nothing from the difference.
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <variant>

#include "smtp/reply.hpp"

namespace smtplb::smtp::sasl {

// RFC 4954 4: servers must take responses of at least 12288 octets (the
// longest any registered mechanism needs, encoded).  Counted without the
// CR LF; the session's line reader must allow this many plus two.
inline constexpr std::size_t kMaxAuthLine = 12288;
// Passwords go to crypt(3), whose cost for some hash types grows with the
// password's length: OpenSSH's unbounded passwords made a CPU exhaustion
// (CVE-2016-6515, fixed with a 1024 cap).  1024 is far above any password
// a person or a password manager uses.
inline constexpr std::size_t kMaxPassword = 1024;
// A user name is a key in the password file and lands in logs; 256 is well
// above any real login and keeps a log line bounded.
inline constexpr std::size_t kMaxUsername = 256;

// RFC 4648 4, strictly: the alphabet A-Z a-z 0-9 + / only, no white space,
// a length that is a multiple of 4, "=" only as the last one or two
// characters, and zero pad bits (section 3.5), so every accepted text is the
// one encode() would write.  The empty string decodes to the empty string.
std::optional<std::string> base64_decode(std::string_view text);
std::string base64_encode(std::string_view bytes);

enum class Mechanism { kPlain, kLogin };

// "PLAIN" or "LOGIN".
const char* to_string(Mechanism m);
// Case-insensitive (RFC 4422 3.1 names are upper case, clients vary).
std::optional<Mechanism> parse_mechanism(std::string_view name);

// The exchange's result, to be checked against the password file.
struct Credentials {
  Mechanism mechanism = Mechanism::kPlain;
  std::string username;  // 1 to kMaxUsername octets, no control characters
  std::string password;  // 1 to kMaxPassword octets, no NUL
  bool operator==(const Credentials&) const = default;
};

// Send "334 " and `text` (base64, possibly empty) and call respond() with
// the client's next line.
struct Challenge {
  std::string text;
  Reply reply() const { return make_reply(334, "", text); }
  bool operator==(const Challenge&) const = default;
};

// One of: the next challenge, the credentials, or the final error reply.
using Step = std::variant<Challenge, Credentials, Reply>;

class AuthExchange {
 public:
  // `AUTH mechanism [initial-response]`.  An initial response of "=" is an
  // empty one (RFC 4954 4); an absent one makes PLAIN send an empty
  // challenge and LOGIN ask for the user name.
  Step start(std::string_view mechanism, std::optional<std::string_view> initial_response);

  // The client's line (without CR LF) answering the last challenge.
  // Only while the last step was a Challenge.
  Step respond(std::string_view client_line);

  // True once a step other than a Challenge was returned.
  bool done() const { return state_ == State::kDone; }

 private:
  enum class State { kIdle, kPlainResponse, kLoginUsername, kLoginPassword, kDone };

  Step plain(std::string_view message);
  Step login_username(std::string_view username);
  Step login_password(std::string_view password);
  Step finish(Step step);

  State state_ = State::kIdle;
  std::string username_;  // LOGIN, between its two challenges
};

}  // namespace smtplb::smtp::sasl
