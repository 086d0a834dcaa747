#!/usr/bin/env python3
"""idle_memory.py: what one idle client connection costs a balancer.

Starts the balancer (smtplb with one worker, or HAProxy in TCP mode) in
front of two smtp-sink backends, opens a warm-up batch of connections (so
one-time allocations are not charged to the measured ones), reads the RSS
and PSS of the balancer, opens N more connections and reads them again.
The growth divided by N is the cost of one connection, in three states:

  banner   connected, the 220 read, nothing sent
  mail     EHLO and MAIL FROM accepted: a transaction open (smtplb contacts
           a backend at the first RCPT, so none is held yet)

Every connection is kept open until the end, so nothing is freed between
the two readings.  Python 3 standard library only.

  bench/idle_memory.py --smtplb build-release/smtplb -n 5000
  bench/idle_memory.py --system haproxy -n 5000 --states banner
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import socket
import sys
import time
from pathlib import Path

from benchlib import (BenchError, Runner, backend_lines, free_port, haproxy_tcp_config,
                      make_workdir, smtplb_config, wait_listening)

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
STATES = ("banner", "mail")


def memory_kb(pid: int) -> tuple[int, int]:
    """(RSS, PSS) of a process in KiB, from /proc/PID/smaps_rollup."""
    rss = pss = 0
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            if line.startswith("Rss:"):
                rss = int(line.split()[1])
            elif line.startswith("Pss:"):
                pss = int(line.split()[1])
    return rss, pss


def read_reply(sock: socket.socket) -> bytes:
    data = b""
    while True:
        chunk = sock.recv(4096)
        if not chunk:
            raise BenchError(f"connection closed after {data!r}")
        data += chunk
        lines = data.split(b"\r\n")
        # Complete when the last full line is a final one ("250 ", not "250-").
        full = lines[:-1]
        if full and len(full[-1]) >= 4 and full[-1][3:4] == b" ":
            return data


def expect(sock: socket.socket, code: bytes, what: str) -> None:
    reply = read_reply(sock)
    if not reply.startswith(code):
        raise BenchError(f"{what}: expected {code.decode()}, got {reply[:200]!r}")


def open_connections(port: int, n: int, state: str, tag: str) -> list[socket.socket]:
    socks = []
    for i in range(n):
        s = socket.create_connection(("127.0.0.1", port), timeout=10)
        expect(s, b"220", "banner")
        if state == "mail":
            s.sendall(b"EHLO idle.example.com\r\n")
            expect(s, b"250", "EHLO")
            s.sendall(f"MAIL FROM:<idle-{tag}-{i}@example.com>\r\n".encode())
            expect(s, b"250", "MAIL")
        socks.append(s)
    return socks


def settle(pid: int) -> tuple[int, int]:
    """Memory once the balancer has caught up (two equal readings)."""
    last = memory_kb(pid)
    for _ in range(20):
        time.sleep(0.1)
        now = memory_kb(pid)
        if now == last:
            return now
        last = now
    return last


def measure(args, system: str, state: str, runner: Runner) -> dict:
    sinks = []
    for name in ("A", "B"):
        port = free_port()
        argv = [args.smtp_sink]
        if os.geteuid() == 0:
            argv += ["-u", "nobody"]
        argv += ["-m", str(args.connections + args.warmup + 100), f"127.0.0.1:{port}",
                 str(args.connections + 1000)]
        p, _o, _e = runner.start(argv, f"idle-{system}-{state}-sink{name}")
        wait_listening(port, p, "smtp-sink")
        sinks.append((p, port))
    port = free_port()
    tag = f"idle-{system}-{state}"
    if system == "smtplb":
        cfg = runner.workdir / f"{tag}.yaml"
        cfg.write_text(smtplb_config(port, backend_lines([s[1] for s in sinks]),
                                     written_by="bench/idle_memory.py", extra="workers: 1\n",
                                     max_connections=args.connections * 2 + 1000))
        proc, _o, _e = runner.start([args.smtplb, "run", "-c", cfg.name, "--log-level", "warn"],
                                    tag)
    else:
        cfg = runner.workdir / f"{tag}.cfg"
        cfg.write_text(haproxy_tcp_config(port, [s[1] for s in sinks], args.connections + args.warmup + 500,
                                          written_by="bench/idle_memory.py"))
        proc, _o, _e = runner.start([args.haproxy, "-f", cfg.name, "-db"], tag)
    wait_listening(port, proc, system)
    held = []
    try:
        held += open_connections(port, args.warmup, state, "warm")
        before = settle(proc.pid)
        t0 = time.monotonic()
        held += open_connections(port, args.connections, state, "m")
        took = time.monotonic() - t0
        after = settle(proc.pid)
        if proc.poll() is not None:
            raise BenchError(f"{system} exited during the run")
        return {
            "system": system, "state": state, "connections": args.connections,
            "rss_kb_before": before[0], "rss_kb_after": after[0],
            "pss_kb_before": before[1], "pss_kb_after": after[1],
            "rss_bytes_per_conn": (after[0] - before[0]) * 1024 / args.connections,
            "pss_bytes_per_conn": (after[1] - before[1]) * 1024 / args.connections,
            "open_s": took,
        }
    finally:
        for s in held:
            s.close()
        runner.stop(proc)
        for p, _port in sinks:
            runner.stop(p)


def run_all(opts, runner: Runner, systems) -> list[dict]:
    """For bench/compare.py: every state of every system, with its options
    (smtplb, haproxy, smtp_sink, idle_connections)."""
    args = argparse.Namespace(smtplb=opts.smtplb, haproxy=opts.haproxy, smtp_sink=opts.smtp_sink,
                              connections=opts.idle_connections, warmup=200)
    raise_nofile(2 * (args.connections + args.warmup) + 100)
    results = []
    for system in systems:
        for state in STATES if system == "smtplb" else ("banner",):
            r = measure(args, system, state, runner)
            print(f"  idle       {system:8} {state:7} {r['rss_bytes_per_conn']:6.0f} B/conn",
                  file=sys.stderr)
            results.append(r)
    return results


def raise_nofile(need: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < need:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(need, soft)), hard))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--smtplb", default=str(REPO / "build-release" / "smtplb"))
    ap.add_argument("--haproxy", default=shutil.which("haproxy") or "/usr/sbin/haproxy")
    ap.add_argument("--smtp-sink", default=shutil.which("smtp-sink") or "/usr/sbin/smtp-sink")
    ap.add_argument("--system", default="smtplb", help="comma-separated: smtplb,haproxy")
    ap.add_argument("--states", default=",".join(STATES), help="comma-separated: " + ",".join(STATES))
    ap.add_argument("-n", "--connections", type=int, default=5000)
    ap.add_argument("--warmup", type=int, default=200)
    ap.add_argument("--out", default=None, help="write the JSON result here")
    ap.add_argument("--workdir", default=None)
    ap.add_argument("--keep", action="store_true")
    args = ap.parse_args()
    raise_nofile(2 * (args.connections + args.warmup) + 100)
    workdir, keep = make_workdir(args, "smtplb-idle-")
    runner = Runner(workdir, False)
    results = []
    try:
        for system in args.system.split(","):
            for state in args.states.split(","):
                if system == "haproxy" and state != "banner":
                    continue  # HAProxy does not speak SMTP: the banner is the sink's
                r = measure(args, system, state, runner)
                results.append(r)
                print(f"{system:8} {state:7} {r['rss_bytes_per_conn']:8.0f} B/conn RSS "
                      f"{r['pss_bytes_per_conn']:8.0f} B/conn PSS  ({args.connections} connections)",
                      flush=True)
    except BenchError as e:
        print(f"idle_memory: {e}", file=sys.stderr)
        return 1
    finally:
        runner.stop_all()
        if not keep:
            shutil.rmtree(workdir, ignore_errors=True)
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
