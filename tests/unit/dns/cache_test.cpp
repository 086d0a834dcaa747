#include "dns/cache.hpp"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace smtplb::dns {
namespace {

using std::chrono::seconds;
using Time = Cache::Clock::time_point;

const Time t0 = Time{} + std::chrono::hours(1000);  // the fake clock's "now" at start

MxResult mx(const char* host, Ttl ttl) {
  return MxResult{Status::kOk, {{10, host}}, ttl};
}
MxResult fail(Status s) {
  return MxResult{s, {}, std::nullopt};
}

// Fresh, stale or absent at `t`, and the host when present.
std::string look(Cache& c, std::string_view domain, Time t) {
  auto hit = c.find_mx(domain, t);
  if (!hit) return "miss";
  std::string what = hit->freshness == Freshness::kFresh ? "fresh" : "stale";
  if (hit->value.status != Status::kOk) return what + " " + to_string(hit->value.status);
  return what + " " + hit->value.records.at(0).exchange;
}

TEST(DnsCache, KeepsRecordsForTheirTtlClampedToTheBounds) {
  struct Case {
    const char* name;
    Ttl ttl;
    seconds kept;
  };
  CachePolicy p;  // min 5 s, max 1 h
  const std::vector<Case> cases = {
      {"within the bounds", seconds(120), seconds(120)},
      {"TTL 0 still serves a burst", seconds(0), p.min_ttl},
      {"a day is cut to the maximum", seconds(86400), p.max_ttl},
      {"no TTL at all", std::nullopt, p.min_ttl},
  };
  for (const Case& c : cases) {
    Cache cache(p);
    cache.put_mx("example.net", mx("mx.example.net", c.ttl), t0);
    EXPECT_EQ(look(cache, "example.net", t0 + c.kept - seconds(1)), "fresh mx.example.net")
        << c.name;
    EXPECT_EQ(look(cache, "example.net", t0 + c.kept), "miss") << c.name;
  }
}

TEST(DnsCache, NegativeAnswersFollowRfc2308) {
  struct Case {
    const char* name;
    Status status;
    Ttl ttl;
    seconds kept;
  };
  CachePolicy p;  // negative 60 s without SOA, at most 1 h
  const std::vector<Case> cases = {
      {"NXDOMAIN for the SOA's TTL", Status::kNxDomain, seconds(300), seconds(300)},
      {"NODATA for the SOA's TTL", Status::kNoData, seconds(30), seconds(30)},
      {"NXDOMAIN without SOA: the default", Status::kNxDomain, std::nullopt, p.negative_ttl},
      {"a long negative TTL is capped", Status::kNoData, seconds(86400), p.max_negative_ttl},
  };
  for (const Case& c : cases) {
    Cache cache(p);
    cache.put_mx("example.net", MxResult{c.status, {}, c.ttl}, t0);
    std::string expect = std::string("fresh ") + to_string(c.status);
    EXPECT_EQ(look(cache, "example.net", t0 + c.kept - seconds(1)), expect) << c.name;
    EXPECT_EQ(look(cache, "example.net", t0 + c.kept), "miss") << c.name;
  }
}

TEST(DnsCache, FailuresAreRememberedBrieflyOrNotAtAll) {
  Cache cache;  // failure_ttl 5 s
  cache.put_mx("example.net", fail(Status::kServFail), t0);
  EXPECT_EQ(look(cache, "example.net", t0 + seconds(4)), "fresh servfail");
  EXPECT_EQ(look(cache, "example.net", t0 + seconds(5)), "miss");

  CachePolicy off;
  off.failure_ttl = seconds(0);
  Cache none(off);
  none.put_mx("example.net", fail(Status::kTimeout), t0);
  EXPECT_EQ(look(none, "example.net", t0), "miss");
}

TEST(DnsCache, CancelledLookupsAreNeverStored) {
  Cache cache;
  Cached<MxResult> got = cache.put_mx("example.net", fail(Status::kCancelled), t0);
  EXPECT_EQ(got.value.status, Status::kCancelled);
  EXPECT_EQ(look(cache, "example.net", t0), "miss");
  EXPECT_EQ(cache.size(), 0u);
}

// A lookup the resolver never sent (dns.max_in_flight) is no failure of
// the name: nothing is stored, and the last good records stand in.
TEST(DnsCache, BusyLookupsAreNeverStoredAndTheLastGoodRecordsStandIn) {
  Cache cache;
  Cached<MxResult> got = cache.put_mx("example.net", fail(Status::kBusy), t0);
  EXPECT_EQ(got.value.status, Status::kBusy);
  EXPECT_EQ(look(cache, "example.net", t0), "miss") << "a busy moment refused the name";
  EXPECT_EQ(cache.size(), 0u);

  cache.put_mx("example.net", mx("old.example.net", seconds(60)), t0);
  Time t = t0 + seconds(61);
  got = cache.put_mx("example.net", fail(Status::kBusy), t);
  EXPECT_EQ(got.freshness, Freshness::kStale);
  EXPECT_EQ(got.value.records.at(0).exchange, "old.example.net");
  EXPECT_EQ(look(cache, "example.net", t + seconds(4)), "stale old.example.net");

  AddrResult busy{Status::kBusy, {}, std::nullopt};
  EXPECT_EQ(cache.put_addresses("mx.example.net", busy, t).value.status, Status::kBusy);
  EXPECT_FALSE(cache.find_addresses("mx.example.net", t));
}

TEST(DnsCache, ExpiredRecordsStandInForAFailedRefreshWithinTheStalePeriod) {
  Cache cache;  // stale for 1 h, failure_ttl 5 s
  cache.put_mx("example.net", mx("old.example.net", seconds(60)), t0);
  Time t = t0 + seconds(61);
  EXPECT_EQ(look(cache, "example.net", t), "miss");  // expired: refresh

  Cached<MxResult> got = cache.put_mx("example.net", fail(Status::kTimeout), t);
  EXPECT_EQ(got.freshness, Freshness::kStale);
  EXPECT_EQ(got.value.records.at(0).exchange, "old.example.net");
  // No new refresh until failure_ttl has passed; the stale records serve.
  EXPECT_EQ(look(cache, "example.net", t + seconds(4)), "stale old.example.net");
  EXPECT_EQ(look(cache, "example.net", t + seconds(5)), "miss");

  // The refresh succeeds: new records, fresh.
  got = cache.put_mx("example.net", mx("new.example.net", seconds(60)), t + seconds(5));
  EXPECT_EQ(got.freshness, Freshness::kFresh);
  EXPECT_EQ(look(cache, "example.net", t + seconds(6)), "fresh new.example.net");
}

TEST(DnsCache, StaleRecordsAreNotServedPastTheStalePeriod) {
  Cache cache;
  cache.put_mx("example.net", mx("old.example.net", seconds(60)), t0);
  Time past = t0 + seconds(60) + CachePolicy{}.stale_for;
  EXPECT_EQ(look(cache, "example.net", past), "miss");
  Cached<MxResult> got = cache.put_mx("example.net", fail(Status::kServFail), past);
  EXPECT_EQ(got.value.status, Status::kServFail);
  EXPECT_EQ(got.freshness, Freshness::kFresh);
}

TEST(DnsCache, ANegativeAnswerIsNeverServedStale) {
  Cache cache;
  cache.put_mx("example.net", MxResult{Status::kNxDomain, {}, seconds(60)}, t0);
  Cached<MxResult> got = cache.put_mx("example.net", fail(Status::kTimeout), t0 + seconds(61));
  EXPECT_EQ(got.value.status, Status::kTimeout);  // a 4xx, not a bounce on old evidence
}

TEST(DnsCache, AFailureDoesNotReplaceFreshRecords) {
  Cache cache;
  cache.put_mx("example.net", mx("mx.example.net", seconds(60)), t0);
  Cached<MxResult> got = cache.put_mx("example.net", fail(Status::kTimeout), t0 + seconds(10));
  EXPECT_EQ(got.freshness, Freshness::kFresh);
  EXPECT_EQ(got.value.records.at(0).exchange, "mx.example.net");
  EXPECT_EQ(look(cache, "example.net", t0 + seconds(59)), "fresh mx.example.net");
}

TEST(DnsCache, NamesCompareWithoutCaseOrTrailingDot) {
  Cache cache;
  cache.put_mx("Example.NET.", mx("mx.example.net", seconds(60)), t0);
  EXPECT_EQ(look(cache, "example.net", t0), "fresh mx.example.net");
  EXPECT_EQ(look(cache, "EXAMPLE.net.", t0), "fresh mx.example.net");
}

TEST(DnsCache, MxAndAddressAnswersDoNotMix) {
  Cache cache;
  cache.put_mx("example.net", mx("mx.example.net", seconds(60)), t0);
  EXPECT_FALSE(cache.find_addresses("example.net", t0));
  AddrResult a{Status::kOk, {boost::asio::ip::make_address("192.0.2.1")}, seconds(60)};
  cache.put_addresses("example.net", a, t0);
  auto hit = cache.find_addresses("example.net", t0);
  ASSERT_TRUE(hit);
  EXPECT_EQ(hit->value.addresses, a.addresses);
  EXPECT_EQ(look(cache, "example.net", t0), "fresh mx.example.net");
  EXPECT_EQ(cache.size(), 2u);
}

TEST(DnsCache, EvictsTheLeastRecentlyUsedWhenFull) {
  CachePolicy p;
  p.max_entries = 2;
  Cache cache(p);
  cache.put_mx("a.example", mx("mx.a.example", seconds(60)), t0);
  cache.put_mx("b.example", mx("mx.b.example", seconds(60)), t0);
  EXPECT_EQ(look(cache, "a.example", t0), "fresh mx.a.example");  // a is now the most recent
  cache.put_mx("c.example", mx("mx.c.example", seconds(60)), t0);
  EXPECT_EQ(cache.size(), 2u);
  EXPECT_EQ(look(cache, "b.example", t0), "miss");
  EXPECT_EQ(look(cache, "a.example", t0), "fresh mx.a.example");
  EXPECT_EQ(look(cache, "c.example", t0), "fresh mx.c.example");
  EXPECT_EQ(cache.counters().evictions, 1u);
}

TEST(DnsCache, CountsHitsStaleHitsAndMisses) {
  Cache cache;
  look(cache, "example.net", t0);                                         // miss
  cache.put_mx("example.net", mx("mx.example.net", seconds(60)), t0);     //
  look(cache, "example.net", t0);                                         // hit
  cache.put_mx("example.net", fail(Status::kTimeout), t0 + seconds(61));  // stale hit
  look(cache, "example.net", t0 + seconds(62));                           // stale hit
  EXPECT_EQ(cache.counters().misses, 1u);
  EXPECT_EQ(cache.counters().hits, 1u);
  EXPECT_EQ(cache.counters().stale_hits, 2u);
}

}  // namespace
}  // namespace smtplb::dns
