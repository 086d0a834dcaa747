// line_reader.hpp: splits buffered input into command lines, bounded.
//
// Pure: the session appends what it read and asks for lines.  Only CR LF
// ends a line (RFC 5321 2.3.8): a bare CR or LF stays inside the line, where
// the command parser refuses it, so "EHLO a\nX-Injected: 1\r\n" is one
// line and one reply, never two commands (SECURITY.md 2).  A line longer
// than the bound yields exactly one kTooLong; the rest of it, up to the next
// CR LF, is skipped "to avoid loss of synchronization" (Postfix
// smtpd_chat.c), so the client gets one 500 and the next command its own
// reply.
#pragma once

#include <array>
#include <cstddef>
#include <string>
#include <string_view>

namespace smtplb::smtp {

class LineReader {
 public:
  explicit LineReader(std::size_t max_line) : max_line_(max_line) {}

  enum class Kind { kNeedMore, kLine, kTooLong };
  // How much of an over-long line is kept: enough for its verb, so the
  // session can answer with that verb's reply (AUTH's is 500 5.5.6).
  static constexpr std::size_t kTooLongHead = 16;
  struct Item {
    Kind kind = Kind::kNeedMore;
    std::string_view line;  // without the CR LF; valid until the next call
    // kTooLong: the line's first octets (up to kTooLongHead), however the
    // line was split across reads; valid until the next call.
    std::string_view head;
  };

  // Next complete line from what is buffered.
  Item next();

  void append(std::string_view bytes);
  // Bytes buffered and not yet taken as lines (the start of DATA content,
  // or pipelined commands).
  std::string_view pending() const { return std::string_view(buf_).substr(start_); }
  void consume(std::size_t n);
  bool has_pending() const { return start_ < buf_.size(); }
  // Forget everything buffered (STARTTLS: RFC 3207 section 4.2 / CVE-2011-0411).
  void clear();
  // AUTH responses may be longer than commands (RFC 4954 4: 12288 octets).
  void set_max_line(std::size_t max_line) { max_line_ = max_line; }
  std::size_t max_line() const { return max_line_; }

 private:
  void compact();

  std::size_t max_line_;
  std::array<char, kTooLongHead> head_{};
  std::string buf_;
  std::size_t start_ = 0;
  bool discarding_ = false;  // inside an over-long line, skipping to its LF
};

}  // namespace smtplb::smtp
