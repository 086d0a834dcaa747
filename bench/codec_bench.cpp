// codec_bench.cpp: micro-benchmark of the pure DATA-phase codec
// (smtp::DataDecoder and smtp::DataEncoder), the per-byte work smtplb does
// on every message that a TCP proxy does not.
//
//   build/bench/codec_bench [--benchmark_filter=Decode]
//
// Inputs are synthetic messages of text lines (72 octets + CR LF, like
// MIME/base64 bodies), optionally with dot-stuffed lines, fed to the decoder
// in 16 KiB chunks as a socket read would deliver them.  Throughput is
// reported as bytes/s of wire data (decode) or content (encode).
#include <benchmark/benchmark.h>

#include <algorithm>
#include <cstddef>
#include <string>
#include <string_view>

#include "smtp/data_decoder.hpp"
#include "smtp/data_encoder.hpp"

namespace {

using smtplb::smtp::DataDecoder;
using smtplb::smtp::DataEncoder;

constexpr std::size_t kChunk = 16 * 1024;

// Message content (CR LF lines, not stuffed) of about `size` octets.  Every
// `dot_every`-th line starts with "." (0: none).
std::string make_content(std::size_t size, std::size_t dot_every) {
  static constexpr std::string_view kAlphabet =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out = "Subject: bench\r\nFrom: a@example.com\r\nTo: b@example.com\r\n\r\n";
  std::size_t line = 0;
  while (out.size() < size) {
    ++line;
    std::string l;
    if (dot_every != 0 && line % dot_every == 0) l.push_back('.');
    while (l.size() < 72) l.push_back(kAlphabet[(line * 7 + l.size()) % kAlphabet.size()]);
    out += l;
    out += "\r\n";
  }
  return out;
}

// The wire form (dot-stuffed, with the final CR LF . CR LF).
std::string make_wire(const std::string& content) {
  std::string wire;
  DataEncoder enc;
  enc.encode(content, wire);
  enc.finish(wire);
  return wire;
}

void BM_Decode(benchmark::State& state) {
  const auto size = static_cast<std::size_t>(state.range(0));
  const auto dot_every = static_cast<std::size_t>(state.range(1));
  const std::string wire = make_wire(make_content(size, dot_every));
  std::string out;
  out.reserve(wire.size());
  for (auto _ : state) {
    DataDecoder dec;
    out.clear();
    std::string_view rest = wire;
    bool done = false;
    while (!done && !rest.empty()) {
      std::string_view chunk = rest.substr(0, std::min(kChunk, rest.size()));
      auto r = dec.feed(chunk, out);
      rest.remove_prefix(r.consumed);
      done = r.done;
    }
    if (!done || dec.saw_bare_line_ending()) state.SkipWithError("decoder did not end cleanly");
    benchmark::DoNotOptimize(out.data());
    benchmark::ClobberMemory();
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations()) *
                          static_cast<int64_t>(wire.size()));
  state.counters["msg_bytes"] = static_cast<double>(wire.size());
}

void BM_Encode(benchmark::State& state) {
  const auto size = static_cast<std::size_t>(state.range(0));
  const auto dot_every = static_cast<std::size_t>(state.range(1));
  const std::string content = make_content(size, dot_every);
  std::string out;
  out.reserve(content.size() + content.size() / 16 + 8);
  for (auto _ : state) {
    DataEncoder enc;
    out.clear();
    std::string_view rest = content;
    while (!rest.empty()) {
      std::string_view chunk = rest.substr(0, std::min(kChunk, rest.size()));
      enc.encode(chunk, out);
      rest.remove_prefix(chunk.size());
    }
    enc.finish(out);
    benchmark::DoNotOptimize(out.data());
    benchmark::ClobberMemory();
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations()) *
                          static_cast<int64_t>(content.size()));
}

// Decode then re-encode, chunk by chunk: what the relay does per message.
void BM_RoundTrip(benchmark::State& state) {
  const auto size = static_cast<std::size_t>(state.range(0));
  const auto dot_every = static_cast<std::size_t>(state.range(1));
  const std::string wire = make_wire(make_content(size, dot_every));
  std::string content;
  std::string out;
  content.reserve(kChunk + 16);
  out.reserve(wire.size() + 16);
  for (auto _ : state) {
    DataDecoder dec;
    DataEncoder enc;
    out.clear();
    std::string_view rest = wire;
    bool done = false;
    while (!done && !rest.empty()) {
      content.clear();
      std::string_view chunk = rest.substr(0, std::min(kChunk, rest.size()));
      auto r = dec.feed(chunk, content);
      rest.remove_prefix(r.consumed);
      done = r.done;
      enc.encode(content, out);
    }
    enc.finish(out);
    if (out != wire) state.SkipWithError("round trip changed the message");
    benchmark::DoNotOptimize(out.data());
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations()) *
                          static_cast<int64_t>(wire.size()));
}

// Sizes: 1 KiB, 100 KiB, 1 MiB; dot-stuffed line every: never, 1 in 10.
void Args(benchmark::internal::Benchmark* b) {
  for (int64_t size : {1024, 100 * 1024, 1024 * 1024}) {
    for (int64_t dots : {0, 10}) b->Args({size, dots});
  }
  b->ArgNames({"size", "dot_every"});
}

BENCHMARK(BM_Decode)->Apply(Args);
BENCHMARK(BM_Encode)->Apply(Args);
BENCHMARK(BM_RoundTrip)->Apply(Args);

}  // namespace

BENCHMARK_MAIN();
