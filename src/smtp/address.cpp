#include "smtp/address.hpp"

#include <arpa/inet.h>

#include <array>

#include "smtp/ascii.hpp"
#include "smtp/utf8.hpp"

namespace smtplb::smtp {

namespace {

constexpr std::size_t kMaxLocalPart = 64;  // RFC 5321 4.5.3.1.1
constexpr std::size_t kMaxDomain = 255;    // RFC 5321 4.5.3.1.2
constexpr std::size_t kMaxLabel = 63;      // RFC 1035 2.3.4
constexpr std::size_t kMaxPath = 256;      // RFC 5321 4.5.3.1.3

bool is_alpha(unsigned char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}
bool is_digit(unsigned char c) {
  return c >= '0' && c <= '9';
}
bool is_utf8(unsigned char c) {
  return c >= 0x80;
}

// atext of RFC 5322 3.2.3, extended by RFC 6531 with UTF8-non-ascii.
bool is_atext(unsigned char c) {
  if (is_alpha(c) || is_digit(c) || is_utf8(c)) return true;
  switch (c) {
    case '!':
    case '#':
    case '$':
    case '%':
    case '&':
    case '\'':
    case '*':
    case '+':
    case '-':
    case '/':
    case '=':
    case '?':
    case '^':
    case '_':
    case '`':
    case '{':
    case '|':
    case '}':
    case '~':
      return true;
    default:
      return false;
  }
}

// Well-formed UTF-8 (RFC 3629), so that "non-ASCII" never means "any byte".
bool valid_dot_string(std::string_view s) {
  if (s.empty() || s.front() == '.' || s.back() == '.') return false;
  char prev = 0;
  for (unsigned char c : s) {
    if (c == '.') {
      if (prev == '.') return false;
    } else if (!is_atext(c)) {
      return false;
    }
    prev = static_cast<char>(c);
  }
  return valid_utf8(s);
}

// Quoted-string = DQUOTE *QcontentSMTP DQUOTE (RFC 5321 4.1.2).
// Returns the length of the quoted string at the start of s, 0 if invalid.
std::size_t quoted_string_length(std::string_view s) {
  if (s.empty() || s[0] != '"') return 0;
  for (std::size_t i = 1; i < s.size(); ++i) {
    unsigned char c = s[i];
    if (c == '"') return valid_utf8(s.substr(0, i + 1)) ? i + 1 : 0;
    if (c == '\\') {
      if (i + 1 >= s.size()) return 0;
      unsigned char e = s[i + 1];
      if (e < 32 || e > 126) return 0;
      ++i;
      continue;
    }
    // qtextSMTP: %d32-33 / %d35-91 / %d93-126, plus UTF-8 (RFC 6531).
    if (!(c == 32 || c == 33 || (c >= 35 && c <= 91) || (c >= 93 && c <= 126) || c >= 0x80))
      return 0;
  }
  return 0;
}

bool parse_mailbox(std::string_view s, Mailbox& out, std::string& err) {
  std::size_t at;
  if (!s.empty() && s[0] == '"') {
    std::size_t q = quoted_string_length(s);
    if (q == 0) {
      err = "bad quoted local part";
      return false;
    }
    at = q;
    if (at >= s.size() || s[at] != '@') {
      err = "missing @domain";
      return false;
    }
  } else {
    at = s.rfind('@');
    if (at == std::string_view::npos) {
      err = "missing @domain";
      return false;
    }
    if (!valid_dot_string(s.substr(0, at))) {
      err = "bad local part";
      return false;
    }
  }
  std::string_view local = s.substr(0, at);
  std::string_view domain = s.substr(at + 1);
  if (local.size() > kMaxLocalPart) {
    err = "local part too long";
    return false;
  }
  if (domain.empty()) {
    err = "empty domain";
    return false;
  }
  if (domain.front() == '[') {
    if (!is_valid_address_literal(domain)) {
      err = "bad address literal";
      return false;
    }
  } else if (!is_valid_domain(domain.back() == '.' ? domain.substr(0, domain.size() - 1)
                                                   : domain)) {
    // One trailing dot (an absolute name, "example.com.") is syntax we
    // accept and keep: it is not the same domain to the relay policy, so
    // an untrusted client gets 554 5.7.1 for it (SECURITY.md 4), not a
    // syntax error that would hide the policy.
    err = "bad domain";
    return false;
  }
  out.local_part = std::string(local);
  out.domain = std::string(domain);
  return true;
}

}  // namespace

bool Mailbox::has_non_ascii() const {
  for (unsigned char c : local_part)
    if (c >= 0x80) return true;
  for (unsigned char c : domain)
    if (c >= 0x80) return true;
  return false;
}

std::string ascii_lower(std::string_view s) {
  std::string out(s);
  for (char& c : out)
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c + 32);
  return out;
}

bool is_valid_domain(std::string_view d) {
  if (d.empty() || d.size() > kMaxDomain) return false;
  if (!valid_utf8(d)) return false;
  std::size_t start = 0;
  for (;;) {
    std::size_t dot = d.find('.', start);
    std::string_view label = d.substr(start, dot == std::string_view::npos ? d.npos : dot - start);
    if (label.empty() || label.size() > kMaxLabel) return false;
    // sub-domain = Let-dig [Ldh-str]: no leading or trailing hyphen.
    if (label.front() == '-' || label.back() == '-') return false;
    for (unsigned char c : label)
      if (!(is_alpha(c) || is_digit(c) || c == '-' || is_utf8(c))) return false;
    if (dot == std::string_view::npos) break;
    start = dot + 1;
  }
  return true;
}

bool is_dot_string(std::string_view s) {
  return valid_dot_string(s);
}

bool is_printable_utf8(std::string_view s) {
  if (!valid_utf8(s)) return false;
  for (std::size_t i = 0; i < s.size(); ++i) {
    const unsigned char c = s[i];
    if (c < 0x20 || c == 0x7f) return false;
    // Well-formed, so 0xc2 and 0xe2 are lead bytes here and their
    // continuation bytes follow.  U+0080-U+009F is C2 80-C2 9F.
    const unsigned char c1 = i + 1 < s.size() ? s[i + 1] : 0;
    if (c == 0xc2 && c1 < 0xa0) return false;
    // U+2028, U+2029: E2 80 A8, E2 80 A9.
    if (c == 0xe2 && c1 == 0x80 && i + 2 < s.size() &&
        (static_cast<unsigned char>(s[i + 2]) == 0xa8 ||
         static_cast<unsigned char>(s[i + 2]) == 0xa9))
      return false;
  }
  return true;
}

bool is_valid_address_literal(std::string_view d) {
  if (d.size() < 3 || d.front() != '[' || d.back() != ']') return false;
  std::string inner(d.substr(1, d.size() - 2));
  // inet_pton reads a C string: without this, "[192.0.2.1\0junk]" passed as
  // the valid literal it starts with, NUL and junk kept in the domain.
  if (inner.find('\0') != std::string::npos) return false;
  std::array<unsigned char, 16> buf{};
  if (inner.size() > 5 && iequals(std::string_view(inner).substr(0, 5), "IPv6:"))
    return inet_pton(AF_INET6, inner.c_str() + 5, buf.data()) == 1;
  // inet_pton accepts only dotted-quad decimal for AF_INET: no octal, no
  // shortened forms, which is what RFC 5321's Snum syntax asks.
  if (inet_pton(AF_INET, inner.c_str(), buf.data()) == 1) return true;
  // General-address-literal: Standardized-tag ":" 1*dcontent; none are
  // registered that we could deliver to, so refuse them.
  return false;
}

PathResult parse_path(std::string_view text, PathKind kind) {
  PathResult r;
  if (text.empty() || text[0] != '<') {
    r.error = "address must be in angle brackets";
    return r;
  }
  // Find the closing '>' outside a quoted string.
  std::size_t i = 1;
  bool in_quote = false;
  for (; i < text.size(); ++i) {
    char c = text[i];
    if (in_quote) {
      if (c == '\\') {
        ++i;
        continue;
      }
      if (c == '"') in_quote = false;
    } else if (c == '"') {
      in_quote = true;
    } else if (c == '>') {
      break;
    }
  }
  if (i >= text.size()) {
    r.error = "missing '>'";
    return r;
  }
  r.consumed = i + 1;
  std::string_view inner = text.substr(1, i - 1);
  if (inner.size() + 2 > kMaxPath) {
    r.error = "path too long";
    return r;
  }
  Path p;
  if (inner.empty()) {
    if (kind != PathKind::kReversePath) {
      r.error = "empty forward path";
      return r;
    }
    p.null = true;
    r.path = p;
    return r;
  }
  // Source route: "@one,@two:mailbox" -- accepted and ignored (RFC 5321
  // appendix C, 4.1.1.3).
  if (inner[0] == '@') {
    std::size_t colon = inner.find(':');
    if (colon == std::string_view::npos) {
      r.error = "bad source route";
      return r;
    }
    std::string_view route = inner.substr(0, colon);
    std::size_t s = 0;
    while (s < route.size()) {
      std::size_t comma = route.find(',', s);
      std::string_view hop =
          route.substr(s, comma == std::string_view::npos ? route.npos : comma - s);
      if (hop.size() < 2 || hop[0] != '@' ||
          !(is_valid_domain(hop.substr(1)) || is_valid_address_literal(hop.substr(1)))) {
        r.error = "bad source route";
        return r;
      }
      if (comma == std::string_view::npos) break;
      s = comma + 1;
    }
    inner = inner.substr(colon + 1);
  }
  if (kind == PathKind::kForwardPath && iequals(inner, "postmaster")) {
    p.mailbox.local_part = std::string(inner);
    r.path = p;
    return r;
  }
  std::string err;
  if (!parse_mailbox(inner, p.mailbox, err)) {
    r.error = err;
    return r;
  }
  r.path = p;
  return r;
}

}  // namespace smtplb::smtp
