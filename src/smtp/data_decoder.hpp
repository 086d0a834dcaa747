// data_decoder.hpp: the DATA phase's byte stream to message content.
//
// Pure.  Removes dot-stuffing (RFC 5321 4.5.2) and finds the end of data,
// which is only CR LF . CR LF (RFC 5321 4.1.1.4): any other terminator-like
// sequence is content (SMTP smuggling, SECURITY.md 1).  A bare CR or LF is
// flagged and, so that no output can ever hold one, emitted as CR LF; the
// session then refuses the message (`reject`) or delivers the normalised
// content (`normalize`).  NUL and 8-bit bytes pass untouched, and so do
// lines of any length unless a limit is set (limits.max_line_length): RFC
// 5321 4.5.3.1 asks servers not to impose limits they can avoid, and real
// mail carries lines over 998 octets.
//
// Output::kWire gives, in the same single pass, what DataEncoder would make
// of that content: every content line that starts with "." keeps (or gets)
// one more.  A relay forwards that without a second pass and a second copy
// of every byte; the two are the same by construction and a fuzz target
// checks it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace smtplb::smtp {

class DataDecoder {
 public:
  enum class Output {
    kContent,  // the message content, dot-stuffing removed
    kWire,     // that content dot-stuffed again, as DataEncoder::encode would
  };
  // `max_line`: the longest text line accepted, in octets counted as RFC
  // 5321 4.5.3.1.6 counts them (with its CR LF, without the dot duplicated
  // for transparency); a longer one sets saw_long_line().  0: no limit.
  explicit DataDecoder(Output output = Output::kContent, std::uint64_t max_line = 0)
      : output_(output),
        max_line_len_(max_line == 0  ? kNoLimit
                      : max_line > 2 ? max_line - 2
                                     : 0) {}

  struct Result {
    std::size_t consumed = 0;  // bytes of input used (up to and including the final dot line)
    bool done = false;         // the final CR LF . CR LF was seen
  };

  // Appends content (lines with CR LF), or its wire form, to `out`.
  Result feed(std::string_view in, std::string& out);

  bool saw_bare_line_ending() const { return bare_line_ending_; }
  // A line over the limit was seen, or has begun: set as soon as the
  // line's length passes it, so the session can stop relaying at once.
  bool saw_long_line() const { return long_line_; }
  std::uint64_t content_size() const { return content_size_; }

 private:
  enum class State { kLineStart, kMiddle, kCr, kDot, kDotCr };
  void end_line(std::string& out);
  void end_bare_line(std::string& out);
  // A content line's leading "." (doubled in wire output).
  void leading_dot(std::string& out);

  static constexpr std::uint64_t kNoLimit = UINT64_MAX;

  Output output_;
  std::uint64_t max_line_len_;  // the limit on line_len_ (terminator excluded)

  State state_ = State::kLineStart;
  // The current line began after a bare CR or LF, not after CR LF: a "."
  // line here is content, never the end of data ("x\n.\r\n", SECURITY.md 1).
  bool after_bare_ = false;
  std::size_t line_len_ = 0;  // octets of the current line as sent, terminator excluded
  bool bare_line_ending_ = false;
  bool long_line_ = false;
  std::uint64_t content_size_ = 0;
};

}  // namespace smtplb::smtp
