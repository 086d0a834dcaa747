// main.cpp: the command line (DESIGN.md "CLI").
//   smtplb run -c FILE [--log-format text|json] [--log-level LEVEL]
//   smtplb check -c FILE
//   smtplb status -c FILE     (the admin API's pools and backends, as a table)
//   smtplb version
#include <CLI/CLI.hpp>
#include <iostream>

#include "app/status.hpp"
#include "config/config.hpp"
#include "log/log.hpp"
#include "runtime/runtime.hpp"

#ifndef SMTPLB_VERSION
#define SMTPLB_VERSION "0.0.0"
#endif

int main(int argc, char** argv) {
  CLI::App app{"smtplb: an SMTP load balancer with transactional failover"};
  app.require_subcommand(1);
  std::string config_path, log_format = "text", log_level = "info";

  auto* run = app.add_subcommand("run", "run in the foreground, logging to stderr");
  run->add_option("-c,--config", config_path, "configuration file")->required();
  run->add_option("--log-format", log_format, "text or json")
      ->check(CLI::IsMember({"text", "json"}));
  run->add_option("--log-level", log_level, "trace, debug, info, warn, error")
      ->check(CLI::IsMember({"trace", "debug", "info", "warn", "error"}));
  auto* check = app.add_subcommand("check", "validate a configuration file");
  check->add_option("-c,--config", config_path, "configuration file")->required();
  auto* status = app.add_subcommand(
      "status", "print the backends' states, asked of the running smtplb's admin API");
  status->add_option("-c,--config", config_path, "configuration file")->required();
  app.add_subcommand("version", "print the version");

  CLI11_PARSE(app, argc, argv);

  if (app.got_subcommand("version")) {
    std::cout << "smtplb " << SMTPLB_VERSION << "\n";
    return 0;
  }
  auto loaded = smtplb::config::load_config(config_path);
  if (!loaded.errors.empty()) {
    for (const auto& e : loaded.errors) std::cerr << e.str() << "\n";
    std::cerr << loaded.errors.size() << " error(s) in " << config_path << "\n";
    return 1;
  }
  if (app.got_subcommand("check")) {
    std::cout << "configuration OK\n";
    return 0;
  }
  if (app.got_subcommand("status"))
    return smtplb::app::status(*loaded.config, std::cout, std::cerr);
  smtplb::log::init(log_format == "json" ? smtplb::log::Format::kJson : smtplb::log::Format::kText,
                    spdlog::level::from_str(log_level));
  return smtplb::runtime::run(loaded.config);
}
