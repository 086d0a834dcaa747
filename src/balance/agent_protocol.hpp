// agent_protocol.hpp: replies of the HAProxy agent-check protocol.
//
// An agent answers one line of words separated by spaces, commas or tabs,
// then closes; text after '#' is a reason.  Words (HAProxy 2.6 manual,
// "agent-check"): "NN%" scales the backend's weight; "ready", "drain",
// "maint" set its administrative state; "up", "down", "fail", "stopped"
// its health; "maxconn:N".  smtplb also reads "weight:N" and the load
// figures smtplb-agent sends, "cpu:N", "mem:N", "queue:N" (also accepted
// as "cpu=N" inside the reason, where HAProxy passes them by).  Pure.
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace smtplb::balance {

struct AgentReply {
  std::optional<int> percent;  // 0..100
  std::optional<int> weight;
  std::optional<int> maxconn;
  enum class Admin { kUnset, kReady, kDrain, kMaint } admin = Admin::kUnset;
  enum class Health { kUnset, kUp, kDown } health = Health::kUnset;
  std::optional<int> cpu, mem, queue;  // busy %, memory used %, queued messages
  std::string reason;
};

// nullopt for a garbled reply (an unknown word, a bad number, control
// bytes, or nothing at all): the caller ignores it and keeps what it had.
std::optional<AgentReply> parse_agent_reply(std::string_view line);

// The longest reply read; more is a garbled agent.
constexpr std::size_t kMaxAgentReply = 512;

}  // namespace smtplb::balance
