// data_decoder.hpp: the DATA phase's byte stream to message content.
//
// Pure.  Removes dot-stuffing (RFC 5321 4.5.2) and finds the end of data,
// which is only CR LF . CR LF (RFC 5321 4.1.1.4): any other terminator-like
// sequence is content (SMTP smuggling, SECURITY.md 1).  A bare CR or LF is
// flagged and, so that no output can ever hold one, emitted as CR LF; the
// session then refuses the message (`reject`) or delivers the normalised
// content (`normalize`).  NUL and 8-bit bytes pass untouched.
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
  // RFC 5321 4.5.3.1.6: a text line is at most 1000 octets with its CRLF.
  static constexpr std::size_t kMaxTextLine = 1000;

  enum class Output {
    kContent,  // the message content, dot-stuffing removed
    kWire,     // that content dot-stuffed again, as DataEncoder::encode would
  };
  explicit DataDecoder(Output output = Output::kContent) : output_(output) {}

  struct Result {
    std::size_t consumed = 0;  // bytes of input used (up to and including the final dot line)
    bool done = false;         // the final CR LF . CR LF was seen
  };

  // Appends content (lines with CR LF), or its wire form, to `out`.
  Result feed(std::string_view in, std::string& out);

  bool saw_bare_line_ending() const { return bare_line_ending_; }
  bool saw_long_line() const { return long_line_; }
  std::uint64_t content_size() const { return content_size_; }

 private:
  enum class State { kLineStart, kMiddle, kCr, kDot, kDotCr };
  void end_line(std::string& out);
  void end_bare_line(std::string& out);
  // A content line's leading "." (doubled in wire output).
  void leading_dot(std::string& out);

  Output output_;

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
