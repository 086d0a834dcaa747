#include "app/admin_model.hpp"

#include <boost/json.hpp>
#include <cstdio>

#include "log/log.hpp"
#include "relay/relay_counters.hpp"
#include "upstream/failure.hpp"

namespace smtplb::app {

namespace json = boost::json;

namespace {

std::string label(std::string_view v) {
  std::string out;
  for (char c : v) {
    if (c == '\\' || c == '"') out.push_back('\\');
    out.push_back(c == '\n' ? ' ' : c);
  }
  return out;
}

// One metric family of plain samples: HELP, TYPE, then `name{labels} value`
// for each (labels empty: no braces).
template <typename Samples>
void family_of(std::string& out, std::string_view name, std::string_view type,
               std::string_view help, const Samples& samples) {
  out.append("# HELP ").append(name).append(" ").append(help).append("\n");
  out.append("# TYPE ").append(name).append(" ").append(type).append("\n");
  for (const auto& [labels, value] : samples) {
    out.append(name);
    if (!labels.empty()) out.append("{").append(labels).append("}");
    out.append(" ").append(std::to_string(value)).append("\n");
  }
}

void family(std::string& out, std::string_view name, std::string_view type, std::string_view help,
            std::initializer_list<std::pair<std::string_view, std::uint64_t>> samples) {
  family_of(out, name, type, help, samples);
}

// Every Failure value that can be counted, by name.
constexpr upstream::Failure kLeftReasons[] = {
    upstream::Failure::kConnectRefused,   upstream::Failure::kConnectTimeout,
    upstream::Failure::kBannerRefused,    upstream::Failure::kEhloRefused,
    upstream::Failure::kShuttingDown,     upstream::Failure::kTransient,
    upstream::Failure::kPermanent,        upstream::Failure::kDropped,
    upstream::Failure::kStalled,          upstream::Failure::kSilentFinalDot,
    upstream::Failure::kProtocol,         upstream::Failure::kNotCapable,
    upstream::Failure::kRecipientRefused, upstream::Failure::kTls,
    upstream::Failure::kNoXclient,        upstream::Failure::kXclientRefused,
    upstream::Failure::kLocalLimit};

}  // namespace

std::string AdminModel::pools_json() {
  auto now = balance::BackendState::Clock::now();
  const auto& gen = *shared_.generation;
  json::array pools;
  for (const auto& p : gen.cfg->pools) {
    json::array backends;
    for (const auto& e : *gen.pool_backends(p.name)) {
      const auto& st = *e.state;
      json::object b;
      b["address"] = st.name();
      b["state"] = st.state_name(now);
      b["reason"] = st.reason();
      b["weight"] = st.config().weight;
      b["in_flight"] = st.in_flight.load(std::memory_order_relaxed);
      b["consecutive_failures"] = st.consecutive_failures();
      b["health_checks"] = json::object{{"ok", st.checks_ok()}, {"failed", st.checks_failed()}};
      b["effective_weight"] = st.effective_weight(now) / 100.0;
      if (auto t = st.last_check(); t.time_since_epoch().count() != 0)
        b["last_check_unix_ms"] =
            std::chrono::duration_cast<std::chrono::milliseconds>(t.time_since_epoch()).count();
      b["sessions"] = st.sessions();
      b["final_dot_ms"] = st.final_dot_seconds(now) * 1000.0;
      if (st.config().mx_preference >= 0) {
        b["mx_host"] = st.config().mx_host;
        b["preference"] = st.config().mx_preference;
      }
      if (st.config().agent.port) {
        json::object a;
        a["fresh"] = st.agent_fresh(now);
        a["percent"] = st.agent_percent(now);
        a["cpu"] = st.agent_cpu();
        a["mem"] = st.agent_mem();
        a["queue"] = st.agent_queue();
        a["replies"] = st.agent_replies();
        a["ignored"] = st.agent_garbled();
        auto [text, at] = st.agent_reply();
        if (at.time_since_epoch().count() != 0) {
          a["last_reply"] = text;
          a["last_reply_unix_ms"] =
              std::chrono::duration_cast<std::chrono::milliseconds>(at.time_since_epoch()).count();
        }
        b["agent"] = std::move(a);
      }
      backends.push_back(std::move(b));
    }
    json::object o;
    o["name"] = p.name;
    o["algorithm"] = config::to_string(p.algorithm);
    if (p.mx == config::MxMode::kDomain) o["mx"] = p.mx_domain;
    if (p.mx == config::MxMode::kRecipient) o["mx"] = "recipient";
    o["backends"] = std::move(backends);
    pools.push_back(std::move(o));
  }
  return json::serialize(json::object{{"generation", gen.number}, {"pools", std::move(pools)}});
}

std::string AdminModel::metrics_text() {
  auto now = balance::BackendState::Clock::now();
  std::string out;
  shared_.metrics->write(out);
  auto load = [](const std::atomic<std::uint64_t>& n) { return n.load(std::memory_order_relaxed); };
  family(out, "smtplb_possible_duplicates_total", "counter",
         "Messages replayed after a backend may already have taken them (no or a broken reply "
         "to the final dot).",
         {{"", load(relay::counters().possible_duplicates)}});
  family(out, "smtplb_client_connections", "gauge", "Client connections open now.",
         {{"", static_cast<std::uint64_t>(shared_.limiter.total())}});
  const auto& gen = *shared_.generation;
  family(out, "smtplb_config_generation", "gauge",
         "The configuration generation in force (1 at start, one more per reload).",
         {{"", gen.number}});
  family(out, "smtplb_mx_refresh_failures_total", "counter",
         "Failed DNS refreshes of mx: pools (each run of failures once).",
         {{"", load(shared_.counters.mx_refresh_failures)}});
  family(out, "smtplb_spill_failures_total", "counter",
         "Replay buffers that could not spill to temp_directory (the message got 451 4.3.0).",
         {{"", load(relay::counters().spill_failures)}});
  family(out, "smtplb_tls_handshakes_total", "counter",
         "TLS handshakes with clients (implicit TLS and STARTTLS) by result.",
         {{"result=\"ok\"", load(shared_.sessions.tls_handshakes)},
          {"result=\"failed\"", load(shared_.sessions.tls_handshake_failures)}});
  family(out, "smtplb_auth_attempts_total", "counter",
         "AUTH attempts by result (locked_out: refused with 421 after too many failures; busy: "
         "the password checker's queue was full, 454).",
         {{"result=\"accepted\"", load(shared_.sessions.auth_accepted)},
          {"result=\"failed\"", load(shared_.sessions.auth_failed)},
          {"result=\"locked_out\"", load(shared_.sessions.auth_locked_out)},
          {"result=\"busy\"", load(shared_.sessions.auth_busy)}});
  {
    std::vector<std::pair<std::string, std::uint64_t>> hits;
    using Limit = server::SessionCounters::Limit;
    const auto& limits = shared_.sessions.limit_hits;
    for (std::size_t i = 0; i < limits.size(); ++i)
      hits.emplace_back(std::string("limit=\"") +
                            server::SessionCounters::to_string(static_cast<Limit>(i)) + "\"",
                        load(limits[i]));
    family_of(out, "smtplb_limit_hits_total", "counter",
              "Connections, messages and sessions refused or ended by an abuse limit (limits.*, "
              "timeouts.client_*).",
              hits);
  }
  family(out, "smtplb_reloads_total", "counter", "Configuration reloads by result.",
         {{"result=\"ok\"", load(shared_.counters.reloads_ok)},
          {"result=\"refused\"", load(shared_.counters.reloads_refused)}});
  {
    const auto& d = shared_.counters.dns;
    family(out, "smtplb_dns_queries_total", "counter",
           "DNS queries of mx: pools by outcome (sent: to c-ares; timeout: sent, unanswered "
           "within timeout x attempts; queued: waited for a place under dns.max_in_flight; busy: "
           "never sent, the RCPT deferred; cancelled: no longer wanted). An address lookup is two.",
           {{"outcome=\"sent\"", load(d.queries)},
            {"outcome=\"timeout\"", load(d.timeouts)},
            {"outcome=\"queued\"", load(d.queued)},
            {"outcome=\"busy\"", load(d.busy)},
            {"outcome=\"cancelled\"", load(d.cancelled)}});
  }
  family(out, "smtplb_accept_errors_total", "counter",
         "Client connections accept() failed on (mostly out of descriptors: see the "
         "accept_error log line).",
         {{"", load(shared_.counters.accept_errors)}});

  std::string up, state, in_flight, weight, checks, left, agent_pct, agent_replies, reply_hist;
  for (const auto& p : gen.cfg->pools) {
    for (const auto& e : *gen.pool_backends(p.name)) {
      const auto& st = *e.state;
      std::string lbl = "pool=\"" + label(p.name) + "\",backend=\"" + label(st.name()) + "\"";
      up += "smtplb_backend_up{" + lbl + "} " + (st.usable(now) ? "1" : "0") + "\n";
      std::string_view cur = st.state_name(now);
      for (const char* s : {"up", "down", "drain", "maint"})
        state += "smtplb_backend_state{" + lbl + ",state=\"" + s + "\"} " + (cur == s ? "1" : "0") +
                 "\n";
      in_flight += "smtplb_backend_in_flight{" + lbl + "} " +
                   std::to_string(st.in_flight.load(std::memory_order_relaxed)) + "\n";
      weight += "smtplb_backend_weight{" + lbl + "} " + std::to_string(st.config().weight) + "\n";
      checks += "smtplb_health_checks_total{" + lbl + ",result=\"ok\"} " +
                std::to_string(st.checks_ok()) + "\n";
      checks += "smtplb_health_checks_total{" + lbl + ",result=\"failed\"} " +
                std::to_string(st.checks_failed()) + "\n";
      {
        std::uint64_t cum = 0;
        char le[32];
        for (std::size_t i = 0; i < balance::BackendState::kReplyBuckets.size(); ++i) {
          cum += st.reply_bucket(i);
          std::snprintf(le, sizeof le, "%g", balance::BackendState::kReplyBuckets[i]);
          reply_hist += "smtplb_backend_reply_seconds_bucket{" + lbl + ",le=\"" + le + "\"} " +
                        std::to_string(cum) + "\n";
        }
        cum += st.reply_bucket(balance::BackendState::kReplyBuckets.size());
        reply_hist += "smtplb_backend_reply_seconds_bucket{" + lbl + ",le=\"+Inf\"} " +
                      std::to_string(cum) + "\n";
        std::snprintf(le, sizeof le, "%.6f", static_cast<double>(st.reply_us_sum()) / 1e6);
        reply_hist += "smtplb_backend_reply_seconds_sum{" + lbl + "} " + le + "\n";
        reply_hist +=
            "smtplb_backend_reply_seconds_count{" + lbl + "} " + std::to_string(cum) + "\n";
      }
      if (st.config().agent.port) {
        agent_pct += "smtplb_backend_agent_percent{" + lbl + "} " +
                     std::to_string(st.agent_percent(now)) + "\n";
        agent_replies += "smtplb_agent_replies_total{" + lbl + ",result=\"ok\"} " +
                         std::to_string(st.agent_replies()) + "\n";
        agent_replies += "smtplb_agent_replies_total{" + lbl + ",result=\"ignored\"} " +
                         std::to_string(st.agent_garbled()) + "\n";
      }
      for (auto f : kLeftReasons)
        left += "smtplb_backend_left_total{" + lbl + ",reason=\"" + upstream::to_string(f) +
                "\"} " + std::to_string(st.left(static_cast<int>(f))) + "\n";
    }
  }
  out +=
      "# HELP smtplb_backend_up 1 when the backend takes new transactions.\n"
      "# TYPE smtplb_backend_up gauge\n" +
      up;
  out +=
      "# HELP smtplb_backend_state The backend's state (up, down, drain, maint).\n"
      "# TYPE smtplb_backend_state gauge\n" +
      state;
  out +=
      "# HELP smtplb_backend_in_flight Transactions holding a session to the backend.\n"
      "# TYPE smtplb_backend_in_flight gauge\n" +
      in_flight;
  out +=
      "# HELP smtplb_backend_weight Configured weight.\n"
      "# TYPE smtplb_backend_weight gauge\n" +
      weight;
  out +=
      "# HELP smtplb_health_checks_total Active health checks by result.\n"
      "# TYPE smtplb_health_checks_total counter\n" +
      checks;
  out +=
      "# HELP smtplb_backend_reply_seconds Time a backend took to answer a command.\n"
      "# TYPE smtplb_backend_reply_seconds histogram\n" +
      reply_hist;
  out +=
      "# HELP smtplb_backend_agent_percent The agent's last percentage (100 without one).\n"
      "# TYPE smtplb_backend_agent_percent gauge\n" +
      agent_pct;
  out +=
      "# HELP smtplb_agent_replies_total Agent replies applied (ok) or ignored.\n"
      "# TYPE smtplb_agent_replies_total counter\n" +
      agent_replies;
  out +=
      "# HELP smtplb_backend_left_total Transactions that left the backend (and were "
      "replayed, or got its final 5xx), by reason.\n"
      "# TYPE smtplb_backend_left_total counter\n" +
      left;
  return out;
}

admin::ActionResult AdminModel::act(std::string_view pool, std::string_view backend,
                                    admin::Action a) {
  const auto* entries = shared_.generation->pool_backends(pool);
  if (!entries) return {404, json::serialize(json::object{{"error", "unknown pool"}})};
  for (const auto& e : *entries) {
    auto& st = *e.state;
    if (st.name() != backend &&
        e.endpoint.address().to_string() + ":" + std::to_string(e.endpoint.port()) != backend)
      continue;
    balance::AdminState s = a == admin::Action::kDrain   ? balance::AdminState::kDrain
                            : a == admin::Action::kMaint ? balance::AdminState::kMaint
                                                         : balance::AdminState::kReady;
    const char* name = a == admin::Action::kDrain   ? "drain"
                       : a == admin::Action::kMaint ? "maint"
                                                    : "ready";
    st.set_admin(s, s == balance::AdminState::kReady ? "" : std::string("set by the admin API"));
    log::Record("backend_admin")
        .add("pool", st.pool())
        .add("backend", st.name())
        .add("state", name)
        .emit(spdlog::level::warn);
    return {200, json::serialize(
                     json::object{{"pool", st.pool()}, {"backend", st.name()}, {"state", name}})};
  }
  return {404, json::serialize(json::object{{"error", "unknown backend"}})};
}

admin::ActionResult AdminModel::reload() {
  return reload_();
}

}  // namespace smtplb::app
