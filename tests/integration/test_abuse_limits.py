"""Abuse limits at the edge (issue 6, item 6; SECURITY.md 7; DESIGN.md
"More limits").

The clients here are untrusted (trusted_networks names no loopback
address) and come from distinct loopback addresses (127.0.0.x), so each
is its own "client address".  Covered: connections per client address
and in total (421 4.7.0 at the banner, others unaffected), new
connections per client per minute (421 4.7.0), messages per client per
minute (451 4.7.1), a command dribbled a byte at a time (421 4.4.2 when
timeouts.client_command has passed for the whole line, not per read), a
DATA phase dribbled a byte at a time (421 4.4.2 at client_data_total,
nothing delivered), a session kept busy past client_session (421 4.4.2),
a client that pipelines and never reads (smtplb stops reading: its memory
stays flat and others are served), ten thousand idle clients that do not
starve a real one, IPv6 clients counted by prefix (issue 14), and every
refusal counted in smtplb_limit_hits_total.
"""

import os
import socket
import time
import unittest
import urllib.request

from harness import (HOST, SANITIZED, IntegrationCase, SmtpClient, base_config, free_port,
                     message, wait_for)

SENDER = "sender@example.org"
RCPT = "rcpt@example.com"


def rss_kb(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def _can_bind_v6(addr):
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
            s.bind((addr, 0))
        return True
    except OSError:
        return False


def _global_v6():
    """A global IPv6 address of this machine outside ::/64, or None."""
    try:
        with open("/proc/net/if_inet6") as f:
            rows = [line.split() for line in f]
    except OSError:
        return None
    for row in rows:
        raw, scope = row[0], row[3]
        if scope == "00" and not raw.startswith("0000000000000000"):
            addr = ":".join(raw[i:i + 4] for i in range(0, 32, 4))
            if _can_bind_v6(addr):
                return addr
    return None


class LimitsCase(IntegrationCase):

    def start(self, limits=None, timeouts=None):
        self.backend = self.fault_backend("a")
        self.admin_port = free_port()
        over = {"trusted_networks": ["10.255.255.0/24"],
                "admin": {"listen": "%s:%d" % (HOST, self.admin_port)}}
        if limits:
            over["limits"] = limits
        if timeouts:
            over["timeouts"] = timeouts
        self.start_smtplb(base_config(free_port(), [self.backend.address], **over))

    def connect(self, source):
        c = SmtpClient(self.lb.port, source=source)
        self.addCleanup(c.close)
        return c

    def hits(self, limit):
        text = urllib.request.urlopen("http://%s:%d/metrics" % (HOST, self.admin_port),
                                      timeout=10).read().decode()
        key = 'smtplb_limit_hits_total{limit="%s"} ' % limit
        for line in text.splitlines():
            if line.startswith(key):
                return int(line[len(key):])
        self.fail("no %s in /metrics" % key)

    def assertRefusedAtBanner(self, c):
        r = c.reply()
        self.assertReply(r, 421, "4.7.0", "the banner of a refused connection")
        self.assertTrue(c.closed_by_peer(5), "a refused connection is closed")


class ConnectionLimitsTest(LimitsCase):

    def test_connections_per_client_address(self):
        self.start(limits={"max_connections_per_ip": 2})
        a1, a2 = self.connect("127.0.0.2"), self.connect("127.0.0.2")
        a1.banner()
        a2.banner()
        self.assertRefusedAtBanner(self.connect("127.0.0.2"))
        self.connect("127.0.0.3").banner()  # another client is not affected
        a1.cmd("QUIT")
        # Once one closes, that client may connect again.

        def third_accepted():
            c = SmtpClient(self.lb.port, source="127.0.0.2")
            try:
                return c.reply().code == 220
            finally:
                c.close()

        wait_for(third_accepted, 10, "a connection after one of the two closed")
        self.assertEqual(self.hits("connections_per_ip"), 1)

    def test_ipv6_clients_are_counted_by_prefix(self):
        # Issue 14: an IPv6 client counts by its /64 (limits.ipv6_prefix),
        # an IPv4 one (IPv4-mapped on a [::] listener) by its address.
        # Only ::1 is loopback in IPv6, so two hosts of one /64 cannot be
        # had here: the sharing itself is unit-tested (client_key_test);
        # this is the IPv6 path end to end, plus another /64 when the
        # machine has a global IPv6 address to connect from.
        if not socket.has_ipv6 or not _can_bind_v6("::1"):
            self.skipTest("no IPv6 loopback")
        self.backend = self.fault_backend("a")
        self.admin_port = free_port()
        port = free_port()
        cfg = base_config(port, [self.backend.address], trusted_networks=["10.255.255.0/24"],
                          limits={"max_connections_per_ip": 2},
                          admin={"listen": "%s:%d" % (HOST, self.admin_port)})
        cfg["listeners"][0]["listen"] = "[::]:%d" % port  # IPv4 too (bindv6only=0)
        self.start_smtplb(cfg)

        def v6(source=None):
            c = SmtpClient(port, host="::1", source=source)
            self.addCleanup(c.close)
            return c

        v6().banner()
        v6().banner()
        self.assertRefusedAtBanner(v6())
        self.connect("127.0.0.2").banner()  # IPv4 is counted apart, by address
        self.connect("127.0.0.2").banner()
        self.assertRefusedAtBanner(self.connect("127.0.0.2"))
        # The refusal names the client as the logs name it everywhere else,
        # not in the dual-stack socket's ::ffff: form.
        self.lb.wait_log(r"event=connection_refused .*client=127\.0\.0\.2 ")
        self.lb.wait_log(r"event=connection_refused .*client=::1 ")
        self.assertNotIn("::ffff:", self.lb.log_text())
        self.connect("127.0.0.3").banner()
        other = _global_v6()
        if other:
            v6(source=other).banner()  # another /64
        self.assertEqual(self.hits("connections_per_ip"), 2)

    def test_connections_in_total(self):
        self.start(limits={"max_connections": 3})
        for i in range(3):
            self.connect("127.0.0.%d" % (10 + i)).banner()
        self.assertRefusedAtBanner(self.connect("127.0.0.20"))
        self.assertEqual(self.hits("connections"), 1)

    def test_new_connections_per_client_per_minute(self):
        self.start(limits={"max_connection_rate_per_ip": "3/m"})
        for _ in range(3):
            c = self.connect("127.0.0.4")
            c.banner()
            c.cmd("QUIT")
        self.assertRefusedAtBanner(self.connect("127.0.0.4"))
        self.connect("127.0.0.5").banner()
        self.assertEqual(self.hits("connection_rate_per_ip"), 1)

    def test_messages_per_client_per_minute(self):
        self.start(limits={"max_message_rate_per_ip": "2/m"})
        c = self.connect("127.0.0.6")
        c.banner()
        c.ehlo()
        for i in range(2):
            content = message("rate-%d" % i)
            self.assertReply(c.transaction(SENDER, [RCPT], content)[-1], 250)
        self.assertReply(c.cmd("MAIL FROM:<%s>" % SENDER), 451, "4.7.1")
        other = self.connect("127.0.0.7")
        other.banner()
        other.ehlo()
        self.assertReply(other.cmd("MAIL FROM:<%s>" % SENDER), 250)
        self.assertEqual(self.hits("message_rate_per_ip"), 1)


class SlowClientsTest(LimitsCase):

    def dribble(self, c, data, interval, until_closed_within):
        """Sends `data` one octet every `interval` s until smtplb closes the
        connection; returns the seconds that took."""
        t0 = time.monotonic()
        for i in range(len(data)):
            try:
                c.send(data[i:i + 1])
            except OSError:
                break
            if c.closed_by_peer(interval):
                break
            if time.monotonic() - t0 > until_closed_within:
                self.fail("still open after %.1fs of dribbling" % until_closed_within)
        return time.monotonic() - t0

    def test_a_command_dribbled_byte_by_byte_is_cut_at_client_command(self):
        self.start(timeouts={"client_command": "2s"})
        c = self.connect("127.0.0.8")
        c.banner()
        took = self.dribble(c, b"EHLO " + b"a" * 200 + b"\r\n", 0.3, 8)
        self.assertIn(b"421 4.4.2", c.buf, c.buf)
        self.assertLess(took, 4, "the whole line is bounded, not each read")
        self.assertEqual(self.hits("command_time"), 1)

    def test_a_data_phase_dribbled_byte_by_byte_is_cut_at_client_data_total(self):
        self.start(timeouts={"client_data_total": "2s"})
        c = self.connect("127.0.0.9")
        c.banner()
        c.ehlo()
        self.assertReply(c.cmd("MAIL FROM:<%s>" % SENDER), 250)
        self.assertReply(c.cmd("RCPT TO:<%s>" % RCPT), 250)
        self.assertReply(c.cmd("DATA"), 354)
        took = self.dribble(c, b"Subject: slow\r\n\r\n" + b"x" * 200, 0.3, 8)
        self.assertIn(b"421 4.4.2", c.buf, c.buf)
        self.assertLess(took, 4)
        self.assertNothingStored()
        self.assertEqual(self.hits("data_time"), 1)

    def test_a_busy_session_ends_at_client_session(self):
        self.start(timeouts={"client_session": "2s"})
        c = self.connect("127.0.0.11")
        c.banner()
        t0 = time.monotonic()
        while time.monotonic() - t0 < 6:
            c.send(b"NOOP\r\n")
            r = c.reply()
            if r.code == 421:
                break
        self.assertReply(r, 421, "4.4.2", "NOOPs past client_session")
        self.assertLess(time.monotonic() - t0, 4)
        self.assertEqual(self.hits("session_time"), 1)


class StarvationTest(LimitsCase):

    def test_a_client_that_pipelines_and_never_reads_is_not_buffered(self):
        self.start()
        c = self.connect("127.0.0.12")
        c.banner()
        c.sock.setblocking(False)
        rss_before = rss_kb(self.lb.proc.pid)
        sent = 0
        chunk = b"NOOP\r\n" * 10000
        deadline = time.monotonic() + 10
        stalled_since = None
        # Write until smtplb stops reading (our writes stop going through
        # for a while): its replies fill our receive buffer, then its send
        # buffer, and it must stop reading rather than queue replies.
        while time.monotonic() < deadline:
            try:
                sent += c.sock.send(chunk)
                stalled_since = None
            except BlockingIOError:
                stalled_since = stalled_since or time.monotonic()
                if time.monotonic() - stalled_since > 1:
                    break
                time.sleep(0.01)
        self.assertIsNotNone(stalled_since, "smtplb kept reading %d octets without end" % sent)
        grown = rss_kb(self.lb.proc.pid) - rss_before
        # ASan keeps freed blocks in quarantine: its RSS grows with churn.
        bound = (128 if SANITIZED else 16) * 1024
        self.assertLess(grown, bound, "smtplb grew %d KB for a client that never reads "
                        "(it sent %d octets)" % (grown, sent))
        # Others are served meanwhile.
        other = self.connect("127.0.0.13")
        other.banner()
        other.ehlo()
        content = message("not-starved-1")
        self.assertReply(other.transaction(SENDER, [RCPT], content)[-1], 250)

    def test_ten_thousand_idle_clients_do_not_starve_a_real_one(self):
        import resource
        n = 10000
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if hard != resource.RLIM_INFINITY and hard < n + 512:
            self.skipTest("descriptor hard limit %d is below %d" % (hard, n + 512))
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        self.addCleanup(resource.setrlimit, resource.RLIMIT_NOFILE, (soft, hard))
        self.start(limits={"max_connections": n + 100, "max_connections_per_ip": 50})
        idle = []
        rss_before = rss_kb(self.lb.proc.pid)
        try:
            for i in range(n):
                # 40 connections per client address, under the per-IP limit.
                src = "127.%d.%d.%d" % (1 + i // 10000, (i // 40) // 250, 1 + (i // 40) % 250)
                s = socket.create_connection((HOST, self.lb.port), timeout=10,
                                             source_address=(src, 0))
                idle.append(s)
            # Every one got its banner: none was refused.
            for s in idle:
                self.assertTrue(s.recv(512).startswith(b"220 "))
            rss_after = rss_kb(self.lb.proc.pid)
            t0 = time.monotonic()
            real = self.connect("127.200.0.1")
            real.banner()
            real.ehlo()
            content = message("among-idle")
            self.assertReply(real.transaction(SENDER, [RCPT], content)[-1], 250)
            took = time.monotonic() - t0
            self.assertLess(took, 2, "a real client took %.2fs among %d idle ones" % (took, n))
            per_conn = (rss_after - rss_before) * 1024 / n
            # A bound, not the target (bench/ measures that): an idle
            # session must not hold buffers sized for traffic.
            bound = (128 if SANITIZED else 32) * 1024
            self.assertLess(per_conn, bound, "%.0f octets per idle connection" % per_conn)
        finally:
            for s in idle:
                s.close()


if __name__ == "__main__":
    unittest.main()
