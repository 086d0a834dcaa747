#!/usr/bin/env python3
"""bench.py: smtplb against direct delivery and against its peers (HAProxy in
TCP mode, nginx's mail proxy), every workload, repetitions interleaved.

Workloads and systems are data (WORKLOADS, and --systems / --smtplb), run
by one skeleton (run_one): fresh backends and a fresh middle box on fresh
ports, an optional warm-up, the load client(s) between two samples of the
CPU of the middle box, the backends, the clients and the machine, the peak
RSS of the middle box, then what the backends stored against what the
clients saw accepted (lost, duplicated, unexpected) and smtplb's own log.
Repetition r runs every workload with its systems in an order rotated by r;
each figure is the median over the repetitions, with the min-max range.

  bench/run.sh                                     # the documented full run
  bench/bench.py --list                            # the workloads and their sets
  bench/bench.py --workloads tls,skewed,mx --reps 3
  bench/bench.py --workloads "1KB xN,100KB xN" --systems haproxy,smtplb \\
      --smtplb before=/tmp/old/smtplb --smtplb after=build-release/smtplb
  bench/bench.py --quick                           # a smoke run: a few seconds a row
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import datetime as _dt
import json
import os
import re
import shutil
import signal
import socket
import struct
import sys
import tempfile
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from benchlib import (CLK_TCK, HELO, HOST, RECIPIENT, SENDER, BenchError, Runner, backend_lines,
                      children_cpu, free_port, haproxy_config, median_range, memory_kb,
                      nginx_config, percentiles, pgroup_cpu_seconds, proc_cpu_seconds,
                      proc_status_kb, raise_nofile, ratio, read_ids, run_smtp_load,
                      run_smtp_source, scan_smtplb_log, sink_count, smtplb_config, system_cpu,
                      wait_listening)

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO / "tests" / "integration"))
KB, MB = 1024, 1024 * 1024
ALGORITHMS = ("round_robin", "least_connections", "least_load", "random_two")
MX_DOMAIN = "bench.test"
MX_HOSTS = (("mx1.bench.test", "127.0.0.2"), ("mx2.bench.test", "127.0.0.3"))
TLS_NAME = "mx.test.example"  # in the test certificate (with localhost and 127.0.0.1)
SINK_MAX_SESSIONS = 2000  # smtp-sink -m: it serves 256 sessions at once unless told


@dataclasses.dataclass(frozen=True)
class Workload:
    name: str
    set: str                      # what `--workloads SET` selects: record, tls, skewed, mx, extra
    size: int = KB                # message size
    per_conn: int = 1             # messages per connection; 0: many (smtp-source -d)
    conns: int = 20               # client connections (sessions)
    messages: int = 0             # per measured run (times --scale); 0: run for `seconds`
    seconds: float = 0.0          # per measured run (times --scale, at least 3 s)
    warmup: float = 0             # unmeasured messages (or seconds, with `seconds`) first
    client: str = "smtp-source"   # or "smtp_load" (TLS, message ids, per-message latency)
    backend: str = "sink"         # sink | dump (smtp-sink -d) | fault (fast+slow) | postfix | mx
    direct_sinks: int = 1         # direct: the sinks (smtp-source processes) the load is split over
    latency_messages: int = 0     # smtp-source workloads: the smtp_load probe after the run
    tls: bool = False             # STARTTLS (smtplb terminates it, HAProxy passes it through)
    backend_tls: bool = False     # smtplb does STARTTLS to the backends too
    resume: bool = False          # TLS session resumption (default: a full handshake each time)
    pipelining: bool = True       # smtp_load pipelines MAIL, RCPT, DATA when offered
    kill_every: float = 0.0       # failover: SIGKILL backend A this often, restart it 0.5 s later
    skew: tuple = ()              # fault backends: (the slow one's delay before 250, its capacity)
    ttl: int = 300                # mx: of every DNS record (longer than a run: a warm cache)
    idle: bool = False            # hold `conns` connections open and weigh them instead
    reps: int = 0                 # repetitions (0: --reps)
    systems: tuple = ()           # the system kinds it runs on (empty: all)
    variants: tuple = ()          # ((kind, (variant, ...)), ...): one row per variant


W = Workload
WORKLOADS = (
    # Issue 7's benchmark of record (bench/run.sh, RESULTS.md).
    W("1KB x1", "record", KB, 1, 20, messages=40000, latency_messages=2000),
    W("1KB xN", "record", KB, 0, 20, messages=120000, latency_messages=4000),
    W("100KB x1", "record", 100 * KB, 1, 20, messages=12000, direct_sinks=2, latency_messages=1000),
    W("100KB xN", "record", 100 * KB, 0, 20, messages=15000, direct_sinks=2, latency_messages=1000),
    W("10MB", "record", 10 * MB, 1, 4, messages=150, direct_sinks=2, latency_messages=20),
    W("500 conns", "record", KB, 1, 500, messages=40000, latency_messages=2000),
    W("failover", "record", KB, 1, 20, seconds=30, client="smtp_load", backend="dump",
      kill_every=4.0, reps=1, systems=("haproxy", "nginx", "smtplb")),
    W("idle", "record", conns=5000, idle=True, reps=1, systems=("haproxy", "nginx", "smtplb"),
      variants=(("smtplb", ("banner", "mail")),)),
    # TLS: STARTTLS clients; HAProxy passes TLS through to two private Postfix.
    W("TLS 1x1KB", "tls", KB, 1, 50, seconds=4, warmup=1, client="smtp_load", backend="postfix",
      tls=True, systems=("direct", "haproxy", "smtplb")),
    W("TLS 20x1KB", "tls", KB, 20, 50, seconds=4, warmup=1, client="smtp_load", backend="postfix",
      tls=True, systems=("direct", "haproxy", "smtplb")),
    W("TLS 1x1KB sinks", "tls", KB, 1, 50, seconds=4, warmup=1, client="smtp_load", tls=True,
      systems=("smtplb",)),
    W("TLS 20x1KB sinks", "tls", KB, 20, 50, seconds=4, warmup=1, client="smtp_load", tls=True,
      systems=("smtplb",)),
    W("TLS 1x1KB to backends", "extra", KB, 1, 50, seconds=4, warmup=1, client="smtp_load",
      backend="postfix", tls=True, backend_tls=True, systems=("smtplb",)),
    # A fast backend and a slow one (50 ms before its 250, 2 at a time: 40 msg/s).
    W("skewed", "skewed", KB, 1, 20, messages=2000, warmup=100, client="smtp_load",
      backend="fault", skew=(0.05, 2), pipelining=False,
      variants=(("smtplb", ALGORITHMS), ("direct", ("fast", "slow")))),
    # MX pools: the same two sinks listed, as `mx: bench.test` and as `mx: recipient`.
    W("MX", "mx", KB, 1, 20, messages=10000, warmup=200, backend="mx", latency_messages=300,
      systems=("smtplb",), variants=(("smtplb", ("listed", "mx-domain", "mx-recipient")),)),
)
SETS = ("all",) + tuple(dict.fromkeys(w.set for w in WORKLOADS))


@dataclasses.dataclass(frozen=True)
class System:
    name: str  # its label in the tables
    kind: str  # direct | haproxy | nginx | smtplb
    path: str = ""


# ---------------------------------------------------------------- backends


class Backends:
    """The backends of one run, fresh (private Postfix: started once per
    bench.py run, in Context.postfix)."""

    def __init__(self, ctx: "Context", w: Workload, tag: str, n: int) -> None:
        self.ctx, self.w, self.tag, self.kind = ctx, w, tag, w.backend
        self.procs: list = []  # [proc, out, host, port, file name, name]
        self.dumps: list[Path] = []
        self.dns = None
        if self.kind == "postfix":
            self.postfix = ctx.postfix()
            self.addrs = [inst.address for inst in self.postfix]
            return
        if self.kind == "fault":
            for name, (delay, cap) in (("fast", (0, 0)), ("slow", w.skew)):
                self._fault(name, delay, cap)
        else:
            hosts = [h for _n, h in MX_HOSTS] if self.kind == "mx" else [HOST] * n
            port = free_port(tuple(hosts)) if self.kind == "mx" else None
            for i, h in enumerate(hosts):
                self.procs.append([None, None, h, port or free_port(), f"{tag}-sink{'AB'[i]}",
                                   "AB"[i]])
                self.dumps.append(ctx.workdir / f"{tag}-dump{'AB'[i]}")
                self.start_sink(i)
            if self.kind == "mx":
                self.dns = Dnsmasq(ctx, w.ttl)
        self.addrs = [f"{h}:{p}" for _p, _o, h, p, *_n in self.procs]

    def start_sink(self, i: int, suffix: str = "") -> None:
        entry = self.procs[i]
        argv = [self.ctx.args.smtp_sink] + (["-u", "nobody"] if os.geteuid() == 0 else [])
        if self.kind == "dump":
            # smtp-sink drops to `nobody`: it must reach and write the directory.
            os.chmod(self.ctx.workdir, 0o711)
            self.dumps[i].mkdir(exist_ok=True)
            os.chmod(self.dumps[i], 0o777)
            argv += ["-d", f"{self.dumps[i]}/%H%M%S."]
        sessions = max(SINK_MAX_SESSIONS, self.w.conns * 2 + 500)
        argv += ["-c", "-m", sessions, f"{entry[2]}:{entry[3]}", sessions]
        entry[0], entry[1], _err = self.ctx.runner.start(argv, entry[4] + suffix)
        wait_listening(entry[3], entry[0], "smtp-sink", host=entry[2])

    def _fault(self, name: str, delay: float, capacity: int) -> None:
        store = self.ctx.workdir / f"{self.tag}-store-{name}"
        argv = [sys.executable, REPO / "tests/integration/fault_backend.py", "--port", "0",
                "--store", store, "--name", name]
        if delay:
            # `capacity` messages in their delay at a time, FIFO: capacity / delay msg/s.
            argv += ["--delay-eod", f"{delay:g}", "--eod-capacity", int(capacity)]
        p, out, err = self.ctx.runner.start(argv, f"{self.tag}-{name}")
        deadline = time.monotonic() + 10
        while not (store / "ready.json").is_file():
            if p.poll() is not None or time.monotonic() > deadline:
                raise BenchError(f"fault backend {name} did not start: {err.read_text()[-300:]}")
            time.sleep(0.02)
        self.procs.append([p, out, HOST, json.loads((store / "ready.json").read_text())["port"],
                           name, name])
        self.dumps.append(store / "msgs")

    def kill_and_restart(self, i: int, n: int, stop: threading.Event) -> None:
        """Failover: SIGKILL backend i, and start it again on its port."""
        self.procs[i][0].send_signal(signal.SIGKILL)
        self.procs[i][0].wait()
        if not stop.wait(0.5):
            self.start_sink(i, f"-{n}")

    def cpu(self) -> float:
        if self.kind == "postfix":
            return sum(pgroup_cpu_seconds(inst.proc.pid) for inst in self.postfix)
        return sum(proc_cpu_seconds(p.pid) for p, *_ in self.procs if p.poll() is None)

    def counts(self) -> list[int]:
        return [sink_count(out) for _p, out, *_ in self.procs]

    def arrived(self, prefix: str) -> dict[str, collections.Counter]:
        """The X-Test-Ids / Message-IDs starting with `prefix` that each backend stored."""
        out = {}
        if self.kind == "postfix":
            for inst in self.postfix:
                text = Path(inst.maillog).read_text(errors="replace") if os.path.exists(
                    inst.maillog) else ""
                out[inst.name] = collections.Counter(
                    i for i in re.findall(r"message-id=<([^@>\s]+)@smtp-load\.invalid>", text)
                    if i.startswith(prefix))
            return out
        for (*_x, name), d in zip(self.procs, self.dumps):
            ids = collections.Counter()
            for e in os.scandir(d) if d.is_dir() else ():
                if self.kind == "fault" and e.name.endswith(".json"):
                    ids[json.loads(Path(e.path).read_text()).get("test_id")] += 1
                elif self.kind == "dump":
                    ids.update(m.decode() for m in re.findall(rb"^X-Test-Id: (\S+)",
                                                              Path(e.path).read_bytes(), re.M))
            out[name] = collections.Counter({k: v for k, v in ids.items()
                                             if k and k.startswith(prefix)})
        return out

    def dead(self) -> list[str]:
        if self.kind == "postfix":
            return [inst.name for inst in self.postfix if not inst.alive()]
        return [e[-1] for e in self.procs if e[0].poll() is not None]

    def stop(self) -> None:
        for p, *_ in self.procs:
            self.ctx.runner.stop(p)
        if self.dns:
            self.ctx.runner.stop(self.dns.proc)


class Dnsmasq:
    """dnsmasq authoritative for "test." (bench.test: two MX of equal
    preference), logging every query.  mark() sends a query of its own and
    waits for it in the log: the queries between two marks are exactly those
    of one phase (dnsmasq answers and logs in arrival order)."""

    def __init__(self, ctx: "Context", ttl: int) -> None:
        self.log, self.seq = ctx.workdir / f"dnsmasq-{time.monotonic_ns()}.log", 0
        self.port = free_port(udp=True)
        argv = [ctx.args.dnsmasq, "--no-resolv", "--no-hosts", f"--port={self.port}",
                f"--listen-address={HOST}", "--bind-interfaces", "--keep-in-foreground",
                "--conf-file=/dev/null", "--pid-file=", "--log-queries",
                f"--log-facility={self.log}", f"--auth-server=ns.test,{HOST}", "--auth-zone=test",
                f"--auth-ttl={ttl}"]
        argv += [f"--mx-host={MX_DOMAIN},{h},10" for h, _a in MX_HOSTS]
        argv += [f"--host-record={h},{a}" for h, a in MX_HOSTS]
        self.proc, _o, _e = ctx.runner.start(argv, "dnsmasq")
        self.mark()

    def mark(self, timeout: float = 5.0) -> int:
        """Waits until every query so far is logged; returns their number."""
        self.seq += 1
        name = f"mark-{self.seq}.{MX_DOMAIN}"
        q = struct.pack("!HHHHHH", self.seq, 0x0100, 1, 0, 0, 0) + b"".join(
            bytes([len(x)]) + x.encode() for x in name.split(".")) + b"\0\0\1\0\1"
        deadline = time.monotonic() + timeout
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            while time.monotonic() < deadline and self.proc.poll() is None:
                s.sendto(q, (HOST, self.port))
                for _ in range(50):
                    names = re.findall(r"\b(?:auth|query)\[\w+\] (\S+) from ",
                                       self.log.read_text(errors="replace")
                                       if self.log.exists() else "")
                    if name in names:
                        return len([n for n in names[:names.index(name)]
                                    if not n.startswith("mark-")])
                    time.sleep(0.01)
        raise BenchError(f"dnsmasq did not log the marker query {name}")


# ---------------------------------------------------------------- middle boxes


class Middle:
    """smtplb, HAProxy or nginx (with its auth_http responder) in front of
    the backends; each process in its own process group, whose CPU and peak
    RSS are the middle box's."""

    def __init__(self, ctx: "Context", system: System, variant: str, w: Workload,
                 be: Backends, tag: str) -> None:
        self.ctx, self.system, self.log, self.admin = ctx, system, None, None
        self.procs, self.helpers = [], []  # helpers: not charged to the middle box
        self.port = free_port()
        maxconn = max(8192, w.conns + 700)
        cfg = ctx.workdir / f"{tag}.conf"
        if system.kind == "smtplb":
            cfg.write_text(self.smtplb_config(w, variant, be))
            level = "warn" if w.idle else "info"
            p, _o, self.log = self.start([system.path, "run", "-c", cfg.name,
                                          "--log-level", level], tag)
        elif system.kind == "haproxy":
            cfg.write_text(haproxy_config(self.port, be.addrs, maxconn))
            self.start([ctx.args.haproxy, "-f", cfg.name, "-db"], tag)
        else:
            auth = free_port()
            self.start([sys.executable, __file__, "--nginx-auth", auth] + be.addrs, f"{tag}-auth",
                       helper=True)
            wait_listening(auth, self.helpers[0], "nginx auth_http responder")
            cfg.write_text(nginx_config(ctx.workdir, self.port, auth, maxconn))
            self.start([ctx.args.nginx, "-c", cfg, "-p", ctx.workdir, "-e", "stderr"], tag)
        self.config = cfg.read_text()
        wait_listening(self.port, self.procs[-1], system.name)
        if self.admin:  # MX pools: wait until the pool has its backends
            self.backends_after_s = self.wait_backends(0 if variant == "mx-recipient" else 2)

    def start(self, argv: list, name: str, helper: bool = False):
        out = self.ctx.runner.start(argv, name, group=True)
        (self.helpers if helper else self.procs).append(out[0])
        return out

    def smtplb_config(self, w: Workload, variant: str, be: Backends) -> str:
        certs, extra, listener, domain = self.ctx.certs() if w.tls else None, "", "", "example.com"
        if w.tls:
            listener = f"    tls: {{certificate: {certs.server_cert}, key: {certs.server_key}}}\n"
        each = (f"        tls: {{mode: starttls, ca: {self.ctx.certs().ca_cert}, sni: {TLS_NAME}}}"
                if w.backend_tls else "")
        pool = backend_lines(be.addrs, each)
        if w.backend == "mx":
            domain, self.admin = MX_DOMAIN, free_port()
            port = be.addrs[0].rsplit(":", 1)[1]
            if variant != "listed":
                mx = MX_DOMAIN if variant == "mx-domain" else "recipient"
                pool = f"    mx: {mx}\n    port: {port}"
            extra = (f'dns: {{servers: ["{HOST}:{be.dns.port}"], timeout: 500ms, attempts: 2}}\n'
                     f"admin:\n  listen: {HOST}:{self.admin}\n")
        if w.idle:
            extra += "workers: 1\n"
        algorithm = variant if variant in ALGORITHMS else "round_robin"
        return smtplb_config(self.port, pool, algorithm=algorithm,
                             domain=domain, listener_extra=listener, extra=extra,
                             max_connections=max(4000, w.conns * 2 + 1000))

    def wait_backends(self, want: int, timeout: float = 10.0) -> float:
        t0 = time.monotonic()
        while time.monotonic() - t0 < timeout:
            try:
                url = f"http://{HOST}:{self.admin}/api/pools"
                with urllib.request.urlopen(url, timeout=2) as r:
                    pools = {p["name"]: p for p in json.loads(r.read()).get("pools", [])}
                if len(pools.get("main", {}).get("backends", [])) >= want:
                    return time.monotonic() - t0
            except (OSError, ValueError):
                pass
            time.sleep(0.02)
        raise BenchError(f"pool main did not get {want} backends within {timeout:g}s")

    def cpu(self, helpers: bool = False) -> float:
        return sum(pgroup_cpu_seconds(p.pid) for p in (self.helpers if helpers else self.procs))

    def pids(self) -> list[int]:
        """Every process of the middle box (nginx's workers included)."""
        groups = {p.pid for p in self.procs}
        return [int(d) for d in os.listdir("/proc") if d.isdigit() and _pgid(d) in groups]

    def peak_rss_kb(self) -> int:
        return sum(proc_status_kb(pid, "VmHWM") or 0 for pid in self.pids())

    def memory_kb(self) -> tuple[int, int]:
        """(RSS, PSS) KiB, summed over its processes."""
        return tuple(map(sum, zip(*(memory_kb(pid) for pid in self.pids()))))

    def stop(self) -> None:
        for p in self.procs + self.helpers:
            self.ctx.runner.stop(p)


def _pgid(pid: str) -> int | None:
    try:
        return os.getpgid(int(pid))
    except OSError:
        return None


def nginx_auth(port: int, backends: list[str]) -> None:
    """`bench.py --nginx-auth PORT HOST:PORT...`: nginx's auth_http server
    (asyncio: one HTTP/1.0 request a connection), every request answered OK
    with the next backend, round robin."""
    import asyncio
    import itertools
    rr = itertools.cycle(b.rsplit(":", 1) for b in backends)

    async def answer(reader, writer):
        try:
            await reader.readuntil(b"\r\n\r\n")
            host, bport = next(rr)
            writer.write(f"HTTP/1.0 200 OK\r\nAuth-Status: OK\r\nAuth-Server: {host}\r\n"
                         f"Auth-Port: {bport}\r\n\r\n".encode())
            await writer.drain()
        finally:
            writer.close()

    async def serve():
        server = await asyncio.start_server(answer, HOST, port, backlog=4096)
        await server.serve_forever()

    asyncio.run(serve())


# ---------------------------------------------------------------- one run


def scaled(ctx, w: Workload) -> dict:
    s = ctx.args.scale
    return {"messages": max(2, int(w.messages * s) // 2 * 2) if w.messages else 0,
            "seconds": max(2.0, w.seconds * s) if w.seconds else 0.0,
            "latency_messages": max(20, int(w.latency_messages * s) // 2 * 2)
            if w.latency_messages and ctx.args.latency else 0,
            "conns": max(100, int(w.conns * s)) if w.idle else w.conns}


def smtp_load_argv(ctx, w: Workload, ports: list[str], tag: str, *, messages=0, seconds=0.0,
                   conns=None, per_conn=None, ids: Path | None = None) -> list:
    argv = [ctx.args.smtp_load] + [a for p in ports for a in ("--server", p)]
    argv += ["-c", conns or w.conns, "-m", w.per_conn if per_conn is None else per_conn,
             "-s", w.size, "--id-prefix", tag, "--timeout", 10 if w.tls else 30,
             "--threads", 2 if w.tls else 1, "--helo", HELO, "--from", SENDER,
             "--to", f"bench-rcpt@{MX_DOMAIN}" if w.backend == "mx" else RECIPIENT]
    argv += ["-n", messages] if messages else ["-d", f"{seconds:g}"]
    if w.tls:
        argv += ["--starttls", "--ca", ctx.certs().ca_cert, "--server-name", TLS_NAME]
        argv += ["--resume"] if w.resume else []
    argv += [] if w.pipelining else ["--no-pipelining"]
    if w.kill_every:
        argv += ["--error-pause", "0.05"]
    return argv + (["--ids-out", ids] if ids else [])


def load(ctx, w: Workload, ports: list[str], tag: str, messages: int, seconds: float) -> dict:
    """The load client(s) against `ports` to completion: accepted messages,
    wall time, latencies and the client's own figures."""
    if w.client == "smtp-source":
        n = len(ports)
        argvs = [[ctx.args.smtp_source, "-c", "-s", max(1, w.conns // n), "-m", messages // n,
                  "-l", w.size, "-M", HELO, "-f", SENDER,
                  "-t", f"bench-rcpt@{MX_DOMAIN}" if w.backend == "mx" else RECIPIENT]
                 + (["-d"] if not w.per_conn else []) + [p] for p in ports]
        t0 = time.monotonic()
        with ThreadPoolExecutor(n) as ex:
            for f in [ex.submit(run_smtp_source, ctx.runner, a, messages // n, tag,
                                ctx.args.run_timeout) for a in argvs]:
                f.result()
        return {"accepted": messages, "wall_s": time.monotonic() - t0, "ids": {}}
    ids = ctx.workdir / f"{tag}.ids"
    doc = run_smtp_load(ctx.runner, smtp_load_argv(ctx, w, ports, tag, messages=messages,
                                                   seconds=seconds, ids=ids),
                        tag, seconds + ctx.args.run_timeout)
    if doc.get("aborted") or not doc.get("messages_ok") or (
            doc.get("messages_failed") and not w.kill_every):
        raise BenchError(f"{tag}: smtp_load: {doc.get('messages_ok')} accepted, "
                         f"{doc.get('messages_failed')} failed, aborted {doc.get('aborted')}: "
                         f"{doc.get('errors')} {doc.get('first_errors', [])[:3]}")
    return {"accepted": doc["messages_ok"], "wall_s": doc["wall_s"], "ids": read_ids(ids),
            "doc": doc}


def latency_of(w: Workload, doc: dict) -> dict:
    """p50/p99 ms: one message per connection timed from the connect (its
    whole cost), many per connection from MAIL, to the 250 after the dot."""
    lat = doc["connect_latency_ms" if w.per_conn == 1 else "latency_ms"]
    return {"p50_ms": lat["p50"], "p99_ms": lat["p99"],
            "client_cpu_pct": doc["cpu"]["pct_of_wall"]}


def run_one(ctx, w: Workload, system: System, variant: str, rep: int) -> dict:
    label = system.name + (f"/{variant}" if variant else "")
    tag = f"r{rep}-{re.sub(r'[^A-Za-z0-9]+', '', w.name)}-{label.replace('/', '-')}"
    sc = scaled(ctx, w)
    w = dataclasses.replace(w, conns=sc["conns"])
    res = {"workload": w.name, "system": label, "rep": rep, "kind": system.kind}
    print(f"  {w.name:22} {label:24}", end=" ", flush=True, file=sys.stderr)
    direct = system.kind == "direct"
    be = box = None
    stop = threading.Event()
    killer = None
    try:
        be = Backends(ctx, w, tag, w.direct_sinks if direct else 2)
        dns0 = be.dns.mark() if be.dns else 0
        if direct:
            ports = [be.addrs[["fast", "slow"].index(variant)]] if variant else be.addrs
        else:
            box = Middle(ctx, system, variant, w, be, tag)
            ports = [f"{HOST}:{box.port}"]
            res["config"] = box.config
        accepted, ids = 0, {}
        if w.warmup and not w.idle:
            warm = load(ctx, w, ports, f"{tag}-w", int(w.warmup) if sc["messages"] else 0,
                        w.warmup)
            accepted, ids = warm["accepted"], warm["ids"]
        dns1 = be.dns.mark() if be.dns else 0
        before = (box.cpu() if box else 0.0, be.cpu(), children_cpu(), system_cpu(),
                  box.cpu(helpers=True) if box else 0.0)
        if w.kill_every:
            period = min(w.kill_every, sc["seconds"] / 3)
            res["kill_period_s"] = period

            def kill_loop():
                n = 0
                while not stop.wait(period):
                    n += 1
                    be.kill_and_restart(0, n, stop)
                    res["kills"] = n
            res["kills"] = 0
            killer = threading.Thread(target=kill_loop)
            killer.start()
        if w.idle:
            run = idle(box, variant or "banner", sc["conns"])
        else:
            run = load(ctx, w, ports, tag, sc["messages"], sc["seconds"])
        stop.set()
        if killer:
            killer.join()
        after = (box.cpu() if box else 0.0, be.cpu(), children_cpu(), system_cpu(),
                  box.cpu(helpers=True) if box else 0.0)
        dns2 = be.dns.mark() if be.dns else 0
        res.update(run.pop("idle", {}))
        if w.idle:
            print(f"{res['rss_bytes_per_conn']:8.0f} B/conn", file=sys.stderr)
            return res
        n = run["accepted"]
        mid, bes, client, helper = (after[i] - before[i] for i in (0, 1, 2, 4))
        busy, total = (after[3][i] - before[3][i] for i in range(2))
        res.update({
            "messages": n, "wall_s": run["wall_s"], "msgs_per_s": n / run["wall_s"],
            "cpu_us_per_msg": mid / n * 1e6 if box else None,
            "peak_rss_kb": box.peak_rss_kb() if box else None,
            "backends_cpu_us_per_msg": bes / n * 1e6,
            "loadgen_cpu_us_per_msg": client / n * 1e6,
            "machine_busy_pct": 100.0 * busy / total if total else None,
            "other_pct": 100.0 * max(0.0, busy / CLK_TCK - mid - bes - client - helper)
            / (busy / CLK_TCK) if busy else None,
        })
        if box and box.helpers:  # nginx's auth_http responder (Python), beside nginx's own
            res["helper_cpu_us_per_msg"] = helper / n * 1e6
        if "doc" in run:
            doc = run["doc"]
            res.update(latency_of(w, doc), failed=doc["messages_failed"],
                       errors=doc.get("errors", {}), smtp_load=doc)
            if w.tls:
                res.update(handshakes_per_s=doc["handshakes_per_s"], tls=doc.get("tls"))
        accepted, ids = accepted + n, ids | run["ids"]
        if sc["latency_messages"]:
            probe = run_smtp_load(ctx.runner, smtp_load_argv(
                ctx, w, ports, f"{tag}-lat", messages=sc["latency_messages"], conns=4,
                per_conn=1 if w.per_conn == 1 else 0), f"{tag} latency", ctx.args.run_timeout)
            if probe["messages_failed"]:
                raise BenchError(f"{tag}: {probe['messages_failed']} failed in the latency probe")
            res.update(latency_of(w, probe))
            accepted += probe["messages_ok"]
        if be.dns:
            res["dns_queries"] = {"start_and_warmup": dns1 - dns0, "measured": dns2 - dns1,
                                  "probe": be.dns.mark() - dns2}
            res["backends_after_s"] = box.backends_after_s
        res.update(delivered(be, tag, accepted, ids), accepted=accepted,
                   seconds=sc["seconds"])
        if box:
            if box.procs[-1].poll() is not None:
                raise BenchError(f"{tag}: {label} exited with status {box.procs[-1].returncode}")
            box.stop()
        if box and box.log:
            chk = res["smtplb_log"] = scan_smtplb_log(box.log)
            res["flagged_possible_duplicates"] = chk["possible_duplicates"]
            # Under failover a replayed transaction may be logged twice.
            if chk["delivered"] < accepted or (chk["delivered"] > accepted and not w.kill_every):
                raise BenchError(f"{tag}: smtplb logged {chk['delivered']} delivered "
                                 f"transactions, the clients saw {accepted} accepted")
            if chk["warnings"] and not w.kill_every:
                raise BenchError(f"{tag}: smtplb logged warnings: {chk['warnings'][:3]}")
        if be.dead() and not w.kill_every:
            raise BenchError(f"{tag}: backend(s) died: {be.dead()}")
        print(f"{res['msgs_per_s']:8.0f} msg/s" + (f", p99 {res['p99_ms']:.2f} ms"
                                                  if res.get("p99_ms") is not None else "")
              + (f", lost {res['lost']}, dup {res['duplicated']}" if res["lost"] or
                 res["duplicated"] else ""), file=sys.stderr)
        return res
    finally:
        stop.set()
        if killer:
            killer.join()
        if box:
            box.stop()
        if be:
            be.stop()


def delivered(be: Backends, tag: str, accepted: int, ids: dict) -> dict:
    """What the backends stored against what the clients saw accepted: by
    the sinks' counters, or by message id (dump sinks, fault backends,
    Postfix's maillog), per backend."""
    if be.kind in ("sink", "mx"):  # smtp-sink -c counters
        deadline = time.monotonic() + 5
        while sum(counts := be.counts()) < accepted and time.monotonic() < deadline:
            time.sleep(0.05)
        return {"sink_counts": counts, "lost": max(0, accepted - sum(counts)),
                "duplicated": max(0, sum(counts) - accepted)}
    deadline = time.monotonic() + (15 if be.kind == "postfix" else 2)
    while True:  # Postfix logs each Message-ID a little after its 250
        by = be.arrived(tag)
        seen = sum(by.values(), collections.Counter())
        if all(seen[i] for i in ids) or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    out = {"lost": sum(1 for i in ids if not seen[i]),
           "duplicated": sum(1 for i in seen if seen[i] > 1),
           "unconfirmed": sum(1 for i in seen if i not in ids),
           "stored": {n: sum(c.values()) for n, c in by.items()}}
    total = sum(out["stored"].values()) or 1
    out["share_pct"] = {n: 100.0 * c / total for n, c in out["stored"].items()}
    if be.kind == "fault":  # the client's latency by the backend that stored the message
        out["p99_ms_by_backend"] = {
            n: percentiles([ids[i] for i in c if ids.get(i) is not None])["p99"]
            for n, c in by.items()}
    return out


def idle(box: Middle, state: str, n: int) -> dict:
    """What one idle client connection costs the middle box: 200 warm-up
    connections, then `n` more held open; the growth of its RSS and PSS.
    state: banner (220 read, nothing sent) or mail (EHLO and MAIL accepted)."""
    held: list = []

    def open_conns(k: int, tag: str) -> None:
        for i in range(k):
            s = socket.create_connection((HOST, box.port), timeout=10)
            held.append(s)
            f = s.makefile("rb")
            steps = [None] + ([b"EHLO idle.example.com\r\n",
                               f"MAIL FROM:<idle-{tag}-{i}@example.com>\r\n".encode()]
                              if state == "mail" else [])
            for cmd in steps:
                if cmd:
                    s.sendall(cmd)
                while (line := f.readline())[3:4] == b"-":
                    pass
                if not line[:1] in (b"2",):
                    raise BenchError(f"idle: {cmd!r} got {line[:200]!r}")

    def settle() -> tuple[int, int]:
        last = box.memory_kb()
        for _ in range(20):
            time.sleep(0.1)
            if (now := box.memory_kb()) == last:
                break
            last = now
        return last

    try:
        open_conns(200, "warm")
        b = settle()
        open_conns(n, "m")
        a = settle()
    finally:
        for s in held:
            s.close()
    return {"idle": {"state": state, "connections": n,
                     "rss_bytes_per_conn": (a[0] - b[0]) * 1024 / n,
                     "pss_bytes_per_conn": (a[1] - b[1]) * 1024 / n}}


# ---------------------------------------------------------------- the whole run


class Context:
    def __init__(self, args, workdir: Path) -> None:
        self.args, self.workdir = args, workdir
        self.runner = Runner(workdir, args.verbose)
        self._certs = self._postfix = None

    def certs(self):
        if self._certs is None:
            import tls_certs
            self._certs = tls_certs.make_certs(str(self.workdir / "tls"), dns_names=[TLS_NAME])
        return self._certs

    def postfix(self) -> list:
        """Two private Postfix with STARTTLS, mail discarded, queues on tmpfs
        (Postfix fsyncs every queue file; this is about TLS, not the disk)."""
        if self._postfix is None:
            import postfix_instance
            parent = "/dev/shm" if os.access("/dev/shm", os.W_OK) else None
            self.postfix_dir = tempfile.mkdtemp(prefix="smtplb-bench-pf-", dir=parent)
            self._postfix = []
            for name in ("pfA", "pfB"):
                inst = postfix_instance.PostfixInstance(
                    self.postfix_dir, name=name, certs=self.certs(), domains=("example.com",),
                    main_cf={"virtual_transport": "discard", "in_flow_delay": "0",
                             "default_process_limit": "80"})
                self.runner.note([postfix_instance.MASTER, "-c", inst.config_dir],
                                 f"  # private Postfix {name} on {inst.address}")
                inst.start()
                self._postfix.append(inst)
        return self._postfix

    def close(self) -> None:
        self.runner.stop_all()
        for inst in self._postfix or []:
            try:
                inst.stop()
            except Exception:  # noqa: BLE001
                inst.kill()
        if self._postfix is not None:
            shutil.rmtree(self.postfix_dir, ignore_errors=True)


def units(w: Workload, systems: list[System]) -> list[tuple[System, str]]:
    """The rows of a workload: its systems, each with its variants."""
    variants = dict(w.variants)
    return [(s, v) for s in systems if not w.systems or s.kind in w.systems
            for v in variants.get(s.kind, ("",))]


def summarize(runs: list[dict], workloads, systems: list[System]) -> list[dict]:
    rows = []
    base = [s.name for s in systems if s.kind == "smtplb"][0] if len(
        [s for s in systems if s.kind == "smtplb"]) > 1 else None
    for w in workloads:
        labels = list(dict.fromkeys(r["system"] for r in runs if r["workload"] == w.name))
        by = {}
        for label in labels:
            mine = [r for r in runs if r["workload"] == w.name and r["system"] == label]
            ok = [r for r in mine if "error" not in r]
            row = {"workload": w.name, "system": label, "errors": [r["error"] for r in mine
                                                                    if "error" in r]}
            if ok:
                row["reps"] = len(ok)
                for k in ("msgs_per_s", "cpu_us_per_msg", "peak_rss_kb", "p50_ms", "p99_ms",
                          "client_cpu_pct", "loadgen_cpu_us_per_msg", "backends_cpu_us_per_msg",
                          "machine_busy_pct", "other_pct", "handshakes_per_s",
                          "rss_bytes_per_conn", "helper_cpu_us_per_msg"):
                    row[k] = median_range([r.get(k) for r in ok])
                for k in ("lost", "duplicated", "unconfirmed", "failed",
                          "flagged_possible_duplicates"):
                    row[k] = sum(r.get(k) or 0 for r in ok)
                for k in ("share_pct", "dns_queries", "p99_ms_by_backend"):
                    if k in ok[0]:
                        row[k] = {n: (median_range([r[k].get(n) for r in ok]) or (None,))[0]
                                  for n in ok[0][k]}
            by[label] = row
        # direct: the first direct row (skewed: straight to the fast backend)
        direct = next((x for x in by if x.split("/")[0] == "direct"), "direct")
        for label, row in by.items():
            mid = lambda s, k: ((by.get(direct if s == "direct" else s) or {}).get(k)  # noqa: E731
                                or (None,))[0]
            row["vs_direct"] = ratio(mid(label, "msgs_per_s"), mid("direct", "msgs_per_s"))
            row["vs_haproxy"] = ratio(mid(label, "msgs_per_s"), mid("haproxy", "msgs_per_s"))
            row["cpu_vs_haproxy"] = ratio(mid(label, "cpu_us_per_msg"),
                                          mid("haproxy", "cpu_us_per_msg"))
            if base:
                b = base + label[len(label.split("/")[0]):]
                row["vs_base"] = ratio(mid(label, "msgs_per_s"), mid(b, "msgs_per_s"))
                row["cpu_vs_base"] = ratio(mid(label, "cpu_us_per_msg"),
                                           mid(b, "cpu_us_per_msg"))
            # A variant against the system's first (round_robin, listed).
            first = next(x for x in by if x.split("/")[0] == label.split("/")[0])
            if "/" in label and first != label:
                row["vs_variant"] = {"of": first.split("/", 1)[1], **{
                    k: ratio(mid(label, k), mid(first, k))
                    for k in ("msgs_per_s", "cpu_us_per_msg", "p99_ms")}}
            p99, d99 = mid(label, "p99_ms"), mid("direct", "p99_ms")
            row["p99_added_ms"] = None if p99 is None or d99 is None or label == direct \
                else p99 - d99
            rows.append(row)
    return rows


def parse_systems(ap, args) -> list[System]:
    smtplbs = []
    for spec in args.smtplb or [str(REPO / "build-release" / "smtplb")]:
        label, _, path = spec.rpartition("=")
        smtplbs.append(System(label or "smtplb", "smtplb", os.path.abspath(path)))
    if len({s.name for s in smtplbs}) != len(smtplbs):
        ap.error("two --smtplb need two labels: --smtplb before=PATH --smtplb after=PATH")
    out = []
    for kind in [x.strip() for x in args.systems.split(",") if x.strip()]:
        if kind == "smtplb":
            out += smtplbs
        elif kind in ("direct", "haproxy", "nginx"):
            out.append(System(kind, kind))
        else:
            ap.error(f"unknown system {kind!r} (direct, haproxy, nginx, smtplb)")
    return out


def main() -> int:
    if len(sys.argv) > 2 and sys.argv[1] == "--nginx-auth":
        nginx_auth(int(sys.argv[2]), sys.argv[3:])
        return 0
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog=__doc__.split("\n\n", 2)[2])
    which = lambda n, d: shutil.which(n) or d  # noqa: E731
    ap.add_argument("--smtplb", action="append", metavar="[LABEL=]PATH",
                    help="an smtplb binary (default build-release/smtplb); twice or more, with "
                    "labels, for one system each (before/after a change, in one run)")
    ap.add_argument("--smtp-load", default=str(REPO / "build-release" / "bench" / "smtp_load"))
    ap.add_argument("--haproxy", default=which("haproxy", "/usr/sbin/haproxy"))
    ap.add_argument("--nginx", default=which("nginx", "/usr/sbin/nginx"))
    ap.add_argument("--smtp-source", default=which("smtp-source", "/usr/sbin/smtp-source"))
    ap.add_argument("--smtp-sink", default=which("smtp-sink", "/usr/sbin/smtp-sink"))
    ap.add_argument("--dnsmasq", default=which("dnsmasq", "/usr/sbin/dnsmasq"))
    ap.add_argument("--workloads",
                    help="comma-separated workload names or sets (" + ", ".join(SETS) +
                    "; default record: issue 7's, failover and idle)")
    ap.add_argument("--systems", default="direct,haproxy,smtplb",
                    help="comma-separated: direct, haproxy, nginx, smtplb (default %(default)s)")
    ap.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                    help="change a field of every selected workload (--list shows them), "
                    "e.g. --set conns=100 --set per_conn=50 --set skew=0.05:0 --set resume=1")
    ap.add_argument("--reps", type=int, default=3, help="repetitions, interleaved (default 3)")
    ap.add_argument("--scale", type=float, default=1.0,
                    help="multiply every workload's messages and seconds (default 1)")
    ap.add_argument("--no-latency", dest="latency", action="store_false",
                    help="skip the smtp_load latency probes after smtp-source runs")
    ap.add_argument("--quick", action="store_true", help="a smoke run: --reps 1 --scale 0.05")
    ap.add_argument("--list", action="store_true", help="print the workloads and exit")
    ap.add_argument("--run-timeout", type=float, default=300.0)
    ap.add_argument("--out", help="write every run as JSON here")
    ap.add_argument("--markdown", help="write the report (RESULTS.md) here")
    ap.add_argument("--chart", help="write the PNG chart here (needs matplotlib)")
    ap.add_argument("--workdir")
    ap.add_argument("--keep", action="store_true", help="keep the work directory")
    ap.add_argument("-v", "--verbose", action="store_true", help="echo commands as they run")
    args = ap.parse_args()
    if args.quick:
        args.reps, args.scale = 1, 0.05
    wanted = [x.strip() for x in (args.workloads or ("all" if args.list else "record")).split(",")]
    unknown = set(wanted) - {w.name for w in WORKLOADS} - set(SETS)
    if unknown:
        ap.error(f"unknown workloads {sorted(unknown)} (--list)")
    workloads = [w for w in WORKLOADS if w.name in wanted or w.set in wanted or "all" in wanted]
    fields = {f.name: f.type for f in dataclasses.fields(Workload)}
    for item in args.set:
        k, _, v = item.partition("=")
        if k not in fields or k in ("name", "set"):
            ap.error(f"--set {item}: no such field (one of {', '.join(list(fields)[2:])})")
        conv = {"int": int, "float": float, "bool": lambda x: x.lower() in ("1", "yes", "true"),
                "tuple": lambda x: tuple(float(y) for y in x.split(":"))}.get(fields[k], str)
        workloads = [dataclasses.replace(w, **{k: conv(v)}) for w in workloads]
    if args.list:
        for w in workloads:
            print(f"{w.set:7} {w.name:22} " + ", ".join(
                f"{f.name}={getattr(w, f.name)}" for f in dataclasses.fields(w)[2:]
                if getattr(w, f.name) != f.default))
        return 0
    systems = parse_systems(ap, args)
    need = {"smtp_load": args.smtp_load, **{s.name: s.path for s in systems if s.path},
            **{k: getattr(args, k) for k in ("haproxy", "nginx") if k in args.systems}}
    if any(w.client == "smtp-source" for w in workloads):
        need |= {"smtp-source": args.smtp_source, "smtp-sink": args.smtp_sink}
    if any(w.backend == "mx" for w in workloads):
        need["dnsmasq"] = args.dnsmasq
    missing = [f"{k} ({v})" for k, v in need.items() if not os.access(v, os.X_OK)]
    if missing:
        print(f"bench: missing {', '.join(missing)} (bench/run.sh builds and installs "
              f"everything)", file=sys.stderr)
        return 2
    import report  # noqa: E402 (a bench/ sibling)

    raise_nofile(65536)  # idle: thousands of connections, both ends in this process
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="smtplb-bench-")).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    ctx = Context(args, workdir)
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    started, load_before, runs = time.monotonic(), os.getloadavg(), []
    print(f"bench: work directory {workdir}", file=sys.stderr)
    try:
        for rep in range(args.reps):
            print(f"repetition {rep + 1}/{args.reps}", file=sys.stderr)
            for w in workloads:
                if rep >= (w.reps or args.reps):
                    continue
                order = units(w, systems)
                k = rep % max(1, len(order))
                for system, variant in order[k:] + order[:k]:
                    try:
                        runs.append(run_one(ctx, w, system, variant, rep))
                    except BenchError as e:
                        print(f"FAILED: {e}", file=sys.stderr)
                        runs.append({"workload": w.name, "system": system.name + (
                            f"/{variant}" if variant else ""), "rep": rep, "error": str(e)})
    except KeyboardInterrupt:
        print("bench: interrupted", file=sys.stderr)
        return 130
    finally:
        ctx.close()
    doc = {
        "tool": "bench/bench.py",
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "argv": sys.argv, "elapsed_s": time.monotonic() - started, "load_before": load_before,
        "environment": report.environment(args, systems),
        "systems": [dataclasses.asdict(s) for s in systems],
        "workloads": [dataclasses.asdict(w) | scaled(ctx, w) for w in workloads],
        "reps": args.reps, "runs": runs, "rows": summarize(runs, workloads, systems),
        "failover": [r for r in runs if r["workload"] == "failover" and "error" not in r],
        "idle": [r | {"system": r["system"].split("/")[0]} for r in runs
                 if r["workload"] == "idle" and "error" not in r],
        "commands": ctx.runner.commands,
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
        r.get("lost") or (r.get("duplicated") or 0) > r.get("flagged_possible_duplicates", 0)
        for r in doc["rows"])
    if args.keep or args.workdir or failed:
        print(f"work directory kept: {workdir}", file=sys.stderr)
    else:
        shutil.rmtree(workdir, ignore_errors=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
