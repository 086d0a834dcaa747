#!/usr/bin/env python3
"""run_mx.py: smtplb with MX pools against the same hosts listed by address.

One run, loopback only, bounded in time.  Two smtp-sinks listen on
127.0.0.2:P and 127.0.0.3:P; one dnsmasq, authoritative for "test." on
127.0.0.1, says that bench.test has two MX hosts of equal preference,
mx1.bench.test (127.0.0.2) and mx2.bench.test (127.0.0.3), TTL --ttl (300 s).
The same smtp-source workload (to bench-rcpt@bench.test) then goes through a
fresh smtplb per setup:

  listed        pool: backends 127.0.0.2:P, 127.0.0.3:P
  mx-domain     pool: mx: bench.test, port: P      (a watcher resolves it)
  mx-recipient  pool: mx: recipient, port: P       (resolved at RCPT)

all round_robin, with the same dns: settings, listener and limits.  Each
setup gets a warm-up (which fills smtplb's per-core DNS cache), the
measured run and a one-session probe; dnsmasq logs every query it answers
(--log-queries), and the script sends a marker query of its own at each phase
boundary and waits for it in the log, so the queries of each phase are
counted exactly.  With --repeat N the setup order rotates from round to round.

Per setup: messages/s, its ratio to `listed`, smtplb's CPU per message, its
peak RSS, and the DNS queries of the measured run (and per message).  Checks:
smtp-source exits 0, says nothing on stderr and counts every message; the
sinks' counters add up to every message sent; smtplb logs one delivered
transaction per message and no warning or error; it is still running.

Python 3 standard library only.  See bench/README.md.

  bench/run_mx.py                      # -m 10000, -s 20, 1KB, 3 rounds (~30-60 s on 2 cores)
  bench/run_mx.py --repeat 1 -m 2000   # a quick look (~10 s)
  bench/run_mx.py --out mx.json
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import random
import re
import shutil
import signal
import socket
import statistics
import struct
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from benchlib import (BenchError, Runner, finish, fmt, free_port, make_workdir, parse_size,  # noqa: E402
                      print_commands_and_configs, proc_cpu_seconds, run_smtp_source,
                      smtplb_config, system_cpu, wait_listening)
from run_bench import (check_smtplb_log, children_cpu, proc_status_kb, size_label,  # noqa: E402
                       tool_version, wait_sink_total)

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
CLK_TCK = os.sysconf("SC_CLK_TCK")
SETUPS = ("listed", "mx-domain", "mx-recipient")

DOMAIN = "bench.test"
MX_HOSTS = (("mx1.bench.test", "127.0.0.2"), ("mx2.bench.test", "127.0.0.3"))
SENDER = "bench-sender@example.com"
RECIPIENT = f"bench-rcpt@{DOMAIN}"
HELO = "bench.example.com"
MARK = "mark-"  # the script's own marker queries: mark-N.bench.test


# ---------------------------------------------------------------- DNS


def dns_query_packet(name: str, qtype: int) -> bytes:
    q = struct.pack("!HHHHHH", random.randrange(65536), 0x0100, 1, 0, 0, 0)
    for label in name.split("."):
        q += bytes([len(label)]) + label.encode()
    return q + b"\0" + struct.pack("!HH", qtype, 1)


QUERY_LINE = re.compile(r"\b(?:auth|query)\[(\w+)\] (\S+) from ")


class Dnsmasq:
    """dnsmasq authoritative for "test.", logging every query to a file.

    mark() sends a query of the script's own and waits until dnsmasq has
    logged it: every query smtplb sent before is then in the log above it
    (dnsmasq answers and logs in arrival order), so the difference between two
    marks is exactly the queries of that phase."""

    def __init__(self, runner: Runner, args) -> None:
        self.runner = runner
        self.args = args
        self.log = runner.workdir / "dnsmasq-queries.log"
        self.proc: subprocess.Popen | None = None
        self.port = 0
        self.seq = 0
        self.argv: list[str] = []

    def start(self) -> None:
        last = ""
        for _attempt in range(5):
            self.port = free_udp_tcp_port()
            zone = ["--auth-server=ns.test,127.0.0.1", "--auth-zone=test",
                    f"--auth-ttl={self.args.ttl}"]
            for host, _addr in MX_HOSTS:
                zone.append(f"--mx-host={DOMAIN},{host},10")  # equal preference
            for host, addr in MX_HOSTS:
                zone.append(f"--host-record={host},{addr}")
            self.argv = [self.args.dnsmasq, "--no-resolv", "--no-hosts", f"--port={self.port}",
                         "--listen-address=127.0.0.1", "--bind-interfaces",
                         "--keep-in-foreground", "--conf-file=/dev/null",
                         "--pid-file=",  # none: never touch the system's
                         "--log-queries", f"--log-facility={self.log}"] + zone
            self.proc, _out, err = self.runner.start(self.argv, "dnsmasq")
            try:
                self.mark(timeout=5.0)
                return
            except BenchError as e:
                last = f"{e}; stderr: {err.read_text(errors='replace')[-300:]!r}"
                self.runner.stop(self.proc)
                self.proc = None
        raise BenchError(f"dnsmasq did not start: {last}")

    def stop(self) -> None:
        if self.proc is not None:
            self.runner.stop(self.proc)
            self.proc = None

    def mark(self, timeout: float = 5.0) -> dict[str, int]:
        """Waits until all queries so far are logged; returns their counts by
        type (the script's marks left out)."""
        self.seq += 1
        name = f"{MARK}{self.seq}.{DOMAIN}"
        packet = dns_query_packet(name, 1)
        deadline = time.monotonic() + timeout
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            next_send = 0.0
            while True:
                if self.proc is None or self.proc.poll() is not None:
                    raise BenchError("dnsmasq is not running")
                now = time.monotonic()
                if now >= next_send:
                    s.sendto(packet, ("127.0.0.1", self.port))
                    next_send = now + 0.5
                counts = self._counts_through(name)
                if counts is not None:
                    return counts
                if now > deadline:
                    raise BenchError(f"dnsmasq did not log the marker query {name} "
                                     f"within {timeout:g}s")
                time.sleep(0.01)

    def _counts_through(self, marker: str) -> dict[str, int] | None:
        try:
            text = self.log.read_text(errors="replace")
        except OSError:
            return None
        counts: dict[str, int] = {}
        for m in QUERY_LINE.finditer(text):
            qtype, name = m.group(1), m.group(2)
            if name == marker:
                return counts
            if not name.startswith(MARK):
                counts[qtype] = counts.get(qtype, 0) + 1
        return None


def free_udp_tcp_port() -> int:
    """A port free for UDP and TCP on 127.0.0.1 just now (dnsmasq binds both)."""
    for _ in range(100):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
            u.bind(("127.0.0.1", 0))
            port = u.getsockname()[1]
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as t:
                try:
                    t.bind(("127.0.0.1", port))
                except OSError:
                    continue
                return port
    raise BenchError("no free UDP+TCP port on 127.0.0.1")


def delta(after: dict[str, int], before: dict[str, int]) -> dict[str, int]:
    out = {k: after.get(k, 0) - before.get(k, 0) for k in set(after) | set(before)}
    return {k: v for k, v in sorted(out.items()) if v}


# ---------------------------------------------------------------- sinks


def free_sink_port() -> int:
    """A port free on both 127.0.0.2 and 127.0.0.3 just now."""
    for _ in range(100):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as a:
            a.bind((MX_HOSTS[0][1], 0))
            port = a.getsockname()[1]
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as b:
                try:
                    b.bind((MX_HOSTS[1][1], port))
                except OSError:
                    continue
                return port
    raise BenchError("no port free on both 127.0.0.2 and 127.0.0.3")


def wait_listening_at(host: str, port: int, proc: subprocess.Popen, what: str,
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


def start_sinks(runner: Runner, args, tag: str) -> tuple[int, list[tuple[subprocess.Popen, Path]]]:
    port = free_sink_port()
    sinks = []
    for i, (_host, addr) in enumerate(MX_HOSTS):
        argv = [args.smtp_sink]
        if os.geteuid() == 0:
            argv += ["-u", args.sink_user]  # smtp-sink refuses to run as root without it
        argv += ["-c", f"{addr}:{port}", "1000"]
        p, out, _err = runner.start(argv, f"{tag}-sink{chr(ord('A') + i)}")
        sinks.append((p, out))
    for (p, _out), (_host, addr) in zip(sinks, MX_HOSTS):
        wait_listening_at(addr, port, p, f"smtp-sink on {addr}")
    return port, sinks


# ---------------------------------------------------------------- smtplb


def mx_smtplb_config(setup: str, listen_port: int, admin_port: int, sink_port: int,
                     dns_port: int) -> str:
    if setup == "listed":
        pool = "    backends:\n" + "\n".join(
            f"      - address: {addr}:{sink_port}" for _h, addr in MX_HOSTS)
    elif setup == "mx-domain":
        pool = f"    mx: {DOMAIN}\n    port: {sink_port}"
    else:
        pool = f"    mx: recipient\n    port: {sink_port}"
    return smtplb_config(
        listen_port, pool, written_by=f"bench/run_mx.py ({setup})", domain=DOMAIN,
        max_connections=1000,
        extra=(f'dns: {{servers: ["127.0.0.1:{dns_port}"], timeout: 500ms, attempts: 2}}\n'
               f"admin:\n  listen: 127.0.0.1:{admin_port}\n"))


def admin_pools(admin_port: int) -> dict:
    with urllib.request.urlopen(f"http://127.0.0.1:{admin_port}/api/pools", timeout=2) as r:
        return json.loads(r.read().decode())


def wait_backends(admin_port: int, proc: subprocess.Popen, want: int, timeout: float) -> float:
    """Waits until pool `main` has `want` backends (an mx: DOMAIN pool gets them
    from its watcher); returns the seconds waited."""
    t0 = time.monotonic()
    last = None
    while time.monotonic() - t0 < timeout:
        if proc.poll() is not None:
            raise BenchError(f"smtplb exited with status {proc.returncode}")
        try:
            last = admin_pools(admin_port)
            pools = {p["name"]: p for p in last.get("pools", [])}
            if len(pools.get("main", {}).get("backends", [])) >= want:
                return time.monotonic() - t0
        except (OSError, ValueError):
            pass
        time.sleep(0.02)
    raise BenchError(f"pool main did not get {want} backends within {timeout:g}s: {last}")


# ---------------------------------------------------------------- workload


def run_source(runner: Runner, args, port: int, sessions: int, messages: int,
               name: str) -> dict:
    """smtp-source to completion (as run_bench.py); wall time, success checked."""
    argv = [args.smtp_source, "-c", "-s", str(sessions), "-m", str(messages),
            "-l", str(args.size), "-M", HELO, "-f", SENDER, "-t", RECIPIENT]
    if args.reuse:
        argv.append("-d")
    argv.append(f"127.0.0.1:{port}")
    return run_smtp_source(runner, argv, messages, name, args.run_timeout)


def measure(runner: Runner, args, dns: Dnsmasq, setup: str, rnd: int) -> dict:
    tag = f"r{rnd}-{setup}"
    print(f"== round {rnd} {setup}: ", end="", flush=True, file=sys.stderr)
    res: dict = {"setup": setup, "round": rnd, "messages": args.messages,
                 "concurrency": args.concurrency, "size": args.size, "warmup": args.warmup,
                 "latency_messages": args.latency_messages}
    sink_port, sinks = start_sinks(runner, args, tag)
    proc = None
    try:
        listen_port, admin_port = free_port(), free_port()
        while admin_port == listen_port:
            admin_port = free_port()
        cfg = runner.workdir / f"{tag}-smtplb.yaml"
        cfg.write_text(mx_smtplb_config(setup, listen_port, admin_port, sink_port, dns.port))
        res["config_file"] = str(cfg)
        res["config"] = cfg.read_text()

        q_start = dns.mark()
        argv = [args.smtplb, "run", "-c", cfg.name]
        if args.smtplb_log_level:
            argv += ["--log-level", args.smtplb_log_level]
        proc, _out, log = runner.start(argv, f"{tag}-smtplb")
        res["smtplb_pid"] = proc.pid
        wait_listening(listen_port, proc, "smtplb")
        wait_listening(admin_port, proc, "smtplb admin")
        # mx: DOMAIN: its backends come from the watcher's first lookup.
        waited = wait_backends(admin_port, proc, 0 if setup == "mx-recipient" else 2, 10.0)
        res["backends_after_s"] = waited if setup == "mx-domain" else None

        # Warm-up (unmeasured): connections, backend sessions, the DNS cache.
        if args.warmup:
            run_source(runner, args, listen_port, args.concurrency, args.warmup, f"{tag} warm-up")
        q_warm = dns.mark()

        # The measured run.
        watched = {"smtplb": proc.pid, "dnsmasq": dns.proc.pid}
        for i, (p, _o) in enumerate(sinks):
            watched[f"sink{chr(ord('A') + i)}"] = p.pid
        cpu0 = {k: proc_cpu_seconds(pid) for k, pid in watched.items()}
        sys0, ch0 = system_cpu(), children_cpu()
        r = run_source(runner, args, listen_port, args.concurrency, args.messages, tag)
        sys1, ch1 = system_cpu(), children_cpu()
        cpu1 = {k: proc_cpu_seconds(pid) for k, pid in watched.items()}
        q_meas = dns.mark()
        wall = r["wall_s"]
        res["wall_s"] = wall
        res["msgs_per_s"] = args.messages / wall
        res["latency_ms_loaded"] = args.concurrency * wall / args.messages * 1000
        res["cpu_s"] = {k: cpu1[k] - cpu0[k] for k in watched}
        res["smtplb_cpu_s"] = res["cpu_s"]["smtplb"]
        res["smtplb_cpu_us_per_msg"] = res["smtplb_cpu_s"] / args.messages * 1e6
        res["sinks_cpu_us_per_msg"] = sum(v for k, v in res["cpu_s"].items()
                                          if k.startswith("sink")) / args.messages * 1e6
        res["loadgen_cpu_s"] = ch1 - ch0
        res["loadgen_cpu_us_per_msg"] = res["loadgen_cpu_s"] / args.messages * 1e6
        busy, total = sys1[0] - sys0[0], sys1[1] - sys0[1]
        res["machine_busy_pct"] = 100.0 * busy / total if total > 0 else None
        ours = sum(res["cpu_s"].values()) + res["loadgen_cpu_s"]
        res["other_cpu_s"] = max(0.0, busy / CLK_TCK - ours)
        res["other_cpu_pct"] = (100.0 * res["other_cpu_s"] / (busy / CLK_TCK)
                                if busy > 0 else None)

        # Unloaded: one session, one message at a time.
        if args.latency_messages:
            r = run_source(runner, args, listen_port, 1, args.latency_messages,
                           f"{tag} latency probe")
            res["latency_ms_unloaded"] = r["wall_s"] / args.latency_messages * 1000
        else:
            res["latency_ms_unloaded"] = None
        q_probe = dns.mark()

        res["dns_queries"] = {
            "start_and_warmup": delta(q_warm, q_start),
            "measured": delta(q_meas, q_warm),
            "probe": delta(q_probe, q_meas),
        }
        res["dns_queries_cold"] = sum(res["dns_queries"]["start_and_warmup"].values())
        res["dns_queries_measured"] = sum(res["dns_queries"]["measured"].values())
        res["dns_queries_probe"] = sum(res["dns_queries"]["probe"].values())
        res["dns_queries_per_msg"] = res["dns_queries_measured"] / args.messages

        res["smtplb_peak_rss_kb"] = proc_status_kb(proc.pid, "VmHWM")
        res["smtplb_threads"] = proc_status_kb(proc.pid, "Threads")
        try:
            res["api_pools"] = admin_pools(admin_port)
        except (OSError, ValueError) as e:
            res["api_pools"] = f"unavailable: {e}"

        # What arrived, and what smtplb says.
        expected = args.warmup + args.messages + args.latency_messages
        counts = wait_sink_total([o for _p, o in sinks], expected)
        res["sink_counts"] = counts
        res["sink_expected"] = expected
        if sum(counts) != expected:
            raise BenchError(f"{tag}: the sinks counted {sum(counts)} messages ({counts}), "
                             f"expected {expected}")
        if proc.poll() is not None:
            raise BenchError(f"{tag}: smtplb exited with status {proc.returncode} during the run")
        res["smtplb_exit_status"] = runner.stop(proc)
        proc = None
        chk = check_smtplb_log(log, expected)
        res["smtplb_log"] = chk
        if args.smtplb_log_level in ("info", "debug", "trace") and chk["delivered"] != expected:
            raise BenchError(f"{tag}: smtplb logged {chk['delivered']} delivered transactions, "
                             f"expected {expected} ({chk})")
        if chk["warnings"]:
            raise BenchError(f"{tag}: smtplb logged warnings or errors: {chk['warnings']}")
        print(f"{res['msgs_per_s']:.0f} msg/s, {res['smtplb_cpu_us_per_msg']:.0f} us/msg, "
              f"DNS queries {res['dns_queries_cold']} cold / {res['dns_queries_measured']} "
              f"measured", file=sys.stderr)
        return res
    finally:
        if proc is not None:
            runner.stop(proc)
        for p, _o in sinks:
            runner.stop(p)


# ---------------------------------------------------------------- report


def ratio(a, b):
    if a is None or b is None or b == 0:
        return None
    return a / b


def summarize(results: list[dict], setups: list[str]) -> list[dict]:
    """One row per setup over all its rounds."""
    rows = []
    listed_by_round = {r["round"]: r for r in results
                       if r["setup"] == "listed" and "error" not in r}
    for setup in setups:
        ok = [r for r in results if r["setup"] == setup and "error" not in r]
        failed = [r for r in results if r["setup"] == setup and "error" in r]
        row: dict = {"setup": setup, "rounds_ok": len(ok), "rounds_failed": len(failed)}
        if not ok:
            rows.append(row)
            continue
        msgs = sum(r["messages"] for r in ok)
        cpu = sum(r["smtplb_cpu_s"] for r in ok)
        row["msgs_per_s"] = statistics.median(r["msgs_per_s"] for r in ok)
        row["latency_ms_loaded"] = statistics.median(r["latency_ms_loaded"] for r in ok)
        lat1 = [r["latency_ms_unloaded"] for r in ok if r["latency_ms_unloaded"] is not None]
        row["latency_ms_unloaded"] = statistics.median(lat1) if lat1 else None
        row["smtplb_cpu_us_per_msg"] = cpu / msgs * 1e6
        row["sinks_cpu_us_per_msg"] = sum(r["sinks_cpu_us_per_msg"] * r["messages"]
                                          for r in ok) / msgs
        row["loadgen_cpu_us_per_msg"] = sum(r["loadgen_cpu_s"] for r in ok) / msgs * 1e6
        rss = [r["smtplb_peak_rss_kb"] for r in ok if r["smtplb_peak_rss_kb"]]
        row["smtplb_peak_rss_kb"] = max(rss) if rss else None
        row["dns_queries_cold"] = sum(r["dns_queries_cold"] for r in ok)
        row["dns_queries_measured"] = sum(r["dns_queries_measured"] for r in ok)
        row["dns_queries_probe"] = sum(r["dns_queries_probe"] for r in ok)
        row["dns_queries_per_msg"] = row["dns_queries_measured"] / msgs
        row["measured_messages"] = msgs
        a = sum(r["sink_counts"][0] for r in ok)
        b = sum(r["sink_counts"][1] for r in ok)
        row["sink_a_pct"] = 100.0 * a / (a + b) if a + b else None
        row["machine_busy_pct"] = statistics.median(r["machine_busy_pct"] for r in ok)
        row["other_cpu_pct"] = max(r["other_cpu_pct"] or 0.0 for r in ok)
        # Against `listed` of the same round (adjacent in time), then the median.
        same = [(r, listed_by_round[r["round"]]) for r in ok if r["round"] in listed_by_round]
        row["throughput_vs_listed_per_round"] = [ratio(r["msgs_per_s"], l["msgs_per_s"])
                                                 for r, l in same]
        row["cpu_vs_listed_per_round"] = [ratio(r["smtplb_cpu_us_per_msg"],
                                                l["smtplb_cpu_us_per_msg"]) for r, l in same]
        row["throughput_vs_listed"] = (statistics.median(row["throughput_vs_listed_per_round"])
                                       if same else None)
        rows.append(row)
    listed = next((r for r in rows if r["setup"] == "listed" and r.get("rounds_ok")), None)
    for row in rows:
        row["cpu_vs_listed"] = ratio(row.get("smtplb_cpu_us_per_msg"),
                                     listed and listed["smtplb_cpu_us_per_msg"])
    return rows


def build_table(rows: list[dict]) -> str:
    head = ["setup", "msg/s", "vs listed", "lat ms (load)", "lat ms (1 sess)", "smtplb us/msg",
            "CPU vs listed", "peak RSS MB", "DNS q cold", "DNS q measured", "DNS q/msg",
            "DNS q probe", "sink A %", "busy %", "other %"]
    out = [head]
    for r in rows:
        if not r.get("rounds_ok"):
            out.append([r["setup"], "FAILED"] + [""] * (len(head) - 2))
            continue
        rss = r["smtplb_peak_rss_kb"]
        out.append([
            r["setup"] + ("" if not r["rounds_failed"] else f" ({r['rounds_failed']} FAILED)"),
            fmt(r["msgs_per_s"], ".0f"), fmt(r["throughput_vs_listed"], ".2f"),
            fmt(r["latency_ms_loaded"], ".2f"), fmt(r["latency_ms_unloaded"], ".2f"),
            fmt(r["smtplb_cpu_us_per_msg"], ".0f"), fmt(r["cpu_vs_listed"], ".2f"),
            fmt(None if rss is None else rss / 1024, ".1f"),
            str(r["dns_queries_cold"]), str(r["dns_queries_measured"]),
            fmt(r["dns_queries_per_msg"], ".4f"), str(r["dns_queries_probe"]),
            fmt(r["sink_a_pct"], ".1f"),
            fmt(r["machine_busy_pct"], ".0f"), fmt(r["other_cpu_pct"], ".0f"),
        ])
    widths = [max(len(row[i]) for row in out) for i in range(len(head))]
    lines = []
    for n, row in enumerate(out):
        cells = [c.ljust(widths[i]) if i == 0 else c.rjust(widths[i]) for i, c in enumerate(row)]
        lines.append("  ".join(cells).rstrip())
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def per_round_text(results: list[dict], setups: list[str], rows: list[dict]) -> str:
    by_setup = {r["setup"]: r for r in rows}
    lines = []
    w = max(len(s) for s in setups)
    for setup in setups:
        rs = sorted((r for r in results if r["setup"] == setup), key=lambda r: r["round"])
        if not rs:
            continue
        row = by_setup.get(setup, {})
        msgs = ", ".join("FAILED" if "error" in r else f"{r['msgs_per_s']:.0f}" for r in rs)
        cpu = ", ".join("-" if "error" in r else f"{r['smtplb_cpu_us_per_msg']:.0f}" for r in rs)
        q = ", ".join("-" if "error" in r else str(r["dns_queries_measured"]) for r in rs)
        line = f"  {setup:<{w}}  msg/s {msgs};  us/msg {cpu};  DNS q measured {q}"
        if setup != "listed" and row.get("throughput_vs_listed_per_round"):
            line += ";  vs listed " + ", ".join(
                fmt(x, ".2f") for x in row["throughput_vs_listed_per_round"])
        lines.append(line)
    return "\n".join(lines)


def cold_text(results: list[dict], setups: list[str]) -> str:
    lines = []
    for setup in setups:
        rs = [r for r in results if r["setup"] == setup and "error" not in r]
        if not rs:
            continue
        types: dict[str, int] = {}
        for r in rs:
            for k, v in r["dns_queries"]["start_and_warmup"].items():
                types[k] = types.get(k, 0) + v
        per = " ".join(f"{k} {v}" for k, v in sorted(types.items())) or "none"
        extra = ""
        waits = [r["backends_after_s"] for r in rs if r.get("backends_after_s") is not None]
        if waits:
            extra = f"; backends in the pool {max(waits) * 1000:.0f} ms after start at most"
        lines.append(f"  {setup}: {per} (over {len(rs)} start(s)){extra}")
    return "\n".join(lines)


# ---------------------------------------------------------------- main


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--smtplb", default=str(REPO / "build" / "smtplb"), help="smtplb binary")
    ap.add_argument("--smtp-source", default=shutil.which("smtp-source") or "/usr/sbin/smtp-source")
    ap.add_argument("--smtp-sink", default=shutil.which("smtp-sink") or "/usr/sbin/smtp-sink")
    ap.add_argument("--dnsmasq", default=shutil.which("dnsmasq") or "/usr/sbin/dnsmasq")
    ap.add_argument("--sink-user", default="nobody", help="smtp-sink -u USER when run as root")
    ap.add_argument("--messages", "-m", type=int, default=10000,
                    help="messages per measured run (default 10000)")
    ap.add_argument("--concurrency", "-s", type=int, default=20,
                    help="parallel smtp-source sessions (default 20)")
    ap.add_argument("--size", type=parse_size, default=parse_size("1KB"),
                    help="payload size (default 1KB: the per-message overhead weighs most)")
    ap.add_argument("--setups", default=",".join(SETUPS),
                    help="comma-separated subset of " + ",".join(SETUPS))
    ap.add_argument("--warmup", type=int, default=200,
                    help="unmeasured messages before each run; they fill the DNS cache "
                         "(default 200)")
    ap.add_argument("--latency-messages", type=int, default=300,
                    help="messages of the one-session probe, 0 to skip (default 300)")
    ap.add_argument("--repeat", type=int, default=3,
                    help="rounds; the setup order rotates from one to the next (default 3)")
    ap.add_argument("--ttl", type=int, default=300,
                    help="TTL of the DNS records (dnsmasq --auth-ttl; default 300 s, "
                         "longer than the run: the cache stays warm; a few seconds shows "
                         "refreshes under load)")
    ap.add_argument("--reuse", action="store_true",
                    help="smtp-source -d: all messages of a session over one connection")
    ap.add_argument("--smtplb-log-level", default="info",
                    help="smtplb --log-level (default info: one line per transaction)")
    ap.add_argument("--run-timeout", type=float, default=120.0,
                    help="seconds one smtp-source run may take")
    ap.add_argument("--budget", type=float, default=300.0,
                    help="seconds for the whole run; what is left is skipped and failed")
    ap.add_argument("--out", default=None, help="write the JSON result here")
    ap.add_argument("--workdir", default=None,
                    help="keep configs and logs here (default: a temporary directory, removed "
                         "unless --keep or a failure)")
    ap.add_argument("--keep", action="store_true", help="keep the work directory")
    ap.add_argument("-v", "--verbose", action="store_true", help="echo commands as they run")
    args = ap.parse_args()

    setups = [s.strip() for s in args.setups.split(",") if s.strip()]
    for s in setups:
        if s not in SETUPS:
            ap.error(f"unknown setup {s!r}")
    if args.messages < 1 or args.concurrency < 1 or args.repeat < 1 or args.warmup < 0:
        ap.error("--messages, --concurrency and --repeat must be positive")
    if args.ttl < 1:
        ap.error("--ttl must be positive")
    for what, path in {"smtplb": args.smtplb, "smtp-source": args.smtp_source,
                       "smtp-sink": args.smtp_sink, "dnsmasq": args.dnsmasq}.items():
        if not (os.path.isfile(path) and os.access(path, os.X_OK)):
            hint = " (build it: cmake --build build --target smtplb)" if what == "smtplb" else ""
            print(f"run_mx: {what} not found at {path}{hint}", file=sys.stderr)
            return 2
    args.smtplb = os.path.abspath(args.smtplb)

    workdir, keep = make_workdir(args, "smtplb-mx-bench-")

    runner = Runner(workdir, args.verbose)
    dns = Dnsmasq(runner, args)
    started = time.monotonic()
    results: list[dict] = []
    failed = False
    interrupted = False

    def on_term(signum, _frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    print(f"run_mx: work directory {workdir}", file=sys.stderr)
    if args.ttl < 60:
        print(f"run_mx: note: --ttl {args.ttl} may run out within a run: the measured runs "
              f"then include refreshes (smtplb keeps answers at least dns.min_ttl, 5 s)",
              file=sys.stderr)
    load1 = os.getloadavg()[0]
    if load1 > 0.5 * (os.cpu_count() or 1):
        print(f"run_mx: warning: load average {load1:.2f} before start; other work on this "
              f"host will disturb the numbers (see the 'other %' column)", file=sys.stderr)
    try:
        dns.start()
        for rnd in range(args.repeat):
            k = rnd % len(setups)
            for setup in setups[k:] + setups[:k]:
                if time.monotonic() - started > args.budget:
                    results.append({"setup": setup, "round": rnd,
                                    "error": f"skipped: --budget {args.budget:.0f}s spent"})
                    failed = True
                    continue
                try:
                    results.append(measure(runner, args, dns, setup, rnd))
                except BenchError as e:
                    print(f"FAILED\nrun_mx: {e}", file=sys.stderr)
                    results.append({"setup": setup, "round": rnd, "error": str(e)})
                    failed = True
    except BenchError as e:
        print(f"run_mx: {e}", file=sys.stderr)
        results.append({"setup": "dnsmasq", "round": -1, "error": str(e)})
        failed = True
    except KeyboardInterrupt:
        interrupted = True
        failed = True
        print("\nrun_mx: interrupted", file=sys.stderr)
    finally:
        dns.stop()
        runner.stop_all()

    elapsed = time.monotonic() - started
    rows = summarize(results, setups)
    table = build_table(rows)
    env = {
        "host": platform.node(), "kernel": platform.release(), "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "smtplb": tool_version([args.smtplb, "version"]),
        "dnsmasq": tool_version([args.dnsmasq, "--version"]),
        "smtplb_build_type": None,
    }
    cache = REPO / "build" / "CMakeCache.txt"
    if cache.is_file() and os.path.dirname(args.smtplb) == str(REPO / "build"):
        m = re.search(r"^CMAKE_BUILD_TYPE:STRING=(.*)$", cache.read_text(errors="replace"), re.M)
        env["smtplb_build_type"] = m.group(1) if m else None

    print()
    print(f"smtplb MX-pool benchmark: {args.messages} messages x {args.repeat} round(s), "
          f"{args.concurrency} sessions, {size_label(args.size)}, "
          f"{'connection reuse (-d)' if args.reuse else 'one connection per message'}, "
          f"warm-up {args.warmup}; MX TTL {args.ttl}s; {elapsed:.0f}s total, "
          f"{os.cpu_count()} CPUs shared by all processes")
    print(table)
    print()
    print("per round (round 0, 1, ...; the setup order rotates each round):")
    print(per_round_text(results, setups, rows))
    print()
    print("cold DNS queries (smtplb start + warm-up, all rounds), by type:")
    print(cold_text(results, setups))
    for r in results:
        if "error" in r:
            print(f"FAILED round {r['round']} {r['setup']}: {r['error']}")
    print()
    print("""\
columns: msg/s            messages / wall time of the measured smtp-source run (median of rounds)
         vs listed        msg/s over listed's in the same round (median of rounds)
         lat ms (load)    sessions x wall / messages; lat ms (1 sess): one-session probe
         smtplb us/msg    smtplb's utime+stime in the measured runs / their messages
         CPU vs listed    that over listed's
         peak RSS MB      VmHWM of smtplb at the end of its run (largest of rounds)
         DNS q cold       queries dnsmasq answered from smtplb's start to the end of warm-up
         DNS q measured   ... during the measured runs (all rounds); DNS q/msg: per message
         DNS q probe      ... during the one-session probes
         sink A %         share of the messages that the sink on 127.0.0.2 received
         busy %, other %  all CPUs during the measured run; share not charged to this run's
                          processes (high = disturbed by other work on the host)""")
    print_commands_and_configs(runner, results, "rounds")

    doc = {
        "tool": "smtplb bench/run_mx.py",
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "argv": sys.argv,
        "parameters": {"messages": args.messages, "concurrency": args.concurrency,
                       "size": args.size, "setups": setups, "warmup": args.warmup,
                       "latency_messages": args.latency_messages, "repeat": args.repeat,
                       "ttl": args.ttl, "reuse_connections": args.reuse,
                       "smtplb_log_level": args.smtplb_log_level},
        "environment": env,
        "elapsed_s": elapsed,
        "ok": not failed,
        "interrupted": interrupted,
        "loadavg_at_start": load1,
        "dnsmasq_argv": dns.argv,
        "summary": rows,
        "results": results,
        "table": table,
        "commands": runner.commands,
        "workdir": str(workdir) if (keep or failed) else None,
    }
    return finish(args, doc, workdir, keep, failed)


if __name__ == "__main__":
    sys.exit(main())
