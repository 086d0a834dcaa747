#include "agent/load_sampler.hpp"

#include <algorithm>
#include <array>
#include <charconv>

namespace smtplb::agent {

namespace {

bool is_blank(char c) {
  return c == ' ' || c == '\t' || c == '\r';
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && is_blank(s.front())) s.remove_prefix(1);
  while (!s.empty() && is_blank(s.back())) s.remove_suffix(1);
  return s;
}

// A whole string of decimal digits as u64; nullopt on anything else or
// overflow.
std::optional<std::uint64_t> to_u64(std::string_view s) {
  if (s.empty()) return std::nullopt;
  std::uint64_t v = 0;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || p != s.data() + s.size()) return std::nullopt;
  return v;
}

// Next line of `text` from `pos` (without its LF); advances `pos`.
std::string_view next_line(std::string_view text, std::size_t& pos) {
  std::size_t end = text.find('\n', pos);
  std::string_view line = text.substr(pos, end == std::string_view::npos ? end : end - pos);
  pos = end == std::string_view::npos ? text.size() : end + 1;
  return line;
}

// Rounded percentage part/whole, whole > 0 and part <= whole.
int percent(std::uint64_t part, std::uint64_t whole) {
  // part * 100 cannot overflow for tick or kB counts (< 2^57).
  return static_cast<int>((part * 100 + whole / 2) / whole);
}

}  // namespace

std::optional<CpuTimes> parse_proc_stat(std::string_view text) {
  std::size_t pos = 0;
  while (pos < text.size()) {
    std::string_view line = next_line(text, pos);
    if (line.size() < 4 || line.substr(0, 3) != "cpu" || (line[3] != ' ' && line[3] != '\t'))
      continue;
    // user nice system idle iowait irq softirq steal [guest guest_nice]
    std::array<std::uint64_t, 8> f{};
    std::size_t n = 0;
    std::string_view rest = line.substr(3);
    while (true) {
      rest = trim(rest);
      if (rest.empty()) break;
      std::size_t sp = rest.find_first_of(" \t");
      std::string_view word = rest.substr(0, sp);
      rest = sp == std::string_view::npos ? std::string_view{} : rest.substr(sp);
      auto v = to_u64(word);
      if (!v) return std::nullopt;
      if (n < f.size()) f[n] = *v;
      ++n;
    }
    if (n < 4) return std::nullopt;
    CpuTimes t;
    for (auto v : f) t.total += v;
    t.idle = f[3] + f[4];
    return t;
  }
  return std::nullopt;
}

std::optional<int> cpu_busy_percent(const CpuTimes& before, const CpuTimes& after) {
  if (after.total <= before.total) return std::nullopt;
  std::uint64_t total = after.total - before.total;
  std::uint64_t idle = after.idle > before.idle ? after.idle - before.idle : 0;
  idle = std::min(idle, total);
  return percent(total - idle, total);
}

std::optional<MemInfo> parse_meminfo(std::string_view text) {
  std::optional<std::uint64_t> total, available, free, buffers, cached;
  std::size_t pos = 0;
  while (pos < text.size()) {
    std::string_view line = next_line(text, pos);
    std::size_t colon = line.find(':');
    if (colon == std::string_view::npos) continue;
    std::string_view key = line.substr(0, colon);
    std::optional<std::uint64_t>* slot = key == "MemTotal"       ? &total
                                         : key == "MemAvailable" ? &available
                                         : key == "MemFree"      ? &free
                                         : key == "Buffers"      ? &buffers
                                         : key == "Cached"       ? &cached
                                                                 : nullptr;
    if (!slot) continue;
    std::string_view value = trim(line.substr(colon + 1));
    if (value.size() >= 2 && value.substr(value.size() - 2) == "kB")
      value = trim(value.substr(0, value.size() - 2));
    auto v = to_u64(value);
    if (!v) return std::nullopt;  // a known key with a bad value: not a meminfo we understand
    *slot = v;
  }
  if (!total || *total == 0) return std::nullopt;
  if (!available) {
    if (!free || !buffers || !cached) return std::nullopt;
    available = *free + *buffers + *cached;
  }
  return MemInfo{*total, std::min(*available, *total)};
}

int memory_used_percent(const MemInfo& m) {
  if (m.total_kb == 0) return 0;
  std::uint64_t avail = std::min(m.available_kb, m.total_kb);
  return percent(m.total_kb - avail, m.total_kb);
}

void QueueOutputParser::feed(std::string_view chunk) {
  std::size_t i = 0;
  while (i < chunk.size()) {
    char c = chunk[i];
    if (c == '\n') {
      end_line();
      ++i;
      continue;
    }
    if (!in_line_) {
      ++i;
      if (is_blank(c)) continue;
      in_line_ = true;
      line_is_json_ = c == '{';
      if (!line_is_json_) number_.push_back(c);
      continue;
    }
    if (line_is_json_) {
      // The rest of a JSON line does not matter: skip to its end at once.
      std::size_t nl = chunk.find('\n', i);
      i = nl == std::string_view::npos ? chunk.size() : nl;
      continue;
    }
    if (number_.size() < kMaxNumberLine)
      number_.push_back(c);
    else
      number_too_long_ = true;
    ++i;
  }
}

void QueueOutputParser::end_line() {
  if (!in_line_) return;  // a blank line
  if (line_is_json_) {
    ++json_lines_;
  } else {
    ++other_lines_;
    auto v = number_too_long_ ? std::nullopt : to_u64(trim(number_));
    if (v)
      number_value_ = v;
    else
      bad_ = true;
  }
  in_line_ = false;
  line_is_json_ = false;
  number_.clear();
  number_too_long_ = false;
}

std::optional<std::uint64_t> QueueOutputParser::finish() {
  end_line();
  if (bad_) return std::nullopt;
  if (other_lines_ == 0) return json_lines_;  // also: no output, an empty queue
  if (other_lines_ == 1 && json_lines_ == 0) return number_value_;
  return std::nullopt;  // two numbers, or numbers mixed with JSON
}

std::optional<std::uint64_t> parse_queue_output(std::string_view text) {
  QueueOutputParser p;
  p.feed(text);
  return p.finish();
}

}  // namespace smtplb::agent
