"""`smtplb check -c FILE` (DESIGN.md "CLI", "smtplb check"): exit 0 and
`configuration OK`, or exit 1 with one `FILE:LINE:COL: message` line per
error -- 1-based line and column of the key or value at fault, naming it --
and every error found in one run.
"""

import os
import re
import subprocess
import unittest

from harness import SMTPLB_BIN, IntegrationCase, base_config, to_yaml

VALID = """\
hostname: lb.test.example
listeners:
  - name: mx
    listen: 127.0.0.1:2525
    role: inbound
  - name: submission
    listen: 127.0.0.1:2587
    role: submission
local_domains: [example.com, .example.org]
trusted_networks: [127.0.0.0/8, "::1/128"]
pools:
  - name: inbound
    algorithm: weighted_round_robin
    backends:
      - address: 127.0.0.1:2601
        weight: 2
      - address: 127.0.0.1:2602
  - name: outbound
    algorithm: round_robin
    retries: 1
    backends:
      - address: 127.0.0.1:2603
routes:
  - { pool: inbound, listener: mx }
  - { pool: inbound, recipient_domain: [example.com, example.org] }
  - { pool: outbound }
limits:
  max_message_size: 25MB
  max_recipients: 100
  bare_line_endings: normalize
timeouts:
  client_command: 5m
  backend_reply: 500ms
  backend_data_done: 15s
"""

# Each error is marked by the text it must point at: (marker, occurrence,
# words the message must contain).  Line and column are where the marker is.
BROKEN = """\
hostname: lb.test.example
bogus_key: 1
listeners:
  - name: mx
    listen: 127.0.0.1:2525
    role: inbound
  - name: mx
    listen: 127.0.0.1:2526
    role: inbound
  - name: lonely
    listen: 127.0.0.1:2587
    role: submission
local_domains: [example.com]
trusted_networks: [127.0.0.0/8, 10.0.0.0/33]
pools:
  - name: main
    algorithm: round_robin
    colour: blue
    backends:
      - address: 127.0.0.1:notaport
  - name: main
    backends:
      - address: 127.0.0.1:2601
routes:
  - pool: main
    listener: mx
  - pool: nosuchpool
    listener: mx
limits:
  max_message_size: huge
timeouts:
  backend_reply: 10 parsecs
"""

EXPECTED_ERRORS = [
    ("bogus_key", 1, ["bogus_key"]),                  # unknown key
    ("mx", 2, ["mx", "duplicate"]),                   # duplicate listener name
    ("lonely", 1, ["lonely"]),                        # listener served by no route
    ("10.0.0.0/33", 1, ["10.0.0.0/33"]),              # bad CIDR
    ("colour", 1, ["colour"]),                        # unknown key in a pool
    ("127.0.0.1:notaport", 1, ["127.0.0.1:notaport"]),  # bad address
    ("main", 2, ["main", "duplicate"]),               # duplicate pool name
    ("nosuchpool", 1, ["nosuchpool"]),                # route naming an unknown pool
    ("huge", 1, ["huge"]),                            # bad size
    ("10 parsecs", 1, ["10 parsecs"]),                # bad duration
]


def position(text, marker, occurrence):
    """1-based (line, column) of the n-th occurrence of `marker` as a word."""
    seen = 0
    for ln, line in enumerate(text.splitlines(), 1):
        for m in re.finditer(r"(?<![\w.:/])%s(?![\w./])" % re.escape(marker), line):
            seen += 1
            if seen == occurrence:
                return ln, m.start() + 1
    raise AssertionError("marker %r #%d not in the config" % (marker, occurrence))


class Check(IntegrationCase):

    def check(self, text, name="smtplb.yaml"):
        path = os.path.join(self.workdir, name)
        with open(path, "w") as f:
            f.write(text)
        p = subprocess.run([SMTPLB_BIN, "check", "-c", path], stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, timeout=30)
        return path, p.returncode, p.stdout.decode(), p.stderr.decode()

    def test_valid_config_ok(self):
        _, rc, out, err = self.check(VALID)
        self.assertEqual(rc, 0, "check refused a valid config:\n" + out + err)
        self.assertIn("configuration OK", out)

    def test_generated_test_config_ok(self):
        # The configuration every other integration test runs with.
        _, rc, out, err = self.check(to_yaml(base_config(2525, ["127.0.0.1:2601"])) + "\n")
        self.assertEqual(rc, 0, out + err)
        self.assertIn("configuration OK", out)

    def test_every_error_reported_with_file_line_column(self):
        path, rc, out, err = self.check(BROKEN)
        self.assertEqual(rc, 1, "exit status for a broken config")
        rx = re.compile(r"^(.*):(\d+):(\d+): (.*)$")
        got = {}
        for line in (out + err).splitlines():
            m = rx.match(line)
            if m:
                self.assertEqual(m.group(1), path, "error names the wrong file: %r" % line)
                got.setdefault((int(m.group(2)), int(m.group(3))), []).append(m.group(4))
        want = {}
        for marker, occurrence, words in EXPECTED_ERRORS:
            want[position(BROKEN, marker, occurrence)] = (marker, words)
        for pos, (marker, words) in want.items():
            with self.subTest(error=marker):
                self.assertIn(pos, got, "no error at %d:%d for %r; got:\n%s"
                              % (pos[0], pos[1], marker, out + err))
                msg = " ".join(got[pos])
                for w in words:
                    self.assertIn(w.lower(), msg.lower(), "error at %d:%d does not name %r: %r"
                                  % (pos[0], pos[1], w, msg))
        # No error on a line that has no fault (a second error about the same
        # faulty line is checked by test_bad_backend_address_is_one_error).
        fault_lines = {p[0] for p in want}
        unexpected = {p: m for p, m in got.items() if p[0] not in fault_lines}
        self.assertEqual(unexpected, {}, "errors on lines without a fault")

    def test_bad_address_is_one_error(self):
        # One fault, one error line: a backend or listener whose address is
        # malformed does have an `address` / `listen`.
        for old, bad in (("address: 127.0.0.1:2603", "127.0.0.1:notaport"),
                         ("listen: 127.0.0.1:2587", "127.0.0.1:99999")):
            with self.subTest(value=bad):
                text = VALID.replace(old, old.split(":")[0] + ": " + bad)
                path, rc, out, err = self.check(text)
                self.assertEqual(rc, 1)
                lines = [l for l in (out + err).splitlines() if l.startswith(path + ":")]
                line, col = position(text, bad, 1)
                self.assertTrue(any(l.startswith("%s:%d:%d: " % (path, line, col)) and bad in l
                                    for l in lines), lines)
                self.assertEqual(len(lines), 1, "one bad address, errors: %r" % lines)

    def test_single_unknown_key_position(self):
        text = VALID.replace("  max_recipients: 100\n", "  max_recipients: 100\n  max_bogus: 3\n")
        path, rc, out, err = self.check(text)
        self.assertEqual(rc, 1)
        line, col = position(text, "max_bogus", 1)
        self.assertRegex(out + err, r"(?m)^%s:%d:%d: .*max_bogus" % (re.escape(path), line, col))

    def test_max_line_length_accepted_and_checked(self):
        # Issue 21: limits.max_line_length is a size, 0 or none; never
        # under RFC 5321's 1000 octets.
        for value in ("10KB", "1000", "0", "none"):
            with self.subTest(value=value):
                text = VALID.replace("  max_recipients: 100\n",
                                     "  max_recipients: 100\n  max_line_length: %s\n" % value)
                _, rc, out, err = self.check(text)
                self.assertEqual(rc, 0, out + err)
                self.assertIn("configuration OK", out)
        for value in ("999", "long"):
            with self.subTest(value=value):
                text = VALID.replace("  max_recipients: 100\n",
                                     "  max_recipients: 100\n  max_line_length: %s\n" % value)
                path, rc, out, err = self.check(text)
                self.assertEqual(rc, 1)
                line, col = position(text, value, 1)
                self.assertRegex(out + err, r"(?m)^%s:%d:%d: max_line_length: .*%s"
                                 % (re.escape(path), line, col, value))

    def test_ipv6_prefix_accepted_and_checked(self):
        # Issue 14: limits.ipv6_prefix, 1..128 (64 by default).
        for value in ("64", "48", "128", "1"):
            with self.subTest(value=value):
                text = VALID.replace("  max_recipients: 100\n",
                                     "  max_recipients: 100\n  ipv6_prefix: %s\n" % value)
                _, rc, out, err = self.check(text)
                self.assertEqual(rc, 0, out + err)
        for value in ("0", "129", "/64"):
            with self.subTest(value=value):
                text = VALID.replace("  max_recipients: 100\n",
                                     "  max_recipients: 100\n  ipv6_prefix: %s\n" % value)
                path, rc, out, err = self.check(text)
                self.assertEqual(rc, 1)
                line, col = position(text, value, 1)
                self.assertRegex(out + err, r"(?m)^%s:%d:%d: limits\.ipv6_prefix"
                                 % (re.escape(path), line, col))

    def test_unusable_temp_directory_is_refused_with_its_key(self):
        # Issue 14: a temp_directory where no spill file can be made would
        # turn every message over limits.replay_memory into 451 4.3.0.
        missing = os.path.join(self.workdir, "gone")
        a_file = os.path.join(self.workdir, "a-file")
        with open(a_file, "w") as f:
            f.write("not a directory\n")
        for value, why in ((missing, "No such file or directory"), (a_file, "not a directory")):
            with self.subTest(value=value):
                text = VALID + "temp_directory: %s\n" % value
                path, rc, out, err = self.check(text)
                self.assertEqual(rc, 1, out + err)
                line, col = position(text, value, 1)
                self.assertRegex(out + err, r"(?m)^%s:%d:%d: temp_directory: .*%s"
                                 % (re.escape(path), line, col, re.escape(why)))
        _, rc, out, err = self.check(VALID + "temp_directory: %s\n" % self.workdir)
        self.assertEqual(rc, 0, out + err)

    def test_admin_off_loopback_needs_a_token_file(self):
        # Issue 14, SECURITY.md 10: an admin API anyone on the network can
        # reach, without a token, could drain every backend.
        token = os.path.join(self.workdir, "admin.token")
        with open(token, "w") as f:
            f.write("secret\n")
        for listen in ("0.0.0.0:8025", '"[::]:8025"', "192.0.2.1:8025"):
            with self.subTest(listen=listen):
                text = VALID + "admin:\n  listen: %s\n" % listen
                path, rc, out, err = self.check(text)
                self.assertEqual(rc, 1, out + err)
                line = text.splitlines().index("  listen: %s" % listen) + 1
                self.assertRegex(out + err, r"(?m)^%s:%d:11: admin\.listen: .*admin\.token_file"
                                 % (re.escape(path), line))
            with self.subTest(listen=listen, token=True):
                text = VALID + "admin:\n  listen: %s\n  token_file: %s\n" % (listen, token)
                _, rc, out, err = self.check(text)
                self.assertEqual(rc, 0, out + err)
        for listen in ("127.0.0.1:8025", '"[::1]:8025"'):
            with self.subTest(listen=listen):
                _, rc, out, err = self.check(VALID + "admin:\n  listen: %s\n" % listen)
                self.assertEqual(rc, 0, out + err)


if __name__ == "__main__":
    unittest.main()


class EdgeExampleTest(IntegrationCase):
    """examples/edge.yaml, the README's Internet-edge configuration, is
    valid once its files exist (they are made here; the paths are the
    only change)."""

    def test_edge_example_checks_ok(self):
        import tls_certs
        reason = tls_certs.skip_reason()
        if reason:
            self.skipTest(reason)
        certs = tls_certs.make_certs(os.path.join(self.workdir, "certs"))
        passwd = tls_certs.make_passwd(os.path.join(self.workdir, "passwd"), {"alice": "pw"})
        token = os.path.join(self.workdir, "admin.token")
        with open(token, "w") as f:
            f.write("secret\n")
        repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        with open(os.path.join(repo, "examples", "edge.yaml")) as f:
            text = f.read()
        for old, new in (("/etc/smtplb/tls/fullchain.pem", certs.server_chain),
                         ("/etc/smtplb/tls/privkey.pem", certs.server_key),
                         ("/etc/smtplb/tls/internal-ca.pem", certs.ca_cert),
                         ("/etc/smtplb/passwd", passwd),
                         ("/etc/smtplb/admin.token", token)):
            self.assertIn(old, text)
            text = text.replace(old, new)
        path = os.path.join(self.workdir, "edge.yaml")
        with open(path, "w") as f:
            f.write(text)
        p = subprocess.run([SMTPLB_BIN, "check", "-c", path], capture_output=True, text=True)
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        self.assertIn("configuration OK", p.stdout + p.stderr)
