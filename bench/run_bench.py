#!/usr/bin/env python3
"""run_bench.py: smtplb against direct delivery and against HAProxy (TCP mode).

One run, loopback only, bounded in time.  For every message size and every
setup it starts fresh processes on fresh ports:

  direct   smtp-source -> smtp-sink A
  smtplb   smtp-source -> smtplb (round_robin) -> smtp-sink A, smtp-sink B
  haproxy  smtp-source -> haproxy (mode tcp, balance roundrobin) -> A, B

and measures, with the same smtp-source workload, messages/s (wall time of
smtp-source), the mean time per message (Little's law under load, and a
one-session probe unloaded), CPU seconds of the proxy process (utime+stime
from /proc/PID/stat) and so CPU per message, the proxy's peak RSS (VmHWM),
and the CPU of the sinks and of smtp-source.  Success is checked: smtp-source
must exit 0, print no diagnostics and count every message; the sinks' own
counters (smtp-sink -c) must add up to what was sent; smtplb must log one
delivered transaction per message and no warning or error.

Python 3 standard library only.  See bench/README.md.

  bench/run_bench.py                 # full run (defaults: -s 20, -m 20000, 1KB and 100KB)
  bench/run_bench.py --quick         # a few seconds, for CI
  bench/run_bench.py --out result.json --sizes 1KB,100KB,1MB --messages 5000
"""

from __future__ import annotations

import argparse
import datetime as _dt
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

from benchlib import (BenchError, Runner, finish, fmt, free_port, haproxy_tcp_config,  # noqa: E402
                      make_workdir, parse_size,
                      print_commands_and_configs, proc_cpu_seconds, proc_status_kb,
                      run_smtp_source, wait_sink_total,
                      smtplb_round_robin_config,
                      scan_smtplb_log, system_cpu, wait_listening)

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
CLK_TCK = os.sysconf("SC_CLK_TCK")
SETUPS = ("direct", "smtplb", "haproxy")

SENDER = "bench-sender@example.com"
RECIPIENT = "bench-rcpt@example.com"
HELO = "bench.example.com"


# ---------------------------------------------------------------- helpers


def size_label(n: int) -> str:
    for unit, mult in (("MB", 1024**2), ("KB", 1024)):
        if n >= mult and n % mult == 0:
            return f"{n // mult}{unit}"
    return f"{n}B"


def children_cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


# ---------------------------------------------------------------- workload


def smtp_source_argv(args, port: int, sessions: int, messages: int, size: int) -> list[str]:
    argv = [args.smtp_source, "-c", "-s", str(sessions), "-m", str(messages), "-l", str(size),
            "-M", HELO, "-f", SENDER, "-t", RECIPIENT]
    if args.reuse:
        argv.append("-d")
    argv.append(f"127.0.0.1:{port}")
    return argv


def run_source(runner: Runner, args, port: int, sessions: int, messages: int, size: int,
               name: str, timeout: float) -> dict:
    """Runs smtp-source to completion; returns wall time and checks success."""
    return run_smtp_source(runner, smtp_source_argv(args, port, sessions, messages, size),
                           messages, name, timeout)


# ---------------------------------------------------------------- setups


def start_sinks(runner: Runner, args, tag: str, n: int) -> list[tuple[subprocess.Popen, Path, int]]:
    sinks = []
    for i in range(n):
        port = free_port()
        argv = [args.smtp_sink]
        if os.geteuid() == 0:
            argv += ["-u", args.sink_user]  # smtp-sink refuses to run as root without it
        argv += ["-c", f"127.0.0.1:{port}", "1000"]
        p, out, _err = runner.start(argv, f"{tag}-sink{chr(ord('A') + i)}")
        sinks.append((p, out, port))
    for p, _out, port in sinks:
        wait_listening(port, p, "smtp-sink")
    return sinks


def start_proxy(runner: Runner, args, setup: str, tag: str, sink_ports: list[int]):
    """Returns (proc, listen port, log path) for smtplb or haproxy."""
    port = free_port()
    if setup == "smtplb":
        cfg = runner.workdir / f"{tag}-smtplb.yaml"
        cfg.write_text(smtplb_round_robin_config(port, sink_ports, written_by="bench/run_bench.py",
                                                 max_connections=1000))
        argv = [args.smtplb, "run", "-c", cfg.name]
        if args.smtplb_log_level:
            argv += ["--log-level", args.smtplb_log_level]
        p, _out, err = runner.start(argv, f"{tag}-smtplb")
    else:
        cfg = runner.workdir / f"{tag}-haproxy.cfg"
        cfg.write_text(haproxy_tcp_config(port, sink_ports, max(4096, args.concurrency * 4),
                                          written_by="bench/run_bench.py"))
        argv = [args.haproxy, "-f", cfg.name, "-db"]
        p, _out, err = runner.start(argv, f"{tag}-haproxy")
    wait_listening(port, p, setup)
    return p, port, err, cfg


def check_smtplb_log(log: Path, expected: int) -> dict:
    return {**scan_smtplb_log(log), "expected": expected}


def measure(runner: Runner, args, setup: str, size: int) -> dict:
    tag = f"{setup}-{size_label(size)}"
    print(f"== {tag}: ", end="", flush=True, file=sys.stderr)
    res: dict = {"setup": setup, "size": size, "size_label": size_label(size),
                 "messages": args.messages, "concurrency": args.concurrency,
                 "warmup": args.warmup, "latency_messages": args.latency_messages}
    sinks = start_sinks(runner, args, tag, 1 if setup == "direct" else 2)
    proxy = None
    try:
        sink_ports = [s[2] for s in sinks]
        if setup == "direct":
            port = sink_ports[0]
        else:
            proxy, port, log, cfg = start_proxy(runner, args, setup, tag, sink_ports)
            res["config_file"] = str(cfg)
            res["config"] = cfg.read_text()
            res["proxy_pid"] = proxy.pid

        # Warm-up (connections, pools, page faults): not measured.
        if args.warmup:
            run_source(runner, args, port, args.concurrency, args.warmup, size,
                       f"{tag} warm-up", args.run_timeout)

        # The measured run.
        watched = {"proxy": proxy.pid} if proxy else {}
        for i, s in enumerate(sinks):
            watched[f"sink{chr(ord('A') + i)}"] = s[0].pid
        cpu0 = {k: proc_cpu_seconds(pid) for k, pid in watched.items()}
        sys0 = system_cpu()
        ch0 = children_cpu()
        walls = []
        for _ in range(args.repeat):
            r = run_source(runner, args, port, args.concurrency, args.messages, size, tag,
                           args.run_timeout)
            walls.append(r["wall_s"])
        sys1 = system_cpu()
        ch1 = children_cpu()
        cpu1 = {k: proc_cpu_seconds(pid) for k, pid in watched.items()}
        measured = args.messages * args.repeat
        wall = statistics.median(walls)
        res["wall_s"] = wall
        res["wall_s_all"] = walls
        res["msgs_per_s"] = args.messages / wall
        res["mbytes_per_s"] = args.messages * size / wall / 1e6
        # Closed loop with `concurrency` sessions always busy: Little's law.
        res["latency_ms_loaded"] = args.concurrency * wall / args.messages * 1000
        res["cpu_s"] = {k: cpu1[k] - cpu0[k] for k in watched}
        res["loadgen_cpu_s"] = ch1 - ch0
        res["loadgen_cpu_us_per_msg"] = res["loadgen_cpu_s"] / measured * 1e6
        busy, total = sys1[0] - sys0[0], sys1[1] - sys0[1]
        res["machine_busy_pct"] = 100.0 * busy / total if total > 0 else None
        # CPU the machine spent on anything but the processes of this run
        # (other work on the host, kernel threads, softirq not charged to
        # them): a large value means the numbers are disturbed.
        ours = sum(res["cpu_s"].values()) + res["loadgen_cpu_s"]
        res["other_cpu_s"] = max(0.0, busy / CLK_TCK - ours)
        res["other_cpu_pct"] = 100.0 * res["other_cpu_s"] / (busy / CLK_TCK) if busy > 0 else None
        if proxy:
            res["proxy_cpu_s"] = res["cpu_s"]["proxy"]
            res["proxy_cpu_us_per_msg"] = res["proxy_cpu_s"] / measured * 1e6
        else:
            res["proxy_cpu_s"] = None
            res["proxy_cpu_us_per_msg"] = None
        res["sinks_cpu_us_per_msg"] = sum(v for k, v in res["cpu_s"].items()
                                          if k.startswith("sink")) / measured * 1e6

        # Unloaded latency: one session, one message at a time.
        if args.latency_messages:
            r = run_source(runner, args, port, 1, args.latency_messages, size,
                           f"{tag} latency probe", args.run_timeout)
            res["latency_ms_unloaded"] = r["wall_s"] / args.latency_messages * 1000
        else:
            res["latency_ms_unloaded"] = None

        if proxy:
            res["proxy_peak_rss_kb"] = proc_status_kb(proxy.pid, "VmHWM")
            res["proxy_rss_kb_end"] = proc_status_kb(proxy.pid, "VmRSS")
            res["proxy_threads"] = proc_status_kb(proxy.pid, "Threads")
        else:
            res["proxy_peak_rss_kb"] = None

        # What arrived at the sinks.
        expected = args.warmup + measured + args.latency_messages
        counts = wait_sink_total([s[1] for s in sinks], expected)
        res["sink_counts"] = counts
        res["sink_expected"] = expected
        if sum(counts) != expected:
            raise BenchError(f"{tag}: the sinks counted {sum(counts)} messages ({counts}), "
                             f"expected {expected}")
        if proxy and proxy.poll() is not None:
            raise BenchError(f"{tag}: {setup} exited with status {proxy.returncode} during the run")
        if proxy:
            proxy_rc = runner.stop(proxy)
            res["proxy_exit_status"] = proxy_rc
        if setup == "smtplb":
            chk = check_smtplb_log(log, expected)
            res["smtplb_log"] = chk
            logs_transactions = args.smtplb_log_level in ("info", "debug", "trace")
            if logs_transactions and chk["delivered"] != expected:
                raise BenchError(f"{tag}: smtplb logged {chk['delivered']} delivered "
                                 f"transactions, expected {expected} ({chk})")
        proxy = None
        print(f"{res['msgs_per_s']:.0f} msg/s, wall {wall:.2f}s", file=sys.stderr)
        return res
    finally:
        if proxy is not None:
            runner.stop(proxy)
        for p, _out, _port in sinks:
            runner.stop(p)


# ---------------------------------------------------------------- report


def ratio(a, b):
    if a is None or b is None or b == 0:
        return None
    return a / b


def build_table(results: list[dict]) -> str:
    head = ["size", "setup", "msg/s", "MB/s", "lat ms (load)", "lat ms (1 sess)",
            "proxy CPU s", "proxy us/msg", "sinks us/msg", "source us/msg", "peak RSS MB",
            "busy %", "other %"]
    rows = [head]
    for r in results:
        if "error" in r:
            rows.append([r["size_label"], r["setup"], "FAILED"] + [""] * (len(head) - 3))
            continue
        rows.append([
            r["size_label"], r["setup"],
            fmt(r["msgs_per_s"], ".0f"), fmt(r["mbytes_per_s"], ".1f"),
            fmt(r["latency_ms_loaded"], ".2f"), fmt(r["latency_ms_unloaded"], ".2f"),
            fmt(r["proxy_cpu_s"], ".2f"), fmt(r["proxy_cpu_us_per_msg"], ".0f"),
            fmt(r["sinks_cpu_us_per_msg"], ".0f"), fmt(r["loadgen_cpu_us_per_msg"], ".0f"),
            fmt(None if r["proxy_peak_rss_kb"] is None else r["proxy_peak_rss_kb"] / 1024, ".1f"),
            fmt(r["machine_busy_pct"], ".0f"), fmt(r["other_cpu_pct"], ".0f"),
        ])
    widths = [max(len(row[i]) for row in rows) for i in range(len(head))]
    lines = []
    for n, row in enumerate(rows):
        cells = [c.ljust(widths[i]) if i < 2 else c.rjust(widths[i]) for i, c in enumerate(row)]
        lines.append("  ".join(cells).rstrip())
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def build_ratios(results: list[dict]) -> list[dict]:
    by = {(r["size"], r["setup"]): r for r in results if "error" not in r}
    out = []
    for size in sorted({r["size"] for r in results}):
        d, s, h = by.get((size, "direct")), by.get((size, "smtplb")), by.get((size, "haproxy"))
        g = lambda r, k: None if r is None else r.get(k)  # noqa: E731
        out.append({
            "size": size, "size_label": size_label(size),
            "smtplb_over_direct_throughput": ratio(g(s, "msgs_per_s"), g(d, "msgs_per_s")),
            "smtplb_over_haproxy_throughput": ratio(g(s, "msgs_per_s"), g(h, "msgs_per_s")),
            "haproxy_over_direct_throughput": ratio(g(h, "msgs_per_s"), g(d, "msgs_per_s")),
            "smtplb_over_haproxy_cpu_per_msg": ratio(g(s, "proxy_cpu_us_per_msg"),
                                                     g(h, "proxy_cpu_us_per_msg")),
            "smtplb_over_haproxy_peak_rss": ratio(g(s, "proxy_peak_rss_kb"),
                                                  g(h, "proxy_peak_rss_kb")),
        })
    return out


def ratios_text(ratios: list[dict]) -> str:
    lines = []
    for r in ratios:
        lines.append(
            f"{r['size_label']:>6}: throughput smtplb/direct {fmt(r['smtplb_over_direct_throughput'], '.2f')}"
            f", smtplb/haproxy {fmt(r['smtplb_over_haproxy_throughput'], '.2f')}"
            f", haproxy/direct {fmt(r['haproxy_over_direct_throughput'], '.2f')}"
            f";  CPU/msg smtplb/haproxy {fmt(r['smtplb_over_haproxy_cpu_per_msg'], '.2f')}"
            f";  peak RSS smtplb/haproxy {fmt(r['smtplb_over_haproxy_peak_rss'], '.2f')}")
    return "\n".join(lines)


def tool_version(argv: list[str]) -> str:
    try:
        cp = subprocess.run(argv, capture_output=True, timeout=5)
        return (cp.stdout or cp.stderr).decode(errors="replace").strip().splitlines()[0]
    except Exception as e:  # noqa: BLE001
        return f"unknown ({e})"


# ---------------------------------------------------------------- main


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--smtplb", default=str(REPO / "build" / "smtplb"), help="smtplb binary")
    ap.add_argument("--haproxy", default=shutil.which("haproxy") or "/usr/sbin/haproxy")
    ap.add_argument("--smtp-source", default=shutil.which("smtp-source") or "/usr/sbin/smtp-source")
    ap.add_argument("--smtp-sink", default=shutil.which("smtp-sink") or "/usr/sbin/smtp-sink")
    ap.add_argument("--sink-user", default="nobody", help="smtp-sink -u USER when run as root")
    ap.add_argument("--messages", "-m", type=int, default=None,
                    help="messages per measured run (default 20000; --quick 500)")
    ap.add_argument("--concurrency", "-s", type=int, default=None,
                    help="parallel smtp-source sessions (default 20; --quick 10)")
    ap.add_argument("--sizes", default=None,
                    help="comma-separated payload sizes (default 1KB,100KB)")
    ap.add_argument("--setups", default=",".join(SETUPS),
                    help="comma-separated subset of direct,smtplb,haproxy")
    ap.add_argument("--warmup", type=int, default=None,
                    help="unmeasured messages before each run (default 200; --quick 50)")
    ap.add_argument("--latency-messages", type=int, default=None,
                    help="messages of the one-session latency probe, 0 to skip "
                         "(default 300; --quick 50)")
    ap.add_argument("--repeat", type=int, default=1,
                    help="measured runs per setup and size (median wall time is reported)")
    ap.add_argument("--reuse", action="store_true",
                    help="smtp-source -d: send all messages of a session over one connection "
                         "(default: one connection per message)")
    ap.add_argument("--smtplb-log-level", default="info",
                    help="smtplb --log-level (default info, what production runs; the log "
                         "goes to a file in the work directory)")
    ap.add_argument("--run-timeout", type=float, default=120.0,
                    help="seconds one smtp-source run may take")
    ap.add_argument("--budget", type=float, default=600.0,
                    help="seconds for the whole benchmark; remaining measurements are skipped "
                         "once it is spent")
    ap.add_argument("--quick", action="store_true", help="small workload for CI (a few seconds)")
    ap.add_argument("--out", default=None, help="write the JSON result here")
    ap.add_argument("--workdir", default=None,
                    help="keep configs and logs here (default: a temporary directory, removed "
                         "unless --keep or a failure)")
    ap.add_argument("--keep", action="store_true", help="keep the work directory")
    ap.add_argument("-v", "--verbose", action="store_true", help="echo commands as they run")
    args = ap.parse_args()

    q = args.quick
    if args.messages is None:
        args.messages = 500 if q else 20000
    if args.concurrency is None:
        args.concurrency = 10 if q else 20
    if args.sizes is None:
        args.sizes = "1KB,100KB"
    if args.warmup is None:
        args.warmup = 50 if q else 200
    if args.latency_messages is None:
        args.latency_messages = 50 if q else 300
    sizes = [parse_size(s) for s in args.sizes.split(",") if s.strip()]
    setups = [s.strip() for s in args.setups.split(",") if s.strip()]
    for s in setups:
        if s not in SETUPS:
            ap.error(f"unknown setup {s!r}")
    if args.messages < 1 or args.concurrency < 1 or args.repeat < 1:
        ap.error("--messages, --concurrency and --repeat must be positive")
    needed = {"smtp-source": args.smtp_source, "smtp-sink": args.smtp_sink}
    if "smtplb" in setups:
        needed["smtplb"] = args.smtplb
    if "haproxy" in setups:
        needed["haproxy"] = args.haproxy
    for what, path in needed.items():
        if not (os.path.isfile(path) and os.access(path, os.X_OK)):
            hint = " (build it: cmake --build build --target smtplb)" if what == "smtplb" else ""
            print(f"run_bench: {what} not found at {path}{hint}", file=sys.stderr)
            return 2
    args.smtplb = os.path.abspath(args.smtplb)

    workdir, keep = make_workdir(args, "smtplb-bench-")

    runner = Runner(workdir, args.verbose)
    started = time.monotonic()
    results: list[dict] = []
    failed = False
    interrupted = False

    def on_term(signum, _frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    print(f"run_bench: work directory {workdir}", file=sys.stderr)
    load1 = os.getloadavg()[0]
    if load1 > 0.5 * (os.cpu_count() or 1):
        print(f"run_bench: warning: load average {load1:.2f} before start; other work on this "
              f"host will disturb the numbers (see the 'other %' column)", file=sys.stderr)
    try:
        for size in sizes:
            for setup in setups:
                if time.monotonic() - started > args.budget:
                    results.append({"setup": setup, "size": size, "size_label": size_label(size),
                                    "error": f"skipped: --budget {args.budget:.0f}s spent"})
                    failed = True
                    continue
                try:
                    results.append(measure(runner, args, setup, size))
                except BenchError as e:
                    print(f"FAILED\nrun_bench: {e}", file=sys.stderr)
                    results.append({"setup": setup, "size": size,
                                    "size_label": size_label(size), "error": str(e)})
                    failed = True
    except KeyboardInterrupt:
        interrupted = True
        failed = True
        print("\nrun_bench: interrupted", file=sys.stderr)
    finally:
        runner.stop_all()

    elapsed = time.monotonic() - started
    ratios = build_ratios(results)
    table = build_table(results)
    env = {
        "host": platform.node(), "kernel": platform.release(), "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "smtplb": tool_version([args.smtplb, "version"]) if "smtplb" in setups else None,
        "haproxy": tool_version([args.haproxy, "-v"]) if "haproxy" in setups else None,
        "smtplb_build_type": None,
    }
    cache = REPO / "build" / "CMakeCache.txt"
    if cache.is_file() and os.path.dirname(args.smtplb) == str(REPO / "build"):
        m = re.search(r"^CMAKE_BUILD_TYPE:STRING=(.*)$", cache.read_text(errors="replace"), re.M)
        env["smtplb_build_type"] = m.group(1) if m else None

    print()
    print(f"smtplb benchmark: {args.messages} messages x {args.repeat} run(s), "
          f"{args.concurrency} sessions, {'connection reuse (-d)' if args.reuse else 'one connection per message'}, "
          f"warm-up {args.warmup}, {elapsed:.0f}s total, {os.cpu_count()} CPUs shared by all processes")
    print(table)
    print()
    print("ratios:")
    print(ratios_text(ratios))
    errors = [r for r in results if "error" in r]
    for r in errors:
        print(f"FAILED {r['size_label']} {r['setup']}: {r['error']}")
    print()
    print("""\
columns: msg/s, MB/s      messages (payload) / wall time of the measured smtp-source run
         lat ms (load)    mean time per message per session under load: sessions x wall / messages
         lat ms (1 sess)  mean time per message of a one-session probe (unloaded)
         proxy CPU s      utime+stime of the proxy process during the measured run
         .. us/msg        CPU microseconds per message: proxy, both sinks together, smtp-source
         peak RSS MB      VmHWM of the proxy process at the end of its run
         busy %           all CPUs of the machine during the measured run
         other %          share of that busy time not charged to this run's processes (other
                          work on the host, unattributed kernel time): high = disturbed numbers""")
    print_commands_and_configs(runner, results, "runs")

    doc = {
        "tool": "smtplb bench/run_bench.py",
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "argv": sys.argv,
        "parameters": {"messages": args.messages, "concurrency": args.concurrency,
                       "sizes": sizes, "setups": setups, "warmup": args.warmup,
                       "latency_messages": args.latency_messages, "repeat": args.repeat,
                       "reuse_connections": args.reuse, "quick": args.quick,
                       "smtplb_log_level": args.smtplb_log_level},
        "environment": env,
        "elapsed_s": elapsed,
        "ok": not failed,
        "interrupted": interrupted,
        "loadavg_at_start": load1,
        "results": results,
        "ratios": ratios,
        "table": table,
        "commands": runner.commands,
        "workdir": str(workdir) if (keep or failed) else None,
    }
    return finish(args, doc, workdir, keep, failed)


if __name__ == "__main__":
    sys.exit(main())
