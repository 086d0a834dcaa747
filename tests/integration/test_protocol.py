"""The client-side SMTP dialog: pipelining, limits, injection, timeouts.

DESIGN.md "Replies the client sees" and "More replies"; SECURITY.md 2, 3
(pipelining) and 7.  One healthy fault_backend behind smtplb; every test
also checks what reached (or never reached) that backend.
"""

import signal
import threading
import time
import unittest

from harness import (CRLF, SHUTDOWN_S, IntegrationCase, dot_stuff, message, split_received,
                     wait_for)

SENDER = "sender@example.org"
RCPT = "rcpt@example.com"


class Protocol(IntegrationCase):

    def setUp(self):
        super().setUp()
        self.be = self.fault_backend("be")

    def start(self, **over):
        return self.smtplb_for([self.be], **over)

    def test_ehlo_advertises_extensions_and_hostname(self):
        self.start()
        c = self.raw_client()
        banner = c.banner()
        self.assertTrue(banner.text.startswith("lb.test.example"), banner)
        r = c.cmd("EHLO client.test.example")
        self.assertReply(r, 250)
        self.assertTrue(r.lines[0][4:].startswith("lb.test.example"), r)
        keywords = {l[4:].split()[0].upper() for l in r.lines[1:]}
        for k in ("PIPELINING", "SIZE", "8BITMIME", "SMTPUTF8", "ENHANCEDSTATUSCODES"):
            self.assertIn(k, keywords)
        for k in ("CHUNKING", "XCLIENT", "XFORWARD", "STARTTLS", "AUTH"):
            self.assertNotIn(k, keywords, "%s advertised although smtplb does not do it" % k)

    def test_bad_sequence_and_unknown_command(self):
        self.start()
        c = self.raw_client()
        c.banner()
        self.assertReply(c.cmd("MAIL FROM:<%s>" % SENDER), 503, "5.5.1", "MAIL before EHLO")
        c.ehlo()
        self.assertReply(c.cmd("RCPT TO:<%s>" % RCPT), 503, "5.5.1", "RCPT before MAIL")
        self.assertReply(c.cmd("DATA"), 503, "5.5.1", "DATA before MAIL")
        self.assertReply(c.cmd("FROB nicate"), 500, "5.5.2", "unknown command")
        self.assertReply(c.cmd("QUIT"), 221, what="QUIT")
        self.assertTrue(c.closed_by_peer(), "not closed after QUIT")
        self.assertEqual(self.be.commands(), [], "a refused command reached the backend")

    # ---- pipelining (RFC 2920, SECURITY.md 3) --------------------------------

    def test_whole_transaction_in_one_write(self):
        self.start()
        c = self.client()
        content = message("one-write")
        c.send(b"MAIL FROM:<" + SENDER.encode() + b">\r\nRCPT TO:<a@example.com>\r\n"
               b"RCPT TO:<b@example.com>\r\nDATA\r\n" + dot_stuff(content) + b".\r\nQUIT\r\n")
        got = c.replies(6)
        self.assertEqual([(r.code) for r in got], [250, 250, 250, 354, 250, 221], got)
        self.assertReply(got[4], 250, "2.0.0")
        self.assertTrue(c.closed_by_peer())
        self.assertDeliveredOnce("one-write", content, mail_from=SENDER,
                                 rcpts=["a@example.com", "b@example.com"])

    def test_commands_pipelined_after_final_dot(self):
        self.start()
        c = self.client()
        first, second = message("pipe-1"), message("pipe-2")
        c.send("MAIL FROM:<%s>\r\nRCPT TO:<%s>\r\nDATA\r\n" % (SENDER, RCPT))
        self.assertEqual([r.code for r in c.replies(3)], [250, 250, 354])
        c.send(dot_stuff(first) + b".\r\nMAIL FROM:<b@example.org>\r\nRCPT TO:<c@example.com>\r\n"
               b"DATA\r\n")
        got = c.replies(4)
        self.assertEqual([r.code for r in got], [250, 250, 250, 354], got)
        self.assertReply(got[0], 250, "2.0.0", "end of the first message")
        c.send(dot_stuff(second) + b".\r\nQUIT\r\n")
        got = c.replies(2)
        self.assertEqual([r.code for r in got], [250, 221], got)
        self.assertDeliveredOnce("pipe-1", first, mail_from=SENDER, rcpts=[RCPT])
        self.assertDeliveredOnce("pipe-2", second, mail_from="b@example.org",
                                 rcpts=["c@example.com"])

    # ---- command lines (SECURITY.md 2, 7) -------------------------------------

    def test_a_command_line_of_512_octets_passes_513_do_not(self):
        # RFC 5321 4.5.3.1.4: 512 octets with the CR LF (SECURITY.md 2).
        self.start()
        c = self.client()
        exact = b"NOOP " + b"x" * 505 + CRLF
        self.assertEqual(len(exact), 512)
        c.send(exact)
        self.assertReply(c.reply(), 250, what="a 512-octet NOOP")
        c.send(b"NOOP " + b"x" * 506 + CRLF)
        self.assertReply(c.reply(), 500, "5.5.2", "a 513-octet NOOP")
        self.assertReply(c.cmd("NOOP"), 250, what="the session after it")

    def test_1007_octet_command_gets_one_500_then_resyncs(self):
        self.start()
        c = self.client()
        line = b"NOOP " + b"x" * 1000 + CRLF
        self.assertEqual(len(line), 1007)
        c.send(line + b"NOOP\r\n")
        self.assertReply(c.reply(), 500, "5.5.2", "1007-octet command")
        self.assertReply(c.reply(), 250, what="the NOOP after it (exactly one 500 before it)")
        content = message("after-long")
        self.assertEqual([r.code for r in c.transaction(SENDER, [RCPT], content)],
                         [250, 250, 354, 250])
        self.assertDeliveredOnce("after-long", content)

    def test_bare_cr_lf_nul_in_command_refused_and_never_forwarded(self):
        self.start()
        c = self.client()
        self.assertReply(c.cmd("MAIL FROM:<%s>" % SENDER), 250)
        for sep in (b"\r", b"\n", b"\x00"):
            with self.subTest(separator=sep):
                c.send(b"RCPT TO:<" + RCPT.encode() + b">" + sep + b"RCPT TO:<b@other.test>\r\n")
                self.assertReply(c.reply(), 500, "5.5.2", "RCPT with %r inside" % sep)
                self.assertReply(c.cmd("NOOP"), 250, what="the reply after it")
        self.assertReply(c.cmd("RCPT TO:<%s>" % RCPT), 250)
        self.assertReply(c.cmd("DATA"), 354)
        content = message("bare-cmd")
        c.send(dot_stuff(content) + b".\r\n")
        self.assertReply(c.reply(), 250, "2.0.0")
        self.assertDeliveredOnce("bare-cmd", content, rcpts=[RCPT])
        self.assertNeverSaw("other.test")

    def test_client_supplied_trust_and_bdat_refused(self):
        self.start()
        c = self.client()
        for cmd in ("XCLIENT ADDR=192.0.2.1 NAME=trusted.example", "XFORWARD ADDR=192.0.2.1",
                    "BDAT 0 LAST", "BDAT 5"):
            with self.subTest(command=cmd):
                self.assertReply(c.cmd(cmd), 500, "5.5.2", cmd)
        # AUTH= from an unauthenticated client is not passed on (RFC 4954 5).
        self.assertReply(c.cmd("MAIL FROM:<%s> AUTH=<boss@example.com>" % SENDER), 250)
        self.assertReply(c.cmd("RCPT TO:<%s>" % RCPT), 250)
        self.assertReply(c.cmd("DATA"), 354)
        content = message("trust")
        c.send(dot_stuff(content) + b".\r\n")
        self.assertReply(c.reply(), 250)
        self.assertDeliveredOnce("trust", content)
        for word in ("XCLIENT", "XFORWARD", "BDAT", "boss@example.com"):
            self.assertNeverSaw(word)

    def test_http_request_as_first_line_gets_421_and_close(self):
        self.start()
        # Also a request line longer than any SMTP command (an SSRF URL):
        # answered as a mere "line too long" it would keep the session open
        # for the SMTP commands in the request's body.
        long_path = "/" + "a" * 600
        huge_path = "/" + "b" * 20000
        for first in ("GET / HTTP/1.1", "POST /submit HTTP/1.1", "CONNECT example.com:25 HTTP/1.1",
                      "get / http/1.1", "POST %s HTTP/1.1" % long_path,
                      "GET %s HTTP/1.1" % huge_path):
            with self.subTest(first=first[:40]):
                c = self.raw_client()
                c.banner()
                c.send(first + "\r\nHost: lb.test.example\r\nContent-Length: 60\r\n\r\n"
                       "EHLO x\r\nMAIL FROM:<a@x.test>\r\nRCPT TO:<%s>\r\n" % RCPT)
                self.assertReply(c.reply(), 421, "4.7.0", first[:40])
                self.assertTrue(c.closed_by_peer(), "not closed after %r" % first[:40])
        self.assertEqual(self.be.events("connect"), [], "an HTTP request reached the backend")

    def test_ehlo_injection_refused(self):
        self.start()
        c = self.raw_client()
        c.banner()
        self.assertReply(c.cmd("EHLO x) by mx.example.com ("), 501, "5.5.4", "EHLO with ( )")
        self.assertReply(c.cmd(b"EHLO a.example\nX-Injected: 1"), 501, "5.5.4", "EHLO with a bare LF")
        c.ehlo("good.example")
        content = message("helo-injection")
        self.assertEqual([r.code for r in c.transaction(SENDER, [RCPT], content)],
                         [250, 250, 354, 250])
        _, env = self.assertDeliveredOnce("helo-injection", content)
        received, _ = split_received(env["eml"])
        self.assertIn(b"good.example", received)
        for bad in (b"X-Injected", b"mx.example.com (", b"a.example"):
            self.assertNotIn(bad, env["eml"])

    def test_ehlo_names_not_printable_utf8_refused(self):
        # Issue 14 item 3: not UTF-8, a C1 control or a Unicode line break
        # in the name is 501 5.5.4, for HELO and EHLO, and never reaches
        # the Received field.
        self.start(limits={"max_errors": 50})
        c = self.raw_client()
        c.banner()
        bad = [b"caf\xe9.example", b"x\xc0\xae.example", b"a\xc2\x85" b"b.example",
               b"a\xc2\x9b.example", b"a\xe2\x80\xa8" b"b.example", b"a\xe2\x80\xa9" b"b.example"]
        for name in bad:
            for verb in (b"EHLO ", b"HELO "):
                self.assertReply(c.cmd(verb + name), 501, "5.5.4", "%r" % (verb + name))
        c.ehlo("b\u00fccher.example")
        content = message("helo-utf8")
        self.assertEqual([r.code for r in c.transaction(SENDER, [RCPT], content)],
                         [250, 250, 354, 250])
        _, env = self.assertDeliveredOnce("helo-utf8", content)
        received, _ = split_received(env["eml"])
        self.assertIn("from b\u00fccher.example ".encode(), received)
        for name in bad:
            self.assertNotIn(name, env["eml"])

    def test_unknown_mail_and_rcpt_parameters_refused(self):
        self.start()
        c = self.client()
        self.assertReply(c.cmd("MAIL FROM:<%s> FOO=bar" % SENDER), 555, "5.5.4", "MAIL FOO=bar")
        self.assertReply(c.cmd("MAIL FROM:<%s>" % SENDER), 250)
        self.assertReply(c.cmd("RCPT TO:<%s> NOTIFY=NEVER BAR=1" % RCPT), 555, "5.5.4",
                         "RCPT BAR=1")
        self.assertReply(c.cmd("RCPT TO:<%s>" % RCPT), 250)
        self.assertReply(c.cmd("DATA"), 354)
        content = message("params")
        c.send(dot_stuff(content) + b".\r\n")
        self.assertReply(c.reply(), 250)
        self.assertDeliveredOnce("params", content)
        self.assertNeverSaw("FOO=")
        self.assertNeverSaw("BAR=")

    # ---- limits -----------------------------------------------------------------

    def test_max_errors_gets_421_and_close(self):
        self.start(limits={"max_errors": 3})
        c = self.client()
        got = [c.cmd("FROB %d" % i) for i in range(2)]
        c.send("FROB 2\r\n")
        got += c.replies(2)
        self.assertEqual([(r.code, r.enhanced) for r in got],
                         [(500, "5.5.2")] * 3 + [(421, "4.7.0")], got)
        self.assertTrue(c.closed_by_peer(), "not closed after too many errors")

    def test_client_command_timeout_gets_421_4_4_2(self):
        self.start(timeouts={"client_command": "1s"})
        c = self.client()
        t0 = time.monotonic()
        r = c.reply(timeout=10)
        took = time.monotonic() - t0
        self.assertReply(r, 421, "4.4.2", "idle client")
        self.assertTrue(c.closed_by_peer())
        self.assertGreaterEqual(took, 0.9)
        self.assertLess(took, 4.0)

    def test_10000_pipelined_rcpts_with_max_recipients_100(self):
        # The backend answers 251 (a code smtplb never makes up itself), so
        # the 100 answers that come first are provably the backend's; then
        # smtplb's own 452 4.5.3 for each of the other 9900.
        self.be.set_control(rcpt_ok_reply="251 2.1.5 User not local; will forward")
        self.start(limits={"max_recipients": 100})
        c = self.client()
        self.assertReply(c.cmd("MAIL FROM:<%s>" % SENDER), 250)
        n = 10000
        batch = b"".join(b"RCPT TO:<u%d@example.com>\r\n" % i for i in range(n))
        writer = threading.Thread(target=c.send, args=(batch,))
        writer.start()
        got = c.replies(n, timeout=60)
        writer.join(60)
        bad = [(i, r) for i, r in enumerate(got[:100]) if not r.is_(251, "2.1.5")]
        self.assertEqual(bad[:3], [], "the first 100 answers must be the backend's 251")
        bad = [(i + 100, r) for i, r in enumerate(got[100:]) if not r.is_(452, "4.5.3")]
        self.assertEqual(bad[:3], [], "answers after the 100th must all be 452 4.5.3")
        rcpts_seen = [l for l in self.be.commands() if l.startswith("RCPT")]
        self.assertEqual(len(rcpts_seen), 100, "the backend saw %d RCPTs" % len(rcpts_seen))
        self.assertReply(c.cmd("DATA"), 354)
        content = message("many-rcpts")
        c.send(dot_stuff(content) + b".\r\n")
        self.assertReply(c.reply(), 250)
        self.assertDeliveredOnce("many-rcpts", content,
                                 rcpts=["u%d@example.com" % i for i in range(100)])

    def test_rset_discards_the_transaction(self):
        self.start()
        c = self.client()
        self.assertReply(c.cmd("MAIL FROM:<first@example.org>"), 250)
        self.assertReply(c.cmd("RCPT TO:<dropped@example.com>"), 250)
        self.assertReply(c.cmd("RSET"), 250)
        content = message("after-rset")
        replies = c.transaction("second@example.org", ["kept@example.com"], content)
        self.assertEqual([r.code for r in replies], [250, 250, 354, 250])
        self.assertDeliveredOnce("after-rset", content, mail_from="second@example.org",
                                 rcpts=["kept@example.com"])

    def test_client_gone_right_after_final_dot_delivered_once(self):
        # SECURITY.md 9: the backend side is finished, the mail delivered
        # at most once (here: once, as the backend accepts it).
        self.start()
        c = self.client()
        self.assertReply(c.cmd("MAIL FROM:<%s>" % SENDER), 250)
        self.assertReply(c.cmd("RCPT TO:<%s>" % RCPT), 250)
        self.assertReply(c.cmd("DATA"), 354)
        content = message("gone-after-dot")
        c.send(dot_stuff(content) + b".\r\n")
        c.close()
        wait_for(lambda: self.stored("gone-after-dot"), 10, "the message to be stored")
        self.lb.wait_transactions(1)
        self.assertDeliveredOnce("gone-after-dot", content)

    def test_sigterm_drains_sessions(self):
        # SIGTERM: an idle session gets 421 and is closed; a transaction in
        # mid-DATA is finished (250, delivered) or refused (421, nothing
        # delivered) -- never 250 then lost; smtplb exits 0.
        self.start()
        idle = self.client()
        busy = self.client()
        self.assertReply(busy.cmd("MAIL FROM:<%s>" % SENDER), 250)
        self.assertReply(busy.cmd("RCPT TO:<%s>" % RCPT), 250)
        self.assertReply(busy.cmd("DATA"), 354)
        content = message("sigterm-mid-data", b"line\r\n" * 2000)
        wire = dot_stuff(content)
        busy.send(wire[:5000])
        self.lb.proc.signal(signal.SIGTERM)
        self.lb.wait_log(r"event=shutdown")
        self.assertReply(idle.reply(), 421, what="idle session at SIGTERM")
        self.assertTrue(idle.closed_by_peer())
        busy.send(wire[5000:] + b".\r\n")
        r = busy.reply()
        if r.code == 250:
            self.assertDeliveredOnce("sigterm-mid-data", content)
        else:
            self.assertEqual(r.code, 421, r)
            self.assertNothingStored()
        self.assertEqual(self.lb.proc.wait(SHUTDOWN_S + 5), 0, "exit status after SIGTERM")

    def test_client_vanishing_mid_data_delivers_nothing(self):
        self.start()
        c = self.client()
        self.assertReply(c.cmd("MAIL FROM:<%s>" % SENDER), 250)
        self.assertReply(c.cmd("RCPT TO:<%s>" % RCPT), 250)
        self.assertReply(c.cmd("DATA"), 354)
        c.send(dot_stuff(message("vanish", b"half a message\r\n" * 100)))
        c.close()
        wait_for(lambda: self.be.events("data_aborted"), 10,
                 "the backend connection to be closed without a final dot")
        self.lb.wait_log(r"event=transaction .*result=client_gone")
        self.assertNothingStored()
        # smtplb is still serving.
        c2 = self.client()
        content = message("after-vanish")
        self.assertEqual([r.code for r in c2.transaction(SENDER, [RCPT], content)],
                         [250, 250, 354, 250])
        self.assertDeliveredOnce("after-vanish", content)


if __name__ == "__main__":
    unittest.main()
