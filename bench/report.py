#!/usr/bin/env python3
"""report.py: bench/bench.py's result as Markdown (bench/RESULTS.md) and
as a PNG chart.  The chart needs matplotlib (Debian's python3-matplotlib);
when the running interpreter lacks it, the chart is drawn by the system's
/usr/bin/python3, which has it.

  bench/report.py results.json RESULTS.md results.png   # redraw from a saved run
"""

from __future__ import annotations

import json
import os
import platform
import re
import subprocess
import sys
from pathlib import Path

def first_line(argv: list[str]) -> str:
    try:
        cp = subprocess.run(argv, capture_output=True, timeout=10)
        text = (cp.stdout or cp.stderr).decode(errors="replace").strip()
        return text.splitlines()[0] if text else "unknown"
    except (OSError, subprocess.SubprocessError) as e:
        return f"unknown ({e})"


def file_field(path: Path, pattern: str):
    """The first group of `pattern` (multiline) in the file, or None."""
    try:
        m = re.search(pattern, path.read_text(errors="replace"), re.M)
    except OSError:
        return None
    return m.group(1) if m else None


def environment(args, systems) -> dict:
    cpu = file_field(Path("/proc/cpuinfo"), r"^model name\s*:\s*(.*)$") or "unknown"
    os_name = file_field(Path("/etc/os-release"), r'^PRETTY_NAME="(.*)"') or "unknown"
    mem_kb = int(file_field(Path("/proc/meminfo"), r"^MemTotal:\s*(\d+)") or 0)
    smtplb = "; ".join(
        f"{s.name}: {first_line([s.path, 'version'])} "
        f"({file_field(Path(s.path).parent / 'CMakeCache.txt', r'^CMAKE_BUILD_TYPE:STRING=(.*)$')}"
        f" build, {s.path})" for s in systems if s.kind == "smtplb")
    return {
        "cpu": cpu, "cpus": os.cpu_count(), "memory_gib": round(mem_kb / 1024 / 1024, 1),
        "os": os_name, "kernel": platform.release(), "smtplb": smtplb,
        "compiler": first_line(["g++", "--version"]),
        "haproxy": first_line([args.haproxy, "-v"]),
        "nginx": first_line([args.nginx, "-v"]) if any(s.kind == "nginx" for s in systems)
        else "not in this run",
        "postfix": first_line(["postconf", "-d", "-h", "mail_version"]),
        "python": platform.python_version(),
    }


# ---------------------------------------------------------------- Markdown


def f(v, spec: str, none: str = "–") -> str:
    return none if v is None else format(v, spec)


def mrange(t, spec: str) -> str:
    """median (min–max)"""
    if not t:
        return "–"
    med, lo, hi = t
    if lo == hi:
        return format(med, spec)
    return f"{format(med, spec)} ({format(lo, spec)}–{format(hi, spec)})"


def med(t):
    return t[0] if t else None


def table(head: list[str], rows: list[list[str]]) -> str:
    out = ["| " + " | ".join(head) + " |",
           "|" + "|".join("---" if i < 2 else "---:" for i in range(len(head))) + "|"]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(out)


def notes(r: dict) -> str:
    """What only some workloads have: TLS handshakes, each backend's share
    (and p99 by backend), DNS queries, messages that failed at the client."""
    out = []
    if r.get("handshakes_per_s"):
        out.append(f"{mrange(r['handshakes_per_s'], ',.0f')} handshakes/s")
    if r.get("share_pct") and len(r["share_pct"]) > 1:
        out.append("share " + ", ".join(f"{n} {f(v, '.1f')} %" for n, v in r["share_pct"].items()))
    if any((r.get("p99_ms_by_backend") or {}).values()):
        out.append("p99 by backend " + ", ".join(
            f"{n} {f(v, '.1f')}" for n, v in r["p99_ms_by_backend"].items()) + " ms")
    if r.get("dns_queries"):
        out.append("DNS queries " + ", ".join(f"{k} {f(v, '.0f')}"
                                              for k, v in r["dns_queries"].items()))
    if r.get("helper_cpu_us_per_msg"):
        out.append(f"auth_http responder {mrange(r['helper_cpu_us_per_msg'], '.0f')} µs/msg")
    if r.get("vs_variant"):
        v = r["vs_variant"]
        out.append(f"× {v['of']}: msgs/s {f(v['msgs_per_s'], '.2f')}, CPU "
                   f"{f(v['cpu_us_per_msg'], '.2f')}, p99 {f(v['p99_ms'], '.2f')}")
    if r.get("failed"):
        out.append(f"{r['failed']} failed at the client")
    return "; ".join(out)


def main_table(doc: dict) -> str:
    rows = []
    base = any(r.get("vs_base") is not None for r in doc["rows"])
    for r in doc["rows"]:
        if "msgs_per_s" not in r or r["msgs_per_s"] is None:
            if r.get("errors"):
                rows.append([r["workload"], r["system"], "FAILED: " + "; ".join(r["errors"])[:200]]
                            + [""] * (14 + 2 * base))
            continue
        rows.append([
            r["workload"], r["system"], mrange(r["msgs_per_s"], ".0f"),
            f(r["vs_direct"], ".2f"), f(r["vs_haproxy"], ".2f")] + (
            [f(r.get("vs_base"), ".2f"), f(r.get("cpu_vs_base"), ".2f")] if base else []) + [
            f(med(r["cpu_us_per_msg"]), ".0f"),
            f(None if not r["peak_rss_kb"] else med(r["peak_rss_kb"]) / 1024, ".1f"),
            f(med(r["p50_ms"]), ".2f"), f(med(r["p99_ms"]), ".2f"),
            f(r["p99_added_ms"], "+.2f"), f"{r['lost']} / {r['duplicated']}",
            f(med(r.get("backends_cpu_us_per_msg")), ".0f"),
            f(med(r.get("loadgen_cpu_us_per_msg")), ".0f"),
            f(med(r.get("machine_busy_pct")), ".0f"), f(med(r.get("other_pct")), ".0f"),
            f(med(r.get("client_cpu_pct")), ".0f"), notes(r),
        ])
    first = [s["name"] for s in doc.get("systems", []) if s["kind"] == "smtplb"][:1]
    return table(["workload", "system", "msgs/s median (min–max)", "× direct", "× HAProxy"]
                 + ([f"× {first[0]}", f"CPU × {first[0]}"] if base else [])
                 + ["CPU µs/msg", "peak RSS MB", "p50 ms", "p99 ms", "p99 added ms",
                    "lost / dup", "backends µs/msg", "clients µs/msg", "machine busy %",
                    "other %", "smtp_load CPU %", "notes"], rows)


def targets(doc: dict) -> str:
    """The issue's targets, each judged from this run."""
    by = {(r["workload"], r["system"]): r for r in doc["rows"]}
    # With several smtplb systems (--smtplb LABEL=PATH), the first one's.
    lb = ([s["name"] for s in doc.get("systems", []) if s["kind"] == "smtplb"] or ["smtplb"])[0]

    def get(w, s, k):
        r = by.get((w, s)) or {}
        return r.get(k)

    lines = []

    def judge(what: str, value, ok: bool | None, shown: str):
        mark = "–" if ok is None else ("met" if ok else "**missed**")
        lines.append([what, shown if value is not None else "not measured", mark])

    v = get("1KB x1", lb, "vs_haproxy")
    judge("1 KB, one per connection: ≥ 1.3× HAProxy", v, None if v is None else v >= 1.3,
          f(v, ".2f") + "×")
    for w in ("1KB xN", "100KB x1", "100KB xN"):
        v = get(w, lb, "vs_haproxy")
        judge(f"{w}: ≥ 1.0× HAProxy", v, None if v is None else v >= 1.0, f(v, ".2f") + "×")
        v = get(w, lb, "vs_direct")
        judge(f"{w}: ≥ 0.8× direct", v, None if v is None else v >= 0.8, f(v, ".2f") + "×")
    for w in [w["name"] for w in doc["workloads"]
              if w.get("set", "record") == "record"
              and not w.get("idle") and not w.get("kill_every")]:
        v = get(w, lb, "cpu_vs_haproxy")
        judge(f"{w}: CPU per message ≤ HAProxy's", v, None if v is None else v <= 1.0,
              f(v, ".2f") + "× HAProxy's")
    v = get("1KB x1", lb, "p99_added_ms")
    judge("1 KB: p99 added over direct < 1 ms (4 connections)", v,
          None if v is None else v < 1.0, f(v, "+.2f") + " ms")
    for r in doc.get("idle", []):
        if r["system"] != lb:
            continue
        limit = 1024 if r["state"] == "banner" else 3072
        v = r["rss_bytes_per_conn"]
        judge(f"idle connection, {r['state']}: ≤ {limit} B", v, v <= limit, f(v, ".0f") + " B")
    lost = sum(r.get("lost", 0) for r in doc["rows"]) + sum(
        r["lost"] for r in doc.get("failover", []))
    dup = sum(r.get("duplicated", 0) for r in doc["rows"]) + sum(
        r["duplicated"] for r in doc.get("failover", []))
    flagged = sum(r.get("flagged_possible_duplicates", 0) for r in doc.get("failover", []))
    shown = f"{lost} lost, {dup} duplicated"
    if dup:
        shown += f" ({min(dup, flagged)} of them flagged by smtplb as possible duplicates)"
    judge("0 lost, 0 duplicated in every row (failover included)", lost,
          lost == 0 and dup == 0, shown)
    return table(["target", "this run", "verdict"], lines)


def failover_table(doc: dict) -> str:
    rows = [[r["system"], f"{r['seconds']:.0f} s, {r['kills']} kills", f(r["msgs_per_s"], ".0f"),
             f(r["p50_ms"], ".2f"), f(r["p99_ms"], ".2f"), str(r["failed"]), str(r["lost"]),
             str(r["duplicated"]), str(r.get("flagged_possible_duplicates", "–")),
             str(r["unconfirmed"])] for r in doc.get("failover", [])]
    return table(["system", "run", "msgs/s", "p50 ms", "p99 ms", "failed at the client",
                  "lost", "duplicated", "flagged possible duplicates", "unconfirmed"], rows)


def idle_table(doc: dict) -> str:
    rows = [[r["system"], r["state"], str(r["connections"]), f(r["rss_bytes_per_conn"], ".0f"),
             f(r["pss_bytes_per_conn"], ".0f")] for r in doc.get("idle", [])]
    return table(["system", "state", "connections", "RSS B/conn", "PSS B/conn"], rows)


def markdown(doc: dict, chart: str | None) -> str:
    env = doc["environment"]
    for w in doc["workloads"]:  # a results.json of compare.py, bench.py's predecessor
        w.setdefault("per_conn", 0 if w.get("reuse") else 1)
        w.setdefault("conns", w.get("sessions"))
        for k, v in (("seconds", 0), ("client", "smtp-source"), ("backend", "sink"),
                     ("tls", False), ("idle", False)):
            w.setdefault(k, v)
    wl = "\n".join(
        f"| {w['name']} | {w['size']} B | {w['per_conn'] or 'many'} | {w['conns']} | "
        f"{w['messages'] or str(w['seconds']) + ' s'} | {w['client']} | {w['backend']}"
        f"{' (TLS from smtplb)' if w.get('backend_tls') else ''} | {'yes' if w['tls'] else ''} |"
        for w in doc["workloads"] if not w["idle"])
    parts = [f"""\
# smtplb benchmark results

Written by `bench/run.sh` (`bench/bench.py`) on {doc['date']}; every figure
below comes from this one run ({doc['elapsed_s'] / 60:.0f} minutes, {doc['reps']}
repetitions interleaved, the order of the systems rotated each repetition;
medians, with min–max where they differ).  Load average before the run:
{' / '.join(f'{x:.2f}' for x in doc['load_before'])}.

## Environment

| | |
|---|---|
| CPU | {env['cpu']}, {env['cpus']} cores shared by the load generator, the sinks and the middle box |
| memory | {env['memory_gib']} GiB |
| OS, kernel | {env['os']}, {env['kernel']} |
| smtplb | {env['smtplb']}, {env['compiler']} |
| HAProxy | {env['haproxy']} |
| nginx | {env.get('nginx', 'not in this run')} |
| Postfix (smtp-source, smtp-sink) | {env['postfix']} |

## Workloads

| workload | message size | messages per connection | client connections | per run | client | backends | STARTTLS |
|---|---:|---|---:|---:|---|---|---|
{wl}

HAProxy (`mode tcp`, `balance roundrobin`), nginx's mail proxy (`smtp_auth
none`, an auth_http responder handing out the backends round robin) and
smtplb (`algorithm: round_robin` unless the row names another) each front
two backends: `smtp-sink` processes (`dump`: writing every message to a
file), a fast and a slow `fault_backend.py` (`fault`), or two private
Postfix with STARTTLS (`postfix`).  "direct" is the client straight to the
backends (split over two where the workload says so).  smtplb runs with its
defaults (one worker per core, pooled backend sessions, info-level logging
of every transaction to a file).

## Throughput, CPU, memory, latency

{main_table(doc)}

- **msgs/s**: accepted messages over the load client's wall time.  **CPU
  µs/msg**: utime+stime of the middle box (every process of it) over the
  run, per message.  **peak RSS**: its VmHWM.
- **p50/p99**: from `bench/smtp_load`: the run itself, or for smtp-source
  workloads a probe at moderate load (4 connections, the same size and
  messages per connection) right after it, against the same processes.
  One message per connection is timed from the connect to the 250 after
  the final dot; many per connection from MAIL to that 250.  **p99
  added**: over direct, same workload.
- **lost / dup**: what the backends stored (smtp-sink's counters, or every
  message id: dump files, fault_backend's store, Postfix's maillog) against
  what the clients had accepted, summed over the repetitions.
- Is the client the bottleneck?  **clients µs/msg**: the load clients' own
  CPU per message; **machine busy %**: both cores during the run (near 100:
  the machine, shared by everything, is the limit, not one process);
  **other %**: the part of that not charged to this run's processes (over
  ~10: other work disturbed the row); **smtp_load CPU %**: the latency
  client's CPU over its wall time.
"""]
    if chart:
        parts.append(f"![msgs/s and CPU per message by workload and system]({chart})\n")
    if doc.get("failover"):
        period = doc["failover"][0].get("kill_period_s", 4.0)
        parts.append(f"""\
## Failover: a backend killed with SIGKILL every few seconds

{failover_table(doc)}

smtp_load (20 connections, ~1 KB, one message per connection) through the
middle box while sink A is killed with SIGKILL every {period:g} s and
restarted on the same port 0.5 s later.  The sinks write every message to its own file
(`smtp-sink -d`), so this row's msgs/s is not comparable with the table
above.  Every X-Test-Id the client saw accepted is looked up in those files.
**failed at the client**: transactions the client saw fail (it reconnects
and sends the next).  **duplicated**: a message that arrived twice; smtplb
replays a message whose backend took the final dot and died before
answering (DESIGN.md: a replay risks a duplicate, not replaying risks a
loss, RFC 1047) and flags that transaction `possible_duplicate=yes` in its
log and in `smtplb_possible_duplicates_total`: **flagged possible
duplicates** counts those, so a duplicate beyond them would be a bug.  **unconfirmed**: arrived once but the client got no
250: the backend died after taking the message and before its reply (SMTP
cannot tell this case apart, RFC 1047; the client keeps the message and
retries it, so it may arrive twice then, by the client's doing).
""")
    if doc.get("idle"):
        parts.append(f"""\
## Memory per idle client connection

{idle_table(doc)}

200 warm-up connections, then {doc['idle'][0]['connections']}
more held open; the growth of the middle box's RSS and PSS (smaps_rollup)
divided by their number.  smtplb with one worker.  **banner**: connected, 220
read, nothing sent; **mail**: EHLO and MAIL FROM accepted (a transaction open;
smtplb contacts a backend at the first RCPT).  HAProxy holds a backend
connection for each client from the start.
""")
    parts.append(f"""\
## Targets

{targets(doc)}

## Commands

```
{chr(10).join(doc['commands'][:40])}
```
""")
    return "\n".join(parts)


# ---------------------------------------------------------------- chart


def chart(doc: dict, out: Path) -> None:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        system_python = "/usr/bin/python3"
        if sys.executable == system_python or not os.path.exists(system_python):
            print("report: matplotlib is missing (apt-get install python3-matplotlib); "
                  "no chart", file=sys.stderr)
            return
        saved = out.with_suffix(".json.tmp")
        saved.write_text(json.dumps(doc))
        try:
            subprocess.run([system_python, __file__, "--chart-only", str(saved), str(out)],
                           check=True)
        finally:
            saved.unlink(missing_ok=True)
        return
    draw(doc, out)


def draw(doc: dict, out: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    # The record set's throughput workloads, every system without variants.
    labels = list(dict.fromkeys(r["system"] for r in doc["rows"] if "/" not in r["system"]))
    names = [w["name"] for w in doc["workloads"] if w.get("set", "record") == "record"
             and not w.get("idle") and not w.get("kill_every")]
    by = {(r["workload"], r["system"]): r for r in doc["rows"]}
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(13, 4.8))
    palette = {"direct": "#9e9e9e", "haproxy": "#e08a2c", "nginx": "#3a9e4f"}
    others = iter(["#2c6fbb", "#9b3fb5", "#c23b3b", "#1f9e9e"])
    colors = {s: palette.get(s) or next(others, "#555555") for s in labels}

    def bars(ax, systems, key, ylabel, title):
        width = 0.8 / max(1, len(systems))
        middle = (len(systems) - 1) / 2
        for i, system in enumerate(systems):
            xs = [n + (i - middle) * width for n in range(len(names))]
            vals = [med((by.get((w, system)) or {}).get(key)) or 0 for w in names]
            ax.bar(xs, vals, width, label=system, color=colors[system])
        ax.set_yscale("log")
        ax.set_xticks(range(len(names)), names, rotation=20)
        ax.set_ylabel(ylabel)
        ax.set_title(title)
        ax.legend()

    bars(ax1, labels, "msgs_per_s", "messages per second (log scale)", "Throughput (median)")
    bars(ax2, [s for s in labels if s != "direct"], "cpu_us_per_msg",
         "CPU µs per message of the middle box (log scale)", "CPU per message (median)")
    fig.suptitle(f"{' vs '.join(labels)}, {doc['environment']['cpus']} cores, {doc['date']}")
    fig.tight_layout()
    fig.savefig(out, dpi=110)


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--chart-only":
        draw(json.loads(Path(sys.argv[2]).read_text()), Path(sys.argv[3]))
        sys.exit(0)
    if len(sys.argv) == 4:
        d = json.loads(Path(sys.argv[1]).read_text())
        Path(sys.argv[2]).write_text(markdown(d, Path(sys.argv[3]).name))
        chart(d, Path(sys.argv[3]))
        sys.exit(0)
    print(__doc__, file=sys.stderr)
    sys.exit(2)
