// data_decoder_fuzz.cpp: the DATA decoder and encoder on arbitrary bytes.
//
// SECURITY.md 1 and "How we test": decode arbitrary bytes, re-encode the
// content, and check that
//   - the decoder ends exactly where a strict reference does (the first
//     CR LF . CR LF, counting the DATA command's CR LF before the content),
//   - content never holds a bare CR or LF and its size is counted right,
//   - feeding in two pieces (split point from the input) and one byte at a
//     time gives the same result as one feed,
//   - the decoder's wire output (Output::kWire), fed in the same two pieces,
//     is byte for byte the encoder's output for the content,
//   - the encoded stream ends exactly at its final dot, no earlier line is a
//     lone ".", it holds only CR LF line endings, and it decodes back to the
//     same content.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "fuzz_check.hpp"
#include "smtp/data_decoder.hpp"
#include "smtp/data_encoder.hpp"

namespace {

using smtplb::smtp::DataDecoder;
using smtplb::smtp::DataEncoder;

struct Decoded {
  std::string content;
  bool done = false;
  std::size_t consumed = 0;
  bool bare = false;
  bool long_line = false;
  std::uint64_t size = 0;
  bool operator==(const Decoded&) const = default;
};

Decoded finish(const DataDecoder& d, Decoded out) {
  out.bare = d.saw_bare_line_ending();
  out.long_line = d.saw_long_line();
  out.size = d.content_size();
  return out;
}

// Feeds consecutive pieces as a session would: stops at the end of data.
Decoded decode_pieces(std::string_view in, std::size_t piece) {
  DataDecoder d;
  Decoded out;
  std::size_t pos = 0;
  while (pos < in.size()) {
    std::string_view chunk = in.substr(pos, piece);
    DataDecoder::Result r = d.feed(chunk, out.content);
    pos += r.consumed;
    if (r.done) {
      out.done = true;
      break;
    }
    CHECK(r.consumed == chunk.size());
  }
  out.consumed = pos;
  return finish(d, std::move(out));
}

Decoded decode_split(std::string_view in, std::size_t cut) {
  DataDecoder d;
  Decoded out;
  DataDecoder::Result r = d.feed(in.substr(0, cut), out.content);
  out.consumed = r.consumed;
  out.done = r.done;
  if (!r.done) {
    CHECK(r.consumed == cut);
    r = d.feed(in.substr(cut), out.content);
    out.consumed += r.consumed;
    out.done = r.done;
  }
  return finish(d, std::move(out));
}

void check_no_bare_line_ending(std::string_view s) {
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '\r') CHECK(i + 1 < s.size() && s[i + 1] == '\n');
    if (s[i] == '\n') CHECK(i > 0 && s[i - 1] == '\r');
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::string_view in(reinterpret_cast<const char*>(data), size);

  Decoded whole = decode_pieces(in, in.size() + 1);

  // The strict reference: the data ends at the first CR LF . CR LF, where
  // the CR LF of the DATA command itself comes first.
  std::string framed = "\r\n" + std::string(in);
  std::size_t end = framed.find("\r\n.\r\n");
  if (end == std::string::npos) {
    CHECK(!whole.done);
    CHECK(whole.consumed == in.size());
  } else {
    CHECK(whole.done);
    CHECK(whole.consumed == end + 3);  // end + 5 in framed, minus the 2 framing octets
  }

  check_no_bare_line_ending(whole.content);
  CHECK(whole.size == whole.content.size());

  // Two pieces, the cut taken from the input, and one byte at a time.
  std::size_t cut = 0;
  if (size >= 2) cut = (static_cast<std::size_t>(data[0]) << 8 | data[size - 1]) % (size + 1);
  CHECK(decode_split(in, cut) == whole);
  if (size <= 4096) CHECK(decode_pieces(in, 1) == whole);

  // Re-encode and check what a backend would see.
  DataEncoder enc;
  std::string wire;
  std::size_t half = whole.content.size() / 2;
  enc.encode(std::string_view(whole.content).substr(0, half), wire);
  enc.encode(std::string_view(whole.content).substr(half), wire);

  DataDecoder wire_decoder(DataDecoder::Output::kWire);
  std::string direct;
  DataDecoder::Result wr = wire_decoder.feed(in.substr(0, cut), direct);
  if (!wr.done) wr = wire_decoder.feed(in.substr(cut), direct);
  CHECK(direct == wire);
  CHECK(wire_decoder.content_size() == whole.size);

  enc.finish(wire);

  check_no_bare_line_ending(wire);
  std::string stream = "\r\n" + wire;
  CHECK(stream.find("\r\n.\r\n") == stream.size() - 5);  // ends exactly at the final dot
  std::size_t start = 0;
  while (start < wire.size()) {
    std::size_t crlf = wire.find("\r\n", start);
    CHECK(crlf != std::string::npos);
    if (crlf + 2 < wire.size()) CHECK(std::string_view(wire).substr(start, crlf - start) != ".");
    start = crlf + 2;
  }

  Decoded back = decode_pieces(wire, wire.size() + 1);
  CHECK(back.done);
  CHECK(back.consumed == wire.size());
  CHECK(!back.bare);
  std::string want = whole.content;
  if (!want.empty() && !want.ends_with("\r\n")) want += "\r\n";  // finish() ends the last line
  CHECK(back.content == want);
  return 0;
}
