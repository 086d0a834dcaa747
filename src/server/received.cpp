#include "server/received.hpp"

#include <ctime>

namespace smtplb::server {

std::string rfc5322_date(std::chrono::system_clock::time_point t) {
  std::time_t tt = std::chrono::system_clock::to_time_t(t);
  std::tm tm{};
  gmtime_r(&tt, &tm);
  char buf[64];
  std::strftime(buf, sizeof buf, "%a, %d %b %Y %H:%M:%S +0000", &tm);
  return buf;
}

std::string received_field(const ReceivedInfo& r) {
  std::string out = "Received: from " + r.helo + " ([" + r.client_ip + "])\r\n";
  if (!r.tls.empty()) out += "\t(using " + r.tls + ")\r\n";
  out += "\tby " + r.hostname + " (smtplb) with " + r.protocol + " id " + r.id;
  // RFC 5321 4.4: "for" names one recipient; naming many would leak the
  // envelope to every one of them.
  if (!r.recipient.empty()) out += "\r\n\tfor <" + r.recipient + ">";
  out += ";\r\n\t" + rfc5322_date(r.when) + "\r\n";
  return out;
}

}  // namespace smtplb::server
