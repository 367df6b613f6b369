#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""[token] processes = 2: a supervisor and two signer processes, each with
its own token login, on one socket (daemon/procs.h).  Under
systemd-socket-activate only the supervisor speaks to systemd (checked by
the sender's credentials), and only once both signers serve; both sign,
every signature verifies; SIGHUP and a RELOAD request reach both (a key
added to the token signs from every process); a signer killed with
SIGKILL is started again while the clients go on; SIGTERM stops all of
them; a supervisor killed outright takes its signers with it."""
import os
import re
import signal
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
from harness import Notify, Sandbox, dkimpy_verify, run  # noqa: E402

MESSAGE = (b"From: Alice <alice@{domain}>\r\nTo: bob@example.net\r\nSubject: processes\r\n"
           b"Date: Sun, 29 Nov 2026 10:00:00 +0000\r\nMessage-ID: <p@example.com>\r\n\r\nHello.\r\n")
CONFIG = "[token]\nprocesses = 2\n"


def message(domain):
    return MESSAGE.replace(b"{domain}", domain.encode())


def children(pid):
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(p) for p in f.read().split()]
    except FileNotFoundError:
        return []


def wait_until(cond, what, timeout=20):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def sign_many(box, domain, clients=8, each=10):
    """clients dkimsign processes at once, each signing `each` messages;
    every result, and every signature must verify."""
    results, lock = [], threading.Lock()

    def client():
        for _ in range(each):
            p = box.sign(message(domain))
            with lock:
                results.append(p)

    threads = [threading.Thread(target=client) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    bad = [p.stderr for p in results if p.returncode != 0]
    assert not bad, bad[:3]
    assert all(dkimpy_verify(p.stdout, box.keytable) for p in results)
    return results


def signed_by(box):
    """How many audit 'signed' lines each signer process logged."""
    counts = {}
    for m in re.finditer(r"dkimsignd/(\d+): audit: signed", box.log()):
        counts[m.group(1)] = counts.get(m.group(1), 0) + 1
    return counts


def test_supervisor_and_signers():
    with Sandbox(extra_config=CONFIG) as box:
        box.init_token()
        box.keygen("example.com", "p1")
        notify = Notify(os.path.join(box.dir, "notify.sock"))
        proc = box.socket_activate(notify)
        box.daemon = proc
        try:
            p = box.sign(message("example.com"))   # the first connection starts the daemon
            assert p.returncode == 0, p.stderr + box.log().encode()
            assert notify.wait_for("READY=1") == proc.pid
            # Ready only once both signers serve, in order (one login at a time).
            log_text = box.log()
            ready_at = log_text.index("2 signer processes serve")
            assert log_text.index("signer process 0 (pid") < log_text.index("signer process 1 (pid") < ready_at
            kids = children(proc.pid)
            assert len(kids) == 2, kids

            sign_many(box, "example.com", clients=8, each=12)
            by = signed_by(box)
            assert set(by) == {"0", "1"} and sum(by.values()) == 97, by
            print(f"  signed per process: {by}")

            # SIGHUP to the supervisor: a key added since signs from both.
            box.keygen("example.org", "p2")
            before = box.log().count("reloaded: 2 signing key(s)")
            proc.send_signal(signal.SIGHUP)
            wait_until(lambda: box.log().count("reloaded: 2 signing key(s)") == before + 2, "two reloads")
            sign_many(box, "example.org", clients=4, each=8)

            # A RELOAD request reaches one signer; it has the other follow.
            box.keygen("example.net", "p3")
            out = box.ctl("reload").stdout
            assert "3 signing key(s)" in out, out
            wait_until(lambda: box.log().count("reloaded: 3 signing key(s)") == 2, "the other signer's reload")
            sign_many(box, "example.net", clients=4, each=8)

            # Only the supervisor spoke to systemd.
            assert {pid for pid, _ in notify.messages} == {proc.pid}, notify.messages

            # A signer killed outright is replaced; the clients see no error.
            victim = kids[1]
            os.kill(victim, signal.SIGKILL)
            wait_until(lambda: len(children(proc.pid)) == 2 and victim not in children(proc.pid), "a new signer")
            assert "signer process 1 was killed by signal 9; starting it again" in box.log(), box.log()[-2000:]
            sign_many(box, "example.com", clients=4, each=8)

            # SIGTERM: everything stops, cleanly.
            kids = children(proc.pid)
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(30) == 0, box.log()[-3000:]
            assert notify.wait_for("STOPPING=1") == proc.pid
            for k in kids:
                assert not os.path.exists(f"/proc/{k}") or open(f"/proc/{k}/stat").read().split()[2] == "Z", k
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            box.daemon = None


def test_signers_die_with_the_supervisor():
    with Sandbox(extra_config=CONFIG) as box:
        box.init_token()
        box.keygen("example.com", "p1")
        box.start()
        p = box.sign(message("example.com"))
        assert p.returncode == 0, p.stderr
        wait_until(lambda: "2 signer processes serve" in box.log(), "both signers")
        kids = children(box.daemon.pid)
        assert len(kids) == 2, kids
        box.daemon.kill()
        box.daemon.wait()
        box.daemon = None
        wait_until(lambda: not any(os.path.exists(f"/proc/{k}") for k in kids), "the signers to exit", timeout=30)


def test_bad_pin_fails_start_up():
    with Sandbox(extra_config=CONFIG) as box:
        box.init_token()
        box.keygen("example.com", "p1")
        with open(box.pin_file, "w") as f:
            f.write("wrong-pin\n")
        try:
            box.start(timeout=20)
            # The socket listens before the signers log in: wait for the exit.
            box.daemon.wait(20)
        except AssertionError:
            pass
        assert box.daemon.poll() == 1, box.log()
        assert "dkimsignd/0: login to token" in box.log() and "did not start" in box.log(), box.log()
        box.daemon = None


if __name__ == "__main__":
    run([test_supervisor_and_signers, test_signers_die_with_the_supervisor, test_bad_pin_fails_start_up])
