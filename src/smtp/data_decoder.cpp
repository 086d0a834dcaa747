#include "smtp/data_decoder.hpp"

#include <cstring>

namespace smtplb::smtp {

void DataDecoder::end_line(std::string& out) {
  out.append("\r\n", 2);
  content_size_ += 2;
  if (line_len_ > max_line_len_) long_line_ = true;
  line_len_ = 0;
  state_ = State::kLineStart;
  after_bare_ = false;
}

void DataDecoder::end_bare_line(std::string& out) {
  bare_line_ending_ = true;
  end_line(out);
  after_bare_ = true;
}

void DataDecoder::leading_dot(std::string& out) {
  if (output_ == Output::kWire) out.push_back('.');
  out.push_back('.');
  ++content_size_;
}

DataDecoder::Result DataDecoder::feed(std::string_view in, std::string& out) {
  Result r;
  std::size_t i = 0;
  const std::size_t n = in.size();
  while (i < n) {
    char c = in[i];
    switch (state_) {
      case State::kMiddle: {
        // Fast path: copy the run up to the next CR or LF in one go.
        const char* p = in.data() + i;
        std::size_t left = n - i;
        // memchr is vectorised; a byte loop here was most of the decoder's
        // cost on large messages.
        const void* lf = std::memchr(p, '\n', left);
        std::size_t limit = lf ? static_cast<std::size_t>(static_cast<const char*>(lf) - p) : left;
        const void* cr = std::memchr(p, '\r', limit);
        std::size_t run = cr ? static_cast<std::size_t>(static_cast<const char*>(cr) - p) : limit;
        if (run > 0) {
          out.append(p, run);
          content_size_ += run;
          line_len_ += run;
          // One compare per run, not per byte: the hot path stays memchr.
          if (line_len_ > max_line_len_) long_line_ = true;
          i += run;
          continue;
        }
        if (c == '\r') {
          state_ = State::kCr;
        } else {  // bare LF
          end_bare_line(out);
        }
        ++i;
        break;
      }
      case State::kLineStart:
        if (c == '.') {
          state_ = State::kDot;
          ++line_len_;
          ++i;
        } else {
          state_ = State::kMiddle;  // reprocess c
        }
        break;
      case State::kCr:
        if (c == '\n') {
          end_line(out);
          ++i;
        } else {
          // Bare CR: end the line here and read c as the next line's first.
          end_bare_line(out);
        }
        break;
      case State::kDot:
        if (c == '\r') {
          state_ = State::kDotCr;
          ++i;
        } else if (c == '\n') {
          // ".\n": not the end (only CR LF . CR LF is); a line holding ".".
          leading_dot(out);
          end_bare_line(out);
          ++i;
        } else {
          // A stuffed dot: drop it and read c as content (RFC 5321 4.5.2).
          // It does not count towards the line limit either
          // (4.5.3.1.6: "not counting the leading dot duplicated for
          // transparency").  Wire output keeps it when the content line
          // starts with "." (the encoder would stuff that line again).
          if (c == '.' && output_ == Output::kWire) out.push_back('.');
          state_ = State::kMiddle;
          --line_len_;
        }
        break;
      case State::kDotCr:
        if (c == '\n' && after_bare_) {
          // ". CR LF" after a bare CR or LF ("x\n.\r\n", "x\r.\r\n"): the
          // line before it did not end in CR LF, so this is not CR LF . CR LF
          // and must not end the data (SMTP smuggling, SECURITY.md 1).  It is
          // a content line holding "."; the encoder re-stuffs it.
          leading_dot(out);
          end_line(out);
          ++i;
          break;
        }
        if (c == '\n') {
          r.consumed = i + 1;
          r.done = true;
          state_ = State::kLineStart;
          line_len_ = 0;
          return r;
        }
        // ".\r" then not LF: a line holding "." ended by a bare CR.
        leading_dot(out);
        end_bare_line(out);
        break;
    }
  }
  r.consumed = n;
  return r;
}

}  // namespace smtplb::smtp
