#!/usr/bin/env python3
"""run_skewed.py: smtplb's balancing algorithms with one backend much slower.

One run, loopback only, bounded in time.  Two fault-injecting backends
(tests/integration/fault_backend.py) are started once and kept for the whole
run:

  fast   no delay
  slow   --delay-eod S (default 0.05 s): waits S seconds before its reply to
         the final dot, i.e. its end of data is many times slower; and
         --slow-capacity N (default 2, fault_backend.py --eod-capacity N):
         at most N messages are in those S seconds at a time, first come
         first served, so it accepts at most N / S messages a second
         (2 / 0.05 s = 40 msg/s by default) and queues the rest

Why a capacity: a slower machine has less throughput, not only more latency.
A real MTA's work per message is serialised on a few CPUs and disks; past
its rate a queue builds up on it and every message waits for the ones
ahead.  Round robin hands the slow backend half the load however slow it is,
far more than its 40 msg/s by default, so there its queue holds nearly every
client session and its latency is about C * S / N (0.5 s with the
defaults); an algorithm that watches the load sends it less.  With
--slow-capacity 0 every session waits S on its own (unlimited capacity,
the behaviour before the option): the slow backend is then slow but never
overloaded, and only its fixed S shows in the latencies.

Then, for each algorithm (round_robin, least_connections, least_load,
random_two; the order rotates from one --repeat round to the next) a fresh
smtplb is started with a pool of the two, warmed up, and driven by an
in-process asyncio SMTP client that keeps C sessions busy (default 20),
each sending one message per connection (or --per-connection N), until
--messages messages have been tried.  Every transaction is timed from the
connect (or, for the 2nd.. message of a connection, from MAIL) to the 250
after the final dot.  Reference rows send the same workload straight to the
fast (and the slow) backend, without smtplb.

Per row: messages/s, latency p50/p90/p99/max (ms), the share of each backend
(messages stored in its directory, msgs/*.json, after minus before the run),
failures, and checks: stored == accepted, every accepted message stored
exactly once (the X-Test-Id header the client adds), nothing stored that the
client did not see accepted.  The client's CPU per message and its share of
one core show whether it was the bottleneck; the CPU of smtplb and of the
backends per message and the machine's busy % are reported too.

Python 3 standard library only.  See bench/README.md ("Skewed backends").

  bench/run_skewed.py                               # defaults: 2000 messages, 20 sessions, 0.05 s, capacity 2 (~2 min)
  bench/run_skewed.py --slow-capacity 0             # slow but unlimited (no queue on it)
  bench/run_skewed.py --messages 5000 --repeat 3 --out skewed.json
  bench/run_skewed.py --delay-eod 0.02 --per-connection 10 --direct fast
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as _dt
import json
import math
import os
import platform
import re
import resource
import shlex
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from benchlib import (BenchError, Runner, finish, fmt, free_port, make_workdir, parse_size,  # noqa: E402
                      proc_cpu_seconds, scan_smtplb_log, system_cpu, wait_listening)

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
FAULT_BACKEND = REPO / "tests" / "integration" / "fault_backend.py"
CLK_TCK = os.sysconf("SC_CLK_TCK")
ALGORITHMS = ("round_robin", "least_connections", "least_load", "random_two")
HOST = "127.0.0.1"

SENDER = "bench-sender@example.com"
RECIPIENT = "bench-rcpt@example.com"
HELO = "bench.example.com"


# ---------------------------------------------------------------- helpers


def self_cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def lat_stats(lat: list[float]) -> dict:
    """p50/p90/p99/max/mean and count of an ascending list of milliseconds."""
    return {"n": len(lat), "p50": percentile(lat, 50), "p90": percentile(lat, 90),
            "p99": percentile(lat, 99), "max": lat[-1] if lat else None,
            "mean": sum(lat) / len(lat) if lat else None}


def percentile(sorted_vals: list[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0..100) of an ascending list."""
    if not sorted_vals:
        return None
    k = max(1, math.ceil(q / 100.0 * len(sorted_vals)))
    return sorted_vals[min(k, len(sorted_vals)) - 1]


# ---------------------------------------------------------------- backends

# fault_backend.py binds its own socket.socket(AF_INET) (proto 0), so
# asyncio does not set TCP_NODELAY on the sessions it accepts: Nagle holds
# its reply to a pipelined RCPT until smtplb ACKs the reply to MAIL, and
# smtplb's delayed ACK makes that ~40 ms per transaction.  Real MTAs
# (Postfix flushes pipelined replies in one write) do not behave so; the
# benchmark therefore runs fault_backend.py unchanged under this shim, which
# only sets TCP_NODELAY on every accepted connection (--backend-nagle: not).
NODELAY_SHIM = "--exec-backend-nodelay"


def exec_backend_nodelay(argv: list[str]) -> None:
    """`run_skewed.py --exec-backend-nodelay SCRIPT ARGS...`: runs SCRIPT as
    __main__ with TCP_NODELAY set on every socket it accepts."""
    import runpy

    orig_accept = socket.socket.accept

    def accept(self):
        conn, addr = orig_accept(self)
        if conn.family in (socket.AF_INET, socket.AF_INET6):
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return conn, addr

    socket.socket.accept = accept
    sys.argv = argv
    runpy.run_path(argv[0], run_name="__main__")


class Backend:
    def __init__(self, runner: Runner, args, name: str, delay: float,
                 capacity: int = 0) -> None:
        self.name = name
        self.delay = delay
        self.capacity = capacity
        self.store = runner.workdir / f"store-{name}"
        self.store.mkdir()
        self.msgs = self.store / "msgs"
        argv = [sys.executable]
        if not args.backend_nagle:
            argv += [str(Path(__file__).resolve()), NODELAY_SHIM]
        argv += [str(FAULT_BACKEND), "--port", "0", "--store", str(self.store), "--name", name]
        if delay:
            argv += ["--delay-eod", f"{delay:g}"]
            if capacity:
                # N messages in their delay at a time, FIFO: N / delay msg/s.
                argv += ["--eod-capacity", str(capacity)]
        self.proc, _out, self.err = runner.start(argv, f"backend-{name}")
        ready = self.store / "ready.json"
        deadline = time.monotonic() + 10.0
        while not ready.is_file():
            if self.proc.poll() is not None:
                raise BenchError(f"backend {name} exited with status {self.proc.returncode}: "
                                 f"{self.err.read_text(errors='replace')[-500:]}")
            if time.monotonic() > deadline:
                raise BenchError(f"backend {name}: no ready.json within 10s")
            time.sleep(0.02)
        self.port = json.loads(ready.read_text())["port"]
        wait_listening(self.port, self.proc, f"backend {name}")

    def stored_names(self) -> set[str]:
        try:
            return {e.name for e in os.scandir(self.msgs) if e.name.endswith(".json")}
        except FileNotFoundError:
            return set()

    def test_ids(self, names: set[str]) -> list[str | None]:
        ids = []
        for n in sorted(names):
            try:
                ids.append(json.loads((self.msgs / n).read_text()).get("test_id"))
            except (OSError, ValueError):
                ids.append(None)
        return ids


# ---------------------------------------------------------------- load client


class SmtpFailure(Exception):
    pass


def make_message(test_id: str, size: int) -> bytes:
    """Headers with X-Test-Id, then `size` octets of 72-octet lines (no
    leading dots, so no dot-stuffing), CR LF terminated."""
    head = (f"From: <{SENDER}>\r\nTo: <{RECIPIENT}>\r\nSubject: skewed bench {test_id}\r\n"
            f"Message-ID: <{test_id}@{HELO}>\r\nX-Test-Id: {test_id}\r\n\r\n").encode()
    line = (b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"[:70]
            + b"\r\n")
    body = (line * (size // len(line) + 1))[:size]
    if not body.endswith(b"\r\n"):
        body = body[:-2] + b"\r\n" if len(body) >= 2 else b"\r\n"
    return head + body


class LoadClient:
    """C sessions, each taking the next message index until `total` have been
    tried.  Records the latency and X-Test-Id of every accepted message (in
    the same order) and every failure with its stage."""

    def __init__(self, port: int, total: int, sessions: int, per_conn: int, size: int,
                 id_prefix: str, io_timeout: float) -> None:
        self.port = port
        self.total = total
        self.sessions = sessions
        self.per_conn = per_conn
        self.size = size
        self.prefix = id_prefix
        self.io_timeout = io_timeout
        self.next = 0
        self.latencies: list[float] = []   # accepted transactions only
        self.accepted: list[str] = []
        self.failures: list[dict] = []
        self.connections = 0

    def take(self) -> int | None:
        if self.next >= self.total:
            return None
        i = self.next
        self.next += 1
        return i

    async def reply(self, reader: asyncio.StreamReader) -> tuple[int, str]:
        lines = []
        while True:
            line = await asyncio.wait_for(reader.readline(), self.io_timeout)
            if not line:
                raise SmtpFailure("connection closed by peer")
            lines.append(line.decode("utf-8", "replace").rstrip("\r\n"))
            if len(line) < 4 or line[3:4] != b"-":
                break
        try:
            code = int(lines[-1][:3])
        except ValueError:
            raise SmtpFailure(f"malformed reply {lines[-1][:100]!r}") from None
        return code, " | ".join(lines)

    async def expect(self, reader, want: int, stage: str) -> None:
        code, text = await self.reply(reader)
        if code != want:
            raise SmtpFailure(f"{stage}: {text[:200]}")

    async def worker(self) -> None:
        i = self.take()
        while i is not None:
            self.connections += 1
            t0 = time.monotonic()
            writer = None
            stage = "connect"
            try:
                reader, writer = await asyncio.wait_for(
                    asyncio.open_connection(HOST, self.port), self.io_timeout)
                stage = "banner"
                await self.expect(reader, 220, stage)
                stage = "EHLO"
                writer.write(f"EHLO {HELO}\r\n".encode())
                await self.expect(reader, 250, stage)
                sent = 0
                while True:
                    tid = f"{self.prefix}-{i:07d}"
                    if sent:
                        t0 = time.monotonic()
                    stage = "MAIL"
                    writer.write(f"MAIL FROM:<{SENDER}>\r\n".encode())
                    await self.expect(reader, 250, stage)
                    stage = "RCPT"
                    writer.write(f"RCPT TO:<{RECIPIENT}>\r\n".encode())
                    await self.expect(reader, 250, stage)
                    stage = "DATA"
                    writer.write(b"DATA\r\n")
                    await self.expect(reader, 354, stage)
                    stage = "end of data"
                    writer.write(make_message(tid, self.size) + b".\r\n")
                    await self.expect(reader, 250, stage)
                    self.latencies.append(time.monotonic() - t0)
                    self.accepted.append(tid)
                    sent += 1
                    i = self.take() if sent < self.per_conn else None
                    if i is None:
                        break
                stage = "QUIT"
                writer.write(b"QUIT\r\n")
                await self.expect(reader, 221, stage)
                # The next connection takes a fresh index.
                i = self.take()
            except (SmtpFailure, OSError, asyncio.TimeoutError, asyncio.IncompleteReadError) as e:
                if stage == "QUIT":
                    # The message(s) were accepted; only the goodbye failed.
                    self.failures.append({"index": None, "stage": stage, "error": repr(e)[:200]})
                else:
                    self.failures.append({"index": i, "stage": stage,
                                          "error": (str(e) or repr(e))[:200]})
                i = self.take()
            finally:
                if writer is not None:
                    writer.close()
                    try:
                        await writer.wait_closed()
                    except Exception:  # noqa: BLE001
                        pass

    async def run(self) -> None:
        await asyncio.gather(*(self.worker() for _ in range(self.sessions)))


def drive(port: int, total: int, args, id_prefix: str, timeout: float) -> LoadClient:
    client = LoadClient(port, total, args.concurrency, args.per_connection, args.size,
                        id_prefix, args.io_timeout)

    async def bounded():
        await asyncio.wait_for(client.run(), timeout)

    try:
        asyncio.run(bounded())
    except asyncio.TimeoutError:
        raise BenchError(f"the load run did not finish within {timeout:g}s "
                         f"(--run-timeout); {len(client.accepted)} accepted so far") from None
    return client


# ---------------------------------------------------------------- smtplb


def smtplb_config(listen_port: int, backend_ports: list[int], algorithm: str) -> str:
    backends = "\n".join(f"      - address: {HOST}:{p}" for p in backend_ports)
    return f"""\
# written by bench/run_skewed.py
hostname: lb.bench.example.com
listeners:
  - name: mx
    listen: {HOST}:{listen_port}
    role: inbound
local_domains: [example.com]
trusted_networks: [127.0.0.0/8]
pools:
  - name: main
    algorithm: {algorithm}
    backends:
{backends}
routes:
  - pool: main
limits:
  max_connections_per_ip: 1000
"""


# ---------------------------------------------------------------- one row


def measure(runner: Runner, args, backends: dict[str, Backend], setup: str, rnd: int,
            run_id: str) -> dict:
    """setup: an algorithm name, or 'direct-fast' / 'direct-slow'."""
    tag = f"{setup}-r{rnd}"
    print(f"== {tag}: ", end="", flush=True, file=sys.stderr)
    res: dict = {"setup": setup, "round": rnd, "messages": args.messages,
                 "concurrency": args.concurrency, "per_connection": args.per_connection}
    proc = None
    try:
        if setup.startswith("direct-"):
            port = backends[setup.split("-", 1)[1]].port
        else:
            port = free_port()
            cfg = runner.workdir / f"{tag}-smtplb.yaml"
            cfg.write_text(smtplb_config(port, [backends["fast"].port, backends["slow"].port],
                                         setup))
            argv = [args.smtplb, "run", "-c", cfg.name]
            if args.smtplb_log_level:
                argv += ["--log-level", args.smtplb_log_level]
            proc, _out, log = runner.start(argv, f"{tag}-smtplb")
            wait_listening(port, proc, "smtplb")
            res["config"] = cfg.read_text()
            res["config_file"] = cfg.name

        if args.warmup:
            w = drive(port, args.warmup, args, f"{run_id}-{tag}-warmup", args.run_timeout)
            if w.failures:
                raise BenchError(f"warm-up: {len(w.failures)} failures, first: {w.failures[0]}")

        before = {n: b.stored_names() for n, b in backends.items()}
        watched = {n: b.proc.pid for n, b in backends.items()}
        if proc:
            watched["smtplb"] = proc.pid
        cpu0 = {k: proc_cpu_seconds(pid) for k, pid in watched.items()}
        sys0 = system_cpu()
        me0 = self_cpu()
        t0 = time.monotonic()
        client = drive(port, args.messages, args, f"{run_id}-{tag}", args.run_timeout)
        wall = time.monotonic() - t0
        me1 = self_cpu()
        sys1 = system_cpu()
        cpu1 = {k: proc_cpu_seconds(pid) for k, pid in watched.items()}

        # A 250 comes only after the backend renamed the message into place:
        # what was accepted is on disk now.
        new = {n: b.stored_names() - before[n] for n, b in backends.items()}
        stored_ids: list[str | None] = []
        where: dict[str | None, str] = {}
        for n, b in backends.items():
            ids = b.test_ids(new[n])
            stored_ids += ids
            where.update((t, n) for t in ids)
        counts = {n: len(v) for n, v in new.items()}
        accepted = set(client.accepted)
        seen: dict[str | None, int] = {}
        for t in stored_ids:
            seen[t] = seen.get(t, 0) + 1
        duplicates = sorted(t for t, c in seen.items() if c > 1 and t is not None)
        missing = sorted(accepted - set(seen))
        unexpected = sorted(str(t) for t in seen if t not in accepted)

        lat = sorted(x * 1000.0 for x in client.latencies)
        # The client's latency of each accepted message, by the backend that
        # stored it (X-Test-Id): what the slow backend costs, as seen.
        lat_by: dict[str, list[float]] = {n: [] for n in backends}
        for tid, x in zip(client.accepted, client.latencies):
            if tid in where:
                lat_by[where[tid]].append(x * 1000.0)
        for v in lat_by.values():
            v.sort()
        ok = len(client.accepted)
        res.update({
            "wall_s": wall,
            "accepted": ok,
            "failed": len([f for f in client.failures if f["index"] is not None]),
            "failures": client.failures[:20],
            "failures_total": len(client.failures),
            "connections": client.connections,
            "msgs_per_s": ok / wall if wall > 0 else None,
            "latency_ms": lat_stats(lat),
            "latency_ms_by_backend": {n: lat_stats(v) for n, v in lat_by.items()},
            "latencies_ms": [round(x, 3) for x in lat] if args.keep_latencies else None,
            "_lat": lat,
            "_lat_by": lat_by,
            "stored": counts,
            "share_pct": {n: (100.0 * c / sum(counts.values()) if sum(counts.values()) else None)
                          for n, c in counts.items()},
            "stored_total": sum(counts.values()),
            "duplicates": duplicates[:20], "duplicates_total": len(duplicates),
            "missing": missing[:20], "missing_total": len(missing),
            "stored_not_accepted": unexpected[:20],
            "stored_not_accepted_total": len(unexpected),
            "cpu_s": {k: cpu1[k] - cpu0[k] for k in watched},
            "client_cpu_s": me1 - me0,
        })
        res["client_cpu_us_per_msg"] = res["client_cpu_s"] / max(1, args.messages) * 1e6
        res["client_cpu_pct_of_one_core"] = 100.0 * res["client_cpu_s"] / wall
        res["backends_cpu_us_per_msg"] = (sum(res["cpu_s"][n] for n in backends)
                                          / max(1, ok) * 1e6)
        res["smtplb_cpu_us_per_msg"] = (res["cpu_s"]["smtplb"] / max(1, ok) * 1e6
                                        if proc else None)
        busy, total = sys1[0] - sys0[0], sys1[1] - sys0[1]
        res["machine_busy_pct"] = 100.0 * busy / total if total > 0 else None
        # CPU the machine spent on anything but this run's processes (other
        # work on the host, unattributed kernel time): high = disturbed.
        ours = sum(res["cpu_s"].values()) + res["client_cpu_s"]
        res["other_cpu_s"] = max(0.0, busy / CLK_TCK - ours)
        res["other_cpu_pct"] = 100.0 * res["other_cpu_s"] / (busy / CLK_TCK) if busy > 0 else None

        problems = []
        if res["stored_total"] != ok:
            problems.append(f"stored {res['stored_total']} != accepted {ok}")
        if duplicates:
            problems.append(f"{len(duplicates)} test ids stored more than once")
        if missing:
            problems.append(f"{len(missing)} accepted messages not stored")
        if unexpected:
            problems.append(f"{len(unexpected)} stored messages the client did not see accepted")
        if proc is not None:
            if proc.poll() is not None:
                problems.append(f"smtplb exited with status {proc.returncode} during the run")
            else:
                res["smtplb_exit_status"] = runner.stop(proc)
            chk = scan_smtplb_log(log)
            res["smtplb_log"] = chk
            expected = args.warmup + ok
            if args.smtplb_log_level in ("info", "debug", "trace") and chk["delivered"] != expected:
                problems.append(f"smtplb logged {chk['delivered']} delivered transactions, "
                                f"expected {expected}")
            proc = None
        for n, b in backends.items():
            if b.proc.poll() is not None:
                problems.append(f"backend {n} exited with status {b.proc.returncode}")
        res["problems"] = problems
        if res["failed"] or client.failures:
            problems.append(f"{len(client.failures)} client failures, first: "
                            f"{client.failures[0]}")
        p99 = res["latency_ms"]["p99"]
        print(f"{res['msgs_per_s']:.0f} msg/s, p99 {p99 if p99 is None else round(p99, 1)} ms, "
              f"stored {counts}" + (f"  PROBLEMS: {'; '.join(problems)}" if problems else ""),
              file=sys.stderr)
        return res
    finally:
        if proc is not None:
            runner.stop(proc)


# ---------------------------------------------------------------- report


def aggregate(rows: list[dict], setup: str) -> dict | None:
    """All rounds of one setup pooled: percentiles over every transaction,
    msg/s over the summed wall time, shares over the summed counts."""
    rs = [r for r in rows if r["setup"] == setup and "error" not in r]
    if not rs:
        return None
    if len(rs) == 1:
        return rs[0]
    # Percentiles need the raw latencies, which only exist in memory.
    lat = sorted(x for r in rs for x in r["_lat"])
    lat_by = {n: sorted(x for r in rs for x in r["_lat_by"][n]) for n in rs[0]["_lat_by"]}
    counts: dict[str, int] = {}
    for r in rs:
        for n, c in r["stored"].items():
            counts[n] = counts.get(n, 0) + c
    tot = sum(counts.values())
    wall = sum(r["wall_s"] for r in rs)
    ok = sum(r["accepted"] for r in rs)
    msgs = sum(r["messages"] for r in rs)
    client_cpu = sum(r["client_cpu_s"] for r in rs)
    cpu = {}
    for r in rs:
        for k, v in r["cpu_s"].items():
            cpu[k] = cpu.get(k, 0.0) + v
    return {
        "setup": setup, "rounds": len(rs), "accepted": ok, "messages": msgs,
        "failed": sum(r["failed"] for r in rs), "failures_total": sum(r["failures_total"] for r in rs),
        "msgs_per_s": ok / wall, "wall_s": wall,
        "latency_ms": lat_stats(lat),
        "latency_ms_by_backend": {n: lat_stats(v) for n, v in lat_by.items()},
        "p99_per_round": [r["latency_ms"]["p99"] for r in rs],
        "stored": counts, "stored_total": tot,
        "share_pct": {n: 100.0 * c / tot if tot else None for n, c in counts.items()},
        "duplicates_total": sum(r["duplicates_total"] for r in rs),
        "missing_total": sum(r["missing_total"] for r in rs),
        "stored_not_accepted_total": sum(r["stored_not_accepted_total"] for r in rs),
        "client_cpu_us_per_msg": client_cpu / msgs * 1e6,
        "client_cpu_pct_of_one_core": 100.0 * client_cpu / wall,
        "smtplb_cpu_us_per_msg": cpu["smtplb"] / ok * 1e6 if "smtplb" in cpu and ok else None,
        "backends_cpu_us_per_msg": (cpu.get("fast", 0) + cpu.get("slow", 0)) / max(1, ok) * 1e6,
        "machine_busy_pct": sum(r["machine_busy_pct"] * r["wall_s"] for r in rs) / wall,
        "other_cpu_pct": (100.0 * sum(r["other_cpu_s"] for r in rs)
                          / max(1e-9, sum(r["other_cpu_s"] for r in rs) + client_cpu
                                + sum(cpu.values()))),
        "problems": [p for r in rs for p in r["problems"]],
    }


def render(rows: list[list[str]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = []
    for n, row in enumerate(rows):
        cells = [c.ljust(widths[i]) if i == 0 else c.rjust(widths[i]) for i, c in enumerate(row)]
        lines.append("  ".join(cells).rstrip())
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def build_table(summary: list[dict], rr_p99: float | None, slow_rate: float | None) -> str:
    """Two tables: what the client saw, then where the time and CPU went.
    slow_rate: the slow backend's capacity in msg/s (None: unlimited)."""
    head1 = ["setup", "ok", "fail", "msg/s", "mean ms", "p50 ms", "p90 ms", "p99 ms", "max ms",
             "p99/rr", "fast %", "slow %", "lost", "dup"]
    head2 = ["setup", "fast p50", "fast p99", "slow p50", "slow p99", "slow msg/s", "slow cap %",
             "lb us/msg", "backends us/msg", "client us/msg", "client % core", "busy %",
             "other %"]
    t1, t2 = [head1], [head2]
    for r in summary:
        if "error" in r:
            t1.append([r["setup"], "FAILED"] + [""] * (len(head1) - 2))
            t2.append([r["setup"], "FAILED"] + [""] * (len(head2) - 2))
            continue
        lat = r["latency_ms"]
        name = r["setup"] + ("" if r.get("problems") == [] else " !")
        t1.append([
            name, str(r["accepted"]), str(r["failed"]), fmt(r["msgs_per_s"], ".0f"),
            fmt(lat["mean"], ".1f"), fmt(lat["p50"], ".1f"), fmt(lat["p90"], ".1f"),
            fmt(lat["p99"], ".1f"), fmt(lat["max"], ".1f"),
            "-" if r["setup"].startswith("direct") or not rr_p99 or lat["p99"] is None
            else f"{lat['p99'] / rr_p99:.2f}",
            fmt(r["share_pct"].get("fast"), ".1f"), fmt(r["share_pct"].get("slow"), ".1f"),
            str(r["missing_total"]), str(r["duplicates_total"]),
        ])
        by = r["latency_ms_by_backend"]
        # The rate the slow backend stored at, and how much of its capacity
        # that is: near 100 % it is saturated and its queue sets the latency.
        slow_mps = r["stored"].get("slow", 0) / r["wall_s"] if r["wall_s"] > 0 else None
        t2.append([
            name,
            fmt(by["fast"]["p50"], ".1f"), fmt(by["fast"]["p99"], ".1f"),
            fmt(by["slow"]["p50"], ".1f"), fmt(by["slow"]["p99"], ".1f"),
            fmt(slow_mps, ".0f"),
            fmt(100.0 * slow_mps / slow_rate if slow_mps is not None and slow_rate else None,
                ".0f"),
            fmt(r["smtplb_cpu_us_per_msg"], ".0f"), fmt(r["backends_cpu_us_per_msg"], ".0f"),
            fmt(r["client_cpu_us_per_msg"], ".0f"), fmt(r["client_cpu_pct_of_one_core"], ".0f"),
            fmt(r["machine_busy_pct"], ".0f"), fmt(r["other_cpu_pct"], ".0f"),
        ])
    return render(t1) + "\n\n" + render(t2)


# ---------------------------------------------------------------- main


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--smtplb", default=str(REPO / "build" / "smtplb"), help="smtplb binary")
    ap.add_argument("--algorithms", default=",".join(ALGORITHMS),
                    help="comma-separated algorithms (default: %(default)s)")
    ap.add_argument("--direct", default="fast,slow",
                    help="reference rows straight to these backends: fast,slow | fast | none "
                         "(default: %(default)s)")
    ap.add_argument("--delay-eod", type=float, default=0.05,
                    help="seconds the slow backend waits before its end-of-data reply "
                         "(default %(default)s)")
    ap.add_argument("--slow-capacity", type=int, default=2, metavar="N",
                    help="messages the slow backend processes at a time, each taking "
                         "--delay-eod (fault_backend.py --eod-capacity): N / delay msg/s at "
                         "most, the rest queue; 0: unlimited, every session waits on its own "
                         "(default %(default)s)")
    ap.add_argument("--backend-nagle", action="store_true",
                    help="run fault_backend.py without the TCP_NODELAY shim (adds ~40 ms to "
                         "every transaction through smtplb, see the source)")
    ap.add_argument("--messages", "-m", type=int, default=2000,
                    help="messages per measured run (default %(default)s)")
    ap.add_argument("--concurrency", "-c", type=int, default=20,
                    help="concurrent client sessions (default %(default)s)")
    ap.add_argument("--per-connection", type=int, default=1,
                    help="messages per client connection (default %(default)s)")
    ap.add_argument("--size", type=parse_size, default=parse_size("1KB"),
                    help="message body size, e.g. 1KB (default 1KB)")
    ap.add_argument("--warmup", type=int, default=100,
                    help="unmeasured messages before each measured run (default %(default)s)")
    ap.add_argument("--repeat", type=int, default=1,
                    help="rounds; the algorithm order rotates each round (default %(default)s)")
    ap.add_argument("--smtplb-log-level", default="info",
                    help="smtplb --log-level (default info; the log goes to a file)")
    ap.add_argument("--io-timeout", type=float, default=30.0,
                    help="seconds the client waits for one reply (default %(default)s)")
    ap.add_argument("--run-timeout", type=float, default=None,
                    help="seconds one load run may take (default 120, plus twice the time "
                         "the slow backend alone needs for the run at its capacity)")
    ap.add_argument("--budget", type=float, default=600.0,
                    help="seconds for the whole run; what is left is skipped and reported as "
                         "failed (default %(default)s)")
    ap.add_argument("--out", default=None, help="write the JSON result here")
    ap.add_argument("--keep-latencies", action="store_true",
                    help="store every latency in the JSON")
    ap.add_argument("--workdir", default=None, help="keep configs, logs and stores here")
    ap.add_argument("--keep", action="store_true", help="keep the work directory")
    ap.add_argument("-v", "--verbose", action="store_true", help="echo commands as they run")
    args = ap.parse_args()

    algorithms = [a.strip() for a in args.algorithms.split(",") if a.strip()]
    for a in algorithms:
        if a not in ALGORITHMS + ("weighted_round_robin", "hash_sender"):
            ap.error(f"unknown algorithm {a!r}")
    direct = [d.strip() for d in args.direct.split(",") if d.strip() and d.strip() != "none"]
    for d in direct:
        if d not in ("fast", "slow"):
            ap.error(f"--direct takes fast, slow or none, not {d!r}")
    if min(args.messages, args.concurrency, args.per_connection, args.repeat) < 1:
        ap.error("--messages, --concurrency, --per-connection and --repeat must be positive")
    if args.delay_eod < 0 or args.warmup < 0 or args.slow_capacity < 0:
        ap.error("--delay-eod, --slow-capacity and --warmup must not be negative")
    # The slow backend's throughput bound (None: unlimited).
    slow_rate = (args.slow_capacity / args.delay_eod
                 if args.slow_capacity and args.delay_eod else None)
    if args.run_timeout is None:
        # direct-slow runs at the slow backend's rate, however fast the rest:
        # leave it room (2000 messages at 40 msg/s are 50 s).
        args.run_timeout = 120.0 + (2.0 * args.messages / slow_rate if slow_rate else 0.0)
    if algorithms and not (os.path.isfile(args.smtplb) and os.access(args.smtplb, os.X_OK)):
        print(f"run_skewed: smtplb not found at {args.smtplb} (build it: cmake --build build "
              f"--target smtplb)", file=sys.stderr)
        return 2
    args.smtplb = os.path.abspath(args.smtplb)

    workdir, keep = make_workdir(args, "smtplb-skewed-")

    runner = Runner(workdir, args.verbose)
    started = time.monotonic()
    run_id = f"sk{os.getpid()}"
    rows: list[dict] = []
    failed = False
    interrupted = False

    def on_term(signum, _frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    print(f"run_skewed: work directory {workdir}", file=sys.stderr)
    load1 = os.getloadavg()[0]
    if load1 > 0.5 * (os.cpu_count() or 1):
        print(f"run_skewed: warning: load average {load1:.2f} before start; other work on this "
              f"host will disturb the numbers (see the 'other %' column)", file=sys.stderr)
    backends: dict[str, Backend] = {}
    plan: list[tuple[int, str]] = []
    for rnd in range(args.repeat):
        k = rnd % len(algorithms) if algorithms else 0
        order = algorithms[k:] + algorithms[:k]
        plan += [(rnd, "direct-" + d) for d in direct] + [(rnd, a) for a in order]
    try:
        backends["fast"] = Backend(runner, args, "fast", 0.0)
        backends["slow"] = Backend(runner, args, "slow", args.delay_eod, args.slow_capacity)
        for rnd, setup in plan:
            if time.monotonic() - started > args.budget:
                rows.append({"setup": setup, "round": rnd,
                             "error": f"skipped: --budget {args.budget:.0f}s spent"})
                failed = True
                continue
            try:
                r = measure(runner, args, backends, setup, rnd, run_id)
                if r["problems"]:
                    failed = True
                rows.append(r)
            except BenchError as e:
                print(f"FAILED\nrun_skewed: {e}", file=sys.stderr)
                rows.append({"setup": setup, "round": rnd, "error": str(e)})
                failed = True
    except BenchError as e:
        print(f"run_skewed: {e}", file=sys.stderr)
        failed = True
    except KeyboardInterrupt:
        interrupted = True
        failed = True
        print("\nrun_skewed: interrupted", file=sys.stderr)
    finally:
        runner.stop_all()
    elapsed = time.monotonic() - started

    setups = ["direct-" + d for d in direct] + algorithms
    summary = []
    for s in setups:
        a = aggregate(rows, s)
        summary.append(a if a is not None else {"setup": s, "error": "no successful run"})
    rr = next((r for r in summary if r["setup"] == "round_robin" and "error" not in r), None)
    rr_p99 = rr["latency_ms"]["p99"] if rr else None
    table = build_table(summary, rr_p99, slow_rate)

    capacity_text = (f"capacity {args.slow_capacity} at a time = {slow_rate:g} msg/s"
                     if slow_rate else "capacity unlimited")
    print()
    print(f"smtplb skewed-backend benchmark: {args.messages} messages x {args.repeat} round(s), "
          f"{args.concurrency} sessions, "
          f"{'one message' if args.per_connection == 1 else f'{args.per_connection} messages'} "
          f"per connection, {args.size} octets, warm-up {args.warmup}; backends: fast (no delay), "
          f"slow (--delay-eod {args.delay_eod:g}, {capacity_text}), TCP_NODELAY "
          f"{'off (--backend-nagle)' if args.backend_nagle else 'on'}; {elapsed:.0f}s total, {os.cpu_count()} CPUs "
          f"shared by all processes")
    print(table)
    if slow_rate:
        # Round robin gives the slow backend every other message whatever its
        # speed: it is overloaded as soon as half the offered load exceeds
        # its capacity.  direct-fast shows what the rest of the chain can
        # offer (an upper bound: without smtplb's hop).
        df = next((r for r in summary if r["setup"] == "direct-fast" and "error" not in r), None)
        offered = (f"; direct-fast ran {df['msgs_per_s']:.0f} msg/s, half of it is "
                   f"{df['msgs_per_s'] / 2 / slow_rate:.1f}x that capacity" if df else "")
        print(f"\nslow backend capacity: {args.slow_capacity} messages at a time x "
              f"{args.delay_eod:g} s = {slow_rate:g} msg/s; round robin sends it every other "
              f"message, so it queues once the whole exceeds {2 * slow_rate:g} msg/s{offered}")
    if args.repeat > 1:
        print()
        print("per round (round 0, 1, ...; the algorithm order rotates each round):")
        for s in summary:
            if "error" not in s:
                rs = [r for r in rows if r["setup"] == s["setup"] and "error" not in r]
                print(f"  {s['setup']:<18} p99 ms "
                      + ", ".join(fmt(r["latency_ms"]["p99"], ".1f") for r in rs)
                      + ";  msg/s " + ", ".join(fmt(r["msgs_per_s"], ".0f") for r in rs)
                      + ";  slow % " + ", ".join(fmt(r["share_pct"].get("slow"), ".1f")
                                                 for r in rs))
    for r in rows:
        if "error" in r:
            print(f"FAILED {r['setup']} round {r['round']}: {r['error']}")
        elif r["problems"]:
            print(f"PROBLEMS {r['setup']} round {r['round']}: {'; '.join(r['problems'])}")
    print()
    print("""\
columns: ok, fail       transactions the client saw accepted (250 after the dot) / that failed
         msg/s          accepted / wall time of the measured run (closed loop: every session busy)
         mean..max ms   one transaction, from connect (later messages of a connection: from MAIL)
                        to the 250 after the final dot, as the client saw it; nearest rank
         p99/rr         p99 of this algorithm / p99 of round_robin
         fast %, slow % messages each backend stored during the run (msgs/*.json, after - before)
         lost, dup      accepted but not stored / X-Test-Id stored twice or more
         fast/slow p50, p99  the same latency, of the messages that backend stored (X-Test-Id)
         slow msg/s     messages the slow backend stored / wall time
         slow cap %     that / its capacity (--slow-capacity / --delay-eod): ~100 = saturated,
                        a queue builds up on it
         lb us/msg      CPU (utime+stime) of smtplb per accepted message
         backends us/msg  CPU of both fault_backend.py processes per accepted message
         client us/msg  CPU of this script's load client per message, and its share of one core
                        (the client is one Python thread: near 100 % would make it the bottleneck)
         busy %         all CPUs of the machine during the run
         other %        share of that busy time not charged to this run's processes (other
                        work on the host, unattributed kernel time): high = disturbed numbers
         a "!" after the setup name: a check failed, see PROBLEMS above""")
    print()
    print("commands (ports are chosen by the kernel; configs are in the work directory):")
    print(f"  {shlex.join([sys.executable] + sys.argv)}")
    for c in runner.commands:
        print(f"  {c}")
    print(f"  load client: in-process asyncio, {args.concurrency} sessions, EHLO {HELO}, "
          f"MAIL FROM:<{SENDER}>, RCPT TO:<{RECIPIENT}>, {args.per_connection} message(s) "
          f"per connection, no pipelining")
    cfg_row = next((r for r in rows if r.get("config")), None)
    if cfg_row:
        print(f"\nsmtplb configuration ({cfg_row['config_file']}; only the port and the "
              f"algorithm differ between runs):")
        print("    " + cfg_row["config"].rstrip().replace("\n", "\n    "))

    for r in rows + summary:
        r.pop("_lat", None)
        r.pop("_lat_by", None)
    doc = {
        "tool": "smtplb bench/run_skewed.py",
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "argv": sys.argv,
        "parameters": {"messages": args.messages, "concurrency": args.concurrency,
                       "per_connection": args.per_connection, "size": args.size,
                       "delay_eod_s": args.delay_eod, "slow_capacity": args.slow_capacity,
                       "slow_capacity_msgs_per_s": slow_rate, "run_timeout_s": args.run_timeout,
                       "warmup": args.warmup,
                       "repeat": args.repeat, "algorithms": algorithms, "direct": direct,
                       "smtplb_log_level": args.smtplb_log_level,
                       "backend_tcp_nodelay": not args.backend_nagle},
        "environment": {"host": platform.node(), "kernel": platform.release(),
                        "cpus": os.cpu_count(), "python": platform.python_version(),
                        "smtplb": _version(args.smtplb) if algorithms else None},
        "elapsed_s": elapsed, "ok": not failed, "interrupted": interrupted,
        "loadavg_at_start": load1,
        "summary": summary, "runs": rows, "table": table,
        "commands": [shlex.join([sys.executable] + sys.argv)] + runner.commands,
        "workdir": str(workdir) if (keep or failed) else None,
    }
    return finish(args, doc, workdir, keep, failed)


def _version(binary: str) -> str:
    try:
        cp = subprocess.run([binary, "version"], capture_output=True, timeout=5)
        return cp.stdout.decode(errors="replace").strip()
    except Exception as e:  # noqa: BLE001
        return f"unknown ({e})"


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == NODELAY_SHIM:
        exec_backend_nodelay(sys.argv[2:])
        sys.exit(0)
    sys.exit(main())
