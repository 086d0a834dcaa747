"""Agent checks (`agent: {port, interval}`, HAProxy's agent-check protocol):
the agent's words steer the backend -- `drain`/`maint` stop new
transactions, `down`/`fail`/`stopped` take it down, `NN%` scales its weight,
`ready`/`up` bring it back -- and a garbled, oversized or silent reply is
ignored with a log line while the last good reply stays in force.
"""

import json
import os
import subprocess
import sys
import unittest

from harness import IntegrationCase, message, smtplib_send, wait_for

HERE = os.path.dirname(os.path.abspath(__file__))
SENDER = "sender@example.org"
RCPT = "rcpt@example.com"


class Agent:
    def __init__(self, case, name, reply):
        self.dir = os.path.join(case.workdir, "agent-" + name)
        os.makedirs(self.dir, exist_ok=True)
        self.control = os.path.join(self.dir, "reply")
        self.set(reply)
        ready = os.path.join(self.dir, "ready.json")
        self.proc = subprocess.Popen([sys.executable, os.path.join(HERE, "scripted_agent.py"),
                                      "--control", self.control, "--ready", ready],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        case.addCleanup(self.stop)
        wait_for(lambda: os.path.exists(ready), 10, "agent %s to listen" % name)
        with open(ready) as f:
            self.port = json.load(f)["port"]

    def hits(self):
        try:
            with open(os.path.join(self.dir, "hits")) as f:
                return len(f.readlines())
        except FileNotFoundError:
            return 0

    def set(self, reply):
        tmp = self.control + ".tmp"
        with open(tmp, "w") as f:
            f.write(reply)
        os.rename(tmp, self.control)

    def stop(self):
        self.proc.kill()
        self.proc.wait(5)


class AgentCheck(IntegrationCase):

    def start(self, algorithm="round_robin", replies=("up", "up")):
        a, b = self.fault_backend("a"), self.fault_backend("b")
        self.agents = [Agent(self, n, r) for n, r in zip("ab", replies)]
        pools = [{"name": "main", "algorithm": algorithm,
                  "backends": [{"address": be.address,
                                "agent": {"port": ag.port, "interval": "100ms"}}
                               for be, ag in zip((a, b), self.agents)]}]
        self.smtplb_for([a, b], pools=pools)
        return a, b

    def agent_lines(self, backend, event="backend_agent"):
        return [l for l in self.lb.log_lines(event) if "backend=%s " % backend.address in l + " "]

    def send(self, n, prefix):
        for i in range(n):
            content = message("%s-%d" % (prefix, i))
            code, text = smtplib_send(self.lb.port, SENDER, [RCPT], content)
            self.assertEqual(code, 250, text)
            self.assertDeliveredOnce("%s-%d" % (prefix, i), content)

    def test_drain_and_ready_from_the_agent(self):
        a, b = self.start()
        self.agents[0].set("up drain # maintenance window")
        wait_for(lambda: [l for l in self.agent_lines(a) if "state=drain" in l], 10,
                 "a drained by its agent")
        before = len(a.messages())
        self.send(8, "agent-drain")
        self.assertEqual(len(a.messages()), before, "a drained backend got mail")
        self.agents[0].set("up ready")
        wait_for(lambda: [l for l in self.agent_lines(a) if "state=up" in l], 10, "a ready again")
        self.send(8, "agent-ready")
        self.assertGreater(len(a.messages()), before)

    def test_down_words_take_the_backend_down(self):
        for word in ("down", "fail", "stopped"):
            with self.subTest(word=word):
                a, b = self.start()
                self.agents[0].set(word + " # mta stopped")
                wait_for(lambda: [l for l in self.agent_lines(a) if "state=down" in l], 10,
                         "a down after `%s`" % word)
                before = len(a.messages())
                self.send(5, "agent-%s" % word)
                self.assertEqual(len(a.messages()), before)
                self.lb.stop()
                for be in (a, b):
                    be.stop()
                self.backends.clear()

    def test_percentage_scales_the_weight(self):
        a, b = self.start(algorithm="weighted_round_robin", replies=("up 10%", "up 100%"))
        # Both agents have been asked (twice, so the reply read by the first
        # poll has certainly been applied) before the count starts.
        wait_for(lambda: all(ag.hits() >= 2 for ag in self.agents), 10, "two agent polls each")
        self.send(44, "agent-pct")
        na, nb = len(a.messages()), len(b.messages())
        # 10% of weight 1 against 100%: one message in eleven (smooth WRR).
        self.assertEqual(na + nb, 44)
        self.assertEqual(na, 4, "a got %d, b %d" % (na, nb))

    def test_garbled_huge_and_silent_replies_are_ignored(self):
        a, b = self.start()
        self.agents[0].set("up drain")
        wait_for(lambda: [l for l in self.agent_lines(a) if "state=drain" in l], 10, "drain")
        for bad, why in (("banana split", "garbled"), ("<huge>", "over"), ("<silent>", "")):
            self.agents[0].set(bad)
            wait_for(lambda: [l for l in self.agent_lines(a, "agent_ignored") if why in l], 10,
                     "%r ignored" % bad)
        # The last good word (drain) still holds within its validity.
        self.assertFalse([l for l in self.agent_lines(a) if "state=up" in l])


if __name__ == "__main__":
    unittest.main()
