// idna.hpp: domain names compared on their A-labels (RFC 5890, RFC 3492).
//
// SECURITY.md 4: local_domains, route domains and MX lookups match a
// domain on its A-label, so `u@bücher.example` (SMTPUTF8) is the same
// domain as `xn--bcher-kva.example` in the configuration, and the DNS is
// asked for the name it holds.  Pure and I/O-free.
//
// to_a_labels() turns each non-ASCII label into "xn--" + its Punycode, and
// lowers ASCII letters.  It does no Unicode mapping (no case folding or
// normalisation of non-ASCII code points, UTS #46): IDNA2008 takes U-labels
// as the client wrote them, and a label written differently (say with an
// upper-case Ü) is a different name here, refused rather than guessed.
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace smtplb::smtp {

// RFC 3492 section 6.3: the Punycode of `code_points` (without "xn--"), or
// nothing on overflow or a value that is not a Unicode scalar value.
std::optional<std::string> punycode_encode(std::u32string_view code_points);
// RFC 3492 section 6.2: the code points of `encoded`, or nothing when it
// is not valid Punycode.
std::optional<std::u32string> punycode_decode(std::string_view encoded);

// `domain` with ASCII letters lowered and every non-ASCII label as its
// A-label; nothing when a label is not UTF-8 or its A-label is over 63
// octets, or the name over 255.
std::optional<std::string> to_a_labels(std::string_view domain);

}  // namespace smtplb::smtp
