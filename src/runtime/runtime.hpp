// runtime.hpp: `smtplb run`: one thread and io_context per core, signals.
//
// SIGTERM/SIGINT: stop accepting, let transactions in flight finish until
// timeouts.shutdown, then close the rest with 421 and exit.  No 250 is
// ever given for mail a backend has not accepted, so stopping at any
// moment loses nothing.
#pragma once

#include <memory>

#include "config/config.hpp"

namespace smtplb::runtime {

int run(std::shared_ptr<const config::Config> cfg);

}  // namespace smtplb::runtime
