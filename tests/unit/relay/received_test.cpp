// received_test.cpp: the Received field smtplb prepends (RFC 5321 4.4).
//
// Issue 21: an IPv6 client is an IPv6 address literal, the id is an Atom,
// and the `for` clause names a Mailbox with a domain written without
// quoting, or is left out: a quoted local part never reaches the field raw.
#include "relay/received.hpp"

#include <gtest/gtest.h>

#include <string>

namespace smtplb::relay {
namespace {

ReceivedInfo base() {
  ReceivedInfo r;
  r.helo = "client.example.net";
  r.client_ip = "192.0.2.7";
  r.hostname = "lb.example.com";
  r.protocol = "ESMTP";
  r.id = transaction_id("c58a712b01000005", 1);
  r.when = std::chrono::system_clock::from_time_t(0);
  return r;
}

// The field for `client_ip` and `recipient`, with `for_line` ("" for none)
// between the "by" line and the date.
std::string field(const std::string& literal, const std::string& for_line) {
  return "Received: from client.example.net (" + literal +
         ")\r\n"
         "\tby lb.example.com (smtplb) with ESMTP id c58a712b01000005-1" +
         (for_line.empty() ? "" : "\r\n\tfor " + for_line) +
         ";\r\n"
         "\tThu, 01 Jan 1970 00:00:00 +0000\r\n";
}

struct Case {
  const char* label;
  std::string client_ip;
  std::string recipient;  // as the client wrote it (Mailbox::str())
  std::string literal;    // want: the TCP-info address literal
  std::string for_line;   // want: "<mailbox>", or "" for no `for` clause
};

const Case kCases[] = {
    {"IPv4 client, one recipient", "192.0.2.7", "u@example.com", "[192.0.2.7]", "<u@example.com>"},
    {"IPv6 client is tagged IPv6:", "2001:db8::1", "u@example.com", "[IPv6:2001:db8::1]",
     "<u@example.com>"},
    {"IPv6 loopback", "::1", "u@example.com", "[IPv6:::1]", "<u@example.com>"},
    {"no recipient (several, or none)", "192.0.2.7", "", "[192.0.2.7]", ""},
    {"postmaster has no domain", "192.0.2.7", "postmaster", "[192.0.2.7]", ""},
    {"Postmaster any case", "192.0.2.7", "PostMaster", "[192.0.2.7]", ""},
    {"quoted local part with ; and > left out", "192.0.2.7",
     "\"x>; by forged.example\"@example.com", "[192.0.2.7]", ""},
    {"quoted local part with a space left out", "192.0.2.7", "\"a b\"@example.com", "[192.0.2.7]",
     ""},
    {"quoted-pair quote left out", "192.0.2.7", "\"a\\\"b\"@example.com", "[192.0.2.7]", ""},
    {"quoted @ left out", "192.0.2.7", "\"a@b\"@example.com", "[192.0.2.7]", ""},
    {"needless quotes dropped", "192.0.2.7", "\"john.doe\"@example.com", "[192.0.2.7]",
     "<john.doe@example.com>"},
    {"needless quoted-pair dropped", "192.0.2.7", "\"jo\\hn\"@example.com", "[192.0.2.7]",
     "<john@example.com>"},
    {"dot-atom with atext specials", "192.0.2.7", "a+b=c/d{e}@example.com", "[192.0.2.7]",
     "<a+b=c/d{e}@example.com>"},
    {"address literal domain", "192.0.2.7", "u@[192.0.2.1]", "[192.0.2.7]", "<u@[192.0.2.1]>"},
    {"UTF-8 mailbox (SMTPUTF8)", "192.0.2.7", "\xe7\x94\xa8\xe6\x88\xb7@example.com", "[192.0.2.7]",
     "<\xe7\x94\xa8\xe6\x88\xb7@example.com>"},
    {"C1 control in a UTF-8 local part left out", "192.0.2.7", "a\xc2\x85@example.com",
     "[192.0.2.7]", ""},
    {"bad domain left out", "192.0.2.7", "u@exa mple.com", "[192.0.2.7]", ""},
    {"empty domain left out", "192.0.2.7", "u@", "[192.0.2.7]", ""},
};

TEST(Received, NamesClientAndRecipientAsRfc5321Says) {
  for (const auto& c : kCases) {
    ReceivedInfo r = base();
    r.client_ip = c.client_ip;
    r.recipient = c.recipient;
    EXPECT_EQ(received_field(r), field(c.literal, c.for_line)) << c.label;
  }
}

TEST(Received, TlsCommentFollowsTheFromClause) {
  ReceivedInfo r = base();
  r.protocol = "ESMTPS";
  r.tls = "TLSv1.3 with cipher TLS_AES_256_GCM_SHA384";
  r.recipient = "u@example.com";
  EXPECT_EQ(received_field(r),
            "Received: from client.example.net ([192.0.2.7])\r\n"
            "\t(using TLSv1.3 with cipher TLS_AES_256_GCM_SHA384)\r\n"
            "\tby lb.example.com (smtplb) with ESMTPS id c58a712b01000005-1\r\n"
            "\tfor <u@example.com>;\r\n"
            "\tThu, 01 Jan 1970 00:00:00 +0000\r\n");
}

// RFC 5322 3.2.3 atext.
bool is_atom(const std::string& s) {
  if (s.empty()) return false;
  for (unsigned char c : s) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              std::string("!#$%&'*+-/=?^_`{|}~").find(static_cast<char>(c)) != std::string::npos;
    if (!ok) return false;
  }
  return true;
}

TEST(TransactionId, IsAnAtomNamingSessionAndNumber) {
  const struct {
    int n;
    const char* want;
  } cases[] = {
      {1, "c58a712b01000005-1"}, {2, "c58a712b01000005-2"}, {1000, "c58a712b01000005-1000"}};
  for (const auto& c : cases) {
    std::string id = transaction_id("c58a712b01000005", c.n);
    EXPECT_EQ(id, c.want);
    EXPECT_TRUE(is_atom(id)) << id;
  }
}

}  // namespace
}  // namespace smtplb::relay
