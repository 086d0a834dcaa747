// admin_model.hpp: the running balancer as the admin API sees it.
//
// Runs on the first core, which also owns Shared::generation (it replaces
// it on reload); reads otherwise only thread-safe state (backend atomics,
// metrics counters, the connection count) and changes only the operator's
// word on a backend (drain, ready, maint), so it answers without asking the
// other cores.
#pragma once

#include <functional>

#include "admin/model.hpp"
#include "runtime/core.hpp"

namespace smtplb::app {

class AdminModel : public admin::Model {
 public:
  AdminModel(runtime::Shared& shared, std::function<admin::ActionResult()> reload)
      : shared_(shared), reload_(std::move(reload)) {}
  std::string pools_json() override;
  std::string metrics_text() override;
  admin::ActionResult act(std::string_view pool, std::string_view backend,
                          admin::Action a) override;
  admin::ActionResult reload() override;

 private:
  runtime::Shared& shared_;
  std::function<admin::ActionResult()> reload_;
};

}  // namespace smtplb::app
