"""Volume per backend: `max_connections` (every open session, idle pooled
ones included) and `max_rate` (new transactions per second).  When every
backend is at its limit a transaction waits up to `timeouts.pool_wait` for
room, then gets 451 4.4.5; nothing queues without bound.
"""

import threading
import time
import unittest

from harness import IntegrationCase, message, smtplib_send

SENDER = "sender@example.org"
RCPT = "rcpt@example.com"


def peak_sessions(backend):
    """Most connections the backend had open at once, from its event log."""
    open_now = peak = 0
    for e in backend.events():
        if e["ev"] == "connect":
            open_now += 1
            peak = max(peak, open_now)
        elif e["ev"] == "disconnect":
            open_now -= 1
    return peak


class Limits(IntegrationCase):

    def pool(self, backends, **keys):
        return [{"name": "main", "algorithm": "round_robin",
                 "backends": [dict({"address": b.address}, **keys) for b in backends]}]

    def send_parallel(self, n, prefix):
        results = [None] * n

        def one(i):
            content = message("%s-%d" % (prefix, i))
            try:
                results[i] = (smtplib_send(self.lb.port, SENDER, [RCPT], content), content)
            except Exception as e:  # smtplib raises for refusals
                results[i] = (e, content)
        threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        return results

    def test_max_connections_caps_open_sessions_and_everything_is_delivered(self):
        a = self.fault_backend("a", delay_eod=0.5)
        self.smtplb_for([a], pools=self.pool([a], max_connections=2))
        results = self.send_parallel(6, "maxconn")
        for i, (r, content) in enumerate(results):
            self.assertEqual(r[0], 250, "message %d: %r" % (i, r))
            self.assertDeliveredOnce("maxconn-%d" % i, content, at=a)
        self.assertLessEqual(peak_sessions(a), 2, "more sessions than max_connections")

    def test_pool_full_gets_451_4_4_5_after_pool_wait(self):
        a = self.fault_backend("a", delay_eod=1.5)
        self.smtplb_for([a], pools=self.pool([a], max_connections=1),
                        timeouts={"pool_wait": "300ms"})
        results = self.send_parallel(2, "full")
        # One got the only session and 250; the other waited 300 ms and was
        # refused at its RCPT with 451 4.4.5.
        ok = [r for r, _ in results if isinstance(r, tuple) and r[0] == 250]
        refused = [r for r, _ in results if not isinstance(r, tuple)]
        self.assertEqual((len(ok), len(refused)), (1, 1), results)
        self.assertIn("451", str(refused[0]))
        self.assertIn("4.4.5", str(refused[0]))
        self.assertEqual(len(a.messages()), 1)

    def test_max_rate_spaces_new_transactions(self):
        a = self.fault_backend("a")
        self.smtplb_for([a], pools=self.pool([a], max_rate="4/s"))
        t0 = time.monotonic()
        for i in range(8):
            content = message("rate-%d" % i)
            code, text = smtplib_send(self.lb.port, SENDER, [RCPT], content)
            self.assertEqual(code, 250, text)
        elapsed = time.monotonic() - t0
        # A burst of 4, then one every 250 ms: the last four need >= 0.75 s.
        self.assertGreaterEqual(elapsed, 0.7, "8 transactions at 4/s took %.2fs" % elapsed)
        self.assertEqual(len(a.messages()), 8)


if __name__ == "__main__":
    unittest.main()
