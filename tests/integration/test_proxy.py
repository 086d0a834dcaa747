"""PROXY protocol from an upstream TCP balancer (SECURITY.md 5; issue 6,
item 5): `proxy_protocol: true` on a listener, `proxy_networks`.

The test client plays the upstream balancer: it connects from 127.0.0.1
and writes a PROXY v1 or v2 header naming a client, then speaks SMTP.
Covered: the announced address is the one the transaction log, the
Received: field and the per-client limits use (v1 TCP4 and TCP6, v2 TCP4);
v2 LOCAL and v1 UNKNOWN keep the real peer but never its trust (no
relaying, no submission without AUTH, yet a health check's banner and
QUIT; issue 14); a malformed header (leading
zeros, no CRLF within 107 octets, a bad v2 version) and no header within
the deadline close the connection without a 220; a peer outside
proxy_networks (or with none configured) is closed at once; on a listener
without proxy_protocol a PROXY line is an unknown command that changes
nothing.
"""

import signal
import socket
import struct
import time
import unittest

from harness import (HOST, IntegrationCase, SmtpClient, base_config, free_port, message,
                     parse_kv, split_received, wait_for)

SENDER = "sender@example.org"
RCPT = "rcpt@example.com"
V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"


def v2_header(command=1, family=0x11, src="192.0.2.7", dst="192.0.2.1", sport=40000, dport=25,
              version=2, extra=b""):
    if family == 0x11:
        addr = socket.inet_aton(src) + socket.inet_aton(dst) + struct.pack("!HH", sport, dport)
    elif family == 0x21:
        addr = (socket.inet_pton(socket.AF_INET6, src) + socket.inet_pton(socket.AF_INET6, dst)
                + struct.pack("!HH", sport, dport))
    else:
        addr = b""
    body = addr + extra
    return V2_SIGNATURE + bytes([(version << 4) | command, family]) + struct.pack("!H", len(body)) + body


class ProxyCase(IntegrationCase):

    def start(self, proxy_networks=("127.0.0.0/8",), proxy=True, trusted=("10.255.255.0/24",),
              role="inbound", xclient_backend=False, **over):
        self.backend = self.fault_backend("a", xclient=xclient_backend)
        cfg = base_config(free_port(), [self.backend.address], **over)
        if xclient_backend:
            cfg["pools"][0]["backends"][0]["identity"] = "xclient"
        cfg["listeners"][0]["proxy_protocol"] = proxy
        cfg["listeners"][0]["role"] = role
        # The test client is not trusted: the announced client's address
        # must not be either, so that the per-client limits apply.
        cfg["trusted_networks"] = list(trusted)
        if proxy_networks is not None:
            cfg["proxy_networks"] = list(proxy_networks)
        self.start_smtplb(cfg)

    def connect(self, header):
        c = SmtpClient(self.lb.port)
        self.addCleanup(c.close)
        if header:
            c.send(header)
        return c

    def transaction(self, c, test_id):
        c.banner()
        c.ehlo()
        content = message(test_id)
        replies = c.transaction(SENDER, [RCPT], content)
        self.assertReply(replies[-1], 250, what=test_id)
        c.cmd("QUIT")
        return content

    def assertClient(self, test_id, content, client):
        _, m = self.assertDeliveredOnce(test_id, content, at=self.backend)
        received, _ = split_received(m["eml"])
        # RFC 5321 4.1.3: an IPv6 address literal is tagged "IPv6:".
        literal = "[IPv6:%s]" % client if ":" in client else "[%s]" % client
        self.assertIn(("(%s)" % literal).encode(), received,
                      "the Received: field names the announced client: %r" % received)
        tx = [t for t in self.lb.transactions() if t.get("client") == client]
        self.assertTrue(tx, "a transaction log line with client=%s: %r"
                        % (client, self.lb.transactions()))

    def assertClosedWithoutBanner(self, c, within=5):
        self.assertTrue(c.closed_by_peer(within), "the connection was not closed")
        self.assertEqual(c.buf, b"", "smtplb sent something before closing: %r" % c.buf)


class Accepted(ProxyCase):

    def test_v1_tcp4_names_the_client(self):
        self.start()
        c = self.connect(b"PROXY TCP4 192.0.2.7 192.0.2.1 40000 25\r\n")
        content = self.transaction(c, "v1-4")
        self.assertClient("v1-4", content, "192.0.2.7")

    def test_v1_tcp6_names_the_client(self):
        self.start()
        c = self.connect(b"PROXY TCP6 2001:db8::7 2001:db8::1 40000 25\r\n")
        content = self.transaction(c, "v1-6")
        self.assertClient("v1-6", content, "2001:db8::7")

    def test_v2_tcp4_names_the_client_and_tlvs_are_skipped(self):
        self.start()
        c = self.connect(v2_header(src="198.51.100.9", extra=b"\x04\x00\x03abc"))
        content = self.transaction(c, "v2-4")
        self.assertClient("v2-4", content, "198.51.100.9")

    def test_v2_local_and_v1_unknown_keep_the_real_peer(self):
        self.start()
        for tid, header in (("v2-local", v2_header(command=0, family=0)),
                            ("v1-unknown", b"PROXY UNKNOWN\r\n")):
            c = self.connect(header)
            content = self.transaction(c, tid)
            self.assertClient(tid, content, "127.0.0.1")

    def test_per_client_limits_use_the_announced_address(self):
        self.start(limits={"max_connections_per_ip": 1})
        first = self.connect(b"PROXY TCP4 192.0.2.7 192.0.2.1 40000 25\r\n")
        first.banner()
        # The same client again, through the same balancer: over its limit.
        again = self.connect(b"PROXY TCP4 192.0.2.7 192.0.2.1 40001 25\r\n")
        self.assertReply(again.reply(), 421, "4.7.0", "the same client's second connection")
        # Another client through the same balancer is not affected.
        other = self.connect(b"PROXY TCP4 192.0.2.8 192.0.2.1 40002 25\r\n")
        content = self.transaction(other, "other-client")
        self.assertClient("other-client", content, "192.0.2.8")


class NoClient(ProxyCase):
    """v2 LOCAL and v1 UNKNOWN name no client (issue 14): the connection
    keeps the balancer's address but never its trust, even when the
    balancer itself is in trusted_networks."""

    HEADERS = (("v2-local", v2_header(command=0, family=0)),
               ("v1-unknown", b"PROXY UNKNOWN\r\n"),
               ("v1-unknown-addresses",
                b"PROXY UNKNOWN 2001:db8::7 2001:db8::1 40000 25\r\n"))

    def test_a_trusted_balancer_does_not_lend_its_trust_to_relaying(self):
        self.start(trusted=("127.0.0.0/8",))
        # Control: a client the balancer names in trusted_networks may relay.
        c = self.connect(b"PROXY TCP4 127.0.0.9 127.0.0.1 40000 25\r\n")
        c.banner()
        c.ehlo()
        self.assertReply(c.cmd("MAIL FROM:<%s>" % SENDER), 250, what="trusted client")
        self.assertReply(c.cmd("RCPT TO:<someone@elsewhere.test>"), 250, what="trusted client")
        for tid, header in self.HEADERS:
            with self.subTest(header=tid):
                c = self.connect(header)
                c.banner()
                c.ehlo()
                self.assertReply(c.cmd("MAIL FROM:<%s>" % SENDER), 250, what=tid)
                self.assertReply(c.cmd("RCPT TO:<someone@elsewhere.test>"), 554, "5.7.1",
                                 "%s: relaying" % tid)
                self.assertReply(c.cmd("RCPT TO:<%s>" % RCPT), 250, what="%s: local" % tid)
                self.assertReply(c.cmd("QUIT"), 221, what=tid)

    def test_an_xclient_backend_is_not_told_the_balancers_address(self):
        # With no client named, XCLIENT must not name the balancer either: a
        # backend that trusts the balancer's address (mynetworks) would let
        # such a session relay.  ADDR and PORT are [UNAVAILABLE].
        self.start(trusted=("127.0.0.0/8",), xclient_backend=True)
        for tid, header in self.HEADERS:
            with self.subTest(header=tid):
                c = self.connect(header)
                content = self.transaction(c, "no-client-" + tid)
                _, m = self.assertDeliveredOnce("no-client-" + tid, content, at=self.backend)
                self.assertEqual(m["xclient"].get("ADDR"), "[UNAVAILABLE]", m["xclient"])
                self.assertEqual(m["xclient"].get("PORT", "[UNAVAILABLE]"), "[UNAVAILABLE]",
                                 m["xclient"])

    def test_a_reload_does_not_lend_the_trust_either(self):
        # A reload's configuration is taken at the next transaction's MAIL,
        # and trust is decided again there: still never for these.
        self.start(trusted=("127.0.0.0/8",))
        sessions = []
        for tid, header in self.HEADERS:
            c = self.connect(header)
            c.banner()
            c.ehlo()
            sessions.append((tid, c))
        with open(self.lb.config_path) as f:
            text = f.read()
        with open(self.lb.config_path, "w") as f:
            f.write(text.replace("max_recipients: 100", "max_recipients: 99"))
        self.lb.proc.signal(signal.SIGHUP)
        self.lb.wait_log(r"event=reloaded .*generation=2")
        for tid, c in sessions:
            self.assertReply(c.cmd("MAIL FROM:<%s>" % SENDER), 250, what=tid)
            self.assertReply(c.cmd("RCPT TO:<someone@elsewhere.test>"), 554, "5.7.1",
                             "%s: relaying after a reload" % tid)

    def test_a_trusted_balancer_does_not_lend_its_trust_to_submission(self):
        self.start(trusted=("127.0.0.0/8",), role="submission")
        for tid, header in self.HEADERS:
            with self.subTest(header=tid):
                c = self.connect(header)
                c.banner()
                c.ehlo()
                self.assertReply(c.cmd("MAIL FROM:<%s>" % SENDER), 530, "5.7.0",
                                 "%s: submission without AUTH" % tid)

    def test_a_local_health_check_gets_its_banner_and_can_quit(self):
        # HAProxy's `send-proxy-v2` checks connect, send LOCAL, read the
        # banner and quit; so does `check-send-proxy` with v1 UNKNOWN.
        self.start(limits={"max_connections_per_ip": 1})
        for _ in range(3):
            for tid, header in self.HEADERS:
                c = self.connect(header)
                self.assertReply(c.banner(), 220, what=tid)
                self.assertReply(c.cmd("QUIT"), 221, what=tid)
                self.assertTrue(c.closed_by_peer(5), "%s: not closed after QUIT" % tid)


class Refused(ProxyCase):

    def test_malformed_headers_close_without_a_banner(self):
        self.start()
        bad = [
            b"PROXY TCP4 192.0.2.07 192.0.2.1 40000 25\r\n",  # leading zero
            b"PROXY TCP4 192.0.2.7 192.0.2.1 040000 25\r\n",  # leading zero in a port
            b"PROXY TCP4 192.0.2.7 192.0.2.1 40000 25\n",     # LF without CR
            b"PROXY TCP4 " + b"1" * 120,                      # no CRLF within 107 octets
            v2_header(version=1),                              # bad v2 version
            b"EHLO client.example\r\n",                        # no header at all
        ]
        for header in bad:
            c = self.connect(header)
            self.assertClosedWithoutBanner(c)
        self.lb.wait_log(r"event=proxy_refused ")
        self.assertNothingStored()

    def test_no_header_in_time_closes(self):
        self.start()
        c = self.connect(b"")
        t0 = time.monotonic()
        self.assertClosedWithoutBanner(c, within=8)
        took = time.monotonic() - t0
        self.assertGreaterEqual(took, 2.5, "closed before the header's deadline")
        self.lb.wait_log(r"event=proxy_refused .*reason=\"?no complete PROXY header in time")

    def test_peer_outside_proxy_networks_is_closed_at_once(self):
        for networks in (["10.0.0.0/8"], None):
            with self.subTest(proxy_networks=networks):
                self.start(proxy_networks=networks)
                c = self.connect(b"PROXY TCP4 192.0.2.7 192.0.2.1 40000 25\r\n")
                self.assertClosedWithoutBanner(c, within=2)
                self.lb.wait_log(r"event=proxy_refused .*reason=\"not in proxy_networks\"")
                self.stop_smtplb()

    def test_proxy_line_on_a_plain_listener_is_an_unknown_command(self):
        self.start(proxy=False)
        c = self.connect(b"")
        c.banner()
        self.assertReply(c.cmd("PROXY TCP4 192.0.2.7 192.0.2.1 40000 25"), 500, "5.5.2")
        c.ehlo()
        content = message("plain")
        self.assertReply(c.transaction(SENDER, [RCPT], content)[-1], 250)
        self.assertClient("plain", content, "127.0.0.1")


if __name__ == "__main__":
    unittest.main()
