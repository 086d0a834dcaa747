// idna_fuzz.cpp: Punycode and A-label conversion on arbitrary bytes.
//
// The input is read three ways: as a domain (to_a_labels: ASCII out, no
// upper case, at most 255 octets, converting the output again changes
// nothing, an xn-- label that decodes encodes back to the same); as Punycode (what decodes
// re-encodes to something that decodes the same); and as code points, four octets each (what
// encodes decodes back to them).
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>

#include "fuzz_check.hpp"
#include "smtp/idna.hpp"

namespace {

using namespace smtplb::smtp;

void check_domain(std::string_view in) {
  auto out = to_a_labels(in);
  if (!out) return;
  CHECK(out->size() <= 255);
  for (unsigned char c : *out) CHECK(c < 0x80 && !(c >= 'A' && c <= 'Z'));
  CHECK(to_a_labels(*out) == out);
  std::string_view rest = *out;
  for (;;) {
    const std::size_t dot = rest.find('.');
    std::string_view label = rest.substr(0, dot);
    if (label.starts_with("xn--")) {
      // Made here from a U-label (then valid Punycode), or an A-label
      // that was given: what decodes must encode back to the same.
      auto cps = punycode_decode(label.substr(4));
      if (cps) {
        auto again = punycode_encode(*cps);
        CHECK(again);
        CHECK(punycode_decode(*again) == cps);
      }
    }
    if (dot == std::string_view::npos) break;
    rest.remove_prefix(dot + 1);
  }
}

void check_punycode(std::string_view in) {
  auto cps = punycode_decode(in);
  if (!cps) return;
  auto encoded = punycode_encode(*cps);
  CHECK(encoded);
  CHECK(punycode_decode(*encoded) == cps);
}

void check_code_points(const std::uint8_t* data, std::size_t size) {
  std::u32string cps;
  for (std::size_t i = 0; i + 4 <= size && cps.size() < 256; i += 4) {
    std::uint32_t v;
    std::memcpy(&v, data + i, 4);
    cps.push_back(static_cast<char32_t>(v % 0x110000));
  }
  auto encoded = punycode_encode(cps);
  if (!encoded) return;  // a surrogate, or an overflow
  for (unsigned char c : *encoded) CHECK(c < 0x80);
  CHECK(punycode_decode(*encoded) == cps);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::string_view in(reinterpret_cast<const char*>(data), size);
  check_domain(in);
  check_punycode(in);
  check_code_points(data, size);
  return 0;
}
