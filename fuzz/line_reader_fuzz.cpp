// line_reader_fuzz.cpp: the bounded command-line splitter on arbitrary bytes.
//
// The first byte picks the line bound (small, so the limit is hit often);
// the rest is the stream.  Whatever the feeding (one append, one byte at a
// time, chunks sized from the input) the items must equal a simple
// reference: one kLine per CR LF-terminated line within the bound (bare CR
// and LF kept inside it), one kTooLong per over-long line, and a kTooLong
// for an unterminated tail already over the bound.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "fuzz_check.hpp"
#include "smtp/line_reader.hpp"

namespace {

using smtplb::smtp::LineReader;
using Kind = LineReader::Kind;

struct Got {
  Kind kind;
  std::string line;
  bool operator==(const Got&) const = default;
};

void drain(LineReader& r, std::size_t max_line, std::vector<Got>& out) {
  for (;;) {
    LineReader::Item it = r.next();
    if (it.kind == Kind::kNeedMore) break;
    if (it.kind == Kind::kLine) {
      CHECK(it.line.find("\r\n") == std::string_view::npos);
      CHECK(it.line.size() + 2 <= max_line);
    }
    out.push_back({it.kind, std::string(it.line)});
  }
  // Whatever is left is an incomplete line within the bound.
  CHECK(r.pending().find("\r\n") == std::string_view::npos);
  CHECK(r.pending().size() <= max_line);
}

std::vector<Got> reference(std::string_view in, std::size_t max_line) {
  std::vector<Got> out;
  std::size_t start = 0;
  for (;;) {
    std::size_t crlf = in.find("\r\n", start);
    if (crlf == std::string_view::npos) {
      if (in.size() - start > max_line) out.push_back({Kind::kTooLong, ""});
      return out;
    }
    std::string_view line = in.substr(start, crlf - start);
    start = crlf + 2;
    if (line.size() + 2 > max_line) {
      out.push_back({Kind::kTooLong, ""});
      continue;
    }
    out.push_back({Kind::kLine, std::string(line)});
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 1) return 0;
  std::size_t max_line = 1 + data[0] % 64;
  std::string_view in(reinterpret_cast<const char*>(data + 1), size - 1);
  std::vector<Got> want = reference(in, max_line);

  {
    LineReader r(max_line);
    std::vector<Got> got;
    r.append(in);
    drain(r, max_line, got);
    CHECK(got == want);
  }
  {
    LineReader r(max_line);
    std::vector<Got> got;
    for (std::size_t i = 0; i < in.size(); ++i) {
      r.append(in.substr(i, 1));
      drain(r, max_line, got);
    }
    CHECK(got == want);
  }
  {
    // Chunk sizes from the input bytes themselves.
    LineReader r(max_line);
    std::vector<Got> got;
    std::size_t pos = 0;
    while (pos < in.size()) {
      std::size_t n = 1 + static_cast<unsigned char>(in[pos]) % 16;
      r.append(in.substr(pos, n));
      drain(r, max_line, got);
      pos += n;
    }
    CHECK(got == want);
  }
  return 0;
}
