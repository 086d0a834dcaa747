// reply.hpp: an SMTP reply as a value, and the parser for replies read from
// a backend.
//
// Replies from backends are untrusted input (SECURITY.md section 8): the
// parser enforces one code across a multi-line reply, bounded line length
// and line count, and no control bytes, so backend text can only reach a
// client inside a reply smtplb rebuilt.
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace smtplb::smtp {

struct Reply {
  int code = 0;
  std::string enhanced;            // "2.0.0", empty when the reply had none
  std::vector<std::string> lines;  // text after "NNN-"/"NNN " and the enhanced code

  // 2xx only: a 3xx where a completion was due (354 to the final dot) is
  // no acceptance.
  bool positive() const { return code >= 200 && code < 300; }
  bool transient() const { return code >= 400 && code < 500; }
  bool permanent() const { return code >= 500; }
  // 421 means the server is closing the transmission channel (RFC 5321 4.2.3).
  bool closes_session() const { return code == 421 || code == 221; }

  // The wire form, CRLF terminated; the enhanced code is repeated on every
  // line as RFC 2034 asks.
  std::string wire() const;
  // "250 2.0.0 text" on one line, for logs (still needs escaping by the logger).
  std::string summary() const;
};

Reply make_reply(int code, std::string_view enhanced, std::string_view text);

// Splits "2.1.5 text" into the enhanced code and the rest; returns an empty
// code when the text does not start with a valid one (RFC 3463 syntax).
std::pair<std::string, std::string_view> split_enhanced(std::string_view text);

enum class ReplyError {
  kNone,
  kBadSyntax,     // not "NNN" followed by ' ', '-' or end of line
  kMixedCodes,    // a multi-line reply changed its code in the middle
  kLineTooLong,   // a line over kMaxReplyLine octets
  kTooManyLines,  // more than kMaxReplyLines lines
  kControlBytes,  // NUL, bare CR or other control bytes in the text
};

const char* to_string(ReplyError e);

// Incremental multi-line reply parser: feed it one line at a time (without
// the CRLF); it says when the reply is complete.
class ReplyParser {
 public:
  // RFC 5321 4.5.3.1.5: a reply line is at most 512 octets with CRLF.
  static constexpr std::size_t kMaxReplyLine = 512;
  // EHLO replies of real MTAs have ~15 lines; 100 leaves room and still
  // bounds what a lying backend can make us hold.
  static constexpr std::size_t kMaxReplyLines = 100;

  enum class Status { kNeedMore, kDone, kError };

  Status feed_line(std::string_view line);
  ReplyError error() const { return error_; }
  // Valid after kDone; resets the parser for the next reply.
  Reply take();

 private:
  Reply current_;
  ReplyError error_ = ReplyError::kNone;
};

}  // namespace smtplb::smtp
