"""Active SMTP health checks (`health_check` of a pool) and the backend
states they drive: a banner other than 220, silence, or a missing `expect`ed
keyword takes a backend down after `fall` checks; `rise` good checks bring
it back; a down backend gets no transactions while another is up.  State
changes are logged once (`event=backend_check`), and checks end with QUIT.
"""

import unittest

from harness import IntegrationCase, message, smtplib_send, wait_for

SENDER = "sender@example.org"
RCPT = "rcpt@example.com"
FAST = {"interval": "200ms", "timeout": "1s", "rise": 2, "fall": 2}


class Health(IntegrationCase):

    def start_pool(self, backends, health=FAST):
        pools = [{"name": "main", "algorithm": "round_robin",
                  "backends": [{"address": b.address} for b in backends],
                  "health_check": dict(health)}]
        return self.smtplb_for(backends, pools=pools)

    def check_lines(self, backend, state):
        return [l for l in self.lb.log_lines("backend_check")
                if "backend=%s " % backend.address in l + " " and "state=%s" % state in l]

    def send_ok(self, tid):
        content = message(tid)
        code, text = smtplib_send(self.lb.port, SENDER, [RCPT], content)
        self.assertEqual(code, 250, text)
        return content

    def test_banner_421_takes_a_backend_down_and_a_good_banner_brings_it_back(self):
        a, b = self.fault_backend("a"), self.fault_backend("b")
        self.start_pool([a, b])
        a.set_control(banner="421 4.3.2 going down for maintenance")
        wait_for(lambda: self.check_lines(a, "down"), 10, "a marked down by its checks")
        line = self.check_lines(a, "down")[0]
        self.assertIn("banner_refused", line)
        self.assertIn("421", line)
        before = len(a.messages())
        for i in range(10):
            content = self.send_ok("hc-down-%d" % i)
            self.assertDeliveredOnce("hc-down-%d" % i, content, at=b)
        self.assertEqual(len(a.messages()), before, "a down backend got mail")
        txs = self.lb.wait_transactions(10)
        self.assertFalse([t for t in txs if a.address in t.get("tried", "")],
                         "transactions still tried the down backend")
        # Back: two good checks in a row.
        a.set_control()
        wait_for(lambda: self.check_lines(a, "up"), 10, "a back up")
        got = []
        for i in range(6):
            got.append(("hc-up-%d" % i, self.send_ok("hc-up-%d" % i)))
        for tid, content in got:
            self.assertDeliveredOnce(tid, content)
        self.assertGreaterEqual(len(a.messages()), before + 2, "a got no mail after coming back")
        # Logged once per change, not once per check.
        self.assertEqual(len(self.check_lines(a, "down")), 1)
        self.assertEqual(len(self.check_lines(a, "up")), 1)

    def test_silent_banner_fails_the_check_within_its_timeout(self):
        a, b = self.fault_backend("a"), self.fault_backend("b")
        self.start_pool([a, b], health={"interval": "200ms", "timeout": "300ms",
                                        "rise": 1, "fall": 1})
        a.set_control(hang="banner")
        line = wait_for(lambda: self.check_lines(a, "down"), 5, "a silent backend marked down")
        self.assertIn("stalled", line[0])

    def test_expected_keyword_missing_fails_the_check(self):
        a, b = self.fault_backend("a", omit_ehlo=["PIPELINING"]), self.fault_backend("b")
        self.start_pool([a, b], health=dict(FAST, expect=["PIPELINING"]))
        line = wait_for(lambda: self.check_lines(a, "down"), 10, "a without PIPELINING marked down")
        self.assertIn("EHLO lacks PIPELINING", line[0])
        self.assertFalse(self.check_lines(b, "down"), "b has PIPELINING and was marked down")

    def test_checks_are_polite_ehlo_then_quit(self):
        a = self.fault_backend("a")
        self.start_pool([a])
        wait_for(lambda: a.commands().count("QUIT") >= 3, 10, "three health checks")
        cmds = a.commands()
        self.assertTrue(all(c.split(" ")[0] in ("EHLO", "QUIT") for c in cmds),
                        "a health check sent more than EHLO and QUIT: %s" % cmds[:10])
        self.assertFalse(self.lb.log_lines("backend_check"), "a healthy backend changed state")


if __name__ == "__main__":
    unittest.main()
