#include "relay/received.hpp"

#include <ctime>

#include "smtp/address.hpp"

namespace smtplb::relay {

namespace {

// TCP-info's address literal (RFC 5321 4.1.3): an IPv6 one is tagged.
std::string address_literal(std::string_view ip) {
  if (ip.find(':') != std::string_view::npos) return "[IPv6:" + std::string(ip) + "]";
  return "[" + std::string(ip) + "]";
}

// The `for` clause's Mailbox (RFC 5321 4.4: Local-part "@" Domain), or ""
// to leave the clause out: <postmaster> has no domain, and a local part
// that must stay quoted is not written at all.  A quoted one that needs no
// quoting ("john.doe") is the same mailbox unquoted (RFC 5321 4.1.2).
std::string for_mailbox(std::string_view rcpt) {
  const std::size_t at = rcpt.rfind('@');
  if (at == std::string_view::npos) return "";
  std::string_view domain = rcpt.substr(at + 1);
  if (!smtp::is_valid_domain(domain) && !smtp::is_valid_address_literal(domain)) return "";
  std::string_view written = rcpt.substr(0, at);
  std::string local;
  if (written.size() >= 2 && written.front() == '"' && written.back() == '"') {
    for (std::size_t i = 1; i + 1 < written.size(); ++i) {
      if (written[i] == '\\' && i + 2 < written.size()) ++i;  // quoted-pair
      local.push_back(written[i]);
    }
  } else {
    local = written;
  }
  if (!smtp::is_dot_string(local) || !smtp::is_printable_utf8(local) ||
      !smtp::is_printable_utf8(domain))
    return "";
  return local + "@" + std::string(domain);
}

}  // namespace

std::string rfc5322_date(std::chrono::system_clock::time_point t) {
  std::time_t tt = std::chrono::system_clock::to_time_t(t);
  std::tm tm{};
  gmtime_r(&tt, &tm);
  char buf[64];
  std::strftime(buf, sizeof buf, "%a, %d %b %Y %H:%M:%S +0000", &tm);
  return buf;
}

std::string transaction_id(std::string_view session_id, int n) {
  // "-" is atext; "." (the old separator) is not.
  return std::string(session_id) + "-" + std::to_string(n);
}

std::string received_field(const ReceivedInfo& r) {
  std::string out = "Received: from " + r.helo + " (" + address_literal(r.client_ip) + ")\r\n";
  if (!r.tls.empty()) out += "\t(using " + r.tls + ")\r\n";
  out += "\tby " + r.hostname + " (smtplb) with " + r.protocol + " id " + r.id;
  // RFC 5321 4.4: "for" names one recipient; naming many would leak the
  // envelope to every one of them.
  const std::string mailbox = for_mailbox(r.recipient);
  if (!mailbox.empty()) out += "\r\n\tfor <" + mailbox + ">";
  out += ";\r\n\t" + rfc5322_date(r.when) + "\r\n";
  return out;
}

}  // namespace smtplb::relay
