// reply_fuzz.cpp: the backend ReplyParser on arbitrary bytes.
//
// The input is cut at LF into lines (a CR before the LF removed, as a
// reader would) and fed to the parser.  Every reply it completes must obey
// SECURITY.md 8: one code in 2xx-5xx, at most kMaxReplyLines lines, each
// short and free of control bytes, an enhanced code of the reply's class;
// and its wire form must parse back to the same reply when its lines stay
// within the limit.  Errors must be sticky until take().
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "fuzz_check.hpp"
#include "smtp/address.hpp"
#include "smtp/reply.hpp"

namespace {

using namespace smtplb::smtp;
using Status = ReplyParser::Status;

void check_reply(const Reply& r) {
  CHECK(r.code >= 200 && r.code <= 599);
  CHECK(!r.lines.empty() && r.lines.size() <= ReplyParser::kMaxReplyLines);
  if (!r.enhanced.empty()) {
    CHECK(r.enhanced[0] == '0' + r.code / 100);
    auto [code, rest] = split_enhanced(r.enhanced);
    CHECK(code == r.enhanced && rest.empty());
  }
  for (const auto& l : r.lines) {
    CHECK(l.size() + 6 <= ReplyParser::kMaxReplyLine);  // "NNN-" + text + CRLF
    for (unsigned char c : l) CHECK(c >= 0x20 || c == '\t');
    CHECK(l.find('\x7f') == std::string::npos);
    // 8-bit text only as well-formed, printable UTF-8.
    CHECK(std::all_of(l.begin(), l.end(), [](unsigned char c) { return c < 0x80; }) ||
          smtplb::smtp::is_printable_utf8(l));
  }

  // The rebuilt wire form parses back to the same reply, unless repeating
  // the enhanced code pushed a line over the limit.
  std::string wire = r.wire();
  ReplyParser p;
  Status s = Status::kNeedMore;
  std::size_t start = 0;
  bool too_long = false;
  while (start < wire.size()) {
    std::size_t crlf = wire.find("\r\n", start);
    CHECK(crlf != std::string::npos);
    CHECK(s == Status::kNeedMore);
    if (crlf - start + 2 > ReplyParser::kMaxReplyLine) too_long = true;
    s = p.feed_line(std::string_view(wire).substr(start, crlf - start));
    start = crlf + 2;
  }
  if (too_long) {
    CHECK(s == Status::kError && p.error() == ReplyError::kLineTooLong);
    return;
  }
  CHECK(s == Status::kDone);
  Reply back = p.take();
  CHECK(back.code == r.code);
  CHECK(back.enhanced == r.enhanced);
  CHECK(back.lines == r.lines);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::string_view in(reinterpret_cast<const char*>(data), size);
  ReplyParser p;
  std::size_t start = 0;
  while (start < in.size()) {
    std::size_t lf = in.find('\n', start);
    std::string_view line = in.substr(start, lf == std::string_view::npos ? in.npos : lf - start);
    start = lf == std::string_view::npos ? in.size() : lf + 1;
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    Status s = p.feed_line(line);
    if (s == Status::kDone) {
      CHECK(p.error() == ReplyError::kNone);
      check_reply(p.take());
    } else if (s == Status::kError) {
      CHECK(p.error() != ReplyError::kNone);
      CHECK(std::string_view(to_string(p.error())) != "?");
      ReplyError e = p.error();
      CHECK(p.feed_line("250 ok") == Status::kError);  // sticky until take()
      CHECK(p.error() == e);
      p.take();
    }
  }
  // split_enhanced on the raw bytes: a code is a prefix, the rest follows it.
  auto [code, rest] = split_enhanced(in);
  if (code.empty()) {
    CHECK(rest == in);
  } else {
    CHECK(in.starts_with(code));
    CHECK(code.size() >= 5 && code.size() <= 9);
    CHECK(rest.data() >= in.data() + code.size());
  }
  return 0;
}
