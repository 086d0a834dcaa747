// reply_helpers.hpp: small pure helpers for the replies a transaction
// passes on from its backends.
#pragma once

#include <string>

#include "smtp/reply.hpp"

namespace smtplb::relay {

// The enhanced code a reply gets when the backend sent none (we advertise
// ENHANCEDSTATUSCODES to the client, RFC 2034).
inline smtp::Reply with_enhanced(smtp::Reply r, const char* ok_code) {
  if (!r.enhanced.empty()) return r;
  if (r.code >= 200 && r.code < 300)
    r.enhanced = ok_code;
  else if (r.code >= 400 && r.code < 500)
    r.enhanced = "4.0.0";
  else if (r.code >= 500)
    r.enhanced = "5.0.0";
  return r;
}

// The backend's queue id, for the log: Postfix "250 2.0.0 Ok: queued as
// 4F1B2C3D", Exim "250 OK id=1rKx2B-000ABC-3x"; empty when the reply names
// none.
inline std::string queue_id_from(const smtp::Reply& r) {
  if (r.lines.empty()) return {};
  std::string_view l = r.lines[0];
  std::string_view w;
  if (auto p = l.find("queued as "); p != std::string_view::npos) {
    w = l.substr(p + 10);
  } else if (auto q = l.find("id="); q != std::string_view::npos) {
    w = l.substr(q + 3);
  } else {
    return {};
  }
  w = w.substr(0, w.find(' '));
  if (w.size() > 64) w = w.substr(0, 64);
  return std::string(w);
}

}  // namespace smtplb::relay
