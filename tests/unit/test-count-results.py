# SPDX-License-Identifier: MIT
"""scripts/count-results: the totals scripts/test prints.  A skipped test is
counted as skipped, never as passed (issue 16); failures and timeouts are
failures; the failing test's output tail goes to the details file."""
import json
import os
import subprocess
import sys
import tempfile

SCRIPT = os.path.join(os.environ.get("DKIMSIGN_SOURCE", os.path.join(os.path.dirname(__file__), "..", "..")),
                      "scripts", "count-results")

CASES = [
    # (results in the log, expected "passed failed skipped")
    (["OK", "OK"], "2 0 0"),
    (["OK", "SKIP"], "1 0 1"),
    (["SKIP"], "0 0 1"),
    (["OK", "FAIL", "SKIP", "TIMEOUT"], "1 2 1"),
    (["EXPECTEDFAIL", "UNEXPECTEDPASS", "ERROR"], "1 2 0"),
    ([], "0 0 0"),
]


def run_case(results):
    with tempfile.TemporaryDirectory() as d:
        log = os.path.join(d, "testlog.json")
        with open(log, "w") as f:
            for i, r in enumerate(results):
                f.write(json.dumps({"name": f"t{i}", "result": r, "stdout": f"out of t{i}\n"}) + "\n")
        details = os.path.join(d, "details")
        p = subprocess.run([SCRIPT, "gcc", log, details], capture_output=True, text=True, timeout=30)
        assert p.returncode == 0, p.stderr
        text = open(details).read() if os.path.exists(details) else ""
        return p.stdout.splitlines(), text


def main():
    failed = 0
    for results, want in CASES:
        lines, details = run_case(results)
        ok = lines and lines[0] == want
        for i, r in enumerate(results):
            listed = f"gcc: t{i} ({r})" in lines[1:]
            ok = ok and listed == (r not in ("OK", "EXPECTEDFAIL"))
            ok = ok and (f"out of t{i}" in details) == (r not in ("OK", "EXPECTEDFAIL", "SKIP"))
        print(f"{'ok  ' if ok else 'FAIL'} {results} -> {lines}")
        failed += not ok
    print(f"{len(CASES) - failed} passed, {failed} failed")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
