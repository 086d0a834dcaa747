"""Transactional failover (DESIGN.md "The data path" step 5, "Replays").

Each test puts a faulty backend `a` first and a healthy backend `b` second
in a round_robin pool served by one worker, so the first transaction of a
fresh smtplb goes to `a` (every test also checks that `a`'s fault really
fired, so none can pass without exercising the failover).  The client must
see a normal dialog and the message must be stored exactly once, byte-exact
but for smtplb's Received: field, at `b`; a 5xx is final and reaches the
client; no mail is ever lost or doubled.
"""

import threading
import time
import os
import unittest

from harness import (BACKEND_DATA_DONE_S, BACKEND_REPLY_S, IntegrationCase, big_body, message,
                     wait_for)

SENDER = "sender@example.org"
RCPT = "rcpt@example.com"


class Failover(IntegrationCase):

    def pair(self, lb_over=None, **faults):
        a = self.fault_backend("a", **faults)
        b = self.fault_backend("b")
        self.smtplb_for([a, b], **(lb_over or {}))
        return a, b

    def relay(self, test_id, content=None, timeout=None):
        """One transaction on a new session; returns (replies, content, seconds)."""
        content = content if content is not None else message(test_id)
        c = self.client()
        if timeout:
            c.timeout = timeout
        t0 = time.monotonic()
        replies = c.transaction(SENDER, [RCPT], content)
        return replies, content, time.monotonic() - t0

    def assertClientSawSuccess(self, replies):
        self.assertEqual([r.code for r in replies], [250, 250, 354, 250],
                         "client dialog: %r" % replies)
        self.assertReply(replies[-1], 250, "2.0.0", "end of data")

    def assertFailedOver(self, a, b, test_id, content, fault, failure=None):
        """Delivered once at b; a's `fault` fired; smtplb logged a then b."""
        self.assertTrue(a.faults_fired(fault) or fault == "refuse",
                        "backend a's fault %r never fired: the failover was not exercised"
                        % fault)
        self.assertDeliveredOnce(test_id, content, at=b, mail_from=SENDER, rcpts=[RCPT])
        self.assertNothingStored([a])
        tx = self.lb.wait_transactions(1)[-1]
        self.assertEqual(tx.get("result"), "delivered", tx)
        self.assertEqual(tx.get("backend"), b.address, tx)
        tried = tx.get("tried", "")
        self.assertIn(a.address, tried, "transaction log does not show backend a tried: %r" % tx)
        if failure:
            self.assertIn("%s:%s" % (a.address, failure), tried, tx)
        return tx

    # ---- connect, banner, MAIL ------------------------------------------

    def test_refused_connect(self):
        a, b = self.pair(refuse=True)
        replies, content, _ = self.relay("refused-connect")
        self.assertClientSawSuccess(replies)
        self.assertEqual(a.events("connect"), [])
        self.assertFailedOver(a, b, "refused-connect", content, "refuse", "connect_refused")

    def test_banner_421(self):
        a, b = self.pair(banner="421 4.3.2 Service not available")
        replies, content, _ = self.relay("banner-421")
        self.assertClientSawSuccess(replies)
        self.assertFailedOver(a, b, "banner-421", content, "banner")
        self.assertNeverSaw("MAIL FROM", [a])

    def test_mail_4xx(self):
        a, b = self.pair(mail_reply="451 4.3.0 Try again later")
        replies, content, _ = self.relay("mail-4xx")
        self.assertClientSawSuccess(replies)
        self.assertFailedOver(a, b, "mail-4xx", content, "mail_reply")

    def test_mail_5xx_is_final(self):
        # DESIGN.md: a 5xx from the backend to MAIL is final and reaches the
        # client (at the first RCPT, as MAIL was answered before a backend
        # was chosen); it is not replayed elsewhere.
        a, b = self.pair(mail_reply="550 5.7.1 Sender rejected")
        c = self.client()
        self.assertReply(c.cmd("MAIL FROM:<%s>" % SENDER), 250, what="MAIL")
        r = c.cmd("RCPT TO:<%s>" % RCPT)
        self.assertReply(r, 550, "5.7.1", "RCPT after the backend's 5xx to MAIL")
        self.assertTrue(a.faults_fired("mail_reply"))
        self.assertNeverSaw("MAIL FROM", [b])
        self.assertReply(c.cmd("QUIT"), 221)
        self.assertNothingStored()

    # ---- backend replies are untrusted input (SECURITY.md 8) ---------------

    def _bad_reply(self, test_id, mail_reply):
        a, b = self.pair(mail_reply=mail_reply)
        replies, content, _ = self.relay(test_id)
        self.assertClientSawSuccess(replies)
        for r in replies:
            self.assertNotIn("second", r.text)
            self.assertNotIn("xxxxxxxxxx", r.text)
        self.assertFailedOver(a, b, test_id, content, "mail_reply")

    def test_backend_reply_with_mixed_codes_fails_that_backend(self):
        self._bad_reply("mixed-codes", "250-2.1.0 first\n550 5.1.0 second")

    def test_backend_reply_line_too_long_fails_that_backend(self):
        self._bad_reply("long-reply", "250 2.1.0 " + "x" * 3000)

    def _unsolicited(self, tag, **faults):
        # After the 250 at end of data the backend sends one more reply
        # nobody asked for.  smtplb must not reuse that session as if it
        # were in step (SECURITY.md 8: fail that backend connection):
        # otherwise every later reply on it answers the command before, and
        # a recipient the backend refuses gets the MAIL's 250.
        be = self.fault_backend("be", eod_extra="250 2.0.0 unsolicited", fault_limit=1,
                                rcpt_replies={"refused@example.com": "550 5.1.1 No such user"},
                                **faults)
        self.smtplb_for([be])
        c = self.client()
        first = message(tag + "-1")
        same_write = not faults.get("eod_extra_delay")
        # Behind the reply to the final dot in the same read, the extra
        # reply makes it unclear which reply answered that dot (DESIGN.md
        # "Backend replies are a strict sequence"): the attempt is
        # abandoned as after a silent dot, a possible duplicate, and with no
        # other backend the client gets 4xx.  Sent later, it finds the
        # session idle and the 250 stands.
        want_final = 451 if same_write else 250
        self.assertEqual([r.code for r in c.transaction(SENDER, [RCPT], first)],
                         [250, 250, 354, want_final])
        if same_write:
            tx = self.lb.wait_transactions(1)[-1]
            self.assertEqual(tx.get("possible_duplicate"), "yes", tx)
            self.assertIn("protocol_error", tx.get("tried", ""), tx)
        # The extra reply is on its way to smtplb's now idle pooled session.
        wait_for(lambda: be.events("eod_extra_sent"), 5, "the unsolicited reply to be sent")
        for i in range(2, 5):
            tid = "%s-%d" % (tag, i)
            content = message(tid)
            self.assertReply(c.cmd("MAIL FROM:<%s>" % SENDER), 250)
            self.assertReply(c.cmd("RCPT TO:<refused@example.com>"), 550, "5.1.1",
                             "%s: the backend refuses this recipient" % tid)
            self.assertReply(c.cmd("RCPT TO:<%s>" % RCPT), 250, what=tid)
            self.assertReply(c.cmd("DATA"), 354, what=tid)
            c.send(content + b".\r\n")
            self.assertReply(c.reply(), 250, "2.0.0", tid)
            self.assertDeliveredOnce(tid, content, rcpts=[RCPT])
        self.assertDeliveredOnce(tag + "-1", first, rcpts=[RCPT])

    def test_unsolicited_reply_with_the_250_does_not_desynchronise_pooled_session(self):
        self._unsolicited("unsolicited-same")

    def test_unsolicited_reply_to_idle_pooled_session_does_not_desynchronise_it(self):
        self._unsolicited("unsolicited-idle", eod_extra_delay=0.05)

    # ---- DATA stream ----------------------------------------------------

    def test_drop_right_after_354(self):
        a, b = self.pair(drop_data_after=0)
        replies, content, _ = self.relay("drop-after-354")
        self.assertClientSawSuccess(replies)
        self.assertFailedOver(a, b, "drop-after-354", content, "drop_data_after")

    def test_drop_in_mid_data(self):
        a, b = self.pair(drop_data_after=100000)
        content = message("drop-mid-data", big_body(200 * 1024))
        replies, content, _ = self.relay("drop-mid-data", content)
        self.assertClientSawSuccess(replies)
        fired = a.faults_fired("drop_data_after")
        self.assertTrue(fired and fired[0].get("received", 0) >= 100000, fired)
        self.assertFailedOver(a, b, "drop-mid-data", content, "drop_data_after")

    def test_drop_after_final_dot_without_reply(self):
        # The backend read the final dot and closed without a reply: it may
        # have committed the message (RFC 1047).  smtplb replays it and logs
        # the transaction as a possible duplicate (DESIGN.md "Timeouts",
        # SECURITY.md 9).
        a, b = self.pair(drop_data_after="eod")
        replies, content, _ = self.relay("drop-after-dot")
        self.assertClientSawSuccess(replies)
        tx = self.assertFailedOver(a, b, "drop-after-dot", content, "drop_data_after")
        self.assertEqual(tx.get("possible_duplicate"), "yes",
                         "a replay after a final dot that got no reply is not logged as a "
                         "possible duplicate: %r" % tx)

    def test_eod_4xx_is_replayed(self):
        a, b = self.pair(eod_reply="451 4.3.0 Queue file write error")
        replies, content, _ = self.relay("eod-4xx")
        self.assertClientSawSuccess(replies)
        self.assertFailedOver(a, b, "eod-4xx", content, "eod_reply")
        self.assertEqual(len(a.events("eod_refused")), 1)

    def test_eod_5xx_is_final(self):
        a, b = self.pair(eod_reply="554 5.7.1 Message content rejected")
        replies, content, _ = self.relay("eod-5xx")
        self.assertEqual([r.code for r in replies[:3]], [250, 250, 354], replies)
        self.assertReply(replies[-1], 554, "5.7.1", "end of data")
        self.assertTrue(a.faults_fired("eod_reply"))
        self.assertNothingStored()
        self.assertNeverSaw("MAIL FROM", [b])
        tx = self.lb.wait_transactions(1)[-1]
        self.assertNotEqual(tx.get("result"), "delivered", tx)
        self.assertNotIn(b.address, tx.get("tried", ""), tx)

    def test_data_4xx_is_replayed(self):
        a, b = self.pair(data_reply="451 4.3.0 Try again later")
        replies, content, _ = self.relay("data-4xx")
        self.assertClientSawSuccess(replies)
        self.assertFailedOver(a, b, "data-4xx", content, "data_reply")

    def test_data_5xx_is_final(self):
        a, b = self.pair(data_reply="554 5.5.0 No DATA for you")
        replies, content, _ = self.relay("data-5xx")
        self.assertEqual([r.code for r in replies[:2]], [250, 250], replies)
        self.assertReply(replies[2], 554, "5.5.0", "DATA")
        self.assertEqual(len(replies), 3)
        self.assertTrue(a.faults_fired("data_reply"))
        self.assertNeverSaw("MAIL FROM", [b])
        self.assertNothingStored()

    # ---- stalls ---------------------------------------------------------

    def _stall(self, step, bound):
        a, b = self.pair(hang=step)
        test_id = "stall-" + step
        replies, content, took = self.relay(test_id, timeout=bound + 15)
        self.assertClientSawSuccess(replies)
        tx = self.assertFailedOver(a, b, test_id, content, "hang", "stalled"
                                   if step != "eod" else "silent_final_dot")
        # smtplb waited for the stalled step (at least its timeout), then no
        # more than that bound and some slack before moving on.
        self.assertGreaterEqual(took, bound - 0.3, "gave up on the stall too early")
        self.assertLess(took, bound + 4.0, "took %.1fs to give up on a stall at %s" % (took, step))
        return tx

    def test_stall_at_banner(self):
        self._stall("banner", BACKEND_REPLY_S)

    def test_stall_at_ehlo(self):
        self._stall("ehlo", BACKEND_REPLY_S)

    def test_stall_at_mail(self):
        self._stall("mail", BACKEND_REPLY_S)

    def test_stall_at_rcpt(self):
        self._stall("rcpt", BACKEND_REPLY_S)

    def test_stall_at_data(self):
        self._stall("data", BACKEND_REPLY_S)

    def test_stall_at_end_of_data(self):
        tx = self._stall("eod", BACKEND_DATA_DONE_S)
        self.assertEqual(tx.get("possible_duplicate"), "yes", tx)

    def test_stall_in_mid_data(self):
        # The backend stops reading after the 354: smtplb's writes block once
        # the socket buffers are full, and the send times out (backend_reply).
        a, b = self.pair(lb_over={"limits": {"max_message_size": "64MB"}}, hang="body")
        content = message("stall-body", big_body(24 * 1024 * 1024))
        replies, content, took = self.relay("stall-body", content, timeout=60)
        self.assertClientSawSuccess(replies)
        self.assertFailedOver(a, b, "stall-body", content, "hang", "stalled")
        self.assertLess(took, BACKEND_REPLY_S + 10)

    # ---- slow end-of-data replies ----------------------------------------

    def test_slow_end_of_data_reply_within_bound_is_waited_for(self):
        a, b = self.pair(delay_eod=BACKEND_DATA_DONE_S / 2)
        replies, content, took = self.relay("slow-eod")
        self.assertClientSawSuccess(replies)
        self.assertDeliveredOnce("slow-eod", content, at=a)
        self.assertNeverSaw("MAIL FROM", [b])
        self.assertGreaterEqual(took, BACKEND_DATA_DONE_S / 2 - 0.1)
        tx = self.lb.wait_transactions(1)[-1]
        self.assertNotIn("possible_duplicate", tx)

    def test_end_of_data_reply_after_bound_gives_logged_identical_duplicate(self):
        # The backend commits after backend_data_done has passed: smtplb has
        # replayed by then, so two copies exist -- byte-identical, with the
        # same Received: id, and the transaction logged as a possible
        # duplicate (DESIGN.md "Timeouts", "Possible duplicates").
        a, b = self.pair(delay_eod=BACKEND_DATA_DONE_S + 1.5)
        replies, content, took = self.relay("late-eod")
        self.assertClientSawSuccess(replies)
        self.assertDeliveredOnce("late-eod", content, backends=[b])
        copies = wait_for(lambda: len(self.stored("late-eod")) == 2 and self.stored("late-eod"),
                          10, "the slow backend to commit its copy")
        self.assertBytesEqual(copies[0][1]["eml"], copies[1][1]["eml"], "the two copies")
        tx = self.lb.wait_transactions(1)[-1]
        self.assertEqual(tx.get("possible_duplicate"), "yes", tx)
        self.assertIn("%s:silent_final_dot" % a.address, tx.get("tried", ""), tx)

    # ---- recipients --------------------------------------------------------

    def test_rcpt_421_is_replayed(self):
        a, b = self.pair(rcpt_replies={RCPT: "421 4.3.2 Shutting down"})
        replies, content, _ = self.relay("rcpt-421")
        self.assertClientSawSuccess(replies)
        self.assertDeliveredOnce("rcpt-421", content, at=b, rcpts=[RCPT])
        self.assertEqual(len(a.events("rcpt_refused")), 1)

    def test_backend_recipient_replies_reach_the_client(self):
        # The backend is authoritative on recipients (cut-through RCPT).
        a, b = self.pair(rcpt_replies={"gone@example.com": "550 5.1.1 No such user",
                                       "busy@example.com": "450 4.2.1 Mailbox busy"})
        c = self.client()
        self.assertReply(c.cmd("MAIL FROM:<%s>" % SENDER), 250)
        self.assertReply(c.cmd("RCPT TO:<gone@example.com>"), 550, "5.1.1")
        self.assertReply(c.cmd("RCPT TO:<busy@example.com>"), 450, "4.2.1")
        self.assertReply(c.cmd("RCPT TO:<%s>" % RCPT), 250)
        self.assertReply(c.cmd("DATA"), 354)
        content = message("rcpt-replies")
        c.send(content + b".\r\n")
        self.assertReply(c.reply(), 250)
        self.assertDeliveredOnce("rcpt-replies", content, at=a, rcpts=[RCPT])
        self.assertEqual(b.events("connect"), [], "a refused recipient caused a replay")

    def test_replay_skips_backend_refusing_accepted_recipient(self):
        # The replay backend that refuses an accepted recipient is skipped;
        # the next one that takes every recipient gets the message.
        a = self.fault_backend("a", drop_data_after=0)
        b = self.fault_backend("b", rcpt_replies={"r2@example.com": "550 5.1.1 No such user"})
        c3 = self.fault_backend("c")
        self.smtplb_for([a, b, c3])
        c = self.client()
        rcpts = ["r1@example.com", "r2@example.com"]
        content = message("replay-skip")
        replies = c.transaction(SENDER, rcpts, content)
        self.assertEqual([r.code for r in replies], [250, 250, 250, 354, 250], replies)
        self.assertDeliveredOnce("replay-skip", content, at=c3, rcpts=rcpts)
        self.assertEqual(len(b.events("rcpt_refused")), 1)

    # Backend a accepted recipients, then failed; the replay backend's 5xx to
    # MAIL is its own opinion, not the message's fate: the client, which
    # holds 250s for its recipients, must get a 4xx (as
    # RelayTransaction::finish() gives after the final dot: "the client has
    # 250s for them, so this is not final"), never a 5xx that makes it
    # bounce a message the first backend had accepted.

    def test_replay_backend_5xx_to_mail_at_data_is_not_final(self):
        a = self.fault_backend("a", drop_at="data")
        b = self.fault_backend("b", mail_reply="550 5.7.1 Sender blocked here")
        self.smtplb_for([a, b])
        c = self.client()
        self.assertReply(c.cmd("MAIL FROM:<%s>" % SENDER), 250)
        self.assertReply(c.cmd("RCPT TO:<%s>" % RCPT), 250, what="RCPT accepted by a")
        r = c.cmd("DATA")
        self.assertTrue(a.faults_fired("drop") and b.faults_fired("mail_reply"))
        self.assertEqual(r.code // 100, 4, "a accepted the recipient and dropped at DATA; b's "
                         "5xx to the replayed MAIL reached the client as %r" % r)
        self.assertNothingStored()

    def test_replay_backend_5xx_to_mail_at_rcpt_is_not_final(self):
        a = self.fault_backend("a", rcpt_replies={"r2@example.com": "drop"})
        b = self.fault_backend("b", mail_reply="550 5.7.1 Sender blocked here")
        self.smtplb_for([a, b])
        c = self.client()
        self.assertReply(c.cmd("MAIL FROM:<%s>" % SENDER), 250)
        self.assertReply(c.cmd("RCPT TO:<r1@example.com>"), 250, what="RCPT accepted by a")
        r = c.cmd("RCPT TO:<r2@example.com>")
        self.assertTrue(a.faults_fired("rcpt_drop") and b.faults_fired("mail_reply"))
        self.assertEqual(r.code // 100, 4, "a accepted r1 and dropped at r2; b's 5xx to the "
                         "replayed MAIL reached the client as %r" % r)
        self.assertNothingStored()

    # ---- no backend, retries ---------------------------------------------

    def test_no_backend_gives_451(self):
        a = self.fault_backend("a", refuse=True)
        b = self.fault_backend("b", banner="421 4.3.2 Busy")
        self.smtplb_for([a, b])
        c = self.client()
        self.assertReply(c.cmd("MAIL FROM:<%s>" % SENDER), 250)
        r = c.cmd("RCPT TO:<%s>" % RCPT)
        self.assertEqual(r.code, 451, r)
        self.assertTrue(r.enhanced.startswith("4.4."), r)
        self.assertTrue(b.faults_fired("banner"))
        self.assertReply(c.cmd("RSET"), 250)
        self.assertNothingStored()

    def test_retries_bound_the_backends_tried(self):
        a = self.fault_backend("a", refuse=True)
        b = self.fault_backend("b", mail_reply="451 4.3.0 Later")
        c3 = self.fault_backend("c")
        cfg = {"pools": [{"name": "main", "algorithm": "round_robin", "retries": 1,
                          "backends": [{"address": x.address} for x in (a, b, c3)]}]}
        self.smtplb_for([], **cfg)
        c = self.client()
        self.assertReply(c.cmd("MAIL FROM:<%s>" % SENDER), 250)
        r = c.cmd("RCPT TO:<%s>" % RCPT)
        self.assertEqual(r.code, 451, "retries: 1 allows two backends: %r" % r)
        self.assertTrue(r.enhanced.startswith("4.4."), r)
        self.assertTrue(b.faults_fired("mail_reply"))
        self.assertEqual(c3.events("connect"), [], "a third backend was tried")

    # ---- capabilities -------------------------------------------------------

    def test_backend_without_8bitmime_not_used_for_8bit_mail(self):
        # RFC 6152 3: never send 8-bit mail to a server that did not offer
        # 8BITMIME (and never downgrade it).
        a, b = self.pair(omit_ehlo=["8BITMIME"])
        c = self.client()
        content = message("8bit-capable", "caf\u00e9\r\n".encode())
        replies = c.transaction(SENDER, [RCPT], content, " BODY=8BITMIME")
        self.assertClientSawSuccess(replies)
        _, env = self.assertDeliveredOnce("8bit-capable", content, at=b)
        self.assertIn("BODY=8BITMIME", env["mail_params"])
        self.assertNeverSaw("MAIL FROM", [a])

    def test_replay_to_backend_without_pipelining(self):
        a = self.fault_backend("a", drop_data_after=0)
        b = self.fault_backend("b", omit_ehlo=["PIPELINING"])
        self.smtplb_for([a, b])
        c = self.client()
        rcpts = ["r1@example.com", "r2@example.com", "r3@example.org"]
        content = message("no-pipelining")
        replies = c.transaction(SENDER, rcpts, content)
        self.assertEqual([r.code for r in replies], [250, 250, 250, 250, 354, 250], replies)
        self.assertDeliveredOnce("no-pipelining", content, at=b, rcpts=rcpts)

    # ---- a flapping backend under concurrent load -------------------------

    def test_flapping_backend_under_concurrent_load(self):
        # Backend a changes its fault every few messages while four clients
        # send; every message must get 250 and be stored exactly once.
        a, b = self.pair(lb_over={"workers": None})
        faults = [{"banner": "421 4.3.2 Busy"}, {"mail_reply": "451 4.3.0 Later"},
                  {"drop_data_after": 700}, {"eod_reply": "451 4.3.0 Later"}, {},
                  {"refuse": True}, {"drop_at": "data"}, {}]
        results, errors = [], []
        lock = threading.Lock()

        def client(k):
            try:
                c = self.client()
                for i in range(25):
                    tid = "flap-%d-%d" % (k, i)
                    content = message(tid, big_body(2000))
                    replies = c.transaction(SENDER, [RCPT], content)
                    with lock:
                        results.append((tid, content, replies))
            except Exception as e:  # reported below, with the thread's name
                errors.append("client %d: %r" % (k, e))

        threads = [threading.Thread(target=client, args=(k,)) for k in range(4)]
        for t in threads:
            t.start()
        for f in faults:
            a.set_control(**f)
            n = len(results)
            wait_for(lambda: len(results) >= min(100, n + 10) or not any(
                t.is_alive() for t in threads), 60, "ten more messages")
        for t in threads:
            t.join(60)
        self.assertEqual(errors, [])
        self.assertEqual(len(results), 100)
        for tid, content, replies in results:
            self.assertEqual([r.code for r in replies], [250, 250, 354, 250],
                             "%s: %r" % (tid, replies))
            self.assertDeliveredOnce(tid, content)
        self.assertGreater(len(a.faults_fired()), 0)

    def test_transaction_deadline_bounds_all_replays(self):
        # timeouts.transaction bounds the client's wait, replays included.
        a = self.fault_backend("a", hang="banner")
        b = self.fault_backend("b", hang="banner")
        self.smtplb_for([a, b], timeouts={"transaction": "3s"})
        c = self.client()
        self.assertReply(c.cmd("MAIL FROM:<%s>" % SENDER), 250)
        t0 = time.monotonic()
        r = c.cmd("RCPT TO:<%s>" % RCPT, timeout=20)
        took = time.monotonic() - t0
        self.assertEqual(r.code, 451, r)
        self.assertTrue(r.enhanced.startswith("4.4."), r)
        self.assertTrue(a.faults_fired("hang") and b.faults_fired("hang"))
        self.assertGreaterEqual(took, 2.9)
        self.assertLess(took, 5.5, "the transaction deadline (3s) was not kept")

    # ---- fault_limit: a backend that recovers -----------------------------

    def test_fault_limit_then_backend_used_again(self):
        # Only the first transaction meets the fault; `a` takes mail again
        # once smtplb no longer holds it down.
        a, b = self.pair(eod_reply="451 4.3.0 later", fault_limit=1)
        replies, content, _ = self.relay("limit-0")
        self.assertClientSawSuccess(replies)
        self.assertFailedOver(a, b, "limit-0", content, "eod_reply")
        sent = [("limit-0", content)]

        def a_takes_mail():
            tid = "limit-%d" % len(sent)
            replies, content, _ = self.relay(tid)
            self.assertClientSawSuccess(replies)
            sent.append((tid, content))
            return a.messages()

        wait_for(a_takes_mail, 15, "backend a to take mail again", interval=0.05)
        for tid, content in sent:
            self.assertDeliveredOnce(tid, content)
        self.assertEqual(len(a.faults_fired("eod_reply")), 1)

    # ---- pooled sessions, backend killed and restarted --------------------

    def test_backend_killed_and_restarted_while_pooled(self):
        a, b = self.pair()
        clients = [self.client() for _ in range(2)]
        sent = []

        def send(tid):
            c = clients[len(sent) % len(clients)]
            content = message(tid)
            replies = c.transaction(SENDER, [RCPT], content)
            self.assertClientSawSuccess(replies)
            sent.append((tid, content))

        for i in range(6):
            send("before-%d" % i)
        self.assertEqual((len(a.messages()), len(b.messages())), (3, 3),
                         "round_robin over two backends")
        conns_a = len(a.events("connect"))
        self.assertLess(conns_a, 6, "smtplb did not pool its sessions to a")
        a.kill()  # its pooled sessions are now dead
        for i in range(6):
            send("down-%d" % i)
        self.assertEqual(len(a.messages()), 3)
        a.restart()
        before = len(a.messages())
        n = [0]

        def a_takes_mail_again():
            send("after-%d" % n[0])
            n[0] += 1
            return len(a.messages()) >= before + 2

        wait_for(a_takes_mail_again, 20, "the restarted backend to take mail again",
                 interval=0.05)
        for tid, content in sent:
            self.assertDeliveredOnce(tid, content, mail_from=SENDER, rcpts=[RCPT])
        total = len(a.messages()) + len(b.messages())
        self.assertEqual(total, len(sent), "stored %d messages for %d sent" % (total, len(sent)))

    # ---- large message, replay from the spill file -----------------------

    def test_50mb_message_replayed_from_spill_with_bounded_memory(self):
        size = 50 * 1024 * 1024
        a, b = self.pair(lb_over={"limits": {"max_message_size": "64MB"}},
                         drop_data_after=20 * 1024 * 1024)
        content = message("fifty-mb", big_body(size))
        replies, content, took = self.relay("fifty-mb", content, timeout=120)
        self.assertClientSawSuccess(replies)
        fired = a.faults_fired("drop_data_after")
        self.assertTrue(fired and fired[0]["received"] >= 20 * 1024 * 1024, fired)
        self.assertFailedOver(a, b, "fifty-mb", content, "drop_data_after")
        hwm_kb = self.lb.status("VmHWM")
        # Under ASan, freed memory sits in its quarantine and shadow memory
        # doubles the footprint: RSS says nothing about smtplb there.  The
        # delivery assertions above still hold; the bound is checked in the
        # plain build.
        if os.environ.get("SMTPLB_SANITIZED"):
            return
        # The message is kept for replay in a spill file, not in memory.
        self.assertLess(hwm_kb * 1024, size // 2,
                        "smtplb's peak RSS was %d kB for a %d MB message" % (hwm_kb, size >> 20))

    # ---- a replay backend refuses an accepted recipient -------------------

    def test_replay_backend_refusing_accepted_recipient_gives_451_at_data(self):
        a = self.fault_backend("a", drop_at="data")
        b = self.fault_backend("b", rcpt_replies={RCPT: "550 5.1.1 No such user"})
        self.smtplb_for([a, b])
        c = self.client()
        self.assertReply(c.cmd("MAIL FROM:<%s>" % SENDER), 250)
        self.assertReply(c.cmd("RCPT TO:<%s>" % RCPT), 250, what="RCPT (accepted by a)")
        r = c.cmd("DATA")
        self.assertEqual(r.code, 451, "DATA after a dropped and b refused the recipient: %r" % r)
        self.assertTrue(r.enhanced.startswith("4.4."), r)
        self.assertTrue(a.faults_fired("drop"))
        self.assertEqual(len(b.events("rcpt_refused")), 1, "b was not asked for the recipient")
        self.assertReply(c.cmd("QUIT"), 221)
        self.assertNothingStored()

    def test_replay_backend_refusing_accepted_recipient_gives_451_at_end_of_data(self):
        a = self.fault_backend("a", drop_data_after=1000)
        b = self.fault_backend("b", rcpt_replies={RCPT: "450 4.2.1 Mailbox busy"})
        self.smtplb_for([a, b])
        c = self.client()
        content = message("replay-refused", big_body(20000))
        replies = c.transaction(SENDER, [RCPT], content)
        self.assertEqual([r.code for r in replies[:3]], [250, 250, 354], replies)
        self.assertEqual(replies[-1].code, 451, replies)
        self.assertTrue(replies[-1].enhanced.startswith("4.4."), replies[-1])
        self.assertTrue(a.faults_fired("drop_data_after"))
        self.assertEqual(len(b.events("rcpt_refused")), 1)
        self.assertNothingStored()
        # The session is still usable.
        self.assertReply(c.cmd("NOOP"), 250)


if __name__ == "__main__":
    unittest.main()
