#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""dkimsignd's log through syslog, to a listener of the test's own (a Unix
datagram socket named by [daemon] syslog_socket, in place of /dev/log):
with log = syslog every line arrives as an RFC 3164 datagram of facility
daemon with the pid, the audit line with the same fields as on stderr
(uid, domain, selector, algorithm, Message-ID; a refusal's error); with
log = auto and stderr on /dev/null on a host without journald, the same;
with log = stderr, nothing reaches syslog; with [token] processes = 2,
each signer process logs there too."""
import os
import re
import socket
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
from harness import Sandbox, Skip, binary, run  # noqa: E402

MESSAGE = (b"From: Alice <alice@example.com>\r\nTo: bob@example.net\r\nSubject: syslog\r\n"
           b"Message-ID: <syslog-1@example.com>\r\n\r\nHello.\r\n")
# <PRI>Mmm dd hh:mm:ss ident[pid]: text; PRI = daemon (3 << 3) | priority
LINE = re.compile(rb"^<(\d+)>[A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d (dkimsignd(?:/\d+)?)\[(\d+)\]: (.*)$", re.S)


class Listener:
    """A syslog daemon of the test's own: a thread that reads every
    datagram at once (dkimsignd drops a line rather than wait for a full
    queue)."""

    def __init__(self, path):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(path)
        self.lines = []
        self.cond = threading.Condition()
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self):
        while True:
            try:
                data = self.sock.recv(65536)
            except OSError:
                return
            with self.cond:
                self.lines.append(data)
                self.cond.notify_all()

    def wait_for(self, needle, timeout=20):
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                for line in self.lines:
                    if needle in line:
                        return line
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"no syslog line with {needle!r} within {timeout}s: {self.lines}")
                self.cond.wait(left)

    def idents(self):
        with self.cond:
            return {m.group(2) for m in map(LINE.match, self.lines) if m}

    def close(self):
        self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()
        self.thread.join(5)


def box_with(log, processes=1):
    box = Sandbox()
    path = os.path.join(box.dir, "log.sock")
    with open(box.config) as f:
        text = f.read()
    text = text.replace("[daemon]\n", f"[daemon]\nlog = {log}\nsyslog_socket = {path}\n", 1)
    text = text.replace("sessions = 2\n", f"sessions = 2\nprocesses = {processes}\n", 1)
    with open(box.config, "w") as f:
        f.write(text)
    box.init_token()
    box.keygen("example.com", "s1")
    return box, Listener(path)


def check_line(raw, priority):
    m = LINE.match(raw)
    assert m, raw
    assert int(m.group(1)) == (3 << 3) | priority, raw
    return m


def test_syslog_lines_and_audit_fields():
    box, ls = box_with("syslog")
    try:
        box.start()
        assert box.sign(MESSAGE).returncode == 0
        refused = MESSAGE.replace(b"example.com", b"nokey.example")
        assert box.sign(refused).returncode != 0
        line = ls.wait_for(b"audit: signed")
        m = check_line(line, 6)
        assert int(m.group(3)) == box.daemon.pid, (m.group(3), box.daemon.pid)
        text = m.group(4).decode()
        for field in (f"uid={os.getuid()}", "domain=example.com", "selector=s1", "alg=rsa",
                      "message-id=<syslog-1@example.com>"):
            assert field in text, (field, text)
        assert re.search(r"time=\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", text), text
        refusal = check_line(ls.wait_for(b"audit: refused"), 6).group(4).decode()
        assert "domain=nokey.example" in refusal and 'error="no signing key' in refusal, refusal
        # Nothing went to stderr but what came before the configuration was read.
        assert "audit:" not in box.log(), box.log()
    finally:
        box.close()
        ls.close()


def test_auto_without_journald():
    if os.path.exists("/run/systemd/journal/socket"):
        raise Skip("journald runs here: log = auto keeps stderr")
    box, ls = box_with("auto")
    try:
        with open(os.devnull, "wb") as null:
            box.daemon = subprocess.Popen([binary("dkimsignd"), "--config", box.config], env=box.env,
                                          stdout=null, stderr=null)
        line = ls.wait_for(b"listening on", timeout=30)
        check_line(line, 6)
        deadline = time.monotonic() + 10
        while box.sign(MESSAGE).returncode != 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        ls.wait_for(b"audit: signed")
    finally:
        box.close()
        ls.close()


def test_stderr_sends_nothing():
    box, ls = box_with("stderr")
    try:
        box.start()
        assert box.sign(MESSAGE).returncode == 0
        box.stop()
        time.sleep(0.2)   # a datagram sent before the stop would be in by now
        assert ls.lines == [], ls.lines
        assert "audit: signed" in box.log(), box.log()
    finally:
        box.close()
        ls.close()


def test_signer_processes():
    box, ls = box_with("syslog", processes=2)
    try:
        box.start(timeout=60)
        ls.wait_for(b"dkimsignd/0[")
        ls.wait_for(b"dkimsignd/1[")
        assert {b"dkimsignd", b"dkimsignd/0", b"dkimsignd/1"} <= ls.idents(), ls.lines
    finally:
        box.close()
        ls.close()


if __name__ == "__main__":
    run([test_syslog_lines_and_audit_fields, test_auto_without_journald, test_stderr_sends_nothing,
         test_signer_processes])
