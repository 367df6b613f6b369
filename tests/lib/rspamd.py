# SPDX-License-Identifier: MIT
"""A private rspamd (Debian's, installed system-wide) on loopback for tests:
its own configuration directory over the packaged defaults (LOCAL_CONFDIR),
its own ports, run and log directories, and a DNS server of the test's
choosing; asked through rspamc.

    with Rspamd(dns.address, cache_dir) as r:
        symbols = r.symbols(message)        # {"ARC_ALLOW", "DKIM_TRACE", ...}

rspamd compiles its hyperscan databases at the first start, which takes
minutes on a busy machine; cache_dir keeps them (DBDIR) for the next run.
Nothing of the system's rspamd (its service, /var/lib/rspamd) is touched.
"""
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time

from dnsserver import free_port

RSPAMD = shutil.which("rspamd") or "/usr/bin/rspamd"
RSPAMC = shutil.which("rspamc") or "/usr/bin/rspamc"


def available():
    return os.access(RSPAMD, os.X_OK) and os.access(RSPAMC, os.X_OK)


class Rspamd:
    def __init__(self, dns_address, cache_dir, start_timeout=600):
        self.dir = tempfile.mkdtemp(prefix="dkimsign-rspamd-")
        self.cache_dir = cache_dir
        os.makedirs(cache_dir, exist_ok=True)
        for sub in ("local.d", "override.d", "run", "log"):
            os.makedirs(os.path.join(self.dir, sub))
        self.port = free_port()
        ports = {"normal": self.port, "controller": free_port(), "proxy": free_port()}
        for worker, port in ports.items():
            with open(os.path.join(self.dir, "override.d", f"worker-{worker}.inc"), "w") as f:
                f.write(f'bind_socket = "127.0.0.1:{port}";\ncount = 1;\n')
        with open(os.path.join(self.dir, "local.d", "options.inc"), "w") as f:
            f.write(f'dns {{\n  nameserver = ["{dns_address}"];\n  timeout = 2s;\n  retransmits = 2;\n}}\n')
        with open(os.path.join(self.dir, "local.d", "logging.inc"), "w") as f:
            f.write('level = "info";\n')
        self.log = os.path.join(self.dir, "log", "rspamd.log")
        out = open(os.path.join(self.dir, "log", "stdout"), "w")
        self.proc = subprocess.Popen(
            [RSPAMD, "-f", "-u", "root", "-g", "root", "-i", "-c", "/etc/rspamd/rspamd.conf",
             "--var", f"LOCAL_CONFDIR={self.dir}", "--var", f"DBDIR={cache_dir}",
             "--var", f"RUNDIR={self.dir}/run", "--var", f"LOGDIR={self.dir}/log"],
            stdout=out, stderr=out, stdin=subprocess.DEVNULL)
        out.close()
        self._wait_ready(start_timeout)

    def _wait_ready(self, timeout):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"rspamd exited with {self.proc.returncode}:\n{self.tail()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return
            except OSError:
                time.sleep(0.5)
        raise RuntimeError(f"rspamd did not listen within {timeout}s:\n{self.tail()}")

    def tail(self):
        try:
            with open(self.log, errors="replace") as f:
                return f.read()[-3000:]
        except FileNotFoundError:
            return ""

    def symbols(self, message):
        """The names of the symbols rspamd's scan of message gives."""
        p = subprocess.run([RSPAMC, "-h", f"127.0.0.1:{self.port}", "-t", "60", "-j", "symbols"], input=message,
                           capture_output=True, timeout=90)
        if p.returncode != 0:
            raise RuntimeError(f"rspamc failed: {p.stderr.decode(errors='replace')}")
        result = json.loads(p.stdout)
        return set(result.get("symbols", {}))

    def close(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
