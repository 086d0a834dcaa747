"""The balancing algorithms end to end (README "Balancing and backend
health", "Health, load and the admin API"; src/balance/): which backend each
transaction lands on, counted from the messages the fault backends stored
(each exactly once, byte-exact after the prepended Received: field).

No test assumes how fast anything runs.  Load is made by *held* transactions: a
client that got 354 to DATA and sends nothing more keeps its transaction in
flight on the backend it was placed on (counted from the backend's MAIL,
before the 354), which GET /api/pools shows as `in_flight`.  Held
transactions are opened one at a time, each located by the `in_flight`
counter that grew, so every placement is checked against the algorithm's
rule with the loads it saw.  Messages sent one after another (one smtplib
session, one transaction each) each see the held load only: the previous
one has ended before the next RCPT is placed (`workers: 1`).

The scores the tests predict (src/balance/balancer.cpp, least_load.cpp):

    load_score  = (in_flight + 1) * 100 / effective_weight
                  effective_weight = weight * agent percent (100 without one)
                  * the slow_start ramp, in hundredths
    least_load  = load_score / room * max(1 ms, final-dot time)
                  room = max(0.05, (100 - max(cpu, mem)) / 100); the final-dot
                  time is the backend's average answer time to the final dot
                  (`final_dot_ms` in /api/pools), decaying while it is idle

least_connections and least_load take the lowest score, ties in turn (the
candidates rotate one step per transaction, then a stable sort), so two
equally loaded backends alternate exactly.  random_two draws two distinct
usable backends and takes the lower load_score (the first drawn on a tie):
with two backends that is always the less loaded one.  hash_sender walks a
ring of 64 points per unit of weight (keyed by the backend's address as
configured) from the hash of the sender's domain, lower-cased, and takes the
first usable backend whose in_flight + 1 is within
ceil(1.25 * (1 + in flight on usable backends) / usable backends).
"""

import math
import smtplib
import time
import unittest

from harness import (HOST, IntegrationCase, dot_stuff, free_port, message, port_accepts,
                     split_received, wait_for)
from test_admin import AdminClient
from test_agent import Agent as SmtplbAgent
from test_agent import FakeProc

RCPT = "rcpt@example.com"
SENDER = "sender@example.org"
HEALTH = {"interval": "200ms", "timeout": "1s", "rise": 2, "fall": 2}
AGENT_INTERVAL = "200ms"  # a reply holds for three intervals


def load_score(in_flight, weight=1, percent=100):
    w = max(1, weight * percent)
    return (in_flight + 1) * 100.0 / w


def least_load_score(in_flight, percent, cpu, mem, final_dot_s, weight=1):
    room = max(0.05, (100 - max(cpu, mem)) / 100.0)
    return load_score(in_flight, weight, percent) / room * max(0.001, final_dot_s)


def hash_sender_pick(ring_order, in_flight, usable):
    """hash_sender's choice for one transaction: `ring_order` is every
    backend in the order met clockwise from the domain's hash."""
    total = 1 + sum(in_flight[u] for u in usable)
    bound = math.ceil(1.25 * total / len(usable))
    walk = [b for b in ring_order if b in usable]
    for b in walk:
        if in_flight[b] + 1 <= bound:
            return b, bound
    return walk[0], bound


class Held:
    """A transaction held after the 354: in flight on `backend`."""

    def __init__(self, client, tid, content, sender):
        self.client = client
        self.tid = tid
        self.content = content
        self.sender = sender
        self.backend = None


class AlgorithmCase(IntegrationCase):

    def setUp(self):
        super().setUp()
        self.agents = []  # test_agent.Agent registers itself here
        self.sent = {}    # test id -> content, for every message that got 250
        self.seq = 0

    # ---------------------------------------------------------- set-up

    def start(self, backends, algorithm, weights=None, agents=None, **pool_over):
        """smtplb with one pool `main` over `backends` and the admin API."""
        entries = []
        for i, b in enumerate(backends):
            e = {"address": b.address}
            if weights:
                e["weight"] = weights[i]
            if agents:
                e["agent"] = {"port": agents[i].port, "interval": AGENT_INTERVAL}
            entries.append(e)
        pool = {"name": "main", "algorithm": algorithm, "backends": entries}
        pool.update(pool_over)
        port = free_port()
        self.smtplb_for(backends, pools=[pool], admin={"listen": "%s:%d" % (HOST, port)})

        def ready():
            if not self.lb.proc.alive():
                raise AssertionError("smtplb exited:\n%s" % self.lb.log_text()[-2000:])
            return port_accepts(port)

        wait_for(ready, 10, "the admin API to listen on %d" % port)
        self.admin = AdminClient(port)
        self.addr = {b.name: b.address for b in backends}
        self.name_of = {b.address: b.name for b in backends}
        doc = self.pool()
        self.assertEqual(doc["algorithm"], algorithm)
        return self.admin

    def agent(self, proc, *flags):
        return SmtplbAgent(self, proc.path, *flags).start()

    # ---------------------------------------------------------- the admin API

    def pool(self):
        for p in self.admin.pools()["pools"]:
            if p["name"] == "main":
                return p
        raise AssertionError("no pool main in /api/pools")

    def backends_doc(self):
        return {self.name_of[b["address"]]: b for b in self.pool()["backends"]}

    def in_flight(self):
        """{backend name: in_flight}"""
        return {n: b["in_flight"] for n, b in self.backends_doc().items()}

    def wait_in_flight(self, want, what=""):
        got = []

        def check():
            got[:] = [self.in_flight()]
            return got[0] == want

        try:
            wait_for(check, 10, "in_flight %s %s" % (want, what))
        except AssertionError as e:
            raise AssertionError("%s; last seen %s" % (e, got[0] if got else None))

    def set_state(self, action, name):
        r = self.admin.action(action, self.addr[name])
        self.assertEqual(r.status, 200, r)
        want = {"drain": "drain", "ready": "up", "maint": "maint"}[action]
        wait_for(lambda: self.backends_doc()[name]["state"] == want, 5,
                 "backend %s %s" % (name, want))

    def wait_backend(self, name, what, predicate, timeout=10):
        seen = []

        def check():
            seen[:] = [self.backends_doc()[name]]
            return predicate(seen[0])

        try:
            wait_for(check, timeout, "backend %s: %s" % (name, what))
        except AssertionError as e:
            raise AssertionError("%s; last seen %s" % (e, seen[0] if seen else None))
        return seen[0]

    # ---------------------------------------------------------- traffic

    def send_seq(self, senders, prefix):
        """One smtplib session, one transaction per sender, one after the
        other; returns the backend names in order."""
        tids = []
        with smtplib.SMTP(HOST, self.lb.port, local_hostname="client.test.example",
                          timeout=30) as s:
            s.ehlo()
            for i, sender in enumerate(senders):
                tid = "%s-%d" % (prefix, i)
                content = message(tid, sender=sender)
                self.assertEqual(s.sendmail(sender, [RCPT], content), {}, tid)
                self.sent[tid] = content
                tids.append(tid)
        where = self.deliveries(tids)
        return [where[t] for t in tids]

    def hold(self, sender=SENDER):
        """Opens a transaction and stops after the 354; returns it with the
        backend whose in_flight grew by one (and no other changed)."""
        before = self.in_flight()
        self.seq += 1
        tid = "held-%d" % self.seq
        content = message(tid, sender=sender)
        c = self.client()
        self.assertReply(c.cmd("MAIL FROM:<%s>" % sender), 250, what=tid)
        self.assertReply(c.cmd("RCPT TO:<%s>" % RCPT), 250, what=tid)
        self.assertReply(c.cmd("DATA"), 354, what=tid)
        h = Held(c, tid, content, sender)
        counted = []

        def one_more():
            counted[:] = [self.in_flight()]
            return sum(counted[0].values()) == sum(before.values()) + 1

        wait_for(one_more, 5, "in_flight to count " + tid)
        after = counted[0]
        grown = [n for n in after if after[n] == before[n] + 1]
        self.assertEqual(len(grown), 1, "in_flight before %s, after %s" % (before, after))
        self.assertEqual({n: v for n, v in after.items() if n != grown[0]},
                         {n: v for n, v in before.items() if n != grown[0]})
        h.backend = grown[0]
        return h

    def finish(self, held):
        held.client.send(dot_stuff(held.content) + b".\r\n")
        self.assertReply(held.client.reply(), 250, what="end of data of " + held.tid)
        self.sent[held.tid] = held.content
        self.assertEqual(self.deliveries([held.tid]), {held.tid: held.backend},
                         "%s was counted in flight on %s" % (held.tid, held.backend))
        held.client.close()

    def deliveries(self, tids):
        """{test id: backend name}; each stored exactly once, its bytes the
        sent ones after one prepended Received: field."""
        index = {}
        for b in self.backends:
            for m in b.messages():
                index.setdefault(m["test_id"], []).append((b, m))
        out = {}
        for tid in tids:
            found = index.get(tid, [])
            self.assertEqual(len(found), 1, "message %s stored %d times (%s)"
                             % (tid, len(found), [b.name for b, _ in found]))
            b, m = found[0]
            received, rest = split_received(m["eml"])
            self.assertIsNotNone(received, "%s has no prepended Received: field" % tid)
            self.assertBytesEqual(rest, self.sent[tid], "message %s" % tid)
            out[tid] = b.name
        return out

    def mails(self, backend):
        return len([c for c in backend.commands() if c.upper().startswith("MAIL FROM:")])

    def assertAlternates(self, seq, what):
        self.assertTrue(all(x != y for x, y in zip(seq, seq[1:])),
                        "%s: equally loaded backends take turns, got %s" % (what, seq))


# ====================================================================== least_connections


class LeastConnections(AlgorithmCase):

    def test_new_transactions_go_to_the_backend_with_fewer_in_flight(self):
        a, b = self.fault_backend("a"), self.fault_backend("b")
        self.start([a, b], "least_connections")
        # K=3 transactions in flight on a: b drained while they are opened.
        self.set_state("drain", "b")
        held = [self.hold() for _ in range(3)]
        self.assertEqual([h.backend for h in held], ["a"] * 3)
        self.set_state("ready", "b")
        self.wait_in_flight({"a": 3, "b": 0})
        # Scores: a (3+1)/1 = 4, b (0+1)/1 = 1 for every one of them (each
        # ends before the next starts): all M=12 go to b, deterministically.
        got = self.send_seq([SENDER] * 12, "lc-busy-a")
        self.assertEqual(got, ["b"] * 12)
        self.assertEqual(self.in_flight(), {"a": 3, "b": 0})
        for h in held:
            self.finish(h)
        self.wait_in_flight({"a": 0, "b": 0})
        # Idle again: ties go in turn, so exactly 6 and 6, alternating.
        got = self.send_seq([SENDER] * 12, "lc-idle")
        self.assertEqual((got.count("a"), got.count("b")), (6, 6), got)
        self.assertAlternates(got, "least_connections, both idle")

    def test_weights_divide_the_in_flight_count(self):
        a, b = self.fault_backend("a"), self.fault_backend("b")
        self.start([a, b], "least_connections", weights=[3, 1])
        w = {"a": 3, "b": 1}
        # Eight transactions held one after another: each goes to a backend
        # with the lowest (in_flight + 1) / weight it saw (ties either way);
        # whatever the tie-breaks, 4k placements end at (3k, k): (6, 2).
        held = []
        for i in range(8):
            f = self.in_flight()
            score = {n: load_score(f[n], w[n]) for n in f}
            h = self.hold()
            self.assertEqual(score[h.backend], min(score.values()),
                             "transaction %d went to %s with in_flight %s (scores %s)"
                             % (i, h.backend, f, score))
            held.append(h)
        self.assertEqual(self.in_flight(), {"a": 6, "b": 2})
        # a: (6+1)/3 = 2.33 beats b: (2+1)/1 = 3 though a has three times as
        # many in flight: in flight per weight, not in flight, decides.
        got = self.send_seq([SENDER] * 8, "lc-w-a")
        self.assertEqual(got, ["a"] * 8)
        # b's two end: b (0+1)/1 = 1 beats a 2.33: all of the next ones to b.
        for h in [h for h in held if h.backend == "b"]:
            self.finish(h)
        self.wait_in_flight({"a": 6, "b": 0})
        got = self.send_seq([SENDER] * 8, "lc-w-b")
        self.assertEqual(got, ["b"] * 8)
        for h in [h for h in held if h.backend == "a"]:
            self.finish(h)
        self.wait_in_flight({"a": 0, "b": 0})
        # Idle: a (0+1)/3 always beats b (0+1)/1 one message at a time.
        got = self.send_seq([SENDER] * 6, "lc-w-idle")
        self.assertEqual(got, ["a"] * 6)


# ====================================================================== least_load


class LeastLoad(AlgorithmCase):
    """least_load with smtplb-agent on a fake /proc per backend.  The score
    also multiplies by each backend's average answer time to the final dot
    (`final_dot_ms` in /api/pools, at least 1 ms, zero before the first
    answer, decaying with a 5 s time constant while no answer comes).  Both
    backends delay that answer equally (fault_backend --delay-eod), so the
    factor is the same kind of number on both; every placement is checked
    against the scores /api/pools gave just before it.  Both averages decay
    at the same rate, so which one is lower cannot change between that read
    and the placement (nothing else ends in between): no timing is assumed.
    """

    def start_with_agents(self, figures, delay_eod, *agent_flags):
        """Two backends, each with smtplb-agent on its own fake /proc;
        `figures` is (busy ticks, idle ticks) per host for the agent's first
        sample; memory 790000 of 1000000 kB available (mem=21)."""
        backends = [self.fault_backend(n, delay_eod=delay_eod) for n in ("a", "b")]
        self.procs_of = {}
        agents = []
        for be, (busy, idle) in zip(backends, figures):
            proc = FakeProc("%s/proc-%s" % (self.workdir, be.name))
            proc.tick(busy=busy, idle=idle)
            proc.memory(1000000, 790000)
            self.procs_of[be.name] = proc
            agents.append(self.agent(proc, *agent_flags))
        self.start(backends, "least_load", agents=agents)
        return backends

    def wait_figures(self, name, percent, cpu, mem=21, state="up"):
        return self.wait_backend(
            name, "agent %d%% cpu=%d mem=%d, %s" % (percent, cpu, mem, state),
            lambda b: (b["agent"]["fresh"] and b["agent"]["percent"] == percent
                       and b["agent"]["cpu"] == cpu and b["agent"]["mem"] == mem
                       and b["state"] == state))

    def scores(self):
        """least_load's score of each usable backend, from /api/pools."""
        out = {}
        for n, b in self.backends_doc().items():
            if b["state"] != "up":
                continue
            ag = b["agent"]
            self.assertTrue(ag["fresh"], "agent figures of %s went stale: %s" % (n, ag))
            w = int(round(b["effective_weight"] * 100))
            self.assertEqual(w, ag["percent"] * b["weight"], b)
            out[n] = least_load_score(b["in_flight"], ag["percent"], ag["cpu"], ag["mem"],
                                      b["final_dot_ms"] / 1000.0, b["weight"])
        return out

    def assertLowest(self, chosen, scores, what):
        best = min(scores.values())
        tied = [n for n, s in scores.items() if abs(s - best) <= 1e-9 * best]
        if len(tied) > 1:
            self.assertIn(chosen, tied, "%s: %s with scores %s" % (what, chosen, scores))
        else:
            self.assertEqual(chosen, tied[0], "%s went to %s with scores %s"
                             % (what, chosen, scores))

    def send_checked(self, n, prefix):
        """n messages one after another in one session, each checked to land
        on the backend with the lowest score just before it; returns the
        backend names and the scores (and in self.sent_at, when each one's
        delivery was seen)."""
        got, seen = [], []
        self.sent_at = []
        with smtplib.SMTP(HOST, self.lb.port, local_hostname="client.test.example",
                          timeout=30) as s:
            s.ehlo()
            for i in range(n):
                sc = self.scores()
                tid = "%s-%d" % (prefix, i)
                content = message(tid)
                self.assertEqual(s.sendmail(SENDER, [RCPT], content), {}, tid)
                self.sent[tid] = content
                where = self.deliveries([tid])[tid]
                self.assertLowest(where, sc, tid)
                got.append(where)
                seen.append(sc)
                self.sent_at.append(time.monotonic())
        return got, seen

    def test_idle_host_wins_and_the_split_evens_out_when_both_are_idle(self):
        # a: cpu 5, mem 21 -> "up ready 79%"; b: cpu 60, mem 21 -> "up ready 40%".
        # Both answer the final dot after 100 ms.
        a, b = self.start_with_agents([(100, 1900), (1200, 800)], 0.1)
        self.wait_figures("a", 79, 5)
        self.wait_figures("b", 40, 60)
        # Before any final dot the answer-time factor is the 1 ms floor on
        # both.  a: (k+1) * 100/79 / 0.79 = 1.602 (k+1); b: (k+1) * 100/40 /
        # 0.40 = 6.25 (k+1).  Held one after another, each transaction goes
        # to the lower score: a, a, a (4.81 < 6.25), then b (a's 6.41 >
        # 6.25), then a again (6.41 < b's 12.5).
        held = []
        for i in range(5):
            sc = self.scores()
            self.assertEqual({n: self.backends_doc()[n]["final_dot_ms"] for n in sc},
                             {"a": 0, "b": 0})
            h = self.hold()
            self.assertLowest(h.backend, sc, "held transaction %d" % i)
            held.append(h)
        self.assertEqual([h.backend for h in held], ["a", "a", "a", "b", "a"])
        t0 = time.monotonic()  # b's last answer to a final dot comes after this
        for h in held:
            self.finish(h)
        self.wait_in_flight({"a": 0, "b": 0})
        # One at a time, nothing in flight: a scores 1.602 x its answer time,
        # b 6.25 x its own (every placement checked).  Answering alike, b
        # gets a message only once its average has decayed below 1.602 /
        # 6.25 = 26% of a's, which takes 5 s x ln(3.9) = 6.8 s without an
        # answer from b.  Bound: of the messages delivered within those
        # 6.8 s (all 20 on an idle host, about 2.5 s), b gets at most 2 (a
        # stall inflating a's average can let b in sooner).
        got, seen = self.send_checked(20, "ll-busy-b")
        early = [g for g, t in zip(got, self.sent_at) if t - t0 < 6.8]
        self.assertLessEqual(early.count("b"), 2, "%s; within 6.8 s: %s" % (got, early))
        # b idle again: this interval 50 of 1000 ticks busy, cpu 5: the same
        # figures as a, so the answer times alone decide.  b's average has
        # decayed meanwhile, so b wins until it has caught up; from then on
        # the one not chosen decays (2% a message) below the one chosen and
        # they take turns.  Past that catching up (at most 40 messages),
        # each gets at least 5 of the next 20 (10 +- 5).
        self.procs_of["b"].tick(busy=50, idle=950)
        self.wait_figures("b", 79, 5)
        self.wait_figures("a", 79, 5)
        catch_up = []
        while len(catch_up) < 40 and not (catch_up[-2:] in (["a", "b"], ["b", "a"])):
            catch_up += self.send_checked(1, "ll-catch-up-%d" % len(catch_up))[0]
        self.assertIn(catch_up[-2:], (["a", "b"], ["b", "a"]),
                      "never took turns: %s" % catch_up)
        got, seen = self.send_checked(20, "ll-both-idle")
        self.assertTrue(got.count("a") >= 5 and got.count("b") >= 5,
                        "%s after %s" % (got, catch_up))
        for n in ("a", "b"):
            self.assertTrue(self.backends_doc()[n]["agent"]["last_reply"]
                            .startswith("up ready 79% # cpu=5 mem=21"),
                            self.backends_doc()[n]["agent"])

    def test_agent_drain_threshold_gets_the_backend_nothing(self):
        # Both idle (cpu 5); smtplb-agent says `drain` at --drain-cpu 90.
        a, b = self.start_with_agents([(100, 1900), (100, 1900)], 0.02, "--drain-cpu", "90")
        self.wait_figures("a", 79, 5)
        self.wait_figures("b", 79, 5)
        got, _ = self.send_checked(6, "ll-before")
        self.assertIn("b", got)
        # b: 950 of 1000 ticks busy -> "up drain 5% # cpu=95 mem=21".
        self.procs_of["b"].tick(busy=950, idle=50)
        self.wait_figures("b", 5, 95, state="drain")
        self.assertTrue(self.backends_doc()["b"]["agent"]["last_reply"]
                        .startswith("up drain 5% # cpu=95"))
        mails_b = self.mails(b)
        # b is not even scored: only a is a candidate.
        got, seen = self.send_checked(12, "ll-drained")
        self.assertEqual(got, ["a"] * 12)
        self.assertEqual([sorted(s) for s in seen], [["a"]] * 12)
        # Not merely a worse score: a drained backend is not even a replay
        # candidate.  a refuses one MAIL with 451: the transaction has
        # nowhere else to go, and b still sees no MAIL.
        a.set_control(mail_reply="451 4.3.0 try again later", fault_limit=1)
        c = self.client()
        self.assertReply(c.cmd("MAIL FROM:<%s>" % SENDER), 250)
        r = c.cmd("RCPT TO:<%s>" % RCPT)
        self.assertEqual(r.code // 100, 4, "RCPT with only a drained backend left: %r" % r)
        wait_for(lambda: a.faults_fired(), 5, "a's 451 to MAIL")
        self.assertEqual(self.mails(b), mails_b, "the agent-drained backend got a MAIL")
        c.cmd("QUIT")
        a.set_control()
        # Below the threshold again: "up ready", b is scored again and, its
        # answer time having decayed while a's kept being refreshed, gets
        # mail again (each message checked against the scores; at most 100).
        self.procs_of["b"].tick(busy=50, idle=950)
        self.wait_figures("b", 79, 5)
        got, seen = [], []
        while "b" not in got and len(got) < 100:
            g, s = self.send_checked(1, "ll-ready-%d" % len(got))
            got += g
            seen += s
        self.assertEqual(sorted(seen[0]), ["a", "b"])
        self.assertIn("b", got)


# ====================================================================== random_two


class RandomTwo(AlgorithmCase):

    def test_idle_backends_split_binomially(self):
        a, b = self.fault_backend("a"), self.fault_backend("b")
        self.start([a, b], "random_two")
        # Idle: both drawn every time, equal scores, the first drawn wins: a
        # fair coin per message.  N=200: mean 100, sigma sqrt(200/4) = 7.07;
        # each side within 100 +- 4 sigma, i.e. [72, 128] (fails ~1 run in
        # 16000 for a correct balancer).
        got = self.send_seq([SENDER] * 200, "r2-idle")
        na, nb = got.count("a"), got.count("b")
        self.assertEqual(na + nb, 200)
        self.assertTrue(72 <= na <= 128, "a got %d, b %d of 200" % (na, nb))
        # Not a fixed pattern either: strict alternation (what a round robin
        # would give) has 199 switches; a fair coin has 99.5 +- 7.05, so at
        # most 99.5 + 4 sigma = 128.
        switches = sum(1 for x, y in zip(got, got[1:]) if x != y)
        self.assertTrue(71 <= switches <= 128, "%d switches in %s" % (switches, got))

    def test_a_backend_with_transactions_in_flight_is_avoided(self):
        a, b = self.fault_backend("a"), self.fault_backend("b")
        self.start([a, b], "random_two")
        self.set_state("drain", "b")
        held = [self.hold(), self.hold()]
        self.assertEqual([h.backend for h in held], ["a", "a"])
        self.set_state("ready", "b")
        self.wait_in_flight({"a": 2, "b": 0})
        # With two backends the two distinct draws are always a and b: the
        # less loaded (b: 1 < a: 3) wins every time.
        got = self.send_seq([SENDER] * 40, "r2-busy-a")
        self.assertEqual(got, ["b"] * 40)
        for h in held:
            self.finish(h)
        self.wait_in_flight({"a": 0, "b": 0})

    def test_three_backends_never_pick_the_loaded_one(self):
        a, b, c = (self.fault_backend(n) for n in ("a", "b", "c"))
        self.start([a, b, c], "random_two")
        self.set_state("drain", "b")
        self.set_state("drain", "c")
        held = [self.hold()]
        self.assertEqual(held[0].backend, "a")
        self.set_state("ready", "b")
        self.set_state("ready", "c")
        # Two distinct backends drawn of three: at least one is idle and
        # beats a.  b and c split as a fair coin: N=60, sigma 3.87, each in
        # 30 +- 4 sigma = [15, 45].
        got = self.send_seq([SENDER] * 60, "r2-three")
        self.assertEqual(got.count("a"), 0, got)
        self.assertTrue(15 <= got.count("b") <= 45, got)
        self.finish(held[0])


# ====================================================================== hash_sender


class HashSender(AlgorithmCase):

    DOMAINS = ["sender%02d.example.net" % i for i in range(90)]

    def test_domain_affinity_spread_drain_and_bounded_load(self):
        backends = [self.fault_backend(n) for n in ("a", "b", "c")]
        self.start(backends, "hash_sender")
        names = ["a", "b", "c"]
        doms = self.DOMAINS
        # Each domain twice: another local part, the domain in upper case the
        # second time (the key is the lower-cased domain).
        first = self.send_seq(["alice@" + d for d in doms], "hs-1")
        second = self.send_seq(["Bob.Smith@" + d.upper() for d in doms], "hs-2")
        home = dict(zip(doms, first))
        moved = [d for d, x, y in zip(doms, first, second) if x != y]
        self.assertEqual(moved, [], "a domain changed backends between two messages")
        # One domain's stream keeps to one backend.
        d0 = doms[0]
        self.assertEqual(set(self.send_seq(["u%d@%s" % (i, d0) for i in range(10)], "hs-one")),
                         {home[d0]})
        # Spread: 90 domains on 64 points per backend (the ring depends on
        # the backends' ports).  Simulating the ring for these domains with
        # random ephemeral ports 100000 times, each backend held 9..60
        # domains; the bound asserted is 6..63 of 90 (expected 30 each).
        counts = {n: first.count(n) for n in names}
        for n in names:
            self.assertTrue(6 <= counts[n] <= 63, "domains per backend %s" % counts)
        # Drain the backend with the most domains: only its domains move,
        # every other domain stays on its backend.
        x = max(names, key=lambda n: counts[n])
        self.set_state("drain", x)
        mails_x = self.mails(self.backends[names.index(x)])
        third = self.send_seq(["carol@" + d for d in doms], "hs-3")
        now = dict(zip(doms, third))
        for d in doms:
            if home[d] == x:
                self.assertNotEqual(now[d], x, "%s stayed on drained %s" % (d, x))
            else:
                self.assertEqual(now[d], home[d], "%s moved from %s to %s though %s was drained"
                                 % (d, home[d], now[d], x))
        self.assertEqual(self.mails(self.backends[names.index(x)]), mails_x)
        # Ready again: every domain is back where it was.
        self.set_state("ready", x)
        fourth = self.send_seq(["dave@" + d for d in doms], "hs-4")
        self.assertEqual(dict(zip(doms, fourth)), home)

        # Bounded load: one domain D of x's; its ring order is x, then where
        # it went while x was drained, then the third.
        dom = next(d for d in doms if home[d] == x)
        y = now[dom]
        z = next(n for n in names if n not in (x, y))
        ring = [x, y, z]
        held = []
        for i in range(7):
            f = self.in_flight()
            want, bound = hash_sender_pick(ring, f, names)
            h = self.hold(sender="held%d@%s" % (i, dom))
            self.assertEqual(h.backend, want, "held transaction %d from %s with in_flight %s "
                             "(ring order %s, bound %d)" % (i, dom, f, ring, bound))
            after = self.in_flight()
            self.assertLessEqual(max(after.values()), bound,
                                 "in flight %s over the bound %d" % (after, bound))
            held.append(h)
        # x, y, x, y, x, y (bound 1, 1, 2, 2, 3, 3), then x and y are both at
        # 3 = ceil(1.25 * 7 / 3): the seventh spills to z.
        self.assertEqual([h.backend for h in held], [x, y, x, y, x, y, z])
        self.assertEqual(self.in_flight(), {x: 3, y: 3, z: 1})
        for h in held:
            self.finish(h)
        self.wait_in_flight({"a": 0, "b": 0, "c": 0})
        # Unloaded again: the domain is back on its own backend.
        self.assertEqual(self.send_seq(["eve@" + dom], "hs-after"), [x])


# ====================================================================== slow_start


class SlowStart(AlgorithmCase):
    """A backend back up (here: its active checks pass again) gets
    weight * max(10%, time up / slow_start) (backend_state.cpp).  Time is
    not assumed: the moment it came up is bracketed by the /api/pools polls
    that saw it down and up, and every weight read is checked against the
    ramp over that bracket."""

    def bring_back(self, a):
        """Takes a down by its checks (421 banner), then up; returns the
        monotonic bracket (earliest, latest) of the moment it came up."""
        a.set_control(banner="421 4.3.2 maintenance")
        self.wait_backend("a", "down by its checks", lambda b: b["state"] == "down")
        # Good banners only from here on: it comes up after this moment.
        last_down_sent = _now()
        a.set_control()
        while True:
            t0 = _now()
            state = self.backends_doc()["a"]["state"]
            t1 = _now()
            if state == "up":
                return last_down_sent, t1
            self.assertEqual(state, "down")
            last_down_sent = t0
            self.assertLess(t1 - self.t_start, 30, "a not back up")
            time.sleep(0.01)  # the poll's pace, not a wait for an event

    def ramp_bounds(self, since, slow_start_s, t_sent, t_received):
        """The effective weight (weight 1) a read between t_sent and
        t_received may show, the backend having come up within `since`."""
        lo_up = max(0.0, t_sent - since[1])
        hi_up = t_received - since[0]

        def w(up_for):
            if up_for >= slow_start_s:
                return 1.0
            return max(1, int(100 * max(0.1, up_for / slow_start_s))) / 100.0

        return w(lo_up), w(hi_up)

    def read_weight(self, name):
        t0 = _now()
        doc = self.backends_doc()[name]
        return doc, t0, _now()

    def test_a_backend_back_up_starts_at_a_tenth_of_its_share(self):
        a, b = self.fault_backend("a"), self.fault_backend("b")
        self.t_start = _now()
        self.start([a, b], "weighted_round_robin", slow_start="1h", health_check=HEALTH)
        # No ramp at start-up: both presumed up at full weight.
        docs = self.backends_doc()
        self.assertEqual((docs["a"]["effective_weight"], docs["b"]["effective_weight"]),
                         (1.0, 1.0))
        since = self.bring_back(a)
        doc, t0, t1 = self.read_weight("a")
        lo, hi = self.ramp_bounds(since, 3600, t0, t1)
        self.assertEqual((lo, hi), (0.1, 0.1), "less than 6 minutes up: the 10% floor")
        self.assertEqual(doc["effective_weight"], 0.1, doc)
        self.assertEqual(self.backends_doc()["b"]["effective_weight"], 1.0)
        # Smooth weighted round robin over 10 : 100 (hundredths), from its
        # start state (nothing was sent before): a gets exactly 4 of 44,
        # spread out, where its full weight would give it 22.
        got = self.send_seq([SENDER] * 44, "ss-floor")
        self.assertEqual(got.count("a"), 4, got)
        self.assertFalse(any(x == y == "a" for x, y in zip(got, got[1:])), got)
        doc, t0, t1 = self.read_weight("a")
        self.assertEqual(self.ramp_bounds(since, 3600, t0, t1), (0.1, 0.1))
        self.assertEqual(doc["effective_weight"], 0.1, doc)

    def test_the_share_ramps_up_to_the_full_weight(self):
        a, b = self.fault_backend("a"), self.fault_backend("b")
        self.t_start = _now()
        self.start([a, b], "weighted_round_robin", slow_start="2s", health_check=HEALTH)
        since = self.bring_back(a)
        # The poll right after the one that saw it up (the weight and the
        # state are separate atomics).  Every weight read lies on the ramp
        # for the bracket, never goes down and ends at 1.
        seen = []
        while True:
            doc, t0, t1 = self.read_weight("a")
            w = doc["effective_weight"]
            lo, hi = self.ramp_bounds(since, 2.0, t0, t1)
            self.assertTrue(lo - 1e-9 <= w <= hi + 1e-9,
                            "weight %s read %.3f..%.3fs after a came up (%.3fs bracket): "
                            "the ramp allows %s..%s" % (w, t0 - since[1], t1 - since[0],
                                                        since[1] - since[0], lo, hi))
            if seen:
                self.assertGreaterEqual(w, seen[-1], "the weight went down: %s" % seen)
            seen.append(w)
            if w == 1.0:
                break
            self.assertLess(_now() - since[1], 10, "still ramping: %s" % seen[-20:])
            time.sleep(0.02)  # the poll's pace
        # Full weight: 1 : 1, in turn from the start state: 10 and 10.
        got = self.send_seq([SENDER] * 20, "ss-full")
        self.assertEqual((got.count("a"), got.count("b")), (10, 10), got)
        self.assertAlternates(got, "weighted_round_robin 1:1")


def _now():
    return time.monotonic()


if __name__ == "__main__":
    unittest.main()
