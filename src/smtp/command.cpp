#include "smtp/command.hpp"

#include <array>
#include <limits>
#include <utility>

#include "smtp/ascii.hpp"
#include "smtp/replies.hpp"

namespace smtplb::smtp {

namespace {

struct VerbName {
  std::string_view name;
  Verb verb;
};

constexpr std::array kVerbs{
    VerbName{"HELO", Verb::kHelo},
    VerbName{"EHLO", Verb::kEhlo},
    VerbName{"MAIL", Verb::kMail},
    VerbName{"RCPT", Verb::kRcpt},
    VerbName{"DATA", Verb::kData},
    VerbName{"RSET", Verb::kRset},
    VerbName{"NOOP", Verb::kNoop},
    VerbName{"QUIT", Verb::kQuit},
    VerbName{"VRFY", Verb::kVrfy},
    VerbName{"HELP", Verb::kHelp},
    VerbName{"STARTTLS", Verb::kStartTls},
    VerbName{"AUTH", Verb::kAuth},
    VerbName{"BDAT", Verb::kBdat},
    VerbName{"XCLIENT", Verb::kXclient},
    // Postfix's smtpd_forbidden_commands: an HTTP client or proxy talking to
    // an SMTP port.
    VerbName{"GET", Verb::kHttp},
    VerbName{"POST", Verb::kHttp},
    VerbName{"HEAD", Verb::kHttp},
    VerbName{"PUT", Verb::kHttp},
    VerbName{"CONNECT", Verb::kHttp},
    VerbName{"OPTIONS", Verb::kHttp},
};

// A client-supplied name for a reply text: printable ASCII only, and short.
// Echoing it raw let a 2000-octet MAIL line produce a 555 reply line far over
// RFC 5321 4.5.3.1.5's 512 octets, carrying whatever bytes the client chose
// (STYLE.md: no raw peer bytes in replies).
std::string reply_safe(std::string_view s) {
  constexpr std::size_t kMaxEcho = 64;
  std::string out;
  for (unsigned char c : s.substr(0, kMaxEcho))
    out.push_back(c > 0x20 && c < 0x7f ? static_cast<char>(c) : '?');
  if (s.size() > kMaxEcho) out += "...";
  return out;
}

ParseResult fail(Reply r) {
  ParseResult p;
  p.error = std::move(r);
  return p;
}

// HELO/EHLO: a domain or an address literal (RFC 5321 4.1.1.1).  It feeds
// the Received field and the logs, so nothing else gets in (SECURITY.md 2).
// Underscores are tolerated: Windows hosts send them and they are harmless.
// Non-ASCII is a U-label's (RFC 6531): well-formed UTF-8, and no C1 control
// or U+2028/U+2029, which would reach the Received field and break its
// line for some readers.
bool valid_helo(std::string_view s) {
  if (s.empty() || s.size() > 255) return false;
  if (s.front() == '[') return is_valid_address_literal(s);
  bool ascii = true;
  for (unsigned char c : s) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '-' || c == '.' || c == '_' || c >= 0x80;
    if (!ok) return false;
    ascii = ascii && c < 0x80;
  }
  if (!ascii && !is_printable_utf8(s)) return false;
  return s.front() != '.' && s.find("..") == std::string_view::npos;
}

bool is_keyword(std::string_view k) {
  if (k.empty()) return false;
  for (std::size_t i = 0; i < k.size(); ++i) {
    unsigned char c = k[i];
    bool alnum = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
    if (!alnum && !(i > 0 && c == '-')) return false;
  }
  return true;
}

// esmtp-value = 1*(%d33-60 / %d62-126), with UTF-8 allowed (RFC 6531 3.3).
bool is_value(std::string_view v) {
  if (v.empty()) return false;
  for (unsigned char c : v)
    if (!((c >= 33 && c <= 60) || (c >= 62 && c <= 126) || c >= 0x80)) return false;
  return true;
}

std::optional<std::uint64_t> parse_size(std::string_view v) {
  if (v.empty() || v.size() > 20) return std::nullopt;
  std::uint64_t n = 0;
  for (char c : v) {
    if (c < '0' || c > '9') return std::nullopt;
    std::uint64_t d = static_cast<std::uint64_t>(c - '0');
    if (n > (std::numeric_limits<std::uint64_t>::max() - d) / 10)
      return std::numeric_limits<std::uint64_t>::max();  // over any limit: 552
    n = n * 10 + d;
  }
  return n;
}

// Parses "FROM:<path> params" / "TO:<path> params".
ParseResult parse_mail_rcpt(Verb verb, std::string_view arg) {
  std::string_view prefix = verb == Verb::kMail ? "FROM:" : "TO:";
  if (!istarts_with(arg, prefix))
    return fail(
        replies::syntax(verb == Verb::kMail ? "use MAIL FROM:<address>" : "use RCPT TO:<address>"));
  arg.remove_prefix(prefix.size());
  // Tolerate "MAIL FROM: <a@b>": common, harmless, and what Postfix accepts.
  while (!arg.empty() && arg.front() == ' ') arg.remove_prefix(1);
  PathResult pr =
      parse_path(arg, verb == Verb::kMail ? PathKind::kReversePath : PathKind::kForwardPath);
  if (!pr.path) return fail(replies::syntax(pr.error));
  Command cmd;
  cmd.verb = verb;
  cmd.path = std::move(*pr.path);
  std::string_view rest = arg.substr(pr.consumed);
  if (!rest.empty() && rest.front() != ' ') return fail(replies::syntax("junk after address"));
  bool seen_size = false, seen_body = false;
  while (!rest.empty()) {
    while (!rest.empty() && rest.front() == ' ') rest.remove_prefix(1);
    if (rest.empty()) break;
    std::size_t sp = rest.find(' ');
    std::string_view param = rest.substr(0, sp);
    rest = sp == std::string_view::npos ? std::string_view() : rest.substr(sp);
    std::size_t eq = param.find('=');
    std::string_view key = param.substr(0, eq);
    std::optional<std::string_view> value;
    if (eq != std::string_view::npos) value = param.substr(eq + 1);
    if (!is_keyword(key) || (value && !is_value(*value)))
      return fail(replies::syntax("bad parameter"));
    if (verb == Verb::kRcpt) return fail(replies::unknown_parameter(reply_safe(key)));
    if (iequals(key, "SIZE")) {
      if (seen_size || !value) return fail(replies::syntax("bad SIZE"));
      auto n = parse_size(*value);
      if (!n) return fail(replies::syntax("bad SIZE"));
      cmd.mail.size = n;
      seen_size = true;
    } else if (iequals(key, "BODY")) {
      if (seen_body || !value) return fail(replies::syntax("bad BODY"));
      if (iequals(*value, "7BIT"))
        cmd.mail.body = Body::k7Bit;
      else if (iequals(*value, "8BITMIME"))
        cmd.mail.body = Body::k8BitMime;
      else
        return fail(replies::unknown_parameter("BODY=" + reply_safe(*value)));
      seen_body = true;
    } else if (iequals(key, "SMTPUTF8")) {
      if (value || cmd.mail.smtputf8) return fail(replies::syntax("bad SMTPUTF8"));
      cmd.mail.smtputf8 = true;
    } else if (iequals(key, "AUTH")) {
      if (!value) return fail(replies::syntax("bad AUTH"));
      cmd.mail.auth_given = true;
    } else {
      return fail(replies::unknown_parameter(reply_safe(key)));
    }
  }
  ParseResult ok;
  ok.command = std::move(cmd);
  return ok;
}

// AUTH mechanism [initial-response] (RFC 4954 4).  The mechanism is a SASL
// name (RFC 4422 3.1: 1 to 20 of A-Z 0-9 - _, taken in any case here);
// whether we offer it is the exchange's question (504 5.5.4), not a syntax
// one.  The response is one word; its base64 is judged by the exchange.
ParseResult parse_auth(std::string_view arg) {
  constexpr std::size_t kMaxMechanism = 20;
  auto next_word = [&arg] {
    while (!arg.empty() && arg.front() == ' ') arg.remove_prefix(1);
    std::size_t end = arg.find(' ');
    std::string_view word = arg.substr(0, end);
    arg.remove_prefix(end == std::string_view::npos ? arg.size() : end);
    return word;
  };
  std::string_view mechanism = next_word();
  if (mechanism.empty()) return fail(replies::syntax("AUTH needs a mechanism"));
  std::string_view initial = next_word();
  if (!next_word().empty()) return fail(replies::syntax("use AUTH mechanism [initial-response]"));
  Command cmd;
  cmd.verb = Verb::kAuth;
  if (mechanism.size() > kMaxMechanism) return fail(replies::syntax("bad mechanism name"));
  for (char c : mechanism) {
    if (c >= 'a' && c <= 'z') c = static_cast<char>(c - 'a' + 'A');
    bool ok = (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '_';
    if (!ok) return fail(replies::syntax("bad mechanism name"));
    cmd.auth_mechanism.push_back(c);
  }
  if (!initial.empty()) cmd.auth_initial = std::string(initial);
  ParseResult ok;
  ok.command = std::move(cmd);
  return ok;
}

}  // namespace

const char* to_string(Verb v) {
  for (const auto& vn : kVerbs)
    if (vn.verb == v) return vn.name.data();
  return "UNKNOWN";
}

Verb verb_of(std::string_view line) {
  std::string_view word = line.substr(0, line.find(' '));
  for (const auto& vn : kVerbs)
    if (iequals(word, vn.name)) return vn.verb;
  return Verb::kUnknown;
}

std::size_t max_line_for(Verb v) {
  if (v == Verb::kAuth) return kMaxAuthCommandLine;
  return (v == Verb::kMail || v == Verb::kRcpt) ? kMaxParameterCommandLine : kMaxCommandLine;
}

ParseResult parse_command(std::string_view line) {
  std::size_t sp = line.find(' ');
  std::string_view arg = sp == std::string_view::npos ? std::string_view() : line.substr(sp + 1);
  const Verb verb = verb_of(line);
  // Whatever else the line holds, an HTTP verb closes the session.
  if (verb == Verb::kHttp) {
    ParseResult http;
    http.command.emplace().verb = verb;
    return http;
  }
  if (line.find_first_of(std::string_view("\r\n\0", 3)) != std::string_view::npos) {
    // A HELO/EHLO name carrying a line break is a header injection attempt
    // ("EHLO a.example\nX-Injected: 1"): SECURITY.md 2 answers it as a bad
    // argument, 501 5.5.4, like any other bad host name.  Elsewhere a bare
    // CR, LF or NUL is 500 5.5.2 (RFC 5321 2.3.8).
    if (verb == Verb::kHelo || verb == Verb::kEhlo) return fail(replies::syntax("bad host name"));
    return fail(replies::bad_line_ending());
  }
  Command cmd;
  cmd.verb = verb;
  switch (verb) {
    case Verb::kUnknown:
      return fail(replies::unknown_command());
    case Verb::kHttp:
      break;
    case Verb::kHelo:
    case Verb::kEhlo:
      while (!arg.empty() && arg.back() == ' ') arg.remove_suffix(1);
      if (arg.empty()) return fail(replies::syntax("EHLO needs a host name"));
      if (!valid_helo(arg)) return fail(replies::syntax("bad host name"));
      cmd.domain = std::string(arg);
      break;
    case Verb::kMail:
    case Verb::kRcpt:
      return parse_mail_rcpt(verb, arg);
    case Verb::kData:
    case Verb::kRset:
    case Verb::kQuit:
    case Verb::kStartTls:
      if (!arg.empty() && arg.find_first_not_of(' ') != std::string_view::npos)
        return fail(replies::syntax("no arguments allowed"));
      break;
    case Verb::kVrfy:
      if (arg.empty()) return fail(replies::syntax("VRFY needs an argument"));
      cmd.arg = std::string(arg);
      break;
    case Verb::kAuth: {
      ParseResult auth = parse_auth(arg);
      if (auth.command) auth.command->arg = std::string(arg);
      return auth;
    }
    case Verb::kNoop:
    case Verb::kHelp:
    case Verb::kBdat:
    case Verb::kXclient:
      cmd.arg = std::string(arg);
      break;
  }
  ParseResult ok;
  ok.command = std::move(cmd);
  return ok;
}

}  // namespace smtplb::smtp
