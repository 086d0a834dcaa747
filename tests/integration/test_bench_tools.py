"""The benchmark tools of bench/, so that the command the README gives for
issue 7's benchmark keeps working: smtp_load is built with the rest, the
driver loads, a small real comparison (smtp-source, smtp-sink, HAProxy, two
smtplb systems, failover and idle memory) runs end to end and counts every
message, and the report
judges the targets from the figures it is given.  The figures themselves
are not asserted: a CI host is no benchmark machine.
"""

import json
import os
import shutil
import subprocess
import sys
import tempfile
import unittest

from harness import REPO, SANITIZED, SMTPLB_BIN

BENCH = os.path.join(REPO, "bench")
# Built with smtplb (bench/ is part of the normal build; the sanitizer
# build leaves it out, and its tests then use the normal build's).
SMTP_LOAD = next((p for p in (os.path.join(os.path.dirname(SMTPLB_BIN), "bench", "smtp_load"),
                              os.path.join(REPO, "build", "bench", "smtp_load"))
                  if os.access(p, os.X_OK)),
                 os.path.join(os.path.dirname(SMTPLB_BIN), "bench", "smtp_load"))


def run(argv, timeout=300, **kw):
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, **kw)


class BenchToolsTest(unittest.TestCase):
    def test_smtp_load_is_built_and_documents_itself(self):
        self.assertTrue(os.access(SMTP_LOAD, os.X_OK), SMTP_LOAD)
        cp = run([SMTP_LOAD, "--help"])
        self.assertEqual(cp.returncode, 0, cp.stderr)
        self.assertIn("--ids-out", cp.stdout + cp.stderr)

    def test_the_driver_loads_and_lists_its_workloads(self):
        cp = run([sys.executable, os.path.join(BENCH, "bench.py"), "--help"])
        self.assertEqual(cp.returncode, 0, cp.stderr)
        for option in ("--reps", "--workloads", "--systems", "--smtplb", "--scale"):
            self.assertIn(option, cp.stdout)
        cp = run([sys.executable, os.path.join(BENCH, "bench.py"), "--list"])
        self.assertEqual(cp.returncode, 0, cp.stderr)
        for name in ("1KB x1", "failover", "idle", "TLS 1x1KB", "skewed", "MX"):
            self.assertIn(name, cp.stdout)

    @unittest.skipIf(SANITIZED, "a benchmark of a sanitizer build says nothing")
    @unittest.skipUnless(shutil.which("haproxy") and shutil.which("smtp-source"),
                         "needs haproxy and Postfix's smtp-source")
    def test_a_small_comparison_runs_end_to_end_and_counts_every_message(self):
        work = tempfile.mkdtemp(prefix="smtplb-it-bench-")
        self.addCleanup(shutil.rmtree, work, True)
        out, md = os.path.join(work, "r.json"), os.path.join(work, "R.md")
        # Two smtplb systems (the same binary under two labels), as for a
        # before/after comparison of a change in one run.
        cp = run([sys.executable, os.path.join(BENCH, "bench.py"),
                  "--smtplb", "a=" + SMTPLB_BIN, "--smtplb", "b=" + SMTPLB_BIN,
                  "--smtp-load", SMTP_LOAD, "--workloads", "1KB x1,100KB xN,failover,idle",
                  "--systems", "direct,haproxy,smtplb", "--reps", "2", "--scale", "0.01",
                  "--out", out, "--markdown", md])
        self.assertEqual(cp.returncode, 0, cp.stderr[-3000:])
        with open(out) as f:
            doc = json.load(f)
        runs = [r for r in doc["runs"] if r["workload"] in ("1KB x1", "100KB xN")]
        # Two repetitions, four systems, two workloads: every run succeeded
        # and the systems' order rotated between the repetitions.
        self.assertEqual(len(runs), 16)
        self.assertFalse([r for r in doc["runs"] if "error" in r])
        # A run that lost or doubled a message, with everything it measured
        # (sink counters, what smtplb logged), so that a failure explains itself.
        bad = [{k: r.get(k) for k in ("workload", "system", "rep", "accepted", "sink_counts",
                                      "lost", "duplicated", "unconfirmed", "smtplb_log",
                                      "failed", "errors", "messages")}
               for r in runs if r.get("lost") or r.get("duplicated")]
        self.assertEqual(bad, [], json.dumps(bad, indent=1)[:3000])
        orders = [[r["system"] for r in runs if r["rep"] == rep][:4] for rep in (0, 1)]
        self.assertNotEqual(orders[0], orders[1])
        self.assertEqual(sorted(orders[0]), ["a", "b", "direct", "haproxy"])
        for row in doc["rows"]:
            if row["workload"] == "idle":
                continue
            self.assertEqual((row["lost"], row["duplicated"]), (0, 0), row)
            self.assertGreater(row["msgs_per_s"][0], 0, row)
            self.assertIsNotNone(row["p99_ms"], row)
            if row["system"] != "direct":
                self.assertGreater(row["cpu_us_per_msg"][0], 0, row)
            if row["system"] == "b":
                self.assertIsNotNone(row["vs_base"], row)
        # The failover row killed a sink and found every accepted message once.
        self.assertEqual([f["system"] for f in doc["failover"]], ["haproxy", "a", "b"])
        for f in doc["failover"]:
            self.assertGreaterEqual(f["kills"], 1, f)
            # A sink killed after storing a message and before its 250 left
            # makes a copy smtplb cannot avoid (RFC 1047): it must be one
            # smtplb flagged as a possible duplicate, never an unflagged one.
            self.assertEqual(f["lost"], 0, f)
            self.assertLessEqual(f["duplicated"], f.get("flagged_possible_duplicates", 0), f)
            self.assertGreater(f["accepted"], 0, f)
        self.assertEqual({(i["system"], i["state"]) for i in doc["idle"]},
                         {("a", "banner"), ("a", "mail"), ("b", "banner"), ("b", "mail"),
                          ("haproxy", "banner")})
        with open(md) as f:
            text = f.read()
        for heading in ("## Environment", "## Throughput, CPU, memory, latency", "## Failover",
                        "## Memory per idle client connection", "## Targets", "| × a |"):
            self.assertIn(heading, text)

    def test_report_judges_each_target_from_the_figures(self):
        sys.path.insert(0, BENCH)
        self.addCleanup(sys.path.remove, BENCH)
        import report

        def row(w, s, mps, cpu, p99):
            return {"workload": w, "system": s, "msgs_per_s": (mps, mps, mps),
                    "cpu_us_per_msg": None if s == "direct" else (cpu, cpu, cpu),
                    "p99_ms": (p99, p99, p99), "lost": 0, "duplicated": 0}

        rows = [row("1KB x1", "direct", 1000, None, 1.0), row("1KB x1", "haproxy", 500, 100, 2.0),
                row("1KB x1", "smtplb", 700, 90, 1.5)]
        for r in rows:
            r["vs_haproxy"] = r["msgs_per_s"][0] / 500
            r["vs_direct"] = r["msgs_per_s"][0] / 1000
            r["cpu_vs_haproxy"] = None if r["cpu_us_per_msg"] is None else r["cpu_us_per_msg"][0] / 100
            r["p99_added_ms"] = None if r["system"] == "direct" else r["p99_ms"][0] - 1.0
        doc = {"rows": rows, "workloads": [{"name": "1KB x1"}],
               "idle": [{"system": "smtplb", "state": "banner", "rss_bytes_per_conn": 900.0}],
               "failover": [{"lost": 0, "duplicated": 1}]}
        lines = report.targets(doc).splitlines()

        def verdict(prefix):
            hits = [ln for ln in lines if ln.startswith("| " + prefix)]
            self.assertEqual(len(hits), 1, (prefix, lines))
            return hits[0].rsplit("|", 2)[1].strip()

        self.assertEqual(verdict("1 KB, one per connection"), "met")  # 1.4x
        self.assertEqual(verdict("1KB x1: CPU per message"), "met")  # 0.9x
        self.assertEqual(verdict("1 KB: p99 added"), "met")  # +0.5 ms
        self.assertEqual(verdict("idle connection, banner"), "met")  # 900 B
        self.assertEqual(verdict("0 lost"), "**missed**")  # the failover duplicate


if __name__ == "__main__":
    unittest.main()
