// The resolver against real servers on 127.0.0.1: dnsmasq (skipped when it
// is not installed) answering authoritatively for "test.", and a UDP socket
// that never answers.
#include "dns/resolver.hpp"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <optional>
#include <string>
#include <vector>

#include "dns/lookup.hpp"
#include "dns/mx_order.hpp"

namespace smtplb::dns {
namespace {

using namespace std::chrono_literals;
using asio::ip::make_address;
using asio::ip::udp;

// Runs `a` on `io` until it completes (at most `limit`), then returns its
// result; nullopt if it did not complete.
template <class T>
std::optional<T> run(asio::io_context& io, awaitable<T> a, std::chrono::seconds limit = 10s) {
  std::optional<T> out;
  asio::co_spawn(
      io, [&]() -> awaitable<void> { out = co_await std::move(a); }, asio::detached);
  auto until = Clock::now() + limit;
  io.restart();
  while (!out && !io.stopped() && Clock::now() < until) io.run_one_until(until);
  return out;
}

// A lookup whose result is kept even when a `||` throws it away.
awaitable<MxResult> resolve_and_record(Resolver& r, std::optional<MxResult>& out) {
  out = co_await r.resolve_mx("example.test");
  co_return *out;
}

std::unique_ptr<Resolver> make_resolver(asio::io_context& io, std::uint16_t port,
                                        std::chrono::milliseconds timeout = 2000ms,
                                        int attempts = 2, int max_in_flight = 1000) {
  ResolverOptions o;
  o.servers.push_back(config::Endpoint{"127.0.0.1", port});
  o.timeout = timeout;
  o.attempts = attempts;
  o.max_in_flight = max_in_flight;
  Resolver::Made made = Resolver::make(io.get_executor(), o);
  EXPECT_EQ(made.error, "");
  return std::move(made.resolver);
}

// A port free for both UDP and TCP on 127.0.0.1 just now (the system picks
// it: bind to port 0).  Another process may take it before dnsmasq binds
// it; the caller then tries another.
std::uint16_t free_port() {
  asio::io_context io;
  for (;;) {
    udp::socket u(io, udp::endpoint(make_address("127.0.0.1"), 0));
    std::uint16_t port = u.local_endpoint().port();
    tcp::acceptor t(io);
    t.open(tcp::v4());
    error_code ec;
    t.bind(tcp::endpoint(make_address("127.0.0.1"), port), ec);
    if (!ec) return port;
  }
}

// dnsmasq in the foreground, logging to a pipe we read until it says it has
// started (its sockets are bound before that line).
class Dnsmasq {
 public:
  static const char* binary() {
    for (const char* p : {"/usr/sbin/dnsmasq", "/usr/bin/dnsmasq"})
      if (access(p, X_OK) == 0) return p;
    return nullptr;
  }

  ~Dnsmasq() { stop(); }

  // Starts on a free port; returns false with dnsmasq's words in `log`.
  bool start(const std::vector<std::string>& zone_args, std::string& log) {
    for (int attempt = 0; attempt < 5; ++attempt) {
      port = free_port();
      std::vector<std::string> args = {
          binary(),
          "--no-resolv",
          "--no-hosts",
          "--port=" + std::to_string(port),
          "--listen-address=127.0.0.1",
          "--bind-interfaces",
          "--keep-in-foreground",
          "--conf-file=/dev/null",
          "--log-facility=-",
          "--pid-file=",  // none: never touch the system's
      };
      args.insert(args.end(), zone_args.begin(), zone_args.end());
      if (spawn(args) && wait_for_start(log)) return true;
      stop();
    }
    return false;
  }

  void stop() {
    if (pid_ > 0) {
      kill(pid_, SIGTERM);
      int status = 0;
      waitpid(pid_, &status, 0);
      pid_ = -1;
    }
    if (log_fd_ >= 0) close(log_fd_);
    log_fd_ = -1;
  }

  std::uint16_t port = 0;

 private:
  // fork and exec rather than posix_spawn, for PR_SET_PDEATHSIG: a test
  // that crashes must not leave dnsmasq running.
  bool spawn(const std::vector<std::string>& args) {
    int fds[2];
    if (pipe2(fds, O_CLOEXEC) != 0) return false;
    std::vector<char*> argv;
    for (const std::string& a : args) argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    pid_t parent = getpid();
    pid_ = fork();
    if (pid_ == 0) {
      prctl(PR_SET_PDEATHSIG, SIGTERM);
      if (getppid() != parent) _exit(1);  // the parent died before prctl
      dup2(fds[1], STDERR_FILENO);
      execv(argv[0], argv.data());
      _exit(127);
    }
    close(fds[1]);
    log_fd_ = fds[0];
    return pid_ > 0;
  }

  bool wait_for_start(std::string& log) {
    auto until = Clock::now() + 10s;
    char buf[4096];
    while (Clock::now() < until) {
      pollfd p{log_fd_, POLLIN, 0};
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(until - Clock::now());
      if (poll(&p, 1, static_cast<int>(std::max<long>(left.count(), 1))) <= 0) continue;
      ssize_t n = read(log_fd_, buf, sizeof buf);
      if (n <= 0) return false;  // exited: the port was taken, or a bad option
      log.append(buf, static_cast<std::size_t>(n));
      if (log.find("started") != std::string::npos) return true;
    }
    return false;
  }

  pid_t pid_ = -1;
  int log_fd_ = -1;
};

constexpr int kBigMxCount = 30;  // enough to overflow 512 octets of UDP

class DnsResolver : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (!Dnsmasq::binary()) return;
    std::vector<std::string> zone = {
        // Authoritative for "test.": negative answers carry an SOA, so the
        // negative TTL is exercised; other names are REFUSED.
        "--auth-server=ns.test,127.0.0.1",
        "--auth-zone=test",
        "--auth-ttl=900",
        "--mx-host=example.test,mx1.example.test,10",
        "--mx-host=example.test,mx2.example.test,20",
        // The null MX: dnsmasq writes "." as the root name.
        "--mx-host=nullmx.test,.,0",
        "--host-record=mx1.example.test,192.0.2.1,2001:db8::1",
        "--host-record=nomx.test,192.0.2.9",
    };
    for (int i = 1; i <= kBigMxCount; ++i)
      zone.push_back("--mx-host=big.test,a-rather-long-mail-exchanger-name-number-" +
                     std::to_string(i) + ".big.test," + std::to_string(i));
    dnsmasq_ = new Dnsmasq;
    std::string log;
    if (!dnsmasq_->start(zone, log)) {
      start_error_ = new std::string("dnsmasq did not start: " + log);
    }
  }
  static void TearDownTestSuite() {
    delete dnsmasq_;
    dnsmasq_ = nullptr;
    delete start_error_;
    start_error_ = nullptr;
  }
  void SetUp() override {
    if (!Dnsmasq::binary()) GTEST_SKIP() << "dnsmasq is not installed";
    ASSERT_EQ(start_error_, nullptr) << *start_error_;
    resolver_ = make_resolver(io_, dnsmasq_->port);
    ASSERT_TRUE(resolver_);
  }

  static Dnsmasq* dnsmasq_;
  static std::string* start_error_;
  asio::io_context io_;
  std::unique_ptr<Resolver> resolver_;
};
Dnsmasq* DnsResolver::dnsmasq_ = nullptr;
std::string* DnsResolver::start_error_ = nullptr;

TEST_F(DnsResolver, MxRecordsWithTwoPreferencesAndTheirTtl) {
  auto got = run(io_, resolver_->resolve_mx("example.test"));
  ASSERT_TRUE(got);
  ASSERT_EQ(got->status, Status::kOk) << to_string(got->status);
  std::vector<MxRecord> records = got->records;
  std::sort(records.begin(), records.end(),
            [](const MxRecord& a, const MxRecord& b) { return a.preference < b.preference; });
  EXPECT_EQ(records, (std::vector<MxRecord>{{10, "mx1.example.test"}, {20, "mx2.example.test"}}));
  EXPECT_EQ(got->ttl, std::chrono::seconds(900));

  MxPlan plan = plan_mx("example.test", got->records);
  ASSERT_EQ(plan.groups.size(), 2u);
  EXPECT_EQ(plan.groups[0].hosts, std::vector<std::string>{"mx1.example.test"});
}

TEST_F(DnsResolver, AddressesOfBothFamilies) {
  auto got = run(io_, resolver_->resolve_addresses("mx1.example.test"));
  ASSERT_TRUE(got);
  ASSERT_EQ(got->status, Status::kOk) << to_string(got->status);
  EXPECT_EQ(got->addresses, (std::vector<asio::ip::address>{make_address("2001:db8::1"),
                                                            make_address("192.0.2.1")}));
  EXPECT_EQ(got->ttl, std::chrono::seconds(900));
}

TEST_F(DnsResolver, NxDomainWithItsNegativeTtl) {
  auto mx = run(io_, resolver_->resolve_mx("missing.test"));
  ASSERT_TRUE(mx);
  EXPECT_EQ(mx->status, Status::kNxDomain) << to_string(mx->status);
  EXPECT_EQ(mx->ttl, std::chrono::seconds(900));  // from the SOA
  auto addr = run(io_, resolver_->resolve_addresses("missing.test"));
  ASSERT_TRUE(addr);
  EXPECT_EQ(addr->status, Status::kNxDomain) << to_string(addr->status);
  EXPECT_TRUE(addr->ttl);
}

TEST_F(DnsResolver, NoMxIsNoDataAndTheImplicitMxHasAnAddress) {
  auto mx = run(io_, resolver_->resolve_mx("nomx.test"));
  ASSERT_TRUE(mx);
  ASSERT_EQ(mx->status, Status::kNoData) << to_string(mx->status);
  MxPlan plan = plan_mx("nomx.test", mx->records);
  EXPECT_TRUE(plan.implicit);
  ASSERT_EQ(plan.groups.size(), 1u);
  EXPECT_EQ(plan.groups[0].hosts, std::vector<std::string>{"nomx.test"});

  // IPv4 only: the AAAA lookup's NODATA does not spoil the A answer.
  auto addr = run(io_, resolver_->resolve_addresses("nomx.test"));
  ASSERT_TRUE(addr);
  ASSERT_EQ(addr->status, Status::kOk) << to_string(addr->status);
  EXPECT_EQ(addr->addresses, std::vector<asio::ip::address>{make_address("192.0.2.9")});
}

TEST_F(DnsResolver, NullMxMeansNoMail) {
  auto got = run(io_, resolver_->resolve_mx("nullmx.test"));
  ASSERT_TRUE(got);
  ASSERT_EQ(got->status, Status::kOk) << to_string(got->status);
  EXPECT_EQ(got->records, (std::vector<MxRecord>{{0, "."}}));
  EXPECT_EQ(plan_mx("nullmx.test", got->records).verdict, MxVerdict::kNullMx);
}

TEST_F(DnsResolver, ANameOutsideTheServersZonesIsRefused) {
  auto got = run(io_, resolver_->resolve_mx("example.org"));
  ASSERT_TRUE(got);
  EXPECT_EQ(got->status, Status::kRefused) << to_string(got->status);
  EXPECT_FALSE(is_final(got->status));
}

TEST_F(DnsResolver, ATruncatedAnswerIsAskedAgainOverTcp) {
  auto got = run(io_, resolver_->resolve_mx("big.test"));
  ASSERT_TRUE(got);
  ASSERT_EQ(got->status, Status::kOk) << to_string(got->status);
  EXPECT_EQ(got->records.size(), static_cast<std::size_t>(kBigMxCount));
}

// Starts `n` lookups at once, `ask(i)` each, and runs them to the end (10 s
// at most); how many ended kOk, or -1 if some did not end.
template <class Ask>
int all_at_once(asio::io_context& io, int n, Ask ask) {
  int done = 0, ok = 0;
  for (int i = 0; i < n; ++i) {
    asio::co_spawn(
        io,
        [&, i]() -> awaitable<void> {
          ok += (co_await ask(i)) == Status::kOk;
          ++done;
        },
        asio::detached);
  }
  auto until = Clock::now() + 10s;
  while (done < n && !io.stopped() && Clock::now() < until) io.run_one_until(until);
  return done == n ? ok : -1;
}

TEST_F(DnsResolver, ManyLookupsAtOnceAllComplete) {
  constexpr int kLookups = 40;
  EXPECT_EQ(
      all_at_once(io_, kLookups,
                  [&](int i) -> awaitable<Status> {
                    if (i % 2) co_return (co_await resolver_->resolve_mx("example.test")).status;
                    co_return (co_await resolver_->resolve_addresses("mx1.example.test")).status;
                  }),
      kLookups);
  EXPECT_EQ(resolver_->counters().queries, static_cast<std::uint64_t>(kLookups / 2 * 3));
}

// Over max_in_flight, lookups queue and are sent as answers come in: all
// of them are answered.
TEST_F(DnsResolver, LookupsOverMaxInFlightQueueAndAreAllAnswered) {
  resolver_ = make_resolver(io_, dnsmasq_->port, 2000ms, 2, /*max_in_flight=*/2);
  ASSERT_TRUE(resolver_);
  constexpr int kLookups = 4;  // two sent, two queued
  EXPECT_EQ(all_at_once(io_, kLookups,
                        [&](int) -> awaitable<Status> {
                          co_return (co_await resolver_->resolve_mx("example.test")).status;
                        }),
            kLookups);
  EXPECT_EQ(resolver_->counters().queries, 4u);
  EXPECT_EQ(resolver_->counters().queued, 2u);
  EXPECT_EQ(resolver_->counters().busy, 0u);
}

// The rest need no dnsmasq: a UDP socket that is bound (so no ICMP
// "unreachable" comes back) and never reads.
// dns::Lookup over the real resolver: the exchanges with their addresses,
// ordered, and one query for a burst of askers.
TEST_F(DnsResolver, LookupGivesHostsWithAddressesAndSharesQueriesInFlight) {
  Lookup lookup(io_.get_executor(), std::move(resolver_), CachePolicy{});
  std::vector<std::optional<MxTarget>> got(5);
  for (auto& g : got)
    asio::co_spawn(
        io_, [&]() -> awaitable<void> { g = co_await lookup.mx_target("example.test"); },
        asio::detached);
  auto until = Clock::now() + 10s;
  io_.restart();
  while (std::any_of(got.begin(), got.end(), [](const auto& g) { return !g; }) &&
         Clock::now() < until)
    io_.run_one_until(until);
  for (const auto& g : got) {
    ASSERT_TRUE(g);
    ASSERT_EQ(g->kind, MxTarget::Kind::kHosts) << g->detail;
    // mx1 (preference 10) has addresses; mx2 (20) has none and is left out.
    ASSERT_EQ(g->hosts.size(), 1u);
    EXPECT_EQ(g->hosts[0].name, "mx1.example.test");
    EXPECT_EQ(g->hosts[0].preference, 10);
    EXPECT_EQ(g->hosts[0].addresses.size(), 2u);
  }
  // One MX query, and one A and one AAAA query for each exchange, for all
  // five askers together.
  EXPECT_EQ(lookup.resolver_counters().queries, 1u + 2u * 2u);
  // Then the cache answers.
  auto again = run(io_, lookup.mx_target("example.test"));
  ASSERT_TRUE(again);
  EXPECT_EQ(again->kind, MxTarget::Kind::kHosts);
  EXPECT_EQ(lookup.resolver_counters().queries, 5u);
  auto nx = run(io_, lookup.mx_target("nope.test"));
  ASSERT_TRUE(nx);
  EXPECT_EQ(nx->kind, MxTarget::Kind::kNxDomain);
  auto null_mx = run(io_, lookup.mx_target("nullmx.test"));
  ASSERT_TRUE(null_mx);
  EXPECT_EQ(null_mx->kind, MxTarget::Kind::kNullMx);
  auto implicit = run(io_, lookup.mx_target("nomx.test"));
  ASSERT_TRUE(implicit);
  ASSERT_EQ(implicit->kind, MxTarget::Kind::kHosts) << implicit->detail;
  EXPECT_TRUE(implicit->implicit);
  EXPECT_EQ(implicit->hosts[0].name, "nomx.test");
}

class DnsResolverSilentServer : public ::testing::Test {
 protected:
  asio::io_context io_;
  udp::socket silent_{io_, udp::endpoint(make_address("127.0.0.1"), 0)};
  std::uint16_t port() const { return silent_.local_endpoint().port(); }

  // Runs the io_context until the silent server has a query to read.
  void run_until_query_sent() {
    bool arrived = false;
    silent_.async_wait(udp::socket::wait_read, [&](error_code) { arrived = true; });
    auto until = Clock::now() + 5s;
    io_.restart();
    while (!arrived && !io_.stopped() && Clock::now() < until) io_.run_one_until(until);
    ASSERT_TRUE(arrived) << "no query reached the server";
  }
};

TEST_F(DnsResolverSilentServer, TimesOutWithinTimeoutTimesAttempts) {
  constexpr auto kTimeout = 300ms;
  constexpr int kAttempts = 2;
  auto resolver = make_resolver(io_, port(), kTimeout, kAttempts);
  ASSERT_TRUE(resolver);
  auto start = Clock::now();
  auto got = run(io_, resolver->resolve_mx("example.test"));
  auto took = Clock::now() - start;
  ASSERT_TRUE(got);
  EXPECT_EQ(got->status, Status::kTimeout) << to_string(got->status);
  EXPECT_GE(took, kTimeout);  // it did wait for an answer
  // The bound, plus slack for a loaded machine (c-ares alone would take
  // 300 + 600 ms: it doubles the timeout on its second round).
  EXPECT_LT(took, kTimeout * kAttempts + 250ms);
  EXPECT_EQ(resolver->counters().timeouts, 1u);
}

TEST_F(DnsResolverSilentServer, AddressLookupsTimeOutToo) {
  auto resolver = make_resolver(io_, port(), 100ms, 1);
  ASSERT_TRUE(resolver);
  auto got = run(io_, resolver->resolve_addresses("host.example.test"));
  ASSERT_TRUE(got);
  EXPECT_EQ(got->status, Status::kTimeout) << to_string(got->status);
}

TEST_F(DnsResolverSilentServer, DestroyingTheResolverEndsLookupsInFlight) {
  auto resolver = make_resolver(io_, port());
  ASSERT_TRUE(resolver);
  std::optional<MxResult> got;
  asio::co_spawn(
      io_,
      [&, &r = *resolver]() -> awaitable<void> { got = co_await r.resolve_mx("example.test"); },
      asio::detached);
  run_until_query_sent();
  ASSERT_FALSE(got);

  resolver.reset();
  EXPECT_FALSE(got) << "resumed inside the destructor";
  io_.restart();
  io_.run_for(5s);
  ASSERT_TRUE(got);
  EXPECT_EQ(got->status, Status::kCancelled) << to_string(got->status);
  // Nothing is left behind: no timer, no socket wait, no handler.
  EXPECT_TRUE(io_.stopped());
}

TEST_F(DnsResolverSilentServer, ACancelledWaitEndsAtOnce) {
  using namespace asio::experimental::awaitable_operators;
  auto resolver = make_resolver(io_, port());
  ASSERT_TRUE(resolver);
  std::optional<MxResult> lookup;
  auto start = Clock::now();
  auto race = [&]() -> awaitable<int> {
    asio::steady_timer t(co_await asio::this_coro::executor, 50ms);
    auto first =
        co_await (resolve_and_record(*resolver, lookup) || t.async_wait(asio::use_awaitable));
    co_return static_cast<int>(first.index());
  };
  auto got = run(io_, race());
  ASSERT_TRUE(got);
  EXPECT_EQ(*got, 1) << "the timer should have won";
  EXPECT_LT(Clock::now() - start, 1s);
  ASSERT_TRUE(lookup);
  EXPECT_EQ(lookup->status, Status::kCancelled) << to_string(lookup->status);
  EXPECT_EQ(resolver->counters().cancelled, 1u);
}

// A server that never answers holds max_in_flight queries: as many more
// queue (and end at their own bound, never sent), the rest end at once
// with kBusy.  Clients choose the names, so they must not choose how many
// queries go out.
TEST_F(DnsResolverSilentServer, QueriesOutAtOnceAreBoundedAndTheOverflowIsBusyAtOnce) {
  // Two attempts: c-ares holds a query 500 + 1000 ms, past the 1 s bound,
  // so the queued lookups' bound runs out before a place frees up.
  constexpr auto kTimeout = 500ms;
  constexpr int kAttempts = 2;
  ResolverTotals totals;  // what /metrics shows
  ResolverOptions o;
  o.servers.push_back(config::Endpoint{"127.0.0.1", port()});
  o.timeout = kTimeout;
  o.attempts = kAttempts;
  o.max_in_flight = 2;
  o.totals = &totals;
  auto resolver = std::move(Resolver::make(io_.get_executor(), o).resolver);
  ASSERT_TRUE(resolver);
  constexpr int kLookups = 6;
  std::vector<std::optional<Status>> got(kLookups);
  std::vector<Clock::duration> took(kLookups);
  const auto start = Clock::now();
  for (int i = 0; i < kLookups; ++i) {
    asio::co_spawn(
        io_,
        [&, i, &r = *resolver]() -> awaitable<void> {
          auto a = co_await r.resolve_mx("name" + std::to_string(i) + ".example.test");
          got[i] = a.status;
          took[i] = Clock::now() - start;
        },
        asio::detached);
  }
  auto all = [&] {
    return std::all_of(got.begin(), got.end(), [](const auto& g) { return g.has_value(); });
  };
  auto until = Clock::now() + 5s;
  io_.restart();
  while (!all() && !io_.stopped() && Clock::now() < until) io_.run_one_until(until);
  ASSERT_TRUE(all());
  for (int i = 0; i < 2; ++i) {  // sent: the DNS timed out
    EXPECT_EQ(*got[i], Status::kTimeout) << i << " " << to_string(*got[i]);
    EXPECT_GE(took[i], kTimeout * kAttempts) << i;
  }
  for (int i = 2; i < 4; ++i) {  // queued, never sent: busy at their bound
    EXPECT_EQ(*got[i], Status::kBusy) << i << " " << to_string(*got[i]);
    EXPECT_GE(took[i], kTimeout * kAttempts) << i;
  }
  for (int i = 4; i < kLookups; ++i) {  // no place in the queue: busy at once
    EXPECT_EQ(*got[i], Status::kBusy) << i << " " << to_string(*got[i]);
    EXPECT_LT(took[i], kTimeout) << i << ": busy should not wait";
  }
  EXPECT_EQ(resolver->counters().queries, 2u) << "queued lookups past their bound were sent";
  EXPECT_EQ(resolver->counters().queued, 2u);
  EXPECT_EQ(resolver->counters().busy, 4u);
  EXPECT_EQ(resolver->counters().timeouts, 2u);
  EXPECT_EQ(totals.queries.load(), 2u);
  EXPECT_EQ(totals.queued.load(), 2u);
  EXPECT_EQ(totals.busy.load(), 4u);
  EXPECT_EQ(totals.timeouts.load(), 2u);
}

// A queued lookup ends with its resolver, like one that was sent.
TEST_F(DnsResolverSilentServer, DestroyingTheResolverEndsQueuedLookupsToo) {
  auto resolver = make_resolver(io_, port(), 2000ms, 2, /*max_in_flight=*/1);
  ASSERT_TRUE(resolver);
  std::optional<MxResult> sent, queued;
  asio::co_spawn(
      io_,
      [&, &r = *resolver]() -> awaitable<void> { sent = co_await r.resolve_mx("a.example.test"); },
      asio::detached);
  asio::co_spawn(
      io_,
      [&, &r = *resolver]() -> awaitable<void> {
        queued = co_await r.resolve_mx("b.example.test");
      },
      asio::detached);
  run_until_query_sent();
  EXPECT_EQ(resolver->counters().queued, 1u);
  resolver.reset();
  io_.restart();
  io_.run_for(5s);
  ASSERT_TRUE(sent);
  ASSERT_TRUE(queued);
  EXPECT_EQ(sent->status, Status::kCancelled) << to_string(sent->status);
  EXPECT_EQ(queued->status, Status::kCancelled) << to_string(queued->status);
  EXPECT_TRUE(io_.stopped());
}

TEST(DnsResolverOptions, RefusesServersThatAreNotAddressesAndNonsenseBounds) {
  asio::io_context io;
  ResolverOptions o;
  o.servers.push_back(config::Endpoint{"dns.example", 53});
  EXPECT_NE(Resolver::make(io.get_executor(), o).error, "");
  o.servers = {config::Endpoint{"::1", 53}};
  EXPECT_EQ(Resolver::make(io.get_executor(), o).error, "");
  o.attempts = 0;
  EXPECT_NE(Resolver::make(io.get_executor(), o).error, "");
  o.attempts = 1;
  o.timeout = 0ms;
  EXPECT_NE(Resolver::make(io.get_executor(), o).error, "");
  o.timeout = 1000ms;
  o.max_in_flight = 0;
  EXPECT_NE(Resolver::make(io.get_executor(), o).error, "");
}

}  // namespace
}  // namespace smtplb::dns
