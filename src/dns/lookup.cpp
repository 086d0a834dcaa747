#include "dns/lookup.hpp"

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

awaitable<Cached<MxResult>> Lookup::mx(const std::string& domain) {
  if (auto hit = cache_.find_mx(domain, Cache::Clock::now())) co_return *hit;
  MxResult answer = co_await resolver_->resolve_mx(domain);
  co_return cache_.put_mx(domain, std::move(answer), Cache::Clock::now());
}

awaitable<Cached<AddrResult>> Lookup::addresses(const std::string& host) {
  if (auto hit = cache_.find_addresses(host, Cache::Clock::now())) co_return *hit;
  AddrResult answer = co_await resolver_->resolve_addresses(host);
  co_return cache_.put_addresses(host, std::move(answer), Cache::Clock::now());
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
  bool temp_failure = false;
  std::string failures;
  for (const auto& g : plan.groups) {
    for (const auto& host : g.hosts) {
      auto a = co_await addresses(host);
      t.stale = t.stale || a.freshness == Freshness::kStale;
      if (a.value.status == Status::kOk && !a.value.addresses.empty()) {
        t.hosts.push_back({host, g.preference, a.value.addresses});
        continue;
      }
      // An exchange without an address is skipped, as MTAs do; a failed
      // lookup of one may still make the whole answer temporary.
      if (!is_final(a.value.status)) temp_failure = true;
      failures += (failures.empty() ? "" : ", ") + host + " " + to_string(a.value.status);
    }
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
