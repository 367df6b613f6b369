#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""dkimsignd's metrics end to end: a real Prometheus server (Debian's
package) on loopback scrapes dkimsign-exporter every second while clients
sign and get refused, and its HTTP API shows exactly what was done:
signatures by domain and algorithm, refusals by reason (no key, denied,
quota), the request histogram's count equal to the messages signed, the
token histogram's to the signatures, every histogram's buckets
cumulative, the key series.  The same through two signer processes
(counts summed across them).  An exporter whose user may not read the
metrics gets 403 and its target is down (up == 0); dkimsignctl metrics
writes its file whole."""
import os
import re
import socket
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
from harness import Sandbox, binary, run  # noqa: E402
from prometheus import Exporter, Prometheus, http_get  # noqa: E402

# Message counts per kind; a.example has an RSA and an Ed25519 key, e.example
# an Ed25519 key, q.example an RSA key and a quota of one message a day,
# b.example keys but a list that leaves the test's uid out.
SIGNED_A, SIGNED_E, NO_KEY, DENIED, QUOTA_TRIED = 9, 5, 3, 2, 3
CONFIG = ("[domain b.example]\nallow = user:65534\n\n"
          "[domain q.example]\nquota_per_day = 1\n")


def message(domain, n):
    return (f"From: Sender <sender@{domain}>\r\nTo: rcpt@example.net\r\nSubject: metrics {n}\r\n"
            f"Message-ID: <m{n}@{domain}>\r\n\r\nBody {n}.\r\n").encode()


def make_box(processes=1):
    box = Sandbox(extra_config=CONFIG)
    if processes > 1:
        with open(box.config) as f:
            text = f.read().replace("sessions = 2\n", f"sessions = 2\nprocesses = {processes}\n", 1)
        with open(box.config, "w") as f:
            f.write(text)
    box.init_token()
    box.keygen("a.example", "r1")
    box.keygen("a.example", "e1", "ed25519")
    box.keygen("e.example", "e1", "ed25519")
    box.keygen("q.example", "r1")
    box.keygen("b.example", "r1")
    return box


def sign_all(box):
    """Clients on four threads at once; returns nothing, checks each exit."""
    jobs = ([("a.example", i, True) for i in range(SIGNED_A)] + [("e.example", i, True) for i in range(SIGNED_E)]
            + [("nokey.example", i, False) for i in range(NO_KEY)] + [("b.example", i, False) for i in range(DENIED)])
    failures = []

    def worker(part):
        for domain, n, ok in part:
            r = box.sign(message(domain, n))
            if (r.returncode == 0) != ok:
                failures.append((domain, n, r.returncode, r.stderr))

    threads = [threading.Thread(target=worker, args=(jobs[k::4],)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not failures, failures
    # One by one: the first gets the day's one message, the rest are refused.
    results = [box.sign(message("q.example", n)).returncode for n in range(QUOTA_TRIED)]
    assert results[0] == 0 and all(r != 0 for r in results[1:]), results


def check_series(prom):
    messages = SIGNED_A + SIGNED_E + 1
    prom.wait_for("dkimsign_messages_signed_total", messages)
    prom.wait_for('dkimsign_refusals_total{reason="quota"}', QUOTA_TRIED - 1)
    want = {("a.example", "rsa-sha256"): SIGNED_A, ("a.example", "ed25519-sha256"): SIGNED_A,
            ("e.example", "ed25519-sha256"): SIGNED_E, ("q.example", "rsa-sha256"): 1}
    got = {(m["domain"], m["algorithm"]): v for m, v in prom.query("dkimsign_signatures_total")}
    assert got == want, got
    refusals = {m["reason"]: v for m, v in prom.query("dkimsign_refusals_total")}
    assert refusals["no_key"] == NO_KEY and refusals["denied"] == DENIED, refusals
    assert sum(refusals.values()) == NO_KEY + DENIED + QUOTA_TRIED - 1, refusals
    assert prom.value('dkimsign_request_duration_seconds_count{outcome="signed"}') == messages
    assert prom.value('dkimsign_request_duration_seconds_count{outcome="not_signed"}') == \
        NO_KEY + DENIED + QUOTA_TRIED - 1
    for alg in ("rsa-sha256", "ed25519-sha256"):
        sigs = sum(v for (d, a), v in want.items() if a == alg)
        assert prom.value(f'dkimsign_token_sign_duration_seconds_count{{algorithm="{alg}"}}') == sigs, alg
    # Buckets: cumulative in le, +Inf equal to _count, a positive _sum.
    for name in ("dkimsign_request_duration_seconds", "dkimsign_token_sign_duration_seconds"):
        groups = {}
        for m, v in prom.query(f"{name}_bucket"):
            key = tuple(sorted((k, x) for k, x in m.items() if k not in ("le", "__name__")))
            groups.setdefault(key, []).append((float(m["le"]), v))
        assert groups, name
        for key, buckets in groups.items():
            buckets.sort()
            values = [v for _, v in buckets]
            assert values == sorted(values), (name, key, buckets)
            assert buckets[-1][0] == float("inf")
            sel = ",".join(f'{k}="{x}"' for k, x in key if k not in ("instance", "job"))
            assert prom.value(f"{name}_count{{{sel}}}") == values[-1], (name, key)
    assert prom.value('dkimsign_request_duration_seconds_sum{outcome="signed"}') > 0
    keys = {(m["domain"], m["selector"]): m["state"] for m, v in prom.query("dkimsign_key_state") if v == 1}
    assert len(keys) == 5 and keys[("a.example", "r1")] == "pending", keys
    prom.wait_for('count(dkimsign_key_dns_result{result="missing"})', 5)
    assert prom.value("dkimsign_open_connections") is not None
    assert prom.value('up{job="dkimsign"}') == 1


def scrape_session(box, processes):
    box.start(timeout=60)
    exporter = Exporter(binary("dkimsign-exporter"), box.socket, os.path.join(box.dir, "exporter.log"))
    prom = None
    try:
        prom = Prometheus(os.path.join(box.dir, "prometheus"), {"dkimsign": [exporter.address]})
        prom.wait_for('up{job="dkimsign"}', 1)
        sign_all(box)
        check_series(prom)
        assert prom.value("dkimsign_processes") == processes
        # Prometheus asked for, and parsed, OpenMetrics.
        health = [t for t in prom.targets() if t["labels"]["job"] == "dkimsign"]
        assert health and health[0]["health"] == "up" and not health[0]["lastError"], health
        status, headers, body = exporter.get(headers={"Accept": "application/openmetrics-text; version=1.0.0"})
        assert status == 200 and headers["Content-Type"].startswith("application/openmetrics-text"), headers
        assert body.endswith(b"# EOF\n")
        status, headers, body = exporter.get()
        assert status == 200 and headers["Content-Type"].startswith("text/plain; version=0.0.4"), headers
        assert b"# EOF" not in body and b"# TYPE dkimsign_signatures_total counter" in body
        assert exporter.get("/nothing")[0] == 404
    finally:
        if prom:
            prom.stop()
        exporter.stop()


def test_prometheus_sees_what_was_done():
    with make_box() as box:
        scrape_session(box, 1)


def test_summed_across_processes():
    with make_box(processes=2) as box:
        scrape_session(box, 2)


def test_exporter_without_permission():
    """As uid nobody (the socket open to everyone, [metrics] allow unset):
    the daemon refuses METRICS, the exporter answers 403 with its
    sentence, Prometheus marks the target down."""
    with make_box() as box:
        box.open_socket_to_others()
        box.start()
        exporter = Exporter(box.reachable_binary("dkimsign-exporter"), box.socket,
                            os.path.join(box.dir, "exporter.log"), prefix=box.as_user("nobody"))
        prom = None
        try:
            status, _, body = exporter.get()
            assert status == 403 and b"may read the metrics" in body, (status, body)
            prom = Prometheus(os.path.join(box.dir, "prometheus"), {"dkimsign": [exporter.address]})
            prom.wait_for('up{job="dkimsign"}', 0)
            assert "refused metrics request from uid=65534" in box.log(), box.log()
        finally:
            if prom:
                prom.stop()
            exporter.stop()
        # Whom [metrics] allow names may: the same exporter, allowed, is up.
        box.stop()
        with open(box.config, "a") as f:
            f.write("\n[metrics]\nallow = user:nobody\n")
        box.start()
        exporter = Exporter(box.reachable_binary("dkimsign-exporter"), box.socket,
                            os.path.join(box.dir, "exporter.log"), prefix=box.as_user("nobody"))
        try:
            assert exporter.get()[0] == 200
        finally:
            exporter.stop()


def test_exporter_not_held_by_idle_clients():
    """A local user who opens connections and sends nothing, or half a
    request, holding them as long as the exporter lets it, must not keep
    Prometheus' scrape waiting: more idle connections than the exporter
    keeps, yet a scrape is answered at once."""
    with make_box() as box:
        box.start()
        exporter = Exporter(binary("dkimsign-exporter"), box.socket, os.path.join(box.dir, "exporter.log"))
        idle = []
        try:
            for i in range(12):
                s = socket.create_connection(("127.0.0.1", exporter.port), timeout=5)
                if i % 2:
                    s.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")
                idle.append(s)
            start = time.monotonic()
            status, _, body = http_get(f"http://{exporter.address}/metrics", timeout=30)
            took = time.monotonic() - start
            assert status == 200 and b"dkimsign_signatures_total" in body, status
            assert took < 2, f"a scrape behind idle connections took {took:.1f} s"
        finally:
            for s in idle:
                s.close()
            exporter.stop()


def test_ctl_metrics_file():
    with make_box() as box:
        box.start()
        assert box.sign(message("a.example", 1)).returncode == 0
        out = os.path.join(box.dir, "dkimsign.prom")
        box.ctl("metrics", out)
        with open(out) as f:
            text = f.read()
        assert re.search(r'^dkimsign_signatures_total\{domain="a.example",algorithm="rsa-sha256"\} 1$', text, re.M)
        assert oct(os.stat(out).st_mode & 0o777) == "0o644"
        assert [n for n in os.listdir(box.dir) if n.startswith("dkimsign.prom.")] == []
        assert "# TYPE dkimsign_open_connections gauge" in box.ctl("metrics").stdout
        # A file already at the temporary name (left by a run that was
        # killed, or put there by another user of the directory) must not
        # stop the file being written: exec keeps the shell's pid.
        taken = subprocess.run(["/bin/sh", "-c", 'touch "$1.$$.tmp" && exec "$0" --config "$2" metrics "$1"',
                                binary("dkimsignctl"), out, box.config],
                               env=box.env, capture_output=True, text=True, timeout=120)
        assert taken.returncode == 0, taken.stderr


if __name__ == "__main__":
    run([test_prometheus_sees_what_was_done, test_summed_across_processes, test_exporter_without_permission,
         test_exporter_not_held_by_idle_clients, test_ctl_metrics_file])
