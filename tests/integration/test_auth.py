"""AUTH PLAIN and LOGIN (issue 6, item 2; RFC 4954; SECURITY.md 6).

A submission listener with STARTTLS and a password file of crypt(3)
hashes.  Covered: AUTH neither offered nor taken before TLS (538 5.7.11),
PLAIN and LOGIN (with and without an initial response) with Python's
smtplib and by hand, relaying after AUTH (ESMTPSA in Received:, user= in
the log), the malformed cases with their codes (bad base64, `=AAA`, `*`,
a 12289-octet response, on a continuation line and on the AUTH line
itself, an initial response of some 1,000 octets that authenticates and
one of 3,000 that is judged as credentials (issue 14), PLAIN without two
NULs, authzid != authcid, an unknown mechanism, AUTH before EHLO, AUTH twice), the throttle (no delay
for the first failures, a growing delay, then 421 4.7.0 and a refusal
that a second client address does not share), 40 wrong passwords sent in
parallel from one address (at most max_failures of them checked, issue
14), the metrics, a slow hash that does not stall other sessions, and
the password file read again at SIGHUP.
"""

import base64
import ctypes
import ctypes.util
import os
import signal
import smtplib
import threading
import time
import unittest
import urllib.request

from harness import (HOST, SHUTDOWN_S, IntegrationCase, SmtpClient, base_config, free_port,
                     message, split_received, to_yaml, wait_for)
import tls_certs

SENDER = "alice@example.org"
OUTSIDE = "someone@elsewhere.test"


def b64(s):
    return base64.b64encode(s.encode() if isinstance(s, str) else s).decode()


def bcrypt_hash(password, cost):
    """A $2b$ hash of the given cost, through libxcrypt (None if missing)."""
    name = ctypes.util.find_library("crypt")
    if not name:
        return None
    lib = ctypes.CDLL(name)
    lib.crypt_gensalt.restype = ctypes.c_char_p
    lib.crypt_gensalt.argtypes = [ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p, ctypes.c_int]
    lib.crypt.restype = ctypes.c_char_p
    lib.crypt.argtypes = [ctypes.c_char_p, ctypes.c_char_p]
    salt = lib.crypt_gensalt(b"$2b$", cost, None, 0)
    if not salt:
        return None
    h = lib.crypt(password.encode(), salt)
    return h.decode() if h and h.startswith(b"$2b$") else None


class AuthCase(IntegrationCase):

    def start(self, users=None, auth_over=None, admin=False):
        reason = tls_certs.skip_reason()
        if reason:
            self.skipTest(reason)
        self.certs = tls_certs.make_certs(os.path.join(self.workdir, "certs"))
        self.passwd = os.path.join(self.workdir, "passwd")
        self.users = users or {"alice": "correct horse", "bob": "battery staple"}
        tls_certs.make_passwd(self.passwd, self.users)
        self.backend = self.fault_backend("a")
        over = {"trusted_networks": ["10.255.255.0/24"]}
        if admin:
            self.admin_port = free_port()
            over["admin"] = {"listen": "%s:%d" % (HOST, self.admin_port)}
        cfg = base_config(free_port(), [self.backend.address], **over)
        cfg["listeners"][0].update({
            "name": "submission", "role": "submission",
            "tls": {"certificate": self.certs.server_cert, "key": self.certs.server_key}})
        cfg["auth"] = dict({"passwd_file": self.passwd}, **(auth_over or {}))
        self.cfg = cfg
        self.start_smtplb(cfg)

    def tls_session(self, source=None):
        c = SmtpClient(self.lb.port, source=source)
        self.addCleanup(c.close)
        c.banner()
        c.ehlo()
        c.starttls(self.certs.client_context())
        return c

    def ehlo_keywords(self, c):
        r = c.ehlo()
        return [line[4:] for line in r.lines[1:]]


class AuthTest(AuthCase):

    def test_auth_is_neither_offered_nor_taken_before_tls(self):
        self.start()
        c = SmtpClient(self.lb.port)
        self.addCleanup(c.close)
        c.banner()
        self.assertFalse([k for k in self.ehlo_keywords(c) if k.startswith("AUTH")])
        self.assertReply(c.cmd("AUTH PLAIN " + b64("\0alice\0correct horse")), 538, "5.7.11")
        self.assertReply(c.cmd("MAIL FROM:<%s>" % SENDER), 530, "5.7.0",
                         "submission without AUTH")

    def test_plain_with_smtplib_then_relay(self):
        self.start()
        s = smtplib.SMTP(HOST, self.lb.port, timeout=15)
        self.addCleanup(s.close)
        s.ehlo("client.test.example")
        s.starttls(context=self.certs.client_context())
        s.ehlo("client.test.example")
        self.assertIn("PLAIN", s.esmtp_features.get("auth", "").upper())
        self.assertIn("LOGIN", s.esmtp_features.get("auth", "").upper())
        code, _ = s.login("alice", "correct horse")
        self.assertEqual(code, 235)
        content = message("auth-plain")
        s.sendmail(SENDER, [OUTSIDE], content)
        s.quit()
        _, m = self.assertDeliveredOnce("auth-plain", content, at=self.backend)
        received = split_received(m["eml"])[0].replace(b"\r\n\t", b" ")
        self.assertIn(b"with ESMTPSA", received)
        tx = self.lb.transactions()
        self.assertEqual(tx[-1].get("user"), "alice", tx)
        self.lb.wait_log(r"event=auth .*user=alice mechanism=PLAIN")

    def test_login_by_hand_with_and_without_an_initial_response(self):
        self.start()
        c = self.tls_session()
        c.ehlo()
        r = c.cmd("AUTH LOGIN")
        self.assertReply(r, 334)
        self.assertEqual(base64.b64decode(r.lines[0][4:]), b"Username:")
        r = c.cmd(b64("bob"))
        self.assertReply(r, 334)
        self.assertEqual(base64.b64decode(r.lines[0][4:]), b"Password:")
        self.assertReply(c.cmd(b64("battery staple")), 235, "2.7.0")
        self.assertReply(c.cmd("AUTH PLAIN " + b64("\0bob\0battery staple")), 503, "5.5.1",
                         "AUTH twice")
        c2 = self.tls_session()
        c2.ehlo()
        self.assertReply(c2.cmd("AUTH LOGIN " + b64("bob")), 334)
        self.assertReply(c2.cmd(b64("battery staple")), 235)
        c3 = self.tls_session()
        c3.ehlo()
        self.assertReply(c3.cmd("AUTH PLAIN"), 334)
        self.assertReply(c3.cmd(b64("bob\0bob\0battery staple")), 235, what="authzid = authcid")

    def test_malformed_exchanges_get_their_codes_and_never_authenticate(self):
        self.start()
        c = self.tls_session()
        self.assertReply(c.cmd("AUTH PLAIN " + b64("\0alice\0correct horse")), 503, "5.5.1",
                         "AUTH before EHLO (after TLS)")
        c.ehlo()
        cases = [
            ("AUTH PLAIN %%%%", 501, "5.5.2"),
            ("AUTH PLAIN =AAA", 501, "5.5.2"),
            ("AUTH CRAM-MD5", 504, "5.5.4"),
            ("AUTH PLAIN " + b64("alice\0correct horse"), 535, "5.7.8"),  # one NUL
            ("AUTH PLAIN " + b64("bob\0alice\0correct horse"), 535, "5.7.8"),  # authzid != authcid
        ]
        for line, code, enhanced in cases:
            self.assertReply(c.cmd(line), code, enhanced, line)
        self.assertReply(c.cmd("AUTH LOGIN"), 334)
        self.assertReply(c.cmd("*"), 501, "5.7.0", "cancelled")
        self.assertReply(c.cmd("AUTH PLAIN"), 334)
        self.assertReply(c.cmd("A" * 12292), 500, "5.5.6", "a response over 12288 octets")
        # None of it authenticated: MAIL still needs AUTH.
        self.assertReply(c.cmd("MAIL FROM:<%s>" % SENDER), 530, "5.7.0")
        self.assertFalse(self.lb.log_lines("auth"), "no successful AUTH was logged")

    def test_an_initial_response_may_be_as_long_as_rfc_4954_allows(self):
        # Issue 14: RFC 4954 4 allows 12288 octets of response on the AUTH
        # line itself, where smtplb stopped at 512.  The longest credentials
        # smtplb takes (a 256-octet user name, which the authzid repeats, and
        # a password under crypt(3)'s 512) encode to about 1,400 octets; a
        # 250-octet password is as long as `openssl passwd` hashes whole.
        user, password = "u" * 250, "p" * 250
        self.start(users={"alice": "correct horse", user: password})
        c = self.tls_session()
        c.ehlo()
        long_plain = b64("%s\0%s\0%s" % (user, user, password))
        self.assertGreater(len(long_plain), 1000)
        self.assertReply(c.cmd("AUTH PLAIN " + long_plain), 235, "2.7.0",
                         "a %d-octet initial response" % len(long_plain))
        self.assertReply(c.cmd("MAIL FROM:<%s>" % SENDER), 250, what="authenticated")
        self.lb.wait_log(r"event=auth .*user=u{250} mechanism=PLAIN")

        c = self.tls_session()
        c.ehlo()
        # ~3,000 octets that decode to credentials over the caps: read
        # whole and judged as credentials (535), not refused as a line.
        too_long_password = b64("alice\0alice\0" + "p" * 2200)
        self.assertGreater(len(too_long_password), 2900)
        self.assertReply(c.cmd("AUTH PLAIN " + too_long_password), 535, "5.7.8",
                         "a password over the cap, on a %d-octet line" % len(too_long_password))
        # 12288 octets of response is a response (no two NULs: 535); one
        # more octet is the line too long, 500 5.5.6, and so is a line far
        # beyond what is read; the session goes on after each.
        self.assertReply(c.cmd("AUTH PLAIN " + "A" * 12288), 535, "5.7.8", "12288 octets")
        self.assertReply(c.cmd("AUTH PLAIN " + "A" * 12289), 500, "5.5.6", "12289 octets")
        self.assertReply(c.cmd("AUTH PLAIN " + "A" * 20000), 500, "5.5.6", "20000 octets")
        self.assertReply(c.cmd("NOOP"), 250, what="after the long lines")
        # Other commands keep their limits.
        self.assertReply(c.cmd("NOOP " + "x" * 600), 500, "5.5.2", "a long NOOP")
        self.assertReply(c.cmd("AUTH PLAIN " + b64("\0alice\0correct horse")), 235, "2.7.0")

    def test_a_password_file_change_is_read_at_sighup(self):
        self.start()
        users = dict(self.users, carol="new password")
        tls_certs.make_passwd(self.passwd, users)
        self.lb.proc.signal(signal.SIGHUP)
        self.lb.wait_log(r"event=reload")

        def carol_logs_in():
            c = self.tls_session()
            c.ehlo()
            return c.cmd("AUTH PLAIN " + b64("\0carol\0new password")).code == 235

        wait_for(carol_logs_in, 10, "carol, added to the password file, to authenticate")


class ThrottleTest(AuthCase):

    def test_exchanges_that_check_no_password_do_not_lock_anyone_out(self):
        # Bad base64, a cancel, an unknown mechanism, an over-long response,
        # a client gone in mid-exchange: none of them checked a password, so
        # none may hold a place in max_failures' budget once it has ended.
        self.start(auth_over={"max_failures": 3})
        c = self.tls_session()
        c.ehlo()
        for i in range(3):  # 7 client errors in all, under max_errors
            self.assertReply(c.cmd("AUTH PLAIN =AAA"), 501, "5.5.2", "bad base64 %d" % i)
            self.assertReply(c.cmd("AUTH CRAM-MD5"), 504, "5.5.4")
            self.assertReply(c.cmd("AUTH LOGIN"), 334)
            self.assertReply(c.cmd("*"), 501, "5.7.0", "cancelled")
            gone = self.tls_session()
            gone.ehlo()
            self.assertReply(gone.cmd("AUTH LOGIN"), 334)
            gone.close()
        self.assertReply(c.cmd("AUTH PLAIN"), 334)
        self.assertReply(c.cmd("A" * 12292), 500, "5.5.6", "a response over 12288 octets")
        self.assertReply(c.cmd("AUTH PLAIN " + b64("\0alice\0correct horse")), 235, "2.7.0",
                         "the right password after exchanges that checked none")

    def test_failures_slow_down_then_lock_out_that_address_only(self):
        self.start(auth_over={"max_failures": 4}, admin=True)
        c = self.tls_session()
        c.ehlo()
        bad = "AUTH PLAIN " + b64("\0alice\0wrong")
        times = []
        for i in range(4):
            t0 = time.monotonic()
            self.assertReply(c.cmd(bad, timeout=30), 535, "5.7.8", "failure %d" % (i + 1))
            times.append(time.monotonic() - t0)
        self.assertLess(times[0], 0.9, times)
        self.assertLess(times[1], 0.9, times)
        self.assertGreaterEqual(times[2], 0.9, "the 3rd failure is delayed: %r" % times)
        self.assertGreater(times[3], times[2], "the delay grows: %r" % times)
        # The 5th attempt, even with the right password: 421 and close.
        self.assertReply(c.cmd("AUTH PLAIN " + b64("\0alice\0correct horse")), 421, "4.7.0")
        self.assertTrue(c.closed_by_peer(5))
        # Another client address is not locked out.
        other = self.tls_session(source="127.0.0.2")
        other.ehlo()
        self.assertReply(other.cmd("AUTH PLAIN " + b64("\0alice\0correct horse")), 235)
        text = urllib.request.urlopen("http://%s:%d/metrics" % (HOST, self.admin_port),
                                      timeout=10).read().decode()
        self.assertIn('smtplb_auth_attempts_total{result="failed"} 4', text)
        self.assertIn('smtplb_auth_attempts_total{result="locked_out"} 1', text)
        self.assertIn('smtplb_auth_attempts_total{result="accepted"} 1', text)

    def test_parallel_guesses_do_not_outrun_the_count(self):
        # Issue 14: 40 connections from one address, each with one wrong
        # password sent at the same moment.  Attempts in progress count, so
        # at most max_failures of them are checked (535) and the rest get
        # 421 4.7.0 (or 454 when the verifier is full) -- not 40 checks.
        n, max_failures = 40, 10
        self.start(auth_over={"max_failures": max_failures, "delay_after": max_failures},
                   admin=True)
        clients = []
        for _ in range(n):
            c = self.tls_session(source="127.0.0.5")
            c.ehlo()
            clients.append(c)
        bad = "AUTH PLAIN " + b64("\0alice\0wrong")
        barrier = threading.Barrier(n)
        replies = [None] * n

        def guess(i):
            barrier.wait(30)
            try:
                replies[i] = clients[i].cmd(bad, timeout=60)
            except Exception as e:  # noqa: BLE001 -- reported below
                replies[i] = e

        threads = [threading.Thread(target=guess, args=(i,)) for i in range(n)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(90)
        codes = sorted(getattr(r, "code", repr(r)) for r in replies)
        for r in replies:
            self.assertIn(getattr(r, "code", None), (535, 421, 454), codes)
            if r.code == 421:
                self.assertReply(r, 421, "4.7.0")
        checked = codes.count(535)
        self.assertGreaterEqual(checked, 1, codes)
        self.assertLessEqual(checked, max_failures, "guesses checked: %r" % codes)
        self.assertGreaterEqual(codes.count(421), n - max_failures - codes.count(454), codes)
        for c, r in zip(clients, replies):
            if r.code == 421:
                self.assertTrue(c.closed_by_peer(5), "a 421 closes the connection")
        text = urllib.request.urlopen("http://%s:%d/metrics" % (HOST, self.admin_port),
                                      timeout=10).read().decode()
        self.assertIn('smtplb_auth_attempts_total{result="failed"} %d' % checked, text)
        self.assertIn('smtplb_auth_attempts_total{result="locked_out"} %d' % codes.count(421),
                      text)
        if checked == max_failures:
            # The count is full: even the right password is refused now.
            c = self.tls_session(source="127.0.0.5")
            c.ehlo()
            self.assertReply(c.cmd("AUTH PLAIN " + b64("\0alice\0correct horse")), 421, "4.7.0")
        # Another address is not affected.
        other = self.tls_session(source="127.0.0.6")
        other.ehlo()
        self.assertReply(other.cmd("AUTH PLAIN " + b64("\0alice\0correct horse")), 235)

    def test_a_slow_hash_does_not_stall_other_sessions(self):
        slow = bcrypt_hash("slow secret", 13)
        if not slow:
            self.skipTest("libxcrypt without bcrypt")
        self.start()
        with open(self.passwd, "a") as f:
            f.write("slow:%s\n" % slow)
        self.lb.proc.signal(signal.SIGHUP)
        self.lb.wait_log(r"event=reload")
        c = self.tls_session()
        c.ehlo()
        c.send("AUTH PLAIN %s\r\n" % b64("\0slow\0slow secret"))
        # While that hash runs (about half a second at cost 13), another
        # session is answered at once.
        other = SmtpClient(self.lb.port)
        self.addCleanup(other.close)
        t0 = time.monotonic()
        other.banner()
        other.ehlo()
        other.cmd("NOOP")
        quick = time.monotonic() - t0
        t1 = time.monotonic()
        self.assertReply(c.reply(timeout=30), 235, "2.7.0")
        slow_wait = time.monotonic() - t1 + quick
        self.assertLess(quick, 0.2, "another session waited %.3fs behind a hash" % quick)
        self.assertGreater(slow_wait, quick, "the hash took longer than the other session's "
                           "three commands (%.3fs vs %.3fs)" % (slow_wait, quick))


class ShutdownTest(AuthCase):

    def test_sigterm_gives_every_session_its_421(self):
        # Issue 21 item 11, RFC 5321 3.8: at SIGTERM every session gets 421
        # 4.3.2 before the close, wherever it is -- at once when it waits
        # between transactions (inside a SASL exchange too), after
        # timeouts.shutdown when a transaction is open.  A TLS handshake in
        # progress is the one exception: no SMTP reply can be written
        # before it completes, so it is closed (at timeouts.shutdown).
        self.start()
        s = {}
        s["after banner"] = SmtpClient(self.lb.port)
        s["after banner"].banner()
        s["after EHLO"] = SmtpClient(self.lb.port)
        s["after EHLO"].banner()
        s["after EHLO"].ehlo()
        s["after EHLO under TLS"] = self.tls_session()
        s["after EHLO under TLS"].ehlo()
        c = s["AUTH LOGIN, at the 334 for the user name"] = self.tls_session()
        c.ehlo()
        self.assertReply(c.cmd("AUTH LOGIN"), 334)
        c = s["AUTH LOGIN, at the 334 for the password"] = self.tls_session()
        c.ehlo()
        self.assertReply(c.cmd("AUTH LOGIN"), 334)
        self.assertReply(c.cmd(b64("alice")), 334)
        c = s["AUTH PLAIN, at the 334"] = self.tls_session()
        c.ehlo()
        self.assertReply(c.cmd("AUTH PLAIN"), 334)
        for name, steps in (("after MAIL", 1), ("after RCPT", 2), ("in DATA", 3)):
            c = s[name] = self.tls_session()
            c.ehlo()
            self.assertReply(c.cmd("AUTH PLAIN " + b64("\0alice\0correct horse")), 235)
            self.assertReply(c.cmd("MAIL FROM:<%s>" % SENDER), 250)
            if steps >= 2:
                self.assertReply(c.cmd("RCPT TO:<%s>" % OUTSIDE), 250)
            if steps >= 3:
                self.assertReply(c.cmd("DATA"), 354)
                c.send(message("sigterm-in-data")[:40])
        handshake = SmtpClient(self.lb.port)
        self.addCleanup(handshake.close)
        handshake.banner()
        handshake.ehlo()
        self.assertReply(handshake.cmd("STARTTLS"), 220)  # and no ClientHello
        for c in s.values():
            self.addCleanup(c.close)

        self.lb.proc.signal(signal.SIGTERM)
        self.lb.wait_log(r"event=shutdown")
        for name, c in s.items():
            with self.subTest(session=name):
                self.assertReply(c.reply(timeout=SHUTDOWN_S + 5), 421, "4.3.2", name)
                self.assertTrue(c.closed_by_peer(), "%s: not closed after the 421" % name)
                self.assertEqual(c.buf, b"", "%s: bytes after the 421" % name)
        self.assertTrue(handshake.closed_by_peer(SHUTDOWN_S + 5),
                        "a session in its TLS handshake was not closed")
        self.assertEqual(handshake.buf, b"", "plaintext during a TLS handshake")
        self.assertEqual(self.lb.proc.wait(SHUTDOWN_S + 5), 0, "exit status after SIGTERM")
        self.assertNothingStored()


class PasswordFileErrorTest(IntegrationCase):

    def test_a_bad_password_file_is_a_config_error_with_its_line_and_column(self):
        from harness import SMTPLB_BIN
        import subprocess
        reason = tls_certs.skip_reason()
        if reason:
            self.skipTest(reason)
        certs = tls_certs.make_certs(os.path.join(self.workdir, "certs"))
        passwd = os.path.join(self.workdir, "passwd")
        with open(passwd, "w") as f:
            f.write("# users\nalice:$6$abc$def\nbob plaintext\n")
        cfg = base_config(free_port(), ["127.0.0.1:9"])
        cfg["listeners"][0]["tls"] = {"certificate": certs.server_cert, "key": certs.server_key}
        cfg["auth"] = {"passwd_file": passwd}
        path = os.path.join(self.workdir, "c.yaml")
        with open(path, "w") as f:
            f.write(to_yaml(cfg) + "\n")
        p = subprocess.run([SMTPLB_BIN, "check", "-c", path], capture_output=True, text=True)
        self.assertEqual(p.returncode, 1, p.stdout + p.stderr)
        out = p.stdout + p.stderr
        self.assertRegex(out, r"%s:2:\d+: " % passwd, out)
        self.assertRegex(out, r"%s:3:\d+: " % passwd, out)


if __name__ == "__main__":
    unittest.main()
