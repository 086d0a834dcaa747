"""failover.py: the failover row of bench/compare.py.

smtp_load sends ~1 KB messages, one per connection, through the middle box
(smtplb or HAProxy) to two smtp-sinks for a fixed time, while sink A is
killed with SIGKILL every KILL_PERIOD seconds (a third of the run, if that
is shorter) and restarted on the same port RESTART_AFTER seconds later.  Every message carries an X-Test-Id; the sinks
dump each message to its own file (smtp-sink -d), and at the end the ids
the client saw accepted are matched against the ids that arrived:

  lost         accepted by the middle box (250 after the dot), found at no sink
  duplicated   found at the sinks more than once (smtplb flags each
               transaction it replayed after a silent final dot as a possible
               duplicate: the RFC 1047 window, which no relay can close)
  unconfirmed  found at a sink once, but the client got no 250 (the backend
               died after taking the message and before its reply reached the
               middle box: SMTP cannot tell, RFC 1047; the client retries it)
  failed       transactions the client saw fail (it reconnects and goes on)
"""

from __future__ import annotations

import collections
import os
import re
import signal
import sys
import threading
import time
from pathlib import Path

from benchlib import BenchError, Runner, run_smtp_load

KILL_PERIOD = 4.0
RESTART_AFTER = 0.5
CONNECTIONS = 20
ID_RE = re.compile(rb"^X-Test-Id: (\S+)", re.M)


def killer(runner: Runner, args, sink: dict, dump: Path, stop: threading.Event,
           kills: list[float]) -> None:
    """SIGKILLs sink A every period and starts it again on its port."""
    import compare  # noqa: E402 (its start_sink)
    period = min(KILL_PERIOD, args.failover_seconds / 3)
    while not stop.wait(period):
        sink["proc"].send_signal(signal.SIGKILL)
        sink["proc"].wait()
        kills.append(time.monotonic())
        if stop.wait(RESTART_AFTER):
            return
        p, _out, _port = compare.start_sink(runner, args, f"{sink['name']}-{len(kills)}",
                                            port=sink["port"], dump_dir=dump)
        sink["proc"] = p


def arrived_ids(dumps: list[Path]) -> collections.Counter:
    seen: collections.Counter = collections.Counter()
    for d in dumps:
        for entry in os.scandir(d):
            with open(entry.path, "rb") as f:
                seen.update(m.decode() for m in ID_RE.findall(f.read()))
    return seen


def measure(runner: Runner, args, system: str) -> dict:
    import compare  # noqa: E402
    tag = f"failover-{system}"
    dumps = [runner.workdir / f"{tag}-dumpA", runner.workdir / f"{tag}-dumpB"]
    pa, _o, port_a = compare.start_sink(runner, args, f"{tag}-sinkA", dump_dir=dumps[0])
    pb, _o, port_b = compare.start_sink(runner, args, f"{tag}-sinkB", dump_dir=dumps[1])
    sink_a = {"proc": pa, "port": port_a, "name": f"{tag}-sinkA"}
    box, port, log, _cfg = compare.start_middle_box(runner, args, system, tag, [port_a, port_b])
    ids_file = runner.workdir / f"{tag}.ids"
    stop = threading.Event()
    kills: list[float] = []
    t = threading.Thread(target=killer, args=(runner, args, sink_a, dumps[0], stop, kills))
    try:
        t.start()
        argv = [args.smtp_load, "--server", f"127.0.0.1:{port}", "-c", str(CONNECTIONS),
                "-m", "1", "-s", "1024", "-d", str(args.failover_seconds), "--threads", "1",
                "--id-prefix", tag, "--ids-out", str(ids_file), "--timeout", "30",
                "--error-pause", "0.05"]
        doc = run_smtp_load(runner, argv, tag, args.failover_seconds + 120)
    finally:
        stop.set()
        t.join()
    try:
        accepted = set(ids_file.read_text().split())
        # smtp-sink writes a message's file before it answers the final dot,
        # and smtp_load has ended: everything that arrived is on disk.
        seen = arrived_ids(dumps)
        if box.poll() is not None:
            raise BenchError(f"{tag}: {system} exited with status {box.returncode}")
        res = {
            "system": system, "seconds": args.failover_seconds, "kills": len(kills),
            "kill_period_s": min(KILL_PERIOD, args.failover_seconds / 3),
            "accepted": len(accepted), "msgs_per_s": doc["msgs_per_s"],
            "p50_ms": doc["connect_latency_ms"]["p50"], "p99_ms": doc["connect_latency_ms"]["p99"],
            "failed": doc["messages_failed"], "errors": doc.get("errors", {}),
            "lost": len(accepted - set(seen)),
            "duplicated": sum(1 for n in seen.values() if n > 1),
            "unconfirmed": sum(1 for i in seen if i not in accepted),
            "client_cpu_pct_of_wall": doc["cpu"]["pct_of_wall"],
        }
        if system == "smtplb":
            res["smtplb_log"] = compare.scan_smtplb_log(log)
            # DESIGN.md: a backend that took the final dot and died before
            # answering may have the mail; smtplb replays it and flags the
            # transaction.  Only an unflagged duplicate would break a promise.
            with open(log, errors="replace") as f:
                res["flagged_possible_duplicates"] = sum(
                    1 for line in f if "event=transaction" in line and "possible_duplicate=yes" in line)
        else:
            res["flagged_possible_duplicates"] = 0
        return res
    finally:
        runner.stop(box)
        runner.stop(sink_a["proc"])
        runner.stop(pb)


def run(runner: Runner, args) -> list[dict]:
    out = []
    for system in ("haproxy", "smtplb"):
        print(f"  failover   {system:8}", end=" ", flush=True, file=sys.stderr)
        r = measure(runner, args, system)
        print(f"{r['msgs_per_s']:8.0f} msg/s, {r['kills']} kills, lost {r['lost']}, "
              f"dup {r['duplicated']}, client saw {r['failed']} failures", file=sys.stderr)
        out.append(r)
    return out

