#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""The key lifecycle against a real token, the real daemon and a real DNS
server on loopback (dnsmasq, tests/lib/dnsserver.py): no DNS answer is faked.

A key goes pending -> published -> active with a publish_wait of 2 s, and
the daemon signs with it only then (NO_KEY with a reason naming the key
before); a mismatching record keeps it pending; with the DNS server gone an
active key keeps signing, and its state survives a restart; a damaged
state file is reported and refused (at start and at reload) and never
overwritten; rotation makes a pending key that signs once published, after
which the old key retires at the grace; an import whose record DNS already
shows is active at once; `unpublished = sign` per domain."""
import json
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
from dnsserver import DnsServer  # noqa: E402
from harness import SOFTHSM, Sandbox, dkimpy_verify, run, signature_fields, tags  # noqa: E402

WAIT = 2
MESSAGE = (b"From: Alice <alice@example.com>\r\n"
           b"To: bob@example.net\r\n"
           b"Subject: lifecycle\r\n"
           b"Date: Sun, 29 Nov 2026 10:00:00 +0000\r\n"
           b"Message-ID: <lifecycle@example.com>\r\n"
           b"\r\n"
           b"Hello Bob.\r\n")
# A record elsewhere in the zone, so dnsmasq answers for example.com (NXDOMAIN
# for names without records) instead of refusing.
ZONE = {"_dmarc.example.com": ["v=DMARC1; p=none"]}


def lifecycle_config(box, dns_address, wait=WAIT, grace=2, extra=""):
    """The sandbox's configuration without `unpublished = sign`: keys sign
    only once DNS has shown their record for `wait` seconds."""
    with open(box.config, "w") as f:
        f.write(f"[daemon]\nsocket = {box.socket}\nsocket_mode = 0600\nstate_dir = {box.dir}/state\n\n"
                f"[token]\nmodule = {SOFTHSM}\nlabel = {box.label}\npin_file = {box.pin_file}\nsessions = 2\n\n"
                f"[dns]\nresolver = {dns_address}\ntimeout = 1s\ncheck_interval = 1s\n"
                f"publish_wait = {wait}s\nretire_grace = {grace}s\n\n" + extra)


def label(selector, domain="example.com"):
    return f"{selector}._domainkey.{domain}"


def ctl(box, *args, check=True):
    return box.ctl(*args, check=check)


def listed(box):
    return {(k["domain"], k["selector"]): k for k in json.loads(ctl(box, "list", "--json").stdout)}


def sign_until(box, accept, timeout=10.0, message=MESSAGE):
    """Sign until accept(process) is true; every result on the way, in order."""
    seen = []
    deadline = time.monotonic() + timeout
    while True:
        p = box.sign(message)
        seen.append(p)
        if accept(p):
            return seen
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up after {timeout}s; last: {p.returncode} {p.stderr!r}\n{box.log()[-3000:]}")
        time.sleep(0.2)


def lookups(dns, name):
    """How many times the DNS server was asked for name's TXT record."""
    with open(dns.log) as f:
        return sum(1 for line in f if f"query[TXT] {name} from" in line)


def wait_checks(dns, name, n, timeout=60):
    """Wait until the daemon's watcher has checked name n more times (one
    lookup each): n - 1 of those checks are done with, the last one is
    at least under way.  Returns the lookup count."""
    want = lookups(dns, name) + n
    deadline = time.monotonic() + timeout
    while (seen := lookups(dns, name)) < want:
        assert time.monotonic() < deadline, f"{seen} of {want} lookups of {name} in {timeout}s"
        time.sleep(0.1)
    return seen


def selectors_of(p):
    return [tags(f)["s"] for f in signature_fields(p.stdout)]


def state_file(box):
    with open(os.path.join(box.dir, "state", "keys.state")) as f:
        return f.read()


def test_pending_published_active():
    with Sandbox() as box, DnsServer(ZONE) as dns:
        lifecycle_config(box, dns.address)
        box.init_token()
        box.keygen("example.com", "s1")
        box.start()
        # Pending: refused with NO_KEY (65), the reason naming the key and what DNS showed.
        first = box.sign(MESSAGE)
        assert first.returncode == 65 and b"s1._domainkey.example.com is pending" in first.stderr, first.stderr
        sign_until(box, lambda p: b"no TXT record" in p.stderr)
        assert listed(box)[("example.com", "s1")]["state"] == "pending"

        # Published (the record split into 255-octet character-strings by dnsmasq's config).
        dns.set_records({**ZONE, label("s1"): [box.keytable[label("s1")]]})
        published_at = time.monotonic()
        seen = sign_until(box, lambda p: p.returncode == 0, timeout=WAIT + 8)
        active_after = time.monotonic() - published_at
        waiting = [p for p in seen if b"is published (first seen" in p.stderr]
        assert waiting and all(p.returncode == 65 for p in seen[:-1]), [p.stderr for p in seen]
        # It signed only after the wait (minus one check interval of slack for when it was first seen).
        assert active_after >= WAIT - 0.2, active_after
        assert selectors_of(seen[-1]) == ["s1"]
        assert dkimpy_verify(seen[-1].stdout, box.keytable)
        k = listed(box)[("example.com", "s1")]
        assert k["state"] == "active" and k["first_seen"] and k["active_since"], k
        assert "key s1._domainkey.example.com: published" in box.log()
        print(f"  signed {active_after:.1f}s after the record was published (publish_wait {WAIT}s)")

        # DNS server gone: the active key keeps signing, through several
        # check cycles: before and after the watcher finds no answer.
        dns.close()
        deadline, signed = time.monotonic() + 60, 0
        while signed < 4 or "got no answer from 127.0.0.1:" not in box.log():
            assert time.monotonic() < deadline, box.log()[-2000:]
            p = box.sign(MESSAGE)
            assert p.returncode == 0 and selectors_of(p) == ["s1"], p.stderr
            signed += 1
            time.sleep(0.2)
        for _ in range(2):
            p = box.sign(MESSAGE)
            assert p.returncode == 0 and selectors_of(p) == ["s1"], p.stderr
        # Its state survives a restart, with DNS still down: it signs at once.
        assert " s1._domainkey" not in state_file(box) and "s1._domainkey.example.com " in state_file(box)
        assert " active " in state_file(box), state_file(box)
        box.stop()
        box.start()
        p = box.sign(MESSAGE)
        assert p.returncode == 0 and selectors_of(p) == ["s1"], p.stderr + box.log().encode()[-2000:]
        assert dkimpy_verify(p.stdout, box.keytable)


def test_mismatching_record_stays_pending():
    with Sandbox() as box, DnsServer(ZONE) as dns:
        lifecycle_config(box, dns.address, wait=0)
        box.init_token()
        box.keygen("example.com", "s1")
        box.keygen("other.example", "x")
        # The record at s1 holds another key's public half.
        dns.set_records({**ZONE, label("s1"): [box.keytable[label("x", "other.example")]]})
        box.start()
        seen = sign_until(box, lambda p: b"another public key" in p.stderr)
        wait_checks(dns, label("s1"), 3)  # two more checks: still nothing signs, even with publish_wait = 0
        p = box.sign(MESSAGE)
        assert p.returncode == 65 and b"s1._domainkey.example.com is pending" in p.stderr, p.stderr
        assert all(q.returncode == 65 for q in seen)
        assert listed(box)[("example.com", "s1")]["state"] == "pending"
        # The right record makes it active at once (publish_wait 0).
        dns.set_records({**ZONE, label("s1"): [box.keytable[label("s1")]]})
        p = sign_until(box, lambda p: p.returncode == 0)[-1]
        assert selectors_of(p) == ["s1"] and dkimpy_verify(p.stdout, box.keytable)


def test_damaged_state_file_is_refused():
    with Sandbox() as box, DnsServer(ZONE) as dns:
        box.init_token()
        box.keygen("example.com", "s1")
        dns.set_records({**ZONE, label("s1"): [box.keytable[label("s1")]]})
        lifecycle_config(box, dns.address, wait=0)
        box.start()
        sign_until(box, lambda p: p.returncode == 0)
        text = state_file(box)
        path = os.path.join(box.dir, "state", "keys.state")
        damaged = text.replace(" active ", " actve ")
        with open(path, "w") as f:
            f.write(damaged)
        # A reload is refused, with the file and line; the daemon keeps signing.
        p = ctl(box, "reload", check=False)
        assert p.returncode == 1 and "keys.state: line 3: unknown state" in p.stderr, p.stderr
        assert box.sign(MESSAGE).returncode == 0
        # Watcher cycles: the damaged file is reported, not overwritten.
        wait_checks(dns, label("s1"), 3)
        with open(path) as f:
            assert f.read() == damaged
        assert "key states:" in box.log() and "not written until this is fixed" in box.log(), box.log()[-2000:]
        # dkimsignctl list says so too.
        p = ctl(box, "list", check=False)
        assert p.returncode == 1 and "line 3" in p.stderr, p.stderr
        # A start is refused.
        box.stop()
        try:
            box.start(timeout=10)
            raise AssertionError("dkimsignd started with a damaged state file")
        except AssertionError as e:
            assert "exited with 1" in str(e) and "refusing to start" in str(e), str(e)
        box.daemon = None
        # Cut short (no end line): refused as well.
        with open(path, "w") as f:
            f.write(text[:text.rindex("end")])
        p = ctl(box, "list", check=False)
        assert p.returncode == 1 and "cut short" in p.stderr, p.stderr


def test_rotation():
    with Sandbox() as box, DnsServer(ZONE) as dns:
        grace = 3
        lifecycle_config(box, dns.address, wait=1, grace=grace)
        box.init_token()
        box.keygen("example.com", "old")
        records = {**ZONE, label("old"): [box.keytable[label("old")]]}
        dns.set_records(records)
        box.start()
        p = sign_until(box, lambda p: p.returncode == 0)[-1]
        assert selectors_of(p) == ["old"]

        out = ctl(box, "rotate", "--domain", "example.com").stdout
        new = out.split("key ", 1)[1].split("._domainkey", 1)[0]
        assert new.startswith("r") and len(new) == 9 and "pending" in out and "old retires" in out, out
        assert listed(box)[("example.com", new)]["state"] == "pending"
        ctl(box, "reload")
        box.keytable[label(new)] = box.dns_record("example.com", new)
        # Not published yet (the watcher has looked): the old key goes on signing.
        wait_checks(dns, label(new), 2)
        p = box.sign(MESSAGE)
        assert p.returncode == 0 and selectors_of(p) == ["old"], p.stderr

        dns.set_records({**records, label(new): [box.keytable[label(new)]]})
        p = sign_until(box, lambda p: p.returncode == 0 and selectors_of(p) == [new], timeout=10)[-1]
        switched = time.monotonic()
        assert dkimpy_verify(p.stdout, box.keytable)
        k = listed(box)
        assert k[("example.com", new)]["state"] == "active", k
        assert k[("example.com", "old")]["state"] == "active" and k[("example.com", "old")]["retires"], k
        # After the grace the old key is retired (recorded by the watcher in the state file).
        deadline = switched + grace + 5
        while listed(box)[("example.com", "old")]["state"] != "retired":
            assert time.monotonic() < deadline, listed(box)
            time.sleep(0.3)
        assert time.monotonic() - switched >= grace - 1.5
        deadline = time.monotonic() + 3
        while "old._domainkey.example.com " not in state_file(box) or " retired " not in state_file(box):
            assert time.monotonic() < deadline, state_file(box)
            time.sleep(0.3)
        # The watcher writes the state file, then logs: wait for the line too.
        deadline = time.monotonic() + 3
        while "key old._domainkey.example.com retired" not in box.log():
            assert time.monotonic() < deadline, box.log()[-2000:]
            time.sleep(0.1)
        p = box.sign(MESSAGE)
        assert p.returncode == 0 and selectors_of(p) == [new] and dkimpy_verify(p.stdout, box.keytable)
        # The table shows the states too.
        table = ctl(box, "list").stdout
        assert "retired" in table and "first seen" in table, table


def test_import_already_published_is_active():
    with Sandbox() as box, DnsServer(ZONE) as dns:
        lifecycle_config(box, dns.address, wait=3600)
        box.init_token()
        for name in ("mig", "fresh"):
            subprocess.run(["openssl", "genpkey", "-algorithm", "ed25519", "-out", os.path.join(box.dir, name + ".pem")],
                           check=True, capture_output=True)
        # The record of "mig" is published already (OpenDKIM signed with it).
        pub = subprocess.run(["openssl", "pkey", "-in", os.path.join(box.dir, "mig.pem"), "-pubout", "-outform", "DER"],
                             check=True, capture_output=True).stdout
        import base64
        record = "v=DKIM1; k=ed25519; p=" + base64.b64encode(pub[-32:]).decode()
        dns.set_records({**ZONE, label("mig"): [record]})
        out = ctl(box, "import", "--domain", "example.com", "--selector", "mig", os.path.join(box.dir, "mig.pem")).stdout
        assert "active at once" in out, out
        out = ctl(box, "import", "--domain", "example.net", "--selector", "fresh",
                  os.path.join(box.dir, "fresh.pem")).stdout
        assert "is pending" in out, out
        k = listed(box)
        assert k[("example.com", "mig")]["state"] == "active" and k[("example.net", "fresh")]["state"] == "pending", k
        box.keytable[label("mig")] = record
        box.start()
        # No publish_wait (an hour here) for the migrated key.
        p = box.sign(MESSAGE)
        assert p.returncode == 0 and selectors_of(p) == ["mig"], p.stderr
        assert dkimpy_verify(p.stdout, box.keytable)


def test_unpublished_sign_per_domain():
    with Sandbox() as box, DnsServer(ZONE) as dns:
        lifecycle_config(box, dns.address, extra="[domain b.example]\nunpublished = sign\n")
        box.init_token()
        box.keygen("example.com", "a1")
        box.keygen("b.example", "b1")
        box.start()
        p = box.sign(MESSAGE)
        assert p.returncode == 65 and b"is pending" in p.stderr, p.stderr
        p = box.sign(MESSAGE.replace(b"alice@example.com", b"alice@b.example"))
        assert p.returncode == 0 and selectors_of(p) == ["b1"], p.stderr
        assert dkimpy_verify(p.stdout, box.keytable)
        k = listed(box)
        assert k[("b.example", "b1")]["unpublished_signing"] is True and k[("example.com", "a1")]["state"] == "pending"


def test_timer_mode_keeps_the_daemon_off_dns():
    """[dns] watch = timer: dkimsignd makes no lookup; dkimsignctl refresh
    (a timer's job) does, and the daemon takes the states from the file."""
    with Sandbox() as box, DnsServer(ZONE) as dns:
        box.init_token()
        box.keygen("example.com", "t1")
        dns.set_records({**ZONE, label("t1"): [box.keytable[label("t1")]]})
        lifecycle_config(box, dns.address, wait=0)
        with open(box.config) as f:
            text = f.read()
        with open(box.config, "w") as f:
            f.write(text.replace("[dns]\n", "[dns]\nwatch = timer\n"))
        box.start()
        time.sleep(2.5)  # two check intervals
        p = box.sign(MESSAGE)
        assert p.returncode == 65 and b"t1._domainkey.example.com is pending" in p.stderr, p.stderr
        with open(dns.log) as f:
            assert "t1._domainkey" not in f.read(), "dkimsignd looked the record up itself"
        out = ctl(box, "refresh")
        assert "checked 1 key(s)" in out.stdout and "t1._domainkey.example.com: active since" in out.stdout, out
        assert "published" in out.stderr, out.stderr
        with open(dns.log) as f:
            assert "t1._domainkey" in f.read()
        p = sign_until(box, lambda p: p.returncode == 0, timeout=5)[-1]
        assert selectors_of(p) == ["t1"] and dkimpy_verify(p.stdout, box.keytable)
        assert "key t1._domainkey.example.com: active, as the state file says" in box.log(), box.log()[-2000:]


if __name__ == "__main__":
    run([test_pending_published_active, test_mismatching_record_stays_pending, test_damaged_state_file_is_refused,
         test_rotation, test_import_already_published_is_active, test_unpublished_sign_per_domain,
         test_timer_mode_keeps_the_daemon_off_dns])
