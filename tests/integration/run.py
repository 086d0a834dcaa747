#!/usr/bin/env python3
"""run.py: runs smtplb's integration tests and prints a summary CI can read.

    python3 tests/integration/run.py                      # every test_*.py module
    python3 tests/integration/run.py test_bytes           # some modules
    python3 tests/integration/run.py test_failover.Failover.test_banner_421
    python3 tests/integration/run.py -k stall             # tests whose id contains "stall"
    python3 tests/integration/run.py -j 2                 # modules in 2 parallel processes

The binary is $SMTPLB_BIN (default: build/smtplb in the repository).  One line
per test (PASS, FAIL, ERROR, SKIP with its reason, XFAIL for a known smtplb bug
marked expectedFailure), then exactly `N passed, N failed` (`, N skipped` when
some were).  An expected failure counts as passed, an unexpected success as
failed.  The exit status is 0 only when none failed.  Failed tests keep their
work directory and print the tails of the logs (SMTPLB_IT_KEEP=1 keeps all).
"""

import argparse
import glob
import json
import os
import subprocess
import sys
import tempfile
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)


class LineResult(unittest.TestResult):
    """Prints one line per test as it ends; counts outcomes."""

    def __init__(self, out, verbose):
        super().__init__()
        self.out = out
        self.verbose = verbose
        self.passed = self.failed_n = self.skipped_n = 0
        self.started = {}
        self.failed_ids = set()

    def _name(self, test):
        return test.id()

    def _line(self, status, test, detail=""):
        key = getattr(test, "test_case", test).id()  # a subTest's own test
        took = time.monotonic() - self.started.get(key, time.monotonic())
        msg = "%s %s (%.1fs)" % (status, self._name(test), took)
        if detail:
            msg += ": " + detail
        self.out.write(msg + "\n")
        self.out.flush()

    def startTest(self, test):
        super().startTest(test)
        self.started[test.id()] = time.monotonic()

    def addSuccess(self, test):
        self.passed += 1
        self._line("PASS", test)

    def _fail(self, status, test, err):
        self.failed_n += 1
        exc = err[1]
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        self._line(status, test, first[:300])
        if self.verbose or status == "ERROR":
            self.out.write(self._exc_info_to_string(err, test))
        else:
            # The rest of the assertion's message: what a test printed to
            # explain itself (a row, a log tail) is what a CI log must keep.
            rest = str(exc).strip()[len(first):].strip()
            if rest:
                self.out.write("    " + rest[:4000].replace("\n", "\n    ") + "\n")
        self.out.flush()

    def addFailure(self, test, err):
        super().addFailure(test, err)
        self._fail("FAIL", test, err)

    def addError(self, test, err):
        super().addError(test, err)
        self._fail("ERROR", test, err)

    def addSubTest(self, test, subtest, err):
        # A failed subTest fails its test (counted once); addSuccess is then
        # not called for it.
        super().addSubTest(test, subtest, err)
        if err is None:
            return
        if test.id() in self.failed_ids:
            self.failed_n -= 1  # _fail counts again below
        self.failed_ids.add(test.id())
        status = "FAIL" if issubclass(err[0], test.failureException) else "ERROR"
        self._fail(status, subtest, err)

    def addSkip(self, test, reason):
        super().addSkip(test, reason)
        self.skipped_n += 1
        self._line("SKIP", test, reason)

    def addExpectedFailure(self, test, err):
        super().addExpectedFailure(test, err)
        self.passed += 1
        self._line("XFAIL", test, "known smtplb bug: " + str(err[1]).strip().splitlines()[0][:200])

    def addUnexpectedSuccess(self, test):
        super().addUnexpectedSuccess(test)
        self.failed_n += 1
        self._line("FAIL", test, "unexpected success: the known bug seems fixed; "
                   "remove @unittest.expectedFailure")


def load(names, patterns):
    loader = unittest.defaultTestLoader
    if patterns:
        loader.testNamePatterns = ["*%s*" % p for p in patterns]
    if not names:
        names = sorted(os.path.basename(p)[:-3] for p in glob.glob(os.path.join(HERE, "test_*.py")))
    suite = unittest.TestSuite()
    for n in names:
        n = n[:-3] if n.endswith(".py") else n
        suite.addTests(loader.loadTestsFromName(n))
    return suite


def run_here(names, patterns, verbose, out):
    result = LineResult(out, verbose)
    load(names, patterns).run(result)
    return result.passed, result.failed_n, result.skipped_n


def main():
    ap = argparse.ArgumentParser(description="smtplb integration tests")
    ap.add_argument("names", nargs="*", help="modules or test ids (default: all test_*.py)")
    ap.add_argument("-k", dest="patterns", action="append", default=[],
                    help="only tests whose id contains this (repeatable)")
    ap.add_argument("-v", dest="verbose", action="store_true", help="tracebacks for failures")
    ap.add_argument("-j", dest="jobs", type=int, default=int(os.environ.get("SMTPLB_IT_JOBS", "1")),
                    help="run modules in this many parallel processes")
    ap.add_argument("--counts-json", help=argparse.SUPPRESS)
    args = ap.parse_args()

    if args.counts_json:
        # A worker of -j: run, then report the counts to the parent.
        p, f, s = run_here(args.names, args.patterns, args.verbose, sys.stdout)
        with open(args.counts_json, "w") as fh:
            json.dump([p, f, s], fh)
        return 0

    t0 = time.monotonic()
    names = args.names or sorted(os.path.basename(p)[:-3]
                                 for p in glob.glob(os.path.join(HERE, "test_*.py")))
    if args.jobs <= 1 or len(names) <= 1:
        passed, failed, skipped = run_here(names, args.patterns, args.verbose, sys.stdout)
    else:
        passed = failed = skipped = 0
        # Longest first (by file size, a fair proxy), in `jobs` processes.
        names.sort(key=lambda n: -os.path.getsize(os.path.join(HERE, n.split(".")[0] + ".py")))
        pending = list(names)
        running = []
        while pending or running:
            while pending and len(running) < args.jobs:
                n = pending.pop(0)
                fd, counts = tempfile.mkstemp(prefix="smtplb-it-counts-")
                os.close(fd)
                # Output to a file, not a pipe: a pipe nobody reads would block.
                out = tempfile.TemporaryFile()
                cmd = [sys.executable, os.path.abspath(__file__), "--counts-json", counts, n]
                for p in args.patterns:
                    cmd += ["-k", p]
                if args.verbose:
                    cmd.append("-v")
                running.append((subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT),
                                counts, n, out))
            # Print a finished worker's output whole, so lines never interleave.
            for item in list(running):
                proc, counts, n, out = item
                if proc.poll() is None:
                    continue
                out.seek(0)
                sys.stdout.write(out.read().decode("utf-8", "replace"))
                out.close()
                sys.stdout.flush()
                try:
                    with open(counts) as fh:
                        p, f, s = json.load(fh)
                except (OSError, ValueError):
                    p, f, s = 0, 1, 0
                    print("ERROR %s: the worker died (exit status %s)" % (n, proc.returncode))
                os.unlink(counts)
                passed, failed, skipped = passed + p, failed + f, skipped + s
                running.remove(item)
            if running:
                try:
                    running[0][0].wait(0.05)
                except subprocess.TimeoutExpired:
                    pass
    summary = "%d passed, %d failed" % (passed, failed)
    if skipped:
        summary += ", %d skipped" % skipped
    sys.stderr.write("(%.0fs)\n" % (time.monotonic() - t0))
    print(summary)
    return 0 if failed == 0 and (passed or skipped) else 1


if __name__ == "__main__":
    sys.exit(main())
