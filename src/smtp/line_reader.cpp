#include "smtp/line_reader.hpp"

namespace smtplb::smtp {

LineReader::Item LineReader::next() {
  Item item;
  for (;;) {
    std::string_view rest = pending();
    std::size_t lf = rest.find('\n');
    if (discarding_) {
      if (lf == std::string_view::npos) {
        clear();
        return item;
      }
      consume(lf + 1);
      discarding_ = false;
      continue;
    }
    if (lf == std::string_view::npos) {
      if (rest.size() > max_line_) {
        // The reply goes out now; the tail of the line is skipped as it comes.
        clear();
        discarding_ = true;
        item.kind = Kind::kTooLong;
      }
      return item;
    }
    std::string_view line = rest.substr(0, lf);
    consume(lf + 1);
    if (line.size() + 1 > max_line_) {
      item.kind = Kind::kTooLong;
      return item;
    }
    if (!line.empty() && line.back() == '\r') {
      line.remove_suffix(1);
    } else {
      item.bare_lf = true;
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
