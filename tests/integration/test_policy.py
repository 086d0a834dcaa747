"""Relay policy and routing (DESIGN.md step 2, "local_domains",
"Where refusals come"; SECURITY.md 4).

`trusted_networks: [10.0.0.0/8]` makes the loopback client untrusted (that
range is only matched against).  Two pools: `local` (recipient_domain =
the local domains) and `outbound` (everything else), one fault_backend
each, so every test can check which pool a recipient reached -- and that
the outbound pool never sees what an untrusted client sent.
"""

import unittest

from harness import HOST, IntegrationCase, base_config, dot_stuff, free_port, message

SENDER = "sender@other.test"


class Policy(IntegrationCase):

    def start(self, local_domains=("example.com", "example.org"), trusted=("10.0.0.0/8",),
              listeners=None):
        self.local = self.fault_backend("local")
        self.outbound = self.fault_backend("outbound")
        cfg = base_config(free_port(), [])
        cfg["local_domains"] = list(local_domains)
        cfg["trusted_networks"] = list(trusted)
        if listeners:
            cfg["listeners"] = listeners
        cfg["pools"] = [
            {"name": "local", "algorithm": "round_robin",
             "backends": [{"address": self.local.address}]},
            {"name": "outbound", "algorithm": "round_robin",
             "backends": [{"address": self.outbound.address}]},
        ]
        cfg["routes"] = [{"pool": "local", "recipient_domain": list(local_domains)},
                         {"pool": "outbound"}]
        return self.start_smtplb(cfg)

    def deliver(self, c, test_id, rcpts):
        content = message(test_id, rcpt=rcpts[0])
        self.assertReply(c.cmd("DATA"), 354)
        c.send(dot_stuff(content) + b".\r\n")
        self.assertReply(c.reply(), 250, "2.0.0", "end of data")
        return content

    # ---- relay denied ---------------------------------------------------------

    def test_relay_denied_for_untrusted_client(self):
        self.start()
        c = self.client()
        self.assertReply(c.cmd("MAIL FROM:<%s>" % SENDER), 250)
        self.assertReply(c.cmd("RCPT TO:<victim@other.test>"), 554, "5.7.1", "non-local RCPT")
        r = c.cmd("DATA")
        self.assertNotEqual(r.code, 354, "DATA with no accepted recipient: %r" % r)
        self.assertReply(c.cmd("RSET"), 250)
        self.assertEqual(self.outbound.events("connect"), [], "the outbound pool was used")
        self.assertNeverSaw("victim@other.test")

    def test_route_tricks_and_lookalikes_never_reach_outbound(self):
        self.start()
        tricks = ["u%other.test@example.com", "@example.com:u@other.test",
                  '"u@other.test"@example.com', "other.test!u@example.com",
                  "u@example.com.", "u@notexample.com", "u@[192.0.2.1]",
                  "u@ex\u0430mple.com", "u@example.com.other.test"]
        for addr in tricks:
            with self.subTest(rcpt=addr):
                c = self.client()
                self.assertReply(c.cmd("MAIL FROM:<%s> SMTPUTF8" % SENDER), 250)
                r = c.cmd(("RCPT TO:<%s>" % addr).encode("utf-8"))
                if r.code == 250:
                    # Acceptable only as local mail with the address untouched.
                    seen = [l for l in self.local.commands() if l.startswith("RCPT")]
                    self.assertIn("RCPT TO:<%s>" % addr, seen,
                                  "accepted, but not as local mail byte-exact")
                else:
                    # SECURITY.md 4: refused as relaying, not as bad syntax.
                    self.assertReply(r, 554, "5.7.1", "RCPT TO:<%s>" % addr)
                self.assertReply(c.cmd("QUIT"), 221)
        self.assertEqual(self.outbound.events("connect"), [], "the outbound pool was used")

    # ---- local domains ----------------------------------------------------------

    def test_a_domain_matches_on_its_a_label_whichever_form_either_side_is_in(self):
        # SECURITY.md 4: local_domains and routes name one domain as an
        # A-label, the other as a U-label; the client writes each the other
        # way (SMTPUTF8).  All four are local, the address passed on exactly
        # as written; an upper-case U-label is another name (no mapping).
        self.start(local_domains=("xn--bcher-kva.example", "m\u00fcnchen.example"))
        c = self.client()
        self.assertReply(c.cmd("MAIL FROM:<%s> SMTPUTF8" % SENDER), 250)
        rcpts = ["u@b\u00fccher.example", "v@XN--BCHER-KVA.example", "w@xn--mnchen-3ya.example",
                 "x@M\u00fcnchen.EXAMPLE"]
        for r in rcpts:
            self.assertReply(c.cmd(("RCPT TO:<%s>" % r).encode("utf-8")), 250, what=r)
        self.assertReply(c.cmd("RCPT TO:<y@B\u00dcCHER.example>".encode("utf-8")), 554, "5.7.1",
                         "an upper-case U-label")
        content = message("a-label", rcpt="u@xn--bcher-kva.example")
        self.assertReply(c.cmd("DATA"), 354)
        c.send(dot_stuff(content) + b".\r\n")
        self.assertReply(c.reply(), 250, "2.0.0", "end of data")
        _, env = self.assertDeliveredOnce("a-label", content, at=self.local)
        self.assertEqual(env["rcpts"], rcpts, "an address not passed on as the client wrote it")
        self.assertEqual(self.outbound.events("connect"), [], "the outbound pool was used")

    def test_local_domains_accepted_for_untrusted_client(self):
        self.start()
        c = self.client()
        rcpts = ["a@example.com", "b@EXAMPLE.COM", "C.Case@example.org", "Postmaster"]
        self.assertReply(c.cmd("MAIL FROM:<%s>" % SENDER), 250)
        for r in rcpts:
            self.assertReply(c.cmd("RCPT TO:<%s>" % r), 250, what="RCPT TO:<%s>" % r)
        content = self.deliver(c, "local-ok", rcpts)
        _, env = self.assertDeliveredOnce("local-ok", content, at=self.local)
        for r in rcpts[:3]:
            self.assertIn(r, env["rcpts"], "local-part or case not preserved")
        self.assertEqual(len(env["rcpts"]), 4)
        self.assertEqual(self.outbound.events("connect"), [])

    def test_dot_entry_matches_subdomains_only(self):
        self.start(local_domains=("example.org", ".example.com"))
        expect = {"u@mail.example.com": 250, "u@a.b.example.com": 250, "u@MAIL.Example.COM": 250,
                  "u@example.com": 554, "u@evilexample.com": 554, "u@mail.evilexample.com": 554,
                  "u@example.org": 250, "u@sub.example.org": 554}
        for addr, code in expect.items():
            with self.subTest(rcpt=addr):
                c = self.client()
                self.assertReply(c.cmd("MAIL FROM:<%s>" % SENDER), 250)
                r = c.cmd("RCPT TO:<%s>" % addr)
                self.assertReply(r, code, "5.7.1" if code == 554 else None, "RCPT TO:<%s>" % addr)
                self.assertReply(c.cmd("QUIT"), 221)
        self.assertEqual(self.outbound.events("connect"), [])

    # ---- submission ---------------------------------------------------------------

    def test_submission_requires_auth(self):
        mx, sub = free_port(), free_port()
        self.start(listeners=[
            {"name": "mx", "listen": "%s:%d" % (HOST, mx), "role": "inbound"},
            {"name": "sub", "listen": "%s:%d" % (HOST, sub), "role": "submission"}])
        c = self.client(port=sub)
        self.assertReply(c.cmd("MAIL FROM:<%s>" % SENDER), 530, "5.7.0", "MAIL on submission")
        self.assertReply(c.cmd("RCPT TO:<a@example.com>"), 503, "5.5.1", "RCPT after the 530")
        self.assertEqual(self.local.events("connect") + self.outbound.events("connect"), [],
                         "a backend saw the unauthenticated submission")
        c2 = self.client(port=mx)
        self.assertReply(c2.cmd("MAIL FROM:<%s>" % SENDER), 250)
        self.assertReply(c2.cmd("RCPT TO:<a@example.com>"), 250)
        content = self.deliver(c2, "mx-after-sub", ["a@example.com"])
        self.assertDeliveredOnce("mx-after-sub", content, at=self.local)

    # ---- routing ----------------------------------------------------------------

    def test_recipient_domain_routes_and_other_pool_gets_452(self):
        self.start(trusted=("127.0.0.0/8",))
        c = self.client()
        self.assertReply(c.cmd("MAIL FROM:<%s>" % SENDER), 250)
        self.assertReply(c.cmd("RCPT TO:<a@example.com>"), 250, what="first RCPT (local)")
        self.assertReply(c.cmd("RCPT TO:<x@other.test>"), 452, "4.5.3", "RCPT for the other pool")
        self.assertReply(c.cmd("RCPT TO:<b@example.org>"), 250, what="local RCPT after the 452")
        self.assertReply(c.cmd("RCPT TO:<y@another.test>"), 452, "4.5.3")
        self.assertReply(c.cmd("RCPT TO:<c@example.com>"), 250)
        content = self.deliver(c, "route-local", ["a@example.com"])
        self.assertDeliveredOnce("route-local", content, at=self.local,
                                 rcpts=["a@example.com", "b@example.org", "c@example.com"])
        # The deferred recipients in their own transaction: the outbound pool.
        self.assertReply(c.cmd("MAIL FROM:<%s>" % SENDER), 250)
        self.assertReply(c.cmd("RCPT TO:<x@other.test>"), 250)
        self.assertReply(c.cmd("RCPT TO:<y@another.test>"), 250)
        self.assertReply(c.cmd("RCPT TO:<d@example.com>"), 452, "4.5.3")
        content = self.deliver(c, "route-out", ["x@other.test"])
        self.assertDeliveredOnce("route-out", content, at=self.outbound,
                                 rcpts=["x@other.test", "y@another.test"])
        rcpts = lambda b: sorted(l for l in b.commands() if l.startswith("RCPT"))
        self.assertEqual(rcpts(self.local), ["RCPT TO:<a@example.com>", "RCPT TO:<b@example.org>",
                                             "RCPT TO:<c@example.com>"])
        self.assertEqual(rcpts(self.outbound), ["RCPT TO:<x@other.test>",
                                                "RCPT TO:<y@another.test>"])


if __name__ == "__main__":
    unittest.main()
