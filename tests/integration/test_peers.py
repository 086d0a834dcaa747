"""smtplb between real SMTP peers: swaks and Postfix's smtp-source as
clients, Postfix's smtp-sink as backends (each message dumped to its own
file, so the tests can count where every message went).  Skipped, with the
reason, when a peer is not installed.
"""

import os
import re
import subprocess
import time
import unittest

from harness import (HOST, SHUTDOWN_S, SMTP_SINK, SMTP_SOURCE, SWAKS, IntegrationCase, Process,
                     base_config, free_port, header_test_id, wait_for)

# smtplb's Received: field names its transaction id ("... by HOSTNAME ... id ID").
LB_ID_RE = re.compile(rb"by lb\.test\.example\b[^;]*?\bid ([\w.-]+)", re.DOTALL)


def lb_id(dump):
    m = LB_ID_RE.search(dump)
    return m.group(1).decode() if m else None


@unittest.skipUnless(SMTP_SINK, "smtp-sink (Postfix) is not installed")
class Peers(IntegrationCase):

    def two_sinks(self, algorithm="round_robin", weights=(1, 1), workers=1):
        a, b = self.sink("a"), self.sink("b")
        cfg = base_config(free_port(), [], workers=workers)  # None: the default
        cfg["pools"][0]["algorithm"] = algorithm
        cfg["pools"][0]["backends"] = [{"address": a.address, "weight": weights[0]},
                                       {"address": b.address, "weight": weights[1]}]
        self.start_smtplb(cfg)
        return a, b

    def wait_counts(self, sinks, total, timeout=20):
        """Polls the dump directories until they hold `total` files."""
        wait_for(lambda: sum(len(s.files()) for s in sinks) >= total, timeout,
                 "%d messages in the sinks" % total)
        return [len(s.files()) for s in sinks]

    def smtp_source(self, count, sessions, extra=()):
        argv = [SMTP_SOURCE, "-s", str(sessions), "-m", str(count), "-f", "sender@example.org",
                "-t", "rcpt@example.com", "-M", "client.test.example"] + list(extra) + \
               ["%s:%d" % (HOST, self.lb.port)]
        return subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              timeout=120)

    @unittest.skipUnless(SWAKS, "swaks is not installed")
    def test_swaks_through_smtplb_to_two_sinks(self):
        a, b = self.two_sinks()
        n = 4
        for i in range(n):
            argv = [SWAKS, "--server", "%s:%d" % (HOST, self.lb.port), "--from",
                    "sender@example.org", "--to", "rcpt%d@example.com" % i, "--helo",
                    "client.test.example", "--add-header", "X-Test-Id: swaks-%d" % i,
                    "--body", "swaks message %d\n.\n..leading dots\n" % i]
            if i % 2:
                argv.append("--pipeline")
            p = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=30)
            out = p.stdout.decode("utf-8", "replace")
            self.assertEqual(p.returncode, 0, "swaks failed:\n" + out[-2000:])
            self.assertRegex(out, r"<-\s+250 2\.0\.0", "no 250 2.0.0 at end of data")
        self.assertEqual(self.wait_counts([a, b], n), [2, 2], "round_robin over two sinks")
        ids = sorted(header_test_id(m) for s in (a, b) for m in s.messages())
        self.assertEqual(ids, ["swaks-%d" % i for i in range(n)])
        for s in (a, b):
            for m in s.messages():
                self.assertIsNotNone(lb_id(m), "no smtplb Received: field in %r" % m[:400])
                self.assertIn(b"\n..leading dots", m.replace(b"\r\n", b"\n"))

    @unittest.skipUnless(SMTP_SOURCE, "smtp-source (Postfix) is not installed")
    def test_smtp_source_round_robin_spreads_evenly(self):
        a, b = self.two_sinks(workers=None)  # one worker per core, as deployed
        p = self.smtp_source(200, 5)
        self.assertEqual(p.returncode, 0, "smtp-source failed: %s" % p.stdout[-2000:])
        counts = self.wait_counts([a, b], 200)
        self.assertEqual(sum(counts), 200, counts)
        for c in counts:
            self.assertTrue(80 <= c <= 120, "uneven round_robin spread %s" % counts)
        delivered = [t for t in self.lb.transactions() if t.get("result") == "delivered"]
        self.assertEqual(len(delivered), 200)

    @unittest.skipUnless(SMTP_SOURCE, "smtp-source (Postfix) is not installed")
    def test_weighted_round_robin_3_to_1(self):
        a, b = self.two_sinks("weighted_round_robin", (3, 1))
        p = self.smtp_source(100, 2)
        self.assertEqual(p.returncode, 0, "smtp-source failed: %s" % p.stdout[-2000:])
        counts = self.wait_counts([a, b], 100)
        self.assertEqual(sum(counts), 100, counts)
        self.assertTrue(65 <= counts[0] <= 85, "weight 3:1 gave %s" % counts)

    @unittest.skipUnless(SMTP_SOURCE, "smtp-source (Postfix) is not installed")
    def test_sigterm_while_smtp_source_runs(self):
        a, b = self.two_sinks(workers=None)
        # 50 KB messages, so that transactions are in flight at the signal.
        src = Process([SMTP_SOURCE, "-c", "-s", "5", "-m", "100000", "-l", "50000",
                       "-f", "sender@example.org",
                       "-t", "rcpt@example.com", "-M", "client.test.example",
                       "%s:%d" % (HOST, self.lb.port)],
                      os.path.join(self.workdir, "smtp-source.out"))
        self.procs.append(src)

        # smtp-source's counter: messages whose end of data it saw answered.
        # Wait on it, not on the sinks' files: smtp-sink creates a file before
        # the message is complete, and smtp-source exits on the first 421 of
        # the drain, so an answer still on its way then is never counted.
        def acknowledged():
            numbers = re.findall(r"(?:^|\r)(\d+)(?=\r|\n|$)", src.log_text())
            return max(int(x) for x in numbers) if numbers else 0

        wait_for(lambda: acknowledged() >= 50, 20, "smtp-source to count 50 messages")
        t0 = time.monotonic()
        rc = self.lb.stop(timeout=SHUTDOWN_S + 10)
        took = time.monotonic() - t0
        self.assertEqual(rc, 0, "smtplb exit status after SIGTERM under load")
        self.assertLess(took, SHUTDOWN_S + 3, "smtplb took %.1fs to stop" % took)
        self.assertIsNotNone(src.wait(30), "smtp-source did not stop after smtplb did")
        acked = acknowledged()
        self.assertGreaterEqual(acked, 50, "smtp-source counter: %r" % src.log_text()[-300:])
        # Every transaction smtplb answered 250 is in exactly one sink.
        txs = self.lb.transactions()
        delivered = {t["t"] for t in txs if t.get("result") == "delivered"}
        self.assertGreaterEqual(len(delivered), acked,
                                "smtp-source counted more 250s than smtplb logged")

        def sink_ids():
            return [lb_id(m) for s in (a, b) for m in s.messages()]

        wait_for(lambda: delivered <= set(sink_ids()), 10,
                 "the sinks to hold every delivered message")
        ids = sink_ids()
        self.assertNotIn(None, ids, "a sink holds a message without smtplb's Received:")
        self.assertEqual(len(ids), len(set(ids)), "a message is in the sinks twice")
        # smtp-sink also dumps transactions that were cut off in mid-DATA;
        # any such file must be one smtplb logged as not delivered (aborted:
        # its client left when smtp-source exited).
        not_delivered = {t["t"] for t in txs if t.get("result") != "delivered"}
        extra = set(ids) - delivered
        self.assertEqual(extra - not_delivered, set(),
                         "in a sink, but smtplb logged no such transaction")

if __name__ == "__main__":
    unittest.main()
