// command.hpp: the client's command line as a value (RFC 5321 4.1, with the
// ESMTP parameters of RFC 1870 SIZE, RFC 6152 8BITMIME, RFC 6531 SMTPUTF8).
//
// Pure: parse_command() takes one line without its CRLF and returns either a
// Command or the exact reply the client should get.  It never forwards a
// client's raw parameters: the relay rebuilds MAIL/RCPT from these values.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "smtp/address.hpp"
#include "smtp/reply.hpp"

namespace smtplb::smtp {

enum class Verb {
  kHelo,
  kEhlo,
  kMail,
  kRcpt,
  kData,
  kRset,
  kNoop,
  kQuit,
  kVrfy,
  kHelp,
  kStartTls,
  kAuth,
  kBdat,
  kXclient,  // a client naming its own identity: refused (only smtplb sends XCLIENT)
  kHttp,     // GET/POST/CONNECT/...: a cross-protocol attack, close at once
  kUnknown,
};

const char* to_string(Verb v);

enum class Body { kUnspecified, k7Bit, k8BitMime };

struct MailParams {
  std::optional<std::uint64_t> size;  // SIZE=; UINT64_MAX when it overflowed
  Body body = Body::kUnspecified;
  bool smtputf8 = false;
  bool auth_given = false;  // AUTH=..., ignored unless authenticated (RFC 4954 5)
};

struct Command {
  Verb verb = Verb::kUnknown;
  std::string domain;  // HELO/EHLO argument
  Path path;           // MAIL/RCPT
  MailParams mail;     // MAIL parameters
  std::string arg;     // VRFY/HELP/AUTH/BDAT argument as written
  // AUTH mechanism [initial-response] (RFC 4954 4): the mechanism upper
  // cased, the initial response as written (base64 or "=", checked by
  // sasl::AuthExchange, which owns its replies).
  std::string auth_mechanism;
  std::optional<std::string> auth_initial;
};

struct ParseResult {
  std::optional<Command> command;
  std::optional<Reply> error;  // set when command is not
};

// RFC 5321 4.5.3.1.4: 512 octets with CRLF; commands with ESMTP
// parameters may be longer (4.5.3.1.4, RFC 1869): we allow 2048 for MAIL
// and RCPT, as Postfix and the backends we front do.
constexpr std::size_t kMaxCommandLine = 512;
constexpr std::size_t kMaxParameterCommandLine = 2048;
// RFC 4954 4: AUTH's initial response may be as long as a response line,
// 12288 octets (sasl::kMaxAuthLine, which judges it: longer is 500 5.5.6),
// so the AUTH line holds "AUTH ", a mechanism name of up to 20 octets
// (RFC 4422 3.1), a space, the response and CR LF.
constexpr std::size_t kMaxAuthCommandLine = 5 + 20 + 1 + 12288 + 2;
// The longest command line of any verb: what the session's reader takes
// before it knows the verb.
constexpr std::size_t kMaxAnyCommandLine = kMaxAuthCommandLine;

ParseResult parse_command(std::string_view line);

// The verb a line's first word names (case-insensitive, ended by a space
// or the line's end), kUnknown if none: enough of a line to know whose
// limit and whose "too long" reply apply (an over-long line's head).
Verb verb_of(std::string_view line);

// The line length (with CRLF) allowed for this verb.
std::size_t max_line_for(Verb v);

}  // namespace smtplb::smtp
