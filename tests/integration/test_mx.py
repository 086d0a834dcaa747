"""MX pools (issue "MX pools"): backends found in DNS.

A real dnsmasq on a free 127.0.0.1 port answers for the zone "test."
(authoritatively, `--auth-server=ns.test,127.0.0.1 --auth-zone=test`, so an
unknown name is NXDOMAIN and a name without the type asked is NODATA, not
REFUSED) with each test's own `--mx-host` / `--host-record` records and a
TTL of 1 s (`--auth-ttl=1`, with smtplb's `dns: {min_ttl: 1s}`).  The mail
hosts are fault backends on distinct loopback addresses (127.0.0.2,
127.0.0.3, ...), all on ONE port: the pool's `port:`.  Skipped when dnsmasq
is not installed.

Covered:
* `mx: DOMAIN`: equal preferences share the mail at random (a binomial
  bound), a higher preference gets none while the lower ones work; hosts
  that do not listen are passed over for the next preference, in one
  transaction even with `retries: 0`; the implicit MX (a domain with only
  an A record); a change of the records shows once the TTL runs out
  (/api/pools, `event=mx_hosts`, `event=generation trigger=dns`) and mail
  follows it; a resolver that stops answering keeps the last good hosts
  (`event=mx_refresh_failed`, smtplb_mx_refresh_failures_total); an MX host
  that is smtplb's own listener is refused (`event=mx_host_refused`).
* `mx: recipient`: the RCPT replies for a null MX (556 5.1.10), NXDOMAIN
  and a name with neither MX nor address (550 5.1.2), SERVFAIL (dnsmasq
  relaying an upstream's SERVFAIL) and a DNS server that never answers
  (451 4.4.3, within dns.timeout x dns.attempts); every host unreachable
  (451 4.4.1 once each was tried); one recipient domain per transaction
  (452 4.5.3 for a second one, which a new transaction then delivers).

The SERVFAIL test's dnsmasq is not authoritative-only (`--auth-server=ns.test`
without the interface), so that it forwards broken.invalid to a small UDP
responder answering SERVFAIL: dnsmasq itself answers REFUSED in auth-only
mode and nothing at all when its upstream is down.
"""

import math
import os
import random
import re
import signal
import socket
import struct
import threading
import time
import unittest

from harness import (HOST, FaultBackend, IntegrationCase, Process, base_config, dot_stuff,
                     find_tool, free_port, message, parse_kv, port_accepts, smtplib_send,
                     split_received, wait_for)
from test_admin import AdminClient

DNSMASQ = find_tool("dnsmasq")
SENDER = "sender@example.org"

# The resolver settings of every test: answers kept 1 s (dnsmasq's TTL is
# 1 s too), 500 ms per attempt, two attempts.
DNS_TIMEOUT_S = 0.5
DNS_ATTEMPTS = 2


# ---------------------------------------------------------------- DNS helpers


def free_dns_port():
    """A port free for both UDP and TCP on 127.0.0.1 just now."""
    while True:
        u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        u.bind((HOST, 0))
        port = u.getsockname()[1]
        t = socket.socket()
        try:
            t.bind((HOST, port))
            return port
        except OSError:
            continue
        finally:
            t.close()
            u.close()


def dns_query(port, name, qtype, timeout=2.0):
    """Asks 127.0.0.1:port one question over UDP; returns (rcode, answer
    count), or None when nothing came back."""
    qid = random.randrange(65536)
    q = struct.pack("!HHHHHH", qid, 0x0100, 1, 0, 0, 0)
    for label in name.rstrip(".").split("."):
        q += bytes([len(label)]) + label.encode()
    q += b"\0" + struct.pack("!HH", {"A": 1, "MX": 15, "AAAA": 28}[qtype], 1)
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        s.settimeout(timeout)
        s.sendto(q, (HOST, port))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                data, _ = s.recvfrom(4096)
            except OSError:  # a timeout, or an ICMP port unreachable
                return None
            if len(data) >= 12 and struct.unpack("!H", data[:2])[0] == qid:
                flags, _, an = struct.unpack("!HHH", data[2:8])
                return flags & 0xF, an
        return None
    finally:
        s.close()


class Dnsmasq:
    """dnsmasq in the foreground on 127.0.0.1:port, answering for "test."
    from its command-line records; ready once it logs "started" (its
    sockets are bound before that line)."""

    def __init__(self, case, records, port=None, auth_interface=True, name="dnsmasq"):
        self.case = case
        self.records = list(records)
        self.port = port
        self.auth_interface = auth_interface
        self.log_path = os.path.join(case.workdir, name + ".log")
        self.proc = None

    def argv(self, port):
        # With the interface, dnsmasq answers queries to 127.0.0.1 only from
        # its zone (a negative answer carries the SOA, whose minimum is the
        # 1 s TTL) and REFUSEs the rest; without it, it answers the zone the
        # same way to local queries and forwards the rest (`--server=`).
        auth = "ns.test,127.0.0.1" if self.auth_interface else "ns.test"
        return [DNSMASQ, "--no-resolv", "--no-hosts", "--port=%d" % port,
                "--listen-address=127.0.0.1", "--bind-interfaces", "--keep-in-foreground",
                "--conf-file=/dev/null", "--pid-file=", "--log-facility=-",
                "--auth-server=" + auth, "--auth-zone=test", "--auth-ttl=1"] + self.records

    def start(self, records=None, timeout=10):
        if records is not None:
            self.records = list(records)
        fixed = self.port is not None
        for _ in range(1 if fixed else 5):
            port = self.port if fixed else free_dns_port()
            with open(self.log_path, "ab") as f:
                start_offset = f.tell()
            proc = Process(self.argv(port), self.log_path)
            self.case.procs.append(proc)

            def started():
                with open(self.log_path, "rb") as f:
                    f.seek(start_offset)
                    text = f.read().decode("utf-8", "replace")
                if re.search(r"dnsmasq\[%d\]: started" % proc.pid, text):
                    return "started"
                if not proc.alive():
                    return "exited"
                return None

            if wait_for(started, timeout, "dnsmasq to start") == "started":
                self.proc, self.port = proc, port
                return self
            proc.kill()
        raise AssertionError("dnsmasq did not start:\n%s" % open(self.log_path).read()[-2000:])

    def stop(self):
        self.proc.signal(signal.SIGTERM)
        if self.proc.wait(10) is None:
            self.proc.kill()

    def restart(self, records):
        """A new dnsmasq on the same port with other records."""
        self.stop()
        return self.start(records)


def question_name(packet):
    """The QNAME of a DNS query, dotted and lower case ("" when malformed)."""
    labels, i = [], 12
    while i < len(packet) and packet[i] != 0:
        n = packet[i]
        if n > 63:
            return ""
        labels.append(packet[i + 1:i + 1 + n].decode("ascii", "replace").lower())
        i += 1 + n
    return ".".join(labels)


class UdpResponder:
    """A UDP socket on 127.0.0.1 that counts the questions it gets and
    answers each with `rcode` (None: never answers)."""

    def __init__(self, case, rcode=None):
        self.rcode = rcode
        self.queries = 0
        self.names = set()  # the question names seen, lower case
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((HOST, 0))
        self.sock.settimeout(0.1)
        self.port = self.sock.getsockname()[1]
        self.done = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()
        case.addCleanup(self.close)

    def run(self):
        while not self.done.is_set():
            try:
                data, peer = self.sock.recvfrom(4096)
            except socket.timeout:
                continue
            except OSError:
                return
            if len(data) < 12:
                continue
            self.queries += 1
            self.names.add(question_name(data))
            if self.rcode is None:
                continue
            flags = struct.unpack("!H", data[2:4])[0]
            # QR, the question's opcode and RD, RA, the RCODE; the question
            # echoed, no records.
            rflags = 0x8000 | (flags & 0x7900) | 0x0080 | self.rcode
            qdcount = struct.unpack("!H", data[4:6])[0]
            self.sock.sendto(data[:2] + struct.pack("!HHHHH", rflags, qdcount, 0, 0, 0)
                             + data[12:], peer)

    def close(self):
        self.done.set()
        self.thread.join(5)
        self.sock.close()


class LoopbackBackend(FaultBackend):
    """A fault backend listening on another loopback address."""

    def __init__(self, case, name, host, port, **faults):
        super().__init__(case, name, port=port, host=host, **faults)
        self.host = host

    @property
    def address(self):
        return "%s:%d" % (self.host, self.port)


def accepts(host, port):
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def free_port_on(host):
    s = socket.socket()
    s.bind((host, 0))
    port = s.getsockname()[1]
    s.close()
    return port


def binomial_bound(n, p, sigmas=4.5):
    """[lo, hi] holding Binomial(n, p) but for a ~1e-5 chance (4.5 sigma)."""
    mean = n * p
    sd = math.sqrt(n * p * (1 - p))
    return int(math.floor(mean - sigmas * sd)), int(math.ceil(mean + sigmas * sd))


# ---------------------------------------------------------------- the base


@unittest.skipUnless(DNSMASQ, "dnsmasq is not installed")
class MxCase(IntegrationCase):

    def dnsmasq(self, records, **kw):
        self.dns = Dnsmasq(self, records, **kw).start()
        return self.dns

    def host_backend(self, name, host, port, **faults):
        b = LoopbackBackend(self, name, host, port, **faults).start()
        self.backends.append(b)
        return b

    def start_mx(self, pools, dns_servers, listen_port=None, routes=None, dns=None):
        """smtplb with `pools` (each a dict; the first is "main"), the
        resolver at `dns_servers` and the admin API."""
        self.admin_port = free_port()
        d = {"servers": list(dns_servers), "timeout": "%dms" % int(DNS_TIMEOUT_S * 1000),
             "attempts": DNS_ATTEMPTS, "min_ttl": "1s"}
        d.update(dns or {})
        cfg = base_config(listen_port or free_port(), [],
                          pools=pools, routes=routes or [{"pool": pools[0]["name"]}], dns=d,
                          admin={"listen": "%s:%d" % (HOST, self.admin_port)})
        self.start_smtplb(cfg)
        wait_for(lambda: port_accepts(self.admin_port), 10, "the admin API")
        self.admin = AdminClient(self.admin_port)
        return self.lb

    def pool_doc(self, name="main"):
        for p in self.admin.pools()["pools"]:
            if p["name"] == name:
                return p
        raise AssertionError("no pool %s in /api/pools" % name)

    def wait_pool(self, want, name="main", timeout=10):
        """Polls /api/pools until pool `name` has exactly the backends
        `want` ({address: (mx_host, preference)}); returns the pool."""
        def got():
            p = self.pool_doc(name)
            have = {b["address"]: (b.get("mx_host"), b.get("preference")) for b in p["backends"]}
            return p if have == want else None
        try:
            return wait_for(got, timeout, "pool %s to hold %s" % (name, want), interval=0.1)
        except AssertionError:
            raise AssertionError("pool %s never held %r; last /api/pools: %r"
                                 % (name, want, self.pool_doc(name)))

    def send(self, test_id, rcpt="rcpt@example.com"):
        content = message(test_id, rcpt=rcpt)
        code, text = smtplib_send(self.lb.port, SENDER, [rcpt], content)
        self.assertEqual(code, 250, "%s: %s" % (test_id, text))
        return content

    def rcpt_reply(self, rcpt):
        """A fresh session's reply to RCPT `rcpt` (and the time it took)."""
        c = self.client()
        self.assertReply(c.cmd("MAIL FROM:<%s>" % SENDER), 250)
        t0 = time.monotonic()
        r = c.cmd("RCPT TO:<%s>" % rcpt)
        took = time.monotonic() - t0
        c.cmd("QUIT")
        return r, took

    def assertStoredOnceEach(self, sent, backends):
        """Every (test_id -> content) of `sent` stored exactly once among
        `backends`, byte-exact after smtplb's Received: field, and nothing
        else stored; returns {test_id: backend}.  (assertDeliveredOnce,
        reading each store once for many messages.)"""
        where = {}
        for b in backends:
            for m in b.messages():
                where.setdefault(m["test_id"], []).append((b, m))
        self.assertEqual(sorted(set(where) - set(sent)), [], "stored but never sent")
        out = {}
        for tid, content in sent.items():
            found = where.get(tid, [])
            self.assertEqual(len(found), 1, "message %s stored %d times (%s), want exactly once"
                             % (tid, len(found), [b.name for b, _ in found]))
            b, m = found[0]
            received, rest = split_received(m["eml"])
            self.assertIsNotNone(received, "message %s has no Received: field" % tid)
            self.assertIn(b"by lb.test.example", received.replace(b"\r\n", b" "))
            self.assertBytesEqual(rest, content, "message %s after the Received: field" % tid)
            out[tid] = b
        return out

    def mails(self, backend):
        return [c for c in backend.commands() if c.upper().startswith("MAIL FROM:")]


# ---------------------------------------------------------------- mx: DOMAIN


class MxDomain(MxCase):

    def test_equal_preferences_share_at_random_higher_preference_gets_none(self):
        port = free_port_on("127.0.0.2")
        a = self.host_backend("a", "127.0.0.2", port)
        b = self.host_backend("b", "127.0.0.3", port)
        c = self.host_backend("c", "127.0.0.4", port)
        dns = self.dnsmasq(["--mx-host=example.test,mx-a.example.test,10",
                            "--mx-host=example.test,mx-b.example.test,10",
                            "--mx-host=example.test,mx-c.example.test,20",
                            "--host-record=mx-a.example.test,127.0.0.2",
                            "--host-record=mx-b.example.test,127.0.0.3",
                            "--host-record=mx-c.example.test,127.0.0.4"])
        self.start_mx([{"name": "main", "algorithm": "round_robin", "mx": "example.test",
                        "port": port}], ["127.0.0.1:%d" % dns.port])
        pool = self.wait_pool({a.address: ("mx-a.example.test", 10),
                               b.address: ("mx-b.example.test", 10),
                               c.address: ("mx-c.example.test", 20)})
        self.assertEqual(pool["mx"], "example.test")
        self.lb.wait_log(r"event=mx_hosts .*pool=main .*domain=example\.test ")
        n = 200
        sent = {}
        session = self.client()
        for i in range(n):
            tid = "spread-%d" % i
            content = message(tid)
            replies = session.transaction(SENDER, ["rcpt@example.com"], content)
            self.assertReply(replies[-1], 250, what=tid)
            sent[tid] = content
        at = self.assertStoredOnceEach(sent, [a, b, c])
        order = [at["spread-%d" % i].name for i in range(n)]
        counts = {x.name: order.count(x.name) for x in (a, b, c)}
        lo, hi = binomial_bound(n, 0.5)  # 200 at p=1/2: 100 +- 32
        self.assertEqual(counts["c"], 0, "the preference-20 host got mail: %r" % counts)
        self.assertEqual(self.mails(c), [], "the preference-20 host was even tried")
        for name in ("a", "b"):
            self.assertTrue(lo <= counts[name] <= hi,
                            "host %s got %d of %d, want %d..%d (Binomial(%d, 1/2), 4.5 sigma): %r"
                            % (name, counts[name], n, lo, hi, n, counts))
        # Uniform random per transaction, not alternation: the number of
        # runs of one host (Wald-Wolfowitz) is about 1 + (n-1)/2, +- 4.5 sigma;
        # strict round robin would make it n.
        runs = 1 + sum(1 for i in range(1, n) if order[i] != order[i - 1])
        mean = 1 + (n - 1) / 2
        sd = math.sqrt(n - 1) / 2
        self.assertTrue(abs(runs - mean) <= 4.5 * sd,
                        "%d runs in the order of hosts, want %.0f +- %.0f: %s"
                        % (runs, mean, 4.5 * sd, "".join(order)))
        txs = self.lb.wait_transactions(n)
        self.assertEqual([t for t in txs if t["result"] != "delivered" or t["tried"]], [],
                         "every transaction delivered at its first host")

    def test_hosts_not_listening_fall_through_to_next_preference(self):
        port = free_port_on("127.0.0.4")
        # mx-a and mx-b (127.0.0.2, 127.0.0.3) have nothing listening on
        # the port: connections are refused.
        c = self.host_backend("c", "127.0.0.4", port)
        for h in ("127.0.0.2", "127.0.0.3"):
            self.assertFalse(accepts(h, port), "something listens on %s:%d" % (h, port))
        dns = self.dnsmasq(["--mx-host=example.test,mx-a.example.test,10",
                            "--mx-host=example.test,mx-b.example.test,10",
                            "--mx-host=example.test,mx-c.example.test,20",
                            "--host-record=mx-a.example.test,127.0.0.2",
                            "--host-record=mx-b.example.test,127.0.0.3",
                            "--host-record=mx-c.example.test,127.0.0.4"])
        # retries: 0 would allow one backend per transaction; an MX pool
        # may try every host.
        self.start_mx([{"name": "main", "algorithm": "round_robin", "retries": 0,
                        "mx": "example.test", "port": port}], ["127.0.0.1:%d" % dns.port])
        dead = ["127.0.0.2:%d" % port, "127.0.0.3:%d" % port]
        self.wait_pool({dead[0]: ("mx-a.example.test", 10), dead[1]: ("mx-b.example.test", 10),
                        c.address: ("mx-c.example.test", 20)})
        sent = {}
        for i in range(10):
            tid = "fall-%d" % i
            sent[tid] = self.send(tid)  # 250, or send() fails
        at = self.assertStoredOnceEach(sent, [c])
        self.assertEqual(set(x.name for x in at.values()), {"c"})
        txs = self.lb.wait_transactions(10)
        self.assertEqual([t["backend"] for t in txs], [c.address] * 10)
        # The first transaction tried both preference-10 hosts before mx-c
        # (three hosts with retries: 0).
        tried = txs[0]["tried"].split(",")
        self.assertEqual(sorted(t.rsplit(":", 1)[0] for t in tried), sorted(dead),
                         "the first transaction's failed tries: %r" % txs[0])
        # Then they are known down (for about a second): the next
        # transaction puts them last and goes straight to mx-c.
        self.assertEqual(txs[1]["tried"], "", "the second transaction: %r" % txs[1])

    def test_implicit_mx_is_the_domains_address(self):
        port = free_port_on("127.0.0.2")
        a = self.host_backend("a", "127.0.0.2", port)
        # implicit.test has an A record and no MX.
        dns = self.dnsmasq(["--host-record=implicit.test,127.0.0.2"])
        self.assertEqual(dns_query(dns.port, "implicit.test", "MX"), (0, 0), "NODATA for MX")
        self.start_mx([{"name": "main", "mx": "implicit.test", "port": port},
                       {"name": "rcpt", "mx": "recipient", "port": port}],
                      ["127.0.0.1:%d" % dns.port],
                      routes=[{"pool": "main", "recipient_domain": ["example.com"]},
                              {"pool": "rcpt"}])
        # mx: DOMAIN: the domain itself is the host, at preference 0.
        pool = self.wait_pool({a.address: ("implicit.test", 0)})
        self.assertEqual(pool["mx"], "implicit.test")
        self.assertEqual(self.pool_doc("rcpt")["mx"], "recipient")
        content = self.send("implicit-domain", rcpt="rcpt@example.com")
        self.assertDeliveredOnce("implicit-domain", content, at=a, rcpts=["rcpt@example.com"])
        # mx: recipient: mail for user@implicit.test goes to its address.
        content = self.send("implicit-rcpt", rcpt="user@implicit.test")
        self.assertDeliveredOnce("implicit-rcpt", content, at=a, rcpts=["user@implicit.test"])
        txs = self.lb.wait_transactions(2)
        self.assertEqual([(t["pool"], t["backend"], t["result"]) for t in txs],
                         [("main", a.address, "delivered"), ("rcpt", a.address, "delivered")])

    def test_changed_records_show_after_the_ttl_and_mail_follows(self):
        port = free_port_on("127.0.0.2")
        a = self.host_backend("a", "127.0.0.2", port)
        b = self.host_backend("b", "127.0.0.3", port)
        dns = self.dnsmasq(["--mx-host=example.test,mx1.example.test,10",
                            "--host-record=mx1.example.test,127.0.0.2",
                            "--host-record=mx2.example.test,127.0.0.3"])
        self.start_mx([{"name": "main", "mx": "example.test", "port": port}],
                      ["127.0.0.1:%d" % dns.port])
        self.wait_pool({a.address: ("mx1.example.test", 10)})
        gen1 = self.admin.pools()["generation"]
        content = self.send("before")
        self.assertDeliveredOnce("before", content, at=a)
        # The MX now names mx2 (another address), at another preference.
        dns.restart(["--mx-host=example.test,mx2.example.test,5",
                     "--host-record=mx1.example.test,127.0.0.2",
                     "--host-record=mx2.example.test,127.0.0.3"])
        # TTL 1 s + the watcher's 1 s poll; a refresh that met the restart
        # gap is retried 5 s later (the cache's failure_ttl).
        self.wait_pool({b.address: ("mx2.example.test", 5)}, timeout=15)
        gen = self.admin.pools()["generation"]
        self.assertGreater(gen, gen1)
        self.lb.wait_log(r"event=mx_hosts .*pool=main .*domain=example\.test "
                         r".*hosts=mx2\.example\.test/5=127\.0\.0\.3:%d "
                         r"was=mx1\.example\.test/10=127\.0\.0\.2:%d" % (port, port))
        self.lb.wait_log(r"event=generation .*trigger=dns .*generation=%d .*added=1 .*removed=1"
                         % gen)
        sent = {}
        for i in range(4):
            tid = "after-%d" % i
            sent[tid] = self.send(tid)
        self.assertStoredOnceEach(dict(sent, before=content), [a, b])
        for tid in sent:
            self.assertDeliveredOnce(tid, sent[tid], at=b)
        self.assertEqual(len(self.mails(a)), 1, "mx1 got mail after it left the MX")

    def test_refresh_failure_keeps_last_good_hosts(self):
        port = free_port_on("127.0.0.2")
        a = self.host_backend("a", "127.0.0.2", port)
        dns = self.dnsmasq(["--mx-host=example.test,mx1.example.test,10",
                            "--host-record=mx1.example.test,127.0.0.2"])
        self.start_mx([{"name": "main", "mx": "example.test", "port": port}],
                      ["127.0.0.1:%d" % dns.port])
        self.wait_pool({a.address: ("mx1.example.test", 10)})
        self.assertEqual(self.admin.metrics().value("smtplb_mx_refresh_failures_total"), 0)
        content = self.send("resolved")
        self.assertDeliveredOnce("resolved", content, at=a)
        dns.stop()
        self.assertIsNone(dns_query(dns.port, "example.test", "MX", timeout=0.3),
                          "the DNS still answers")
        # Past the 1 s TTL the watcher's refresh fails.
        line = self.lb.wait_log(r"event=mx_refresh_failed ", timeout=10)
        kv = parse_kv(line)
        self.assertEqual(kv.get("pool"), "main", line)
        self.assertEqual(kv.get("domain"), "example.test", line)
        self.assertIn("127.0.0.2:%d" % port, kv.get("hosts", ""), line)
        m = self.admin.metrics()
        self.assertEqual(m.type.get("smtplb_mx_refresh_failures_total"), "counter")
        self.assertGreater(m.value("smtplb_mx_refresh_failures_total"), 0)
        # The pool keeps mx1, and mail still reaches it.
        self.wait_pool({a.address: ("mx1.example.test", 10)}, timeout=1)
        sent = {}
        for i in range(3):
            tid = "stale-%d" % i
            sent[tid] = self.send(tid)
        self.assertStoredOnceEach(dict(sent, resolved=content), [a])
        self.assertEqual(len(self.lb.log_lines("mx_hosts")), 1,
                         "the hosts changed while the DNS was down: %r"
                         % self.lb.log_lines("mx_hosts"))

    def test_own_listener_as_mx_host_is_refused(self):
        # smtplb listens on 127.0.0.1:P; the preferred MX host is that very
        # address and port, the other one is 127.0.0.2:P.
        port = free_port()
        b = self.host_backend("b", "127.0.0.2", port)
        dns = self.dnsmasq(["--mx-host=loop.test,self.loop.test,10",
                            "--mx-host=loop.test,mx2.loop.test,20",
                            "--host-record=self.loop.test,127.0.0.1",
                            "--host-record=mx2.loop.test,127.0.0.2"])
        self.start_mx([{"name": "main", "mx": "loop.test", "port": port}],
                      ["127.0.0.1:%d" % dns.port], listen_port=port)
        self.assertEqual(self.lb.port, port)
        self.wait_pool({b.address: ("mx2.loop.test", 20)})
        line = self.lb.wait_log(r"event=mx_host_refused ")
        self.assertRegex(line, r"pool=main .*domain=loop\.test .*host=self\.loop\.test "
                               r".*address=127\.0\.0\.1:%d " % port)
        sent = {}
        for i in range(5):
            tid = "loop-%d" % i
            sent[tid] = self.send(tid)
        at = self.assertStoredOnceEach(sent, [b])
        self.assertEqual(set(x.name for x in at.values()), {"b"})
        # smtplb never relayed to itself: one transaction per message, all
        # from the test's client.
        txs = self.lb.wait_transactions(5)
        self.assertEqual(len(self.lb.transactions()), 5, self.lb.transactions())
        self.assertEqual([(t["helo"], t["backend"]) for t in txs],
                         [("client.test.example", b.address)] * 5)


# ---------------------------------------------------------------- mx: recipient


class MxRecipient(MxCase):

    def start_recipient(self, dns_servers, port):
        return self.start_mx([{"name": "main", "mx": "recipient", "port": port}], dns_servers)

    def test_null_mx_is_556_5_1_10(self):
        port = free_port_on("127.0.0.2")
        a = self.host_backend("a", "127.0.0.2", port)
        dns = self.dnsmasq(["--mx-host=null.test,.,0",
                            "--mx-host=ok.test,mx.ok.test,10",
                            "--host-record=mx.ok.test,127.0.0.2"])
        self.start_recipient(["127.0.0.1:%d" % dns.port], port)
        r, _ = self.rcpt_reply("user@null.test")
        self.assertReply(r, 556, "5.1.10", "RCPT for a null-MX domain")
        self.lb.wait_log(r"event=mx_lookup .*domain=null\.test .*result=null_mx ")
        # The transaction that got nowhere is logged and counted too.
        self.lb.wait_log(r"event=transaction .*refused=user@null\.test .*result=abandoned")
        self.assertNothingStored()
        self.assertEqual(a.events("connect"), [], "a backend was contacted for a null MX")
        # The same smtplb delivers to a domain that has a mail host.
        content = self.send("ok", rcpt="user@ok.test")
        self.assertDeliveredOnce("ok", content, at=a, rcpts=["user@ok.test"])

    def test_an_idn_domain_is_looked_up_by_its_a_label(self):
        # RFC 5890: the DNS holds the A-label; a U-label recipient (SMTPUTF8)
        # is looked up as xn--..., and passed on as the client wrote it.
        port = free_port_on("127.0.0.2")
        a = self.host_backend("a", "127.0.0.2", port)
        dns = self.dnsmasq(["--mx-host=xn--bcher-kva.test,mx.xn--bcher-kva.test,10",
                            "--host-record=mx.xn--bcher-kva.test,127.0.0.2"])
        self.start_recipient(["127.0.0.1:%d" % dns.port], port)
        rcpt = "user@b\u00fccher.test"
        c = self.client()
        self.assertReply(c.cmd("MAIL FROM:<%s> SMTPUTF8" % SENDER), 250)
        self.assertReply(c.cmd(("RCPT TO:<%s>" % rcpt).encode("utf-8")), 250, what=rcpt)
        content = message("idn-mx", rcpt="user@xn--bcher-kva.test")
        self.assertReply(c.cmd("DATA"), 354)
        c.send(dot_stuff(content) + b".\r\n")
        self.assertReply(c.reply(), 250, "2.0.0", "end of data")
        # The DNS holds only the A-label's records: delivered, it was asked.
        self.assertDeliveredOnce("idn-mx", content, at=a, rcpts=[rcpt])

    def test_nxdomain_and_no_mx_no_address_are_550_5_1_2(self):
        port = free_port_on("127.0.0.2")
        a = self.host_backend("a", "127.0.0.2", port)
        dns = self.dnsmasq(["--txt-record=noaddr.test,nothing here",
                            "--mx-host=ok.test,mx.ok.test,10",
                            "--host-record=mx.ok.test,127.0.0.2"])
        self.assertEqual(dns_query(dns.port, "missing.test", "MX")[0], 3, "NXDOMAIN")
        self.assertEqual(dns_query(dns.port, "noaddr.test", "MX"), (0, 0), "NODATA")
        self.assertEqual(dns_query(dns.port, "noaddr.test", "A"), (0, 0), "NODATA")
        self.start_recipient(["127.0.0.1:%d" % dns.port], port)
        r, _ = self.rcpt_reply("user@missing.test")
        self.assertReply(r, 550, "5.1.2", "RCPT for a domain that does not exist")
        self.lb.wait_log(r"event=mx_lookup .*domain=missing\.test .*result=nxdomain ")
        r, _ = self.rcpt_reply("user@noaddr.test")
        self.assertReply(r, 550, "5.1.2", "RCPT for a name with neither MX nor address")
        self.lb.wait_log(r"event=mx_lookup .*domain=noaddr\.test .*result=nxdomain ")
        self.assertNothingStored()
        self.assertEqual(a.events("connect"), [])
        content = self.send("ok", rcpt="user@ok.test")
        self.assertDeliveredOnce("ok", content, at=a, rcpts=["user@ok.test"])

    def test_servfail_is_451_4_4_3(self):
        port = free_port_on("127.0.0.2")
        a = self.host_backend("a", "127.0.0.2", port)
        # dnsmasq answers "test." itself and forwards broken.invalid to an
        # upstream that answers SERVFAIL; dnsmasq relays the SERVFAIL (it
        # cannot make one up: an upstream that is down gets no answer at
        # all, and in auth-only mode it says REFUSED).
        upstream = UdpResponder(self, rcode=2)
        dns = self.dnsmasq(["--server=/broken.invalid/127.0.0.1#%d" % upstream.port,
                            "--mx-host=ok.test,mx.ok.test,10",
                            "--host-record=mx.ok.test,127.0.0.2"],
                           auth_interface=False)
        self.assertEqual(dns_query(dns.port, "broken.invalid", "MX"), (2, 0),
                         "dnsmasq's answer for broken.invalid is SERVFAIL")
        asked = upstream.queries
        self.start_recipient(["127.0.0.1:%d" % dns.port], port)
        r, took = self.rcpt_reply("user@broken.invalid")
        self.assertReply(r, 451, "4.4.3", "RCPT for a domain whose DNS says SERVFAIL")
        self.assertGreater(upstream.queries, asked, "smtplb's question never reached upstream")
        # An answer, not a timeout.
        self.assertLess(took, DNS_TIMEOUT_S * DNS_ATTEMPTS, "451 took %.2fs" % took)
        # (The detail reads "MX refused": c-ares 1.18 ends a query answered
        # SERVFAIL with ARES_ECONNREFUSED; reported, not asserted.)
        self.lb.wait_log(r"event=mx_lookup .*domain=broken\.invalid "
                         r".*result=temporary_failure ")
        self.assertNothingStored()
        content = self.send("ok", rcpt="user@ok.test")
        self.assertDeliveredOnce("ok", content, at=a, rcpts=["user@ok.test"])

    def test_unresponsive_dns_is_451_4_4_3_within_the_timeout(self):
        port = free_port_on("127.0.0.2")
        a = self.host_backend("a", "127.0.0.2", port)
        silent = UdpResponder(self, rcode=None)
        self.start_recipient(["127.0.0.1:%d" % silent.port], port)
        r, took = self.rcpt_reply("user@example.test")
        self.assertReply(r, 451, "4.4.3", "RCPT while the DNS server never answers")
        bound = DNS_TIMEOUT_S * DNS_ATTEMPTS
        self.assertGreaterEqual(took, DNS_TIMEOUT_S * 0.9,
                                "451 after %.2fs: it did not wait for the DNS" % took)
        self.assertLessEqual(took, bound + 1.0,
                             "451 after %.2fs, want within timeout x attempts (%.1fs) + 1s"
                             % (took, bound))
        self.assertGreaterEqual(silent.queries, 1)
        self.lb.wait_log(r"event=mx_lookup .*domain=example\.test "
                         r".*result=temporary_failure .*detail=\"?MX timeout")
        self.assertNothingStored()
        self.assertEqual(a.events("connect"), [])

    def test_exchanges_whose_address_lookups_time_out_cost_one_timeout_not_one_each(self):
        # Nine exchanges of preference 10 in a zone whose server never
        # answers, and one of preference 20 that works.  Their address
        # lookups run side by side: the RCPT waits out one DNS timeout
        # (timeout x attempts), not nine in a row (9 s here).
        port = free_port_on("127.0.0.2")
        a = self.host_backend("a", "127.0.0.2", port)
        silent = UdpResponder(self, rcode=None)
        slow = ["m%d.slow.invalid" % i for i in range(9)]
        dns = self.dnsmasq(["--server=/slow.invalid/127.0.0.1#%d" % silent.port]
                           + ["--mx-host=many.test,%s,10" % h for h in slow]
                           + ["--mx-host=many.test,mx.many.test,20",
                              "--host-record=mx.many.test,127.0.0.2"],
                           auth_interface=False)
        self.start_recipient(["127.0.0.1:%d" % dns.port], port)
        r, took = self.rcpt_reply("user@many.test")
        self.assertReply(r, 250, what="RCPT for a domain with one reachable exchange of ten")
        bound = DNS_TIMEOUT_S * DNS_ATTEMPTS
        self.assertLessEqual(took, bound + 1.0,
                             "RCPT took %.2fs, want one timeout x attempts (%.1fs) + 1s"
                             % (took, bound))
        asked = set()
        wait_for(lambda: asked.update(silent.names) or asked >= set(slow), 5,
                 "every slow exchange asked for upstream")
        content = self.send("many", rcpt="user@many.test")
        self.assertDeliveredOnce("many", content, at=a, rcpts=["user@many.test"])

    def test_queries_out_at_once_are_bounded_and_the_overflow_is_451_at_once(self):
        # dns.max_in_flight: 1 (one worker), 1 s per attempt here (bound
        # 2 s; c-ares holds a query 1 + 2 s).  Three recipient domains in a
        # zone whose server never answers: the first query goes out; of the
        # next two, one waits for its place (its bound runs out first) and
        # one is refused at once.  Only the first name reaches the DNS.
        timeout_s = 1.0
        port = free_port_on("127.0.0.2")
        a = self.host_backend("a", "127.0.0.2", port)
        silent = UdpResponder(self, rcode=None)
        dns = self.dnsmasq(["--server=/slow.invalid/127.0.0.1#%d" % silent.port,
                            "--mx-host=ok.test,mx.ok.test,10",
                            "--host-record=mx.ok.test,127.0.0.2"],
                           auth_interface=False)
        self.start_mx([{"name": "main", "mx": "recipient", "port": port}],
                      ["127.0.0.1:%d" % dns.port],
                      dns={"max_in_flight": 1, "timeout": "%dms" % (timeout_s * 1000)})
        clients = [self.client() for _ in range(3)]
        for c in clients:
            self.assertReply(c.cmd("MAIL FROM:<%s>" % SENDER), 250)
        clients[0].send(b"RCPT TO:<user@a.slow.invalid>\r\n")
        wait_for(lambda: "a.slow.invalid" in silent.names, 5, "the first query upstream")
        # b and c at once: which one queues depends on the order they reach
        # the worker.
        t0 = time.monotonic()
        clients[1].send(b"RCPT TO:<user@b.slow.invalid>\r\n")
        clients[2].send(b"RCPT TO:<user@c.slow.invalid>\r\n")
        got = {}

        def read(i):
            r = clients[i].reply()
            got[i] = (r, time.monotonic() - t0)

        readers = [threading.Thread(target=read, args=(i,)) for i in range(3)]
        for t in readers:
            t.start()
        for t in readers:
            t.join(15)
        self.assertEqual(sorted(got), [0, 1, 2], "every RCPT answered")
        for i in range(3):
            self.assertReply(got[i][0], 451, "4.4.3", "RCPT %d" % i)
        took = sorted(got[i][1] for i in (1, 2))
        self.assertLess(took[0], timeout_s, "the refused lookup waited %.2fs" % took[0])
        self.assertGreaterEqual(took[1], timeout_s, "the queued lookup did not wait")
        self.assertLessEqual(took[1], 2 * timeout_s + 1.0, "the queued lookup overran its bound")
        # Both were busy, never a DNS timeout; a's was.
        for d in ("b", "c"):
            self.lb.wait_log(r"event=mx_lookup .*domain=%s\.slow\.invalid "
                             r".*result=temporary_failure .*detail=\"?MX busy" % d)
        self.lb.wait_log(r"event=mx_lookup .*domain=a\.slow\.invalid .*detail=\"?MX timeout")
        self.assertEqual(silent.names & {"b.slow.invalid", "c.slow.invalid"}, set(),
                         "a lookup that was refused or timed out in the queue was sent")
        # /metrics tells the operator: one query sent and timed out, one
        # queued, two never sent.
        m = self.admin.metrics()
        self.assertEqual(m.type.get("smtplb_dns_queries_total"), "counter")
        got = {o: m.value("smtplb_dns_queries_total", outcome=o)
               for o in ("sent", "timeout", "queued", "busy", "cancelled")}
        self.assertEqual(got, {"sent": 1, "timeout": 1, "queued": 1, "busy": 2, "cancelled": 0})
        # Once c-ares lets go of the first query, lookups go out again.
        content = message("ok", rcpt="user@ok.test")
        wait_for(lambda: self.rcpt_reply("user@ok.test")[0].code == 250, 10,
                 "RCPT to ok.test accepted again")
        self.assertReply(clients[2].cmd("RSET"), 250)
        self.assertReply(clients[2].transaction(SENDER, ["user@ok.test"], content)[-1], 250)
        self.assertDeliveredOnce("ok", content, at=a, rcpts=["user@ok.test"])

    def test_all_hosts_unreachable_is_451_4_4_1_after_trying_each(self):
        # mx1 (preference 10) has nothing listening; mx2 (20) accepts the
        # connection and closes it at once, so that its try shows (the
        # last usable host is never logged down).
        port = free_port_on("127.0.0.3")
        b = self.host_backend("mx2", "127.0.0.3", port, drop_at="banner")
        a = self.host_backend("ok", "127.0.0.4", port)
        self.assertFalse(accepts("127.0.0.2", port))
        dns = self.dnsmasq(["--mx-host=dead.test,mx1.dead.test,10",
                            "--mx-host=dead.test,mx2.dead.test,20",
                            "--host-record=mx1.dead.test,127.0.0.2",
                            "--host-record=mx2.dead.test,127.0.0.3",
                            "--mx-host=ok.test,mx.ok.test,10",
                            "--host-record=mx.ok.test,127.0.0.4"])
        self.start_mx([{"name": "main", "mx": "recipient", "retries": 0, "port": port}],
                      ["127.0.0.1:%d" % dns.port])
        c = self.client()
        self.assertReply(c.cmd("MAIL FROM:<%s>" % SENDER), 250)
        self.assertReply(c.cmd("RCPT TO:<user@dead.test>"), 451, "4.4.1",
                         what="RCPT for a domain whose hosts are all unreachable")
        self.lb.wait_log(r"event=backend_down .*backend=127\.0\.0\.2:%d "
                         r".*reason=connect_refused " % port)
        self.assertEqual(len(b.events("connect")), 1, "mx2 tried once")
        self.assertEqual(len(b.faults_fired("drop")), 1, b.events())
        self.assertReply(c.cmd("RSET"), 250)
        self.assertNothingStored()
        content = message("ok", rcpt="user@ok.test")
        self.assertReply(c.transaction(SENDER, ["user@ok.test"], content)[-1], 250)
        self.assertDeliveredOnce("ok", content, at=a, rcpts=["user@ok.test"])

    def test_second_domain_in_a_transaction_is_452_4_5_3(self):
        port = free_port_on("127.0.0.2")
        a = self.host_backend("a", "127.0.0.2", port)
        b = self.host_backend("b", "127.0.0.3", port)
        dns = self.dnsmasq(["--mx-host=one.test,mx.one.test,10",
                            "--mx-host=two.test,mx.two.test,10",
                            "--host-record=mx.one.test,127.0.0.2",
                            "--host-record=mx.two.test,127.0.0.3"])
        self.start_recipient(["127.0.0.1:%d" % dns.port], port)
        c = self.client()
        content = message("first", rcpt="user@one.test")
        self.assertReply(c.cmd("MAIL FROM:<%s>" % SENDER), 250)
        self.assertReply(c.cmd("RCPT TO:<user@one.test>"), 250)
        self.assertReply(c.cmd("RCPT TO:<user@two.test>"), 452, "4.5.3",
                         what="RCPT for a second domain")
        self.assertReply(c.cmd("RCPT TO:<other@one.test>"), 250,
                         what="another RCPT for the first domain")
        self.assertReply(c.cmd("DATA"), 354)
        c.send(dot_stuff(content) + b".\r\n")
        self.assertReply(c.reply(), 250, what="end of data")
        self.assertDeliveredOnce("first", content, at=a,
                                 rcpts=["user@one.test", "other@one.test"])
        # The second domain in a new transaction (the same session).
        content2 = message("second", rcpt="user@two.test")
        replies = c.transaction(SENDER, ["user@two.test"], content2)
        self.assertReply(replies[-1], 250, what="the second domain's own transaction")
        self.assertDeliveredOnce("second", content2, at=b, rcpts=["user@two.test"])
        self.assertEqual(len(self.mails(a)), 1)
        self.assertEqual(len(self.mails(b)), 1)
        self.assertNeverSaw("two.test", [a])
        self.assertNeverSaw("one.test", [b])


if __name__ == "__main__":
    unittest.main()
