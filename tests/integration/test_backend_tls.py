"""TLS towards backends (issue 6, item 3; SECURITY.md 3): a backend's
`tls: {mode: starttls|implicit, verify, ca, sni}`.

fault_backend.py plays the backend with a certificate from tls_certs.py
(signed by a test CA for localhost and 127.0.0.1); each stored message
records whether it came over TLS.  Covered: STARTTLS verified against the
test CA (EHLO, STARTTLS, EHLO again; SNI from `sni`), implicit TLS, `verify:
false` with a self-signed certificate; every way TLS can fail -- a
certificate from another CA or for another name, STARTTLS not offered or
refused, bytes injected behind the STARTTLS 220 (CVE-2021-38371) -- fails
that backend over to the next one, never to plain text, and marks it down
(passive detection, /api/pools, and active health checks); a pooled TLS
session carries the next message without a new handshake; a new
connection resumes the last TLS session (checked at a private Postfix,
whose log says "Reusing old session").

Failover tests put the backend at fault first in a one-worker round_robin
pool (as test_failover.py does), so the first transaction meets it.
"""

import os

from harness import HOST, api_pools, IntegrationCase, base_config, free_port, message, wait_for
from postfix_instance import postfix_for
import tls_certs

SENDER = "sender@example.org"
RCPT = "rcpt@example.com"




class BackendTls(IntegrationCase):

    def setUp(self):
        super().setUp()
        reason = tls_certs.skip_reason()
        if reason:
            self.skipTest(reason)
        self.certs = tls_certs.shared_certs("backend-tls")

    # -- building blocks --

    def tls_backend(self, name, cert=None, key=None, **faults):
        """A fault backend offering STARTTLS (or implicit TLS) with the test
        CA's certificate, or the one given."""
        return self.fault_backend(name, tls_cert=cert or self.certs.server_cert,
                                  tls_key=key or self.certs.server_key, **faults)

    def start(self, backends, tls, admin=False, **over):
        """smtplb in front of `backends`; tls[i] is backend i's `tls:` (or
        None)."""
        cfg = base_config(free_port(), [b.address for b in backends], **over)
        for entry, t in zip(cfg["pools"][0]["backends"], tls):
            if t is not None:
                entry["tls"] = t
        if admin:
            self.admin_port = free_port()
            cfg["admin"] = {"listen": "%s:%d" % (HOST, self.admin_port)}
        return self.start_smtplb(cfg)

    def starttls(self, **kw):
        t = {"mode": "starttls", "ca": self.certs.ca_cert}
        t.update(kw)
        return t

    def relay(self, test_id):
        content = message(test_id)
        c = self.client()
        replies = c.transaction(SENDER, [RCPT], content)
        self.assertEqual([r.code for r in replies], [250, 250, 354, 250],
                         "client dialog: %r" % replies)
        c.cmd("QUIT")
        return content

    def backend_state(self, address):
        for p in api_pools(self.admin_port)["pools"]:
            for b in p["backends"]:
                if b["address"] == address:
                    return b
        raise AssertionError("no backend %s in /api/pools" % address)

    def assertFailedOverFromTls(self, a, b, test_id, content, detail=None):
        """Delivered once at b, nothing at a and no MAIL there; the
        transaction log shows a left for tls_failed; a warn line names a and
        the reason; a is marked down."""
        self.assertDeliveredOnce(test_id, content, at=b, mail_from=SENDER, rcpts=[RCPT])
        self.assertNothingStored([a])
        self.assertNeverSaw("MAIL FROM", [a])
        tx = self.lb.wait_transactions(1)[-1]
        self.assertEqual(tx.get("backend"), b.address, tx)
        self.assertIn("%s:tls_failed" % a.address, tx.get("tried", ""), tx)
        line = self.lb.wait_log(r"event=backend_tls_failed .*backend=%s" % a.address)
        if detail:
            self.assertIn(detail, line)
        self.lb.wait_log(r"event=backend_down .*backend=%s .*reason=tls_failed" % a.address)
        return line

    # -- TLS that works --

    def test_starttls_verified_against_the_ca(self):
        a = self.tls_backend("a")
        self.start([a], [self.starttls()])
        content = self.relay("starttls-ok")
        _, m = self.assertDeliveredOnce("starttls-ok", content, at=a)
        self.assertTrue(m["tls"], m)
        self.assertIn(m["tls_version"], ("TLSv1.2", "TLSv1.3"))
        # RFC 3207 4.2: EHLO again over TLS; nothing else before it.
        self.assertEqual(a.commands()[:3],
                         ["EHLO lb.test.example", "STARTTLS", "EHLO lb.test.example"])
        # An IP address is verified, but never sent as SNI (RFC 6066 3).
        self.assertIsNone(a.events("tls")[0]["sni"])

    def test_sni_names_the_backend_and_is_verified(self):
        # The certificate holds DNS:localhost: `sni` is both sent and checked.
        a = self.tls_backend("a")
        self.start([a], [self.starttls(sni="localhost")])
        content = self.relay("starttls-sni")
        _, m = self.assertDeliveredOnce("starttls-sni", content, at=a)
        self.assertTrue(m["tls"])
        self.assertEqual(a.events("tls")[0]["sni"], "localhost")

    def test_implicit_tls(self):
        a = self.tls_backend("a", implicit_tls=True)
        self.start([a], [{"mode": "implicit", "ca": self.certs.ca_cert}])
        content = self.relay("implicit-ok")
        _, m = self.assertDeliveredOnce("implicit-ok", content, at=a)
        self.assertTrue(m["tls"])
        self.assertTrue(a.events("tls")[0]["implicit"])
        self.assertNeverSaw("STARTTLS", [a])

    def test_verify_false_accepts_a_self_signed_certificate(self):
        a = self.tls_backend("a", cert=self.certs.self_signed_cert,
                             key=self.certs.self_signed_key)
        self.start([a], [self.starttls(verify=False)])
        content = self.relay("self-signed-unverified")
        _, m = self.assertDeliveredOnce("self-signed-unverified", content, at=a)
        self.assertTrue(m["tls"])

    # -- TLS that fails: the next backend, never plain text --

    def test_certificate_from_another_ca_fails_over_and_marks_down(self):
        a = self.tls_backend("a")
        b = self.tls_backend("b")
        self.start([a, b], [self.starttls(ca=self.certs.other_ca_cert), self.starttls()],
                   admin=True)
        content = self.relay("other-ca")
        line = self.assertFailedOverFromTls(a, b, "other-ca", content,
                                            "certificate verify failed")
        self.assertTrue(a.events("tls_failed"), "backend a saw no failed handshake")
        self.assertEqual(self.backend_state(a.address)["state"], "down")
        self.assertEqual(self.backend_state(b.address)["state"], "up")
        self.assertIn("WARN", line.upper())

    def test_certificate_for_another_name_fails_over(self):
        a = self.tls_backend("a", cert=self.certs.wrong_name_cert,
                             key=self.certs.wrong_name_key)
        b = self.tls_backend("b")
        # Named by `sni` (the address would fail as "IP address mismatch").
        self.start([a, b], [self.starttls(sni="localhost"), self.starttls()])
        content = self.relay("wrong-name")
        line = self.assertFailedOverFromTls(a, b, "wrong-name", content,
                                            "certificate verify failed")
        self.assertIn("hostname mismatch", line)

    def test_self_signed_certificate_fails_over(self):
        a = self.tls_backend("a", cert=self.certs.self_signed_cert,
                             key=self.certs.self_signed_key)
        b = self.fault_backend("b")
        self.start([a, b], [self.starttls(), None])
        content = self.relay("self-signed")
        self.assertFailedOverFromTls(a, b, "self-signed", content, "certificate verify failed")

    def test_starttls_not_offered_is_never_plain_text(self):
        a = self.tls_backend("a", omit_starttls=True)
        b = self.tls_backend("b")
        self.start([a, b], [self.starttls(), self.starttls()], admin=True)
        content = self.relay("no-starttls")
        self.assertFailedOverFromTls(a, b, "no-starttls", content, "STARTTLS not offered")
        self.assertNeverSaw("STARTTLS", [a])
        self.assertEqual(self.backend_state(a.address)["state"], "down")

    def test_backend_without_tls_at_all_is_not_used(self):
        a = self.fault_backend("a")  # no certificate: plain text only
        b = self.tls_backend("b")
        self.start([a, b], [self.starttls(), self.starttls()])
        content = self.relay("plain-backend")
        self.assertFailedOverFromTls(a, b, "plain-backend", content, "STARTTLS not offered")

    def test_starttls_refused_fails_over(self):
        a = self.tls_backend("a", starttls_reply="454 4.7.0 TLS not available")
        b = self.tls_backend("b")
        self.start([a, b], [self.starttls(), self.starttls()])
        content = self.relay("starttls-454")
        self.assertTrue(a.faults_fired("starttls_reply"))
        self.assertFailedOverFromTls(a, b, "starttls-454", content, "STARTTLS refused")

    def test_response_injected_after_the_starttls_220_fails_that_connection(self):
        # CVE-2021-38371: "250 2.0.0 injected" arrives with the 220, before
        # the handshake; taken as a reply over TLS it would answer smtplb's
        # next command.  The connection is dropped before the handshake.
        a = self.tls_backend("a", starttls_inject="250 2.0.0 injected")
        b = self.tls_backend("b")
        self.start([a, b], [self.starttls(), self.starttls()])
        content = self.relay("starttls-inject")
        self.assertTrue(a.faults_fired("starttls_inject"), "the injection never fired")
        self.assertFailedOverFromTls(a, b, "starttls-inject", content, "response injection")
        self.assertEqual(a.events("tls"), [], "a handshake completed after the injection")
        # Nothing was sent to a after its STARTTLS.
        cmds = a.commands()
        self.assertEqual(cmds[-1], "STARTTLS", cmds)

    def test_health_check_marks_a_backend_with_a_bad_certificate_down(self):
        a = self.tls_backend("a", cert=self.certs.wrong_name_cert,
                             key=self.certs.wrong_name_key)
        b = self.tls_backend("b")
        cfg_pool_over = {"interval": "200ms", "timeout": "2s", "rise": 1, "fall": 1}
        cfg = base_config(free_port(), [a.address, b.address])
        for entry in cfg["pools"][0]["backends"]:
            entry["tls"] = self.starttls()
        cfg["pools"][0]["health_check"] = cfg_pool_over
        self.start_smtplb(cfg)
        line = self.lb.wait_log(r"event=backend_check .*backend=%s .*state=down" % a.address)
        self.assertIn("tls_failed", line)
        self.assertIn("certificate verify failed", line)
        # b passes the same check over TLS and is never taken down.
        wait_for(lambda: len(b.events("tls")) >= 2, 10, "two health checks of b over TLS")
        self.assertEqual([l for l in self.lb.log_lines("backend_check")
                          if "backend=%s " % b.address in l + " "], [])
        # Mail goes to b, and a never saw a MAIL.
        content = self.relay("health-tls")
        self.assertDeliveredOnce("health-tls", content, at=b)
        self.assertNeverSaw("MAIL FROM", [a])

    # -- reuse and resumption --

    def test_pooled_tls_session_carries_the_next_message(self):
        a = self.tls_backend("a")
        self.start([a], [self.starttls()])
        c1 = self.relay("pooled-tls-1")
        c2 = self.relay("pooled-tls-2")
        _, m1 = self.assertDeliveredOnce("pooled-tls-1", c1, at=a)
        _, m2 = self.assertDeliveredOnce("pooled-tls-2", c2, at=a)
        self.assertTrue(m1["tls"] and m2["tls"])
        self.assertEqual(m1["conn"], m2["conn"], "the second message took a new connection")
        self.assertEqual(len(a.events("tls")), 1, "one handshake for two messages")

    def test_new_connection_resumes_the_tls_session(self):
        # Postfix logs a resumed handshake at smtpd_tls_loglevel 2.
        pf = postfix_for(self, certs=self.certs, main_cf={"smtpd_tls_loglevel": "2"})
        # No pooling: each message opens a connection of its own.
        cfg = base_config(free_port(), [pf.address], connection_pool={"max_idle": 0})
        cfg["pools"][0]["backends"][0]["tls"] = self.starttls(sni="localhost")
        self.start_smtplb(cfg)
        self.relay("resume-1")
        self.relay("resume-2")
        m1 = pf.wait_message("resume-1")
        m2 = pf.wait_message("resume-2")
        self.assertTrue(m1.tls and m2.tls, (m1.protocol, m2.protocol))
        pf.wait_log(r"Reusing old session")
        self.assertEqual(len(pf.log_lines(r"TLS connection established from")), 2,
                         pf.log_lines(r"TLS connection established from"))

    def test_pooled_tls_session_at_postfix(self):
        # A real TLS 1.3 server sends its session tickets after the
        # handshake: they must not look like unsolicited input that makes
        # the pooled session unusable.
        pf = postfix_for(self, certs=self.certs)
        cfg = base_config(free_port(), [pf.address])
        cfg["pools"][0]["backends"][0]["tls"] = self.starttls(sni="localhost")
        self.start_smtplb(cfg)
        self.relay("pf-pooled-1")
        self.relay("pf-pooled-2")
        self.assertTrue(pf.wait_message("pf-pooled-1").tls)
        self.assertTrue(pf.wait_message("pf-pooled-2").tls)
        self.assertEqual(len(pf.log_lines(r"TLS connection established from")), 1,
                         pf.log_lines(r"TLS connection established from"))
