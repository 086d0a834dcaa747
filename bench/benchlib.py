"""benchlib.py: what bench/run_bench.py and bench/run_skewed.py both need:
free loopback ports, waiting for a listener, CPU and memory of a process,
size arguments, number formatting.  Python 3 standard library only."""

import argparse
import sys
import shlex
import signal
import os
import re
import socket
import subprocess
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
