#!/usr/bin/env python3
"""compare.py: smtplb against direct delivery and against HAProxy, every
workload, repetitions interleaved; writes bench/RESULTS.md and its chart.

The workloads are fixed (see WORKLOADS): ~1 KB messages one per connection
and many per connection, ~100 KB messages one and many per connection,
10 MB messages (smtplb's replay buffer spills to its temporary file), and
500 concurrent client connections.  For each, three systems, each started
fresh on fresh ports for every run:

  direct   smtp-source -> smtp-sink (one sink; two, with the load split in
           two smtp-source processes, for the 100 KB and 10 MB workloads)
  haproxy  smtp-source -> HAProxy (mode tcp, roundrobin) -> two smtp-sinks
  smtplb   smtp-source -> smtplb (round_robin) -> the same two smtp-sinks

Repetition r runs every workload with the systems in an order rotated by r,
so slow drift of the machine touches every system alike; each figure is the
median over the repetitions, with the min-max range.  A row shows:

  msgs/s          messages / wall time of the smtp-source run (Postfix's own
                  load generator, as the issue names it)
  CPU us/msg      utime+stime of the middle box during the run / messages
  peak RSS        VmHWM of the middle box at the end of the run
  p50, p99        per-transaction latency from bench/smtp_load, which
                  timestamps every transaction, run right after at moderate
                  load (LATENCY_CONNECTIONS connections) with the same size
                  and messages per connection; one message per connection is
                  timed from the connect to the 250 after the final dot
  lost, dup       what the sinks counted (smtp-sink -c) against what
                  smtp-source and smtp_load had accepted

Then the failover row (bench/failover.py's measure(): one backend killed
with SIGKILL and restarted every few seconds while smtp_load runs; message
ids checked at the sinks) and the idle-connection memory (idle_memory.py).

  bench/run.sh                                   # the documented command
  bench/compare.py --smtplb build-release/smtplb --reps 3
  bench/compare.py --quick                       # a smoke run: a few seconds a row
"""

from __future__ import annotations

import argparse
import concurrent.futures
import dataclasses
import datetime as _dt
import json
import os
import platform
import re
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

from benchlib import (BenchError, Runner, free_port, haproxy_tcp_config, make_workdir,
                      proc_cpu_seconds, proc_status_kb, run_smtp_load, run_smtp_source,
                      scan_smtplb_log, wait_sink_total,
                      smtplb_round_robin_config, system_cpu, wait_listening)

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
SYSTEMS = ("direct", "haproxy", "smtplb")
SENDER = "bench-sender@example.com"
RECIPIENT = "bench-rcpt@example.com"
HELO = "bench.example.com"
LATENCY_CONNECTIONS = 4
SINK_MAX_SESSIONS = 2000  # smtp-sink -m: it serves 256 sessions at once unless told


@dataclasses.dataclass(frozen=True)
class Workload:
    name: str
    size: int
    reuse: bool  # many messages per connection (smtp-source -d)
    sessions: int
    messages: int  # per run, chosen so each run takes a few seconds here
    direct_sinks: int
    latency_messages: int


KB = 1024
WORKLOADS = (
    Workload("1KB x1", 1 * KB, False, 20, 40000, 1, 2000),
    Workload("1KB xN", 1 * KB, True, 20, 120000, 1, 4000),
    Workload("100KB x1", 100 * KB, False, 20, 12000, 2, 1000),
    Workload("100KB xN", 100 * KB, True, 20, 15000, 2, 1000),
    Workload("10MB", 10 * KB * KB, False, 4, 150, 2, 20),
    Workload("500 conns", 1 * KB, False, 500, 40000, 1, 2000),
)


def children_cpu_seconds() -> float:
    """CPU of this process's reaped children (the load generators)."""
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def run_messages(w: Workload, scale: float) -> int:
    """Messages per run: even, so that direct's two sources split them exactly."""
    return max(2, int(w.messages * scale) // 2 * 2)


def latency_messages(w: Workload, scale: float) -> int:
    return max(20, int(w.latency_messages * scale) // 2 * 2)


# ---------------------------------------------------------------- processes


def start_sink(runner: Runner, args, name: str, port: int | None = None,
               dump_dir: Path | None = None):
    port = port or free_port()
    argv = [args.smtp_sink]
    if os.geteuid() == 0:
        argv += ["-u", "nobody"]  # smtp-sink refuses to run as root without it
    if dump_dir is not None:
        # smtp-sink drops to `nobody`: it must reach and write the directory.
        os.chmod(runner.workdir, 0o711)
        dump_dir.mkdir(parents=True, exist_ok=True)
        os.chmod(dump_dir, 0o777)
        argv += ["-d", f"{dump_dir}/%H%M%S."]
    argv += ["-c", "-m", str(SINK_MAX_SESSIONS), f"127.0.0.1:{port}", "1000"]
    p, out, _err = runner.start(argv, name)
    wait_listening(port, p, "smtp-sink")
    return p, out, port


def start_middle_box(runner: Runner, args, system: str, tag: str, sink_ports: list[int]):
    """smtplb or HAProxy in front of `sink_ports`: (process, port, log, config)."""
    port = free_port()
    if system == "smtplb":
        cfg = runner.workdir / f"{tag}.yaml"
        cfg.write_text(smtplb_round_robin_config(port, sink_ports, written_by="bench/compare.py"))
        p, _out, log = runner.start([args.smtplb, "run", "-c", cfg.name], tag)
    else:
        cfg = runner.workdir / f"{tag}.cfg"
        cfg.write_text(haproxy_tcp_config(port, sink_ports, 8192, written_by="bench/compare.py"))
        p, _out, log = runner.start([args.haproxy, "-f", cfg.name, "-db"], tag)
    wait_listening(port, p, system)
    return p, port, log, cfg


def smtp_source_argv(args, w: Workload, port: int, sessions: int, messages: int) -> list[str]:
    argv = [args.smtp_source, "-c", "-s", str(sessions), "-m", str(messages), "-l", str(w.size),
            "-M", HELO, "-f", SENDER, "-t", RECIPIENT]
    if w.reuse:
        argv.append("-d")
    return argv + [f"127.0.0.1:{port}"]


def run_sources(runner: Runner, args, w: Workload, ports: list[int], messages: int,
                tag: str) -> float:
    """smtp-source against each of `ports` at once, the sessions and messages
    split evenly; returns the wall time of the whole."""
    n = len(ports)
    jobs = [(smtp_source_argv(args, w, p, max(1, w.sessions // n), messages // n), messages // n)
            for p in ports]
    t0 = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(n) as ex:
        futures = [ex.submit(run_smtp_source, runner, argv, m, tag, args.run_timeout)
                   for argv, m in jobs]
        for f in futures:
            f.result()
    return time.monotonic() - t0


def latency_probe(runner: Runner, args, w: Workload, ports: list[int], tag: str) -> dict:
    """bench/smtp_load at moderate load, the same shape as the workload."""
    per_conn = "1" if not w.reuse else "0"
    docs = []
    for i, port in enumerate(ports):
        argv = [args.smtp_load, "--server", f"127.0.0.1:{port}",
                "-c", str(max(1, LATENCY_CONNECTIONS // len(ports))), "-m", per_conn,
                "-s", str(w.size), "-n", str(latency_messages(w, args.scale) // len(ports)),
                "--threads", "1", "--id-prefix", f"{tag}-{i}", "--timeout", "30"]
        docs.append(run_smtp_load(runner, argv, f"{tag} latency", args.run_timeout))
    failed = sum(d["messages_failed"] for d in docs)
    if failed:
        raise BenchError(f"{tag}: {failed} messages failed in the latency probe "
                         f"({docs[0].get('first_errors')})")
    # One message per connection: its whole cost, from the connect.
    key = "connect_latency_ms" if not w.reuse else "latency_ms"
    # With two ports (direct, two sinks) the probes ran one after the other;
    # the worse of the two is reported.
    return {
        "p50_ms": max(d[key]["p50"] for d in docs),
        "p99_ms": max(d[key]["p99"] for d in docs),
        "messages": sum(d["messages_ok"] for d in docs),
        "client_cpu_pct_of_wall": max(d["cpu"]["pct_of_wall"] for d in docs),
        "client_msgs_per_s": sum(d["msgs_per_s"] for d in docs),
    }


def measure(runner: Runner, args, w: Workload, system: str, rep: int) -> dict:
    tag = f"r{rep}-{system}-{w.name.replace(' ', '')}"
    messages = run_messages(w, args.scale)
    print(f"  {w.name:10} {system:8}", end=" ", flush=True, file=sys.stderr)
    res = {"workload": w.name, "system": system, "rep": rep, "messages": messages}
    sinks = [start_sink(runner, args, f"{tag}-sink{c}")
             for c in "AB"[: (w.direct_sinks if system == "direct" else 2)]]
    box = None
    try:
        sink_ports = [s[2] for s in sinks]
        if system == "direct":
            ports = sink_ports
        else:
            box, port, log, cfg = start_middle_box(runner, args, system, tag, sink_ports)
            ports = [port]
            res["config"] = cfg.read_text()
        cpu0 = proc_cpu_seconds(box.pid) if box else None
        gen0, sys0 = children_cpu_seconds(), system_cpu()
        wall = run_sources(runner, args, w, ports, messages, tag)
        gen1, sys1 = children_cpu_seconds(), system_cpu()
        cpu1 = proc_cpu_seconds(box.pid) if box else None
        # Is the load generator the limit?  Its own CPU per message, and how
        # busy the whole machine was (100%: every core was working).
        res["loadgen_cpu_us_per_msg"] = (gen1 - gen0) / messages * 1e6
        busy, total = sys1[0] - sys0[0], sys1[1] - sys0[1]
        res["machine_busy_pct"] = 100.0 * busy / total if total > 0 else None
        res["wall_s"] = wall
        res["msgs_per_s"] = messages / wall
        res["cpu_us_per_msg"] = (cpu1 - cpu0) / messages * 1e6 if box else None
        res["peak_rss_kb"] = proc_status_kb(box.pid, "VmHWM") if box else None
        lat = latency_probe(runner, args, w, ports, tag) if args.latency else None
        res["latency"] = lat
        expected = messages + (lat["messages"] if lat else 0)
        counts = wait_sink_total([s[1] for s in sinks], expected)
        res["sink_counts"] = counts
        res["lost"] = max(0, expected - sum(counts))
        res["duplicated"] = max(0, sum(counts) - expected)
        if box and box.poll() is not None:
            raise BenchError(f"{tag}: {system} exited with status {box.returncode}")
        if box:
            runner.stop(box)
        if system == "smtplb":
            chk = scan_smtplb_log(log)
            res["smtplb_log"] = chk
            if chk["delivered"] != expected:
                raise BenchError(f"{tag}: smtplb logged {chk['delivered']} delivered "
                                 f"transactions, expected {expected}: {chk}")
        box = None
        lat_txt = f", p99 {lat['p99_ms']:.2f} ms" if lat else ""
        print(f"{res['msgs_per_s']:8.0f} msg/s{lat_txt}", file=sys.stderr)
        return res
    finally:
        if box is not None:
            runner.stop(box)
        for p, _out, _port in sinks:
            runner.stop(p)


# ---------------------------------------------------------------- summary


def median_range(values: list[float]) -> tuple[float, float, float] | None:
    values = [v for v in values if v is not None]
    if not values:
        return None
    return statistics.median(values), min(values), max(values)


def summarize(runs: list[dict], workloads) -> list[dict]:
    rows = []
    for w in workloads:
        by_system = {}
        for system in SYSTEMS:
            mine = [r for r in runs if r["workload"] == w.name and r["system"] == system
                    and "error" not in r]
            errors = [r["error"] for r in runs if r["workload"] == w.name
                      and r["system"] == system and "error" in r]
            if not mine and not errors:
                continue  # not run (--systems)
            if not mine:
                by_system[system] = {"workload": w.name, "system": system, "errors": errors}
                continue
            lat = [r["latency"] for r in mine if r.get("latency")]
            by_system[system] = {
                "workload": w.name, "system": system, "reps": len(mine), "errors": errors,
                "msgs_per_s": median_range([r["msgs_per_s"] for r in mine]),
                "cpu_us_per_msg": median_range([r["cpu_us_per_msg"] for r in mine]),
                "peak_rss_kb": median_range([r["peak_rss_kb"] for r in mine]),
                "p50_ms": median_range([x["p50_ms"] for x in lat]),
                "p99_ms": median_range([x["p99_ms"] for x in lat]),
                "client_cpu_pct": median_range([x["client_cpu_pct_of_wall"] for x in lat]),
                "loadgen_cpu_us_per_msg": median_range([r["loadgen_cpu_us_per_msg"] for r in mine]),
                "machine_busy_pct": median_range([r["machine_busy_pct"] for r in mine]),
                "lost": sum(r["lost"] for r in mine),
                "duplicated": sum(r["duplicated"] for r in mine),
            }
        for system, row in by_system.items():
            mid = lambda s, k: ((by_system.get(s) or {}).get(k) or (None,))[0]  # noqa: E731
            row["vs_direct"] = ratio(mid(system, "msgs_per_s"), mid("direct", "msgs_per_s"))
            row["vs_haproxy"] = ratio(mid(system, "msgs_per_s"), mid("haproxy", "msgs_per_s"))
            row["cpu_vs_haproxy"] = ratio(mid(system, "cpu_us_per_msg"),
                                          mid("haproxy", "cpu_us_per_msg"))
            p99, d99 = mid(system, "p99_ms"), mid("direct", "p99_ms")
            row["p99_added_ms"] = None if p99 is None or d99 is None or system == "direct" \
                else p99 - d99
            rows.append(row)
    return rows


def ratio(a, b):
    return None if a is None or b in (None, 0) else a / b


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--smtplb", default=str(REPO / "build-release" / "smtplb"))
    ap.add_argument("--smtp-load", default=str(REPO / "build-release" / "bench" / "smtp_load"))
    ap.add_argument("--haproxy", default=shutil.which("haproxy") or "/usr/sbin/haproxy")
    ap.add_argument("--smtp-source", default=shutil.which("smtp-source") or "/usr/sbin/smtp-source")
    ap.add_argument("--smtp-sink", default=shutil.which("smtp-sink") or "/usr/sbin/smtp-sink")
    ap.add_argument("--reps", type=int, default=3, help="repetitions, interleaved (default 3)")
    ap.add_argument("--scale", type=float, default=1.0,
                    help="multiply every workload's message count (default 1)")
    ap.add_argument("--workloads", default=None,
                    help="comma-separated subset of: " + ", ".join(w.name for w in WORKLOADS))
    ap.add_argument("--systems", default=",".join(SYSTEMS))
    ap.add_argument("--no-latency", dest="latency", action="store_false",
                    help="skip the smtp_load latency probes")
    ap.add_argument("--no-failover", dest="failover", action="store_false")
    ap.add_argument("--no-idle", dest="idle", action="store_false")
    ap.add_argument("--failover-seconds", type=float, default=30.0)
    ap.add_argument("--idle-connections", type=int, default=5000)
    ap.add_argument("--quick", action="store_true",
                    help="a smoke run: --reps 1 --scale 0.05, short failover, 500 idle connections")
    ap.add_argument("--run-timeout", type=float, default=300.0)
    ap.add_argument("--out", default=None, help="write every run as JSON here")
    ap.add_argument("--markdown", default=None, help="write the report (RESULTS.md) here")
    ap.add_argument("--chart", default=None, help="write the PNG chart here (needs matplotlib)")
    ap.add_argument("--workdir", default=None)
    ap.add_argument("--keep", action="store_true")
    args = ap.parse_args()
    if args.quick:
        args.reps, args.scale = 1, 0.05
        args.failover_seconds, args.idle_connections = 6.0, 500

    workloads = WORKLOADS
    if args.workloads:
        wanted = [x.strip() for x in args.workloads.split(",")]
        unknown = set(wanted) - {w.name for w in WORKLOADS}
        if unknown:
            ap.error(f"unknown workloads {sorted(unknown)}")
        workloads = tuple(w for w in WORKLOADS if w.name in wanted)
    systems = [s.strip() for s in args.systems.split(",")]
    for path in (args.smtplb, args.smtp_load, args.haproxy, args.smtp_source, args.smtp_sink):
        if not os.access(path, os.X_OK):
            print(f"compare: {path} is missing (bench/run.sh builds and installs everything)",
                  file=sys.stderr)
            return 2

    import failover  # noqa: E402 (bench/ siblings)
    import idle_memory  # noqa: E402
    import report  # noqa: E402

    workdir, keep = make_workdir(args, "smtplb-compare-")
    runner = Runner(workdir, False)
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    started = time.monotonic()
    runs: list[dict] = []
    extra: dict = {}
    load_before = os.getloadavg()
    print(f"compare: work directory {workdir}", file=sys.stderr)
    try:
        for rep in range(args.reps):
            order = systems[rep % len(systems):] + systems[: rep % len(systems)]
            print(f"repetition {rep + 1}/{args.reps}, order {', '.join(order)}", file=sys.stderr)
            for w in workloads:
                for system in order:
                    try:
                        runs.append(measure(runner, args, w, system, rep))
                    except BenchError as e:
                        print(f"FAILED: {e}", file=sys.stderr)
                        runs.append({"workload": w.name, "system": system, "rep": rep,
                                     "error": str(e)})
        if args.failover:
            extra["failover"] = failover.run(runner, args)
        if args.idle:
            extra["idle"] = idle_memory.run_all(args, runner, ("smtplb", "haproxy"))
    except KeyboardInterrupt:
        print("compare: interrupted", file=sys.stderr)
        return 130
    finally:
        runner.stop_all()

    doc = {
        "tool": "bench/compare.py",
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "argv": sys.argv,
        "elapsed_s": time.monotonic() - started,
        "load_before": load_before,
        "environment": report.environment(args),
        "workloads": [dataclasses.asdict(w) | {"messages": run_messages(w, args.scale)}
                      for w in workloads],
        "reps": args.reps,
        "runs": runs,
        "rows": summarize(runs, workloads),
        **extra,
        "commands": runner.commands,
    }
    if args.out:
        Path(args.out).write_text(json.dumps(doc, indent=2) + "\n")
    text = report.markdown(doc, chart=Path(args.chart).name if args.chart else None)
    print(text)
    if args.markdown:
        Path(args.markdown).write_text(text)
    if args.chart:
        report.chart(doc, Path(args.chart))
    failed = any("error" in r for r in runs) or any(
        r.get("lost") or r.get("duplicated") for r in doc["rows"])
    if not keep and not failed:
        shutil.rmtree(workdir, ignore_errors=True)
    else:
        print(f"work directory kept: {workdir}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
