"""The test peers on their own, without smtplb: tls_certs.py (certificates,
password files), fault_backend.py's STARTTLS, implicit TLS, starttls_inject,
XCLIENT and PROXY support, and postfix_instance.py (a private Postfix:
XCLIENT, PROXY v1/v2, STARTTLS).  When these fail, the smtplb tests built on
them mean nothing.  The Postfix tests are skipped, with the reason, when not
root or Postfix is missing.
"""

import json
import os
import shutil
import smtplib
import socket
import ssl
import tempfile
import time
import unittest

import fault_backend
from harness import HOST, IntegrationCase, SmtpClient, message, port_accepts, wait_for
from postfix_instance import (PostfixInstance, ProxySMTP, ProxySMTP_SSL, postfix_for,
                              proxy_v1_header, proxy_v2_header, skip_reason)
from tls_certs import check_passwd_hash, crypt_hash, make_certs, make_passwd

DNS_NAME = "mx.test.example"

_certs_dir = None


def shared_certs():
    """One certificate set for this module (made once, removed at exit)."""
    global _certs_dir
    if _certs_dir is None:
        _certs_dir = tempfile.mkdtemp(prefix="smtplb-it-selfcheck-certs-")
    return make_certs(_certs_dir, [DNS_NAME])


def tearDownModule():
    global _certs_dir
    if _certs_dir is not None:
        shutil.rmtree(_certs_dir, ignore_errors=True)
        _certs_dir = None


def send(smtp, test_id, rcpt="rcpt@example.com"):
    smtp.sendmail("sender@example.org", [rcpt], message(test_id, rcpt=rcpt))


class TlsCerts(unittest.TestCase):

    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="smtplb-it-tls-certs-")
        self.addCleanup(shutil.rmtree, self.dir, True)

    def handshake(self, server_ctx, client_ctx, server_hostname):
        """A TLS handshake over a socket pair; the client's exception or None."""
        a, b = socket.socketpair()
        self.addCleanup(a.close)
        self.addCleanup(b.close)
        a.settimeout(10)
        b.settimeout(10)
        import threading
        err = []

        def serve():
            try:
                s = server_ctx.wrap_socket(a, server_side=True)
                s.recv(1)
            except (ssl.SSLError, OSError):
                pass

        t = threading.Thread(target=serve)
        t.start()
        try:
            c = client_ctx.wrap_socket(b, server_hostname=server_hostname)
            c.sendall(b"x")
            c.close()
        except (ssl.SSLError, OSError) as e:
            err.append(e)
            b.close()
        t.join(10)
        return err[0] if err else None

    def test_certificates_verify_as_intended(self):
        c = make_certs(self.dir, [DNS_NAME, "other.test.example"])
        for name in ("localhost", "127.0.0.1", DNS_NAME, "other.test.example"):
            self.assertIsNone(self.handshake(c.server_context(), c.client_context(), name), name)
        e = self.handshake(c.server_context(), c.client_context(), "nope.test.example")
        self.assertIsInstance(e, ssl.SSLCertVerificationError, "a name not in the SANs")
        e = self.handshake(c.server_context(), c.client_context(c.other_ca_cert), DNS_NAME)
        self.assertIsInstance(e, ssl.SSLCertVerificationError, "the unrelated CA")
        e = self.handshake(c.server_context(c.self_signed_cert, c.self_signed_key),
                           c.client_context(), DNS_NAME)
        self.assertIsInstance(e, ssl.SSLCertVerificationError, "the self-signed certificate")
        e = self.handshake(c.server_context(c.wrong_name_cert, c.wrong_name_key),
                           c.client_context(), DNS_NAME)
        self.assertIsInstance(e, ssl.SSLCertVerificationError, "the wrong-name certificate")
        self.assertIn("hostname", str(e).lower())
        # The chain and combined files serve too.
        self.assertIsNone(self.handshake(c.server_context(c.server_chain, c.server_key),
                                         c.client_context(), DNS_NAME))
        self.assertIsNone(self.handshake(c.server_context(c.server_combined, c.server_combined),
                                         c.client_context(), DNS_NAME))

    def test_cached_in_the_directory(self):
        c1 = make_certs(self.dir, DNS_NAME)
        stamp = os.stat(c1.server_cert).st_mtime_ns
        c2 = make_certs(self.dir, [DNS_NAME])
        self.assertEqual(c1, c2)
        self.assertEqual(os.stat(c2.server_cert).st_mtime_ns, stamp, "remade, not reused")
        with open(c1.ca_cert) as f:
            ca = f.read()
        c3 = make_certs(self.dir, ["changed.test.example"])  # other names: remade
        with open(c3.ca_cert) as f:
            self.assertNotEqual(f.read(), ca)
        self.assertIsNone(self.handshake(c3.server_context(), c3.client_context(),
                                         "changed.test.example"))

    def test_password_file(self):
        path = os.path.join(self.dir, "passwd")
        users = {"alice": "s3cret", "bob": "p:ss wörd"}
        for scheme, prefix in (("sha512", "$6$"), ("yescrypt", "$y$")):
            with self.subTest(scheme=scheme):
                make_passwd(path, users, scheme=scheme)
                with open(path) as f:
                    lines = f.read().splitlines()
                self.assertEqual([l.split(":", 1)[0] for l in lines], ["alice", "bob"])
                self.assertEqual(os.stat(path).st_mode & 0o777, 0o600)
                for line, (user, pw) in zip(lines, users.items()):
                    h = line.split(":", 1)[1]
                    self.assertTrue(h.startswith(prefix), h)
                    self.assertIs(check_passwd_hash(pw, h), True)
                    self.assertIs(check_passwd_hash(pw + "x", h), False)
        self.assertTrue(crypt_hash("x", "sha256").startswith("$5$"))
        with self.assertRaises(ValueError):
            make_passwd(path, {"a:b": "x"})


class BackendTls(IntegrationCase):
    """fault_backend.py --tls-cert/--tls-key, --implicit-tls and the TLS faults."""

    def setUp(self):
        super().setUp()
        self.certs = shared_certs()

    def tls_backend(self, name="tls", **faults):
        return self.fault_backend(name, tls_cert=self.certs.server_cert,
                                  tls_key=self.certs.server_key, **faults)

    def test_starttls_then_ehlo_again_and_tls_recorded(self):
        b = self.tls_backend()
        with smtplib.SMTP(HOST, b.port, timeout=10) as s:
            s.ehlo("client.test.example")
            self.assertTrue(s.has_extn("starttls"))
            send(s, "plain-1")  # before TLS
            code, _ = s.starttls(context=self.certs.client_context())
            self.assertEqual(code, 220)
            # RFC 3207 4.2: the session was reset; MAIL needs EHLO first.
            code, _ = s.docmd("MAIL FROM:<sender@example.org>")
            self.assertEqual(code, 503)
            s.ehlo("client.test.example")
            self.assertFalse(s.has_extn("starttls"), "STARTTLS offered again over TLS")
            code, _ = s.docmd("STARTTLS")
            self.assertEqual(code, 503)
            send(s, "tls-1")
        msgs = {m["test_id"]: m for m in b.messages()}
        self.assertIs(msgs["plain-1"]["tls"], False)
        self.assertIsNone(msgs["plain-1"]["tls_version"])
        self.assertIs(msgs["tls-1"]["tls"], True)
        self.assertIn(msgs["tls-1"]["tls_version"], ("TLSv1.2", "TLSv1.3"))
        ev = b.events("tls")
        self.assertEqual(len(ev), 1)
        self.assertIs(ev[0]["implicit"], False)
        self.assertTrue(ev[0]["cipher"])
        self.assertEqual(ev[0]["version"], msgs["tls-1"]["tls_version"])

    def test_starttls_records_sni_and_verifies_by_name(self):
        b = self.tls_backend()
        c = SmtpClient(b.port)
        self.addCleanup(c.close)
        c.banner()
        c.ehlo()
        self.assertEqual(c.cmd("STARTTLS").code, 220)
        c.sock = self.certs.client_context().wrap_socket(c.sock, server_hostname=DNS_NAME)
        self.assertEqual(c.cmd("EHLO client.test.example").code, 250)
        self.assertEqual(c.cmd("QUIT").code, 221)
        self.assertEqual(wait_for(lambda: b.events("tls"), 5, "tls event")[0]["sni"], DNS_NAME)

    def test_plaintext_pipelined_after_starttls_is_discarded(self):
        # CVE-2011-0411: "STARTTLS\r\nMAIL ..." in one write; the MAIL must
        # not be executed after the handshake.
        b = self.tls_backend()
        c = SmtpClient(b.port)
        self.addCleanup(c.close)
        c.banner()
        c.ehlo()
        c.send(b"STARTTLS\r\nMAIL FROM:<e@x.test>\r\n")
        self.assertEqual(c.reply().code, 220)
        self.assertEqual(c.buf, b"")
        c.sock = self.certs.client_context().wrap_socket(c.sock, server_hostname="localhost")
        r = c.cmd("NOOP")
        self.assertEqual(r.code, 250, "the pipelined MAIL got a reply over TLS: %r" % r)
        ev = wait_for(lambda: b.events("starttls_pipelined"), 5, "starttls_pipelined event")
        self.assertIn("MAIL FROM:<e@x.test>", ev[0]["data"])
        self.assertNotIn("MAIL FROM:<e@x.test>", b.commands())

    def test_starttls_inject_in_the_same_write(self):
        b = self.tls_backend(starttls_inject="250 2.0.0 injected")
        c = SmtpClient(b.port)
        self.addCleanup(c.close)
        c.banner()
        c.ehlo()
        c.send(b"STARTTLS\r\n")
        # Both lines arrive, in plain text, before any handshake.
        wait_for(lambda: c.closed_by_peer(0.05) or b"injected\r\n" in c.buf, 5,
                 "the injected line")
        self.assertEqual(c.buf, b"220 2.0.0 Ready to start TLS\r\n250 2.0.0 injected\r\n")
        c.buf = b""
        c.sock = self.certs.client_context().wrap_socket(c.sock, server_hostname="localhost")
        self.assertEqual(c.cmd("EHLO client.test.example").code, 250)
        self.assertEqual(len(b.faults_fired("starttls_inject")), 1)
        self.assertEqual(len(b.events("tls")), 1)

    def test_omit_starttls_require_tls_and_starttls_reply(self):
        b = self.tls_backend(omit_starttls=True)
        c = SmtpClient(b.port)
        self.addCleanup(c.close)
        c.banner()
        self.assertNotIn("STARTTLS", [l[4:] for l in c.ehlo().lines])
        self.assertEqual(c.cmd("STARTTLS").code, 500)
        # Control keys go on top of the flags.
        b.set_control(omit_starttls=False, require_tls=True,
                      starttls_reply="454 4.7.0 TLS not available")
        self.assertIn("STARTTLS", [l[4:] for l in c.ehlo().lines])
        r = c.cmd("MAIL FROM:<sender@example.org>")
        self.assertReply(r, 530, "5.7.0")
        self.assertReply(c.cmd("STARTTLS"), 454, "4.7.0")
        self.assertEqual(len(b.faults_fired("starttls_reply")), 1)
        # omit_ehlo ["STARTTLS"] does the same as omit_starttls.
        b.set_control(omit_starttls=False, omit_ehlo=["STARTTLS"])
        self.assertFalse(any("STARTTLS" in l for l in c.ehlo().lines))

    def test_implicit_tls(self):
        b = self.tls_backend(implicit_tls=True)
        with smtplib.SMTP_SSL(HOST, b.port, timeout=10,
                              context=self.certs.client_context()) as s:
            s.ehlo("client.test.example")
            self.assertFalse(s.has_extn("starttls"))
            send(s, "implicit-1")
        m = b.messages()[0]
        self.assertIs(m["tls"], True)
        ev = b.events("tls")[0]
        self.assertIs(ev["implicit"], True)
        self.assertEqual(ev["sni"], None)  # smtplib sends no SNI for an IP address

    def test_implicit_tls_wrong_ca_fails_and_is_recorded(self):
        b = self.tls_backend(implicit_tls=True)
        with self.assertRaises(ssl.SSLCertVerificationError):
            smtplib.SMTP_SSL(HOST, b.port, timeout=10,
                             context=self.certs.client_context(self.certs.other_ca_cert))
        ev = wait_for(lambda: b.events("tls_failed"), 5, "tls_failed event")
        self.assertEqual(len(ev), 1)
        wait_for(lambda: b.events("disconnect"), 5, "disconnect event")
        self.assertEqual(b.events("disconnect")[0]["how"], "tls_failed")
        # A plain-text client gets nothing but a failed handshake.
        c = SmtpClient(b.port)
        self.addCleanup(c.close)
        c.send(b"EHLO client.test.example\r\n")
        self.assertTrue(c.closed_by_peer(5))
        self.assertFalse(c.buf.startswith(b"220"))


class BackendXclient(IntegrationCase):
    """fault_backend.py --xclient."""

    def test_xclient_recorded_per_message(self):
        b = self.fault_backend("x", xclient=True)
        with smtplib.SMTP(HOST, b.port, timeout=10) as s:
            s.ehlo("lb.test.example")
            self.assertEqual(s.esmtp_features.get("xclient"), "NAME ADDR PORT PROTO HELO LOGIN")
            code, text = s.docmd("XCLIENT", "NAME=mail.client.example ADDR=192.0.2.7 PORT=4711 "
                                            "PROTO=ESMTP HELO=[192.0.2.7]+20x LOGIN=+5Bnone+5D")
            self.assertEqual((code, text), (220, b"x ESMTP fault_backend"))
            # Back at the greeting: EHLO again before MAIL (as Postfix).
            self.assertEqual(s.docmd("MAIL FROM:<sender@example.org>")[0], 503)
            s.ehlo("lb.test.example")
            send(s, "xc-1")
            # Attributes stay until changed (Postfix semantics).
            self.assertEqual(s.docmd("XCLIENT", "ADDR=IPV6:2001:db8::7 LOGIN=[UNAVAILABLE]")[0],
                             220)
            s.ehlo("lb.test.example")
            send(s, "xc-2")
        msgs = {m["test_id"]: m for m in b.messages()}
        want1 = {"NAME": "mail.client.example", "ADDR": "192.0.2.7", "PORT": "4711",
                 "PROTO": "ESMTP", "HELO": "[192.0.2.7] x", "LOGIN": "[none]"}
        self.assertEqual(msgs["xc-1"]["xclient"], want1)
        self.assertEqual(msgs["xc-2"]["xclient"],
                         dict(want1, ADDR="IPV6:2001:db8::7", LOGIN="[UNAVAILABLE]"))
        ev = b.events("xclient")
        self.assertEqual(len(ev), 2)
        self.assertEqual(ev[0]["attrs"], want1)
        self.assertEqual(ev[1]["attrs"], {"ADDR": "IPV6:2001:db8::7", "LOGIN": "[UNAVAILABLE]"})
        self.assertEqual(ev[1]["in_effect"], msgs["xc-2"]["xclient"])

    def test_xclient_errors(self):
        b = self.fault_backend("x", xclient=True)
        c = SmtpClient(b.port)
        self.addCleanup(c.close)
        c.banner()
        c.ehlo()
        for line, code in (("XCLIENT", 501), ("XCLIENT ADDR", 501),
                           ("XCLIENT FOO=bar", 501), ("XCLIENT ADDR=192.0.2.300", 501),
                           ("XCLIENT ADDR=010.0.0.1", 501), ("XCLIENT PORT=70000", 501),
                           ("XCLIENT PROTO=HTTP", 501), ("XCLIENT NAME=a+2eb", 501),
                           ("XCLIENT NAME=a+2", 501), ("XCLIENT NAME=a=b", 501),
                           ("XCLIENT NAME=a  ADDR=192.0.2.1", 501)):
            with self.subTest(line=line):
                self.assertEqual(c.cmd(line).code, code)
        self.assertEqual(c.cmd("MAIL FROM:<sender@example.org>").code, 250)
        self.assertReply(c.cmd("XCLIENT ADDR=192.0.2.1"), 503, "5.5.1")
        self.assertEqual(b.events("xclient"), [])
        b.set_control(xclient_reply="550 5.7.0 Error: insufficient authorization")
        self.assertEqual(c.cmd("RSET").code, 250)
        self.assertReply(c.cmd("XCLIENT ADDR=192.0.2.1"), 550, "5.7.0")
        self.assertEqual(len(b.events("xclient_refused")), 1)
        self.assertEqual(b.events("xclient"), [])

    def test_without_the_flag_xclient_is_500(self):
        b = self.fault_backend("plain")
        c = SmtpClient(b.port)
        self.addCleanup(c.close)
        c.banner()
        self.assertFalse(any("XCLIENT" in l or "STARTTLS" in l for l in c.ehlo().lines))
        self.assertReply(c.cmd("XCLIENT ADDR=192.0.2.7"), 500, "5.5.2")
        self.assertReply(c.cmd("STARTTLS"), 500, "5.5.2")
        self.assertEqual(c.transaction("sender@example.org", ["rcpt@example.com"],
                                       message("plain-1"))[-1].code, 250)
        m = b.messages()[0]
        self.assertEqual((m["tls"], m["xclient"], m["proxy"]), (False, None, None))


class BackendProxy(IntegrationCase):
    """fault_backend.py --proxy-protocol."""

    def test_v1_and_v2_recorded(self):
        b = self.fault_backend("p", proxy_protocol=True)
        headers = [
            ("v1-tcp4", proxy_v1_header("192.0.2.7", 40001, "127.0.0.1", 25),
             {"version": 1, "family": "TCP4", "source": "192.0.2.7", "source_port": 40001}),
            ("v1-tcp6", proxy_v1_header("2001:db8::7", 40002, "::1", 25),
             {"version": 1, "family": "TCP6", "source": "2001:db8::7", "source_port": 40002}),
            ("v1-unknown", b"PROXY UNKNOWN ffff::1 ffff::2 1 2\r\n",
             {"version": 1, "family": "UNKNOWN", "source": None}),
            ("v2-tcp4", proxy_v2_header("192.0.2.8", 40003, tlvs=[(0x02, b"mx.example")]),
             {"version": 2, "command": "PROXY", "family": "TCP4", "source": "192.0.2.8",
              "source_port": 40003, "dest": "127.0.0.1", "dest_port": 25}),
            ("v2-tcp6", proxy_v2_header("2001:db8::8", 40004, "2001:db8::1", 587),
             {"version": 2, "family": "TCP6", "source": "2001:db8::8", "dest_port": 587}),
            ("v2-local", proxy_v2_header(local=True),
             {"version": 2, "command": "LOCAL", "family": "UNSPEC", "source": None}),
        ]
        for test_id, header, want in headers:
            with ProxySMTP(HOST, b.port, proxy_header=header, timeout=10) as s:
                s.ehlo("client.test.example")
                send(s, test_id)
        msgs = {m["test_id"]: m for m in b.messages()}
        ev = b.events("proxy")
        self.assertEqual(len(ev), len(headers))
        for (test_id, header, want), e in zip(headers, ev):
            with self.subTest(test_id):
                got = msgs[test_id]["proxy"]
                self.assertEqual({k: got[k] for k in want}, want)
                self.assertEqual({k: e[k] for k in want}, want)
        self.assertEqual(ev[3]["tlvs"], [[2, b"mx.example".hex()]])

    def test_missing_malformed_or_late_header_closes(self):
        b = self.fault_backend("p", proxy_protocol=True, proxy_timeout=0.5)
        overrun = bytearray(proxy_v2_header("192.0.2.7", 1, tlvs=[(1, b"h2")]))
        overrun[-4:-2] = (5).to_bytes(2, "big")  # the TLV claims more than there is
        sig = proxy_v2_header("192.0.2.7", 1)[:12]
        bad = [b"EHLO client.test.example\r\n",
               b"PROXY TCP4 192.0.2.07 127.0.0.1 1 25\r\n",       # leading zero
               b"PROXY TCP4 192.0.2.7 127.0.0.1 01 25\r\n",
               b"PROXY TCP4  192.0.2.7 127.0.0.1 1 25\r\n",       # two spaces
               b"PROXY TCP6 192.0.2.7 127.0.0.1 1 25\r\n",        # wrong family
               b"PROXY TCP4 192.0.2.7 127.0.0.1 1 25\n",          # no CR
               b"PROXY UNKNOWN " + b"x" * 100 + b"\r\n",          # over 107 octets
               sig + b"\x31\x11\x00\x0c" + b"\0" * 12,             # version 3
               sig + b"\x22\x11\x00\x0c" + b"\0" * 12,             # command 2
               sig + b"\x21\x11\x00\x08" + b"\0" * 8,              # too short for TCP4
               sig + b"\x21\x55\x00\x0c" + b"\0" * 12,             # family 0x55
               bytes(overrun),
               b"\r\n\r\n\x00\r\nQUIX\n\x21\x11\x00\x0c" + b"\0" * 12]
        for i, data in enumerate(bad):
            with self.subTest(i=i, data=data[:40]):
                c = SmtpClient(b.port)
                self.addCleanup(c.close)
                c.send(data)
                self.assertTrue(c.closed_by_peer(5), "not closed")
                self.assertEqual(c.buf, b"", "sent something before closing")
        # Nothing at all: closed after --proxy-timeout.
        c = SmtpClient(b.port)
        self.addCleanup(c.close)
        t0 = time.monotonic()
        self.assertTrue(c.closed_by_peer(5))
        self.assertLess(time.monotonic() - t0, 3)
        errors = wait_for(lambda: len(b.events("proxy_error")) == len(bad) + 1 and
                          b.events("proxy_error"), 5, "proxy_error events")
        self.assertEqual(errors[-1]["error"], "timeout")
        self.assertEqual(b.events("proxy"), [])

    def test_header_then_implicit_tls(self):
        certs = shared_certs()
        b = self.fault_backend("pt", proxy_protocol=True, implicit_tls=True,
                               tls_cert=certs.server_cert, tls_key=certs.server_key)
        for i, header in enumerate((proxy_v1_header("192.0.2.9", 1000),
                                    proxy_v2_header("192.0.2.10", 1001))):
            with ProxySMTP_SSL(HOST, b.port, proxy_header=header, timeout=10,
                               context=certs.client_context()) as s:
                s.ehlo("client.test.example")
                send(s, "pt-%d" % i)
        msgs = {m["test_id"]: m for m in b.messages()}
        self.assertEqual(msgs["pt-0"]["proxy"]["source"], "192.0.2.9")
        self.assertEqual(msgs["pt-1"]["proxy"]["source"], "192.0.2.10")
        self.assertTrue(msgs["pt-0"]["tls"] and msgs["pt-1"]["tls"])

    def test_parsers_directly(self):
        p = fault_backend.parse_proxy_v1(b"PROXY TCP4 192.0.2.7 10.0.0.1 65535 0\r\n")
        self.assertEqual((p["source"], p["source_port"], p["dest"], p["dest_port"]),
                         ("192.0.2.7", 65535, "10.0.0.1", 0))
        for bad in (b"PROXY TCP4 192.0.2.7 10.0.0.1 65536 0\r\n",
                    b"PROXY TCP4 192.0.2.7 10.0.0.1 1\r\n", b"PROXY tcp4 1.2.3.4 1.2.3.4 1 1\r\n"):
            with self.assertRaises(fault_backend.ProxyError):
                fault_backend.parse_proxy_v1(bad)
        self.assertEqual(fault_backend.xtext_decode(b"a+2Bb+3D"), "a+b=")
        self.assertIsNone(fault_backend.xtext_decode(b"a b"))


class PostfixForACase(IntegrationCase):
    """postfix_instance.postfix_for: per test, stopped at cleanup."""

    def test_postfix_for(self):
        pf = postfix_for(self, name="mx", domains=["pf.test.example"])
        self.assertIn(pf, self.backends)
        with smtplib.SMTP(HOST, pf.port, timeout=10) as s:
            s.ehlo("client.test.example")
            self.assertFalse(s.has_extn("starttls"), "no certs, no STARTTLS")
            send(s, "pf-for", rcpt="u@pf.test.example")
            s.mail("sender@example.org")
            # Not one of its domains: refused at RCPT even from mynetworks
            # (the error transport), never queued.
            self.assertEqual(s.rcpt("u@example.com")[0], 550)
            s.rset()
        self.assertEqual(pf.wait_message("pf-for").client_addr, "127.0.0.1")
        self.assertEqual(pf.stop(), -15)
        # The master has exited; an smtpd child that inherited the listening
        # sockets may take a moment longer.
        wait_for(lambda: not (port_accepts(pf.port) or port_accepts(pf.proxy_port)), 5,
                 "the stopped Postfix's ports to close")
        self.assertEqual(pf.stop(), -15)  # again: nothing more to do


@unittest.skipIf(skip_reason(), skip_reason() or "")
class PostfixPeer(unittest.TestCase):
    """postfix_instance.py: one private Postfix for the class."""

    @classmethod
    def setUpClass(cls):
        cls.dir = tempfile.mkdtemp(prefix="smtplb-it-postfix-selfcheck-")
        cls.certs = shared_certs()
        cls.pf = PostfixInstance(cls.dir, certs=cls.certs)
        t0 = time.monotonic()
        try:
            cls.pf.start()
        except BaseException:
            cls.pf.kill()
            shutil.rmtree(cls.dir, ignore_errors=True)
            raise
        cls.start_s = time.monotonic() - t0

    @classmethod
    def tearDownClass(cls):
        cls.pf.stop()
        if os.environ.get("SMTPLB_IT_KEEP"):
            print("    kept %s" % cls.dir)
        else:
            shutil.rmtree(cls.dir, ignore_errors=True)

    def setUp(self):
        self.addCleanup(self._dump_on_failure)

    def _dump_on_failure(self):
        outcome = getattr(self, "_outcome", None)
        result = getattr(outcome, "result", None)
        if result and any(t is self for t, _ in result.failures + result.errors):
            print("---- %s\n%s" % (self.id(), self.pf.debug_tail()))

    def test_started_fast_and_private(self):
        self.assertLess(self.start_s, 10)
        self.assertIn(self.pf.queue_dir, self.pf.postconf("-h", "queue_directory"))
        with open(os.path.join(self.pf.config_dir, "master.cf")) as f:
            self.assertIn("smtpd_upstream_proxy_protocol=haproxy", f.read())
        self.assertTrue(os.path.exists(os.path.join(self.pf.queue_dir, "pid", "master.pid")))
        self.assertIn("daemon started", self.pf.log_text())

    def test_direct_client_is_127_0_0_1(self):
        with smtplib.SMTP(HOST, self.pf.port, timeout=10) as s:
            s.ehlo("client.test.example")
            send(s, "pf-direct")
        m = self.pf.wait_message("pf-direct")
        self.assertEqual((m.client_addr, m.helo, m.service, m.tls), ("127.0.0.1",
                         "client.test.example", "plain", False))

    def test_xclient_addr_is_what_postfix_sees(self):
        for test_id, attrs, addr in (
                ("pf-xclient", "ADDR=192.0.2.7 NAME=[UNAVAILABLE] HELO=x.example", "192.0.2.7"),
                ("pf-xclient6", "ADDR=IPV6:2001:db8::7 NAME=c.example.net", "2001:db8::7")):
            with self.subTest(test_id):
                with smtplib.SMTP(HOST, self.pf.port, timeout=10) as s:
                    s.ehlo("lb.test.example")
                    self.assertIn("ADDR", s.esmtp_features.get("xclient", ""))
                    code, text = s.docmd("XCLIENT", attrs)
                    self.assertEqual(code, 220, text)
                    s.ehlo("lb.test.example")
                    send(s, test_id)
                m = self.pf.wait_message(test_id)
                self.assertEqual((m.client_addr, m.log["addr"], m.service),
                                 (addr, addr, "plain"))
        self.assertEqual(m.client_name, "c.example.net")

    def test_proxy_v1_and_v2_source_is_what_postfix_sees(self):
        for test_id, header, addr in (
                ("pf-proxy-v1", proxy_v1_header("192.0.2.8", 40000, "127.0.0.1", 25),
                 "192.0.2.8"),
                ("pf-proxy-v2", proxy_v2_header("192.0.2.9", 40001), "192.0.2.9"),
                ("pf-proxy-v2-6", proxy_v2_header("2001:db8::9", 40002, "2001:db8::1", 25),
                 "2001:db8::9")):
            with self.subTest(test_id):
                with ProxySMTP(HOST, self.pf.proxy_port, proxy_header=header,
                               timeout=10) as s:
                    s.ehlo("client.test.example")
                    send(s, test_id)
                m = self.pf.wait_message(test_id)
                self.assertEqual((m.client_addr, m.log["addr"], m.service),
                                 (addr, addr, "proxy"))

    def test_proxy_port_wants_the_header(self):
        c = SmtpClient(self.pf.proxy_port)
        self.addCleanup(c.close)
        c.send(b"EHLO client.test.example\r\n")
        self.assertTrue(c.closed_by_peer(10))
        self.assertFalse(c.buf.startswith(b"220"), c.buf)

    def test_starttls_with_the_test_ca(self):
        with smtplib.SMTP(HOST, self.pf.port, timeout=10) as s:
            s.ehlo("client.test.example")
            self.assertTrue(s.has_extn("starttls"))
            s.starttls(context=self.certs.client_context())
            s.ehlo("client.test.example")
            send(s, "pf-tls")
        m = self.pf.wait_message("pf-tls")
        self.assertTrue(m.tls, m.protocol)
        self.assertEqual(m.protocol, "ESMTPS")
        self.assertIn(b"using TLSv1.", m.data)
        self.assertEqual(m.client_addr, "127.0.0.1")
        # The unrelated CA does not verify Postfix's certificate.
        with smtplib.SMTP(HOST, self.pf.port, timeout=10) as s:
            s.ehlo("client.test.example")
            with self.assertRaises(ssl.SSLCertVerificationError):
                s.starttls(context=self.certs.client_context(self.certs.other_ca_cert))

    def test_relaying_elsewhere_is_refused(self):
        with smtplib.SMTP(HOST, self.pf.port, timeout=10) as s:
            s.ehlo("lb.test.example")
            self.assertEqual(s.docmd("XCLIENT", "ADDR=192.0.2.7")[0], 220)
            s.ehlo("lb.test.example")
            s.mail("sender@example.org")
            code, _ = s.rcpt("someone@elsewhere.test")
            self.assertEqual(code, 554)  # 5.7.1 Relay access denied
            s.rset()


if __name__ == "__main__":
    unittest.main()
