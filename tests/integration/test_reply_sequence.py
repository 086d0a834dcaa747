"""Backend replies are a strict sequence, and the client's reply always
matches what the backends did (DESIGN.md "Backend replies are a strict
sequence"; issue 13's defects 1-3; issue 21's replay-policy items 1-6).

Each test puts fault backends behind smtplb, one worker, round_robin, so the
first transaction of a fresh smtplb goes to `a`.  What a test checks is what
the client was told against what the backends stored: a 250 at end of data
only for a message some backend stored after answering that very dot with
250; a 5xx only from a backend that holds no 250 another gave; no backend
marked down for one odd recipient.
"""

import re
import socket
import struct
import time

from harness import (BACKEND_DATA_DONE_S, BACKEND_REPLY_S, HOST, IntegrationCase, free_port,
                     message, port_accepts, wait_for)
from test_admin import AdminClient

SENDER = "sender@example.org"
RCPT = "rcpt@example.com"


class ReplySequence(IntegrationCase):

    def pair(self, a_faults, b_faults=None, **lb_over):
        a = self.fault_backend("a", **a_faults)
        b = self.fault_backend("b", **(b_faults or {}))
        self.smtplb_for([a, b], **lb_over)
        return a, b

    def assertSuccess(self, replies, what):
        self.assertEqual([r.code for r in replies], [250, 250, 354, 250], "%s: %r" % (what, replies))

    def assertNoBackendDown(self):
        self.assertEqual(self.lb.log_lines("backend_down"), [],
                         "a backend was marked down for one transaction's oddity")

    # ---- issue 13, defect 1: an extra reply is never a client's 250 ------

    def test_extra_reply_behind_354_in_the_same_write_fails_over(self):
        a, b = self.pair({"data_extra": "250 2.0.0 extra", "eod_reply": "554 5.6.0 rejected"})
        content = message("extra-354-same")
        replies = self.client().transaction(SENDER, [RCPT], content)
        self.assertSuccess(replies, "extra reply behind a's 354")
        self.assertTrue(a.faults_fired("data_extra"))
        self.assertDeliveredOnce("extra-354-same", content, at=b, rcpts=[RCPT])
        self.assertNothingStored([a])
        tx = self.lb.wait_transactions(1)[-1]
        self.assertIn("%s:protocol_error" % a.address, tx.get("tried", ""), tx)
        self.assertNotIn("possible_duplicate", tx, "a never had the final dot")

    def test_extra_reply_behind_354_sent_later_fails_over_before_the_dot(self):
        a, b = self.pair({"data_extra": "250 2.0.0 extra", "data_extra_delay": 0.2,
                          "eod_reply": "554 5.6.0 rejected"})
        c = self.client()
        content = message("extra-354-later")
        self.assertReply(c.cmd("MAIL FROM:<%s>" % SENDER), 250)
        self.assertReply(c.cmd("RCPT TO:<%s>" % RCPT), 250)
        self.assertReply(c.cmd("DATA"), 354)
        wait_for(lambda: a.events("data_extra_sent"), 5, "a's unsolicited reply")
        c.send(content + b".\r\n")
        self.assertReply(c.reply(), 250, "2.0.0", "end of data after a's extra reply")
        self.assertDeliveredOnce("extra-354-later", content, at=b, rcpts=[RCPT])
        self.assertNothingStored([a])
        self.assertNeverSaw("Subject", [a])  # not a byte of the message went to a

    def test_extra_reply_from_the_only_backend_is_never_a_250(self):
        a = self.fault_backend("a", data_extra="250 2.0.0 extra", data_extra_delay=0.2,
                               eod_reply="554 5.6.0 rejected")
        self.smtplb_for([a])
        c = self.client()
        self.assertReply(c.cmd("MAIL FROM:<%s>" % SENDER), 250)
        self.assertReply(c.cmd("RCPT TO:<%s>" % RCPT), 250)
        self.assertReply(c.cmd("DATA"), 354)
        wait_for(lambda: a.events("data_extra_sent"), 5, "a's unsolicited reply")
        c.send(message("extra-only") + b".\r\n")
        r = c.reply()
        self.assertEqual(r.code // 100, 4, "no backend stored it: want 4xx, got %r" % r)
        self.assertNothingStored([a])

    def test_extra_reply_after_mail_never_reports_a_refused_recipient_accepted(self):
        refused = "refused@example.com"
        faults = {"rcpt_replies": {refused: "550 5.1.1 No such user"}}
        a, b = self.pair(dict(faults, mail_extra="250 2.1.0 extra"), faults)
        c = self.client()
        content = message("extra-mail")
        self.assertReply(c.cmd("MAIL FROM:<%s>" % SENDER), 250)
        r_refused = c.cmd("RCPT TO:<%s>" % refused)
        r_ok = c.cmd("RCPT TO:<%s>" % RCPT)
        self.assertTrue(a.faults_fired("mail_extra"))
        r_data = c.cmd("DATA")
        final = None
        if r_data.code == 354:
            c.send(content + b".\r\n")
            final = c.reply()
        # Whatever the timing made of a's extra reply, no stored message
        # carries the refused recipient, and a 250 at end of data means
        # exactly the recipients the client was told were accepted.
        # The real reply to the refused recipient, read late, must never
        # become the next recipient's: that would bounce a good address.
        self.assertNotEqual(r_ok.code // 100, 5, "a valid recipient got %r" % r_ok)
        for be in (a, b):
            for m in be.messages():
                self.assertNotIn(refused, m["rcpts"], "stored for a refused recipient")
        # a's extra reply comes in one read with the refused recipient's
        # 550: the attempt is abandoned there, and b answers.
        self.assertReply(r_refused, 550, "5.1.1", "the refused recipient, answered by b")
        self.assertReply(r_ok, 250, what="the valid recipient")
        self.assertReply(final, 250, "2.0.0", "end of data")
        self.assertDeliveredOnce("extra-mail", content, at=b, rcpts=[RCPT])

    # ---- issue 13, defect 3: 354 to MAIL -------------------------------------

    def test_354_to_mail_fails_over_and_that_backend_never_gets_data(self):
        a, b = self.pair({"mail_reply": "354 go ahead"})
        content = message("mail-354")
        replies = self.client().transaction(SENDER, [RCPT], content)
        self.assertSuccess(replies, "354 to MAIL at a")
        self.assertDeliveredOnce("mail-354", content, at=b, rcpts=[RCPT])
        self.assertNeverSaw("DATA", [a])

    # ---- issue 13, defect 2 / issue 21, item 5: one recipient's oddity ------

    def _one_odd_recipient(self, odd_reply, tag, **lb_over):
        odd = "odd@example.com"
        faults = {"rcpt_replies": {odd: odd_reply}}
        a, b = self.pair(faults, faults, **lb_over)
        c = self.client()
        content = message(tag)
        self.assertReply(c.cmd("MAIL FROM:<%s>" % SENDER), 250)
        t0 = time.monotonic()
        r = c.cmd("RCPT TO:<%s>" % odd, timeout=4 * BACKEND_REPLY_S + 10)
        took = time.monotonic() - t0
        self.assertReply(r, 451, "4.4.2", "the odd recipient alone is deferred")
        self.assertReply(c.cmd("RCPT TO:<%s>" % RCPT), 250, what="the next recipient")
        self.assertReply(c.cmd("DATA"), 354)
        c.send(content + b".\r\n")
        self.assertReply(c.reply(), 250, "2.0.0", "end of data")
        self.assertDeliveredOnce(tag, content, rcpts=[RCPT])
        # And the next transaction too: no backend was marked down.
        c2 = self.client()
        content2 = message(tag + "-2")
        self.assertSuccess(c2.transaction(SENDER, [RCPT], content2), "the next transaction")
        self.assertDeliveredOnce(tag + "-2", content2, rcpts=[RCPT])
        self.assertNoBackendDown()
        self.assertTrue(self.lb.log_lines("recipient_deferred"))
        return took

    def test_malformed_reply_for_one_recipient_does_not_take_the_pool_down(self):
        self._one_odd_recipient("250-2.1.5 first\n550 5.1.1 second", "odd-malformed")

    def test_354_to_rcpt_is_a_violation_never_passed_on(self):
        self._one_odd_recipient("354 go ahead", "odd-354")

    def test_slow_recipient_is_deferred_alone(self):
        took = self._one_odd_recipient("hang", "odd-slow")
        # Two backends tried, each given backend_reply, not the transaction's bound.
        self.assertLess(took, 2 * BACKEND_REPLY_S + 3)

    # ---- issue 21, item 6: RCPT replies ------------------------------------

    def test_252_to_rcpt_counts_as_accepted(self):
        a = self.fault_backend("a")
        a.set_control(rcpt_ok_reply="252 2.1.5 Cannot verify, will attempt")
        self.smtplb_for([a])
        content = message("rcpt-252")
        replies = self.client().transaction(SENDER, [RCPT], content)
        self.assertEqual([r.code for r in replies], [250, 252, 354, 250], replies)
        self.assertDeliveredOnce("rcpt-252", content, rcpts=[RCPT])
        tx = self.lb.wait_transactions(1)[-1]
        self.assertEqual(tx.get("rcpts"), RCPT, tx)
        self.assertEqual(tx.get("refused", ""), "", tx)

    def test_a_refusals_text_reaches_the_client_printable(self):
        # SECURITY.md 8: never raw backend bytes.  Ill-formed 8-bit text
        # (here Latin-1 and two stray bytes, sent as they are) becomes '?';
        # well-formed UTF-8 (a backend quoting an address back) is kept.
        a = self.fault_backend("a", rcpt_replies={
            "latin@example.com": "550 5.1.1 caf\udce9 \udcff\udcfe unknown",
            "utf@example.com": "550 5.1.1 caf\u00e9 unknown"})
        self.smtplb_for([a])
        c = self.client()
        self.assertReply(c.cmd("MAIL FROM:<%s>" % SENDER), 250)
        r = c.cmd("RCPT TO:<latin@example.com>")
        self.assertReply(r, 550, "5.1.1")
        self.assertEqual(r.lines, ["550 5.1.1 caf? ?? unknown"])
        r = c.cmd("RCPT TO:<utf@example.com>")
        self.assertReply(r, 550, "5.1.1")
        self.assertEqual(r.lines, ["550 5.1.1 caf\u00e9 unknown"])
        content = message("printable-refusal")
        self.assertReply(c.cmd("RCPT TO:<%s>" % RCPT), 250)
        self.assertReply(c.cmd("DATA"), 354)
        c.send(content + b".\r\n")
        self.assertReply(c.reply(), 250)
        self.assertDeliveredOnce("printable-refusal", content, rcpts=[RCPT])
        self.assertNoBackendDown()

    # ---- issue 21, items 1-3: a replay backend's refusal is never final ----

    def test_replay_backends_5xx_to_data_is_not_final(self):
        a, b = self.pair({"drop_at": "data"}, {"data_reply": "554 5.5.1 Not today"})
        c = self.client()
        self.assertReply(c.cmd("MAIL FROM:<%s>" % SENDER), 250)
        self.assertReply(c.cmd("RCPT TO:<%s>" % RCPT), 250)
        r = c.cmd("DATA")
        self.assertReply(r, 451, None, "b replayed a's recipients: its 554 must not bounce")
        self.assertTrue(r.enhanced.startswith("4.4."), r)
        self.assertNothingStored()

    def test_replay_backends_5xx_to_the_final_dot_is_not_final(self):
        a, b = self.pair({"drop_data_after": 100}, {"eod_reply": "554 5.6.0 Content rejected"})
        content = message("replay-eod-554") + (b"0123456789abcdef" * 50 + b"\r\n") * 5
        replies = self.client().transaction(SENDER, [RCPT], content)
        self.assertEqual([r.code for r in replies[:3]], [250, 250, 354], replies)
        self.assertReply(replies[-1], 451, None, "b's 554 after replaying a's recipients")
        self.assertNothingStored()

    def test_refusal_after_a_silent_final_dot_never_bounces_stored_mail(self):
        a, b = self.pair({"delay_eod": BACKEND_DATA_DONE_S + 1.0},
                         {"eod_reply": "554 5.6.0 Content rejected"})
        content = message("silent-then-554")
        replies = self.client().transaction(SENDER, [RCPT], content)
        self.assertReply(replies[-1], 451, None, "a may hold it: b's 554 is no bounce")
        tx = self.lb.wait_transactions(1)[-1]
        self.assertEqual(tx.get("possible_duplicate"), "yes", tx)
        # a stores it after all, late: the 451 made the client keep it.
        wait_for(lambda: a.messages(), BACKEND_DATA_DONE_S + 5, "a's late delivery")

    def test_backend_gone_after_354_is_no_possible_duplicate(self):
        a, b = self.pair({"drop_data_after": 0})
        content = message("gone-after-354")
        c = self.client()
        self.assertReply(c.cmd("MAIL FROM:<%s>" % SENDER), 250)
        self.assertReply(c.cmd("RCPT TO:<%s>" % RCPT), 250)
        self.assertReply(c.cmd("DATA"), 354)
        # a has hung up before the client's data even left: it cannot hold
        # a copy, so the replay on b is no possible duplicate.
        wait_for(lambda: a.events("disconnect"), 5, "a to close after its 354")
        c.send(content + b".\r\n")
        self.assertReply(c.reply(), 250, "2.0.0", "end of data, delivered by b")
        self.assertDeliveredOnce("gone-after-354", content, at=b, rcpts=[RCPT])
        tx = self.lb.wait_transactions(1)[-1]
        self.assertNotIn("possible_duplicate", tx, "a never saw the final dot")

    # ---- issue 21, item 4: the client is gone ------------------------------

    def test_no_replay_for_a_client_that_has_gone(self):
        a, b = self.pair({"hang": "eod"})
        c = self.client()
        self.assertReply(c.cmd("MAIL FROM:<%s>" % SENDER), 250)
        self.assertReply(c.cmd("RCPT TO:<%s>" % RCPT), 250)
        self.assertReply(c.cmd("DATA"), 354)
        c.send(message("gone-client") + b".\r\n")
        wait_for(lambda: a.events("fault"), 5, "a to hang at end of data")
        c.close()
        tx = wait_for(lambda: next((t for t in self.lb.transactions()), None),
                      BACKEND_DATA_DONE_S + 10, "the transaction's log line")
        self.assertEqual(tx.get("result"), "client_gone", tx)
        self.assertEqual(tx.get("possible_duplicate"), "yes", tx)  # a had the dot
        self.assertNeverSaw("MAIL FROM", [b])

    def test_a_250_the_client_never_got_is_a_possible_duplicate(self):
        a = self.fault_backend("a", delay_eod=0.5)
        port = free_port()
        self.smtplb_for([a], admin={"listen": "%s:%d" % (HOST, port)})
        wait_for(lambda: port_accepts(port), 10, "the admin listener")
        admin = AdminClient(port)
        c = self.client()
        self.assertReply(c.cmd("MAIL FROM:<%s>" % SENDER), 250)
        self.assertReply(c.cmd("RCPT TO:<%s>" % RCPT), 250)
        self.assertReply(c.cmd("DATA"), 354)
        c.send(message("lost-250") + b".\r\n")
        wait_for(lambda: a.events("fault") or a.events("cmd"), 5, "a to have the data")
        # Reset at once (SO_LINGER 0): smtplb's write of the 250 fails.
        c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        c.close()
        tx = self.lb.wait_transactions(1, timeout=10)[-1]
        wait_for(lambda: a.messages(), 5, "a to store it")
        self.assertEqual(tx.get("result"), "delivered", tx)
        lost = self.lb.wait_log(r"event=reply_lost .*t=%s " % re.escape(tx["t"]))
        self.assertIn("possible_duplicate=yes", lost)
        m = wait_for(lambda: (lambda m: m.value("smtplb_possible_duplicates_total") >= 1 and m)(
            admin.metrics()), 5, "smtplb_possible_duplicates_total 1")
        self.assertEqual(m.value("smtplb_possible_duplicates_total"), 1)
