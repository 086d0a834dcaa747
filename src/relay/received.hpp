// received.hpp: the one trace field smtplb adds to each message
// (RFC 5321 4.4, DESIGN.md "Trace header").
//
// Everything in it is either smtplb's own or was validated by the command
// parser (the HELO name is a domain or address literal, the address is the
// socket's), so a client cannot inject header text through it.  The `for`
// clause is written only for a recipient that needs no quoting: a quoted
// local part may hold ";", ">" or "by", which naive readers of the field
// would take for its structure.
#pragma once

#include <chrono>
#include <string>
#include <string_view>

namespace smtplb::relay {

struct ReceivedInfo {
  std::string helo;       // validated HELO/EHLO argument
  std::string client_ip;  // from the socket: "192.0.2.1" or "2001:db8::1"
  std::string hostname;   // ours
  std::string protocol;   // SMTP, ESMTP, ESMTPS, ESMTPSA, UTF8SMTP... (RFC 3848, RFC 6531)
  std::string tls;        // "TLSv1.3 with cipher ..." (ours: from OpenSSL); empty: none
  std::string id;         // smtplb's transaction id (transaction_id())
  std::string recipient;  // only when there is exactly one, as the client wrote it
  std::chrono::system_clock::time_point when;
};

// The field with its CR LF, folded to stay under 78 octets a line where
// it can.
std::string received_field(const ReceivedInfo& r);

// RFC 5322 3.3 date-time, in UTC.
std::string rfc5322_date(std::chrono::system_clock::time_point t);

// The id of a session's `n`-th transaction: the Received field's `id`,
// which RFC 5321 4.4 makes an Atom (no "."), and the same string in the
// log's t= and the client's "250 2.0.0 OK queued as <id>".
std::string transaction_id(std::string_view session_id, int n);

}  // namespace smtplb::relay
