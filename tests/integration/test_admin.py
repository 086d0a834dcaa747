"""The admin HTTP API over real HTTP (DESIGN.md "Admin, health and identity
details the contract fixes"; SECURITY.md 10) and `smtplb status`.

smtplb runs with `admin: {listen: 127.0.0.1:PORT}` (and `token_file` where
a test needs one) in front of fault backends; requests are made with
http.client, as a script or a scraper would.  Covered: GET /api/pools;
drain, ready and maint (a drained backend gets no new transaction, not even
on a pooled session, while a transaction in flight on it finishes); drain
in the middle of a stream of messages (every message 250 and stored exactly
once, nothing new reaches the drained backend); percent-encoded addresses;
404, 405, 401, 421, 403; /metrics (HELP and TYPE for every family,
smtplb_possible_duplicates_total from start-up, one count per transaction);
an admin port already in use; `smtplb status -c FILE`.
"""

import http.client
import json
import os
import re
import smtplib
import socket
import subprocess
import threading
import time
import unittest

from harness import (HOST, SMTPLB_BIN, IntegrationCase, Process, base_config, free_port,
                     message, port_accepts, smtplib_send, to_yaml, wait_for)

SENDER = "sender@example.org"
RCPT = "rcpt@example.com"
TOKEN = "s3cret-admin-token"

STATUS_COLUMNS = ["POOL", "BACKEND", "STATE", "WEIGHT", "IN_FLIGHT", "CHECKS(ok/failed)",
                  "REASON"]

# Every family /metrics must export (DESIGN.md; the admin model's list).
FAMILIES = {
    "smtplb_transactions_total": "counter",
    "smtplb_transaction_duration_seconds": "histogram",
    "smtplb_possible_duplicates_total": "counter",
    "smtplb_client_connections": "gauge",
    "smtplb_backend_up": "gauge",
    "smtplb_backend_state": "gauge",
    "smtplb_backend_in_flight": "gauge",
    "smtplb_backend_weight": "gauge",
    "smtplb_health_checks_total": "counter",
    "smtplb_backend_left_total": "counter",
    "smtplb_spill_failures_total": "counter",
    "smtplb_accept_errors_total": "counter",
}


class Response:
    def __init__(self, status, headers, body):
        self.status = status
        self.headers = headers  # lower-case names
        self.body = body

    def json(self):
        return json.loads(self.body.decode("utf-8"))

    def __repr__(self):
        return "<HTTP %d %r>" % (self.status, self.body[:300])


class AdminClient:
    """One HTTP/1.1 request per connection, with the right Host (and token)
    unless a test says otherwise."""

    def __init__(self, port, token=None):
        self.port = port
        self.token = token

    @property
    def host(self):
        return "%s:%d" % (HOST, self.port)

    def request(self, method, path, headers=None, token=True):
        h = {"Host": self.host}
        if token and self.token:
            h["Authorization"] = "Bearer " + self.token
        h.update(headers or {})
        h = {k: v for k, v in h.items() if v is not None}
        conn = http.client.HTTPConnection(HOST, self.port, timeout=10)
        try:
            # Host is in `h`, so http.client does not add its own.
            conn.request(method, path, headers=h)
            r = conn.getresponse()
            return Response(r.status, {k.lower(): v for k, v in r.getheaders()}, r.read())
        finally:
            conn.close()

    def get(self, path, **kw):
        return self.request("GET", path, **kw)

    def post(self, path, **kw):
        return self.request("POST", path, **kw)

    def pools(self):
        r = self.get("/api/pools")
        assert r.status == 200, "GET /api/pools: %r" % r
        return r.json()

    def backend(self, address, pool="main"):
        for p in self.pools()["pools"]:
            if p["name"] == pool:
                for b in p["backends"]:
                    if b["address"] == address:
                        return b
        raise AssertionError("no backend %s in pool %s" % (address, pool))

    def state(self, address, pool="main"):
        return self.backend(address, pool)["state"]

    def action(self, action, address, pool="main", **kw):
        return self.post("/api/pools/%s/backends/%s/%s" % (pool, address, action), **kw)

    def metrics(self):
        r = self.get("/metrics")
        assert r.status == 200, "GET /metrics: %r" % r
        return parse_metrics(r.body.decode("utf-8"))


# ---------------------------------------------------------------- Prometheus text

_SAMPLE_RE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?[ \t]+(\S+)(?:[ \t]+\S+)?$')
_LABEL_RE = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


class Metrics:
    def __init__(self, text):
        self.text = text
        self.help = {}
        self.type = {}
        self.samples = []  # (name, labels, value, family)
        self.errors = []

    def family_of(self, name):
        if name in self.type:
            return name
        for suffix in ("_bucket", "_sum", "_count"):
            base = name[:-len(suffix)]
            if name.endswith(suffix) and self.type.get(base) in ("histogram", "summary"):
                return base
        return None

    def values(self, name, **labels):
        return [v for n, l, v, _ in self.samples
                if n == name and all(l.get(k) == want for k, want in labels.items())]

    def value(self, name, **labels):
        """The one sample with exactly these labels (a subset match must be
        unique)."""
        got = [(l, v) for n, l, v, _ in self.samples
               if n == name and all(l.get(k) == want for k, want in labels.items())]
        assert len(got) == 1, "%s%r: %d samples: %r" % (name, labels, len(got), got)
        return got[0][1]


def parse_metrics(text):
    m = Metrics(text)
    families_done = set()
    current = None
    for i, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        if line.startswith("# HELP ") or line.startswith("# TYPE "):
            parts = line.split(None, 3)
            if len(parts) < 4:
                m.errors.append("line %d: malformed %r" % (i, line))
                continue
            kind, name, rest = parts[1], parts[2], parts[3]
            table = m.help if kind == "HELP" else m.type
            if name in table:
                m.errors.append("line %d: second # %s for %s" % (i, kind, name))
            table[name] = rest
            if name in families_done or (current is not None and current != name
                                         and any(s[3] == name for s in m.samples)):
                m.errors.append("line %d: # %s for %s after its samples" % (i, kind, name))
            continue
        if line.startswith("#"):
            continue
        s = _SAMPLE_RE.match(line)
        if not s:
            m.errors.append("line %d: not a sample: %r" % (i, line))
            continue
        name, labels, value = s.group(1), s.group(2), s.group(3)
        family = m.family_of(name)
        if family is None:
            m.errors.append("line %d: sample %s before (or without) its # TYPE" % (i, name))
        if family != current:
            if current is not None:
                families_done.add(current)
            if family in families_done:
                m.errors.append("line %d: samples of %s are not together" % (i, family))
            current = family
        try:
            v = float(value)
        except ValueError:
            m.errors.append("line %d: value %r" % (i, value))
            continue
        m.samples.append((name, dict(_LABEL_RE.findall(labels or "")), v, family))
    return m


# ---------------------------------------------------------------- the tests


class AdminCase(IntegrationCase):

    def start(self, backends, token=None, **over):
        """smtplb in front of `backends` with the admin API on a fresh port;
        returns the AdminClient once that port accepts."""
        port = free_port()
        admin = {"listen": "%s:%d" % (HOST, port)}
        if token is not None:
            path = os.path.join(self.workdir, "admin.token")
            with open(path, "w") as f:
                f.write(token + "\n")
            admin["token_file"] = path
        self.smtplb_for(backends, admin=admin, **over)

        def ready():
            if not self.lb.proc.alive():
                raise AssertionError("smtplb exited:\n%s" % self.lb.log_text()[-2000:])
            return port_accepts(port)

        wait_for(ready, 10, "the admin API to listen on %d" % port)
        self.admin = AdminClient(port, token)
        return self.admin

    def send(self, test_id, sender=SENDER):
        content = message(test_id)
        code, text = smtplib_send(self.lb.port, sender, [RCPT], content)
        self.assertEqual(code, 250, "%s: %s" % (test_id, text))
        return content

    def mails(self, backend):
        """MAIL FROM addresses the backend received, in order."""
        return [re.match(r"(?i)MAIL FROM:<([^>]*)>", c).group(1) for c in backend.commands()
                if c.upper().startswith("MAIL FROM:")]

    def assertState(self, address, want):
        self.assertEqual(self.admin.state(address), want, "state of %s" % address)
        m = self.admin.metrics()
        for s in ("up", "down", "drain", "maint"):
            self.assertEqual(m.value("smtplb_backend_state", pool="main", backend=address, state=s),
                             1 if s == want else 0,
                             "smtplb_backend_state{backend=%s,state=%s}" % (address, s))
        self.assertEqual(m.value("smtplb_backend_up", pool="main", backend=address),
                         1 if want == "up" else 0, "smtplb_backend_up{backend=%s}" % address)


class Api(AdminCase):

    def test_pools_shape_and_states(self):
        a, b = self.fault_backend("a"), self.fault_backend("b")
        admin = self.start([a, b])
        r = admin.get("/api/pools")
        self.assertEqual(r.status, 200, r)
        self.assertTrue(r.headers.get("content-type", "").startswith("application/json"),
                        r.headers)
        self.assertEqual(r.headers.get("cache-control"), "no-store")
        doc = r.json()
        self.assertEqual(list(doc), ["generation", "pools"])
        self.assertEqual(doc["generation"], 1)
        self.assertEqual(len(doc["pools"]), 1)
        pool = doc["pools"][0]
        self.assertEqual(pool["name"], "main")
        self.assertEqual(pool["algorithm"], "round_robin")
        self.assertEqual([x["address"] for x in pool["backends"]], [a.address, b.address])
        for x in pool["backends"]:
            self.assertEqual(x["state"], "up", x)
            self.assertIsInstance(x["reason"], str)
            self.assertEqual(x["weight"], 1, x)
            self.assertEqual(x["in_flight"], 0, x)
            self.assertEqual(x["consecutive_failures"], 0, x)
            self.assertEqual(x["health_checks"], {"ok": 0, "failed": 0}, x)
        # HEAD: the same head, no body.
        h = admin.request("HEAD", "/api/pools")
        self.assertEqual(h.status, 200)
        self.assertEqual(h.body, b"")

    def test_in_flight_transaction_finishes_on_a_drained_backend(self):
        a, b = self.fault_backend("a"), self.fault_backend("b")
        admin = self.start([a, b])
        c = self.client()
        self.assertReply(c.cmd("MAIL FROM:<%s>" % SENDER), 250)
        self.assertReply(c.cmd("RCPT TO:<%s>" % RCPT), 250)
        self.assertReply(c.cmd("DATA"), 354)
        # round_robin, one worker: the first transaction is on a.
        wait_for(lambda: self.mails(a), 5, "MAIL at backend a")
        self.assertEqual(admin.backend(a.address)["in_flight"], 1)
        self.assertEqual(admin.metrics().value("smtplb_backend_in_flight", backend=a.address), 1)
        r = admin.action("drain", a.address)
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.json().get("state"), "drain", r)
        self.assertEqual(admin.state(a.address), "drain")
        content = message("inflight")
        c.send(content + b".\r\n")
        self.assertReply(c.reply(), 250, what="end of data of the transaction in flight")
        self.assertDeliveredOnce("inflight", content, at=a)
        # Its session came free on a drained backend: QUIT, not pooled.
        conn = [e["conn"] for e in a.events("cmd") if e["line"].upper().startswith("MAIL")][0]
        wait_for(lambda: any(e["conn"] == conn and e["line"].upper() == "QUIT"
                             for e in a.events("cmd")), 5,
                 "QUIT on backend a's session once its transaction ended")
        wait_for(lambda: admin.backend(a.address)["in_flight"] == 0, 5, "in_flight 0 on a")
        # The same client session's next transaction goes to b.
        for i in range(3):
            tid = "after-%d" % i
            content = message(tid)
            replies = c.transaction(SENDER, [RCPT], content)
            self.assertReply(replies[-1], 250, what=tid)
            self.assertDeliveredOnce(tid, content, at=b)
        self.assertEqual(len(self.mails(a)), 1)

    def test_drain_sends_everything_to_the_other_backend(self):
        a, b = self.fault_backend("a"), self.fault_backend("b")
        admin = self.start([a, b])
        # Both get traffic first, so each has a pooled session to reuse.
        for i in range(4):
            self.send("warm-%d" % i)
        self.assertEqual((len(a.messages()), len(b.messages())), (2, 2))
        r = admin.action("drain", a.address)
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.json(), {"pool": "main", "backend": a.address, "state": "drain"})
        self.assertState(a.address, "drain")
        self.assertState(b.address, "up")
        reason = admin.backend(a.address)["reason"]
        self.assertTrue(reason, "a drained backend says why")
        mails_a = len(self.mails(a))
        for i in range(10):
            tid = "drained-%d" % i
            content = self.send(tid)
            self.assertDeliveredOnce(tid, content, at=b)
        self.assertEqual(len(self.mails(a)), mails_a, "backend a got a MAIL while drained")
        # Draining twice is harmless.
        self.assertEqual(admin.action("drain", a.address).status, 200)
        self.assertState(a.address, "drain")

    def test_drain_under_traffic(self):
        a, b = self.fault_backend("a"), self.fault_backend("b")
        admin = self.start([a, b])
        total, per_session = 100, 10
        started = {}    # i -> time.time() just before its MAIL was sent
        results = {}    # i -> (code, text) or the exception
        done = [0]
        errors = []

        def traffic():
            try:
                for s0 in range(0, total, per_session):
                    with smtplib.SMTP(HOST, self.lb.port, local_hostname="client.test.example",
                                      timeout=30) as s:
                        s.ehlo()
                        for i in range(s0, s0 + per_session):
                            content = message("tr-%03d" % i)
                            started[i] = time.time()
                            try:
                                s.sendmail("s%03d@example.org" % i, [RCPT], content)
                                results[i] = (250, "")
                            except smtplib.SMTPException as e:
                                results[i] = e
                            done[0] += 1
            except Exception as e:  # noqa: BLE001 - reported by the main thread
                errors.append(e)

        t = threading.Thread(target=traffic, daemon=True)
        t.start()
        wait_for(lambda: done[0] >= 30 or errors or not t.is_alive(), 30, "30 messages sent")
        t_drain_sent = time.time()
        r = admin.action("drain", a.address)
        t_drain_done = time.time()
        self.assertEqual(r.status, 200, r)
        t.join(120)
        self.assertFalse(t.is_alive(), "the traffic thread did not finish")
        self.assertEqual(errors, [])
        first_after = min((i for i in started if started[i] > t_drain_done), default=total)
        self.assertTrue(30 <= first_after < total - 20, "the drain did not land mid-way "
                        "(first message begun after it: %d)" % first_after)
        bad = {i: r for i, r in results.items() if r != (250, "")}
        self.assertEqual(bad, {}, "messages not accepted")
        self.assertEqual(len(results), total)
        for i in range(total):
            tid = "tr-%03d" % i
            self.assertDeliveredOnce(tid, message(tid), backends=[a, b])
        # Backend a's MAILs, in time order: none for a transaction the
        # client began after the drain was answered; at most the one in
        # flight then arrives after it.
        mails = sorted((e["ts"], e["line"]) for e in a.events("cmd")
                       if (e.get("line") or "").upper().startswith("MAIL FROM:"))
        self.assertGreater(len(mails), 5, "backend a took (almost) nothing before the drain")
        late = []
        for ts, line in mails:
            i = int(re.search(r"<s(\d+)@", line).group(1))
            self.assertLess(started[i], t_drain_done,
                            "backend a got MAIL for message %d, begun %.3fs after the drain "
                            "was answered" % (i, started[i] - t_drain_done))
            if ts > t_drain_done:
                late.append(i)
        self.assertLessEqual(len(late), 1, "MAILs at a after the drain: %r" % late)
        # And by where they were stored: everything begun after the drain
        # was answered is at b.
        for i in range(first_after, total):
            self.assertEqual([x.name for x, _ in self.stored("tr-%03d" % i)], ["b"],
                             "message %d, begun after the drain" % i)
        self.assertState(a.address, "drain")

    def test_ready_brings_a_drained_backend_back(self):
        a, b = self.fault_backend("a"), self.fault_backend("b")
        admin = self.start([a, b])
        self.assertEqual(admin.action("drain", a.address).status, 200)
        for i in range(4):
            self.send("drained-%d" % i)
        self.assertEqual(len(a.messages()), 0)
        r = admin.action("ready", a.address)
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.json().get("state"), "ready", r)
        self.assertState(a.address, "up")
        self.assertEqual(admin.backend(a.address)["reason"], "")
        for i in range(6):
            self.send("back-%d" % i)
        self.assertEqual((len(a.messages()), len(b.messages())), (3, 7),
                         "round robin over both again")

    def test_maint(self):
        a, b = self.fault_backend("a"), self.fault_backend("b")
        admin = self.start([a, b])
        self.send("before")
        r = admin.action("maint", a.address)
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.json().get("state"), "maint", r)
        self.assertState(a.address, "maint")
        mails_a = len(self.mails(a))
        for i in range(6):
            tid = "maint-%d" % i
            self.assertDeliveredOnce(tid, self.send(tid), at=b)
        self.assertEqual(len(self.mails(a)), mails_a)
        # From maint straight to drain and back.
        self.assertEqual(admin.action("drain", a.address).status, 200)
        self.assertState(a.address, "drain")
        self.assertEqual(admin.action("ready", a.address).status, 200)
        self.assertState(a.address, "up")

    def test_percent_encoded_address(self):
        a, b = self.fault_backend("a"), self.fault_backend("b")
        admin = self.start([a, b])
        enc = a.address.replace(":", "%3A")
        r = admin.post("/api/pools/main/backends/%s/drain" % enc)
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.json().get("backend"), a.address)
        self.assertState(a.address, "drain")
        # Every octet encoded, lower-case hex, pool name too.
        enc_all = "".join("%%%02x" % ord(ch) for ch in a.address)
        r = admin.post("/api/pools/%%6Dain/backends/%s/ready" % enc_all)
        self.assertEqual(r.status, 200, r)
        self.assertState(a.address, "up")
        self.assertState(b.address, "up")

    def test_every_backend_drained(self):
        # Nothing left to take new mail: the client gets a 4xx (DESIGN.md
        # "no backend could take the mail 451 4.4.x"), neither backend a MAIL.
        a, b = self.fault_backend("a"), self.fault_backend("b")
        admin = self.start([a, b])
        self.send("warm-0")
        self.send("warm-1")
        mails = (len(self.mails(a)), len(self.mails(b)))
        self.assertEqual(admin.action("drain", a.address).status, 200)
        self.assertEqual(admin.action("maint", b.address).status, 200)
        c = self.client()
        replies = c.transaction(SENDER, [RCPT], message("nowhere"))
        # smtplb takes MAIL itself and asks a backend at RCPT.
        self.assertEqual(replies[1].code, 451, "with every backend drained: %r" % replies)
        self.assertEqual(replies[1].enhanced[:4], "4.4.", replies)
        self.assertNotEqual(replies[-1].code, 250, replies)
        self.assertEqual((len(self.mails(a)), len(self.mails(b))), mails)
        self.assertEqual(self.stored("nowhere"), [])
        self.assertEqual(admin.action("ready", b.address).status, 200)
        c.cmd("RSET")
        content = message("somewhere")
        self.assertReply(c.transaction(SENDER, [RCPT], content)[-1], 250)
        self.assertDeliveredOnce("somewhere", content, at=b)

    def test_keep_alive_and_missing_host(self):
        a = self.fault_backend("a")
        admin = self.start([a])
        conn = http.client.HTTPConnection(HOST, admin.port, timeout=10)
        self.addCleanup(conn.close)
        for path in ("/api/pools", "/metrics", "/api/pools?x=1"):
            conn.request("GET", path, headers={"Host": admin.host})
            r = conn.getresponse()
            r.read()
            self.assertEqual(r.status, 200, path)
        conn.request("POST", "/api/pools/main/backends/%s/drain" % a.address,
                     headers={"Host": admin.host})
        r = conn.getresponse()
        r.read()
        self.assertEqual(r.status, 200)
        self.assertEqual(admin.state(a.address), "drain")
        # HTTP/1.0 without Host: which listener it meant is unknown.
        with socket.create_connection((HOST, admin.port), timeout=10) as s:
            s.sendall(b"POST /api/pools/main/backends/%s/ready HTTP/1.0\r\n\r\n"
                      % a.address.encode())
            head = s.recv(4096)
        self.assertRegex(head, rb"^HTTP/1\.[01] 400 ", head)
        self.assertEqual(admin.state(a.address), "drain")

    def test_unknown_pool_or_backend_404(self):
        a, b = self.fault_backend("a"), self.fault_backend("b")
        admin = self.start([a, b])
        other = "%s:%d" % (HOST, free_port())
        for path in ("/api/pools/nosuch/backends/%s/drain" % a.address,
                     "/api/pools/main/backends/%s/drain" % other,
                     "/api/pools/main/backends/%s/maint" % a.address.replace("127.0.0.1",
                                                                             "127.0.0.2"),
                     "/api/pools/main/backends/%s/explode" % a.address,
                     "/api/nothing", "/"):
            with self.subTest(path=path):
                r = admin.post(path)
                self.assertEqual(r.status, 404, r)
                self.assertIn("error", r.json())
        self.assertEqual(admin.get("/api/pools/main").status, 404)
        self.assertState(a.address, "up")
        self.assertState(b.address, "up")

    def test_get_on_action_path_is_405_and_changes_nothing(self):
        a, b = self.fault_backend("a"), self.fault_backend("b")
        admin = self.start([a, b])
        for action in ("drain", "maint", "ready"):
            for method in ("GET", "HEAD", "PUT", "DELETE"):
                with self.subTest(action=action, method=method):
                    r = admin.request(method, "/api/pools/main/backends/%s/%s"
                                      % (a.address, action))
                    self.assertEqual(r.status, 405, r)
                    self.assertIn("POST", r.headers.get("allow", ""), r.headers)
        self.assertState(a.address, "up")
        r = admin.post("/api/pools")
        self.assertEqual(r.status, 405, r)
        self.assertIn("GET", r.headers.get("allow", ""))
        for i in range(4):
            self.send("after-get-%d" % i)
        self.assertEqual((len(a.messages()), len(b.messages())), (2, 2))

    def test_token(self):
        a = self.fault_backend("a")
        admin = self.start([a], token=TOKEN)
        for path in ("/api/pools", "/metrics"):
            with self.subTest(path=path):
                r = admin.get(path, token=False)
                self.assertEqual(r.status, 401, r)
                self.assertTrue(r.headers.get("www-authenticate", "").startswith("Bearer"),
                                r.headers)
                for wrong in ("Bearer wrong", "Bearer " + TOKEN + "x", "Bearer " + TOKEN[:-1],
                              "Basic " + TOKEN, TOKEN, "Bearer "):
                    r = admin.get(path, token=False, headers={"Authorization": wrong})
                    self.assertEqual(r.status, 401, "%s with %r: %r" % (path, wrong, r))
                self.assertEqual(admin.get(path).status, 200)
        r = admin.action("drain", a.address, token=False)
        self.assertEqual(r.status, 401, r)
        r = admin.action("drain", a.address, token=False,
                         headers={"Authorization": "Bearer nope"})
        self.assertEqual(r.status, 401, r)
        self.assertEqual(admin.state(a.address), "up")
        r = admin.action("drain", a.address)
        self.assertEqual(r.status, 200, r)
        self.assertEqual(admin.state(a.address), "drain")

    def test_foreign_host_421(self):
        a = self.fault_backend("a")
        admin = self.start([a])
        for host in ("evil.example:%d" % admin.port, "evil.example", "127.0.0.1",
                     "127.0.0.2:%d" % admin.port, "127.0.0.1:%d" % (admin.port + 1)):
            with self.subTest(host=host):
                r = admin.get("/api/pools", headers={"Host": host})
                self.assertEqual(r.status, 421, r)
                r = admin.action("drain", a.address, headers={"Host": host})
                self.assertEqual(r.status, 421, r)
        self.assertEqual(admin.state(a.address), "up")
        r = admin.get("/api/pools", headers={"Host": "localhost:%d" % admin.port})
        self.assertEqual(r.status, 200, r)
        r = admin.get("/metrics", headers={"Host": "evil.example:%d" % admin.port})
        self.assertEqual(r.status, 421, r)

    def test_post_with_foreign_origin_403(self):
        a = self.fault_backend("a")
        admin = self.start([a])
        for origin in ("http://evil.example", "http://evil.example:%d" % admin.port,
                       "https://127.0.0.1:%d" % admin.port, "null"):
            with self.subTest(origin=origin):
                r = admin.action("drain", a.address, headers={"Origin": origin})
                self.assertEqual(r.status, 403, r)
        self.assertEqual(admin.state(a.address), "up")
        r = admin.action("drain", a.address, headers={"Origin": "http://" + admin.host})
        self.assertEqual(r.status, 200, r)
        self.assertEqual(admin.state(a.address), "drain")
        # A GET with a foreign Origin reads only: answered.
        r = admin.get("/api/pools", headers={"Origin": "http://evil.example"})
        self.assertEqual(r.status, 200, r)


class MetricsEndpoint(AdminCase):

    def test_every_family_has_help_and_type(self):
        a, b = self.fault_backend("a"), self.fault_backend("b")
        admin = self.start([a, b])
        r = admin.get("/metrics")
        self.assertEqual(r.status, 200, r)
        self.assertTrue(r.headers.get("content-type", "").startswith("text/plain"), r.headers)
        m = parse_metrics(r.body.decode("utf-8"))
        self.assertEqual(m.errors, [], "malformed exposition")
        self.assertEqual(sorted(m.help), sorted(m.type), "a family without HELP or TYPE")
        for fam, kind in FAMILIES.items():
            with self.subTest(family=fam):
                self.assertIn(fam, m.help)
                self.assertEqual(m.type.get(fam), kind)
        # From start-up, before any traffic.
        self.assertEqual(m.value("smtplb_possible_duplicates_total"), 0)
        self.assertIn("\nsmtplb_possible_duplicates_total 0\n", "\n" + m.text)
        self.assertEqual(sum(m.values("smtplb_transactions_total")), 0)
        self.assertEqual(m.value("smtplb_transaction_duration_seconds_count"), 0)
        for x in (a, b):
            self.assertEqual(m.value("smtplb_backend_weight", pool="main", backend=x.address), 1)
            self.assertEqual(m.value("smtplb_backend_in_flight", pool="main", backend=x.address),
                             0)

    def test_transactions_counted_once_with_labels(self):
        a, b = self.fault_backend("a"), self.fault_backend("b")
        admin = self.start([a, b])
        for i in range(3):
            self.send("count-%d" % i)
        self.lb.wait_transactions(3)
        stored = {x.address: len(x.messages()) for x in (a, b)}
        self.assertEqual(sum(stored.values()), 3)

        def delivered_sum():
            m = admin.metrics()
            return sum(m.values("smtplb_transactions_total", result="delivered")) >= 3 and m

        m = wait_for(delivered_sum, 5, "3 delivered transactions in /metrics")
        self.assertEqual(m.errors, [])
        for addr, n in stored.items():
            self.assertEqual(m.value("smtplb_transactions_total", listener="mx", pool="main",
                                     backend=addr, result="delivered"), n,
                             "delivered count of %s" % addr)
        nonzero = [(l, v) for n, l, v, _ in m.samples
                   if n == "smtplb_transactions_total" and v]
        self.assertEqual(sum(v for _, v in nonzero), 3,
                         "each transaction counted once, in one series: %r" % nonzero)
        for l, _ in nonzero:
            self.assertEqual(set(l), {"listener", "pool", "backend", "result"})
        self.assertEqual(m.value("smtplb_transaction_duration_seconds_count"), 3)
        self.assertEqual(m.value("smtplb_transaction_duration_seconds_bucket", le="+Inf"), 3)
        self.assertEqual(m.value("smtplb_possible_duplicates_total"), 0)
        # Asking again counts nothing more.
        m2 = admin.metrics()
        self.assertEqual(sum(m2.values("smtplb_transactions_total")), 3)

    def test_failover_counted_once(self):
        # a answers 451 at end of data: the message is replayed on b, and
        # the transaction is counted once, for b, with a's 4xx as a left.
        a = self.fault_backend("a", eod_reply="451 4.3.0 try later")
        b = self.fault_backend("b")
        admin = self.start([a, b])
        content = self.send("failover")
        self.assertDeliveredOnce("failover", content, at=b)
        self.assertEqual(len(a.faults_fired()), 1)
        m = wait_for(lambda: (lambda m: sum(m.values("smtplb_transactions_total")) >= 1 and m)(
            admin.metrics()), 5, "the transaction in /metrics")
        self.assertEqual(m.value("smtplb_transactions_total", pool="main", backend=b.address,
                                 result="delivered"), 1)
        self.assertEqual(sum(m.values("smtplb_transactions_total")), 1)
        self.assertEqual(m.value("smtplb_backend_left_total", backend=a.address, reason="4xx"), 1)
        self.assertEqual(sum(m.values("smtplb_backend_left_total")), 1)
        self.assertEqual(m.value("smtplb_possible_duplicates_total"), 0)

    def test_silent_final_dot_is_a_possible_duplicate(self):
        a = self.fault_backend("a", drop_data_after="eod")
        b = self.fault_backend("b")
        admin = self.start([a, b])
        content = self.send("maybe-dup")
        self.assertDeliveredOnce("maybe-dup", content, at=b)
        self.assertEqual(len(a.faults_fired()), 1)
        m = wait_for(lambda: (lambda m: m.value("smtplb_possible_duplicates_total") >= 1 and m)(
            admin.metrics()), 5, "smtplb_possible_duplicates_total 1")
        self.assertEqual(m.value("smtplb_possible_duplicates_total"), 1)
        # A close after the final dot is "dropped"; no reply at all within
        # backend_data_done would be "silent_final_dot": either is a maybe.
        self.assertEqual(sum(m.values("smtplb_backend_left_total", backend=a.address,
                                      reason="dropped")) +
                         sum(m.values("smtplb_backend_left_total", backend=a.address,
                                      reason="silent_final_dot")), 1)
        self.assertEqual(sum(m.values("smtplb_backend_left_total")), 1)
        self.assertEqual(m.value("smtplb_transactions_total", pool="main", backend=b.address,
                                 result="delivered"), 1)
        self.assertEqual(sum(m.values("smtplb_transactions_total")), 1)

    def test_rejected_counted_for_the_backend(self):
        a = self.fault_backend("a", eod_reply="554 5.6.0 not this one")
        admin = self.start([a])
        code, text = smtplib_send(self.lb.port, SENDER, [RCPT], message("rejected"))
        self.assertEqual(code, 554, text)
        m = wait_for(lambda: (lambda m: sum(m.values("smtplb_transactions_total")) >= 1 and m)(
            admin.metrics()), 5, "the transaction in /metrics")
        self.assertEqual(m.value("smtplb_transactions_total", listener="mx", pool="main",
                                 backend=a.address, result="rejected"), 1)
        self.assertEqual(sum(m.values("smtplb_transactions_total")), 1)

    def test_client_connections_gauge(self):
        a = self.fault_backend("a")
        admin = self.start([a])
        # start() knew smtplb was up by connecting to it: that probe's
        # session ends on its own, a moment later.
        wait_for(lambda: admin.metrics().value("smtplb_client_connections") == 0, 5,
                 "smtplb_client_connections 0 before any client")
        c = self.client()
        wait_for(lambda: admin.metrics().value("smtplb_client_connections") == 1, 5,
                 "smtplb_client_connections 1")
        c.cmd("QUIT")
        c.close()
        wait_for(lambda: admin.metrics().value("smtplb_client_connections") == 0, 5,
                 "smtplb_client_connections 0")


class StartUp(IntegrationCase):

    def test_admin_port_in_use_exits_1(self):
        a = self.fault_backend("a")
        busy = socket.socket()
        self.addCleanup(busy.close)
        busy.bind((HOST, 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        cfg = base_config(free_port(), [a.address], admin={"listen": "%s:%d" % (HOST, port)})
        path = os.path.join(self.workdir, "smtplb.yaml")
        with open(path, "w") as f:
            f.write(to_yaml(cfg) + "\n")
        p = Process([SMTPLB_BIN, "run", "-c", path], os.path.join(self.workdir, "smtplb.log"))
        self.procs.append(p)
        rc = p.wait(10)
        log = p.log_text()
        self.assertEqual(rc, 1, "exit status with the admin port taken; log:\n%s" % log)
        self.assertIn("%s:%d" % (HOST, port), log)
        self.assertRegex(log.lower(), r"admin")
        self.assertRegex(log.lower(), r"in use")


# ---------------------------------------------------------------- smtplb status


def parse_status(stdout):
    """(header, [row dicts]) of the status table; checks that every cell
    starts where its header does."""
    lines = stdout.splitlines()
    assert lines, "no output"
    header = lines[0]
    cols = header.split()
    assert cols == STATUS_COLUMNS, "header %r" % header
    starts = [header.index(c) for c in cols]
    rows = []
    for line in lines[1:]:
        cells = []
        for k, st in enumerate(starts):
            assert len(line) >= st, "row %r shorter than column %s" % (line, cols[k])
            assert st == 0 or line[st - 1] == " ", "column %s misaligned in %r" % (cols[k], line)
            end = starts[k + 1] if k + 1 < len(starts) else len(line)
            cells.append(line[st:end].strip())
        for k, cell in enumerate(cells[:-1]):
            assert cell and " " not in cell, "cell %s of %r: %r" % (cols[k], line, cell)
        rows.append(dict(zip(cols, cells)))
    return header, rows


class Status(AdminCase):

    def run_status(self, config_path=None, timeout=20):
        t0 = time.monotonic()
        p = subprocess.run([SMTPLB_BIN, "status", "-c", config_path or self.lb.config_path],
                           stdin=subprocess.DEVNULL, capture_output=True, text=True,
                           timeout=timeout)
        return p.returncode, p.stdout, p.stderr, time.monotonic() - t0

    def write_config(self, name, **over):
        cfg = base_config(free_port(), ["127.0.0.1:1"], **over)
        path = os.path.join(self.workdir, name)
        with open(path, "w") as f:
            f.write(to_yaml(cfg) + "\n")
        return path

    def test_table(self):
        a, b = self.fault_backend("a"), self.fault_backend("b")
        admin = self.start([a, b])
        self.assertEqual(admin.action("drain", a.address).status, 200)
        rc, out, err, _ = self.run_status()
        self.assertEqual(rc, 0, "stdout %r stderr %r" % (out, err))
        _, rows = parse_status(out)
        self.assertEqual([(r["POOL"], r["BACKEND"]) for r in rows],
                         [("main", a.address), ("main", b.address)])
        ra, rb = rows
        self.assertEqual((ra["STATE"], ra["WEIGHT"], ra["IN_FLIGHT"], ra["CHECKS(ok/failed)"]),
                         ("drain", "1", "0", "0/0"))
        self.assertEqual(ra["REASON"], admin.backend(a.address)["reason"])
        self.assertEqual((rb["STATE"], rb["WEIGHT"], rb["IN_FLIGHT"], rb["CHECKS(ok/failed)"]),
                         ("up", "1", "0", "0/0"))
        self.assertIn(rb["REASON"], ("", "-"))
        self.assertEqual(admin.action("maint", b.address).status, 200)
        rc, out, err, _ = self.run_status()
        self.assertEqual(rc, 0, err)
        self.assertEqual([r["STATE"] for r in parse_status(out)[1]], ["drain", "maint"])

    def test_table_with_health_checks_and_a_down_backend(self):
        a = self.fault_backend("a")
        b = self.fault_backend("b", refuse=True)
        pools = [{"name": "main", "algorithm": "round_robin",
                  "backends": [{"address": a.address, "weight": 3}, {"address": b.address}],
                  "health_check": {"interval": "100ms", "timeout": "1s", "rise": 1, "fall": 1}}]
        admin = self.start([a, b], pools=pools)
        wait_for(lambda: admin.state(b.address) == "down"
                 and admin.backend(a.address)["health_checks"]["ok"] >= 1, 10,
                 "checks to mark b down and pass on a")
        rc, out, err, _ = self.run_status()
        self.assertEqual(rc, 0, err)
        rows = {r["BACKEND"]: r for r in parse_status(out)[1]}
        self.assertEqual(rows[a.address]["STATE"], "up")
        self.assertEqual(rows[a.address]["WEIGHT"], "3")
        ok, failed = rows[a.address]["CHECKS(ok/failed)"].split("/")
        self.assertGreaterEqual(int(ok), 1)
        self.assertEqual(rows[b.address]["STATE"], "down")
        ok, failed = rows[b.address]["CHECKS(ok/failed)"].split("/")
        self.assertGreaterEqual(int(failed), 1)
        self.assertNotIn(rows[b.address]["REASON"], ("", "-"), "a down backend says why")

    def test_token(self):
        a = self.fault_backend("a")
        self.start([a], token=TOKEN)
        rc, out, err, _ = self.run_status()
        self.assertEqual(rc, 0, err)
        self.assertEqual([r["BACKEND"] for r in parse_status(out)[1]], [a.address])
        # The same listener, with a wrong token and with none.
        wrong = os.path.join(self.workdir, "wrong.token")
        with open(wrong, "w") as f:
            f.write("not-the-token\n")
        listen = self.lb.config["admin"]["listen"]
        for name, admin in (("wrong.yaml", {"listen": listen, "token_file": wrong}),
                            ("none.yaml", {"listen": listen})):
            with self.subTest(config=name):
                rc, out, err, _ = self.run_status(self.write_config(name, admin=admin))
                self.assertEqual(rc, 1, "stdout %r stderr %r" % (out, err))
                self.assertEqual(out, "")
                self.assertIn("401", err)
        missing = {"listen": listen, "token_file": os.path.join(self.workdir, "missing")}
        rc, out, err, _ = self.run_status(self.write_config("missing.yaml", admin=missing))
        self.assertEqual(rc, 1)
        self.assertIn("token_file", err)

    def test_wildcard_listen_is_asked_on_loopback(self):
        # 0.0.0.0: status connects to 127.0.0.1 and names it in Host (a
        # token, as the API is reachable from outside meanwhile).
        a = self.fault_backend("a")
        port = free_port()
        token = os.path.join(self.workdir, "admin.token")
        with open(token, "w") as f:
            f.write(TOKEN + "\n")
        self.smtplb_for([a], admin={"listen": "0.0.0.0:%d" % port, "token_file": token})
        wait_for(lambda: port_accepts(port), 10, "the admin API to listen")
        rc, out, err, _ = self.run_status()
        self.assertEqual(rc, 0, err)
        self.assertEqual([r["BACKEND"] for r in parse_status(out)[1]], [a.address])

    def test_ipv6_listen(self):
        try:
            s = socket.socket(socket.AF_INET6)
            s.bind(("::1", 0))
            port = s.getsockname()[1]
            s.close()
        except OSError:
            self.skipTest("no IPv6 loopback")
        a = self.fault_backend("a")
        self.smtplb_for([a], admin={"listen": "[::1]:%d" % port})

        def accepts():
            try:
                socket.create_connection(("::1", port), timeout=0.5).close()
                return True
            except OSError:
                return False

        wait_for(accepts, 10, "the admin API to listen on [::1]:%d" % port)
        rc, out, err, _ = self.run_status()
        self.assertEqual(rc, 0, err)
        self.assertEqual([r["STATE"] for r in parse_status(out)[1]], ["up"])

    def test_no_admin_section(self):
        rc, out, err, _ = self.run_status(self.write_config("plain.yaml"))
        self.assertEqual(rc, 1)
        self.assertEqual(out, "")
        self.assertIn("admin", err)

    def test_api_unreachable(self):
        port = free_port()
        path = self.write_config("down.yaml", admin={"listen": "%s:%d" % (HOST, port)})
        rc, out, err, took = self.run_status(path)
        self.assertEqual(rc, 1)
        self.assertEqual(out, "")
        self.assertIn("%s:%d" % (HOST, port), err)
        self.assertIn("cannot reach", err)
        self.assertLess(took, 5)

    def test_api_silent_times_out(self):
        # A listener that accepts (in the kernel) and never answers.
        silent = socket.socket()
        self.addCleanup(silent.close)
        silent.bind((HOST, 0))
        silent.listen(4)
        port = silent.getsockname()[1]
        path = self.write_config("silent.yaml", admin={"listen": "%s:%d" % (HOST, port)})
        rc, out, err, took = self.run_status(path)
        self.assertEqual(rc, 1, err)
        self.assertIn("5s", err)
        self.assertGreaterEqual(took, 4.5)
        self.assertLess(took, 9)

    def test_bad_config(self):
        path = os.path.join(self.workdir, "bad.yaml")
        with open(path, "w") as f:
            f.write("listeners: nope\n")
        rc, out, err, _ = self.run_status(path)
        self.assertEqual(rc, 1)
        self.assertIn("bad.yaml", err)


if __name__ == "__main__":
    unittest.main()
