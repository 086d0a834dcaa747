"""benchlib.py: the helpers bench/bench.py is built from: free loopback
ports, waiting for a listener, CPU and memory of a process (or of a process
group) and of the machine, the Runner that starts and stops processes and
remembers every command, the load clients (Postfix's smtp-source and
bench/smtp_load), smtplb's log, and the configurations of smtplb, HAProxy
and nginx.  Python 3 standard library only."""

from __future__ import annotations

import json
import os
import random
import re
import resource
import shlex
import signal
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

HOST = "127.0.0.1"
SENDER = "bench-sender@example.com"
RECIPIENT = "bench-rcpt@example.com"
HELO = "bench.example.com"
CLK_TCK = os.sysconf("SC_CLK_TCK")


class BenchError(Exception):
    pass


# ---------------------------------------------------------------- ports


# Above Linux's ephemeral range (32768-60999) and apart from the integration
# harness's (10000-32000): a port the kernel hands out to client sockets, or
# one a test running beside the benchmark was given, can have a stale peer
# still trying it, and a stray message in a sink would be counted as the
# benchmark's own.
PORT_RANGE = (61000, 65000)


def free_port(hosts: tuple[str, ...] = (HOST,), udp: bool = False) -> int:
    """A port free for TCP (and UDP, for dnsmasq) on every one of `hosts`."""
    rng = random.Random()
    for _ in range(1000):
        held = []
        port = rng.randrange(*PORT_RANGE)
        try:
            for h in hosts:
                t = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                held.append(t)
                t.bind((h, port))
            if udp:
                u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                held.append(u)
                u.bind((hosts[0], port))
            return port
        except OSError:
            continue
        finally:
            for s in held:
                s.close()
    raise BenchError(f"no port free on {hosts}")


def wait_listening(port: int, proc: subprocess.Popen, what: str, host: str = HOST,
                   timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise BenchError(f"{what} exited with status {proc.returncode} before listening")
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise BenchError(f"{what} did not listen on {host}:{port} within {timeout}s")


# ---------------------------------------------------------------- CPU and memory


def _stat_fields(pid: int | str) -> list[str]:
    with open(f"/proc/{pid}/stat", "rb") as f:
        data = f.read().decode()
    # comm may hold spaces and parentheses: split after the last ')'.
    # [0] is field 3 (state): pgrp field 5, utime 14, stime 15, cutime 16, cstime 17.
    return data[data.rindex(")") + 2:].split()


def proc_cpu_seconds(pid: int) -> float:
    """utime+stime of the whole process (all threads), in seconds."""
    f = _stat_fields(pid)
    return (int(f[11]) + int(f[12])) / CLK_TCK


def pgroup_cpu_seconds(pgid: int) -> float:
    """CPU of every live process in process group `pgid` plus what its leader
    reaped (cutime+cstime): the difference of two calls is what the group
    spent in between, short-lived daemons included (a private Postfix)."""
    ticks = 0
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            f = _stat_fields(name)
        except OSError:
            continue  # gone in between
        if int(f[2]) == pgid:
            ticks += int(f[11]) + int(f[12])
            if int(name) == pgid:
                ticks += int(f[13]) + int(f[14])
    return ticks / CLK_TCK


def children_cpu() -> float:
    """CPU of this process's reaped children (smtp-source)."""
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def proc_status_kb(pid: int, key: str) -> int | None:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def memory_kb(pid: int) -> tuple[int, int]:
    """(RSS, PSS) of a process in KiB, from /proc/PID/smaps_rollup."""
    got = {}
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            key = line.split(":")[0]
            if key in ("Rss", "Pss"):
                got[key] = int(line.split()[1])
    return got.get("Rss", 0), got.get("Pss", 0)


def system_cpu() -> tuple[float, float]:
    """(busy, total) jiffies of all CPUs from /proc/stat."""
    with open("/proc/stat") as f:
        vals = [int(x) for x in f.readline().split()[1:]]
    idle = vals[3] + (vals[4] if len(vals) > 4 else 0)
    total = sum(vals[:8])
    return float(total - idle), float(total)


def raise_nofile(need: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < need:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, need), hard))


# ---------------------------------------------------------------- figures


def median_range(values) -> tuple[float, float, float] | None:
    values = [v for v in values if v is not None]
    if not values:
        return None
    return statistics.median(values), min(values), max(values)


def ratio(a, b):
    return None if a is None or b in (None, 0) else a / b


def percentiles(values: list[float]) -> dict:
    """Nearest-rank p50/p99 of a list."""
    v = sorted(values)
    pick = lambda q: v[min(len(v), max(1, -(-len(v) * q // 100))) - 1] if v else None  # noqa: E731
    return {"p50": pick(50), "p99": pick(99)}


# ---------------------------------------------------------------- processes


class Runner:
    """Starts and stops processes; remembers every command it ran."""

    def __init__(self, workdir: Path, verbose: bool) -> None:
        self.workdir = workdir
        self.verbose = verbose
        self.commands: list[str] = []
        self.procs: list[subprocess.Popen] = []

    def note(self, argv: list[str], redirect: str = "") -> str:
        cmd = shlex.join(str(a) for a in argv) + redirect
        if cmd not in self.commands:
            self.commands.append(cmd)
        if self.verbose:
            print(f"  $ {cmd}", file=sys.stderr)
        return cmd

    def start(self, argv: list, name: str, group: bool = False
              ) -> tuple[subprocess.Popen, Path, Path]:
        """Starts argv in the background, its output in NAME.out and NAME.err;
        `group`: in a process group of its own (its CPU is the group's)."""
        out, err = self.workdir / f"{name}.out", self.workdir / f"{name}.err"
        self.note(argv, f" >{out.name} 2>{err.name} &")
        p = subprocess.Popen([str(a) for a in argv], stdin=subprocess.DEVNULL,
                             stdout=open(out, "wb"), stderr=open(err, "wb"), cwd=self.workdir,
                             start_new_session=group)
        self.procs.append(p)
        return p, out, err

    def stop(self, p: subprocess.Popen, grace: float = 5.0) -> int | None:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        if p in self.procs:
            self.procs.remove(p)
        return p.returncode

    def stop_all(self) -> None:
        for p in list(self.procs):
            self.stop(p, grace=2.0)

    def run(self, argv: list, name: str, timeout: float) -> tuple[subprocess.CompletedProcess,
                                                                    float]:
        """Runs a load client to completion: (its result, wall seconds)."""
        argv = [str(a) for a in argv]
        self.note(argv)
        t0 = time.monotonic()
        try:
            cp = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True,
                                timeout=timeout, cwd=self.workdir)
        except subprocess.TimeoutExpired as e:
            raise BenchError(f"{name}: {Path(argv[0]).name} did not finish within {timeout:g}s; "
                             f"stderr so far: {(e.stderr or b'').decode(errors='replace')[-500:]!r}"
                             ) from None
        return cp, time.monotonic() - t0


def sink_count(out: Path) -> int:
    """The last `mesg=N` smtp-sink -c printed."""
    try:
        found = re.findall(rb"mesg=(\d+)", out.read_bytes())
    except OSError:
        return 0
    return int(found[-1]) if found else 0


# ---------------------------------------------------------------- load clients


def run_smtp_source(runner: Runner, argv: list, messages: int, name: str,
                    timeout: float) -> float:
    """smtp-source (with -c) to completion; its wall time.  Raises BenchError
    unless it exited 0, quietly, having counted every message (it stops at
    the first unexpected reply)."""
    cp, wall = runner.run(argv, name, timeout)
    err = cp.stderr.decode(errors="replace").strip()
    # With -c smtp-source prints a counter "1\r2\r...N\r\n" and nothing else.
    counts = [int(x) for x in re.findall(rb"\d+", cp.stdout)]
    counted = counts[-1] if counts else 0
    problems = [p for p, bad in ((f"exit status {cp.returncode}", cp.returncode != 0),
                                 (f"stderr: {err[:400]!r}", bool(err)),
                                 (f"counted {counted} of {messages} messages",
                                  counted != messages)) if bad]
    if problems:
        raise BenchError(f"{name}: smtp-source failed: " + "; ".join(problems))
    return wall


def run_smtp_load(runner: Runner, argv: list, name: str, timeout: float) -> dict:
    """bench/smtp_load to completion: its JSON result plus "exit_status".
    Raises BenchError when it did not finish, exited 2 (bad usage or setup)
    or printed no JSON; whether messages failed is the caller's to judge."""
    cp, wall = runner.run(argv, name, timeout)
    err = cp.stderr.decode(errors="replace").strip()
    if cp.returncode not in (0, 1):
        raise BenchError(f"{name}: smtp_load exited with status {cp.returncode}: {err[:500]!r}")
    try:
        doc = json.loads(cp.stdout.decode(errors="replace"))
    except ValueError:
        raise BenchError(f"{name}: smtp_load printed no JSON (status {cp.returncode}, "
                         f"stderr {err[:300]!r})") from None
    return doc | {"exit_status": cp.returncode, "stderr": err, "outer_wall_s": wall}


def read_ids(path: Path) -> dict[str, float]:
    """smtp_load --ids-out: {id: latency ms} of the accepted messages."""
    try:
        lines = path.read_text().split("\n")
    except OSError:
        return {}
    return {p[0]: float(p[1]) if len(p) > 1 else None for p in (x.split() for x in lines) if p}


def scan_smtplb_log(log: Path) -> dict:
    """smtplb's transaction lines by result, those flagged as possible
    duplicates, and the first warnings: a row is sound only when every
    message was `delivered` and nothing was logged at warning or above."""
    out = {"delivered": 0, "other_results": {}, "possible_duplicates": 0, "warnings": []}
    with open(log, errors="replace") as f:
        for line in f:
            if "event=transaction" in line:
                m = re.search(r"\bresult=(\S+)", line)
                res = m.group(1) if m else "?"
                if res == "delivered":
                    out["delivered"] += 1
                else:
                    out["other_results"][res] = out["other_results"].get(res, 0) + 1
                out["possible_duplicates"] += "possible_duplicate=yes" in line
            if re.search(r"\s(warn|warning|error|critical)\s", line) and len(out["warnings"]) < 5:
                out["warnings"].append(line.rstrip()[:300])
    return out


# ---------------------------------------------------------------- configurations


def haproxy_config(port: int, backends: list[str], maxconn: int) -> str:
    """HAProxy 2.6 in TCP mode, round robin over `backends` (HOST:PORT)."""
    servers = "\n".join(f"    server b{i} {b}" for i, b in enumerate(backends, 1))
    return f"""\
# written by bench/bench.py
global
    maxconn {maxconn}

defaults
    mode tcp
    timeout connect 5s
    timeout client 120s
    timeout server 120s

frontend smtp_in
    bind {HOST}:{port}
    default_backend backends

backend backends
    balance roundrobin
{servers}
"""


def smtplb_config(port: int, pool: str, *, algorithm: str = "round_robin",
                  domain: str = "example.com", listener_extra: str = "", extra: str = "",
                  max_connections: int = 4000) -> str:
    """One inbound listener on loopback, one pool (`pool`: its `backends:`
    or `mx:` lines), the senders trusted (an outbound relay for the
    organisation's own bulk senders).  `listener_extra` goes under the
    listener, `extra` at the top level; both indented as they must be."""
    return f"""\
# written by bench/bench.py
hostname: lb.bench.example.com
listeners:
  - name: mx
    listen: {HOST}:{port}
    role: inbound
{listener_extra}local_domains: [{domain}]
trusted_networks: [127.0.0.0/8]
pools:
  - name: main
    algorithm: {algorithm}
{pool}
routes:
  - pool: main
limits:
  max_connections: {max_connections}
  max_connections_per_ip: {max_connections}
{extra}"""


def backend_lines(backends: list[str], extra: str = "") -> str:
    """A pool's `backends:` (HOST:PORT each); `extra`: lines under each."""
    return "\n".join(["    backends:"] + [f"      - address: {b}" + (f"\n{extra}" if extra else "")
                                         for b in backends])


def nginx_config(workdir: Path, port: int, auth_port: int, maxconn: int) -> str:
    """nginx's mail proxy (ngx_mail_module, Debian's libnginx-mod-mail) in
    SMTP mode without authentication: after the client's RCPT it asks the
    auth_http server (bench.py's AuthHttp) where to go, then replays the
    envelope to that backend and relays the rest as bytes."""
    return f"""\
# written by bench/bench.py
load_module /usr/lib/nginx/modules/ngx_mail_module.so;
daemon off;
master_process on;
worker_processes 2;
pid {workdir}/nginx-{port}.pid;
error_log stderr warn;
events {{ worker_connections {maxconn}; }}
mail {{
    server_name lb.bench.example.com;
    auth_http {HOST}:{auth_port}/auth;
    xclient off;
    proxy_pass_error_message on;
    smtp_auth none;
    smtp_capabilities SIZE 8BITMIME;
    server {{
        listen {HOST}:{port};
        protocol smtp;
    }}
}}
"""
