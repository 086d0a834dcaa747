"""Balancing (DESIGN.md: "backend chosen per transaction"; "Readiness":
backends are usable from start-up, a refused connect marks one down at
once).  Messages are sent with Python's smtplib, as a plain client would.
"""

import smtplib
import unittest

from harness import IntegrationCase, message, smtplib_send

SENDER = "sender@example.org"
RCPT = "rcpt@example.com"


class Balance(IntegrationCase):

    def test_backend_chosen_per_transaction_not_per_connection(self):
        a, b = self.fault_backend("a"), self.fault_backend("b")
        self.smtplb_for([a, b])
        sent = []
        with smtplib.SMTP("127.0.0.1", self.lb.port, local_hostname="client.test.example",
                          timeout=30) as s:
            for i in range(6):
                content = message("per-tx-%d" % i)
                s.sendmail(SENDER, [RCPT], content)
                sent.append(("per-tx-%d" % i, content))
        self.assertEqual((len(a.messages()), len(b.messages())), (3, 3),
                         "one session's six transactions over two backends")
        for tid, content in sent:
            self.assertDeliveredOnce(tid, content, mail_from=SENDER, rcpts=[RCPT])

    def test_backend_down_at_start(self):
        a = self.fault_backend("a", refuse=True)
        b = self.fault_backend("b")
        self.smtplb_for([a, b])
        for i in range(20):
            content = message("down-%d" % i)
            code, text = smtplib_send(self.lb.port, SENDER, [RCPT], content)
            self.assertEqual(code, 250, text)
            self.assertDeliveredOnce("down-%d" % i, content, at=b)
        txs = self.lb.wait_transactions(20)
        tried_a = [t for t in txs if a.address in t.get("tried", "")]
        # Passive detection: a refused connect marks the backend down at
        # once, so only the first transaction(s) pay for it.
        self.assertGreaterEqual(len(tried_a), 1)
        self.assertLessEqual(len(tried_a), 3, "the down backend was tried %d times in 20"
                             % len(tried_a))


if __name__ == "__main__":
    unittest.main()
