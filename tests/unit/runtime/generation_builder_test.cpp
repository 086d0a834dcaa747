// What a reload keeps and what it refuses (runtime/generation_builder.hpp) and
// the metrics tables that survive it (server/metrics.hpp).
#include "runtime/generation_builder.hpp"

#include <gtest/gtest.h>

#include <string>

namespace smtplb::runtime {
namespace {

struct Opts {
  std::string backends = "      - address: 127.0.0.1:10025\n      - address: 127.0.0.1:10026\n";
  std::string listeners = "  - name: mx\n    listen: 127.0.0.1:2525\n";
  std::string extra;
};

std::shared_ptr<const config::Config> load(const Opts& o) {
  std::string text = "hostname: lb.example.com\nlisteners:\n" + o.listeners +
                     "local_domains: [example.com]\npools:\n  - name: main\n    backends:\n" +
                     o.backends + "routes:\n  - pool: main\n" + o.extra;
  auto r = config::load_config_text(text, "t.yaml");
  EXPECT_TRUE(r.errors.empty()) << (r.errors.empty() ? "" : r.errors.front().str());
  return r.config;
}

std::shared_ptr<const runtime::Generation> build(std::shared_ptr<const config::Config> cfg,
                                                 const runtime::Generation* prev,
                                                 server::Metrics& m) {
  std::vector<std::string> errors;
  auto g = build_generation(std::move(cfg), prev, m, errors);
  EXPECT_TRUE(errors.empty());
  return g;
}

const balance::BackendState* state(const runtime::Generation& g, std::string_view name) {
  for (const auto& e : g.backends.at("main"))
    if (e.state->name() == name) return e.state.get();
  return nullptr;
}

TEST(GenerationBuilder, FirstGenerationResolvesEveryBackend) {
  server::Metrics m;
  auto g = build(load({}), nullptr, m);
  ASSERT_TRUE(g);
  EXPECT_EQ(g->number, 1u);
  ASSERT_EQ(g->backends.at("main").size(), 2u);
  EXPECT_EQ(g->backends.at("main")[1].endpoint.port(), 10026);
  EXPECT_TRUE(g->connection_rate && g->message_rate && g->metrics);
}

TEST(GenerationBuilder, UnchangedBackendsKeepTheirStateChangedOnesStartAfresh) {
  server::Metrics m;
  auto g1 = build(load({}), nullptr, m);
  auto* kept = state(*g1, "127.0.0.1:10025");
  auto* changed = state(*g1, "127.0.0.1:10026");
  const_cast<balance::BackendState*>(changed)->set_admin(balance::AdminState::kDrain, "by hand");

  Opts o;
  o.backends =
      "      - address: 127.0.0.1:10025\n      - address: 127.0.0.1:10026\n        weight: 5\n"
      "      - address: 127.0.0.1:10027\n";
  auto g2 = build(load(o), g1.get(), m);
  ASSERT_TRUE(g2);
  EXPECT_EQ(g2->number, 2u);
  EXPECT_EQ(state(*g2, "127.0.0.1:10025"), kept);
  auto* fresh = state(*g2, "127.0.0.1:10026");
  ASSERT_NE(fresh, nullptr);
  EXPECT_NE(fresh, changed);
  EXPECT_EQ(fresh->config().weight, 5);
  // The operator's drain survives a change of settings.
  EXPECT_EQ(fresh->admin(), balance::AdminState::kDrain);
  // The same rates keep their buckets.
  EXPECT_EQ(g2->connection_rate, g1->connection_rate);
  EXPECT_EQ(g2->message_rate, g1->message_rate);

  BackendChanges c = compare_backends(*g1, *g2);
  EXPECT_EQ(c.kept, 1);
  EXPECT_EQ(c.added, std::vector<std::string>{"main/127.0.0.1:10027"});
  EXPECT_EQ(c.changed, std::vector<std::string>{"main/127.0.0.1:10026"});
  EXPECT_TRUE(c.removed.empty());
  EXPECT_EQ(compare_backends(*g2, *g1).removed, std::vector<std::string>{"main/127.0.0.1:10027"});
}

TEST(GenerationBuilder, ANewRateGetsNewBuckets) {
  server::Metrics m;
  auto g1 = build(load({}), nullptr, m);
  Opts o;
  o.extra = "limits:\n  max_message_rate_per_ip: 10/s\n";
  auto g2 = build(load(o), g1.get(), m);
  EXPECT_EQ(g2->connection_rate, g1->connection_rate);
  EXPECT_NE(g2->message_rate, g1->message_rate);
}

TEST(GenerationBuilder, UnresolvableBackendIsAnError) {
  server::Metrics m;
  Opts o;
  o.backends = "      - address: no-such-host.invalid:25\n";
  std::vector<std::string> errors;
  EXPECT_FALSE(build_generation(load(o), nullptr, m, errors));
  ASSERT_EQ(errors.size(), 1u);
  EXPECT_NE(errors[0].find("no-such-host.invalid"), std::string::npos) << errors[0];
}

TEST(GenerationBuilder, RestartOnlyChangesAreNamed) {
  auto base = load({});
  EXPECT_TRUE(restart_only_changes(*base, *load({})).empty());

  struct Case {
    const char* name;
    Opts opts;
    std::vector<std::string> want;  // substrings, one per message
  };
  Opts added, moved, workers, admin, role, dns;
  added.listeners += "  - name: sub\n    listen: 127.0.0.1:2587\n    role: submission\n";
  moved.listeners = "  - name: mx\n    listen: 127.0.0.1:2526\n";
  workers.extra = "workers: 3\n";
  admin.extra = "admin: {listen: 127.0.0.1:8025}\n";
  role.listeners = "  - name: mx\n    listen: 127.0.0.1:2525\n    role: submission\n";
  dns.extra = "dns: {max_in_flight: 10}\n";  // any dns key: the resolvers are made at start
  const Case cases[] = {
      {"listener added", added, {"sub on 127.0.0.1:2587 is new"}},
      {"listener moved", moved, {"127.0.0.1:2526 is new", "127.0.0.1:2525 is gone"}},
      {"workers", workers, {"workers: changed from 0 to 3"}},
      {"admin", admin, {"admin: changed"}},
      {"dns", dns, {"dns: changed"}},
      // A listener's role is read per transaction: a reload may change it.
      {"role", role, {}},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.name);
    auto got = restart_only_changes(*base, *load(c.opts));
    ASSERT_EQ(got.size(), c.want.size());
    for (std::size_t i = 0; i < got.size(); ++i)
      EXPECT_NE(got[i].find(c.want[i]), std::string::npos) << got[i];
  }
}

TEST(Metrics, CountersSurviveAReloadAndOldTablesStayValid) {
  server::Metrics m;
  auto t1 = m.table_for(*load({}));
  m.count_transaction(*t1, "mx", "main", "127.0.0.1:10025", "delivered", 0.01);
  Opts o;
  o.backends = "      - address: 127.0.0.1:10025\n      - address: 127.0.0.1:10027\n";
  auto t2 = m.table_for(*load(o));
  m.count_transaction(*t2, "mx", "main", "127.0.0.1:10025", "delivered", 0.01);
  // A transaction of the old generation finishing after the reload.
  m.count_transaction(*t1, "mx", "main", "127.0.0.1:10026", "delivered", 0.01);
  m.count_transaction(*t2, "mx", "main", "127.0.0.1:10027", "deferred", 0.01);
  std::string out;
  m.write(out);
  auto has = [&](const std::string& line) { return out.find(line + "\n") != std::string::npos; };
  EXPECT_TRUE(has(
      R"(smtplb_transactions_total{listener="mx",pool="main",backend="127.0.0.1:10025",result="delivered"} 2)"));
  EXPECT_TRUE(has(
      R"(smtplb_transactions_total{listener="mx",pool="main",backend="127.0.0.1:10026",result="delivered"} 1)"));
  EXPECT_TRUE(has(
      R"(smtplb_transactions_total{listener="mx",pool="main",backend="127.0.0.1:10027",result="deferred"} 1)"));
  EXPECT_TRUE(has("smtplb_transaction_duration_seconds_count 4"));
  // A backend no table names (an mx: recipient host) counts under its pool.
  m.count_transaction(*t2, "mx", "main", "192.0.2.7:25", "delivered", 0.01);
  out.clear();
  m.write(out);
  EXPECT_TRUE(has(
      R"(smtplb_transactions_total{listener="mx",pool="main",backend="",result="delivered"} 1)"));

  // Backends from DNS get their own series.
  server::Metrics::BackendNames names{{"main", {"192.0.2.1:25"}}};
  auto t3 = m.table_for(*load(o), &names);
  m.count_transaction(*t3, "mx", "main", "192.0.2.1:25", "delivered", 0.01);
  out.clear();
  m.write(out);
  EXPECT_TRUE(has(
      R"(smtplb_transactions_total{listener="mx",pool="main",backend="192.0.2.1:25",result="delivered"} 1)"));
}

}  // namespace
}  // namespace smtplb::runtime
