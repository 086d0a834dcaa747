#include "smtp/reply.hpp"

#include <algorithm>
#include <cctype>

#include "smtp/address.hpp"

namespace smtplb::smtp {

namespace {

// A backend's reply text may reach the client (SECURITY.md 8: never raw
// backend bytes).  Well-formed, printable UTF-8 is kept (a backend quoting
// an SMTPUTF8 address back); in any other line every 8-bit byte becomes
// '?', so no ill-formed sequence, C1 control or U+2028 gets through.
void make_text_printable(std::string& text) {
  const bool eight_bit =
      std::any_of(text.begin(), text.end(), [](unsigned char c) { return c >= 0x80; });
  if (!eight_bit || is_printable_utf8(text)) return;
  for (char& c : text)
    if (static_cast<unsigned char>(c) >= 0x80) c = '?';
}

bool is_digit(char c) {
  return c >= '0' && c <= '9';
}

// RFC 3463: class "." subject "." detail, class 2/4/5, subject 1-3 digits,
// detail 1-3 digits.
std::size_t enhanced_length(std::string_view t) {
  if (t.size() < 5 || (t[0] != '2' && t[0] != '4' && t[0] != '5') || t[1] != '.') return 0;
  std::size_t i = 2;
  auto digits = [&](std::size_t max) {
    std::size_t n = 0;
    while (i < t.size() && is_digit(t[i]) && n < max) ++i, ++n;
    return n > 0 && (i >= t.size() || !is_digit(t[i]));
  };
  if (!digits(3) || i >= t.size() || t[i] != '.') return 0;
  ++i;
  if (!digits(3)) return 0;
  if (i < t.size() && t[i] != ' ') return 0;
  return i;
}

}  // namespace

std::pair<std::string, std::string_view> split_enhanced(std::string_view text) {
  std::size_t n = enhanced_length(text);
  if (n == 0) return {std::string(), text};
  std::string_view rest = text.substr(n);
  if (!rest.empty() && rest.front() == ' ') rest.remove_prefix(1);
  return {std::string(text.substr(0, n)), rest};
}

Reply make_reply(int code, std::string_view enhanced, std::string_view text) {
  Reply r;
  r.code = code;
  r.enhanced = std::string(enhanced);
  r.lines.emplace_back(text);
  return r;
}

std::string Reply::wire() const {
  std::string out;
  std::string code_str = std::to_string(code);
  std::size_t n = lines.empty() ? 1 : lines.size();
  for (std::size_t i = 0; i < n; ++i) {
    const std::size_t line_start = out.size();
    out += code_str;
    out += (i + 1 == n) ? ' ' : '-';
    if (!enhanced.empty()) {
      out += enhanced;
      if (!lines.empty() && !lines[i].empty()) out += ' ';
    }
    if (!lines.empty()) {
      // RFC 5321 4.5.3.1.5: 512 octets a line with CR LF.  A backend's
      // line that got an enhanced code prepended is cut, not overlong.
      std::size_t prefix = out.size() - line_start;
      std::size_t room = prefix + 2 < 512 ? 512 - 2 - prefix : 0;
      out.append(lines[i], 0, std::min(room, lines[i].size()));
    }
    out += "\r\n";
  }
  return out;
}

std::string Reply::summary() const {
  std::string out = std::to_string(code);
  if (!enhanced.empty()) out += " " + enhanced;
  for (const auto& l : lines) {
    out += ' ';
    out += l;
  }
  return out;
}

const char* to_string(ReplyError e) {
  switch (e) {
    case ReplyError::kNone:
      return "none";
    case ReplyError::kBadSyntax:
      return "malformed reply";
    case ReplyError::kMixedCodes:
      return "reply code changed inside a multi-line reply";
    case ReplyError::kLineTooLong:
      return "reply line too long";
    case ReplyError::kTooManyLines:
      return "too many reply lines";
    case ReplyError::kControlBytes:
      return "control bytes in reply";
  }
  return "?";
}

ReplyParser::Status ReplyParser::feed_line(std::string_view line) {
  if (error_ != ReplyError::kNone) return Status::kError;
  auto fail = [this](ReplyError e) {
    error_ = e;
    return Status::kError;
  };
  if (line.size() + 2 > kMaxReplyLine) return fail(ReplyError::kLineTooLong);
  if (current_.lines.size() >= kMaxReplyLines) return fail(ReplyError::kTooManyLines);
  if (line.size() < 3 || !is_digit(line[0]) || !is_digit(line[1]) || !is_digit(line[2]))
    return fail(ReplyError::kBadSyntax);
  if (line[0] < '2' || line[0] > '5') return fail(ReplyError::kBadSyntax);
  bool last = true;
  if (line.size() > 3) {
    if (line[3] == '-')
      last = false;
    else if (line[3] != ' ')
      return fail(ReplyError::kBadSyntax);
  }
  for (unsigned char c : line)
    if ((c < 0x20 && c != '\t') || c == 0x7f) return fail(ReplyError::kControlBytes);
  int code = (line[0] - '0') * 100 + (line[1] - '0') * 10 + (line[2] - '0');
  if (current_.lines.empty()) {
    current_.code = code;
  } else if (code != current_.code) {
    return fail(ReplyError::kMixedCodes);
  }
  std::string_view text = line.size() > 4 ? line.substr(4) : std::string_view();
  auto [enh, rest] = split_enhanced(text);
  // The enhanced code's class must match the reply's (RFC 3463 section 2).
  if (!enh.empty() && enh[0] != line[0]) {
    enh.clear();
    rest = text;
  }
  if (current_.lines.empty()) current_.enhanced = enh;
  std::string& stored =
      current_.lines.emplace_back(current_.enhanced.empty() || enh.empty() ? text : rest);
  make_text_printable(stored);
  return last ? Status::kDone : Status::kNeedMore;
}

Reply ReplyParser::take() {
  Reply r = std::move(current_);
  current_ = Reply();
  error_ = ReplyError::kNone;
  return r;
}

}  // namespace smtplb::smtp
