"""The client's identity towards backends (issue 6, item 4; DESIGN.md
"Identity is never silently lost"; SECURITY.md 5): a backend's `identity:
xclient|proxy_v1|proxy_v2`.

Test clients connect from different loopback addresses (127.0.0.2,
127.0.0.3, bound before connecting) so that each message names its own
client.  fault_backend.py records, per stored message, the XCLIENT
attributes in effect and its connection's PROXY header; the private
Postfix (postfix_instance.py) shows the client address it logged.

Covered: XCLIENT before each MAIL (ADDR, PORT, NAME=[UNAVAILABLE], HELO,
PROTO, LOGIN), re-sent with the next client's values on a pooled
connection, EHLO again after it; XCLIENT to a real Postfix, also after
STARTTLS, and a Postfix that stops offering XCLIENT once a client outside
smtpd_authorized_xclient_hosts was named (that connection is not pooled);
a backend that does not offer XCLIENT, or refuses it, is not used and is
marked down (passively and by health checks); PROXY v1 and v2 headers to
fault_backend.py and to Postfix's proxy port, first thing on the
connection (before implicit TLS), one client per backend connection (two
clients at once, two messages of one client: a connection each, each with
its header, QUIT after its transaction); health checks of a PROXY backend
send a header of their own and pass.
"""

import os
import re
import socket

from harness import (HOST, IntegrationCase, SmtpClient, api_pools, base_config, dot_stuff, free_port,
                     message, wait_for)
from postfix_instance import PostfixInstance, postfix_for, skip_reason as postfix_skip
import tls_certs

SENDER = "sender@example.org"
RCPT = "rcpt@example.com"




def SourceClient(port, source, timeout=15):
    """A client connecting from a given loopback address."""
    return SmtpClient(port, timeout=timeout, source=source)


class Identity(IntegrationCase):

    # -- building blocks --

    def start(self, backends, identity, admin=False, tls=None, health_check=None, **over):
        """smtplb in front of `backends` (fault backends, or addresses),
        each with `identity` (and `tls`)."""
        addrs = [b if isinstance(b, str) else b.address for b in backends]
        cfg = base_config(free_port(), addrs, **over)
        for entry in cfg["pools"][0]["backends"]:
            entry["identity"] = identity
            if tls:
                entry["tls"] = tls
        if health_check:
            cfg["pools"][0]["health_check"] = health_check
        if admin:
            self.admin_port = free_port()
            cfg["admin"] = {"listen": "%s:%d" % (HOST, self.admin_port)}
        return self.start_smtplb(cfg)

    def connect(self, source, helo):
        c = SourceClient(self.lb.port, source)
        self.addCleanup(c.close)
        c.banner()
        c.ehlo(helo)
        return c

    def relay_from(self, source, test_id, helo="client.test.example", c=None):
        """One message from `source` (on a new session unless `c`); returns
        (content, the client's source port)."""
        c = c or self.connect(source, helo)
        content = message(test_id)
        replies = c.transaction(SENDER, [RCPT], content)
        self.assertEqual([r.code for r in replies], [250, 250, 354, 250],
                         "client dialog: %r" % replies)
        return content, c.sock.getsockname()[1]

    def backend_state(self, address):
        for p in api_pools(self.admin_port)["pools"]:
            for b in p["backends"]:
                if b["address"] == address:
                    return b["state"]
        raise AssertionError("no backend %s in /api/pools" % address)

    def xclient_backend(self, name, **faults):
        return self.fault_backend(name, xclient=True, **faults)

    # -- XCLIENT --

    def test_xclient_names_each_client_on_a_pooled_connection(self):
        a = self.xclient_backend("a")
        self.start([a], "xclient")
        c1, port1 = self.relay_from("127.0.0.2", "xclient-1", helo="first.test.example")
        c2, port2 = self.relay_from("127.0.0.3", "xclient-2", helo="second.test.example")
        _, m1 = self.assertDeliveredOnce("xclient-1", c1, at=a)
        _, m2 = self.assertDeliveredOnce("xclient-2", c2, at=a)
        self.assertEqual(m1["xclient"], {"ADDR": "127.0.0.2", "PORT": str(port1),
                                         "NAME": "[UNAVAILABLE]", "HELO": "first.test.example",
                                         "PROTO": "ESMTP", "LOGIN": "[UNAVAILABLE]"})
        self.assertEqual(m2["xclient"], {"ADDR": "127.0.0.3", "PORT": str(port2),
                                         "NAME": "[UNAVAILABLE]", "HELO": "second.test.example",
                                         "PROTO": "ESMTP", "LOGIN": "[UNAVAILABLE]"})
        # One connection, pooled; XCLIENT again before the second MAIL.
        self.assertEqual(m1["conn"], m2["conn"], "the pooled connection was not reused")
        self.assertEqual(len(a.events("xclient")), 2)
        # Each MAIL comes after XCLIENT and a new EHLO (XCLIENT resets the
        # session, as Postfix does).
        cmds = [l.split(" ")[0].upper() for l in a.commands()]
        for i, c in enumerate(cmds):
            if c == "MAIL":
                self.assertEqual(cmds[i - 2:i], ["XCLIENT", "EHLO"], cmds)

    def test_xclient_proto_smtp_after_helo(self):
        a = self.xclient_backend("a")
        self.start([a], "xclient")
        c = SourceClient(self.lb.port, "127.0.0.2")
        self.addCleanup(c.close)
        c.banner()
        self.assertEqual(c.cmd("HELO old.test.example").code, 250)
        content, _ = self.relay_from("127.0.0.2", "xclient-helo", c=c)
        _, m = self.assertDeliveredOnce("xclient-helo", content, at=a)
        self.assertEqual(m["xclient"]["PROTO"], "SMTP")
        self.assertEqual(m["xclient"]["HELO"], "old.test.example")

    def test_after_a_helo_client_the_next_client_gets_a_fresh_esmtp_session(self):
        # The first client said HELO, so smtplb greeted the backend with HELO
        # after XCLIENT and cannot know whether XCLIENT is still offered on
        # that connection: it is closed, not pooled.  The next client's
        # 8BITMIME message goes out with BODY=8BITMIME on a new one (never
        # downgraded, never refused).
        a = self.xclient_backend("a")
        self.start([a], "xclient")
        c = SourceClient(self.lb.port, "127.0.0.2")
        self.addCleanup(c.close)
        c.banner()
        self.assertEqual(c.cmd("HELO old.test.example").code, 250)
        content1, _ = self.relay_from("127.0.0.2", "xclient-helo-first", c=c)
        c2 = self.connect("127.0.0.3", "new.test.example")
        content2 = message("xclient-8bit", body="caf\xc3\xa9\r\n".encode("latin-1"))
        replies = c2.transaction(SENDER, [RCPT], content2, mail_params=" BODY=8BITMIME")
        self.assertEqual([r.code for r in replies], [250, 250, 354, 250], replies)
        _, m1 = self.assertDeliveredOnce("xclient-helo-first", content1, at=a)
        _, m2 = self.assertDeliveredOnce("xclient-8bit", content2, at=a)
        self.assertEqual(m1["helo"], "old.test.example")
        self.assertNotEqual(m1["conn"], m2["conn"])
        self.assertIn("BODY=8BITMIME", m2["mail_params"])
        self.assertEqual(m2["xclient"]["PROTO"], "ESMTP")
        self.assertEqual(m2["helo"], "new.test.example")
        quits = [e["conn"] for e in a.events("disconnect") if e.get("how") == "quit"]
        self.assertEqual(quits, [m1["conn"]])

    def test_backend_without_xclient_is_not_used_and_down(self):
        a = self.fault_backend("a")  # no --xclient
        b = self.xclient_backend("b")
        self.start([a, b], "xclient", admin=True)
        content, _ = self.relay_from("127.0.0.2", "no-xclient")
        _, m = self.assertDeliveredOnce("no-xclient", content, at=b)
        self.assertEqual(m["xclient"]["ADDR"], "127.0.0.2")
        self.assertNothingStored([a])
        self.assertNeverSaw("MAIL FROM", [a])
        self.assertNeverSaw("XCLIENT", [a])
        tx = self.lb.wait_transactions(1)[-1]
        self.assertIn("%s:no_xclient" % a.address, tx.get("tried", ""), tx)
        self.lb.wait_log(r"event=backend_xclient_failed .*backend=%s .*reason=no_xclient"
                         % a.address)
        self.lb.wait_log(r"event=backend_down .*backend=%s .*reason=no_xclient" % a.address)
        self.assertEqual(self.backend_state(a.address), "down")
        self.assertEqual(self.backend_state(b.address), "up")

    def test_health_check_marks_a_backend_without_xclient_down(self):
        a = self.fault_backend("a")
        b = self.xclient_backend("b")
        self.start([a, b], "xclient",
                   health_check={"interval": "200ms", "timeout": "2s", "rise": 1, "fall": 1})
        line = self.lb.wait_log(r"event=backend_check .*backend=%s .*state=down" % a.address)
        self.assertIn("no_xclient", line)
        wait_for(lambda: len(b.events("connect")) >= 2, 10, "two health checks of b")
        self.assertEqual([l for l in self.lb.log_lines("backend_check")
                          if "backend=%s " % b.address in l + " "], [])

    def test_xclient_refused_fails_over(self):
        a = self.xclient_backend("a", xclient_reply="550 5.7.0 Error: insufficient authorization")
        b = self.xclient_backend("b")
        self.start([a, b], "xclient")
        content, _ = self.relay_from("127.0.0.2", "xclient-refused")
        self.assertTrue(a.faults_fired("xclient_reply"))
        _, m = self.assertDeliveredOnce("xclient-refused", content, at=b)
        self.assertEqual(m["xclient"]["ADDR"], "127.0.0.2")
        self.assertNeverSaw("MAIL FROM", [a])
        tx = self.lb.wait_transactions(1)[-1]
        self.assertIn("%s:xclient_refused" % a.address, tx.get("tried", ""), tx)

    def test_xclient_to_postfix(self):
        pf = postfix_for(self)
        self.start([pf.address], "xclient")
        self.relay_from("127.0.0.2", "pf-xclient-1")
        self.relay_from("127.0.0.3", "pf-xclient-2")
        m1 = pf.wait_message("pf-xclient-1")
        m2 = pf.wait_message("pf-xclient-2")
        self.assertEqual(m1.client_addr, "127.0.0.2", m1.log)
        self.assertEqual(m2.client_addr, "127.0.0.3", m2.log)
        self.assertEqual(m1.helo, "client.test.example")
        # Still offered to the named client (127.0.0.0/8 is authorized):
        # both on one pooled connection, no XCLIENT ever refused.
        disconnects = pf.log_lines(r"smtpd-plain/smtpd\[\d+\]: disconnect from .*xclient=")
        self.assertEqual(len(disconnects), 0, disconnects)  # still open
        self.stop_smtplb()
        line = pf.wait_log(r"disconnect from .*xclient=")
        # "xclient=OK/TOTAL": Postfix counts an accepted XCLIENT as 0 (it
        # resets its counters); two were sent, one before each MAIL.
        total = re.search(r"xclient=(?:\d+/)?(\d+) ", line)
        self.assertEqual(total and total.group(1), "2", line)
        self.assertIn("mail=2 ", line)

    def test_postfix_that_withdraws_xclient_gets_a_connection_per_client(self):
        # Only smtplb's own address may use XCLIENT: once a connection named
        # 127.0.0.2, Postfix offers XCLIENT no more on it, so smtplb must not
        # pool it for the next client (it would be refused).
        if postfix_skip():
            self.skipTest(postfix_skip())
        pf = PostfixInstance(self.workdir, xclient_hosts="127.0.0.1")
        self.addCleanup(pf.stop)
        pf.start()
        self.backends.append(pf)
        self.start([pf.address], "xclient")
        self.relay_from("127.0.0.2", "pf-withdrawn-1")
        self.relay_from("127.0.0.3", "pf-withdrawn-2")
        self.assertEqual(pf.wait_message("pf-withdrawn-1").client_addr, "127.0.0.2")
        self.assertEqual(pf.wait_message("pf-withdrawn-2").client_addr, "127.0.0.3")
        lines = wait_for(lambda: (lambda l: len(l) >= 2 and l)(
            pf.log_lines(r"disconnect from .*xclient=")), 10, "two XCLIENT connections closed")
        # One XCLIENT per connection ("xclient=OK/TOTAL", or just the count
        # when all went well; Postfix counts the accepted one as 0 here, as
        # XCLIENT resets its counters): never a second one that would be
        # refused.
        for line in lines:
            total = re.search(r"xclient=(?:\d+/)?(\d+) ", line)
            self.assertEqual(total and total.group(1), "1", line)
            self.assertIn("mail=1 ", line)
        self.assertEqual([t.get("tried") for t in self.lb.transactions()], ["", ""])

    def test_xclient_after_starttls_to_postfix(self):
        certs = tls_certs.shared_certs("identity")
        pf = postfix_for(self, certs=certs)
        self.start([pf.address], "xclient",
                   tls={"mode": "starttls", "ca": certs.ca_cert, "sni": "localhost"})
        self.relay_from("127.0.0.2", "pf-xclient-tls")
        m = pf.wait_message("pf-xclient-tls")
        self.assertEqual(m.client_addr, "127.0.0.2", m.log)
        self.assertTrue(m.tls, m.protocol)

    # -- PROXY --

    def check_proxy(self, m, version, source, source_port, dest_port):
        self.assertEqual(m["proxy"], {"version": version, "command": "PROXY", "family": "TCP4",
                                      "source": source, "source_port": source_port,
                                      "dest": HOST, "dest_port": dest_port})

    def proxy_one_client_per_connection(self, version):
        a = self.fault_backend("a", proxy_protocol=True)
        self.start([a], "proxy_v%d" % version)
        # Two clients at once: each has its backend connection before either
        # sends its data.
        c1 = self.connect("127.0.0.2", "one.test.example")
        c2 = self.connect("127.0.0.3", "two.test.example")
        for c in (c1, c2):
            self.assertEqual(c.cmd("MAIL FROM:<%s>" % SENDER).code, 250)
            self.assertEqual(c.cmd("RCPT TO:<%s>" % RCPT).code, 250)
        wait_for(lambda: len(a.events("proxy")) >= 2, 10, "two PROXY connections")
        contents = {}
        for c, tid in ((c1, "proxy-v%d-1" % version), (c2, "proxy-v%d-2" % version)):
            self.assertEqual(c.cmd("DATA").code, 354)
            contents[tid] = message(tid)
            c.send(dot_stuff(contents[tid]) + b".\r\n")
            self.assertEqual(c.reply().code, 250)
        _, m1 = self.assertDeliveredOnce("proxy-v%d-1" % version, contents["proxy-v%d-1" % version])
        _, m2 = self.assertDeliveredOnce("proxy-v%d-2" % version, contents["proxy-v%d-2" % version])
        self.check_proxy(m1, version, "127.0.0.2", c1.sock.getsockname()[1], self.lb.port)
        self.check_proxy(m2, version, "127.0.0.3", c2.sock.getsockname()[1], self.lb.port)
        self.assertNotEqual(m1["conn"], m2["conn"])
        # The same client again: a new connection with its header; the
        # others were closed with QUIT, never pooled.
        content3, _ = self.relay_from("127.0.0.2", "proxy-v%d-3" % version, c=c1)
        _, m3 = self.assertDeliveredOnce("proxy-v%d-3" % version, content3)
        self.check_proxy(m3, version, "127.0.0.2", c1.sock.getsockname()[1], self.lb.port)
        self.assertNotIn(m3["conn"], (m1["conn"], m2["conn"]))
        self.assertEqual(len(a.events("proxy")), 3)
        quits = wait_for(lambda: (lambda q: len(q) >= 3 and q)(
            [e for e in a.events("disconnect") if e.get("how") == "quit"]), 10,
            "the three backend connections to end with QUIT")
        self.assertEqual(sorted(e["conn"] for e in quits),
                         sorted([m1["conn"], m2["conn"], m3["conn"]]))

    def test_proxy_v1_one_client_per_connection(self):
        self.proxy_one_client_per_connection(1)

    def test_proxy_v2_one_client_per_connection(self):
        self.proxy_one_client_per_connection(2)

    def test_proxy_header_comes_before_implicit_tls(self):
        certs = tls_certs.shared_certs("identity")
        a = self.fault_backend("a", proxy_protocol=True, implicit_tls=True,
                               tls_cert=certs.server_cert, tls_key=certs.server_key)
        self.start([a], "proxy_v2", tls={"mode": "implicit", "ca": certs.ca_cert})
        content, port = self.relay_from("127.0.0.2", "proxy-tls")
        _, m = self.assertDeliveredOnce("proxy-tls", content, at=a)
        self.assertTrue(m["tls"])
        self.check_proxy(m, 2, "127.0.0.2", port, self.lb.port)

    def test_proxy_health_checks_send_a_header_and_pass(self):
        a = self.fault_backend("a", proxy_protocol=True)
        b = self.fault_backend("b", proxy_protocol=True)
        self.start([a], "proxy_v1",
                   health_check={"interval": "200ms", "timeout": "2s", "rise": 1, "fall": 1})
        events = wait_for(lambda: (lambda e: len(e) >= 2 and e)(a.events("proxy")), 10,
                          "two health checks with a PROXY header")
        # v1: the check's own addresses (Postfix refuses "PROXY UNKNOWN").
        self.assertEqual(events[0]["source"], HOST)
        self.assertEqual(events[0]["dest_port"], a.port)
        self.assertEqual(a.events("proxy_error"), [])
        self.assertEqual(self.lb.log_lines("backend_check"), [])
        # v2: LOCAL (proxy-protocol.txt 2.2, "health checks").
        self.stop_smtplb()
        self.start([b], "proxy_v2",
                   health_check={"interval": "200ms", "timeout": "2s", "rise": 1, "fall": 1})
        events = wait_for(lambda: (lambda e: len(e) >= 2 and e)(b.events("proxy")), 10,
                          "two health checks with a PROXY v2 header")
        self.assertEqual(events[0]["command"], "LOCAL")
        self.assertEqual(b.events("proxy_error"), [])
        self.assertEqual(self.lb.log_lines("backend_check"), [])

    def test_proxy_to_postfix(self):
        pf = postfix_for(self)
        seen = 0
        for version in (1, 2):
            self.start([pf.proxy_address], "proxy_v%d" % version,
                       health_check={"interval": "200ms", "timeout": "2s", "rise": 1,
                                     "fall": 1})
            tid = "pf-proxy-v%d" % version
            self.relay_from("127.0.0.3", tid)
            m = pf.wait_message(tid)
            self.assertEqual(m.client_addr, "127.0.0.3", m.log)
            self.assertEqual(m.service, "proxy")
            # Health checks through the proxy port pass (a header each):
            # two more polite EHLO-QUIT sessions there.
            checks = r"smtpd-proxy/smtpd\[\d+\]: disconnect from \S+ ehlo=1 quit=1 commands=2$"
            wait_for(lambda: len(pf.log_lines(checks)) >= seen + 2, 10,
                     "two health checks at Postfix's proxy port")
            seen = len(pf.log_lines(checks))
            self.assertEqual(self.lb.log_lines("backend_check"), [])
            self.stop_smtplb()
