# SPDX-License-Identifier: MIT
"""A real Prometheus server (Debian's prometheus package) and
dkimsign-exporter, on loopback at free ports, for tests/integration/
test-metrics.py and scripts/bench: Prometheus scrapes the exporters every
`interval`, and queries go through its HTTP API (/api/v1/query)."""
import json
import os
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request

PROMETHEUS = shutil.which("prometheus") or "/usr/bin/prometheus"


def free_tcp_port():
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_listening(port, proc, timeout=20):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"{proc.args[0]} exited with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.05)
    raise AssertionError(f"{proc.args[0]} did not listen on {port} within {timeout}s")


def http_get(url, headers=None, timeout=10):
    """(status, headers, body) of a GET; an HTTP error status is returned, not raised."""
    req = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.headers, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read()


class Exporter:
    """dkimsign-exporter on a free port; prefix runs it as another user."""

    def __init__(self, binary, daemon_socket, log_path, prefix=()):
        self.port = free_tcp_port()
        self.address = f"127.0.0.1:{self.port}"
        with open(log_path, "ab") as log:
            self.proc = subprocess.Popen([*prefix, binary, "--listen", self.address, "--socket", daemon_socket],
                                         stdout=log, stderr=log)
        wait_listening(self.port, self.proc)

    def get(self, path="/metrics", headers=None):
        return http_get(f"http://{self.address}{path}", headers)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(20)


class Prometheus:
    """A Prometheus server in directory `workdir` scraping `jobs` (name ->
    list of "host:port") every `interval`."""

    def __init__(self, workdir, jobs, interval="1s"):
        self.dir = workdir
        os.makedirs(workdir, exist_ok=True)
        self.port = free_tcp_port()
        config = os.path.join(workdir, "prometheus.yml")
        with open(config, "w") as f:
            f.write(f"global:\n  scrape_interval: {interval}\n  scrape_timeout: {interval}\n"
                    f"  evaluation_interval: {interval}\nscrape_configs:\n")
            for job, targets in jobs.items():
                f.write(f"  - job_name: {job}\n    static_configs:\n      - targets: {json.dumps(targets)}\n")
        self.log_path = os.path.join(workdir, "prometheus.log")
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen([PROMETHEUS, f"--config.file={config}",
                                          f"--storage.tsdb.path={os.path.join(workdir, 'data')}",
                                          f"--web.listen-address=127.0.0.1:{self.port}"],
                                         stdout=log, stderr=log)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"prometheus exited with {self.proc.returncode}:\n{self.log()}")
            try:
                if http_get(f"http://127.0.0.1:{self.port}/-/ready", timeout=2)[0] == 200:
                    return
            except OSError:
                pass
            time.sleep(0.1)
        raise AssertionError(f"prometheus not ready within 60s:\n{self.log()}")

    def log(self):
        with open(self.log_path, errors="replace") as f:
            return f.read()

    def query(self, expr):
        """The instant vector of expr now: a list of (labels, float value)."""
        url = f"http://127.0.0.1:{self.port}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
        status, _, body = http_get(url)
        doc = json.loads(body)
        if status != 200 or doc.get("status") != "success":
            raise AssertionError(f"query {expr}: {status} {body[:500]!r}")
        return [(r["metric"], float(r["value"][1])) for r in doc["data"]["result"]]

    def value(self, expr):
        """The one value of expr, or None when it has no series."""
        r = self.query(expr)
        if len(r) > 1:
            raise AssertionError(f"{expr}: {len(r)} series: {r}")
        return r[0][1] if r else None

    def wait_for(self, expr, want, timeout=30):
        """Wait until expr's one value is want (bounded); returns it."""
        deadline = time.monotonic() + timeout
        got = None
        while time.monotonic() < deadline:
            got = self.value(expr)
            if got == want:
                return got
            time.sleep(0.2)
        raise AssertionError(f"{expr} is {got}, not {want}, after {timeout}s")

    def targets(self):
        status, _, body = http_get(f"http://127.0.0.1:{self.port}/api/v1/targets")
        return json.loads(body)["data"]["activeTargets"]

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
