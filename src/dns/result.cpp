#include "dns/result.hpp"

#include <algorithm>
#include <utility>

namespace smtplb::dns {

const char* to_string(Status s) {
  switch (s) {
    case Status::kOk:
      return "ok";
    case Status::kNxDomain:
      return "nxdomain";
    case Status::kNoData:
      return "nodata";
    case Status::kServFail:
      return "servfail";
    case Status::kTimeout:
      return "timeout";
    case Status::kRefused:
      return "refused_servfail_or_unreachable";
    case Status::kMalformed:
      return "malformed";
    case Status::kBadName:
      return "bad_name";
    case Status::kCancelled:
      return "cancelled";
    case Status::kBusy:
      return "busy";
    case Status::kOther:
      return "other";
  }
  return "other";
}

namespace {

Ttl lowest(const Ttl& a, const Ttl& b) {
  if (a && b) return std::min(*a, *b);
  return a ? a : b;
}

}  // namespace

AddrResult combine_families(AddrResult v6, AddrResult v4) {
  AddrResult out;
  // One family not asked (dns.max_in_flight): the other alone would be
  // taken, and cached, for the whole answer.
  if (v6.status == Status::kBusy || v4.status == Status::kBusy) {
    out.status = Status::kBusy;
    return out;
  }
  if (v6.status == Status::kOk || v4.status == Status::kOk) {
    out.status = Status::kOk;
    for (AddrResult* r : {&v6, &v4}) {
      if (r->status != Status::kOk) continue;
      out.addresses.insert(out.addresses.end(), r->addresses.begin(), r->addresses.end());
      out.ttl = lowest(out.ttl, r->ttl);
    }
    return out;
  }
  // A cancelled wait is reported as such, whatever the other family said:
  // the caller asked to stop, not for a verdict.
  if (v6.status == Status::kCancelled || v4.status == Status::kCancelled) {
    out.status = Status::kCancelled;
    return out;
  }
  if (!is_final(v6.status)) return AddrResult{v6.status, {}, {}};
  if (!is_final(v4.status)) return AddrResult{v4.status, {}, {}};
  // Both definitive and empty.
  if (v6.status == Status::kBadName || v4.status == Status::kBadName) {
    out.status = Status::kBadName;
  } else if (v6.status == Status::kNxDomain || v4.status == Status::kNxDomain) {
    out.status = Status::kNxDomain;
  } else {
    out.status = Status::kNoData;
  }
  out.ttl = lowest(v6.ttl, v4.ttl);
  return out;
}

}  // namespace smtplb::dns
