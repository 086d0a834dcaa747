// xclient.hpp: Postfix's XCLIENT extension (XCLIENT_README), with which
// smtplb tells a backend who the real client is, so the backend's own
// access rules, logs and Received header see the client, not smtplb.
//
// Pure: find_xclient() reads the backend's EHLO reply for the attribute
// names it accepts; xclient_commands() builds the command lines to send
// (each with its CR LF).  Only advertised attributes are sent, every value
// xtext-encoded (RFC 3461 4), so nothing a client chose (its HELO name,
// its login) can add a space, a parameter or a line to the command; an
// unknown value is "[UNAVAILABLE]".  A backend answers each line with 220
// and forgets the EHLO (the session sends EHLO again).
//
// XCLIENT attributes last until the connection closes, and a pooled
// connection carries many clients (SECURITY.md 5: re-sent before each
// MAIL).  So every advertised attribute is always sent, "[UNAVAILABLE]"
// included: leaving LOGIN out for a client that did not authenticate would
// let it inherit the previous client's login.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "smtp/reply.hpp"

namespace smtplb::smtp {

// What smtplb knows about the client.  An empty string (or no port) is
// "unknown" and goes out as [UNAVAILABLE].
struct XclientAttributes {
  std::string addr;  // "192.0.2.1" or "2001:db8::1" (sent as IPV6:2001:db8::1)
  std::optional<std::uint16_t> port;
  std::string name;   // reverse DNS name of the client
  std::string helo;   // its HELO/EHLO argument
  std::string proto;  // "SMTP" or "ESMTP"
  std::string login;  // the AUTH user name; empty when not authenticated
};

// The attributes a backend advertised ("250-XCLIENT NAME ADDR PORT ...").
// Others it may list (REVERSE_NAME, DESTADDR, DESTPORT) are ignored.
struct XclientSupport {
  bool name = false;
  bool addr = false;
  bool port = false;
  bool proto = false;
  bool helo = false;
  bool login = false;
  bool operator==(const XclientSupport&) const = default;
};

// RFC 5321 4.5.3.1.4, which XCLIENT_README repeats: 512 octets a command
// line, CR LF included.
inline constexpr std::size_t kMaxXclientLine = 512;

// One EHLO keyword line, the text after "250-" or "250 ": the attributes
// when it is the XCLIENT line (keyword and names in any case), nullopt for
// any other line.
std::optional<XclientSupport> parse_xclient_keyword(std::string_view ehlo_line);

// The XCLIENT line of a whole EHLO reply (its first line, the greeting, is
// skipped), or nullopt when the backend offers no XCLIENT.
std::optional<XclientSupport> find_xclient(const Reply& ehlo);

// The XCLIENT command lines, each ending in CR LF and at most
// kMaxXclientLine octets, in the order ADDR PORT NAME HELO PROTO LOGIN,
// as many attributes per line as fit (XCLIENT_README note 1).  An
// attribute whose encoded value cannot fit a line even alone (a HELO name
// of 255 UTF-8 octets triples in xtext) is sent as [UNAVAILABLE] rather
// than cut.  Empty when the backend advertised none of the attributes.
std::vector<std::string> xclient_commands(const XclientAttributes& client,
                                          const XclientSupport& advertised);

}  // namespace smtplb::smtp
