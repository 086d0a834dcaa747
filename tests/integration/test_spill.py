"""Replay spill files and temp_directory (issue 14, item 3).

A message over limits.replay_memory spills the rest of its replay copy to
an unlinked file in temp_directory.  Covered: start-up refuses a
temp_directory that cannot hold such files (naming the key); a spill that
fails at run time (the directory removed after start, a file in its
place, so that it fails for root too) gets 452 4.3.1, nothing delivered,
one log line saying why (with the errno) however many messages fail
within a minute, and smtplb_spill_failures_total counts every one; a
message that fits in memory is not affected.
"""

import os
import shutil
import subprocess
import unittest
import urllib.request

from harness import (HOST, SMTPLB_BIN, IntegrationCase, SmtpClient, base_config, big_body,
                     free_port, header_test_id, message, to_yaml)

SENDER = "sender@example.org"
RCPT = "rcpt@example.com"


class SpillTest(IntegrationCase):

    def metric(self, name):
        text = urllib.request.urlopen("http://%s:%d/metrics" % (HOST, self.admin_port),
                                      timeout=10).read().decode()
        self.assertIn("# HELP %s " % name, text)
        self.assertIn("# TYPE %s counter" % name, text)
        for line in text.splitlines():
            if line.startswith(name + " "):
                return int(line.split()[1])
        self.fail("no %s sample in /metrics" % name)

    def send(self, test_id, body):
        c = SmtpClient(self.lb.port)
        self.addCleanup(c.close)
        c.banner()
        c.ehlo()
        return c.transaction(SENDER, [RCPT], message(test_id, body=body))[-1]

    def test_a_failed_spill_gets_452_and_is_logged_once_and_counted(self):
        spill = os.path.join(self.workdir, "spill")
        os.mkdir(spill)
        self.backend = self.fault_backend("a")
        self.admin_port = free_port()
        self.start_smtplb(base_config(
            free_port(), [self.backend.address], temp_directory=spill,
            limits={"replay_memory": "64KB"},
            admin={"listen": "%s:%d" % (HOST, self.admin_port)}))
        self.assertEqual(self.metric("smtplb_spill_failures_total"), 0, "exported from start-up")
        # Works while the directory is there.
        self.assertReply(self.send("spill-ok", big_body(300 * 1024)), 250, what="spilled")
        # Then the directory goes, and a file takes its place (chmod would
        # not stop root).
        shutil.rmtree(spill)
        with open(spill, "w") as f:
            f.write("not a directory\n")
        for i in range(3):
            r = self.send("spill-fails-%d" % i, big_body(300 * 1024))
            self.assertReply(r, 452, "4.3.1", "message %d over replay_memory" % i)
        self.assertReply(self.send("small", b"Small enough.\r\n"), 250, what="in memory")
        lines = self.lb.log_lines("spill_failure")
        self.assertEqual(len(lines), 1, "one log line a minute at most: %r" % lines)
        self.assertIn("temp_directory=%s" % spill, lines[0])
        self.assertRegex(lines[0], r"errno=\d+")
        self.assertIn("Not a directory", lines[0])
        self.assertEqual(self.metric("smtplb_spill_failures_total"), 3)
        ids = sorted(header_test_id(m["eml"]) for m in self.backend.messages())
        self.assertEqual(ids, ["small", "spill-ok"], "nothing of the 452 messages was delivered")

    def test_the_total_replay_memory_bounds_every_message_together(self):
        # limits.replay_memory_total: a small message that would fit its own
        # replay_memory goes to the spill file once all messages together
        # hold the total (here, nearly nothing), so with the file gone it is
        # refused (452 4.3.1) where alone it would have stayed in memory.
        ok = os.path.join(self.workdir, "ok")
        os.mkdir(ok)
        self.backend = self.fault_backend("a")
        self.admin_port = free_port()
        # Start-up refuses an unusable temp_directory: it goes after start.
        self.start_smtplb(base_config(
            free_port(), [self.backend.address], temp_directory=ok,
            limits={"replay_memory": "1MB", "replay_memory_total": "1KB"},
            admin={"listen": "%s:%d" % (HOST, self.admin_port)}))
        self.assertReply(self.send("under-total", b"Small.\r\n"), 250, what="within the total")
        shutil.rmtree(ok)
        with open(ok, "w") as f:
            f.write("not a directory\n")
        r = self.send("over-total", big_body(8 * 1024))
        self.assertReply(r, 452, "4.3.1", "8 KB: under replay_memory, over replay_memory_total")
        ids = sorted(header_test_id(m["eml"]) for m in self.backend.messages())
        self.assertEqual(ids, ["under-total"])

    def test_start_up_refuses_an_unusable_temp_directory(self):
        missing = os.path.join(self.workdir, "missing")
        cfg = base_config(free_port(), ["127.0.0.1:9"], temp_directory=missing)
        path = os.path.join(self.workdir, "smtplb.yaml")
        with open(path, "w") as f:
            f.write(to_yaml(cfg) + "\n")
        p = subprocess.run([SMTPLB_BIN, "run", "-c", path], capture_output=True, text=True,
                           timeout=30)
        self.assertNotEqual(p.returncode, 0, "started with an unusable temp_directory")
        self.assertRegex(p.stdout + p.stderr, r"temp_directory: `%s`" % missing)


if __name__ == "__main__":
    unittest.main()
