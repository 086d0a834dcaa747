#include "smtp/idna.hpp"

#include <algorithm>
#include <cstdint>
#include <limits>

#include "smtp/ascii.hpp"
#include "smtp/utf8.hpp"

namespace smtplb::smtp {

namespace {

// RFC 3492 section 5: the Bootstring parameters of Punycode.
constexpr std::uint32_t kBase = 36;
constexpr std::uint32_t kTmin = 1;
constexpr std::uint32_t kTmax = 26;
constexpr std::uint32_t kSkew = 38;
constexpr std::uint32_t kDamp = 700;
constexpr std::uint32_t kInitialBias = 72;
constexpr std::uint32_t kInitialN = 0x80;
constexpr std::uint32_t kMaxInt = std::numeric_limits<std::uint32_t>::max();

constexpr std::size_t kMaxLabel = 63;
constexpr std::size_t kMaxDomain = 255;

bool is_scalar_value(char32_t c) {
  return c <= 0x10ffff && (c < 0xd800 || c > 0xdfff);
}

char encode_digit(std::uint32_t d) {
  return static_cast<char>(d < 26 ? 'a' + d : '0' + (d - 26));
}

// kBase for a byte that is no digit.
std::uint32_t decode_digit(char c) {
  if (c >= '0' && c <= '9') return static_cast<std::uint32_t>(c - '0') + 26;
  if (c >= 'a' && c <= 'z') return static_cast<std::uint32_t>(c - 'a');
  if (c >= 'A' && c <= 'Z') return static_cast<std::uint32_t>(c - 'A');
  return kBase;
}

// Section 6.1.
std::uint32_t adapt(std::uint32_t delta, std::uint32_t points, bool first) {
  delta = first ? delta / kDamp : delta / 2;
  delta += delta / points;
  std::uint32_t k = 0;
  while (delta > ((kBase - kTmin) * kTmax) / 2) {
    delta /= kBase - kTmin;
    k += kBase;
  }
  return k + (kBase - kTmin + 1) * delta / (delta + kSkew);
}

std::uint32_t threshold(std::uint32_t k, std::uint32_t bias) {
  if (k <= bias) return kTmin;
  if (k >= bias + kTmax) return kTmax;
  return k - bias;
}

// The code points of well-formed UTF-8.
std::optional<std::u32string> decode_utf8(std::string_view s) {
  std::u32string out;
  for (std::size_t i = 0; i < s.size();) {
    auto cp = next_code_point(s, i);
    if (!cp) return std::nullopt;
    out.push_back(*cp);
  }
  return out;
}

}  // namespace

std::optional<std::string> punycode_encode(std::u32string_view input) {
  std::string out;
  for (char32_t c : input) {
    if (!is_scalar_value(c)) return std::nullopt;
    if (c < kInitialN) out.push_back(static_cast<char>(c));
  }
  const std::size_t basic = out.size();
  if (basic > 0) out.push_back('-');
  std::uint32_t n = kInitialN, delta = 0, bias = kInitialBias;
  for (std::size_t handled = basic; handled < input.size();) {
    // The smallest code point not yet handled.
    std::uint32_t m = kMaxInt;
    for (char32_t c : input)
      if (c >= n && c < m) m = c;
    const auto h1 = static_cast<std::uint32_t>(handled + 1);
    if (m - n > (kMaxInt - delta) / h1) return std::nullopt;
    delta += (m - n) * h1;
    n = m;
    for (char32_t c : input) {
      if (c < n && ++delta == 0) return std::nullopt;
      if (c != n) continue;
      std::uint32_t q = delta;
      for (std::uint32_t k = kBase;; k += kBase) {
        const std::uint32_t t = threshold(k, bias);
        if (q < t) break;
        out.push_back(encode_digit(t + (q - t) % (kBase - t)));
        q = (q - t) / (kBase - t);
      }
      out.push_back(encode_digit(q));
      bias = adapt(delta, static_cast<std::uint32_t>(handled + 1), handled == basic);
      delta = 0;
      ++handled;
    }
    ++delta;
    ++n;
  }
  return out;
}

std::optional<std::u32string> punycode_decode(std::string_view in) {
  std::u32string out;
  // Everything before the last '-' is basic code points, copied.
  const std::size_t dash = in.rfind('-');
  std::size_t pos = 0;
  if (dash != std::string_view::npos) {
    for (char c : in.substr(0, dash)) {
      if (static_cast<unsigned char>(c) >= kInitialN) return std::nullopt;
      out.push_back(static_cast<unsigned char>(c));
    }
    pos = dash + 1;
  }
  std::uint32_t n = kInitialN, i = 0, bias = kInitialBias;
  while (pos < in.size()) {
    const std::uint32_t old_i = i;
    std::uint32_t w = 1;
    for (std::uint32_t k = kBase;; k += kBase) {
      if (pos >= in.size()) return std::nullopt;
      const std::uint32_t digit = decode_digit(in[pos++]);
      if (digit >= kBase) return std::nullopt;
      if (digit > (kMaxInt - i) / w) return std::nullopt;
      i += digit * w;
      const std::uint32_t t = threshold(k, bias);
      if (digit < t) break;
      if (w > kMaxInt / (kBase - t)) return std::nullopt;
      w *= kBase - t;
    }
    const auto len = static_cast<std::uint32_t>(out.size() + 1);
    bias = adapt(i - old_i, len, old_i == 0);
    if (i / len > kMaxInt - n) return std::nullopt;
    n += i / len;
    i %= len;
    if (!is_scalar_value(n) || n < kInitialN) return std::nullopt;
    out.insert(out.begin() + i, static_cast<char32_t>(n));
    ++i;
  }
  return out;
}

std::optional<std::string> to_a_labels(std::string_view domain) {
  std::string out;
  for (std::size_t start = 0;;) {
    const std::size_t dot = domain.find('.', start);
    std::string_view label =
        domain.substr(start, dot == std::string_view::npos ? dot : dot - start);
    const bool ascii = std::all_of(label.begin(), label.end(),
                                   [](char c) { return static_cast<unsigned char>(c) < 0x80; });
    if (ascii) {
      for (char c : label) out.push_back(ascii_lower(c));
    } else {
      auto code_points = decode_utf8(label);
      if (!code_points) return std::nullopt;
      for (char32_t& c : *code_points)
        if (c < 0x80) c = static_cast<unsigned char>(ascii_lower(static_cast<char>(c)));
      auto encoded = punycode_encode(*code_points);
      if (!encoded || encoded->size() + 4 > kMaxLabel) return std::nullopt;
      out += "xn--";
      out += *encoded;
    }
    if (dot == std::string_view::npos) break;
    out.push_back('.');
    start = dot + 1;
  }
  if (out.size() > kMaxDomain) return std::nullopt;
  return out;
}

}  // namespace smtplb::smtp
