#!/usr/bin/env python3
"""run_tls.py: STARTTLS handshakes and messages per second through smtplb,
through HAProxy (TCP mode) and straight to TLS backends.

One run, loopback only, bounded in time.  Started once for the whole run:
two smtp-sinks (plain SMTP, discard) and two private Postfix instances
(tests/integration/postfix_instance.py: smtpd with STARTTLS, the certificate
of tests/integration/tls_certs.py, every message to the discard transport,
queue on tmpfs).  Then, for each round and each scenario (setup x workload,
the order rotated from round to round), a fresh middle box, a warm-up and a
measured run of bench/smtp_load (the C++ load client: C connections,
STARTTLS, certificate verified against the test CA, MAIL/RCPT/DATA
pipelined):

  smtplb          client -TLS-> smtplb (STARTTLS listener) -plain, pooled-> 2 smtp-sinks
  smtplb-postfix  client -TLS-> smtplb -plain, pooled-> the 2 Postfix
  haproxy         client -TLS, end to end-> HAProxy (mode tcp, roundrobin) -> the 2 Postfix
  direct          client -TLS-> the 2 Postfix (connections split between them): the limit
  (optional) smtplb-postfix-tls: as smtplb-postfix, with STARTTLS to the Postfix too

Workloads: 1 KB messages, one per connection (every message pays a TLS
handshake), and N per connection (--per-connection, default 20).

Per scenario: msgs/s and handshakes/s (median and min-max over the rounds),
CPU microseconds per message of the middle box (utime+stime from
/proc/PID/stat), its peak RSS (VmHWM), latency p50/p99 from smtp_load
(MAIL to the 250 after the dot; and connect to that 250), the client's CPU
(to show whether it was the bottleneck), the backends' CPU per message, and
the machine's busy and unattributed CPU.  Checks: no failed message; every
message the client saw accepted arrived exactly once (Postfix: by its
Message-ID in the maillog; smtp-sink: by its counter; smtplb: one delivered
transaction logged per message, no warning).  A Markdown table on stdout,
everything in JSON with --out.

Python 3 standard library only.  See bench/README.md ("TLS").

  bench/run_tls.py                         # 3 rounds, 4 s per run (~2 min on 2 cores)
  bench/run_tls.py --quick                 # 3 rounds, 1.5 s per run (~1 min)
  bench/run_tls.py --setups smtplb,haproxy --workloads 1 --out tls.json
"""

from __future__ import annotations

import argparse
import collections
import datetime as _dt
import os
import platform
import re
import shutil
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path

from benchlib import (BenchError, Runner, finish, fmt, free_port, haproxy_tcp_config,  # noqa: E402
                      make_workdir,
                      markdown_table, parse_size, pgroup_cpu_seconds, proc_cpu_seconds,
                      run_smtp_load, scan_smtplb_log, system_cpu, wait_listening,
                      backend_lines, smtplb_config)
from run_bench import proc_status_kb, sink_count, size_label, start_sinks, tool_version  # noqa: E402

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO / "tests" / "integration"))
import postfix_instance  # noqa: E402
import tls_certs  # noqa: E402

CLK_TCK = os.sysconf("SC_CLK_TCK")
SETUPS = ("smtplb", "smtplb-postfix", "haproxy", "direct")
OPTIONAL_SETUPS = ("smtplb-postfix-tls",)
POSTFIX_SETUPS = ("smtplb-postfix", "smtplb-postfix-tls", "haproxy", "direct")
MIDDLE = {"smtplb": "smtplb", "smtplb-postfix": "smtplb", "smtplb-postfix-tls": "smtplb",
          "haproxy": "haproxy", "direct": None}

SENDER = "bench-sender@example.com"
RECIPIENT = "bench-rcpt@example.com"
HELO = "bench.example.com"
TLS_NAME = "mx.test.example"  # in the test certificate (with localhost and 127.0.0.1)
MSGID_RE = re.compile(r"message-id=<([^@>\s]+)@smtp-load\.invalid>")


# ---------------------------------------------------------------- backends


class PostfixLog:
    """Message-IDs in one Postfix's maillog (cleanup logs each message's
    `message-id=<...>` once, before smtpd answers 250), read incrementally."""

    def __init__(self, inst) -> None:
        self.inst = inst
        self.offset = 0
        self.ids: collections.Counter = collections.Counter()
        self.partial = b""

    def poll(self) -> None:
        try:
            with open(self.inst.maillog, "rb") as f:
                f.seek(self.offset)
                data = f.read()
        except FileNotFoundError:
            return
        self.offset += len(data)
        data = self.partial + data
        cut = data.rfind(b"\n") + 1
        self.partial = data[cut:]
        for m in MSGID_RE.finditer(data[:cut].decode(errors="replace")):
            self.ids[m.group(1)] += 1


class Backends:
    """The two smtp-sinks and the two Postfix instances of the whole run."""

    def __init__(self, runner: Runner, args, certs, need_sinks: bool, need_postfix: bool) -> None:
        self.runner = runner
        self.args = args
        self.certs = certs
        self.sinks: list = []  # (proc, out, port)
        self.postfix: list = []
        self.logs: list[PostfixLog] = []
        self.need_sinks = need_sinks
        self.need_postfix = need_postfix

    def start(self) -> None:
        if self.need_sinks:
            self.sinks = start_sinks(self.runner, self.args, "backend", 2)
        if self.need_postfix:
            for i in range(2):
                inst = postfix_instance.PostfixInstance(
                    self.args.postfix_dir, name=f"pf{chr(ord('A') + i)}", certs=self.certs,
                    domains=("example.com",),
                    main_cf={
                        # Mail for example.com goes to discard(8): queued,
                        # then thrown away; nothing leaves the machine.
                        "virtual_transport": "discard",
                        # No pause before accepting a message when delivery
                        # falls behind: a benchmark backend takes all it can.
                        "in_flow_delay": "0",
                        "default_process_limit": str(max(20, self.args.concurrency + 10)),
                    })
                self.runner.note([postfix_instance.MASTER, "-c", inst.config_dir],
                                 f"  # private Postfix {inst.name}, smtpd on {inst.address}")
                inst.start()
                self.postfix.append(inst)
                self.logs.append(PostfixLog(inst))

    def stop(self) -> None:
        for inst in self.postfix:
            try:
                inst.stop()
            except Exception:  # noqa: BLE001
                inst.kill()
        for p, _out, _port in self.sinks:
            self.runner.stop(p)

    def sink_ports(self) -> list[int]:
        return [port for _p, _o, port in self.sinks]

    def postfix_ports(self) -> list[int]:
        return [inst.port for inst in self.postfix]

    def cpu(self, kind: str) -> float:
        if kind == "sinks":
            return sum(proc_cpu_seconds(p.pid) for p, _o, _port in self.sinks)
        return sum(pgroup_cpu_seconds(inst.proc.pid) for inst in self.postfix)

    def sink_counts(self) -> list[int]:
        return [sink_count(out) for _p, out, _port in self.sinks]

    def postfix_ids(self) -> collections.Counter:
        total: collections.Counter = collections.Counter()
        for log in self.logs:
            log.poll()
            total.update(log.ids)
        return total

    def alive(self) -> list[str]:
        dead = [f"smtp-sink (status {p.returncode})" for p, _o, _port in self.sinks
                if p.poll() is not None]
        dead += [f"Postfix {inst.name}" for inst in self.postfix if not inst.alive()]
        return dead


# ---------------------------------------------------------------- middle boxes


def tls_smtplb_config(setup: str, listen_port: int, backend_ports: list[int], certs) -> str:
    backend_tls = ""
    if setup == "smtplb-postfix-tls":
        backend_tls = f"        tls: {{mode: starttls, ca: {certs.ca_cert}, sni: {TLS_NAME}}}"
    return smtplb_config(
        listen_port, backend_lines(backend_ports, backend_tls), written_by="bench/run_tls.py",
        listener_extra=f"    tls: {{certificate: {certs.server_cert}, key: {certs.server_key}}}\n")


def start_middle(runner: Runner, args, setup: str, tag: str, backends: Backends):
    """(proc, listen port, log path, config path) of a fresh smtplb or HAProxy."""
    port = free_port()
    if MIDDLE[setup] == "smtplb":
        ports = backends.sink_ports() if setup == "smtplb" else backends.postfix_ports()
        cfg = runner.workdir / f"{tag}-smtplb.yaml"
        cfg.write_text(tls_smtplb_config(setup, port, ports, backends.certs))
        argv = [args.smtplb, "run", "-c", cfg.name, "--log-level", args.smtplb_log_level]
        p, _out, log = runner.start(argv, f"{tag}-smtplb")
    else:
        cfg = runner.workdir / f"{tag}-haproxy.cfg"
        cfg.write_text(haproxy_tcp_config(port, backends.postfix_ports(),
                                          max(4096, args.concurrency * 4),
                                          written_by="bench/run_tls.py: TCP mode, TLS passes "
                                          "through end to end", backend="postfix", server="pf"))
        p, _out, log = runner.start([args.haproxy, "-f", cfg.name, "-db"], f"{tag}-haproxy")
    wait_listening(port, p, setup)
    return p, port, log, cfg


# ---------------------------------------------------------------- one scenario


def load_argv(args, servers: list[str], per_connection: int, duration: float, prefix: str,
              ids_out: Path | None, certs) -> list[str]:
    argv = [args.smtp_load]
    for s in servers:
        argv += ["--server", s]
    argv += ["-c", str(args.concurrency), "-m", str(per_connection), "-s", str(args.size),
             "-d", f"{duration:g}", "--starttls", "--timeout", f"{args.io_timeout:g}",
             "--threads", str(args.client_threads), "--id-prefix", prefix,
             "--helo", HELO, "--from", SENDER, "--to", RECIPIENT]
    if not args.no_verify:
        # The test certificate names 127.0.0.1 and mx.test.example: verify the name too.
        argv += ["--ca", certs.ca_cert, "--server-name", TLS_NAME]
    if args.resume:
        argv.append("--resume")
    if ids_out is not None:
        argv += ["--ids-out", str(ids_out)]
    return argv


def check_load(doc: dict, name: str) -> None:
    problems = []
    if doc.get("messages_failed"):
        problems.append(f"{doc['messages_failed']} message(s) failed: {doc.get('errors')} "
                        f"{doc.get('first_errors', [])[:3]}")
    if doc.get("aborted"):
        problems.append("hit its hard time limit")
    if not doc.get("messages_ok"):
        problems.append("no message accepted")
    if problems:
        raise BenchError(f"{name}: smtp_load: " + "; ".join(problems))


def read_ids(path: Path) -> list[str]:
    try:
        return [x for x in path.read_text().split("\n") if x]
    except OSError:
        return []


def wait_postfix_ids(backends: Backends, want: list[str], timeout: float) -> collections.Counter:
    deadline = time.monotonic() + timeout
    while True:
        seen = backends.postfix_ids()
        if all(seen[i] for i in want) or time.monotonic() > deadline:
            return seen
        time.sleep(0.1)


def wait_sinks(backends: Backends, base: list[int], want: int, timeout: float) -> list[int]:
    deadline = time.monotonic() + timeout
    while True:
        counts = [a - b for a, b in zip(backends.sink_counts(), base)]
        if sum(counts) >= want or time.monotonic() > deadline:
            return counts
        time.sleep(0.05)


def measure(runner: Runner, args, backends: Backends, setup: str, per_conn: int, rnd: int,
            run_id: str) -> dict:
    wl = workload_label(per_conn, args.size)
    tag = f"r{rnd}-{setup}-{wl}"
    print(f"== round {rnd} {setup} {wl}: ", end="", flush=True, file=sys.stderr)
    res: dict = {"setup": setup, "workload": wl, "per_connection": per_conn, "round": rnd,
                 "size": args.size, "concurrency": args.concurrency,
                 "duration_s": args.duration, "warmup_s": args.warmup}
    proc = None
    uses_postfix = setup in POSTFIX_SETUPS
    try:
        if MIDDLE[setup]:
            proc, port, log, cfg = start_middle(runner, args, setup, tag, backends)
            res["config_file"] = str(cfg)
            res["config"] = cfg.read_text()
            res["middle_pid"] = proc.pid
            servers = [f"127.0.0.1:{port}"]
        else:
            log = None
            servers = [f"127.0.0.1:{p}" for p in backends.postfix_ports()]
        sink_base = backends.sink_counts() if setup == "smtplb" else None
        prefix = f"{run_id}-{tag}"
        ids_files = []
        timeout = args.duration + 2 * args.io_timeout + 30

        # Warm-up (unmeasured): processes, pools, caches.
        warm = None
        if args.warmup > 0:
            ids_w = runner.workdir / f"{tag}-warmup.ids" if uses_postfix else None
            warm = run_smtp_load(runner, load_argv(args, servers, per_conn, args.warmup,
                                                   prefix + "-w", ids_w, backends.certs),
                                 f"{tag} warm-up", timeout)
            check_load(warm, f"{tag} warm-up")
            if ids_w:
                ids_files.append(ids_w)

        # The measured run.
        ids_m = runner.workdir / f"{tag}.ids" if uses_postfix else None
        kind = "postfix" if uses_postfix else "sinks"
        mid0 = proc_cpu_seconds(proc.pid) if proc else None
        be0 = backends.cpu(kind)
        sys0 = system_cpu()
        doc = run_smtp_load(runner, load_argv(args, servers, per_conn, args.duration, prefix,
                                              ids_m, backends.certs), tag, timeout)
        sys1 = system_cpu()
        be1 = backends.cpu(kind)
        mid1 = proc_cpu_seconds(proc.pid) if proc else None
        check_load(doc, tag)
        if ids_m:
            ids_files.append(ids_m)
        res["load"] = doc
        ok = doc["messages_ok"]
        wall = doc["wall_s"]
        res["messages"] = ok
        res["wall_s"] = wall
        res["msgs_per_s"] = doc["msgs_per_s"]
        res["handshakes_per_s"] = doc["handshakes_per_s"]
        res["handshakes"] = doc["handshakes"]
        res["latency_ms"] = doc["latency_ms"]
        res["connect_latency_ms"] = doc["connect_latency_ms"]
        res["handshake_ms"] = doc["handshake_ms"]
        res["tls"] = doc.get("tls")
        res["client_cpu_s"] = doc["cpu"]["total_s"]
        res["client_cpu_pct"] = doc["cpu"]["pct_of_wall"]
        res["client_cpu_us_per_msg"] = doc["cpu"]["total_s"] / ok * 1e6
        busy_s = (sys1[0] - sys0[0]) / CLK_TCK
        res["client_share_of_busy_pct"] = (100.0 * doc["cpu"]["total_s"] / busy_s
                                           if busy_s > 0 else None)
        res["middle_cpu_s"] = None if proc is None else mid1 - mid0
        res["middle_cpu_us_per_msg"] = None if proc is None else (mid1 - mid0) / ok * 1e6
        res["middle_cpu_pct"] = None if proc is None else 100.0 * (mid1 - mid0) / wall
        res["backends"] = kind
        res["backends_cpu_s"] = be1 - be0
        res["backends_cpu_us_per_msg"] = (be1 - be0) / ok * 1e6
        busy, total = sys1[0] - sys0[0], sys1[1] - sys0[1]
        res["machine_busy_pct"] = 100.0 * busy / total if total > 0 else None
        ours = (res["middle_cpu_s"] or 0.0) + res["backends_cpu_s"] + res["client_cpu_s"]
        res["other_cpu_s"] = max(0.0, busy / CLK_TCK - ours)
        res["other_cpu_pct"] = 100.0 * res["other_cpu_s"] / (busy / CLK_TCK) if busy > 0 else None
        if proc:
            res["middle_peak_rss_kb"] = proc_status_kb(proc.pid, "VmHWM")
            res["middle_threads"] = proc_status_kb(proc.pid, "Threads")
        else:
            res["middle_peak_rss_kb"] = None

        # Did every accepted message arrive, once?
        accepted = ok + (warm["messages_ok"] if warm else 0)
        res["accepted_total"] = accepted
        if uses_postfix:
            want = [i for f in ids_files for i in read_ids(f)]
            if len(want) != accepted:
                raise BenchError(f"{tag}: smtp_load wrote {len(want)} ids, accepted {accepted}")
            seen = wait_postfix_ids(backends, want, 15.0)
            lost = [i for i in want if not seen[i]]
            dups = {i: seen[i] for i in want if seen[i] > 1}
            mine = [k for k in seen if k.startswith(prefix + ".") or k.startswith(prefix + "-w.")]
            unexpected = len(mine) - len(set(want) & set(mine))
            res["delivery_check"] = {"by": "Message-ID in the Postfix maillogs",
                                     "accepted": accepted, "lost": len(lost),
                                     "duplicated": len(dups), "unexpected": unexpected,
                                     "lost_sample": lost[:5]}
            if lost or dups:
                raise BenchError(f"{tag}: {len(lost)} accepted message(s) never reached Postfix "
                                 f"(e.g. {lost[:3]}), {len(dups)} arrived more than once")
        else:
            counts = wait_sinks(backends, sink_base, accepted, 5.0)
            res["sink_counts"] = counts
            res["delivery_check"] = {"by": "smtp-sink counters", "accepted": accepted,
                                     "counted": sum(counts)}
            if sum(counts) != accepted:
                raise BenchError(f"{tag}: the sinks counted {sum(counts)} messages {counts}, "
                                 f"the client saw {accepted} accepted")
        dead = backends.alive()
        if dead:
            raise BenchError(f"{tag}: backend(s) died: {dead}")
        if proc is not None:
            if proc.poll() is not None:
                raise BenchError(f"{tag}: {MIDDLE[setup]} exited with status {proc.returncode}")
            res["middle_exit_status"] = runner.stop(proc)
            proc = None
            if MIDDLE[setup] == "smtplb":
                chk = scan_smtplb_log(log)
                chk["expected"] = accepted
                res["smtplb_log"] = chk
                if (args.smtplb_log_level in ("info", "debug", "trace")
                        and chk["delivered"] != accepted):
                    raise BenchError(f"{tag}: smtplb logged {chk['delivered']} delivered "
                                     f"transactions, the client saw {accepted} accepted")
                if chk["warnings"]:
                    raise BenchError(f"{tag}: smtplb logged warnings or errors: "
                                     f"{chk['warnings'][:3]}")
        print(f"{res['msgs_per_s']:.0f} msg/s, {res['handshakes_per_s']:.0f} handshakes/s, "
              f"middle {fmt(res['middle_cpu_us_per_msg'], '.0f')} us/msg, client "
              f"{res['client_cpu_pct']:.0f}% CPU", file=sys.stderr)
        return res
    finally:
        if proc is not None:
            runner.stop(proc)


def workload_label(per_conn: int, size: int) -> str:
    return f"{per_conn}x{size_label(size)}"


# ---------------------------------------------------------------- report


def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def summarize(results: list[dict], scenarios: list[tuple[str, int]], args) -> list[dict]:
    rows = []
    for setup, per_conn in scenarios:
        wl = workload_label(per_conn, args.size)
        mine = [r for r in results if r["setup"] == setup and r["workload"] == wl]
        ok = [r for r in mine if "error" not in r]
        row: dict = {"setup": setup, "workload": wl, "per_connection": per_conn,
                     "rounds_ok": len(ok), "rounds_failed": len(mine) - len(ok),
                     "errors": [r["error"] for r in mine if "error" in r]}
        if ok:
            msgs = sum(r["messages"] for r in ok)
            m = [r["msgs_per_s"] for r in ok]
            h = [r["handshakes_per_s"] for r in ok]
            row.update({
                "msgs_per_s": med(m), "msgs_per_s_min": min(m), "msgs_per_s_max": max(m),
                "msgs_per_s_rounds": m,
                "handshakes_per_s": med(h), "handshakes_per_s_min": min(h),
                "handshakes_per_s_max": max(h), "handshakes_per_s_rounds": h,
                "messages": msgs,
                "middle_cpu_us_per_msg": (None if MIDDLE[setup] is None else
                                          sum(r["middle_cpu_s"] for r in ok) / msgs * 1e6),
                "middle_cpu_us_per_msg_rounds": [r["middle_cpu_us_per_msg"] for r in ok],
                "middle_cpu_pct": med(r["middle_cpu_pct"] for r in ok),
                "middle_peak_rss_kb": max((r["middle_peak_rss_kb"] or 0 for r in ok),
                                          default=0) or None,
                "latency_p50_ms": med(r["latency_ms"]["p50"] for r in ok),
                "latency_p99_ms": med(r["latency_ms"]["p99"] for r in ok),
                "connect_p50_ms": med(r["connect_latency_ms"]["p50"] for r in ok),
                "connect_p99_ms": med(r["connect_latency_ms"]["p99"] for r in ok),
                "handshake_p50_ms": med(r["handshake_ms"]["p50"] for r in ok),
                "client_cpu_pct": med(r["client_cpu_pct"] for r in ok),
                "client_cpu_pct_max": max(r["client_cpu_pct"] for r in ok),
                "client_cpu_us_per_msg": sum(r["client_cpu_s"] for r in ok) / msgs * 1e6,
                "client_share_of_busy_pct": med(r["client_share_of_busy_pct"] for r in ok),
                "backends": ok[0]["backends"],
                "backends_cpu_us_per_msg": sum(r["backends_cpu_s"] for r in ok) / msgs * 1e6,
                "machine_busy_pct": med(r["machine_busy_pct"] for r in ok),
                "other_cpu_pct": med(r["other_cpu_pct"] for r in ok),
                "other_cpu_pct_max": max((r["other_cpu_pct"] or 0) for r in ok),
            })
        rows.append(row)
    return rows


def rng(row, key: str, spec: str = ",.0f") -> str:
    if row.get(key) is None:
        return "-"
    lo, hi = row[key + "_min"], row[key + "_max"]
    return f"{format(row[key], spec)} ({format(lo, spec)}–{format(hi, spec)})"


def build_table(rows: list[dict], args) -> str:
    head = ["setup", "workload", "msg/s median (min–max)", "handshakes/s median (min–max)",
            "middle box µs/msg", "middle box peak RSS MB", "latency p50 / p99 ms",
            "connect→250 p50 / p99 ms", "client CPU % of a core (µs/msg)", "backends µs/msg",
            "busy % / other %"]
    out = []
    for r in rows:
        if not r["rounds_ok"]:
            out.append([r["setup"], r["workload"], "FAILED"] + [""] * (len(head) - 3))
            continue
        setup = r["setup"] + (f" ({r['rounds_failed']} FAILED)" if r["rounds_failed"] else "")
        rss = r["middle_peak_rss_kb"]
        out.append([
            setup, r["workload"], rng(r, "msgs_per_s"), rng(r, "handshakes_per_s"),
            fmt(r["middle_cpu_us_per_msg"], ".0f"),
            fmt(None if rss is None else rss / 1024, ".1f"),
            f"{r['latency_p50_ms']:.2f} / {r['latency_p99_ms']:.2f}",
            f"{r['connect_p50_ms']:.2f} / {r['connect_p99_ms']:.2f}",
            f"{r['client_cpu_pct']:.0f} ({r['client_cpu_us_per_msg']:.0f})",
            f"{r['backends_cpu_us_per_msg']:.0f} ({'sinks' if r['backends'] == 'sinks' else 'Postfix'})",
            f"{fmt(r['machine_busy_pct'], '.0f')} / {fmt(r['other_cpu_pct'], '.0f')}",
        ])
    return markdown_table(head, out, left=2)


def ratio(a, b):
    if a is None or b is None or b == 0:
        return None
    return a / b


def build_ratios(rows: list[dict], workloads: list[str]) -> list[dict]:
    by = {(r["setup"], r["workload"]): r for r in rows if r["rounds_ok"]}
    out = []
    pairs = [("smtplb", "haproxy"), ("smtplb-postfix", "haproxy"), ("smtplb-postfix-tls", "haproxy"),
             ("smtplb-postfix", "direct"), ("haproxy", "direct")]
    for wl in workloads:
        for a, b in pairs:
            ra, rb = by.get((a, wl)), by.get((b, wl))
            if not ra or not rb:
                continue
            out.append({
                "workload": wl, "a": a, "b": b,
                "msgs_per_s": ratio(ra["msgs_per_s"], rb["msgs_per_s"]),
                "handshakes_per_s": ratio(ra["handshakes_per_s"], rb["handshakes_per_s"]),
                "middle_cpu_per_msg": ratio(ra["middle_cpu_us_per_msg"],
                                            rb["middle_cpu_us_per_msg"]),
                "middle_peak_rss": ratio(ra["middle_peak_rss_kb"], rb["middle_peak_rss_kb"]),
            })
    return out


def ratios_text(ratios: list[dict]) -> str:
    lines = []
    for r in ratios:
        s = (f"  {r['workload']:>6} {r['a']}/{r['b']}: msg/s {fmt(r['msgs_per_s'], '.2f')}, "
             f"handshakes/s {fmt(r['handshakes_per_s'], '.2f')}")
        if r["middle_cpu_per_msg"] is not None:
            s += (f", middle box CPU/msg {fmt(r['middle_cpu_per_msg'], '.2f')}, peak RSS "
                  f"{fmt(r['middle_peak_rss'], '.2f')}")
        lines.append(s)
    return "\n".join(lines)


def per_round_text(results: list[dict], rows: list[dict]) -> str:
    lines = []
    w = max((len(r["setup"]) for r in rows), default=6)
    for row in rows:
        rs = sorted((r for r in results
                     if r["setup"] == row["setup"] and r["workload"] == row["workload"]),
                    key=lambda r: r["round"])
        if not rs:
            continue
        msgs = ", ".join("FAILED" if "error" in r else f"{r['msgs_per_s']:.0f}" for r in rs)
        cpu = ", ".join("-" if "error" in r or r.get("middle_cpu_us_per_msg") is None
                        else f"{r['middle_cpu_us_per_msg']:.0f}" for r in rs)
        cl = ", ".join("-" if "error" in r else f"{r['client_cpu_pct']:.0f}" for r in rs)
        oth = ", ".join("-" if "error" in r else fmt(r["other_cpu_pct"], ".0f") for r in rs)
        lines.append(f"  {row['setup']:<{w}} {row['workload']:>6}  msg/s {msgs};  middle us/msg "
                     f"{cpu};  client CPU % {cl};  other % {oth}")
    return "\n".join(lines)


def client_verdict(rows: list[dict], threads: int) -> str:
    ok = [r for r in rows if r["rounds_ok"]]
    if not ok:
        return "client: no successful run"
    top = max(ok, key=lambda r: r["client_cpu_pct_max"])
    limit = 100.0 * threads
    share = top["client_cpu_pct_max"] / limit
    verdict = ("the client was NOT the bottleneck" if share < 0.75 else
               "the client was close to saturating its thread(s): treat that row as a lower bound"
               if share < 0.9 else
               "the client was SATURATED: that row measures the client (use --client-threads)")
    heavy = max(ok, key=lambda r: r["client_share_of_busy_pct"] or 0)
    text = (f"client: at most {top['client_cpu_pct_max']:.0f}% of one core "
            f"({threads} thread(s), {share * 100:.0f}% of what they can use) in "
            f"{top['setup']} {top['workload']}: {verdict}; its largest share of the machine's "
            f"busy CPU time: {fmt(heavy['client_share_of_busy_pct'], '.0f')}% "
            f"({heavy['setup']} {heavy['workload']})")
    if (heavy["client_share_of_busy_pct"] or 0) > 40:
        text += (" -- it shares the CPUs with the middle box and the backends, so where the "
                 "machine is busy, compare middle box us/msg rather than msg/s")
    return text


# ---------------------------------------------------------------- main


def default_postfix_parent() -> str | None:
    """tmpfs for the Postfix queues when there is one: Postfix fsyncs every
    queue file, and this benchmark is about TLS, not the disk."""
    shm = "/dev/shm"
    if os.path.isdir(shm) and os.access(shm, os.W_OK | os.X_OK):
        return shm
    return None


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--smtplb", default=str(REPO / "build" / "smtplb"), help="smtplb binary")
    ap.add_argument("--smtp-load", default=str(REPO / "build" / "bench" / "smtp_load"),
                    help="the load client (cmake --build build --target smtp_load)")
    ap.add_argument("--haproxy", default=shutil.which("haproxy") or "/usr/sbin/haproxy")
    ap.add_argument("--smtp-sink", default=shutil.which("smtp-sink") or "/usr/sbin/smtp-sink")
    ap.add_argument("--sink-user", default="nobody", help="smtp-sink -u USER when run as root")
    ap.add_argument("--setups", default=",".join(SETUPS),
                    help=f"comma-separated, of {','.join(SETUPS + OPTIONAL_SETUPS)} "
                         f"(default: all but smtplb-postfix-tls)")
    ap.add_argument("--workloads", default=None,
                    help="messages per connection, comma-separated (default: 1,PER_CONNECTION)")
    ap.add_argument("--per-connection", type=int, default=20,
                    help="messages per connection of the 'many' workload (default 20)")
    ap.add_argument("--size", type=parse_size, default=parse_size("1KB"),
                    help="message size, headers included (default 1KB)")
    ap.add_argument("-c", "--concurrency", type=int, default=50,
                    help="client connections at a time (default 50: see bench/README.md on "
                         "the 40 ms stall after the TLS handshake)")
    ap.add_argument("--duration", type=float, default=None,
                    help="seconds of each measured run (default 4; --quick 1.5)")
    ap.add_argument("--warmup", type=float, default=None,
                    help="seconds of unmeasured load before each (default 1; --quick 0.5)")
    ap.add_argument("--repeat", type=int, default=3,
                    help="rounds; the scenario order rotates each round (default 3, at least 3 "
                         "for a median and a range worth the name)")
    ap.add_argument("--client-threads", type=int, default=2,
                    help="smtp_load --threads (default 2: one per CPU of this machine, so that "
                         "one client thread is never the limit)")
    ap.add_argument("--no-verify", action="store_true",
                    help="the client does not verify certificates (default: against the test CA)")
    ap.add_argument("--resume", action="store_true",
                    help="the client resumes TLS sessions (default: a full handshake each time)")
    ap.add_argument("--io-timeout", type=float, default=10.0,
                    help="smtp_load --timeout: one network operation (default 10 s)")
    ap.add_argument("--smtplb-log-level", default="info",
                    help="smtplb --log-level (default info: one line per transaction, as in "
                         "production; the check counts them)")
    ap.add_argument("--postfix-dir", default=None,
                    help="where the private Postfix instances live (default: a new directory "
                         "in /dev/shm, else in the work directory)")
    ap.add_argument("--budget", type=float, default=900.0,
                    help="seconds for the whole run; what is left is skipped (failed)")
    ap.add_argument("--quick", action="store_true", help="1.5 s runs, 0.5 s warm-up")
    ap.add_argument("--out", default=None, help="write the JSON result here")
    ap.add_argument("--workdir", default=None)
    ap.add_argument("--keep", action="store_true", help="keep the work directory")
    ap.add_argument("-v", "--verbose", action="store_true")
    args = ap.parse_args()

    if args.duration is None:
        args.duration = 1.5 if args.quick else 4.0
    if args.warmup is None:
        args.warmup = 0.5 if args.quick else 1.0
    setups = [s.strip() for s in args.setups.split(",") if s.strip()]
    for s in setups:
        if s not in SETUPS + OPTIONAL_SETUPS:
            ap.error(f"unknown setup {s!r}")
    if args.workloads is None:
        workloads = [1, args.per_connection] if args.per_connection != 1 else [1]
    else:
        workloads = [int(x) for x in args.workloads.split(",") if x.strip()]
    if not setups or not workloads or min(workloads) < 1:
        ap.error("--setups and --workloads must name at least one, workloads >= 1")
    if args.repeat < 1 or args.concurrency < 1 or args.duration <= 0:
        ap.error("--repeat, --concurrency and --duration must be positive")

    need_postfix = any(s in POSTFIX_SETUPS for s in setups)
    need_sinks = "smtplb" in setups
    needed = {"smtp_load": args.smtp_load}
    if any(MIDDLE[s] == "smtplb" for s in setups):
        needed["smtplb"] = args.smtplb
    if "haproxy" in setups:
        needed["haproxy"] = args.haproxy
    if need_sinks:
        needed["smtp-sink"] = args.smtp_sink
    for what, path in needed.items():
        if not (os.path.isfile(path) and os.access(path, os.X_OK)):
            hint = {"smtplb": " (cmake --build build --target smtplb)",
                    "smtp_load": " (cmake --build build --target smtp_load)"}.get(what, "")
            print(f"run_tls: {what} not found at {path}{hint}", file=sys.stderr)
            return 2
    if need_postfix and postfix_instance.skip_reason():
        print(f"run_tls: cannot run a private Postfix: {postfix_instance.skip_reason()} "
              f"(use --setups smtplb)", file=sys.stderr)
        return 2
    if tls_certs.skip_reason():
        print(f"run_tls: {tls_certs.skip_reason()}", file=sys.stderr)
        return 2
    args.smtplb = os.path.abspath(args.smtplb)
    args.smtp_load = os.path.abspath(args.smtp_load)

    workdir, keep = make_workdir(args, "smtplb-tls-")
    os.chmod(workdir, 0o755)
    made_pf_dir = False
    if args.postfix_dir is None:
        parent = default_postfix_parent()
        args.postfix_dir = (tempfile.mkdtemp(prefix="smtplb-tls-pf-", dir=parent) if parent
                            else str(workdir))
        made_pf_dir = parent is not None
    runner = Runner(workdir, args.verbose)
    certs = tls_certs.make_certs(str(workdir / "tls"), dns_names=[TLS_NAME])
    backends = Backends(runner, args, certs, need_sinks, need_postfix)

    scenarios = [(s, m) for m in workloads for s in setups]
    run_id = f"t{int(time.time())}"
    started = time.monotonic()
    results: list[dict] = []
    failed = False
    interrupted = False

    def on_term(signum, _frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGHUP, on_term)
    first_round_commands = None
    print(f"run_tls: work directory {workdir}; Postfix in {args.postfix_dir}", file=sys.stderr)
    load1 = os.getloadavg()[0]
    if load1 > 0.5 * (os.cpu_count() or 1):
        print(f"run_tls: warning: load average {load1:.2f} before start; other work on this "
              f"host will disturb the numbers (see 'other %')", file=sys.stderr)
    try:
        backends.start()
        for rnd in range(args.repeat):
            if rnd == 1:
                first_round_commands = len(runner.commands)
            k = rnd % len(scenarios)
            for setup, per_conn in scenarios[k:] + scenarios[:k]:
                wl = workload_label(per_conn, args.size)
                if time.monotonic() - started > args.budget:
                    results.append({"setup": setup, "workload": wl, "round": rnd,
                                    "error": f"skipped: --budget {args.budget:.0f}s spent"})
                    failed = True
                    continue
                try:
                    results.append(measure(runner, args, backends, setup, per_conn, rnd, run_id))
                except BenchError as e:
                    print(f"FAILED\nrun_tls: {e}", file=sys.stderr)
                    results.append({"setup": setup, "workload": wl, "round": rnd,
                                    "error": str(e)})
                    failed = True
    except KeyboardInterrupt:
        interrupted = True
        failed = True
        print("\nrun_tls: interrupted", file=sys.stderr)
    except (BenchError, RuntimeError, OSError, TimeoutError) as e:
        failed = True
        print(f"run_tls: {e}", file=sys.stderr)
        results.append({"setup": "(backends)", "workload": "-", "round": -1, "error": str(e)})
    finally:
        runner.stop_all()
        backends.stop()

    elapsed = time.monotonic() - started
    wl_labels = [workload_label(m, args.size) for m in workloads]
    rows = summarize(results, scenarios, args)
    table = build_table(rows, args)
    ratios = build_ratios(rows, wl_labels)
    verdict = client_verdict(rows, args.client_threads)

    env = {"host": platform.node(), "kernel": platform.release(), "cpus": os.cpu_count(),
           "python": platform.python_version(),
           "smtplb": tool_version([args.smtplb, "version"]) if "smtplb" in needed else None,
           "haproxy": tool_version([args.haproxy, "-v"]) if "haproxy" in needed else None,
           "postfix": postfix_instance.postfix_version() if need_postfix else None,
           "openssl": tool_version([tls_certs.OPENSSL, "version"]),
           "smtplb_build_type": None}
    cache = REPO / "build" / "CMakeCache.txt"
    if cache.is_file():
        m = re.search(r"^CMAKE_BUILD_TYPE:STRING=(.*)$", cache.read_text(errors="replace"), re.M)
        env["smtplb_build_type"] = m.group(1) if m else None

    print()
    print(f"smtplb TLS benchmark: STARTTLS, {args.concurrency} connections, "
          f"{size_label(args.size)} messages, workloads {', '.join(wl_labels)} (messages per "
          f"connection x size); {args.repeat} round(s) of {args.duration:g} s (+{args.warmup:g} s "
          f"warm-up), scenario order rotated; certificate "
          f"{'not verified' if args.no_verify else 'verified'}, "
          f"{'sessions resumed' if args.resume else 'full handshakes'}; {elapsed:.0f} s total, "
          f"{os.cpu_count()} CPUs shared by all processes")
    print()
    print(table)
    print()
    print("ratios (medians):")
    print(ratios_text(ratios) or "  -")
    print()
    print("per round (the scenario order rotates each round):")
    print(per_round_text(results, rows))
    tls_seen = {}
    for r in results:
        if r.get("tls") and r["setup"] not in tls_seen:
            tls_seen[r["setup"]] = r["tls"]
    if tls_seen:
        print()
        print("TLS the client negotiated (first handshake): " +
              "; ".join(f"{k}: {v}" for k, v in tls_seen.items()))
    print()
    print(verdict)
    for r in results:
        if "error" in r:
            print(f"FAILED round {r['round']} {r['setup']} {r['workload']}: {r['error']}")
    print("""
columns: msg/s, handshakes/s   messages accepted (TLS handshakes completed) / wall time of the
                               measured smtp_load run; median of the rounds (min-max)
         middle box us/msg     utime+stime of smtplb or HAProxy (/proc/PID/stat) in the measured
                               runs / their messages; `direct` has none
         peak RSS MB           VmHWM of the middle box (a fresh process per run), largest round
         latency p50 / p99     MAIL to the 250 after the final dot (smtp_load), median of rounds
         connect->250          connect to that 250, first message of each connection
         client CPU %          smtp_load's own utime+stime / wall (100 = one core), median;
                               (us/msg) its CPU per message
         backends us/msg       the two smtp-sinks, or the two Postfix (every process of each),
                               per message
         busy % / other %      all CPUs during the measured run / share of that not charged to
                               the middle box, the backends or the client""")
    print()
    shown_commands = runner.commands[:first_round_commands]
    print("commands of round 0 (later rounds run the same with other ports and id prefixes; "
          "all are in the JSON):" if first_round_commands else "commands:")
    for c in shown_commands:
        print(f"  {c}")
    shown = set()
    for r in results:
        if r.get("config") and r["setup"] not in shown:
            shown.add(r["setup"])
            print(f"\n{r['setup']} configuration (only the ports differ between runs):")
            print("    " + r["config"].rstrip().replace("\n", "\n    "))

    doc = {
        "tool": "smtplb bench/run_tls.py",
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "argv": sys.argv,
        "parameters": {"setups": setups, "workloads": wl_labels, "size": args.size,
                       "concurrency": args.concurrency, "duration_s": args.duration,
                       "warmup_s": args.warmup, "repeat": args.repeat,
                       "client_threads": args.client_threads, "verify": not args.no_verify,
                       "resume": args.resume, "smtplb_log_level": args.smtplb_log_level,
                       "postfix_dir": args.postfix_dir},
        "environment": env,
        "elapsed_s": elapsed,
        "ok": not failed,
        "interrupted": interrupted,
        "loadavg_at_start": load1,
        "rows": rows,
        "ratios": ratios,
        "client_verdict": verdict,
        "results": results,
        "table_markdown": table,
        "commands": runner.commands,
        "workdir": str(workdir) if (keep or failed) else None,
    }
    rc = finish(args, doc, workdir, keep, failed)
    if made_pf_dir:
        if keep or failed:
            print(f"Postfix directory kept: {args.postfix_dir}")
        else:
            shutil.rmtree(args.postfix_dir, ignore_errors=True)
    return rc


if __name__ == "__main__":
    sys.exit(main())
