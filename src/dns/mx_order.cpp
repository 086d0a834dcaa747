#include "dns/mx_order.hpp"

#include <cctype>
#include <utility>

namespace smtplb::dns {

const char* to_string(MxVerdict v) {
  switch (v) {
    case MxVerdict::kHosts:
      return "hosts";
    case MxVerdict::kNullMx:
      return "null_mx";
    case MxVerdict::kNoUsableHost:
      return "no_usable_host";
  }
  return "no_usable_host";
}

namespace {

// Lowercase, without the trailing dot of an absolute name; the root (and
// the empty name, which only a broken answer gives) becomes ".".
std::string normalize(std::string_view name) {
  if (!name.empty() && name.back() == '.') name.remove_suffix(1);
  if (name.empty()) return ".";
  std::string out(name);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

bool is_root(const std::string& normalized) {
  return normalized == ".";
}

}  // namespace

MxPlan plan_mx(std::string_view domain, const std::vector<MxRecord>& records) {
  MxPlan plan;
  if (records.empty()) {
    std::string self = normalize(domain);
    if (is_root(self)) return plan;  // nothing to deliver to
    plan.verdict = MxVerdict::kHosts;
    plan.implicit = true;
    plan.groups.push_back(MxGroup{0, {std::move(self)}});
    return plan;
  }

  // Distinct records, normalized.  A server may repeat a record; the null
  // MX test below must not be fooled by a duplicate "0 .".
  std::vector<MxRecord> distinct;
  for (const MxRecord& r : records) {
    MxRecord n{r.preference, normalize(r.exchange)};
    if (std::find(distinct.begin(), distinct.end(), n) == distinct.end()) distinct.push_back(n);
  }
  if (distinct.size() == 1 && distinct[0].preference == 0 && is_root(distinct[0].exchange)) {
    plan.verdict = MxVerdict::kNullMx;
    return plan;
  }

  // Each host at its most preferred preference; "." names no host, whatever
  // its preference (RFC 7505 §3 forbids mixing it with other records).
  std::vector<MxRecord> hosts;
  for (const MxRecord& r : distinct) {
    if (is_root(r.exchange)) continue;
    auto same = std::find_if(hosts.begin(), hosts.end(),
                             [&](const MxRecord& h) { return h.exchange == r.exchange; });
    if (same == hosts.end()) {
      hosts.push_back(r);
    } else if (r.preference < same->preference) {
      same->preference = r.preference;
    }
  }
  if (hosts.empty()) return plan;  // kNoUsableHost

  std::stable_sort(hosts.begin(), hosts.end(), [](const MxRecord& a, const MxRecord& b) {
    return a.preference < b.preference;
  });
  if (hosts.size() > kMaxMxHosts) hosts.resize(kMaxMxHosts);
  plan.verdict = MxVerdict::kHosts;
  for (MxRecord& h : hosts) {
    if (plan.groups.empty() || plan.groups.back().preference != h.preference)
      plan.groups.push_back(MxGroup{h.preference, {}});
    plan.groups.back().hosts.push_back(std::move(h.exchange));
  }
  return plan;
}

}  // namespace smtplb::dns
