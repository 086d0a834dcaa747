#include "dns/result.hpp"

#include <gtest/gtest.h>

#include <vector>

namespace smtplb::dns {
namespace {

using boost::asio::ip::make_address;
using std::chrono::seconds;

AddrResult ok(const char* addr, int ttl) {
  return AddrResult{Status::kOk, {make_address(addr)}, seconds(ttl)};
}
AddrResult no(Status s, Ttl ttl = std::nullopt) {
  return AddrResult{s, {}, ttl};
}

TEST(DnsResult, CombiningFamiliesPrefersAnyAddressThenTheFailure) {
  struct Case {
    const char* name;
    AddrResult v6, v4;
    Status status;
    std::vector<boost::asio::ip::address> addresses;
    Ttl ttl;
  };
  const std::vector<Case> cases = {
      {"both families, AAAA first, lowest TTL",
       ok("2001:db8::1", 300),
       ok("192.0.2.1", 60),
       Status::kOk,
       {make_address("2001:db8::1"), make_address("192.0.2.1")},
       seconds(60)},
      {"IPv4 only",
       no(Status::kNoData, seconds(900)),
       ok("192.0.2.1", 60),
       Status::kOk,
       {make_address("192.0.2.1")},
       seconds(60)},
      {"an address despite the other family timing out",
       no(Status::kTimeout),
       ok("192.0.2.1", 60),
       Status::kOk,
       {make_address("192.0.2.1")},
       seconds(60)},
      {"no address and a timeout: retry, do not bounce",
       no(Status::kNoData, seconds(60)),
       no(Status::kTimeout),
       Status::kTimeout,
       {},
       std::nullopt},
      {"SERVFAIL on AAAA hides a NXDOMAIN on A",
       no(Status::kServFail),
       no(Status::kNxDomain),
       Status::kServFail,
       {},
       std::nullopt},
      {"both NXDOMAIN",
       no(Status::kNxDomain, seconds(30)),
       no(Status::kNxDomain, seconds(90)),
       Status::kNxDomain,
       {},
       seconds(30)},
      {"NXDOMAIN beats NODATA",
       no(Status::kNoData, seconds(30)),
       no(Status::kNxDomain),
       Status::kNxDomain,
       {},
       seconds(30)},
      {"both NODATA",
       no(Status::kNoData),
       no(Status::kNoData, seconds(120)),
       Status::kNoData,
       {},
       seconds(120)},
      {"one family not sent (busy): the other alone is not the answer",
       no(Status::kBusy),
       ok("192.0.2.1", 60),
       Status::kBusy,
       {},
       std::nullopt},
      {"busy, whichever family it was",
       ok("2001:db8::1", 300),
       no(Status::kBusy),
       Status::kBusy,
       {},
       std::nullopt},
      {"cancelled wins over a failure",
       no(Status::kTimeout),
       no(Status::kCancelled),
       Status::kCancelled,
       {},
       std::nullopt},
  };
  for (const Case& c : cases) {
    AddrResult got = combine_families(c.v6, c.v4);
    EXPECT_EQ(got.status, c.status) << c.name << ": got " << to_string(got.status);
    EXPECT_EQ(got.addresses, c.addresses) << c.name;
    EXPECT_EQ(got.ttl, c.ttl) << c.name;
  }
}

TEST(DnsResult, OnlyDefinitiveAnswersAreFinal) {
  for (Status s : {Status::kOk, Status::kNxDomain, Status::kNoData, Status::kBadName})
    EXPECT_TRUE(is_final(s)) << to_string(s);
  for (Status s : {Status::kServFail, Status::kTimeout, Status::kRefused, Status::kMalformed,
                   Status::kCancelled, Status::kOther})
    EXPECT_FALSE(is_final(s)) << to_string(s);
}

}  // namespace
}  // namespace smtplb::dns
