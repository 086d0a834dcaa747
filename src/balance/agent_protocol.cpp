#include "balance/agent_protocol.hpp"

#include <charconv>

#include "smtp/ascii.hpp"

namespace smtplb::balance {

namespace {

using smtp::iequals;

std::optional<int> number(std::string_view s, int max) {
  int n = 0;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), n);
  if (ec != std::errc() || p != s.data() + s.size() || n < 0 || n > max) return std::nullopt;
  return n;
}

// "cpu=37 mem=21 queue=12" inside the reason text.
void figures_from_reason(std::string_view r, AgentReply& out) {
  std::size_t i = 0;
  while (i < r.size()) {
    std::size_t end = r.find_first_of(" ,\t", i);
    std::string_view w = r.substr(i, end == std::string_view::npos ? r.npos : end - i);
    std::size_t eq = w.find('=');
    if (eq != std::string_view::npos) {
      auto v = number(w.substr(eq + 1), 100000000);
      std::string_view k = w.substr(0, eq);
      if (v && iequals(k, "cpu") && !out.cpu) out.cpu = std::min(*v, 100);
      if (v && iequals(k, "mem") && !out.mem) out.mem = std::min(*v, 100);
      if (v && iequals(k, "queue") && !out.queue) out.queue = *v;
    }
    if (end == std::string_view::npos) break;
    i = end + 1;
  }
}

}  // namespace

std::optional<AgentReply> parse_agent_reply(std::string_view line) {
  // One line ending, LF or CR LF, and no more: a CR or LF left over is a
  // control character, refused below like any other.
  if (!line.empty() && line.back() == '\n') line.remove_suffix(1);
  if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
  if (line.size() > kMaxAgentReply) return std::nullopt;
  for (unsigned char c : line)
    if ((c < 0x20 && c != '\t') || c == 0x7f) return std::nullopt;
  AgentReply out;
  std::string_view words = line;
  if (auto hash = line.find('#'); hash != std::string_view::npos) {
    words = line.substr(0, hash);
    std::string_view r = line.substr(hash + 1);
    while (!r.empty() && r.front() == ' ') r.remove_prefix(1);
    out.reason = std::string(r);
  }
  bool any = false;
  std::size_t i = 0;
  while (i <= words.size()) {
    std::size_t end = words.find_first_of(" ,\t", i);
    std::string_view w = words.substr(i, end == std::string_view::npos ? words.npos : end - i);
    i = end == std::string_view::npos ? words.size() + 1 : end + 1;
    if (w.empty()) continue;
    any = true;
    if (w.back() == '%') {
      auto n = number(w.substr(0, w.size() - 1), 100);
      if (!n) return std::nullopt;
      out.percent = n;
    } else if (iequals(w, "ready")) {
      out.admin = AgentReply::Admin::kReady;
    } else if (iequals(w, "drain")) {
      out.admin = AgentReply::Admin::kDrain;
    } else if (iequals(w, "maint")) {
      out.admin = AgentReply::Admin::kMaint;
    } else if (iequals(w, "up")) {
      out.health = AgentReply::Health::kUp;
    } else if (iequals(w, "down") || iequals(w, "fail") || iequals(w, "stopped")) {
      out.health = AgentReply::Health::kDown;
    } else if (auto colon = w.find(':'); colon != std::string_view::npos) {
      std::string_view k = w.substr(0, colon);
      std::string_view v = w.substr(colon + 1);
      std::optional<int> n;
      if (iequals(k, "weight") && (n = number(v, 1000)))
        out.weight = n;
      else if (iequals(k, "maxconn") && (n = number(v, 10000000)))
        out.maxconn = n;
      else if (iequals(k, "cpu") && (n = number(v, 100)))
        out.cpu = n;
      else if (iequals(k, "mem") && (n = number(v, 100)))
        out.mem = n;
      else if (iequals(k, "queue") && (n = number(v, 100000000)))
        out.queue = n;
      else
        return std::nullopt;
    } else {
      return std::nullopt;
    }
  }
  figures_from_reason(out.reason, out);
  if (!any && out.reason.empty()) return std::nullopt;
  return out;
}

}  // namespace smtplb::balance
