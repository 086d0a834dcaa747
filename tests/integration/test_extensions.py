"""Service extensions end to end (issue 21, items 8 and 9).

* After HELO a client has no service extensions (RFC 5321 3.2, RFC 1869):
  MAIL parameters get 555 5.5.4 at MAIL, never 250 at MAIL and then 451 at
  every RCPT (as on `identity: xclient` pools, whose XCLIENT re-greets the
  backend with the client's HELO).
* When no backend of the pool offers what a message needs, the answer is
  permanent (a retry meets the same pool): SMTPUTF8 gets 553 5.6.7 (RFC 6531
  3.4); BODY=8BITMIME goes out as 7-bit (no BODY= parameter) and is refused
  with 554 5.6.3 after the dot only if a byte of it is 8-bit.  Never a 4xx
  the sender retries until its queue lifetime ends.
"""

from harness import IntegrationCase, SmtpClient, base_config, free_port, message

SENDER = "sender@example.org"
RCPT = "rcpt@example.com"


class Extensions(IntegrationCase):

    def helo_client(self):
        c = SmtpClient(self.lb.port)
        self.addCleanup(c.close)
        c.banner()
        self.assertReply(c.cmd("HELO old.test.example"), 250)
        return c

    def test_mail_parameters_after_helo_are_refused_at_mail(self):
        a = self.fault_backend("a")
        self.smtplb_for([a])
        c = self.helo_client()
        for params in (" SIZE=100", " BODY=8BITMIME", " SMTPUTF8", " BODY=7BIT"):
            self.assertReply(c.cmd("MAIL FROM:<%s>%s" % (SENDER, params)), 555, "5.5.4", params)
        # Without parameters the transaction goes through.
        content = message("helo-plain")
        replies = c.transaction(SENDER, [RCPT], content)
        self.assertEqual([r.code for r in replies], [250, 250, 354, 250], replies)
        self.assertDeliveredOnce("helo-plain", content, at=a)

    def test_helo_client_on_an_xclient_pool_never_gets_250_then_451(self):
        a = self.fault_backend("a", xclient=True)
        cfg = base_config(free_port(), [a.address])
        cfg["pools"][0]["backends"][0]["identity"] = "xclient"
        self.start_smtplb(cfg)
        c = self.helo_client()
        self.assertReply(c.cmd("MAIL FROM:<%s> BODY=8BITMIME" % SENDER), 555, "5.5.4")
        content = message("helo-xclient")
        replies = c.transaction(SENDER, [RCPT], content)
        self.assertEqual([r.code for r in replies], [250, 250, 354, 250], replies)
        self.assertDeliveredOnce("helo-xclient", content, at=a)

    def test_smtputf8_with_no_backend_offering_it_is_permanent(self):
        a = self.fault_backend("a", omit_ehlo=["SMTPUTF8"])
        b = self.fault_backend("b", omit_ehlo=["SMTPUTF8"])
        self.smtplb_for([a, b])
        c = self.client()
        self.assertReply(c.cmd("MAIL FROM:<%s> SMTPUTF8" % SENDER), 250)
        self.assertReply(c.cmd("RCPT TO:<%s>" % RCPT), 553, "5.6.7")
        self.assertNeverSaw("SMTPUTF8")
        self.assertNothingStored()

    def test_8bitmime_declared_7bit_content_goes_through_without_body_parameter(self):
        a = self.fault_backend("a", omit_ehlo=["8BITMIME"])
        self.smtplb_for([a])
        c = self.client()
        content = message("declared-8bit")
        replies = c.transaction(SENDER, [RCPT], content, mail_params=" BODY=8BITMIME")
        self.assertEqual([r.code for r in replies], [250, 250, 354, 250], replies)
        _, m = self.assertDeliveredOnce("declared-8bit", content, at=a)
        self.assertNeverSaw("BODY=")

    def test_8bit_content_with_no_backend_offering_8bitmime_is_refused_after_the_dot(self):
        a = self.fault_backend("a", omit_ehlo=["8BITMIME"])
        self.smtplb_for([a])
        c = self.client()
        content = message("real-8bit") + "caf\u00e9\r\n".encode("utf-8")
        replies = c.transaction(SENDER, [RCPT], content, mail_params=" BODY=8BITMIME")
        self.assertEqual([r.code for r in replies[:3]], [250, 250, 354], replies)
        self.assertReply(replies[-1], 554, "5.6.3", "8-bit content, no 8BITMIME backend")
        self.assertNothingStored()
        # The session stays usable.
        ok = message("after-8bit")
        replies = c.transaction(SENDER, [RCPT], ok)
        self.assertEqual([r.code for r in replies], [250, 250, 354, 250], replies)
        self.assertDeliveredOnce("after-8bit", ok, at=a)

    def test_8bitmime_prefers_a_backend_that_offers_it(self):
        a = self.fault_backend("a", omit_ehlo=["8BITMIME"])
        b = self.fault_backend("b")
        self.smtplb_for([a, b])
        c = self.client()
        content = message("prefers-8bit") + "caf\u00e9\r\n".encode("utf-8")
        replies = c.transaction(SENDER, [RCPT], content, mail_params=" BODY=8BITMIME")
        self.assertEqual([r.code for r in replies], [250, 250, 354, 250], replies)
        _, m = self.assertDeliveredOnce("prefers-8bit", content, at=b)
        self.assertIn("BODY=8BITMIME", m["mail_params"])
