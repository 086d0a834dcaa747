// status.hpp: `smtplb status -c FILE`: the admin API's GET /api/pools as a
// table, for an operator at a shell.
//
// Reads `admin.listen` and `admin.token_file` from the configuration,
// connects to the admin listener (a wildcard address, 0.0.0.0 or ::, is
// reached on the loopback address of its family), sends the Host the
// listener expects and, with a token_file, `Authorization: Bearer TOKEN`,
// and prints one line per backend:
//
//   POOL  BACKEND  STATE  WEIGHT  IN_FLIGHT  CHECKS(ok/failed)  REASON
//
// The whole exchange (connect, request, reply) must finish within
// kStatusTimeout.  Exit status 0 when the table was printed; 1, with one
// line on `err` saying why, when the configuration has no admin section,
// the token file cannot be read, the API cannot be reached, or it answers
// anything but 200 with the expected JSON.
#pragma once

#include <chrono>
#include <iosfwd>
#include <string>

#include "config/config.hpp"

namespace smtplb::app {

inline constexpr std::chrono::seconds kStatusTimeout{5};

int status(const config::Config& cfg, std::ostream& out, std::ostream& err);

// The table for a GET /api/pools body; throws std::exception (with a
// message for the operator) when the body is not the expected JSON.
// Exposed so that it can be unit-tested without a server.
std::string format_pools_table(const std::string& pools_json);

}  // namespace smtplb::app
