// reloader.hpp: SIGHUP and POST /api/reload (DESIGN.md, issue "reload").
//
// The file is read and checked again exactly as `smtplb check` does; a bad
// one is refused with the same FILE:LINE:COL errors and the running
// configuration stays.  A good one becomes the next generation
// (runtime/generation.hpp): every core uses it for new transactions, open
// client sessions stay, transactions in flight finish on the generation
// they began with, backends that stay keep their state and pooled
// sessions, the health and agent checks restart on the new backend list.
// What is bound at start-up (listeners, workers, the admin listener) cannot
// change this way: such a file is refused, naming the change, so that what
// runs is always what the file says.
//
// Everything here runs on the first core, which owns Shared::generation,
// the health checks and the admin API.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "admin/model.hpp"
#include "balance/health_checker.hpp"
#include "runtime/core.hpp"
#include "runtime/mx_watcher.hpp"

namespace smtplb::runtime {

class Reloader {
 public:
  Reloader(runtime::Shared& shared, std::vector<runtime::Core*> cores);
  ~Reloader();

  // Start-up: the health and agent checks of the first generation.
  void start();
  // Loads the file the running configuration came from; `trigger` names
  // who asked (for the log).  200 with the new generation, or 422 with
  // the errors.
  admin::ActionResult reload(std::string_view trigger);
  // Shutdown: checks end and later reloads are ignored.
  void stop();

 private:
  void start_checks();
  // Every core uses `next` for new transactions; the checks restart on it.
  void apply(std::shared_ptr<const runtime::Generation> next);
  // The DNS changed an `mx: DOMAIN` pool's hosts: the same configuration
  // with the new hosts becomes the next generation.
  void mx_changed();

  runtime::Shared& shared_;
  std::vector<runtime::Core*> cores_;
  bool stopped_ = false;
  // The checks of the generation in force, and those of earlier ones
  // still finishing a check (destroyed once they have).
  struct Checks {
    std::shared_ptr<const runtime::Generation> gen;
    std::unique_ptr<balance::HealthChecker> checker;
  };
  Checks checks_;
  std::vector<Checks> retired_;
  MxWatcher mx_;
};

}  // namespace smtplb::runtime
