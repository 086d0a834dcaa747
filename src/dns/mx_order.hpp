// mx_order.hpp: which hosts a transaction tries for a domain, and in what
// order (RFC 5321 §5.1, RFC 7505).  Pure: records in, plan out.
//
// plan_mx() turns one MX answer into groups of equal preference, lowest
// (most preferred) first.  It is computed once per answer and kept with it;
// try_order() then gives each transaction its own order: the groups in
// turn, and within a group a uniform random permutation, because RFC 5321
// says equally preferred hosts SHOULD share the load at random.  A caller
// that balances by load instead (least_load within a group) reads
// MxPlan::groups directly; the order between groups is never negotiable.
//
// Three answers are not host lists:
//  * no MX records at all (the lookup said NODATA): the implicit MX, the
//    domain itself at preference 0 (§5.1).  Only NODATA means this;
//    NXDOMAIN means the domain does not exist, and a failed lookup means
//    "try later".  The caller decides which case it has.
//  * the null MX, a single record "0 ." (RFC 7505 §3): the domain takes no
//    mail, and the client fails at once without trying anything.
//  * MX records of which none names a host (say "10 ."): §5.1 says this is
//    an error, and it must not fall back to the implicit MX.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "dns/result.hpp"

namespace smtplb::dns {

enum class MxVerdict {
  kHosts,         // try the groups in order
  kNullMx,        // the domain accepts no mail (RFC 7505): a 5xx, no attempt
  kNoUsableHost,  // MX records exist but none is usable: an error, no fallback
};

const char* to_string(MxVerdict v);

struct MxGroup {
  std::uint16_t preference = 0;
  std::vector<std::string> hosts;  // each host once, in answer order
  bool operator==(const MxGroup&) const = default;
};

struct MxPlan {
  MxVerdict verdict = MxVerdict::kNoUsableHost;
  bool implicit = false;        // no MX records: the domain itself (RFC 5321 §5.1)
  std::vector<MxGroup> groups;  // ascending preference; empty unless kHosts
};

// The most hosts a plan holds, most preferred first (answer order within a
// preference): each is an address lookup before a transaction can start,
// and a domain publishing hundreds of MX records must not make one RCPT
// wait for all of them (SECURITY.md 7; Postfix stops at 5 addresses,
// smtp_mx_address_limit).
inline constexpr std::size_t kMaxMxHosts = 10;

// `domain` is the name the MX records were asked for (used for the implicit
// MX).  Names are compared without case and without a trailing dot; a host
// listed at several preferences keeps only its most preferred one, so a
// replay never tries it twice.
MxPlan plan_mx(std::string_view domain, const std::vector<MxRecord>& records);

// One transaction's order: every host once, group by group, shuffled within
// each group with `rng` (any uniform random bit generator; std::shuffle
// draws each swap from a uniform distribution, so all permutations of a
// group are equally likely).  The caller owns the engine: one per core,
// seeded once, and a fixed seed in tests.
template <class URBG>
std::vector<std::string> try_order(const MxPlan& plan, URBG&& rng) {
  std::vector<std::string> order;
  for (const MxGroup& g : plan.groups) {
    auto first = order.insert(order.end(), g.hosts.begin(), g.hosts.end());
    std::shuffle(first, order.end(), rng);
  }
  return order;
}

}  // namespace smtplb::dns
