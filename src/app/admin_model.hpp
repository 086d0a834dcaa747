// admin_model.hpp: the running balancer as the admin API sees it.
//
// Reads only shared, thread-safe state (backend atomics, metrics counters,
// the connection count) and changes only the operator's word on a backend
// (drain, ready, maint), so it can answer from the admin thread without
// asking the cores.
#pragma once

#include "admin/model.hpp"
#include "server/core.hpp"

namespace smtplb::app {

class AdminModel : public admin::Model {
 public:
  explicit AdminModel(server::Shared& shared) : shared_(shared) {}
  std::string pools_json() override;
  std::string metrics_text() override;
  admin::ActionResult act(std::string_view pool, std::string_view backend,
                          admin::Action a) override;

 private:
  server::Shared& shared_;
};

}  // namespace smtplb::app
