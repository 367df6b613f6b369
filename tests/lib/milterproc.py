# SPDX-License-Identifier: MIT
"""dkimsign-milter run by a test (test-milter.py, test-sendmail.py,
test-postfix-cases.py): its configuration, socket and log in a directory
of the test's, the log read back for the lines that say why a message was
or was not signed."""
import os
import re
import subprocess
import sys
import time

from harness import binary


def require(mta):
    """Skip the test (exit 77) unless it runs as root (a private MTA needs
    it) and dkimsign-milter was built (libmilter)."""
    if os.geteuid() != 0:
        print(f"SKIP: a private {mta} needs root")
        sys.exit(77)
    try:
        binary("dkimsign-milter")
    except FileNotFoundError:
        print("SKIP: dkimsign-milter not built (no libmilter)")
        sys.exit(77)


class Milter:
    """internal_networks: the value, or None to leave the key out (the
    default, none).  The tests that predate the what-is-signed rules sign
    loopback clients as internal."""

    def __init__(self, directory, dkimsignd_socket, name, internal_networks="127.0.0.0/8, ::1/128",
                 on_tempfail="tempfail", extra="", log_level="debug", socket=None):
        """socket: the path to listen on (default: after name), for a
        milter that takes over from a stopped one behind the same MTA."""
        self.socket = socket or os.path.join(directory, name + ".sock")
        if os.path.exists(self.socket):
            os.unlink(self.socket)
        self.config = os.path.join(directory, name + ".conf")
        self.log_path = os.path.join(directory, name + ".log")
        networks = "" if internal_networks is None else f"internal_networks = {internal_networks}\n"
        with open(self.config, "w") as f:
            f.write(f"[milter]\nsocket = unix:{self.socket}\ndkimsignd_socket = {dkimsignd_socket}\n"
                    f"{networks}on_tempfail = {on_tempfail}\nlog_level = {log_level}\n{extra}")
        # The milter refuses a configuration others may write.
        os.chmod(self.config, 0o644)
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen([binary("dkimsign-milter"), "--config", self.config], stdout=log, stderr=log)
        log.close()
        deadline = time.monotonic() + 10
        while not os.path.exists(self.socket):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"dkimsign-milter did not start:\n{self.log()}")
            time.sleep(0.05)
        os.chmod(self.socket, 0o666)    # Postfix's smtpd runs as user postfix

    def log(self):
        with open(self.log_path, errors="replace") as f:
            return f.read()

    def unsigned_lines(self, reason, queue_id=None, priority=6):
        """The lines that say a message was left unsigned for reason (at
        <6>, info, unless told), of one queue id if given."""
        qid = re.escape(queue_id) if queue_id else r"\S+"
        return re.findall(rf"(?m)^<{priority}>dkimsign-milter: {qid}: not signed: {re.escape(reason)}.*$",
                          self.log())

    def signing_lines(self, queue_id):
        """The debug lines that say why a message is being signed."""
        return re.findall(rf"(?m)^<7>dkimsign-milter: {re.escape(queue_id)}: signing: .*$", self.log())

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        assert "Sanitizer" not in self.log() and "runtime error" not in self.log(), self.log()
