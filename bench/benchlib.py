"""benchlib.py: what the bench/ scripts (run_bench, run_skewed, run_mx,
run_tls) share: free loopback ports, waiting for a listener, CPU and memory
of a process (or of a process group), size arguments, number formatting,
Markdown tables, the work directory, the result file, and running the load
clients (smtp-source, bench/smtp_load).  Python 3 standard library only."""

import argparse
import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HOST = "127.0.0.1"
CLK_TCK = os.sysconf("SC_CLK_TCK")


class BenchError(Exception):
    pass


def parse_size(text: str) -> int:
    """'1KB' -> 1024 (binary multiples, as smtplb's config), '500' -> 500."""
    m = re.fullmatch(r"\s*(\d+)\s*([KMG]?)B?\s*", text, re.IGNORECASE)
    if not m:
        raise argparse.ArgumentTypeError(f"bad size {text!r} (e.g. 1KB, 100KB, 1MB)")
    mult = {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3}[m.group(2).upper()]
    return int(m.group(1)) * mult


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_listening(port: int, proc: subprocess.Popen, what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise BenchError(f"{what} exited with status {proc.returncode} before listening")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise BenchError(f"{what} did not listen on 127.0.0.1:{port} within {timeout}s")


def proc_cpu_seconds(pid: int) -> float:
    """utime+stime of the whole process (all threads), in seconds."""
    with open(f"/proc/{pid}/stat", "rb") as f:
        data = f.read().decode()
    # comm may hold spaces and parentheses: split after the last ')'.
    fields = data[data.rindex(")") + 2 :].split()
    # fields[0] is field 3 (state); utime is field 14, stime field 15.
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def proc_status_kb(pid: int, key: str) -> int | None:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def sink_count(out: Path) -> int:
    """The last `mesg=N` smtp-sink -c printed."""
    try:
        found = re.findall(rb"mesg=(\d+)", out.read_bytes())
    except OSError:
        return 0
    return int(found[-1]) if found else 0


def wait_sink_total(outs: list[Path], expected: int, timeout: float = 5.0) -> list[int]:
    """Polls the sinks' counters until they add up to `expected` (or more:
    a duplicate) or the time is up (a loss)."""
    deadline = time.monotonic() + timeout
    while True:
        counts = [sink_count(o) for o in outs]
        if sum(counts) >= expected or time.monotonic() > deadline:
            return counts
        time.sleep(0.05)


def pgroup_cpu_seconds(pgid: int) -> float:
    """CPU seconds (utime+stime) of every live process in process group
    `pgid`, plus what the group leader's reaped children used (its cutime +
    cstime).  The difference of two calls is the CPU the whole group spent
    in between, processes that came and went included, as long as the
    leader reaps its children (Postfix's master does).  For a process tree
    such as a private Postfix, whose daemons live for a while and exit."""
    ticks = 0
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as f:
                data = f.read().decode()
        except OSError:
            continue  # gone in between
        fields = data[data.rindex(")") + 2 :].split()
        # fields[0] is field 3 (state): pgrp is field 5, utime 14, stime 15,
        # cutime 16, cstime 17.
        if int(fields[2]) != pgid:
            continue
        ticks += int(fields[11]) + int(fields[12])
        if int(name) == pgid:
            ticks += int(fields[13]) + int(fields[14])
    return ticks / CLK_TCK


def system_cpu() -> tuple[float, float]:
    """(busy, total) jiffies of all CPUs from /proc/stat."""
    with open("/proc/stat") as f:
        parts = f.readline().split()
    vals = [int(x) for x in parts[1:]]
    # user nice system idle iowait irq softirq steal guest guest_nice
    idle = vals[3] + (vals[4] if len(vals) > 4 else 0)
    total = sum(vals[:8])
    return float(total - idle), float(total)


def fmt(v, spec: str, none: str = "-") -> str:
    return none if v is None else format(v, spec)


def markdown_table(head: list[str], rows: list[list[str]], left: int = 1) -> str:
    """A GitHub-style Markdown table, columns padded so that it also reads
    as plain text; the first `left` columns are left-aligned, the others
    right-aligned."""
    widths = [max(len(str(r[i])) for r in [head] + rows) for i in range(len(head))]
    widths = [max(w, 3) for w in widths]

    def line(cells):
        out = [str(c).ljust(widths[i]) if i < left else str(c).rjust(widths[i])
               for i, c in enumerate(cells)]
        return "| " + " | ".join(out) + " |"

    rule = "|" + "|".join((":" if i < left else "-") + "-" * (w) +
                          (":" if i >= left else "-") for i, w in enumerate(widths)) + "|"
    return "\n".join([line(head), rule] + [line(r) for r in rows])


class Runner:
    """Starts and stops processes; remembers every command it ran."""

    def __init__(self, workdir: Path, verbose: bool) -> None:
        self.workdir = workdir
        self.verbose = verbose
        self.commands: list[str] = []
        self.procs: list[subprocess.Popen] = []

    def note(self, argv: list[str], redirect: str = "") -> str:
        cmd = shlex.join(argv) + redirect
        if cmd not in self.commands:
            self.commands.append(cmd)
        if self.verbose:
            print(f"  $ {cmd}", file=sys.stderr)
        return cmd

    def start(self, argv: list[str], name: str) -> tuple[subprocess.Popen, Path, Path]:
        out = self.workdir / f"{name}.out"
        err = self.workdir / f"{name}.err"
        self.note(argv, f" >{out.name} 2>{err.name} &")
        p = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=open(out, "wb"),
            stderr=open(err, "wb"),
            cwd=self.workdir,
        )
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


def make_workdir(args, prefix: str) -> tuple[Path, bool]:
    """The run's work directory and whether to keep it: --workdir DIR is
    kept, a temporary one only with --keep (or when the run fails)."""
    if args.workdir:
        workdir = Path(args.workdir).resolve()
        workdir.mkdir(parents=True, exist_ok=True)
        return workdir, True
    return Path(tempfile.mkdtemp(prefix=prefix)), args.keep


def finish(args, doc: dict, workdir: Path, keep: bool, failed: bool) -> int:
    """Writes the JSON result (--out), keeps or removes the work directory,
    and gives the exit status: 1 when the run failed, else 0."""
    if args.out:
        Path(args.out).write_text(json.dumps(doc, indent=2) + "\n")
        print(f"\nJSON result written to {args.out}")
    if keep or failed:
        print(f"work directory kept: {workdir}")
    else:
        shutil.rmtree(workdir, ignore_errors=True)
    return 1 if failed else 0


def print_commands_and_configs(runner: "Runner", results: list, between: str) -> None:
    """The commands a run ran, then each setup's smtplb configuration once
    (`between`: what differs between the runs of one setup)."""
    print()
    print("commands (ports differ per run; configs are in the work directory):")
    for c in runner.commands:
        print(f"  {c}")
    shown = set()
    for r in results:
        if r.get("config") and r["setup"] not in shown:
            shown.add(r["setup"])
            print(f"\n{r['setup']} configuration ({Path(r['config_file']).name}; only the ports "
                  f"differ between {between}):")
            print("    " + r["config"].rstrip().replace("\n", "\n    "))


def run_smtp_source(runner: "Runner", argv: list, messages: int, name: str,
                    timeout: float) -> dict:
    """Runs smtp-source (argv, with -c) to completion; returns its wall time
    and raises BenchError unless it exited 0, quietly, having counted every
    message."""
    runner.note(argv)
    t0 = time.monotonic()
    try:
        cp = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True,
                            timeout=timeout, cwd=runner.workdir)
    except subprocess.TimeoutExpired as e:
        raise BenchError(f"{name}: smtp-source did not finish within {timeout:g}s "
                         f"(limit: --run-timeout); output so far: "
                         f"{(e.stderr or b'').decode(errors='replace')[-500:]!r}") from None
    wall = time.monotonic() - t0
    out = cp.stdout.decode(errors="replace")
    err = cp.stderr.decode(errors="replace").strip()
    # With -c smtp-source prints a counter "1\r2\r...N\r\n" and nothing else.
    counts = [int(x) for x in re.findall(r"\d+", out)]
    counted = counts[-1] if counts else 0
    problems = []
    if cp.returncode != 0:
        problems.append(f"exit status {cp.returncode}")
    if err:
        problems.append(f"stderr: {err[:400]!r}")
    if counted != messages:
        problems.append(f"counted {counted} of {messages} messages")
    if problems:
        raise BenchError(f"{name}: smtp-source failed: " + "; ".join(problems))
    return {"wall_s": wall, "counted": counted}


def scan_smtplb_log(log: Path) -> dict:
    """smtplb's transaction lines by result, and the first warnings: a
    benchmark row is sound only when every message was `delivered` and
    nothing was logged at warning level or above."""
    delivered = 0
    other: dict[str, int] = {}
    bad: list[str] = []
    with open(log, errors="replace") as f:
        for line in f:
            if "event=transaction" in line:
                m = re.search(r"\bresult=(\S+)", line)
                res = m.group(1) if m else "?"
                if res == "delivered":
                    delivered += 1
                else:
                    other[res] = other.get(res, 0) + 1
            if re.search(r"\s(warn|warning|error|critical)\s", line) and len(bad) < 5:
                bad.append(line.rstrip()[:300])
    return {"delivered": delivered, "other_results": other, "warnings": bad}


def run_smtp_load(runner: "Runner", argv: list, name: str, timeout: float) -> dict:
    """Runs bench/smtp_load (argv) to completion and returns its JSON result
    plus "exit_status", "stderr" and "outer_wall_s" (the wall time seen from
    here).  Raises BenchError when it did not finish within `timeout`, exited
    with status 2 (bad usage or setup: a CA file it could not read, ...) or
    printed no JSON object.  Whether the run succeeded (messages_failed,
    aborted, errors) is the caller's to judge: exit status 1 only says that
    some message failed."""
    runner.note(argv)
    t0 = time.monotonic()
    try:
        cp = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True,
                            timeout=timeout, cwd=runner.workdir)
    except subprocess.TimeoutExpired as e:
        raise BenchError(f"{name}: smtp_load did not finish within {timeout:g}s; stderr so far: "
                         f"{(e.stderr or b'').decode(errors='replace')[-500:]!r}") from None
    wall = time.monotonic() - t0
    err = cp.stderr.decode(errors="replace").strip()
    if cp.returncode not in (0, 1):
        raise BenchError(f"{name}: smtp_load exited with status {cp.returncode}: {err[:500]!r}")
    try:
        doc = json.loads(cp.stdout.decode(errors="replace"))
    except ValueError:
        raise BenchError(f"{name}: smtp_load printed no JSON (status {cp.returncode}, "
                         f"stderr {err[:300]!r}, stdout {cp.stdout[:300]!r})") from None
    doc["exit_status"] = cp.returncode
    doc["stderr"] = err
    doc["outer_wall_s"] = wall
    return doc


def haproxy_tcp_config(listen_port: int, backend_ports: list[int], maxconn: int, *,
                       written_by: str, backend: str = "sinks", server: str = "sink") -> str:
    """HAProxy 2.6 in TCP mode, round robin over `backend_ports` on loopback:
    the baseline every benchmark here compares smtplb with."""
    servers = "\n".join(f"    server {server}{i} 127.0.0.1:{p}"
                        for i, p in enumerate(backend_ports, 1))
    return f"""\
# written by {written_by}
global
    maxconn {maxconn}

defaults
    mode tcp
    timeout connect 5s
    timeout client 120s
    timeout server 120s

frontend smtp_in
    bind 127.0.0.1:{listen_port}
    default_backend {backend}

backend {backend}
    balance roundrobin
{servers}
"""


def smtplb_config(listen_port: int, pool: str, *, written_by: str, domain: str = "example.com",
                  listener_extra: str = "", extra: str = "", max_connections: int = 4000) -> str:
    """An smtplb configuration for the benchmarks: one inbound listener on
    loopback, one round-robin pool (`pool`: its backends or `mx:` lines,
    indented under the pool), the senders trusted (an outbound relay for the
    organisation's own bulk senders).  `listener_extra` goes under the
    listener, `extra` at the top level; both indented as they must be."""
    return f"""\
# written by {written_by}
hostname: lb.bench.example.com
listeners:
  - name: mx
    listen: 127.0.0.1:{listen_port}
    role: inbound
{listener_extra}local_domains: [{domain}]
trusted_networks: [127.0.0.0/8]
pools:
  - name: main
    algorithm: round_robin
{pool}
routes:
  - pool: main
limits:
  max_connections: {max_connections}
  max_connections_per_ip: {max_connections}
{extra}"""


def backend_lines(ports: list[int], extra: str = "") -> str:
    """A pool's `backends:` on loopback; `extra`: lines under each backend."""
    out = ["    backends:"]
    for p in ports:
        out.append(f"      - address: 127.0.0.1:{p}")
        if extra:
            out.append(extra)
    return "\n".join(out)


def smtplb_round_robin_config(listen_port: int, backend_ports: list[int], *, written_by: str,
                              max_connections: int = 4000) -> str:
    """smtplb round robin over `backend_ports`: the setup every benchmark
    compares with HAProxy's `haproxy_tcp_config`."""
    return smtplb_config(listen_port, backend_lines(backend_ports), written_by=written_by,
                         max_connections=max_connections)
