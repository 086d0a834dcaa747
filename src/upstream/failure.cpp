#include "upstream/failure.hpp"

namespace smtplb::upstream {

const char* to_string(Failure f) {
  switch (f) {
    case Failure::kNone:
      return "ok";
    case Failure::kConnectRefused:
      return "connect_refused";
    case Failure::kConnectTimeout:
      return "connect_timeout";
    case Failure::kBannerRefused:
      return "banner_refused";
    case Failure::kEhloRefused:
      return "ehlo_refused";
    case Failure::kShuttingDown:
      return "421";
    case Failure::kTransient:
      return "4xx";
    case Failure::kPermanent:
      return "5xx";
    case Failure::kDropped:
      return "dropped";
    case Failure::kStalled:
      return "stalled";
    case Failure::kSilentFinalDot:
      return "silent_final_dot";
    case Failure::kProtocol:
      return "protocol_error";
    case Failure::kNotCapable:
      return "not_capable";
    case Failure::kRecipientRefused:
      return "recipient_refused_on_replay";
    case Failure::kAtLimit:
      return "at_limit";
    case Failure::kTls:
      return "tls_failed";
    case Failure::kNoXclient:
      return "no_xclient";
    case Failure::kXclientRefused:
      return "xclient_refused";
    case Failure::kLocalLimit:
      return "local_descriptors";
  }
  return "?";
}

}  // namespace smtplb::upstream
