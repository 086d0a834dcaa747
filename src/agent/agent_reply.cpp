#include "agent/agent_reply.hpp"

#include <algorithm>

namespace smtplb::agent {

namespace {

// Queue length as a share of queue_max, 0..100, rounded to nearest.
int queue_percent(std::uint64_t queue, std::uint64_t queue_max) {
  if (queue_max == 0) queue_max = 1;
  if (queue >= queue_max) return 100;
  return static_cast<int>((queue * 100 + queue_max / 2) / queue_max);
}

bool at_or_over(int value, int threshold) {
  return threshold > 0 && value >= threshold;
}

}  // namespace

Decision decide(const Figures& f, const Thresholds& t) {
  Decision d;
  std::optional<int> load;
  auto worst = [&](int v) { load = std::max(load.value_or(0), std::clamp(v, 0, 100)); };
  if (f.cpu) {
    worst(*f.cpu);
    d.drain = d.drain || at_or_over(*f.cpu, t.drain_cpu);
  }
  if (f.memory) {
    worst(*f.memory);
    d.drain = d.drain || at_or_over(*f.memory, t.drain_memory);
  }
  if (f.queue) {
    worst(queue_percent(*f.queue, t.queue_max));
    d.drain = d.drain || (t.drain_queue > 0 && *f.queue >= t.drain_queue);
  }
  if (load) d.capacity = std::clamp(100 - *load, 1, 100);
  return d;
}

std::string problem_names(unsigned problems) {
  static constexpr struct {
    unsigned bit;
    const char* name;
  } kNames[] = {{kProblemStat, "stat"}, {kProblemMeminfo, "meminfo"}, {kProblemQueue, "queue"}};
  std::string out;
  for (const auto& n : kNames) {
    if (!(problems & n.bit)) continue;
    if (!out.empty()) out += ',';
    out += n.name;
  }
  return out;
}

std::string format_reply(const Figures& f, const Decision& d) {
  std::string line = "up";
  if (d.capacity) {
    line += d.drain ? " drain " : " ready ";
    line += std::to_string(*d.capacity);
    line += '%';
  }
  std::string fields;
  auto add = [&](const char* key, const std::string& value) {
    fields += ' ';
    fields += key;
    fields += '=';
    fields += value;
  };
  if (f.cpu) add("cpu", std::to_string(*f.cpu));
  if (f.memory) add("mem", std::to_string(*f.memory));
  if (f.queue) add("queue", std::to_string(*f.queue));
  if (f.problems) add("error", problem_names(f.problems));
  if (!fields.empty()) line += " #" + fields;
  line += '\n';
  return line;
}

std::string reply_line(const Figures& f, const Thresholds& t) {
  return format_reply(f, decide(f, t));
}

}  // namespace smtplb::agent
