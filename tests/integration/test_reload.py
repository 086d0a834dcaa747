"""Configuration reload: SIGHUP and POST /api/reload (issue 4, item 7).

smtplb runs with the admin API in front of fault backends; each test
rewrites smtplb.yaml and asks for a reload, then checks what the contract
promises:

* a bad file is refused with the same FILE:LINE:COL errors `smtplb check`
  prints (log and 422 body), the running configuration stays and mail
  keeps flowing;
* a file that changes what is bound at start-up (a listener) is refused,
  naming the change;
* a good file takes effect for new transactions: a backend added gets
  mail, a backend removed gets none, /api/pools and /metrics show the new
  generation;
* a backend that stays keeps its state (the operator's drain, its health
  check counters) and its pooled session (no new connection);
* an open client session is not dropped, and its next transaction uses the
  new configuration; a transaction in flight finishes on the backend it
  began on, even when the reload removed that backend;
* under traffic from several sessions with repeated reloads, every message
  gets 250 and is stored exactly once.
"""

import json
import os
import signal
import threading

from harness import (HOST, IntegrationCase, base_config, free_port, message, port_accepts,
                     smtplib_send, to_yaml, wait_for)
from test_admin import AdminClient

SENDER = "sender@example.org"
RCPT = "rcpt@example.com"


class ReloadCase(IntegrationCase):

    def start(self, backends, **over):
        self.admin_port = free_port()
        over.setdefault("admin", {"listen": "%s:%d" % (HOST, self.admin_port)})
        self.cfg = base_config(free_port(), [b.address for b in backends], **over)
        self.start_smtplb(self.cfg)
        wait_for(lambda: port_accepts(self.admin_port), 10, "the admin API")
        self.admin = AdminClient(self.admin_port)
        return self.admin

    def write_config(self, cfg=None, text=None):
        with open(self.lb.config_path, "w") as f:
            f.write(text if text is not None else to_yaml(cfg) + "\n")

    def set_backends(self, backends, **pool_over):
        self.cfg["pools"][0]["backends"] = [{"address": b.address} for b in backends]
        self.cfg["pools"][0].update(pool_over)
        self.write_config(self.cfg)

    def generation(self):
        return self.admin.pools()["generation"]

    def sighup(self, want_generation):
        self.lb.proc.signal(signal.SIGHUP)
        wait_for(lambda: self.generation() == want_generation, 10,
                 "generation %d after SIGHUP" % want_generation)

    def api_reload(self):
        return self.admin.post("/api/reload")

    def send(self, test_id):
        content = message(test_id)
        code, text = smtplib_send(self.lb.port, SENDER, [RCPT], content)
        self.assertEqual(code, 250, "%s: %s" % (test_id, text))
        return content

    def backend_addresses(self):
        return [b["address"] for b in self.admin.pools()["pools"][0]["backends"]]


class Refused(ReloadCase):

    def test_bad_file_is_refused_with_check_errors_and_mail_keeps_flowing(self):
        a = self.fault_backend("a")
        self.start([a])
        self.send("before")
        # A value of the wrong kind, on a known line and column.
        text = to_yaml(self.cfg) + "\n"
        self.write_config(text=text.replace("max_recipients: 100", "max_recipients: lots"))
        lines = text.splitlines()
        line_no = next(i for i, l in enumerate(lines, 1) if "max_recipients" in l)
        r = self.api_reload()
        self.assertEqual(r.status, 422, r)
        doc = r.json()
        self.assertIs(doc["reloaded"], False)
        self.assertEqual(doc["generation"], 1)
        where = "%s:%d:" % (self.lb.config_path, line_no)
        self.assertTrue(any(e.startswith(where) for e in doc["errors"]),
                        "errors name %s: %r" % (where, doc["errors"]))
        # The same error in the log, as `check` prints it; SIGHUP too.
        self.lb.wait_log(r"event=reload_refused .*trigger=api .*error=\S*%s"
                         % str(line_no))
        self.lb.proc.signal(signal.SIGHUP)
        self.lb.wait_log(r"event=reload_refused .*trigger=SIGHUP ")
        self.assertEqual(self.generation(), 1)
        m = self.admin.metrics()
        self.assertEqual(m.value("smtplb_reloads_total", result="refused"), 2)
        self.assertEqual(m.value("smtplb_reloads_total", result="ok"), 0)
        content = self.send("after")
        self.assertDeliveredOnce("after", content, at=a)

    def test_a_new_listener_needs_a_restart(self):
        a = self.fault_backend("a")
        self.start([a])
        extra = free_port()
        self.cfg["listeners"].append({"name": "submission", "listen": "%s:%d" % (HOST, extra),
                                      "role": "submission"})
        self.write_config(self.cfg)
        r = self.api_reload()
        self.assertEqual(r.status, 422, r)
        self.assertTrue(any("listeners:" in e and "submission" in e and "restart" in e
                            for e in r.json()["errors"]), r.json())
        self.assertFalse(port_accepts(extra), "a refused reload opened a listener")
        self.assertEqual(self.generation(), 1)


class Applied(ReloadCase):

    def test_added_backend_gets_mail_and_removed_one_none(self):
        a, b = self.fault_backend("a"), self.fault_backend("b")
        self.start([a])
        self.send("gen1")
        self.set_backends([b])
        r = self.api_reload()
        self.assertEqual(r.status, 200, r)
        doc = r.json()
        self.assertEqual(doc["generation"], 2)
        self.assertEqual(doc["added"], ["main/" + b.address])
        self.assertEqual(doc["removed"], ["main/" + a.address])
        self.assertEqual(self.backend_addresses(), [b.address])
        self.lb.wait_log(r"event=reloaded .*trigger=api .*generation=2")
        mails_a = len([c for c in a.commands() if c.upper().startswith("MAIL")])
        for i in range(4):
            content = self.send("gen2-%d" % i)
            self.assertDeliveredOnce("gen2-%d" % i, content, at=b)
        self.assertEqual(len([c for c in a.commands() if c.upper().startswith("MAIL")]), mails_a)
        # The removed backend's pooled session is closed politely.
        wait_for(lambda: any(c.upper() == "QUIT" for c in a.commands()), 5,
                 "QUIT to the removed backend's idle session")
        m = self.admin.metrics()
        self.assertEqual(m.value("smtplb_config_generation"), 2)
        self.assertEqual(m.value("smtplb_reloads_total", result="ok"), 1)
        # Counters survive the reload: the first message still counts.
        self.assertEqual(m.value("smtplb_transactions_total", listener="mx", pool="main",
                                 backend=a.address, result="delivered"), 1)
        self.assertEqual(m.value("smtplb_transactions_total", listener="mx", pool="main",
                                 backend=b.address, result="delivered"), 4)

    def test_staying_backend_keeps_state_and_pooled_session(self):
        a, b, c = (self.fault_backend(n) for n in "abc")
        self.cfg_checks = {"interval": "200ms", "timeout": "1s", "rise": 1, "fall": 1}
        self.start([a, b])
        self.cfg["pools"][0]["health_check"] = self.cfg_checks
        self.write_config(self.cfg)
        self.sighup(2)
        wait_for(lambda: self.admin.backend(a.address)["health_checks"]["ok"] >= 2, 10,
                 "health checks on a")
        # Each backend gets a message, so each has a pooled session.
        self.send("warm-1")
        self.send("warm-2")
        self.assertEqual(self.admin.action("drain", b.address).status, 200)
        checks_before = self.admin.backend(a.address)["health_checks"]["ok"]
        mail_conns_before = self.mail_conns(a)
        self.assertEqual(len(mail_conns_before), 1)
        self.set_backends([a, b, c], health_check=self.cfg_checks)
        self.sighup(3)
        self.lb.wait_log(r"event=reloaded .*trigger=SIGHUP .*generation=3 .*kept=2")
        # b stays drained: a reload never puts back a backend taken out by hand.
        self.assertEqual(self.admin.state(b.address), "drain")
        self.assertGreaterEqual(self.admin.backend(a.address)["health_checks"]["ok"],
                                checks_before, "a's health-check counters carried over")
        # round_robin over a and c (b drained): a's message reuses its
        # pooled session, without a new connection.
        got = {}
        for i in range(4):
            tid = "gen3-%d" % i
            content = self.send(tid)
            backend, _ = self.assertDeliveredOnce(tid, content, backends=[a, b, c])
            got[backend.name] = got.get(backend.name, 0) + 1
        self.assertEqual(got, {"a": 2, "c": 2})
        self.assertEqual(self.mail_conns(a), mail_conns_before,
                         "a's transactions after the reload reused its pooled session")

    def mail_conns(self, backend):
        """The backend's connections that carried a MAIL command."""
        return {e["conn"] for e in backend.events("cmd") if e["line"].upper().startswith("MAIL")}

    def test_open_session_survives_and_uses_the_new_configuration(self):
        a, b = self.fault_backend("a"), self.fault_backend("b")
        self.start([a])
        c = self.client()
        content = message("s1")
        self.assertReply(c.transaction(SENDER, [RCPT], content)[-1], 250)
        self.assertDeliveredOnce("s1", content, at=a)
        self.set_backends([b])
        self.assertEqual(self.api_reload().status, 200)
        content = message("s2")
        self.assertReply(c.transaction(SENDER, [RCPT], content)[-1], 250,
                         what="the same session's transaction after the reload")
        self.assertDeliveredOnce("s2", content, at=b)

    def test_transaction_in_flight_finishes_on_a_removed_backend(self):
        a, b = self.fault_backend("a"), self.fault_backend("b")
        self.start([a])
        c = self.client()
        self.assertReply(c.cmd("MAIL FROM:<%s>" % SENDER), 250)
        self.assertReply(c.cmd("RCPT TO:<%s>" % RCPT), 250)
        self.assertReply(c.cmd("DATA"), 354)
        self.set_backends([b])
        self.assertEqual(self.api_reload().status, 200)
        content = message("inflight")
        c.send(content + b".\r\n")
        self.assertReply(c.reply(), 250, what="end of data across the reload")
        self.assertDeliveredOnce("inflight", content, at=a)
        # Its session came back to a retired runtime: QUIT, not pooled.
        wait_for(lambda: any(x.upper() == "QUIT" for x in a.commands()), 5,
                 "QUIT to the removed backend once the transaction ended")
        content = message("next")
        self.assertReply(c.transaction(SENDER, [RCPT], content)[-1], 250)
        self.assertDeliveredOnce("next", content, at=b)

    def test_reloads_under_traffic_lose_nothing(self):
        backends = [self.fault_backend(n) for n in "abc"]
        self.start(backends[:2])
        results, errors = [], []
        stop = threading.Event()

        def sender(k):
            i = 0
            while not stop.is_set() or i < 5:
                tid = "t%d-%d" % (k, i)
                try:
                    content = message(tid)
                    code, text = smtplib_send(self.lb.port, SENDER, [RCPT], content)
                    results.append((tid, content, code, text))
                except Exception as e:  # noqa: BLE001 - reported below
                    errors.append((tid, repr(e)))
                i += 1

        threads = [threading.Thread(target=sender, args=(k,)) for k in range(4)]
        for t in threads:
            t.start()
        sets = [backends[1:], backends, backends[:1], backends[::2], backends]
        try:
            for n, chosen in enumerate(sets, start=2):
                wait_for(lambda: len(results) >= 20 * (n - 1), 30, "traffic before reload")
                self.set_backends(chosen)
                if n % 2:
                    self.sighup(n)
                else:
                    r = self.api_reload()
                    self.assertEqual(r.status, 200, r)
                    self.assertEqual(r.json()["generation"], n)
        finally:
            stop.set()
            for t in threads:
                t.join(60)
        self.assertEqual(errors, [])
        self.assertGreaterEqual(len(results), 20 * len(sets))
        for tid, content, code, text in results:
            self.assertEqual(code, 250, "%s: %s" % (tid, text))
            self.assertDeliveredOnce(tid, content, backends=backends)
        stored = sum(len(b.messages()) for b in backends)
        self.assertEqual(stored, len(results), "stored == accepted")
        self.assertEqual(self.generation(), 1 + len(sets))


if __name__ == "__main__":
    import unittest
    unittest.main()
