#include "smtp/line_reader.hpp"

namespace smtplb::smtp {

LineReader::Item LineReader::next() {
  Item item;
  for (;;) {
    std::string_view rest = pending();
    std::size_t crlf = rest.find("\r\n");
    if (discarding_) {
      if (crlf == std::string_view::npos) {
        // Keep a trailing CR: its LF may come in the next read.
        bool keep_cr = !rest.empty() && rest.back() == '\r';
        clear();
        if (keep_cr) buf_.push_back('\r');
        return item;
      }
      consume(crlf + 2);
      discarding_ = false;
      continue;
    }
    if (crlf == std::string_view::npos) {
      if (rest.size() > max_line_) {
        // The reply goes out now; the tail of the line is skipped as it comes.
        const std::size_t n = rest.copy(head_.data(), head_.size());
        item.head = std::string_view(head_.data(), n);
        bool keep_cr = rest.back() == '\r';
        clear();
        if (keep_cr) buf_.push_back('\r');
        discarding_ = true;
        item.kind = Kind::kTooLong;
      }
      return item;
    }
    std::string_view line = rest.substr(0, crlf);
    consume(crlf + 2);
    if (line.size() + 2 > max_line_) {
      item.kind = Kind::kTooLong;
      item.head = line.substr(0, kTooLongHead);
      return item;
    }
    item.kind = Kind::kLine;
    item.line = line;
    return item;
  }
}

void LineReader::append(std::string_view bytes) {
  compact();
  buf_.append(bytes);
}

void LineReader::consume(std::size_t n) {
  // Only advance: next() calls this after taking the line it returns, and
  // clearing buf_ here (when the line was the last buffered one) wrote the
  // string's terminating NUL over that line's first byte.  append() compacts.
  start_ += n;
  if (start_ > buf_.size()) start_ = buf_.size();
}

void LineReader::clear() {
  buf_.clear();
  start_ = 0;
}

void LineReader::compact() {
  // Lines handed out by next() point into buf_, so compaction only happens
  // when more bytes arrive, after the caller is done with them.
  if (start_ > 0) {
    buf_.erase(0, start_);
    start_ = 0;
  }
}

}  // namespace smtplb::smtp
