// session_counters.cpp: see session_counters.hpp.
#include "server/session_counters.hpp"

namespace smtplb::server {

const char* SessionCounters::to_string(Limit l) {
  switch (l) {
    case Limit::kConnections:
      return "connections";
    case Limit::kConnectionsPerIp:
      return "connections_per_ip";
    case Limit::kConnectionRate:
      return "connection_rate_per_ip";
    case Limit::kMessageRate:
      return "message_rate_per_ip";
    case Limit::kErrors:
      return "errors";
    case Limit::kCommandTime:
      return "command_time";
    case Limit::kDataTime:
      return "data_time";
    case Limit::kSessionTime:
      return "session_time";
    case Limit::kCount:
      break;
  }
  return "?";
}

}  // namespace smtplb::server
