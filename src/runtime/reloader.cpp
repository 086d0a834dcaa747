#include "runtime/reloader.hpp"

#include <boost/json.hpp>

#include "log/log.hpp"
#include "runtime/generation_builder.hpp"

namespace smtplb::runtime {

namespace json = boost::json;

namespace {

json::array to_json(const std::vector<std::string>& v) {
  json::array a;
  for (const auto& s : v) a.emplace_back(s);
  return a;
}

}  // namespace

Reloader::Reloader(runtime::Shared& shared, std::vector<runtime::Core*> cores)
    : shared_(shared),
      cores_(std::move(cores)),
      mx_(
          cores_.front()->io(), [this] { return cores_.front()->lookup(); },
          [this] { mx_changed(); }, shared.counters.mx_refresh_failures) {}

Reloader::~Reloader() = default;

void Reloader::start() {
  start_checks();
  mx_.watch(shared_.generation->cfg);
}

void Reloader::apply(std::shared_ptr<const runtime::Generation> next) {
  shared_.generation = next;
  shared_.shutdown_ms =
      std::chrono::duration_cast<std::chrono::milliseconds>(next->cfg->timeouts.shutdown).count();
  for (auto* core : cores_) core->adopt(next);
  // The old checks stop; the new ones start with the states that stayed.
  if (checks_.checker) {
    checks_.checker->stop();
    retired_.push_back(std::move(checks_));
  }
  std::erase_if(retired_, [](const Checks& c) { return c.checker->finished(); });
  start_checks();
}

void Reloader::mx_changed() {
  if (stopped_) return;
  const auto& running = shared_.generation;
  std::vector<std::string> errors;
  auto next =
      build_generation(running->cfg, running.get(), *shared_.metrics, errors, &mx_.backends());
  if (!next) {
    for (const auto& e : errors)
      log::Record("mx_apply_failed").add("error", e).emit(spdlog::level::err);
    return;
  }
  BackendChanges changes = compare_backends(*running, *next);
  apply(next);
  log::Record rec("generation");
  rec.add("trigger", "dns")
      .add("generation", static_cast<long long>(next->number))
      .add("kept", changes.kept);
  if (!changes.added.empty()) rec.add("added", static_cast<long long>(changes.added.size()));
  if (!changes.removed.empty()) rec.add("removed", static_cast<long long>(changes.removed.size()));
  rec.emit();
}

void Reloader::start_checks() {
  const auto& gen = shared_.generation;
  std::vector<balance::HealthChecker::Target> targets;
  for (const auto& p : gen->cfg->pools) {
    for (const auto& entry : *gen->pool_backends(p.name)) {
      const auto& agent = entry.state->config().agent;
      if (!p.health_check_configured && agent.port == 0) continue;
      targets.push_back({entry.state.get(), entry.endpoint,
                         p.health_check_configured ? &p.health_check : nullptr,
                         agent.port ? &agent : nullptr});
    }
  }
  checks_.gen = gen;
  checks_.checker =
      std::make_unique<balance::HealthChecker>(cores_.front()->io(), *gen->cfg, std::move(targets));
  checks_.checker->start();
}

void Reloader::stop() {
  stopped_ = true;
  mx_.stop();
  if (checks_.checker) checks_.checker->stop();
}

admin::ActionResult Reloader::reload(std::string_view trigger) {
  auto refuse = [&](const std::vector<std::string>& errors) {
    shared_.counters.reloads_refused.fetch_add(1, std::memory_order_relaxed);
    for (const auto& e : errors)
      log::Record("reload_refused")
          .add("trigger", trigger)
          .add("error", e)
          .emit(spdlog::level::err);
    log::Record("reload_refused")
        .add("trigger", trigger)
        .add("errors", static_cast<long long>(errors.size()))
        .add("generation", static_cast<long long>(shared_.generation->number))
        .add("reason", "the running configuration stays")
        .emit(spdlog::level::err);
    return admin::ActionResult{
        422, json::serialize(json::object{{"reloaded", false},
                                          {"generation", shared_.generation->number},
                                          {"errors", to_json(errors)}})};
  };
  if (stopped_) return refuse({"shutting down"});

  const auto& running = shared_.generation;
  const std::string& path = running->cfg->path;
  auto loaded = config::load_config(path);
  std::vector<std::string> errors;
  for (const auto& e : loaded.errors) errors.push_back(e.str());
  if (!errors.empty()) return refuse(errors);
  for (auto& e : restart_only_changes(*running->cfg, *loaded.config))
    errors.push_back(path + ": " + e);
  if (!errors.empty()) return refuse(errors);
  // MX pools whose domain stays keep their hosts; new ones start empty
  // and fill as soon as the DNS answers.
  mx_.watch(loaded.config);
  auto next =
      build_generation(loaded.config, running.get(), *shared_.metrics, errors, &mx_.backends());
  if (!next) {
    mx_.watch(running->cfg);
    return refuse(errors);
  }

  BackendChanges changes = compare_backends(*running, *next);
  apply(next);

  shared_.counters.reloads_ok.fetch_add(1, std::memory_order_relaxed);
  auto join = [](const std::vector<std::string>& v) {
    std::string s;
    for (const auto& x : v) s += (s.empty() ? "" : ",") + x;
    return s;
  };
  log::Record rec("reloaded");
  rec.add("trigger", trigger)
      .add("generation", static_cast<long long>(next->number))
      .add("kept", changes.kept);
  if (!changes.added.empty()) rec.add("added", join(changes.added));
  if (!changes.removed.empty()) rec.add("removed", join(changes.removed));
  if (!changes.changed.empty()) rec.add("changed", join(changes.changed));
  rec.emit();
  return {200, json::serialize(json::object{{"reloaded", true},
                                            {"generation", next->number},
                                            {"kept", changes.kept},
                                            {"added", to_json(changes.added)},
                                            {"removed", to_json(changes.removed)},
                                            {"changed", to_json(changes.changed)}})};
}

}  // namespace smtplb::runtime
