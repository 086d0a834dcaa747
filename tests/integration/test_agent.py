"""smtplb-agent (src/agent/): the real binary answering HAProxy's agent check
from a fake /proc and a queue command that is a shell script.

The agent reads PROC_ROOT/stat and PROC_ROOT/meminfo; each test writes them
(atomically, by rename) into its own directory and changes them between
samples, then polls the agent until its reply is the expected one: nothing
sleeps blindly.  Replies are compared byte for byte, LF included; the
format and the formula are in src/agent/agent_reply.hpp:

    up ready 79% # cpu=5 mem=21 queue=12
    capacity = 100 - max(cpu%, mem%, 100 * queue / queue_max), in [1, 100]

The fixed figures below: since boot 100 of 2000 ticks busy (cpu=5), 790000
of 1000000 kB available (mem=21).
"""

import os
import signal
import socket
import subprocess
import sys
import time
import unittest

from harness import (HOST, SMTPLB_BIN, IntegrationCase, Process, _tail, free_port,
                     port_accepts, wait_for)

AGENT_BIN = os.path.join(os.path.dirname(SMTPLB_BIN), "smtplb-agent")

# Short enough that a change shows within a few polls.
SAMPLE = "50ms"


class FakeProc:
    """A directory standing in for /proc: cumulative CPU ticks, memory."""

    def __init__(self, path):
        self.path = path
        os.makedirs(path, exist_ok=True)
        self.busy = 0
        self.idle = 0

    def _write(self, name, text):
        tmp = os.path.join(self.path, name + ".tmp")
        with open(tmp, "w") as f:
            f.write(text)
        os.rename(tmp, os.path.join(self.path, name))

    def write_raw(self, name, text):
        self._write(name, text)

    def remove(self, name):
        os.unlink(os.path.join(self.path, name))

    def tick(self, busy, idle):
        """Adds ticks: the next CPU figure is busy / (busy + idle)."""
        self.busy += busy
        self.idle += idle
        # user nice system idle iowait irq softirq steal guest guest_nice;
        # the busy ticks split between user and system, idle between idle
        # and iowait, as on a real host.
        user, system = self.busy - self.busy // 4, self.busy // 4
        idle, iowait = self.idle - self.idle // 10, self.idle // 10
        self._write("stat",
                    "cpu  %d 0 %d %d %d 0 0 0 0 0\n" % (user, system, idle, iowait)
                    + "cpu0 %d 0 %d %d %d 0 0 0 0 0\n" % (user, system, idle, iowait)
                    + "intr 12345 0 0\nctxt 678\nbtime 1700000000\n")

    def memory(self, total_kb, available_kb):
        self._write("meminfo",
                    "MemTotal:       %d kB\nMemFree:          100000 kB\n"
                    "MemAvailable:   %d kB\nBuffers:           20000 kB\n"
                    "Cached:           300000 kB\nSwapTotal:             0 kB\n"
                    % (total_kb, available_kb))

    def typical(self):
        """The figures every test starts from: cpu=5 mem=21."""
        self.tick(busy=100, idle=1900)
        self.memory(1000000, 790000)
        return self


class QueueScript:
    """The queue command: `sh SCRIPT`, its body rewritten by the test."""

    def __init__(self, path):
        self.path = path
        self.set("echo 12")

    def set(self, body):
        tmp = self.path + ".tmp"
        with open(tmp, "w") as f:
            f.write("#!/bin/sh\n" + body + "\n")
        os.rename(tmp, self.path)

    @property
    def command(self):
        return "sh %s" % self.path


class Agent:
    """One smtplb-agent process on a fresh loopback port."""

    def __init__(self, case, proc_root, *flags):
        self.case = case
        self.port = free_port()
        self.log_path = os.path.join(case.workdir, "agent-%d.log" % self.port)
        self.argv = [AGENT_BIN, "--listen", "%s:%d" % (HOST, self.port), "--proc-root", proc_root,
                     "--sample-interval", SAMPLE, "--log-level", "debug"] + list(flags)
        self.proc = None

    def start(self, timeout=10):
        if not os.access(AGENT_BIN, os.X_OK):
            raise AssertionError("smtplb-agent not found: %s (build it: cmake --build build "
                                 "--target smtplb-agent)" % AGENT_BIN)
        self.proc = Process(self.argv, self.log_path)
        self.case.procs.append(self.proc)
        self.case.agents.append(self)

        def ready():
            if not self.proc.alive():
                raise AssertionError("smtplb-agent exited with %s at start:\n%s"
                                     % (self.proc.p.returncode, _tail(self.proc.log_text())))
            return port_accepts(self.port)

        wait_for(ready, timeout, "smtplb-agent to listen on %d" % self.port)
        return self

    def query(self, send=None, timeout=3):
        """Connects, optionally sends `send` (HAProxy's agent-send), reads to
        EOF; returns the reply as text."""
        with socket.create_connection((HOST, self.port), timeout=timeout) as s:
            if send is not None:
                s.sendall(send)
            data = b""
            while True:
                chunk = s.recv(4096)
                if not chunk:
                    return data.decode("ascii")
                data += chunk

    def wait_reply(self, want, timeout=10):
        """Polls until the reply is `want`; fails with the last reply seen."""
        seen = []

        def check():
            got = self.query()
            seen[:] = [got]
            return got == want

        try:
            wait_for(check, timeout, "reply %r" % want)
        except AssertionError as e:
            raise AssertionError("%s; last reply %r" % (e, seen[0] if seen else None))
        return want

    def log_text(self):
        return self.proc.log_text() if self.proc else ""


class AgentCase(IntegrationCase):
    def setUp(self):
        super().setUp()
        self.agents = []
        self.proc_dir = FakeProc(os.path.join(self.workdir, "proc"))
        self.queue = QueueScript(os.path.join(self.workdir, "queue.sh"))

    def _dump_logs(self):
        super()._dump_logs()
        for a in self.agents:
            sys.stderr.write("smtplb-agent log (tail):\n%s\n" % _tail(a.log_text(), 30))

    def agent(self, *flags, proc_root=None):
        return Agent(self, proc_root or self.proc_dir.path, *flags).start()

    def queue_flags(self, *extra):
        return ("--queue-command", self.queue.command, "--queue-interval", SAMPLE) + extra


class Load(AgentCase):
    def test_idle_host_answers_high_capacity_at_once(self):
        self.proc_dir.typical()
        a = self.agent(*self.queue_flags())
        # The first sample is taken before the port opens: no waiting.
        self.assertEqual(a.query(), "up ready 79% # cpu=5 mem=21 queue=12\n")
        # Nothing changes while no tick passes.
        self.assertEqual(a.query(), "up ready 79% # cpu=5 mem=21 queue=12\n")

    def test_busy_cpu_lowers_capacity_and_idle_restores_it(self):
        self.proc_dir.typical()
        a = self.agent(*self.queue_flags())
        a.wait_reply("up ready 79% # cpu=5 mem=21 queue=12\n")
        self.proc_dir.tick(busy=800, idle=200)  # this interval: 80% busy
        a.wait_reply("up ready 20% # cpu=80 mem=21 queue=12\n")
        self.proc_dir.tick(busy=37, idle=63)
        a.wait_reply("up ready 63% # cpu=37 mem=21 queue=12\n")
        self.proc_dir.tick(busy=10, idle=990)  # 1%: memory decides again
        a.wait_reply("up ready 79% # cpu=1 mem=21 queue=12\n")

    def test_memory_and_queue_lower_capacity(self):
        self.proc_dir.typical()
        a = self.agent(*self.queue_flags("--queue-max", "1000"))
        a.wait_reply("up ready 79% # cpu=5 mem=21 queue=12\n")
        self.proc_dir.memory(1000000, 400000)
        a.wait_reply("up ready 40% # cpu=5 mem=60 queue=12\n")
        self.proc_dir.memory(1000000, 790000)
        self.queue.set("echo 700")  # 70% of --queue-max 1000
        a.wait_reply("up ready 30% # cpu=5 mem=21 queue=700\n")
        self.queue.set("echo 5000")  # over queue-max: 1%, not 0%
        a.wait_reply("up ready 1% # cpu=5 mem=21 queue=5000\n")

    def test_postqueue_json_lines_are_counted(self):
        self.proc_dir.typical()
        line = ('{"queue_name": "deferred", "queue_id": "4Dq3yH0lMRz4Kq", '
                '"recipients": [{"address": "b@example.net", "delay_reason": "timed out"}]}')
        self.queue.set("for i in 1 2 3 4 5 6 7; do echo '%s'; done" % line)
        a = self.agent(*self.queue_flags())
        a.wait_reply("up ready 79% # cpu=5 mem=21 queue=7\n")
        self.queue.set("true")  # postqueue -j on an empty queue prints nothing
        a.wait_reply("up ready 79% # cpu=5 mem=21 queue=0\n")


class Drain(AgentCase):
    def test_each_threshold_drains_and_ready_returns(self):
        self.proc_dir.typical()
        a = self.agent(*self.queue_flags("--drain-cpu", "90", "--drain-memory", "80",
                                         "--drain-queue", "500", "--queue-max", "1000"))
        a.wait_reply("up ready 79% # cpu=5 mem=21 queue=12\n")

        self.proc_dir.tick(busy=950, idle=50)
        a.wait_reply("up drain 5% # cpu=95 mem=21 queue=12\n")
        self.proc_dir.tick(busy=100, idle=900)
        a.wait_reply("up ready 79% # cpu=10 mem=21 queue=12\n")

        self.proc_dir.memory(1000000, 150000)
        a.wait_reply("up drain 15% # cpu=10 mem=85 queue=12\n")
        self.proc_dir.memory(1000000, 790000)
        a.wait_reply("up ready 79% # cpu=10 mem=21 queue=12\n")

        self.queue.set("echo 500")
        a.wait_reply("up drain 50% # cpu=10 mem=21 queue=500\n")
        self.queue.set("echo 499")
        a.wait_reply("up ready 50% # cpu=10 mem=21 queue=499\n")

        # Each flip is logged once.
        log = a.log_text()
        self.assertEqual(log.count("event=state old=ready new=drain"), 3, log[-3000:])
        self.assertEqual(log.count("event=state old=drain new=ready"), 3, log[-3000:])

    def test_default_thresholds_drain_a_saturated_host(self):
        self.proc_dir.typical()
        a = self.agent()
        a.wait_reply("up ready 79% # cpu=5 mem=21\n")
        self.proc_dir.tick(busy=1000, idle=0)
        a.wait_reply("up drain 1% # cpu=100 mem=21\n")


class Failures(AgentCase):
    def test_queue_command_failure_leaves_queue_out(self):
        self.proc_dir.typical()
        a = self.agent(*self.queue_flags())
        a.wait_reply("up ready 79% # cpu=5 mem=21 queue=12\n")
        # postqueue when Postfix is down: a complaint on stderr, exit 69.
        self.queue.set("echo 'postqueue: fatal: Queue report unavailable' >&2; exit 69")
        a.wait_reply("up ready 79% # cpu=5 mem=21 error=queue\n")
        self.queue.set("echo 12")
        a.wait_reply("up ready 79% # cpu=5 mem=21 queue=12\n")
        self.queue.set("echo twelve")
        a.wait_reply("up ready 79% # cpu=5 mem=21 error=queue\n")
        self.queue.set("echo 13")
        a.wait_reply("up ready 79% # cpu=5 mem=21 queue=13\n")
        log = a.log_text()
        self.assertIn('event=source_failed source=queue', log)
        self.assertIn('exit status 69', log)
        self.assertIn('event=source_recovered source=queue', log)

    def test_hanging_queue_command_is_killed_and_never_delays_a_reply(self):
        self.proc_dir.typical()
        a = self.agent(*self.queue_flags("--queue-timeout", "2s"))
        a.wait_reply("up ready 79% # cpu=5 mem=21 queue=12\n")
        self.queue.set("sleep 30")
        a.wait_reply("up ready 79% # cpu=5 mem=21 error=queue\n")
        # The sampler spends nearly all its time in the command now (2 s
        # runs 50 ms apart); the event loop answers at once regardless.  A
        # loop that waited for the command would take up to 2 s here.
        for _ in range(10):
            t0 = time.monotonic()
            self.assertEqual(a.query(), "up ready 79% # cpu=5 mem=21 error=queue\n")
            self.assertLess(time.monotonic() - t0, 1.0)
        self.assertIn("timed out after 2000ms", a.log_text())
        self.queue.set("echo 12")
        a.wait_reply("up ready 79% # cpu=5 mem=21 queue=12\n")

    def test_missing_proc_still_answers_up_with_a_reason(self):
        empty = os.path.join(self.workdir, "empty")
        os.makedirs(empty)
        a = self.agent(proc_root=empty)
        # No figure at all: no weight and no ready/drain, so the balancer
        # keeps what it had; `up` because the agent itself is fine.
        self.assertEqual(a.query(), "up # error=stat,meminfo\n")
        self.assertIn("event=source_failed source=stat", a.log_text())

    def test_bad_proc_files_leave_their_figure_out(self):
        self.proc_dir.typical()
        a = self.agent()
        a.wait_reply("up ready 79% # cpu=5 mem=21\n")
        self.proc_dir.remove("meminfo")
        a.wait_reply("up ready 95% # cpu=5 error=meminfo\n")
        self.proc_dir.write_raw("stat", "cpu  garbage\n")
        a.wait_reply("up # error=stat,meminfo\n")
        self.proc_dir.memory(1000000, 790000)
        a.wait_reply("up ready 79% # mem=21 error=stat\n")
        self.proc_dir.tick(busy=500, idle=500)
        a.wait_reply("up ready 50% # cpu=50 mem=21\n")
        self.assertIn("event=source_recovered source=stat", a.log_text())


class Protocol(AgentCase):
    def test_agent_send_text_is_read_and_the_agent_closes(self):
        self.proc_dir.typical()
        a = self.agent()
        want = "up ready 79% # cpu=5 mem=21\n"
        # HAProxy's agent-send: a line before the reply; the reply comes
        # anyway and the agent closes (recv returns EOF).
        self.assertEqual(a.query(send=b"smtplb mx1\n"), want)
        # More than the agent reads: it still answers, then closes.
        self.assertEqual(a.query(send=b"x" * 10000), want)
        # A balancer that sends nothing.
        self.assertEqual(a.query(), want)

    def test_many_connections_at_once_each_get_the_line(self):
        self.proc_dir.typical()
        a = self.agent()
        socks = [socket.create_connection((HOST, a.port), timeout=3) for _ in range(50)]
        try:
            for s in socks:
                data = b""
                while True:
                    chunk = s.recv(4096)
                    if not chunk:
                        break
                    data += chunk
                self.assertEqual(data, b"up ready 79% # cpu=5 mem=21\n")
        finally:
            for s in socks:
                s.close()


class Lifecycle(AgentCase):
    def test_sigterm_exits_zero(self):
        self.proc_dir.typical()
        a = self.agent(*self.queue_flags())
        a.query()
        a.proc.signal(signal.SIGTERM)
        self.assertEqual(a.proc.wait(10), 0, _tail(a.log_text()))
        self.assertIn("event=stop signal=TERM", a.log_text())

    def test_sigint_while_the_queue_command_hangs_exits_at_once(self):
        self.proc_dir.typical()
        a = self.agent(*self.queue_flags("--queue-timeout", "20s"))
        marker = os.path.join(self.workdir, "hanging.pid")
        self.queue.set("echo $$ > %s.tmp; mv %s.tmp %s; exec sleep 30" % (marker, marker, marker))
        pid = int(wait_for(lambda: os.path.exists(marker) and open(marker).read().strip(), 10,
                           "the queue command to hang"))
        t0 = time.monotonic()
        a.proc.signal(signal.SIGINT)
        self.assertEqual(a.proc.wait(10), 0, _tail(a.log_text()))
        self.assertLess(time.monotonic() - t0, 3)
        # The command went with it (killed, so gone or a zombie).
        wait_for(lambda: not _running(pid), 5, "the queue command %d to be killed" % pid)

    def test_port_opens_after_the_first_sample_and_sigterm_during_it_exits_zero(self):
        self.proc_dir.typical()
        marker = os.path.join(self.workdir, "hanging.pid")
        self.queue.set("echo $$ > %s.tmp; mv %s.tmp %s; exec sleep 30" % (marker, marker, marker))
        a = Agent(self, self.proc_dir.path, *self.queue_flags("--queue-timeout", "20s"))
        a.proc = Process(a.argv, a.log_path)
        self.procs.append(a.proc)
        self.agents.append(a)
        wait_for(lambda: os.path.exists(marker), 10, "the first queue command to run")
        # No reply is known yet: the port is bound but refuses connections.
        self.assertFalse(port_accepts(a.port))
        t0 = time.monotonic()
        a.proc.signal(signal.SIGTERM)
        self.assertEqual(a.proc.wait(10), 0, _tail(a.log_text()))
        self.assertLess(time.monotonic() - t0, 3)
        self.assertNotIn("event=start", a.log_text())

    def test_bad_flags_exit_2_and_busy_port_exits_1(self):
        for flags in (["--queue-max", "0"], ["--listen", "localhost:9777"],
                      ["--sample-interval", "1"], ["--drain-cpu", "101"], ["--bogus"]):
            r = subprocess.run([AGENT_BIN] + flags, stdin=subprocess.DEVNULL,
                               capture_output=True, timeout=10)
            self.assertEqual(r.returncode, 2, "%s: %s" % (flags, r.stderr))
        self.proc_dir.typical()
        a = self.agent()
        r = subprocess.run([AGENT_BIN, "--listen", "%s:%d" % (HOST, a.port),
                            "--proc-root", self.proc_dir.path],
                           stdin=subprocess.DEVNULL, capture_output=True, timeout=10)
        self.assertEqual(r.returncode, 1, r.stderr)
        self.assertIn(b"event=listen_failed", r.stderr)


def _running(pid):
    """True if `pid` exists and is not a zombie."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


if __name__ == "__main__":
    unittest.main()
