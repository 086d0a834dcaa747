// xtext.hpp: the xtext encoding of RFC 3461 section 4, which carries
// arbitrary bytes through an ESMTP parameter or an XCLIENT attribute value
// (Postfix XCLIENT_README: "attribute values are xtext encoded").
//
// Pure.  An xtext is printable US-ASCII without SP: each octet from "!" to
// "~" stands for itself, except "+" and "=", and any other octet is "+"
// followed by two upper-case hex digits.  The encoder therefore can never
// put a space, a CR or an LF on a command line, whatever the client sent.
// The decoder is strict: what RFC 3461 does not allow is refused, not
// repaired.
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace smtplb::smtp::xtext {

// Any bytes to xtext; never fails.  The output is at most three times as
// long as the input and holds only octets 0x21-0x7e.
std::string encode(std::string_view raw);

// The bytes an xtext stands for, or nullopt when `text` is not an xtext: an
// octet outside "!" to "~", a bare "=", or a "+" not followed by two
// upper-case hex digits ("+2b" is refused: RFC 3461 asks for upper case).
// "+41" for "A" is accepted, as the grammar allows it.
std::optional<std::string> decode(std::string_view text);

}  // namespace smtplb::smtp::xtext
