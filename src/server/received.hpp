// received.hpp: the one trace field smtplb adds to each message
// (RFC 5321 4.4, DESIGN.md "Trace header").
//
// Everything in it is either smtplb's own or was validated by the command
// parser (the HELO name is a domain or address literal, the address is the
// socket's), so a client cannot inject header text through it.
#pragma once

#include <chrono>
#include <string>
#include <string_view>

namespace smtplb::server {

struct ReceivedInfo {
  std::string helo;       // validated HELO/EHLO argument
  std::string client_ip;  // from the socket
  std::string hostname;   // ours
  std::string protocol;   // SMTP, ESMTP, ESMTPS, ESMTPSA, UTF8SMTP... (RFC 3848, RFC 6531)
  std::string tls;        // "TLSv1.3 with cipher ..." (ours: from OpenSSL); empty: none
  std::string id;         // smtplb's transaction id
  std::string recipient;  // only when there is exactly one
  std::chrono::system_clock::time_point when;
};

// The field with its CR LF, folded to stay under 78 octets a line where
// it can.
std::string received_field(const ReceivedInfo& r);

// RFC 5322 3.3 date-time, in UTC.
std::string rfc5322_date(std::chrono::system_clock::time_point t);

}  // namespace smtplb::server
