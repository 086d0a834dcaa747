// result.hpp: what a DNS lookup can tell the MX pools, as plain values.
//
// One Status for every outcome (Envoy's failure enums): the resolver
// produces it, the cache decides how long to keep it, and is_final() is the
// single place that says "the DNS has spoken" (NXDOMAIN, NODATA: a 5xx is
// justified) versus "ask again later" (a 4xx).  No type here does I/O.
#pragma once

#include <boost/asio/ip/address.hpp>
#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace smtplb::dns {

enum class Status {
  kOk,        // records of the asked type
  kNxDomain,  // the name does not exist (RCODE 3)
  kNoData,    // the name exists, with no record of the asked type
  kServFail,  // the server could not answer (RCODE 2)
  kTimeout,   // no answer within the resolver's timeout x attempts
  // Refused (RCODE 5), or no server could be reached; also what c-ares 1.18
  // reports when the last server it tried answered SERVFAIL (it folds
  // those into ARES_ECONNREFUSED), so the logs name all three.
  kRefused,
  kMalformed,  // an answer we cannot parse, or FORMERR
  kBadName,    // the name cannot be put in a query (too long, empty label)
  kCancelled,  // the wait was cancelled or the resolver destroyed
  kBusy,       // not asked: dns.max_in_flight queries out and as many queued
  kOther,      // anything else (NOTIMP, out of memory)
};

const char* to_string(Status s);

// Definitive answers, which say something about the name and may bounce
// mail; everything else is the resolver's or the network's trouble and only
// defers it (RFC 5321 §5.1: a DNS failure is a temporary error).
inline bool is_final(Status s) {
  return s == Status::kOk || s == Status::kNxDomain || s == Status::kNoData ||
         s == Status::kBadName;
}

struct MxRecord {
  std::uint16_t preference = 0;
  std::string exchange;  // lowercase, no trailing dot; "." is the root (null MX)
  bool operator==(const MxRecord&) const = default;
};

// A TTL as the DNS gave it; the cache clamps it.  For kOk the lowest TTL of
// the records and of the CNAMEs followed to them (RFC 2181 §5.2 says an
// RRset has one TTL; when servers disagree the lowest is the safe one).  For
// kNxDomain and kNoData the negative TTL of RFC 2308 §5, min(SOA TTL, SOA
// MINIMUM), when the answer carried an SOA.  Empty otherwise.
using Ttl = std::optional<std::chrono::seconds>;

struct MxResult {
  Status status = Status::kOther;
  std::vector<MxRecord> records;  // kOk only, in answer order
  Ttl ttl;
};

struct AddrResult {
  Status status = Status::kOther;
  // kOk only: the AAAA addresses, then the A addresses, each in answer
  // order.  Which family to try first is the caller's policy.
  std::vector<boost::asio::ip::address> addresses;
  Ttl ttl;
};

// A and AAAA are asked separately; this is the one place that merges the
// two answers into what the host has.  Any address wins (a family that
// failed is left out, as other MTAs do); two definitive "no" answers make
// NXDOMAIN (either says the name is absent) or NODATA; otherwise the failure
// that stopped us from knowing, so the caller retries rather than bounces.
AddrResult combine_families(AddrResult v6, AddrResult v4);

}  // namespace smtplb::dns
