#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""scripts/quickstart as a new user runs it (issue 16), on a sandbox of the
test's own and the build under test:

- its daemon makes no DNS lookup (every connect/send of the daemon traced
  with strace: nothing to port 53);
- dkimsignctl works on the sandbox with the command quickstart prints and
  no SOFTHSM2_CONF in the environment;
- after `dkimsignctl keygen --algorithm ed25519` a rerun verifies both
  signatures, each against its own key's record read from the token;
- a socket file left behind by an earlier daemon does not make quickstart
  sign before the new daemon answers.
"""
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
from harness import BUILD, binary, run  # noqa: E402

SOURCE = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
QUICKSTART = os.path.join(SOURCE, "scripts", "quickstart")


class Quickstart:
    """A sandbox of the test's own, driven through scripts/quickstart."""

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="dkimsign-quickstart-")
        self.sandbox = os.path.join(self.dir, "sandbox")
        self.conf = os.path.join(self.sandbox, "dkimsignd.conf")
        # What a user has: no SOFTHSM2_CONF, nothing else exported.
        self.env = {k: v for k, v in os.environ.items() if k != "SOFTHSM2_CONF"}
        self.env.update(DKIMSIGN_SANDBOX=self.sandbox, DKIMSIGN_BUILD_DIR=os.path.abspath(BUILD))

    def run(self, *args, timeout=300):
        p = subprocess.run([QUICKSTART, *args], env=self.env, capture_output=True, text=True, timeout=timeout)
        return p.returncode, p.stdout + p.stderr

    def run_traced(self, timeout=300):
        """Quickstart under strace -f, which follows the daemon it leaves
        running: returns (rc, output, the daemon's traced network calls)."""
        out = os.path.join(self.dir, "out")
        rc_file = os.path.join(self.dir, "rc")
        trace = os.path.join(self.dir, "trace")
        for f in (rc_file, trace):
            if os.path.exists(f):
                os.unlink(f)
        env = dict(self.env)
        if os.environ.get("DKIMSIGN_SANITIZED") == "1":
            # LeakSanitizer cannot run under ptrace; the untraced runs below
            # keep it.
            env["ASAN_OPTIONS"] = env.get("ASAN_OPTIONS", "") + ":detect_leaks=0"
        tracer = subprocess.Popen(
            ["strace", "-f", "-qq", "-e", "trace=connect,sendto,sendmsg,sendmmsg", "-o", trace,
             "bash", "-c", f'"$0" > "{out}" 2>&1; echo $? > "{rc_file}"', QUICKSTART],
            env=env, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while not os.path.exists(rc_file) or not open(rc_file).read().strip():
            assert tracer.poll() is None or os.path.exists(rc_file), "strace ended without quickstart's status"
            assert time.monotonic() < deadline, "quickstart did not finish"
            time.sleep(0.2)
        rc = int(open(rc_file).read())
        # The daemon stops, and with it the tracer.
        self.run("--stop")
        tracer.wait(timeout=60)
        return rc, open(out).read(), open(trace).read()

    def ctl(self, *args):
        return subprocess.run([binary("dkimsignctl"), "--config", self.conf, *args], env=self.env,
                              capture_output=True, text=True, timeout=120)

    def close(self):
        self.run("--stop")
        shutil.rmtree(self.dir, ignore_errors=True)


def test_quickstart():
    q = Quickstart()
    try:
        rc, out, trace = q.run_traced()
        assert rc == 0, out
        assert "signature 1: pass" in out, out
        dns = [line for line in trace.splitlines() if "htons(53)" in line]
        assert not dns, f"the sandbox daemon looked DNS up: {dns[:3]}"

        # dkimsignctl as quickstart prints it, no environment.
        assert f"--config {q.conf} list" in out, out
        p = q.ctl("list")
        assert p.returncode == 0, p.stdout + p.stderr
        assert "quickstart._domainkey.example.com" in p.stdout, p.stdout

        # A second key, then a rerun: both signatures verify.
        p = q.ctl("keygen", "--domain", "example.com", "--selector", "edquickstart", "--algorithm", "ed25519")
        assert p.returncode == 0, p.stdout + p.stderr
        rc, out = q.run()
        assert rc == 0, out
        assert "signature 1: pass" in out and "signature 2: pass" in out, out
        assert not re.search(r"signature \d+: FAIL", out), out

        # A stale socket file from a daemon that is gone.
        rc, out = q.run("--stop")
        assert rc == 0, out
        sock = os.path.join(q.sandbox, "dkimsignd.sock")
        if os.path.exists(sock):
            os.unlink(sock)
        stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        stale.bind(sock)
        stale.close()
        rc, out = q.run()
        assert rc == 0, out
        assert "signature 1: pass" in out and "signature 2: pass" in out, out
    finally:
        q.close()


if __name__ == "__main__":
    run([test_quickstart])
