#!/usr/bin/env python3
"""chaos_soak.py: mail load through smtplb while its backends fail on purpose.

Issue 14's proof that smtplb loses nothing and double-sends only what it
says it may have: for --duration seconds (default 600; CI runs 60),

  load   bench/smtp_load (every message has an X-Test-Id; the ids of the
         messages the client got 250 for are written down) and Postfix's
         smtp-source -N (every message a unique recipient and Message-Id),
         run again whenever it stops at a refusal, both into smtplb;
  chaos  three backends: two Postfix smtp-sink writing each message to a
         file (A, B), SIGKILLed in turn every --kill-every seconds and
         restarted half a second later on the same port; one strict
         fault backend (C, tests/integration/fault_backend.py) that in
         every --window period stalls at end of data (answers the final
         dot only after smtplb's backend_data_done has passed, and stores
         the message then, as a real MTA that commits late would) and
         drops connections in mid-DATA; and a client that resets its own
         connections in mid-DATA (SO_LINGER 0).

At the end it counts at the sinks and checks:
  - lost: an id the client got 250 for that no backend stored: must be 0;
  - duplicated: an id stored more than once must be one smtplb logged as
    possible_duplicate=yes (matched through the `Received:` id smtplb
    wrote into every copy), and smtplb_possible_duplicates_total must
    count at least as many;
  - aborted: no message of a client that reset in mid-DATA was stored;
  - smtp-source: every message it counted as sent was stored;
  - RSS and open descriptors of smtplb: after the load stops and the
    sessions are gone, descriptors back within a few of the number at
    start (plus the idle pooled backend connections), RSS no more than
    --rss-growth above what it was a quarter into the run.
Prints a JSON report (also --json FILE) and a last line "N passed, N failed"
over those checks; exit status 0 only when every check passed.

Needs: smtplb and bench/smtp_load built (build-release/ by default),
Postfix's smtp-sink and smtp-source, Python 3 standard library.
Loopback only; every process gets fresh ports.
"""

from __future__ import annotations

import argparse
import collections
import itertools
import json
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "bench"))
from benchlib import (HOST, HELO, RECIPIENT, SENDER, BenchError, Runner,  # noqa: E402
                      backend_lines, free_port, memory_kb, read_ids, smtplb_config,
                      wait_listening)

SIZE = 2048  # smaller than smtp-sink's write buffer: a SIGKILL leaves no partial file


def fd_count(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


class Sinks:
    """Backends A and B: smtp-sink -d, each message a file in its directory."""

    def __init__(self, runner: Runner, workdir: Path, smtp_sink: str) -> None:
        self.runner, self.workdir, self.smtp_sink = runner, workdir, smtp_sink
        os.chmod(workdir, 0o711)  # smtp-sink runs as nobody when we are root
        self.entries = []
        for name in "AB":
            d = workdir / f"dump{name}"
            d.mkdir()
            os.chmod(d, 0o777)
            self.entries.append({"name": name, "port": free_port(), "dir": d, "proc": None})
            self.start(len(self.entries) - 1, 0)
        self.kills = 0

    def start(self, i: int, n: int) -> None:
        e = self.entries[i]
        argv = [self.smtp_sink] + (["-u", "nobody"] if os.geteuid() == 0 else [])
        argv += ["-d", f"{e['dir']}/%H%M%S.", "-c", "-m", 4000, f"{HOST}:{e['port']}", 4000]
        e["proc"], _o, _e = self.runner.start(argv, f"sink{e['name']}-{n}")
        wait_listening(e["port"], e["proc"], "smtp-sink")

    def kill_and_restart(self, i: int, stop: threading.Event) -> None:
        e = self.entries[i]
        e["proc"].send_signal(signal.SIGKILL)
        e["proc"].wait()
        self.kills += 1
        if not stop.wait(0.5):
            self.start(i, self.kills)

    def addresses(self) -> list[str]:
        return [f"{HOST}:{e['port']}" for e in self.entries]

    def stop(self) -> None:
        for e in self.entries:
            self.runner.stop(e["proc"])

    def stored(self):
        """(backend, file content) of every message file, one at a time:
        a 10-minute run leaves about two million."""
        for e in self.entries:
            for f in os.scandir(e["dir"]):
                yield e["name"], Path(f.path).read_bytes()


class FaultBackend:
    """Backend C: the strict fault backend, its faults switched through its
    control file."""

    def __init__(self, runner: Runner, workdir: Path) -> None:
        self.store = workdir / "storeC"
        self.control = workdir / "controlC.json"
        self.set_faults({})
        argv = [sys.executable, REPO / "tests/integration/fault_backend.py", "--port", "0",
                "--store", self.store, "--name", "C", "--control", self.control]
        self.proc, _o, err = runner.start(argv, "faultC")
        deadline = time.monotonic() + 10
        while not (self.store / "ready.json").is_file():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise BenchError(f"fault backend did not start: {err.read_text()[-300:]}")
            time.sleep(0.02)
        self.port = json.loads((self.store / "ready.json").read_text())["port"]
        self.runner = runner

    def set_faults(self, faults: dict) -> None:
        tmp = self.control.with_suffix(".tmp")
        tmp.write_text(json.dumps(faults))
        tmp.rename(self.control)

    def stored(self):
        d = self.store / "msgs"
        for f in d.glob("*.eml") if d.is_dir() else ():
            yield "C", f.read_bytes()

    def stop(self) -> None:
        self.runner.stop(self.proc)


def reset_client(port: int, stop: threading.Event, counts: dict) -> None:
    """Opens a session, sends part of a message, and resets the connection."""
    n = 0
    while not stop.wait(0.2):
        n += 1
        try:
            with socket.create_connection((HOST, port), timeout=10) as s:
                f = s.makefile("rb")

                def reply() -> bytes:
                    while True:
                        line = f.readline()
                        if len(line) < 4 or line[3:4] != b"-":
                            return line

                reply()
                s.sendall(f"EHLO {HELO}\r\n".encode())
                reply()
                for cmd in (f"MAIL FROM:<{SENDER}>", f"RCPT TO:<{RECIPIENT}>", "DATA"):
                    s.sendall(cmd.encode() + b"\r\n")
                    r = reply()
                if not r.startswith(b"354"):
                    counts["refused"] += 1
                    continue
                s.sendall(f"X-Test-Id: reset.{n}\r\nSubject: reset\r\n\r\n".encode()
                          + b"partial line\r\n" * 200)
                time.sleep(0.05)  # let smtplb pass the first part on to a backend
                s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            counts["reset"] += 1
        except OSError:
            counts["errors"] += 1


def chaos_fault_backend(c: FaultBackend, window: float, stop: threading.Event,
                        counts: dict) -> None:
    """Every `window` seconds: a stall at end of data for a quarter of it,
    then normal, then drops in mid-DATA for a quarter, then normal."""
    phases = (({"delay_eod": 2.5}, "stalls"), ({}, None),
              ({"drop_data_after": 700}, "drops"), ({}, None))
    while not stop.is_set():
        for faults, name in phases:
            c.set_faults(faults)
            if name:
                counts[name] += 1
            if stop.wait(window / 4):
                break
    c.set_faults({})


def smtp_source_loop(runner: Runner, smtp_source: str, port: int, deadline: float,
                     out: list) -> None:
    """smtp-source until the deadline; it stops at the first refusal (it
    calls that fatal), so it is started again, and each run is recorded."""
    n = 0
    while time.monotonic() < deadline:
        n += 1
        argv = [smtp_source, "-c", "-N", "-s", 5, "-m", 1000, "-l", 1024, "-M", HELO,
                "-f", SENDER, "-t", RECIPIENT, f"{HOST}:{port}"]
        p, o, e = runner.start(argv, f"smtp-source-{n}")
        while p.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
            p.wait()
        counted = [int(x) for x in re.findall(rb"\d+", o.read_bytes())]
        out.append({"pid": p.pid, "counted": counted[-1] if counted else 0,
                    "status": p.returncode, "stderr": e.read_text(errors="replace")[-200:]})


def sample(pid: int) -> dict:
    rss, _hwm = memory_kb(pid)
    return {"t": time.monotonic(), "rss_kb": rss, "fds": fd_count(pid)}


def metric(admin_port: int, name: str) -> float:
    with urllib.request.urlopen(f"http://{HOST}:{admin_port}/metrics", timeout=5) as r:
        text = r.read().decode()
    found = re.findall(rf"^{name}(?:{{[^}}]*}})? (\S+)$", text, re.M)
    return sum(float(v) for v in found)


TEST_ID = re.compile(rb"^X-Test-Id: (\S+)", re.M)
MESSAGE_ID = re.compile(rb"^Message-Id: <([0-9a-f]+)\.[0-9a-f]+\.[0-9a-f]+@", re.M | re.I)
RECEIVED_ID = re.compile(rb"\(smtplb\) with \S+ id (\S+?)[;\s]")


def complete(content: bytes) -> bool:
    """An smtp_load message is exactly SIZE octets in SMTP form (smtp-sink
    writes LF line ends and one empty line after the message)."""
    start = content.find(b"From: <")
    if start < 0:
        return False
    body = content[start:].replace(b"\r\n", b"\n").rstrip(b"\n").replace(b"\n", b"\r\n")
    return len(body) + 2 == SIZE


def count(stored, prefix: str) -> dict:
    by_id = collections.defaultdict(list)    # smtp_load id -> [smtplb transaction id]
    source = collections.defaultdict(collections.Counter)  # smtp-source pid -> Message-Id counts
    partial, resets, files = 0, [], 0
    for _backend, content in stored:
        files += 1
        txn = RECEIVED_ID.search(content)
        txn = txn.group(1).decode() if txn else "?"
        m = TEST_ID.search(content)
        if m:
            test_id = m.group(1).decode()
            if test_id.startswith("reset."):
                resets.append(test_id)
            elif test_id.startswith(prefix):
                if complete(content):
                    by_id[test_id].append(txn)
                else:
                    partial += 1
            continue
        m = MESSAGE_ID.search(content)
        if m:
            mid = re.search(rb"^Message-Id: <([^>]+)>", content, re.M | re.I).group(1).decode()
            source[int(m.group(1), 16)][(mid, txn)] += 1
    return {"by_id": by_id, "source": source, "partial": partial, "resets": resets,
            "files": files}


def flagged_transactions(log: Path) -> set[str]:
    out = set()
    for line in log.read_text(errors="replace").splitlines():
        if "possible_duplicate=yes" in line:
            m = re.search(r"\bt=(\S+)", line)
            if m:
                out.add(m.group(1))
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--duration", type=float, default=600.0, help="seconds of load (600)")
    ap.add_argument("--kill-every", type=float, default=3.0,
                    help="SIGKILL smtp-sink A or B this often (3 s)")
    ap.add_argument("--window", type=float, default=16.0,
                    help="C's fault cycle: stall, normal, drops, normal (16 s)")
    ap.add_argument("--conns", type=int, default=20, help="smtp_load connections (20)")
    ap.add_argument("--rss-growth", type=float, default=0.25,
                    help="allowed RSS growth after the first quarter (0.25, plus 8 MB)")
    ap.add_argument("--smtplb", default=str(REPO / "build-release/smtplb"))
    ap.add_argument("--smtp-load", default=str(REPO / "build-release/bench/smtp_load"))
    ap.add_argument("--smtp-sink", default=shutil.which("smtp-sink") or "/usr/sbin/smtp-sink")
    ap.add_argument("--smtp-source",
                    default=shutil.which("smtp-source") or "/usr/sbin/smtp-source")
    ap.add_argument("--workdir", help="keep every file here (default: a temporary directory)")
    ap.add_argument("--json", help="write the report here too")
    ap.add_argument("-v", "--verbose", action="store_true")
    args = ap.parse_args()
    for tool in (args.smtplb, args.smtp_load, args.smtp_sink, args.smtp_source):
        if not os.access(tool, os.X_OK):
            print(f"missing: {tool}", file=sys.stderr)
            return 2

    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="smtplb-soak-"))
    workdir.mkdir(parents=True, exist_ok=True)
    runner = Runner(workdir, args.verbose)
    try:
        report = soak(args, runner, workdir)
    finally:
        runner.stop_all()
    checks = report["checks"]
    failed = [k for k, ok in checks.items() if not ok]
    text = json.dumps(report, indent=2, default=str)
    print(text)
    if args.json:
        Path(args.json).write_text(text + "\n")
    if failed:
        print(f"failed: {', '.join(failed)}; files kept in {workdir}", file=sys.stderr)
    elif not args.workdir:
        shutil.rmtree(workdir, ignore_errors=True)
    print(f"{len(checks) - len(failed)} passed, {len(failed)} failed")
    return 1 if failed else 0


def soak(args, runner: Runner, workdir: Path) -> dict:
    sinks = Sinks(runner, workdir, args.smtp_sink)
    fault = FaultBackend(runner, workdir)
    port, admin_port = free_port(), free_port()
    pool = backend_lines(sinks.addresses() + [f"{HOST}:{fault.port}"])
    pool += "\n    retries: 2\n    health_check: { interval: 1s, timeout: 1s, rise: 1, fall: 2 }"
    extra = (f"timeouts:\n  backend_connect: 1s\n  backend_reply: 2s\n  backend_data_done: 1s\n"
             f"admin:\n  listen: {HOST}:{admin_port}\n")
    conf = workdir / "smtplb.yaml"
    conf.write_text(smtplb_config(port, pool, extra=extra))
    lb, _o, lb_log = runner.start([args.smtplb, "run", "-c", conf], "smtplb", group=True)
    wait_listening(port, lb, "smtplb")
    wait_listening(admin_port, lb, "smtplb admin")
    start = sample(lb.pid)

    stop = threading.Event()
    counts = collections.Counter()
    deadline = time.monotonic() + args.duration
    prefix = f"soak{os.getpid()}"
    ids_file = workdir / "accepted-ids"

    def kill_loop() -> None:
        i = 0
        while not stop.wait(args.kill_every):
            sinks.kill_and_restart(i % 2, stop)
            i += 1

    source_runs: list = []
    threads = [threading.Thread(target=kill_loop),
               threading.Thread(target=chaos_fault_backend, args=(fault, args.window, stop, counts)),
               threading.Thread(target=reset_client, args=(port, stop, counts)),
               threading.Thread(target=smtp_source_loop,
                                args=(runner, args.smtp_source, port, deadline, source_runs))]
    for t in threads:
        t.start()
    samples = [start]

    def sampler() -> None:
        while not stop.wait(5):
            samples.append(sample(lb.pid))
    sampling = threading.Thread(target=sampler)
    sampling.start()

    load_argv = [args.smtp_load, "--server", f"{HOST}:{port}", "-c", args.conns, "-m", 5,
                 "-s", SIZE, "-d", f"{args.duration:g}", "--id-prefix", prefix, "--timeout", 30,
                 "--helo", HELO, "--from", SENDER, "--to", RECIPIENT, "--error-pause", "0.05",
                 "--ids-out", ids_file]
    load_cp, _wall = runner.run(load_argv, "smtp_load", args.duration + 120)
    stop.set()
    for t in threads + [sampling]:
        t.join()
    fault.set_faults({})
    load_doc = json.loads(load_cp.stdout.decode(errors="replace") or "{}")

    # Quiet: the sessions end and C's late stores land (2.5 s stalls).
    quiet_deadline = time.monotonic() + 30
    while time.monotonic() < quiet_deadline:
        time.sleep(0.5)
        if fd_count(lb.pid) <= start["fds"] + 3 * 8:
            break
    time.sleep(3)
    end = sample(lb.pid)
    possible_metric = metric(admin_port, "smtplb_possible_duplicates_total")
    runner.stop(lb)
    sinks.stop()
    fault.stop()

    accepted = set(read_ids(ids_file))
    found = count(itertools.chain(sinks.stored(), fault.stored()), prefix)
    flagged = flagged_transactions(workdir / "smtplb.err")
    lost = sorted(accepted - set(found["by_id"]))
    dups = {i: t for i, t in found["by_id"].items() if len(t) > 1}
    unflagged = {i: t for i, t in dups.items() if not set(t) <= flagged}
    source_short = []
    source_dups = 0
    for run in source_runs:
        got = found["source"].get(run["pid"], collections.Counter())
        source_dups += sum(1 for (_m, _t), n in got.items() if n > 1)
        unique = len({m for m, _t in got})
        if unique < run["counted"]:
            source_short.append({"pid": run["pid"], "counted": run["counted"], "stored": unique})
        for (_m, txn), n in got.items():
            if n > 1 and txn not in flagged:
                unflagged[f"smtp-source {run['pid']} {_m}"] = [txn] * n
    quarter = next((s for s in samples if s["t"] >= start["t"] + args.duration / 4), samples[-1])
    rss_limit = quarter["rss_kb"] * (1 + args.rss_growth) + 8192
    report = {
        "duration_s": args.duration,
        "smtp_load": {k: load_doc.get(k) for k in ("messages_ok", "messages_failed", "errors",
                                                   "first_errors", "msgs_per_s")},
        "accepted_ids": len(accepted),
        "smtp_source_runs": len(source_runs),
        "smtp_source_counted": sum(r["counted"] for r in source_runs),
        # Stopped at the deadline (SIGTERM) is not a refusal.
        "smtp_source_refusals": [r["stderr"].strip() for r in source_runs
                                 if r["status"] not in (0, -signal.SIGTERM)][:5],
        "backend_kills": sinks.kills,
        "fault_windows": dict(counts),
        "stored_files": found["files"],
        "lost": len(lost), "lost_ids": lost[:10],
        "duplicated": len(dups), "smtp_source_duplicated": source_dups,
        "flagged_in_log": len(flagged), "possible_duplicates_metric": possible_metric,
        "unflagged_duplicates": dict(list(unflagged.items())[:10]),
        "partial_files": found["partial"],
        "reset_messages_stored": found["resets"][:10],
        "smtplb": {"start": start, "quarter": quarter, "end": end,
                   "rss_max_kb": max(s["rss_kb"] for s in samples),
                   "fds_max": max(s["fds"] for s in samples)},
        "smtp_source_short": source_short[:10],
    }
    report["checks"] = {
        "load ran": len(accepted) > 0 and counts["reset"] > 0 and sinks.kills > 0,
        "nothing lost": not lost,
        "every duplicate flagged": not unflagged,
        "metric counts the flagged": possible_metric >= len(flagged),
        "reset messages not stored": not found["resets"],
        "smtp-source: every counted message stored": not source_short,
        "descriptors back at rest": end["fds"] <= start["fds"] + 3 * 8,
        "RSS flat": end["rss_kb"] <= rss_limit,
    }
    return report


if __name__ == "__main__":
    sys.exit(main())
