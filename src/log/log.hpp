// log.hpp: smtplb's two kinds of log line, both on stderr through spdlog.
//
// Events (start, stop, backend state changes) are free text; every
// transaction gets one structured summary line (key=value, or one JSON
// object with --log-format json).  Anything a peer sent is escaped first:
// CR, LF and other controls can never forge a log line (SECURITY.md 2).
#pragma once

#include <spdlog/spdlog.h>

#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace smtplb::log {

enum class Format { kText, kJson };

void init(Format f, spdlog::level::level_enum level = spdlog::level::info);
Format format();

// Printable ASCII kept; controls, quotes, backslash and 8-bit bytes as \xNN.
std::string escape(std::string_view peer_text);

// Whom a line is about: the session (s=) and, inside a transaction, the
// transaction (t=).  Set once where they are made, so that every line
// about them carries both ids, the relay's included.  `session` views the
// session's own id, which outlives everything of the session that logs:
// a new transaction costs no copy of it.
struct Scope {
  std::string_view session;
  std::string transaction;  // empty: between transactions
};

// One structured record: ordered key/value pairs.  Values are escaped
// when written; numbers are passed as strings with `raw` set.
class Record {
 public:
  explicit Record(std::string_view event) { add("event", event); }
  // The event, then s= and (when in a transaction) t=.
  Record(std::string_view event, const Scope& scope) : Record(event) {
    add("s", scope.session);
    if (!scope.transaction.empty()) add("t", scope.transaction);
  }
  Record& add(std::string_view key, std::string_view value, bool raw = false) {
    fields_.push_back({std::string(key), std::string(value), raw});
    return *this;
  }
  Record& add(std::string_view key, long long value) {
    return add(key, std::to_string(value), true);
  }
  // Logs at `level`.
  void emit(spdlog::level::level_enum level = spdlog::level::info) const;

 private:
  struct Field {
    std::string key, value;
    bool raw;
  };
  std::vector<Field> fields_;
};

}  // namespace smtplb::log
