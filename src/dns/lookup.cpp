#include "dns/lookup.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/deferred.hpp>
#include <boost/asio/experimental/parallel_group.hpp>
#include <exception>

namespace smtplb::dns {

const char* to_string(MxTarget::Kind k) {
  switch (k) {
    case MxTarget::Kind::kHosts:
      return "hosts";
    case MxTarget::Kind::kNxDomain:
      return "nxdomain";
    case MxTarget::Kind::kNullMx:
      return "null_mx";
    case MxTarget::Kind::kNoHosts:
      return "no_usable_host";
    case MxTarget::Kind::kTempFail:
      return "temporary_failure";
    case MxTarget::Kind::kCancelled:
      return "cancelled";
  }
  return "?";
}

namespace {

std::string key_of(std::string_view name) {
  std::string k(name);
  if (!k.empty() && k.back() == '.') k.pop_back();
  for (char& c : k)
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  return k;
}

}  // namespace

template <class T, class Ask, class Put>
awaitable<Cached<T>> Lookup::shared_lookup(
    std::unordered_map<std::string, std::shared_ptr<InFlight<T>>>& in_flight, std::string key,
    Ask ask, Put put) {
  if (auto it = in_flight.find(key); it != in_flight.end()) {
    auto wait = it->second;  // keeps it alive should the asker go first
    co_await wait->done.async_wait(use_nothrow);
    if (wait->answer) co_return *wait->answer;
    T cancelled;
    cancelled.status = Status::kCancelled;
    co_return Cached<T>{std::move(cancelled), Freshness::kFresh};
  }
  auto mine = std::make_shared<InFlight<T>>(ex_);
  in_flight.emplace(key, mine);
  T answer = co_await ask();
  mine->answer = put(std::move(answer));
  in_flight.erase(key);
  mine->done.cancel();
  co_return *mine->answer;
}

awaitable<Cached<MxResult>> Lookup::mx(const std::string& domain) {
  if (auto hit = cache_.find_mx(domain, Cache::Clock::now())) co_return *hit;
  co_return co_await shared_lookup<MxResult>(
      mx_in_flight_, key_of(domain), [&] { return resolver_->resolve_mx(domain); },
      [&](MxResult a) { return cache_.put_mx(domain, std::move(a), Cache::Clock::now()); });
}

awaitable<Cached<AddrResult>> Lookup::addresses(const std::string& host) {
  if (auto hit = cache_.find_addresses(host, Cache::Clock::now())) co_return *hit;
  co_return co_await shared_lookup<AddrResult>(
      addr_in_flight_, key_of(host), [&] { return resolver_->resolve_addresses(host); },
      [&](AddrResult a) { return cache_.put_addresses(host, std::move(a), Cache::Clock::now()); });
}

awaitable<MxTarget> Lookup::mx_target(std::string domain) {
  MxTarget t;
  auto mx_answer = co_await mx(domain);
  const MxResult& r = mx_answer.value;
  t.stale = mx_answer.freshness == Freshness::kStale;
  if (r.status == Status::kNxDomain || r.status == Status::kBadName) {
    t.kind = MxTarget::Kind::kNxDomain;
    t.detail = std::string("MX ") + to_string(r.status);
    co_return t;
  }
  if (r.status == Status::kCancelled) {
    t.kind = MxTarget::Kind::kCancelled;
    co_return t;
  }
  if (r.status != Status::kOk && r.status != Status::kNoData) {
    t.kind = MxTarget::Kind::kTempFail;
    t.detail = std::string("MX ") + to_string(r.status);
    co_return t;
  }
  // NODATA: no MX records, the implicit MX (RFC 5321 5.1).
  MxPlan plan = plan_mx(domain, r.status == Status::kOk ? r.records : std::vector<MxRecord>{});
  t.implicit = plan.implicit;
  if (plan.verdict == MxVerdict::kNullMx) {
    t.kind = MxTarget::Kind::kNullMx;
    t.detail = "null MX";
    co_return t;
  }
  // The exchanges' addresses: from the cache, and what it lacks asked for
  // at once.  A plan holds at most kMaxMxHosts, and one after another their
  // timeouts would add up (ten silent exchanges at the defaults: 40 s on
  // one RCPT).  A warm cache spawns nothing.
  struct Exchange {
    const std::string* host;
    std::uint16_t preference;
    std::optional<Cached<AddrResult>> answer;
  };
  std::vector<Exchange> exchanges;
  for (const auto& g : plan.groups)
    for (const auto& host : g.hosts)
      exchanges.push_back({&host, g.preference, cache_.find_addresses(host, Cache::Clock::now())});
  using Ask = decltype(asio::co_spawn(ex_, addresses(std::string()), asio::deferred));
  std::vector<Ask> asks;
  std::vector<Exchange*> asked;
  for (auto& e : exchanges) {
    if (e.answer) continue;
    asks.push_back(asio::co_spawn(ex_, addresses(*e.host), asio::deferred));
    asked.push_back(&e);
  }
  if (!asks.empty()) {
    [[maybe_unused]] auto [order, errors, answers] =
        co_await asio::experimental::make_parallel_group(std::move(asks))
            .async_wait(asio::experimental::wait_for_all(), asio::use_awaitable);
    for (std::size_t i = 0; i < asked.size(); ++i) {
      if (errors[i]) std::rethrow_exception(errors[i]);
      asked[i]->answer = std::move(answers[i]);
    }
  }
  bool temp_failure = false;
  std::string failures;
  for (const auto& e : exchanges) {
    const std::string& host = *e.host;
    const Cached<AddrResult>& a = *e.answer;
    t.stale = t.stale || a.freshness == Freshness::kStale;
    if (a.value.status == Status::kOk && !a.value.addresses.empty()) {
      t.hosts.push_back({host, e.preference, a.value.addresses});
      continue;
    }
    // An exchange without an address is skipped, as MTAs do; a failed
    // lookup of one may still make the whole answer temporary.
    if (!is_final(a.value.status)) temp_failure = true;
    failures += (failures.empty() ? "" : ", ") + host + " " + to_string(a.value.status);
  }
  if (!t.hosts.empty()) {
    t.kind = MxTarget::Kind::kHosts;
    t.detail = failures;
  } else if (t.implicit && !temp_failure) {
    // No MX and no address: nothing by that name takes mail.
    t.kind = MxTarget::Kind::kNxDomain;
    t.detail = "no MX and no address record";
  } else {
    t.kind = temp_failure ? MxTarget::Kind::kTempFail : MxTarget::Kind::kNoHosts;
    t.detail = failures.empty() ? "MX records name no host" : failures;
  }
  co_return t;
}

}  // namespace smtplb::dns
