// agent_options_test.cpp: smtplb-agent's flag syntaxes (src/agent/agent_options.hpp).
#include "agent/agent_options.hpp"

#include <gtest/gtest.h>

#include <vector>

namespace smtplb::agent {
namespace {

TEST(AgentParseDuration, Cases) {
  using std::chrono::milliseconds;
  struct Case {
    const char* in;
    std::optional<milliseconds> want;
  };
  const std::vector<Case> cases = {
      {"500ms", milliseconds(500)},
      {"1s", milliseconds(1000)},
      {"2m", milliseconds(120'000)},
      {"1h", milliseconds(3'600'000)},
      {"0s", milliseconds(0)},       // parsed; the CLI refuses it
      {"1", std::nullopt},           // a unit is required
      {"1.5s", milliseconds(1500)},  // the configuration file's syntax
      {"s", std::nullopt},
      {"-1s", std::nullopt},
      {"1 s", milliseconds(1000)},
      {"1d", milliseconds(86'400'000)},
      {"1000000000000s", std::nullopt},  // absurd: refused, cannot overflow
      {"", std::nullopt},
  };
  for (const auto& c : cases) EXPECT_EQ(parse_duration(c.in), c.want) << c.in;
}

TEST(AgentParseListen, Cases) {
  struct Case {
    const char* in;
    std::optional<ListenAddress> want;
  };
  const std::vector<Case> cases = {
      {"0.0.0.0:9777", ListenAddress{"0.0.0.0", 9777}},
      {"127.0.0.1:0", ListenAddress{"127.0.0.1", 0}},
      {"[::]:9777", ListenAddress{"::", 9777}},
      {"[::1]:65535", ListenAddress{"::1", 65535}},
      {"::1:9777", std::nullopt},  // IPv6 needs brackets
      {"127.0.0.1", std::nullopt},
      {"127.0.0.1:", std::nullopt},
      {":9777", std::nullopt},
      {"127.0.0.1:65536", std::nullopt},
      {"127.0.0.1:97x", std::nullopt},
      {"[]:9777", std::nullopt},
      {"[::1:9777", std::nullopt},
  };
  for (const auto& c : cases) EXPECT_EQ(parse_listen(c.in), c.want) << c.in;
}

}  // namespace
}  // namespace smtplb::agent
