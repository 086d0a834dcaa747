#include "smtp/xclient.hpp"

#include <array>

#include "smtp/ascii.hpp"
#include "smtp/xtext.hpp"

namespace smtplb::smtp {

namespace {

// XCLIENT_README: "[UNAVAILABLE] when the information is unavailable".
constexpr std::string_view kUnavailable = "[UNAVAILABLE]";
constexpr std::string_view kVerb = "XCLIENT";
constexpr std::string_view kCrlf = "\r\n";
// Room for one "NAME=value" on a line of its own.
constexpr std::size_t kMaxAttribute = kMaxXclientLine - kVerb.size() - 1 - kCrlf.size();

// The next space-separated word of `s`, consumed; empty at the end.
std::string_view next_word(std::string_view& s) {
  while (!s.empty() && s.front() == ' ') s.remove_prefix(1);
  std::size_t end = s.find(' ');
  std::string_view word = s.substr(0, end);
  s.remove_prefix(end == std::string_view::npos ? s.size() : end);
  return word;
}

// ADDR is "an IPv4 network address, an IPv6 address prefixed with IPV6:"
// and not in brackets.  An IPv4 client seen on a dual-stack socket arrives
// as ::ffff:a.b.c.d; it goes out as the IPv4 address it is, or the
// backend's IPv4 rules (mynetworks 10.0.0.0/8) would never match it.
std::string addr_value(std::string_view addr) {
  if (addr.empty()) return std::string(kUnavailable);
  constexpr std::string_view kMapped = "::ffff:";
  if (istarts_with(addr, kMapped) && addr.find('.') != std::string_view::npos)
    return std::string(addr.substr(kMapped.size()));
  if (addr.find(':') != std::string_view::npos) return "IPV6:" + std::string(addr);
  return std::string(addr);
}

// PROTO "specifies either SMTP or ESMTP"; a backend refuses anything else
// with 501, so anything else is unknown.
std::string proto_value(std::string_view proto) {
  if (iequals(proto, "SMTP") || iequals(proto, "ESMTP")) return std::string(proto);
  return std::string(kUnavailable);
}

std::string or_unavailable(std::string_view value) {
  return value.empty() ? std::string(kUnavailable) : std::string(value);
}

}  // namespace

std::optional<XclientSupport> parse_xclient_keyword(std::string_view ehlo_line) {
  if (!iequals(next_word(ehlo_line), kVerb)) return std::nullopt;
  XclientSupport s;
  for (std::string_view word = next_word(ehlo_line); !word.empty(); word = next_word(ehlo_line)) {
    if (iequals(word, "NAME"))
      s.name = true;
    else if (iequals(word, "ADDR"))
      s.addr = true;
    else if (iequals(word, "PORT"))
      s.port = true;
    else if (iequals(word, "PROTO"))
      s.proto = true;
    else if (iequals(word, "HELO"))
      s.helo = true;
    else if (iequals(word, "LOGIN"))
      s.login = true;
  }
  return s;
}

std::optional<XclientSupport> find_xclient(const Reply& ehlo) {
  for (std::size_t i = 1; i < ehlo.lines.size(); ++i)
    if (auto s = parse_xclient_keyword(ehlo.lines[i])) return s;
  return std::nullopt;
}

std::vector<std::string> xclient_commands(const XclientAttributes& client,
                                          const XclientSupport& advertised) {
  struct Attribute {
    bool advertised;
    std::string_view name;
    std::string value;  // raw, before xtext
  };
  const std::array attributes{
      Attribute{advertised.addr, "ADDR", addr_value(client.addr)},
      Attribute{advertised.port, "PORT",
                client.port ? std::to_string(*client.port) : std::string(kUnavailable)},
      Attribute{advertised.name, "NAME", or_unavailable(client.name)},
      Attribute{advertised.helo, "HELO", or_unavailable(client.helo)},
      Attribute{advertised.proto, "PROTO", proto_value(client.proto)},
      Attribute{advertised.login, "LOGIN", or_unavailable(client.login)},
  };
  std::vector<std::string> lines;
  std::string line;
  for (const Attribute& a : attributes) {
    if (!a.advertised) continue;
    std::string item = std::string(a.name) + "=" + xtext::encode(a.value);
    if (item.size() > kMaxAttribute) item = std::string(a.name) + "=" + std::string(kUnavailable);
    if (!line.empty() && line.size() + 1 + item.size() + kCrlf.size() > kMaxXclientLine) {
      lines.push_back(line + std::string(kCrlf));
      line.clear();
    }
    if (line.empty()) line = kVerb;
    line += ' ';
    line += item;
  }
  if (!line.empty()) lines.push_back(line + std::string(kCrlf));
  return lines;
}

}  // namespace smtplb::smtp
