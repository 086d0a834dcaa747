// transaction.cpp: see transaction.hpp.
#include "relay/transaction.hpp"

namespace smtplb::relay {

namespace {

std::string join(const std::vector<smtp::Path>& paths) {
  std::string s;
  for (const auto& p : paths) s += (s.empty() ? "" : ",") + p.str();
  return s;
}

}  // namespace

Transaction::Transaction(log::Scope scope, Envelope env, Clock::time_point started)
    : scope_(std::move(scope)), envelope_(std::move(env)), started_(started) {}

Transaction::~Transaction() = default;

void Transaction::set_recipient_hosts(std::shared_ptr<upstream::PoolRuntime> hosts,
                                      std::string domain) {
  mx_hosts_ = std::move(hosts);
  mx_domain_ = std::move(domain);
}

RelayTransaction& Transaction::start_relay(asio::any_io_executor ex, const config::Config& cfg,
                                           upstream::PoolRuntime& pool) {
  if (!relay_) {
    pool_ = &pool;
    relay_ = std::make_unique<RelayTransaction>(std::move(ex), cfg, pool, *this);
  }
  return *relay_;
}

std::string Transaction::received_field(ReceivedInfo ri) const {
  ri.id = id();
  if (accepted_.size() == 1) ri.recipient = accepted_.front().str();
  return relay::received_field(ri);
}

void Transaction::describe(log::Record& rec) const {
  std::string tried;
  if (relay_) {
    for (const auto& a : relay_->attempts()) {
      if (!tried.empty()) tried += ',';
      tried += a.backend + ":" + upstream::to_string(a.failure);
    }
  }
  rec.add("from", envelope_.sender.str())
      .add("pool", pool_ && pool_->cfg ? std::string_view(pool_->cfg->name) : "")
      .add("rcpts", join(accepted_))
      .add("refused", join(refused_))
      .add("size", static_cast<long long>(relay_ ? relay_->data_size() : 0))
      .add("tried", tried)
      .add("backend", relay_ ? relay_->backend_name() : "")
      .add("queue_id", relay_ ? relay_->queue_id() : "");
}

}  // namespace smtplb::relay
