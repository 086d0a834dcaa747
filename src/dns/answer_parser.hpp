// answer_parser.hpp: reads the parts of a DNS response (RFC 1035 §4.1)
// that the MX pools need, trusting none of its bytes.
//
// c-ares 1.18 parses MX records without their TTL (ares_parse_mx_reply), and
// the cache needs the TTL, so MX answers are read here.  Pure functions of
// the message bytes (no I/O, no state), so a libFuzzer target can drive
// them directly (fuzz/answer_parser_fuzz.cpp, to come): every read is bounds-checked,
// names are at most 255 octets, and a compression pointer must point before
// the start of the name part that holds it, so a malicious loop of pointers
// ends.  Anything unreadable is kMalformed, never a crash.
#pragma once

#include <span>

#include "dns/result.hpp"

namespace smtplb::dns {

// The response to an MX query: kOk with the MX records of the name asked
// for (after the CNAMEs that lead from it, RFC 5321 §5.1), kNoData when it
// has none, kNxDomain, or the server's error.  Negative answers carry the
// RFC 2308 TTL when the authority section has an SOA.
MxResult parse_mx_answer(std::span<const unsigned char> message);

// The RFC 2308 §5 negative-caching TTL of a response, min(SOA TTL, SOA
// MINIMUM) from the first SOA in the authority section; empty without one
// or when the message is malformed.  For A/AAAA answers, which c-ares
// parses.
Ttl parse_negative_ttl(std::span<const unsigned char> message);

}  // namespace smtplb::dns
