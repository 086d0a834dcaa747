// address.hpp: RFC 5321 paths and mailboxes, with RFC 6531 (SMTPUTF8).
//
// Pure: takes the text between "FROM:"/"TO:" and the parameters, returns a
// value or the reason it is not an address.  Local parts are kept exactly as
// written (case and quoting, SECURITY.md 4); domains are compared
// case-insensitively by the policy code, never rewritten here.
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace smtplb::smtp {

struct Mailbox {
  std::string local_part;  // as written, quotes included
  std::string domain;      // as written; "[...]" for an address literal; empty for <postmaster>
  bool is_address_literal() const { return !domain.empty() && domain.front() == '['; }
  bool has_non_ascii() const;
  std::string str() const { return domain.empty() ? local_part : local_part + "@" + domain; }
};

struct Path {
  bool null = false;  // "<>"
  Mailbox mailbox;
  std::string str() const { return null ? std::string() : mailbox.str(); }
};

enum class PathKind { kReversePath, kForwardPath };

struct PathResult {
  std::optional<Path> path;
  std::string error;  // why it is not a path, for the 501 text
  std::size_t consumed = 0;
};

// Parses "<...>" at the start of `text`.  A source route ("<@a,@b:u@d>") is
// accepted and dropped (RFC 5321 appendix C).  `<>` only as a reverse path;
// `<postmaster>` (any case) only as a forward path (RFC 5321 4.5.1).
// Non-ASCII is allowed in the local part and domain; whether SMTPUTF8 was
// given is the caller's business.
PathResult parse_path(std::string_view text, PathKind kind);

// Domain syntax (RFC 5321 4.1.2, letters may be UTF-8 U-label bytes).
bool is_valid_domain(std::string_view d);
// "[1.2.3.4]", "[IPv6:...]" (RFC 5321 4.1.3).
bool is_valid_address_literal(std::string_view d);
// Dot-string (RFC 5321 4.1.2): a local part that needs no quoting; atext
// may be UTF-8 (RFC 6531).
bool is_dot_string(std::string_view s);
// Well-formed UTF-8 (RFC 3629) without control characters: no C0 or DEL,
// no C1 (U+0080-U+009F, NEL among them) and no U+2028/U+2029, which some
// header parsers and log readers take for line breaks.  What a name the
// client chose must be before it is written into a header field.
bool is_printable_utf8(std::string_view s);

// ASCII lowercase copy, for comparing domains.
std::string ascii_lower(std::string_view s);

}  // namespace smtplb::smtp
