// mx_answer_fuzz.cpp: the DNS MX answer parser, and the MX plan made from
// what it returns, on arbitrary bytes.
//
// A DNS answer comes off the network: whatever it holds, the parser returns
// a status and records without reading out of bounds, and plan_mx() turns
// any records into groups that are sorted, non-empty and hold each host once.
#include <cstddef>
#include <cstdint>
#include <set>
#include <span>

#include "dns/answer_parser.hpp"
#include "dns/mx_order.hpp"
#include "fuzz_check.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::span<const unsigned char> in(data, size);
  auto r = smtplb::dns::parse_mx_answer(in);
  (void)smtplb::dns::parse_negative_ttl(in);
  if (r.status != smtplb::dns::Status::kOk) CHECK(r.records.empty());
  for (const auto& rec : r.records) CHECK(!rec.exchange.empty() && rec.exchange.size() <= 255);
  auto plan = smtplb::dns::plan_mx("example.test", r.records);
  std::set<std::string> hosts;
  for (std::size_t i = 0; i < plan.groups.size(); ++i) {
    CHECK(!plan.groups[i].hosts.empty());
    if (i) CHECK(plan.groups[i - 1].preference < plan.groups[i].preference);
    for (const auto& h : plan.groups[i].hosts) CHECK(hosts.insert(h).second);
  }
  CHECK(hosts.size() <= smtplb::dns::kMaxMxHosts);
  if (plan.verdict != smtplb::dns::MxVerdict::kHosts) CHECK(plan.groups.empty());
  return 0;
}
