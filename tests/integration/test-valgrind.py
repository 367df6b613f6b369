#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""dkimsignd under valgrind: sign with both algorithms, refuse bad
requests, survive protocol garbage, stop on SIGTERM; valgrind must report
no error and no leak of ours (SoftHSM's own are suppressed, see
tests/valgrind.supp)."""
import os
import re
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
import harness  # noqa: E402
import wire  # noqa: E402
from harness import Sandbox, dkimpy_verify, run  # noqa: E402

SUPP = os.path.join(os.path.dirname(__file__), "..", "valgrind.supp")
MESSAGE = (b"From: a@example.com\r\nTo: b@example.net\r\nSubject: s\r\n"
           b"Message-ID: <v@example.com>\r\n\r\nbody\r\n")


def test_daemon_under_valgrind():
    with Sandbox() as box:
        log = os.path.join(box.dir, "valgrind.log")
        harness.DAEMON_WRAPPER[:] = ["valgrind", "--leak-check=full", "--show-leak-kinds=definite,indirect",
                                     "--errors-for-leak-kinds=definite,indirect", "--track-fds=no",
                                     f"--suppressions={SUPP}", f"--log-file={log}"]
        try:
            box.init_token()
            box.keygen("example.com", "r", "rsa")
            box.keygen("example.com", "e", "ed25519")
            box.start(timeout=120)
            for i in range(20):
                p = box.sign(MESSAGE.replace(b"<v@", b"<v%d@" % i))
                assert p.returncode == 0, p.stderr
            assert dkimpy_verify(p.stdout, box.keytable, 0) and dkimpy_verify(p.stdout, box.keytable, 1)
            assert box.sign(b"To: x@example.com\r\n\r\nx\r\n").returncode == 65
            assert box.sign(MESSAGE.replace(b"example.com", b"example.org")).returncode == 65
            c = wire.Conn(box.socket, timeout=60)
            c.send(wire.hello() + b"\xff\xff\xff\xff")
            c.recv_frame()
            c.closed_by_peer()
            c.close()
            c = wire.Conn(box.socket, timeout=60)
            c.send(wire.hello() + wire.sign(2, b"From: a@example.com\r\n")[:20])
            c.close()
            assert box.stop(timeout=120) == 0
        finally:
            harness.DAEMON_WRAPPER[:] = []
        report = open(log).read()
        summary = re.search(r"ERROR SUMMARY: (\d+) errors", report)
        assert summary, report[-2000:]
        lost = re.findall(r"(definitely|indirectly) lost: ([\d,]+) bytes", report)
        print(f"  valgrind: {summary.group(0)}; " + "; ".join(f"{k} lost {v} bytes" for k, v in lost))
        assert summary.group(1) == "0", report[-4000:]
        assert all(v == "0" for _, v in lost), report[-4000:]


if __name__ == "__main__":
    run([test_daemon_under_valgrind])
