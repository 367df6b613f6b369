#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""DNSSEC validation against real servers on loopback (tests/lib/dnssecserver.py):
zones signed here with ldns-signzone, served by nsd, resolved through a
validating unbound that has the zones' keys as trust anchors; dkimsign
forwards to that unbound and validates itself with [dns] dnssec = yes and
trust_anchor = the test's DS records.

secure.example is signed, plain.example is not, and in bogus.example the
signature of the key record s1._domainkey is damaged after signing.
`dkimsignctl check` shows secure, insecure and bogus for each answer (text
and --json), a bogus record is an error finding, dnssec = no validates
nothing and dnssec = yes without a readable trust anchor is refused; in the
daemon, a key whose record only ever comes back bogus never becomes active
(nor signs) while a key of the signed zone does, and the state file and
`dkimsignctl list` record what validation said."""
import json
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
from dnssecserver import DnssecServers, Zone  # noqa: E402
from harness import SOFTHSM, Sandbox, run  # noqa: E402

DOMAINS = ("secure.example", "plain.example", "bogus.example")
MESSAGE = ("From: Alice <alice@{domain}>\r\nTo: bob@example.net\r\nSubject: dnssec\r\n"
           "Date: Sun, 29 Nov 2026 10:00:00 +0000\r\nMessage-ID: <dnssec@{domain}>\r\n\r\nHello Bob.\r\n")


def zones_for(box):
    """Each domain's key record (s1), SPF and DMARC; only bogus.example's
    key record signature is damaged."""
    def records(domain):
        return {"s1._domainkey": [box.keytable[f"s1._domainkey.{domain}"]], "@": ["v=spf1 -all"],
                "_dmarc": ["v=DMARC1; p=reject"]}
    return {"secure.example": Zone(records("secure.example")),
            "plain.example": Zone(records("plain.example"), signed=False),
            "bogus.example": Zone(records("bogus.example"), tamper=["s1._domainkey"])}


def dns_config(box, dns, dnssec="yes", anchor=None, extra=""):
    box.write_config(f"[dns]\nresolver = {dns.resolver}\ntimeout = 5s\ndnssec = {dnssec}\n"
                     f"trust_anchor = {anchor or dns.trust_anchor}\n" + extra)


def check_json(box, domain):
    p = box.ctl("check", domain, "--json", check=False)
    assert p.returncode in (0, 3, 4), (p.returncode, p.stdout, p.stderr)
    return json.loads(p.stdout)


def answers_of(r, name):
    return {a["type"]: (a["dnssec"], a["result"]) for a in r["dnssec"]["answers"] if a["name"] == name}


def lab():
    """A token with an RSA key s1 for each domain, and the servers."""
    box = Sandbox()
    box.init_token()
    for d in DOMAINS:
        box.keygen(d, "s1")
    return box, DnssecServers(zones_for(box))


def test_check_secure_insecure_bogus():
    box, dns = lab()
    with box, dns:
        dns_config(box, dns)
        want = {"secure.example": "secure", "plain.example": "insecure", "bogus.example": "bogus"}
        for domain, status in want.items():
            r = check_json(box, domain)
            assert r["dnssec"]["validated"] is True, r["dnssec"]
            sel = r["dkim"]["selectors"][0]
            assert sel["dnssec"] == status, (domain, sel)
            assert answers_of(r, f"s1._domainkey.{domain}") == {
                "TXT": (status, "bogus" if status == "bogus" else "records")}, r["dnssec"]
            # The rest of the zone: only the key record's signature is damaged.
            zone_status = "insecure" if domain == "plain.example" else "secure"
            assert answers_of(r, domain)["TXT"] == (zone_status, "records"), r["dnssec"]
            assert answers_of(r, f"_dmarc.{domain}")["TXT"] == (zone_status, "records"), r["dnssec"]
            if status == "bogus":
                ids = [(f["id"], f["verdict"]) for f in sel["findings"]]
                assert ("dkim-dns", "error") in ids, sel
                assert any("failed DNSSEC validation" in f["message"] for f in sel["findings"]), sel
                assert sel["record"] is None and not sel["matches"], sel
                assert r["exit_status"] == 4, r["exit_status"]
            else:
                assert sel["matches"] and sel["verdict"] == "ok", sel

        text = box.ctl("check", "bogus.example", check=False).stdout
        assert "s1._domainkey.bogus.example (rsa 2048, DNSSEC: bogus) [error]" in text, text
        assert "DNSSEC (per answer)" in text and "bogus     TXT  s1._domainkey.bogus.example (bogus)" in text, text
        assert "secure    TXT  bogus.example (records)" in text, text
        text = box.ctl("check", "plain.example", check=False).stdout
        assert "(rsa 2048, DNSSEC: insecure)" in text, text


def test_dnssec_no_and_missing_anchor():
    box, dns = lab()
    with box, dns:
        # No validation: the damaged signature goes unnoticed, and says so.
        dns_config(box, dns, dnssec="no")
        r = check_json(box, "bogus.example")
        assert r["dnssec"]["validated"] is False, r["dnssec"]
        assert r["dkim"]["selectors"][0]["dnssec"] == "unchecked", r["dkim"]
        assert r["dkim"]["selectors"][0]["matches"], r["dkim"]
        text = box.ctl("check", "secure.example", check=False).stdout
        assert "DNSSEC: answers not validated" in text, text

        # yes insists on a trust anchor; auto goes without.
        missing = os.path.join(box.dir, "no-such-anchor")
        dns_config(box, dns, dnssec="yes", anchor=missing)
        p = box.ctl("check", "secure.example", check=False)
        assert p.returncode == 2 and "trust anchor" in p.stderr and missing in p.stderr, p.stderr
        dns_config(box, dns, dnssec="auto", anchor=missing)
        r = check_json(box, "secure.example")
        assert r["dnssec"]["validated"] is False, r["dnssec"]


def wait_listed(box, pred, what, timeout=60):
    deadline = time.monotonic() + timeout
    while True:
        keys = {k["domain"]: k for k in json.loads(box.ctl("list", "--json").stdout)}
        if pred(keys):
            return keys
        assert time.monotonic() < deadline, f"{what} not within {timeout}s: {keys}\n{box.log()[-3000:]}"
        time.sleep(0.2)


def test_bogus_key_never_active():
    box, dns = lab()
    with box, dns:
        # Like test-lifecycle.py: keys sign only once DNS has shown their
        # record for publish_wait.
        with open(box.config, "w") as f:
            f.write(f"[daemon]\nsocket = {box.socket}\nsocket_mode = 0600\nstate_dir = {box.dir}/state\n\n"
                    f"[token]\nmodule = {SOFTHSM}\nlabel = {box.label}\npin_file = {box.pin_file}\nsessions = 2\n\n"
                    f"[dns]\nresolver = {dns.resolver}\ntimeout = 2s\ncheck_interval = 1s\n"
                    f"publish_wait = 1s\nretire_grace = 2s\ndnssec = yes\ntrust_anchor = {dns.trust_anchor}\n")
        box.start()
        keys = wait_listed(box, lambda k: k["secure.example"]["state"] == "active"
                           and k["plain.example"]["state"] == "active", "the secure and insecure keys active")
        assert keys["secure.example"]["dnssec"] == "secure", keys
        assert keys["plain.example"]["dnssec"] == "insecure", keys
        # Several more checks of the bogus record, each a fresh query
        # (the daemon's cache is dropped before each check).
        dns.wait_queries("s1._domainkey.bogus.example", 4)
        keys = wait_listed(box, lambda k: k["bogus.example"]["dnssec"] == "bogus", "the bogus status recorded")
        assert keys["bogus.example"]["state"] == "pending", keys["bogus.example"]
        assert keys["bogus.example"]["first_seen"] is None, keys["bogus.example"]

        p = box.sign(MESSAGE.format(domain="bogus.example").encode())
        assert p.returncode == 65 and b"failed DNSSEC validation (bogus)" in p.stderr, (p.returncode, p.stderr)
        assert box.sign(MESSAGE.format(domain="secure.example").encode()).returncode == 0

        with open(os.path.join(box.dir, "state", "keys.state")) as f:
            state = f.read()
        lines = {ln.split()[0]: ln.split() for ln in state.splitlines() if "._domainkey." in ln}
        assert lines["s1._domainkey.bogus.example"][2] == "pending", state
        assert lines["s1._domainkey.bogus.example"][-1] == "bogus", state
        assert lines["s1._domainkey.secure.example"][2:3] == ["active"], state
        assert lines["s1._domainkey.secure.example"][-1] == "secure", state
        log = box.log()
        assert "s1._domainkey.bogus.example is pending: DNS shows an answer that failed DNSSEC validation" in log, \
            log[-3000:]
        assert "s1._domainkey.bogus.example is active" not in log, log[-3000:]


if __name__ == "__main__":
    run([test_check_secure_insecure_bogus, test_dnssec_no_and_missing_anchor, test_bogus_key_never_active])
