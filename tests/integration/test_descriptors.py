"""Out of file descriptors (issue 14, item 6): smtplb under a hard
RLIMIT_NOFILE (prlimit), so that it runs out on purpose.

* Clients past the limit get `421 4.3.2` and a close (a descriptor held in
  reserve makes room to accept and answer them), never a connection that
  waits in the backlog with no banner.
* The failed accepts are logged at most once a second, with a count: no
  log storm.
* A backend connect that fails for want of a descriptor is smtplb's
  shortage, not the backend's failure: the client gets `451 4.3.0` and the
  backend is not marked down; once descriptors are free, mail flows.
"""

import os
import shutil
import socket
import re
import time
import unittest
import urllib.request

from harness import (HOST, SANITIZED, IntegrationCase, Smtplb, base_config, free_port, message,
                     wait_for)

SENDER = "sender@example.org"
RCPT = "rcpt@example.com"
LIMIT = 48


def first_reply(sock, timeout=5):
    """The first line the server sends, or b"" when it closed first."""
    sock.settimeout(timeout)
    buf = b""
    while b"\r\n" not in buf:
        chunk = sock.recv(512)
        if not chunk:
            break
        buf += chunk
    return buf.split(b"\r\n")[0]


@unittest.skipUnless(shutil.which("prlimit"), "needs prlimit (util-linux)")
# UBSan's vptr check tests whether memory is readable through a pipe(2);
# with every descriptor taken it cannot, and it reports a valid object as
# one with an invalid vptr (seen at random, on Boost's error categories).
# Out-of-descriptor behaviour is tested on the normal build.
@unittest.skipIf(SANITIZED, "the sanitizer runtime needs descriptors of its own")
class Descriptors(IntegrationCase):

    def start_limited(self, backends):
        cfg = base_config(free_port(), [b.address for b in backends])
        self.admin_port = free_port()
        cfg["admin"] = {"listen": "%s:%d" % (HOST, self.admin_port)}
        lb = Smtplb(self, cfg)
        lb.wrap = ["prlimit", "--nofile=%d:%d" % (LIMIT, LIMIT)]
        self.lb = lb.start()
        return lb

    def fill(self):
        """Connects until smtplb sheds a client; returns (open sessions, first shed reply)."""
        held = []
        for _ in range(2 * LIMIT):
            s = socket.create_connection((HOST, self.lb.port), timeout=5)
            self.addCleanup(s.close)
            line = first_reply(s)
            if not line.startswith(b"220"):
                return held, line
            held.append(s)
        self.fail("smtplb took %d clients under a limit of %d descriptors" % (len(held), LIMIT))

    def wait_for_room(self):
        """After the held clients close, smtplb frees their descriptors as it
        notices: poll until a new client gets its banner."""
        def banner_ok():
            with socket.create_connection((HOST, self.lb.port), timeout=5) as s:
                return first_reply(s).startswith(b"220")
        wait_for(banner_ok, 10, "a free descriptor after the clients closed")

    def test_clients_past_the_limit_get_421_and_the_log_stays_quiet(self):
        a = self.fault_backend("a")
        self.start_limited([a])
        t0 = time.monotonic()
        held, shed = self.fill()
        self.assertTrue(shed.startswith(b"421 4.3.2"), "the first client past the limit: %r" % shed)
        # More clients while still full: each is answered, none waits.
        for _ in range(10):
            s = socket.create_connection((HOST, self.lb.port), timeout=5)
            self.addCleanup(s.close)
            self.assertTrue(first_reply(s).startswith(b"421 4.3.2"))
        lines = wait_for(lambda: self.lb.log_lines("accept_error"), 5, "an accept_error line")
        took = time.monotonic() - t0
        self.assertLessEqual(len(self.lb.log_lines("accept_error")), int(took) + 2,
                             "accept_error more than once a second: %r" % lines)
        self.assertIn("count=", lines[0])
        # Descriptors back: mail flows, and every failed accept was counted
        # (the log lines hold at least one each).
        for s in held:
            s.close()
        self.wait_for_room()
        with urllib.request.urlopen("http://%s:%d/metrics" % (HOST, self.admin_port),
                                    timeout=5) as r:
            text = r.read().decode()
        counted = int(float(re.search(r"^smtplb_accept_errors_total (\S+)$", text, re.M).group(1)))
        logged = sum(int(re.search(r"\bcount=(\d+)", l).group(1))
                     for l in self.lb.log_lines("accept_error"))
        self.assertGreaterEqual(counted, max(1, logged), text)
        c = self.client()
        content = message("after-shortage")
        replies = c.transaction(SENDER, [RCPT], content)
        self.assertEqual([r.code for r in replies], [250, 250, 354, 250], replies)
        self.assertDeliveredOnce("after-shortage", content, at=a)

    def test_backend_connect_without_a_descriptor_is_not_the_backends_fault(self):
        a = self.fault_backend("a")
        self.start_limited([a])
        held, shed = self.fill()
        self.assertTrue(shed.startswith(b"421 4.3.2"), shed)
        # Every descriptor is taken: the backend connect of this transaction
        # cannot have one.
        s = held[-1]
        s.sendall(b"EHLO client.test.example\r\n")
        f = s.makefile("rb")
        line = f.readline()
        while line[3:4] == b"-":
            line = f.readline()
        s.sendall(b"MAIL FROM:<%s>\r\n" % SENDER.encode())
        self.assertTrue(f.readline().startswith(b"250"))
        s.sendall(b"RCPT TO:<%s>\r\n" % RCPT.encode())
        r = f.readline()
        self.assertTrue(r.startswith(b"451 4.3.0"), "RCPT without a descriptor: %r" % r)
        self.assertEqual(self.lb.log_lines("backend_down"), [],
                         "smtplb's own shortage marked the backend down")
        f.close()
        for h in held:
            h.close()
        self.wait_for_room()
        c = self.client()
        content = message("after-connect-shortage")
        replies = c.transaction(SENDER, [RCPT], content)
        self.assertEqual([r.code for r in replies], [250, 250, 354, 250], replies)
        self.assertDeliveredOnce("after-connect-shortage", content, at=a)
