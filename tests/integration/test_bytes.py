"""Message bytes: byte-exact relay, strict end of data, no smuggling.

DESIGN.md "The data path" (decode, re-encode; a bare CR or LF is rejected or
normalised, never passed through) and "Behaviour the contract fixes" (Trace
header, End of data, An aborted message); SECURITY.md section 1.  Messages
are sent through raw sockets so that every octet on the wire is the test's.
"""

import re
import socket
import unittest

from harness import (CRLF, HOST, IntegrationCase, SmtpClient, big_body, dot_stuff, free_port,
                     message, split_received, wait_for)

SENDER = "sender@example.org"
RCPT = "rcpt@example.com"
EVIL = "s@evil.test"


class Bytes(IntegrationCase):

    def setUp(self):
        super().setUp()
        self.be = self.fault_backend("be")

    def start(self, **limits):
        return self.smtplb_for([self.be], limits=limits)

    def begin_data(self, c, params=""):
        self.assertReply(c.cmd("MAIL FROM:<%s>%s" % (SENDER, params)), 250, what="MAIL")
        self.assertReply(c.cmd("RCPT TO:<%s>" % RCPT), 250, what="RCPT")
        self.assertReply(c.cmd("DATA"), 354, what="DATA")

    def relay_exact(self, test_id, content, params=""):
        """Sends `content` dot-stuffed; expects 250 and byte-exact delivery."""
        c = self.client()
        self.begin_data(c, params)
        c.send(dot_stuff(content) + b".\r\n")
        self.assertReply(c.reply(), 250, "2.0.0", "end of data")
        return self.assertDeliveredOnce(test_id, content, mail_from=SENDER, rcpts=[RCPT])

    def assertRefusedNothingDelivered(self, c, code, enhanced):
        """One reply `code enhanced`, then the session is usable (a NOOP's
        250 is the very next reply: no extra replies), nothing stored, and
        the backend connection was closed without a final dot."""
        self.assertReply(c.reply(), code, enhanced, "end of data")
        self.assertReply(c.cmd("NOOP"), 250, what="NOOP right after the refusal")
        self.assertNothingStored()
        wait_for(lambda: self.be.events("data_aborted"), 5,
                 "the backend to see its connection closed inside DATA (no final dot)")

    # ---- byte-exact ------------------------------------------------------

    def test_dot_lines_byte_exact(self):
        self.start()
        body = CRLF.join([b".", b"..", b"...", b".leading", b" .", b"trailing.", b"",
                          b".\t", b". ", b"x.", b"..double", b"."]) + CRLF
        self.relay_exact("dots", message("dots", body))

    def test_message_starting_with_a_dot_line(self):
        self.start()
        content = b".first\r\nX-Test-Id: first-dot\r\n\r\n.\r\nbody\r\n"
        self.relay_exact("first-dot", content)

    def test_eight_bit_body_byte_exact(self):
        self.start()
        raw = bytes(range(0x80, 0x100))
        body = ("caf\u00e9 \u00fcber \u65e5\u672c \U0001F600\r\n").encode("utf-8") + raw + CRLF + \
            b"tab\tand\x01controls\x7f and NUL \x00 kept\r\n"
        _, env = self.relay_exact("eightbit", message("eightbit", body), " BODY=8BITMIME")
        self.assertIn("BODY=8BITMIME", env["mail_params"], "BODY=8BITMIME not passed on")

    def test_998_octet_lines_byte_exact(self):
        self.start()
        body = b"a" * 998 + CRLF + b"b" * 997 + CRLF + b"c" * 998 + CRLF
        self.relay_exact("998", message("998", body))

    def test_998_octet_line_starting_with_a_dot_byte_exact(self):
        # RFC 5321 4.5.3.1.6: the limit does not count "the leading dot
        # duplicated for transparency"; on the wire this line is 999 octets
        # plus CR LF, and it is a legal 998-octet text line.
        self.start()
        body = b"." + b"b" * 997 + CRLF
        self.relay_exact("998-dot", message("998-dot", body))

    # Issue 21: no line length limit unless limits.max_line_length is set
    # (RFC 5321 4.5.3.1: avoid limits; Postfix relays such lines).

    def test_1001_octet_line_relayed_byte_exact(self):
        self.start()
        body = b"short\r\n" + b"d" * 999 + CRLF + b"after\r\n"
        self.relay_exact("1001", message("1001", body))

    def test_5000_octet_lines_relayed_byte_exact(self):
        self.start()
        body = (b"x" * 5000 + CRLF + b"." + b"y" * 4999 + CRLF + b"z" * 998 + CRLF +
                b"w" * 5000 + CRLF)
        self.relay_exact("5000", message("5000", body))
        # fault_backend notes what a strict MTA would refuse, and stores it.
        self.assertTrue(self.be.events("data_long_line"), "the backend got no long line")

    def test_line_over_max_line_length_refused_554(self):
        # 1KB: a text line of 1024 octets with its CR LF passes, 1025 does
        # not: 554 5.6.0 after the final dot, never 500, and the backend
        # never gets a final dot.
        self.start(max_line_length="1KB")
        c = self.client()
        self.begin_data(c)
        content = message("1kb-long", b"short\r\n" + b"d" * 1023 + CRLF + b"after\r\n")
        c.send(dot_stuff(content) + b".\r\n")
        self.assertRefusedNothingDelivered(c, 554, "5.6.0")
        tx = self.lb.wait_transactions(1)[-1]
        self.assertEqual(tx.get("result"), "refused", tx)
        self.assertTrue(tx.get("reply", "").startswith("554 5.6.0"), tx)
        self.relay_exact("1kb-ok", message("1kb-ok", b"o" * 1022 + CRLF))

    def test_5000_octet_line_over_1kb_limit_refused(self):
        self.start(max_line_length="1KB")
        c = self.client()
        self.begin_data(c)
        content = message("5000-1kb", b"x" * 5000 + CRLF)
        c.send(dot_stuff(content) + b".\r\n")
        self.assertRefusedNothingDelivered(c, 554, "5.6.0")

    def test_long_message_with_a_long_line_after_first_chunk(self):
        # The long line arrives after smtplb has streamed 300 KB: the
        # backend must still never get a final dot.
        self.start(max_line_length="1KB")
        c = self.client()
        self.begin_data(c)
        content = message("late-long", big_body(300 * 1024) + b"e" * 2000 + CRLF)
        c.send(dot_stuff(content) + b".\r\n")
        self.assertRefusedNothingDelivered(c, 554, "5.6.0")

    # ---- trace header, SMTPUTF8 ------------------------------------------------

    def test_received_field_names_client_helo_protocol_and_id(self):
        self.start()
        c = self.client(helo="helo-name.client.test")
        content = message("received")
        replies = c.transaction(SENDER, [RCPT], content)
        self.assertEqual([r.code for r in replies], [250, 250, 354, 250])
        _, env = self.assertDeliveredOnce("received", content)
        received, _ = split_received(env["eml"])
        flat = b" ".join(received.split())
        tx = self.lb.wait_transactions(1)[-1]
        for want in (b"from helo-name.client.test ([127.0.0.1])", b"with ESMTP",
                     b"id " + tx["t"].encode(), b"for <" + RCPT.encode() + b">;"):
            self.assertIn(want, flat, "Received: field %r lacks %r" % (received, want))
        self.assertTrue(received.endswith(CRLF))
        # RFC 5321 4.4: the id is an Atom; it is the id the client was given
        # and the log's t=.
        m = re.search(rb" id (\S+?)(?: for |;)", flat)
        self.assertIsNotNone(m, received)
        rid = m.group(1).decode()
        self.assertRegex(rid, r"^[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+$", "id is not an Atom")
        self.assertEqual(rid, tx["t"])
        self.assertReply(replies[-1], 250, "2.0.0")
        self.assertEqual(replies[-1].text, "2.0.0 OK queued as " + rid)

    def test_received_field_names_an_ipv6_client_as_an_ipv6_literal(self):
        try:
            socket.create_connection(("::1", 9), timeout=1).close()
        except ConnectionRefusedError:
            pass
        except OSError as e:
            self.skipTest("no IPv6 loopback: %s" % e)
        port = free_port()
        # The same port on ::1 as on 127.0.0.1: the harness waits on the latter.
        listeners = [{"name": "mx", "listen": "%s:%d" % (HOST, port), "role": "inbound"},
                     {"name": "mx6", "listen": "[::1]:%d" % port, "role": "inbound"}]
        self.smtplb_for([self.be], listeners=listeners)
        c = wait_for(lambda: self._v6_client(port), 10, "smtplb to listen on [::1]:%d" % port)
        self.addCleanup(c.close)
        c.banner()
        c.ehlo("v6.client.test")
        content = message("ipv6-client")
        self.assertEqual([r.code for r in c.transaction(SENDER, [RCPT], content)],
                         [250, 250, 354, 250])
        _, env = self.assertDeliveredOnce("ipv6-client", content)
        received, _ = split_received(env["eml"])
        self.assertIn(b"from v6.client.test ([IPv6:::1])\r\n", received)

    @staticmethod
    def _v6_client(port):
        try:
            return SmtpClient(port, host="::1")
        except OSError:
            return None

    def test_received_for_clause_names_only_a_plain_mailbox(self):
        # RFC 5321 4.4: `for` names a Mailbox with a domain; a quoted local
        # part is never written raw (here it would end the clause early and
        # forge a "by"), and <postmaster> has no domain: no `for` clause.
        # (fault_backend's path syntax has no ">" inside quotes; the unit
        # test has that case.)
        self.start()
        for tid, rcpt in (("for-quoted", '"x; by forged.example"@example.com'),
                          ("for-postmaster", "postmaster")):
            with self.subTest(rcpt=rcpt):
                c = self.client()
                content = message(tid)
                replies = c.transaction(SENDER, [rcpt], content)
                self.assertEqual([r.code for r in replies], [250, 250, 354, 250])
                _, env = self.assertDeliveredOnce(tid, content, rcpts=[rcpt])
                received, _ = split_received(env["eml"])
                self.assertNotIn(b"for ", received)
                self.assertNotIn(b"forged", received)
                self.assertNotIn(b"postmaster", received)
                self.assertEqual(received.count(b";"), 1, received)

    def test_smtputf8_envelope_passed_on_unchanged(self):
        self.start()
        c = self.client()
        sender, rcpt = "j\u00f6rg@example.org", "\u7528\u6237@example.com"
        content = message("utf8-env", "gr\u00fc\u00dfe\r\n".encode())
        self.assertReply(c.cmd(("MAIL FROM:<%s> SMTPUTF8 BODY=8BITMIME" % sender).encode()), 250)
        self.assertReply(c.cmd(("RCPT TO:<%s>" % rcpt).encode()), 250)
        self.assertReply(c.cmd("DATA"), 354)
        c.send(dot_stuff(content) + b".\r\n")
        self.assertReply(c.reply(), 250)
        _, env = self.assertDeliveredOnce("utf8-env", content, mail_from=sender, rcpts=[rcpt])
        self.assertIn("SMTPUTF8", env["mail_params"])
        received, _ = split_received(env["eml"])
        self.assertIn(b"UTF8SMTP", received)

    # ---- size limits (DESIGN.md "Where refusals come") ---------------------------

    def test_size_parameter_over_limit_refused_at_mail(self):
        self.start(max_message_size="1MB")
        c = self.client()
        self.assertReply(c.cmd("MAIL FROM:<%s> SIZE=%d" % (SENDER, 1024 * 1024 + 1)), 552,
                         "5.3.4", "MAIL with SIZE over the limit")
        limit = [l for l in c.cmd("EHLO client.test.example").lines if l[4:].startswith("SIZE")]
        self.assertEqual(limit, ["250-SIZE 1048576"], "advertised SIZE")
        content = message("size-ok")
        _, env = self.relay_exact("size-ok", content, " SIZE=%d" % len(content))
        self.assertIn("SIZE=%d" % len(content), env["mail_params"], "SIZE= not passed on")
        self.assertNeverSaw("SIZE=%d" % (1024 * 1024 + 1))

    def test_actual_size_over_limit_refused_after_final_dot(self):
        self.start(max_message_size="1MB")
        c = self.client()
        self.begin_data(c)
        content = message("too-big", big_body(1536 * 1024))
        c.send(dot_stuff(content) + b".\r\n")
        self.assertRefusedNothingDelivered(c, 552, "5.3.4")
        small = message("small-after")
        self.assertEqual([r.code for r in c.transaction(SENDER, [RCPT], small)],
                         [250, 250, 354, 250])
        self.assertDeliveredOnce("small-after", small)

    def test_a_message_of_exactly_max_message_size_passes_one_octet_more_does_not(self):
        # The size is the message as the client meant it: dot-unstuffed,
        # its last CR LF included, smtplb's Received: field not.
        self.start(max_message_size="2KB")
        c = self.client()
        self.begin_data(c)
        over = message("size-over", b"")
        over += b"y" * (2049 - len(over) - 2) + b"\r\n"
        self.assertEqual(len(over), 2049)
        c.send(dot_stuff(over) + b".\r\n")
        self.assertRefusedNothingDelivered(c, 552, "5.3.4")
        head = message("size-exact", b"")
        body = b".dotted line, stuffed on the wire\r\n"
        body += b"x" * (2048 - len(head) - len(body) - 2) + b"\r\n"
        exact = head + body
        self.assertEqual(len(exact), 2048)
        self.relay_exact("size-exact", exact)

    # ---- bare CR, bare LF ---------------------------------------------------

    def _bare(self, test_id, body):
        self.start()
        c = self.client()
        self.begin_data(c)
        c.send(b"X-Test-Id: " + test_id.encode() + b"\r\n\r\n" + body + b".\r\n")
        self.assertRefusedNothingDelivered(c, 554, "5.6.0")
        self.assertEqual(self.be.events("data_bare_line_ending"), [],
                         "a bare line ending reached the backend")

    def test_bare_lf_refused(self):
        self._bare("bare-lf", b"one\ntwo\r\n")

    def test_bare_cr_refused(self):
        self._bare("bare-cr", b"one\rtwo\r\n")

    def test_bare_lf_deep_in_1mb_message_refused(self):
        # SECURITY.md 1 "Abort = close": 1 MB body, bare LF at 600 KB.
        body = big_body(600 * 1024) + b"bare\nlf\r\n" + big_body(400 * 1024)
        self._bare("bare-lf-1mb", body)

    # ---- smuggling (SECURITY.md 1) -------------------------------------------

    SMUGGLE_SEPARATORS = [b"\n.\n", b"\n.\r\n", b"\r.\r", b"\r.\n", b"\r\n.\n"]

    def smuggle(self, sep, test_id):
        return (b"X-Test-Id: " + test_id.encode() + b"\r\n\r\nx" + sep +
                b"MAIL FROM:<" + EVIL.encode() + b">\r\nRCPT TO:<v@example.com>\r\nDATA\r\n"
                b"smuggled\r\n.\r\n")

    def test_smuggling_inputs_refused(self):
        self.start()
        for i, sep in enumerate(self.SMUGGLE_SEPARATORS):
            with self.subTest(separator=sep):
                c = self.client()
                self.begin_data(c)
                c.send(self.smuggle(sep, "smuggle-%d" % i))
                self.assertReply(c.reply(), 554, "5.6.0", "end of data for %r" % sep)
                self.assertReply(c.cmd("NOOP"), 250, what="the reply after the 554 (%r)" % sep)
                wait_for(lambda: len(self.be.events("data_aborted")) >= i + 1, 5,
                         "the backend connection to be closed without a final dot")
        self.assertNeverSaw(EVIL)
        self.assertNothingStored()
        self.assertEqual(self.be.events("data_bare_line_ending"), [])

    def test_nul_before_dot_is_not_a_terminator(self):
        # `\r\n\0.\r\n` must not end the data (NUL is never stripped): either
        # 554 5.6.0 and nothing delivered, or one byte-exact message.
        self.start()
        c = self.client()
        self.begin_data(c)
        content = (b"X-Test-Id: nul-dot\r\n\r\nx\r\n\x00.\r\nMAIL FROM:<" + EVIL.encode() +
                   b">\r\nRCPT TO:<v@example.com>\r\nDATA\r\nsmuggled\r\n")
        c.send(content + b".\r\n")
        r = c.reply()
        if r.code == 250:
            self.assertDeliveredOnce("nul-dot", content)
        else:
            self.assertReply(r, 554, "5.6.0")
            self.assertNothingStored()
        self.assertReply(c.cmd("NOOP"), 250, what="the reply after end of data")
        self.assertNeverSaw(EVIL)

    def test_terminator_one_byte_per_write(self):
        self.start()
        c = self.client()
        self.begin_data(c)
        content = message("bytewise", b"a\r\n.\r\n..\r\nb\r\n")
        wire = dot_stuff(content) + b".\r\n"
        c.send(wire[:-20])
        c.send_bytewise(wire[-20:])  # "\r\na\r\n..\r\n...\r\nb\r\n.\r\n"
        self.assertReply(c.reply(), 250, "2.0.0", "end of data sent one octet per write")
        self.assertDeliveredOnce("bytewise", content)
        # And the next transaction on the same session is in step.
        c.send_bytewise(b"NOOP\r\n")
        self.assertReply(c.reply(), 250)

    # ---- bare_line_endings: normalize ------------------------------------------

    def test_normalize_delivers_crlf_and_restuffed_dots(self):
        self.start(bare_line_endings="normalize")
        c = self.client()
        self.begin_data(c)
        head = b"X-Test-Id: normalize\r\n\r\n"
        wire = head + b"l1\nl2\rl3\r\na\r.\rb\r\nc\n.\nd\r\n..e\r\n"
        want = head + b"l1\r\nl2\r\nl3\r\na\r\n.\r\nb\r\nc\r\n.\r\nd\r\n.e\r\n"
        c.send(wire + b".\r\n")
        self.assertReply(c.reply(), 250, "2.0.0", "end of data (normalize)")
        self.assertDeliveredOnce("normalize", want)
        self.assertEqual(self.be.events("data_bare_line_ending"), [])

    def test_normalize_smuggling_inputs_stay_in_the_message(self):
        self.start(bare_line_endings="normalize")
        for i, sep in enumerate(self.SMUGGLE_SEPARATORS):
            with self.subTest(separator=sep):
                c = self.client()
                self.begin_data(c)
                tid = "norm-smuggle-%d" % i
                c.send(self.smuggle(sep, tid))
                self.assertReply(c.reply(), 250, "2.0.0", "end of data for %r" % sep)
                self.assertReply(c.cmd("NOOP"), 250, what="the reply after the 250")
                want = (b"X-Test-Id: " + tid.encode() + b"\r\n\r\nx\r\n.\r\nMAIL FROM:<" +
                        EVIL.encode() + b">\r\nRCPT TO:<v@example.com>\r\nDATA\r\nsmuggled\r\n")
                self.assertDeliveredOnce(tid, want)
        self.assertNeverSaw(EVIL)


if __name__ == "__main__":
    unittest.main()
