// failure.hpp: why a backend was left.
//
// One enum for every way a backend can fail a transaction (Envoy's
// UpstreamFailureReason), for logs and counters.  What a failure means for
// the transaction -- replay, answer, charge the backend -- is decided in
// one place, relay/replay_policy.hpp.
#pragma once

namespace smtplb::upstream {

enum class Failure {
  kNone,
  kConnectRefused,    // connect failed at once
  kConnectTimeout,    // connect did not complete within backend_connect
  kBannerRefused,     // 421/554 or other non-220 greeting
  kEhloRefused,       // neither EHLO nor HELO accepted
  kShuttingDown,      // 421 to a command
  kTransient,         // 4xx to MAIL, DATA or end of data
  kPermanent,         // 5xx: final, passed to the client
  kDropped,           // connection closed or reset
  kStalled,           // no reply within backend_reply
  kSilentFinalDot,    // no reply to the final dot within backend_data_done
  kProtocol,          // a malformed or unsolicited reply
  kNotCapable,        // lacks SMTPUTF8/8BITMIME/SIZE the message needs
  kRecipientRefused,  // refused on replay a recipient another backend accepted
  kAtLimit,           // at max_connections or max_rate: no room now, not ill
  // Appended, so the values the counters and the admin model know keep
  // their numbers.
  kTls,             // backend `tls:` set and TLS not had: no STARTTLS offered or
                    // refused, bytes after its 220 (CVE-2021-38371), a failed
                    // handshake or certificate check.  Never a plain-text fallback.
  kNoXclient,       // `identity: xclient` and the backend offers no XCLIENT (with ADDR)
  kXclientRefused,  // a reply other than 220 to XCLIENT
  kLocalLimit,      // smtplb itself is out of descriptors (EMFILE/ENFILE): never the backend's
};

const char* to_string(Failure f);

// Does this failure count against the backend's health (passive detection)?
// A capability mismatch or a recipient disagreement is not ill health.
inline bool counts_against_backend(Failure f) {
  return f != Failure::kNone && f != Failure::kPermanent && f != Failure::kNotCapable &&
         f != Failure::kRecipientRefused && f != Failure::kTransient && f != Failure::kAtLimit &&
         f != Failure::kLocalLimit;
}

}  // namespace smtplb::upstream
