// agent_reply_fuzz.cpp: the agent-check reply parser on arbitrary bytes.
//
// An agent is a peer like any other: whatever it sends, the parser returns
// a value or nullopt, and a value is within the protocol's ranges.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "balance/agent_protocol.hpp"
#include "fuzz_check.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::string_view in(reinterpret_cast<const char*>(data), size);
  auto r = smtplb::balance::parse_agent_reply(in);
  if (!r) return 0;
  CHECK(in.size() <= smtplb::balance::kMaxAgentReply + 2);
  if (r->percent) CHECK(*r->percent >= 0 && *r->percent <= 100);
  if (r->cpu) CHECK(*r->cpu >= 0 && *r->cpu <= 100);
  if (r->mem) CHECK(*r->mem >= 0 && *r->mem <= 100);
  if (r->queue) CHECK(*r->queue >= 0);
  if (r->weight) CHECK(*r->weight >= 0 && *r->weight <= 1000);
  for (unsigned char c : r->reason) CHECK(c >= 0x20 || c == '\t');
  // Parsing is a function of the line: the same input, the same answer.
  auto again = smtplb::balance::parse_agent_reply(in);
  CHECK(again && again->percent == r->percent && again->reason == r->reason);
  return 0;
}
