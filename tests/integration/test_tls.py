"""TLS on listeners (issue 6, item 1; SECURITY.md 3): STARTTLS (RFC 3207)
and implicit TLS (RFC 8314), `require_tls`, certificates read again at
SIGHUP, the Received field's ESMTPS and cipher.

Real peers: Python's ssl and smtplib, `swaks --tls`, `openssl s_client
-starttls smtp`; certificates made at test time (tls_certs.py).  Covered:
STARTTLS then a message (ESMTPS, TLS version and cipher in Received:),
EHLO required again and STARTTLS no longer offered, the CVE-2011-0411
injection (bytes pipelined behind STARTTLS are never executed), STARTTLS
twice or inside a transaction (503 5.5.1), STARTTLS where TLS is not
configured (454 4.7.0), require_tls (530 5.7.0 to MAIL before TLS),
implicit TLS, plaintext or garbage instead of a handshake and garbage in
the middle of one (closed, logged, the process serves the next client),
TLS 1.1 refused, a client-initiated renegotiation refused, a renewed
certificate served after SIGHUP without dropping the listener.
"""

import os
import shutil
import signal
import socket
import ssl
import subprocess
import unittest

from harness import (HOST, IntegrationCase, SmtpClient, base_config, free_port, message,
                     smtplib_send, split_received, wait_for)
import tls_certs

SENDER = "sender@example.org"
RCPT = "rcpt@example.com"
SWAKS = shutil.which("swaks")
OPENSSL = shutil.which("openssl")


def swaks_has_tls():
    if not SWAKS:
        return False
    p = subprocess.run(["perl", "-MNet::SSLeay", "-e", "1"], capture_output=True)
    return p.returncode == 0


def keywords(ehlo):
    """The EHLO reply's keywords, without the greeting line."""
    return [line[4:].split(" ")[0].upper() for line in ehlo.lines[1:]]


class TlsCase(IntegrationCase):

    def start(self, mode="starttls", require_tls=False, extra_listener=None, proxy_networks=None,
              **over):
        reason = tls_certs.skip_reason()
        if reason:
            self.skipTest(reason)
        self.certs = tls_certs.make_certs(os.path.join(self.workdir, "certs"))
        self.backend = self.fault_backend("a")
        cfg = base_config(free_port(), [self.backend.address], **over)
        cfg["listeners"][0]["tls"] = {"certificate": self.certs.server_cert,
                                      "key": self.certs.server_key, "mode": mode}
        if require_tls:
            cfg["listeners"][0]["require_tls"] = True
        if proxy_networks:
            cfg["listeners"][0]["proxy_protocol"] = True
            cfg["proxy_networks"] = proxy_networks
        if extra_listener:
            cfg["listeners"].append(extra_listener)
        self.cfg = cfg
        self.start_smtplb(cfg)

    def context(self):
        return self.certs.client_context()

    def tls_client(self):
        c = SmtpClient(self.lb.port)
        self.addCleanup(c.close)
        c.banner()
        ehlo = c.ehlo()
        self.assertIn("STARTTLS", keywords(ehlo), "STARTTLS offered: %r" % ehlo)
        c.starttls(self.context())
        return c

    def assertServesPlainClients(self):
        """After a broken handshake the process still takes a new client."""
        c = SmtpClient(self.lb.port)
        self.addCleanup(c.close)
        c.banner()
        c.ehlo()
        self.assertTrue(self.lb.proc.alive(), "smtplb exited")


class StartTlsTest(TlsCase):

    def test_starttls_then_a_message_with_esmtps_and_the_cipher_in_received(self):
        self.start()
        c = self.tls_client()
        self.assertEqual(c.sock.version() in ("TLSv1.2", "TLSv1.3"), True, c.sock.version())
        ehlo = c.ehlo()
        self.assertNotIn("STARTTLS", keywords(ehlo), "STARTTLS offered again under TLS")
        content = message("tls-1")
        replies = c.transaction(SENDER, [RCPT], content)
        self.assertReply(replies[-1], 250, what="under TLS")
        _, m = self.assertDeliveredOnce("tls-1", content, at=self.backend)
        received, _ = split_received(m["eml"])
        flat = received.replace(b"\r\n", b" ").replace(b"\t", b" ")
        self.assertIn(b"with ESMTPS", flat, flat)
        self.assertIn(("using %s with cipher %s" % (c.sock.version(), c.sock.cipher()[0])).encode(),
                      flat, flat)
        self.lb.wait_log(r"event=tls_|event=transaction")

    def test_ehlo_is_required_again_after_starttls(self):
        self.start()
        c = self.tls_client()
        self.assertReply(c.cmd("MAIL FROM:<%s>" % SENDER), 503, "5.5.1", "MAIL before EHLO")

    def test_commands_pipelined_behind_starttls_are_never_executed(self):
        # CVE-2011-0411: a man in the middle appends a command to the
        # client's STARTTLS; it must not run under TLS.
        self.start()
        c = SmtpClient(self.lb.port)
        self.addCleanup(c.close)
        c.banner()
        c.ehlo()
        c.send(b"STARTTLS\r\nMAIL FROM:<e@x.test>\r\n")
        r = c.reply()
        self.assertReply(r, 220, "2.0.0", "STARTTLS")
        self.assertEqual(c.buf, b"", "nothing but the 220 before the handshake")
        c.sock = self.context().wrap_socket(c.sock, server_hostname="localhost")
        # The first reply under TLS is NOOP's: nothing answered the injected
        # MAIL, and the session has no transaction (MAIL needs EHLO first).
        self.assertReply(c.cmd("NOOP"), 250, what="NOOP after the handshake")
        self.assertReply(c.cmd("MAIL FROM:<%s>" % SENDER), 503, "5.5.1")
        self.lb.wait_log(r"event=starttls_pipelined .*discarded=22")

    def test_starttls_twice_or_inside_a_transaction_is_a_bad_sequence(self):
        self.start()
        c = SmtpClient(self.lb.port)
        self.addCleanup(c.close)
        c.banner()
        c.ehlo()
        self.assertReply(c.cmd("MAIL FROM:<%s>" % SENDER), 250)
        self.assertReply(c.cmd("STARTTLS"), 503, "5.5.1", "STARTTLS inside a transaction")
        self.assertReply(c.cmd("RSET"), 250)
        c.starttls(self.context())
        c.ehlo()
        self.assertReply(c.cmd("STARTTLS"), 503, "5.5.1", "STARTTLS under TLS")

    def test_starttls_without_tls_configured_is_454(self):
        self.start(extra_listener={"name": "plain", "listen": "%s:%d" % (HOST, free_port()),
                                   "role": "inbound"})
        c = SmtpClient(self.lb.listener_port("plain"))
        self.addCleanup(c.close)
        c.banner()
        ehlo = c.ehlo()
        self.assertNotIn("STARTTLS", " ".join(ehlo.lines))
        self.assertReply(c.cmd("STARTTLS"), 454, "4.7.0")
        # And the session goes on in plaintext.
        self.assertReply(c.cmd("NOOP"), 250)

    def test_require_tls_refuses_mail_before_starttls(self):
        self.start(require_tls=True)
        c = SmtpClient(self.lb.port)
        self.addCleanup(c.close)
        c.banner()
        c.ehlo()
        self.assertReply(c.cmd("MAIL FROM:<%s>" % SENDER), 530, "5.7.0", "MAIL before TLS")
        c.starttls(self.context())
        c.ehlo()
        content = message("tls-req")
        self.assertReply(c.transaction(SENDER, [RCPT], content)[-1], 250)
        self.assertDeliveredOnce("tls-req", content)

    def test_garbage_in_the_middle_of_a_handshake_closes_only_that_connection(self):
        self.start()
        c = SmtpClient(self.lb.port)
        self.addCleanup(c.close)
        c.banner()
        c.ehlo()
        self.assertReply(c.cmd("STARTTLS"), 220)
        # A TLS record header announcing a handshake, then junk.
        c.send(b"\x16\x03\x01\x00\x40" + b"\xff" * 64)
        self.assertTrue(c.closed_by_peer(10), "smtplb closes a connection with a broken handshake")
        self.lb.wait_log(r"event=tls_failed")
        self.assertServesPlainClients()

    def test_tls_1_1_is_refused(self):
        self.start()
        ctx = self.context()
        try:
            ctx.minimum_version = ssl.TLSVersion.TLSv1_1
            ctx.maximum_version = ssl.TLSVersion.TLSv1_1
            ctx.set_ciphers("ALL:@SECLEVEL=0")
        except (ValueError, ssl.SSLError) as e:
            self.skipTest("this OpenSSL cannot offer TLS 1.1 as a client: %s" % e)
        c = SmtpClient(self.lb.port)
        self.addCleanup(c.close)
        c.banner()
        c.ehlo()
        self.assertReply(c.cmd("STARTTLS"), 220)
        with self.assertRaises((ssl.SSLError, OSError)):
            ctx.wrap_socket(c.sock, server_hostname="localhost")
        self.lb.wait_log(r"event=tls_failed")

    @unittest.skipUnless(OPENSSL, "openssl is not installed")
    def test_openssl_s_client_starttls_smtp_and_no_renegotiation(self):
        self.start()
        # "R" asks s_client to renegotiate (TLS 1.2 only); smtplb refuses
        # it, and the connection must not go on as if it had happened.
        p = subprocess.run(
            [OPENSSL, "s_client", "-connect", "%s:%d" % (HOST, self.lb.port), "-starttls", "smtp",
             "-CAfile", self.certs.ca_cert, "-verify_return_error", "-tls1_2", "-legacy_renegotiation"],
            input=b"R\nNOOP\n", capture_output=True, timeout=30)
        out = (p.stdout + p.stderr).decode("utf-8", "replace")
        self.assertIn("Verify return code: 0 (ok)", out, out[-2000:])
        self.assertIn("Protocol  : TLSv1.2", out, out[-2000:])
        self.assertIn("RENEGOTIATING", out, out[-2000:])
        self.assertNotIn("250 2.0.0 OK", out.split("RENEGOTIATING", 1)[1],
                         "a command answered after a renegotiation: %s" % out[-2000:])
        self.assertServesPlainClients()

    @unittest.skipUnless(swaks_has_tls(), "swaks or its Net::SSLeay is not installed")
    def test_swaks_tls_delivers(self):
        self.start()
        p = subprocess.run([SWAKS, "--server", "%s:%d" % (HOST, self.lb.port), "--tls",
                            "--from", SENDER, "--to", RCPT, "--header", "X-Test-Id: swaks-tls",
                            "--helo", "swaks.test.example"],
                           capture_output=True, timeout=60)
        out = p.stdout.decode("utf-8", "replace")
        self.assertEqual(p.returncode, 0, out[-2000:])
        self.assertIn("TLS started", out)
        wait_for(lambda: self.stored("swaks-tls"), 10, "the swaks message at the backend")
        self.assertEqual(len(self.stored("swaks-tls")), 1)


class ImplicitTlsTest(TlsCase):

    def test_implicit_tls_delivers(self):
        self.start(mode="implicit")
        c = SmtpClient(self.lb.port, tls=self.context())
        self.addCleanup(c.close)
        c.banner()
        ehlo = c.ehlo()
        self.assertNotIn("STARTTLS", " ".join(ehlo.lines), "no STARTTLS under implicit TLS")
        content = message("tls-465")
        self.assertReply(c.transaction(SENDER, [RCPT], content)[-1], 250)
        _, m = self.assertDeliveredOnce("tls-465", content)
        self.assertIn(b"with ESMTPS", split_received(m["eml"])[0].replace(b"\r\n\t", b" "))

    def test_plaintext_instead_of_a_handshake_is_closed_without_a_banner(self):
        self.start(mode="implicit")
        c = SmtpClient(self.lb.port)
        self.addCleanup(c.close)
        c.send(b"EHLO plain.test.example\r\n")
        self.assertTrue(c.closed_by_peer(10), "a plaintext client on an implicit-TLS port is closed")
        self.assertNotIn(b"220", c.buf, "no banner in plaintext")
        self.lb.wait_log(r"event=tls_failed")
        c2 = SmtpClient(self.lb.port, tls=self.context())
        self.addCleanup(c2.close)
        c2.banner()


class CertificateReloadTest(TlsCase):

    def test_a_renewed_certificate_is_served_after_sighup(self):
        self.start()

        def served_cert():
            c = SmtpClient(self.lb.port)
            try:
                c.banner()
                c.ehlo()
                ctx = ssl.create_default_context()
                ctx.check_hostname = False
                ctx.verify_mode = ssl.CERT_NONE
                c.starttls(ctx)
                return c.sock.getpeercert(binary_form=True)
            finally:
                c.close()

        before = served_cert()
        self.cfg["listeners"][0]["tls"]["certificate"] = self.certs.self_signed_cert
        self.cfg["listeners"][0]["tls"]["key"] = self.certs.self_signed_key
        from harness import to_yaml
        with open(self.lb.config_path, "w") as f:
            f.write(to_yaml(self.cfg) + "\n")
        self.lb.proc.signal(signal.SIGHUP)
        self.lb.wait_log(r"event=reload.* result=ok|event=reloaded")
        with open(self.certs.self_signed_cert, "rb") as f:
            want = ssl.PEM_cert_to_DER_cert(f.read().decode())
        wait_for(lambda: served_cert() == want, 10, "the renewed certificate")
        self.assertNotEqual(before, want)


if __name__ == "__main__":
    unittest.main()


class ProxyThenImplicitTlsTest(TlsCase):
    """A listener behind a TCP balancer with implicit TLS: the PROXY header
    and the ClientHello arrive in one segment; smtplb must read exactly the
    header and leave every TLS byte to OpenSSL."""

    def handshake_in_one_write_with(self, header):
        sock = socket.create_connection((HOST, self.lb.port), timeout=10)
        self.addCleanup(sock.close)
        incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        tls = self.context().wrap_bio(incoming, outgoing, server_hostname="localhost")
        first = True
        while True:
            try:
                tls.do_handshake()
                break
            except ssl.SSLWantReadError:
                data = outgoing.read()
                if first:
                    data, first = header + data, False  # header and ClientHello together
                if data:
                    sock.sendall(data)
                chunk = sock.recv(65536)
                self.assertTrue(chunk, "smtplb closed during the handshake")
                incoming.write(chunk)
        sock.sendall(outgoing.read())
        # The banner, under TLS.
        buf = b""
        while b"\r\n" not in buf:
            try:
                buf += tls.read(4096)
            except ssl.SSLWantReadError:
                incoming.write(sock.recv(65536))
        return buf

    def test_proxy_v1_and_v2_headers_then_tls_in_the_same_segment(self):
        self.start(mode="implicit", proxy_networks=["127.0.0.0/8"])
        v1 = b"PROXY TCP4 192.0.2.7 192.0.2.1 40000 465\r\n"
        self.assertTrue(self.handshake_in_one_write_with(v1).startswith(b"220 "))
        import struct
        body = socket.inet_aton("192.0.2.8") + socket.inet_aton("192.0.2.1") + struct.pack(
            "!HH", 40001, 465)
        v2 = b"\r\n\r\n\x00\r\nQUIT\n" + bytes([0x21, 0x11]) + struct.pack("!H", len(body)) + body
        self.assertTrue(self.handshake_in_one_write_with(v2).startswith(b"220 "))
