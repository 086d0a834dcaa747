// proxy_header_fuzz.cpp: parse_proxy_header() on arbitrary bytes.
//
// Checks the contract the session relies on: a finished header lies within
// the input, says the same when given alone, and no shorter prefix of it is
// already a header; waiting happens only below kMaxProxyHeader bytes and
// only on a prefix that waited too (so a refusal is final, whatever comes
// next); v1 stays within 107 bytes and ends at the first CR LF; a v2 header
// is exactly 16 plus its announced length; addresses re-render to a line
// that parses back to them; and an error is short fixed text.
#include <arpa/inet.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "fuzz_check.hpp"
#include "smtp/proxy_header.hpp"

namespace {

using namespace smtplb::smtp;
using Status = ProxyParse::Status;

bool same(const ProxyParse& a, const ProxyParse& b) {
  return a.status == b.status && a.consumed == b.consumed && a.header == b.header &&
         a.error == b.error;
}

bool mapped_v4(const ProxyAddress& a) {
  for (int i = 0; i < 10; ++i)
    if (a.ip[i] != 0) return false;
  return a.ip[10] == 0xff && a.ip[11] == 0xff;
}

std::string render(const ProxyAddress& a) {
  char text[INET6_ADDRSTRLEN] = {};
  if (a.v4)
    CHECK(inet_ntop(AF_INET, a.ip.data() + 12, text, sizeof text) != nullptr);
  else
    CHECK(inet_ntop(AF_INET6, a.ip.data(), text, sizeof text) != nullptr);
  return text;
}

void check_v1(std::string_view in, const ProxyParse& r) {
  CHECK(r.consumed <= kMaxProxyV1);
  CHECK(in.starts_with("PROXY "));
  std::string_view line = in.substr(0, r.consumed);
  CHECK(line.ends_with("\r\n"));
  CHECK(line.find_first_of("\r\n") == r.consumed - 2);
  if (r.header.local) {
    CHECK(line.starts_with("PROXY UNKNOWN"));
    return;
  }
  const ProxyHeader& h = r.header;
  CHECK(h.source.v4 == h.destination.v4);
  std::string rebuilt = std::string(h.source.v4 ? "PROXY TCP4 " : "PROXY TCP6 ") +
                        render(h.source) + " " + render(h.destination) + " " +
                        std::to_string(h.source.port) + " " + std::to_string(h.destination.port) +
                        "\r\n";
  // IPv4 has one text form (no leading zeros), so the line is exactly the
  // rebuilt one; IPv6 may be written several ways, but must parse back.
  if (h.source.v4) {
    CHECK(mapped_v4(h.source) && mapped_v4(h.destination));
    CHECK(line == rebuilt);
  }
  ProxyParse again = parse_proxy_header(rebuilt);
  CHECK(again.status == Status::kDone && again.consumed == rebuilt.size());
  CHECK(again.header == h);
}

void check_v2(std::string_view in, const ProxyParse& r) {
  CHECK(r.consumed >= kProxyV2Fixed && r.consumed <= kMaxProxyHeader);
  CHECK(in.starts_with(std::string_view("\r\n\r\n\0\r\nQUIT\n", 12)));
  std::size_t len = static_cast<std::size_t>(static_cast<unsigned char>(in[14]) << 8 |
                                             static_cast<unsigned char>(in[15]));
  CHECK(r.consumed == kProxyV2Fixed + len);
  auto ver_cmd = static_cast<unsigned char>(in[12]);
  CHECK(ver_cmd == 0x20 || ver_cmd == 0x21);
  if (r.header.local) return;
  CHECK(ver_cmd == 0x21);
  CHECK(r.header.source.v4 == r.header.destination.v4);
  if (r.header.source.v4) {
    CHECK(in[13] == 0x11 && len >= 12);
    CHECK(mapped_v4(r.header.source) && mapped_v4(r.header.destination));
  } else {
    CHECK(in[13] == 0x21 && len >= 36);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::string_view in(reinterpret_cast<const char*>(data), size);
  ProxyParse r = parse_proxy_header(in);
  switch (r.status) {
    case Status::kNeedMore:
      CHECK(in.size() < kMaxProxyHeader);
      CHECK(r.consumed == 0 && r.error.empty());
      // Waiting is prefix-closed: had a shorter prefix been refused, this
      // input must be refused too.
      if (!in.empty()) CHECK(parse_proxy_header(in.substr(0, in.size() - 1)).status == r.status);
      break;
    case Status::kInvalid: {
      CHECK(r.consumed == 0);
      CHECK(!r.error.empty() && r.error.size() <= 64);
      for (unsigned char c : r.error) CHECK(c >= 0x20 && c < 0x7f);
      // More bytes cannot rescue it.
      std::string more(in);
      more += "\r\n";
      CHECK(parse_proxy_header(more).status == Status::kInvalid);
      break;
    }
    case Status::kDone: {
      CHECK(r.consumed > 0 && r.consumed <= in.size());
      CHECK(r.error.empty());
      // The header alone gives the same answer, the bytes after it play no
      // part, and every strict prefix of it is still waiting (at most 536
      // parses: the bound keeps this cheap).
      CHECK(same(parse_proxy_header(in.substr(0, r.consumed)), r));
      std::string more(in);
      more += "EHLO x\r\n";
      CHECK(same(parse_proxy_header(more), r));
      for (std::size_t n = 0; n < r.consumed; ++n)
        CHECK(parse_proxy_header(in.substr(0, n)).status == Status::kNeedMore);
      if (r.header.local) {
        CHECK(r.header.source == ProxyAddress{} && r.header.destination == ProxyAddress{});
      }
      CHECK(r.header.version == 1 || r.header.version == 2);
      if (r.header.version == 1)
        check_v1(in, r);
      else
        check_v2(in, r);
      break;
    }
  }
  return 0;
}
