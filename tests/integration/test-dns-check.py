#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""dkimsignctl check and records against a real DNS server (dnsmasq on a
loopback port, tests/lib/dnsserver.py) and a real SoftHSM token.

The zones hold: a key record that matches the token's key, one that holds
another key, a missing one, one split into several character-strings, a
4096-bit key's record (its answer is over 512 octets: libresolv must retry
over TCP), one with t=y, a 1024-bit key; SPF with too many lookups, an SPF
include loop, a +all, a syntax error, two SPF records; a broken DMARC
record, one with pct and an external rua with and without its
authorization record, a subdomain that inherits its parent's policy;
records holding UTF-8 text (a key record's n= note, a DMARC address) and
records that are not UTF-8 at all.  An unresponsive UDP socket stands in
for a resolver that times out.  Every assertion is on `check --json`
(parsed by Python's json module) and the exit status (0 ok, 3 warnings,
4 errors, 5 incomplete), plus the text output and `records`."""
import json
import os
import socket
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
from dnsserver import DnsServer  # noqa: E402
from harness import Sandbox, binary, run  # noqa: E402

box = None
dns = None
records = {}    # selector -> record text the token's key needs


def split(text, size):
    return [text[i:i + size] for i in range(0, len(text), size)]


def setup():
    global box, dns
    box = Sandbox(extra_config="[dns]\ntimeout = 2s\n")
    box.init_token()
    keys = [("match", "rsa", None), ("split", "rsa", None), ("other", "rsa", None), ("missing", "ed25519", None),
            ("testing", "ed25519", None), ("weak", "rsa", 1024), ("big", "rsa", 4096), ("alias", "ed25519", None)]
    for selector, alg, bits in keys:
        box.keygen("example.test", selector, alg, bits)
        records[selector] = box.keytable[f"{selector}._domainkey.example.test"]
    box.keygen("allok.test", "s1", "ed25519")
    box.keygen("monitor.test", "s1", "ed25519")
    box.keygen("utf8.test", "s1", "ed25519")
    another = Sandbox()
    try:
        another.init_token()
        another.keygen("example.test", "x", "rsa")
        foreign = another.keytable["x._domainkey.example.test"]
    finally:
        another.close()

    zone = {
        # example.test: every kind of DKIM record; SPF fine; DMARC with pct and external rua.
        "example.test": ["v=spf1 mx ip4:192.0.2.0/24 -all", ("MX", "10 mail.example.test")],
        "mail.example.test": [("A", "192.0.2.25")],
        "match._domainkey.example.test": [records["match"]],                 # 2 strings of 255 and the rest
        "split._domainkey.example.test": [split(records["split"], 60)],      # explicit 60-octet strings
        "other._domainkey.example.test": [foreign],                          # another token's key
        "testing._domainkey.example.test": [records["testing"] + "; t=y"],
        "weak._domainkey.example.test": [records["weak"]],
        "big._domainkey.example.test": [records["big"]],
        # A selector delegated by CNAME, as to a mail provider.
        "alias._domainkey.example.test": [("CNAME", "alias.keys.provider.test")],
        "alias.keys.provider.test": [records["alias"]],
        "_dmarc.example.test": ["v=DMARC1; p=quarantine; pct=50; "
                                "rua=mailto:agg@reports.example, mailto:dmarc@unauth.example; "
                                "ruf=mailto:forensic@example.test"],
        "example.test._report._dmarc.reports.example": ["v=DMARC1"],
        "reports.example": [("A", "192.0.2.80")],
        "unauth.example": [("A", "192.0.2.81")],
        # allok.test: nothing to say.
        "allok.test": ["v=spf1 ip4:192.0.2.1 ~all"],
        "s1._domainkey.allok.test": [box.keytable["s1._domainkey.allok.test"]],
        "_dmarc.allok.test": ["v=DMARC1; p=reject; rua=mailto:dmarc@allok.test"],
        "sub.allok.test": [("A", "192.0.2.2")],
        # monitor.test: only warnings (p=none, ?all).
        "monitor.test": ["v=spf1 ip4:192.0.2.1 ?all"],
        "s1._domainkey.monitor.test": [box.keytable["s1._domainkey.monitor.test"]],
        "_dmarc.monitor.test": ["v=DMARC1; p=none; rua=mailto:dmarc@monitor.test"],
        # SPF over the lookup limit: 4 includes with 3 lookups each = 16.
        "toomany.test": ["v=spf1 " + " ".join(f"include:i{i}.toomany.test" for i in range(4)) + " -all"],
        # SPF loop: a -> b -> a.
        "loop.test": ["v=spf1 include:a.loop.test -all"],
        "a.loop.test": ["v=spf1 include:b.loop.test -all"],
        "b.loop.test": ["v=spf1 include:a.loop.test -all"],
        "plusall.test": ["v=spf1 +all"],
        "badspf.test": ["v=spf1 ip4:192.0.2.300 include:example -all"],
        "twospf.test": ["v=spf1 -all", "v=spf1 ~all"],
        "redirect.test": ["v=spf1 redirect=_spf.redirect.test"],
        "_spf.redirect.test": ["v=spf1 ip4:192.0.2.0/24 include:j0.toomany.test -all"],
        # DMARC broken two ways.
        "_dmarc.brokendmarc.test": ["v=DMARC1; p=rejected; adkim=x"],
        "_dmarc.nosemicolon.test": ["v=DMARC1 p=reject"],
        "_dmarc.order.test": ["v=DMARC1; rua=mailto:d@order.test; p=reject; ri=3600"],
        # utf8.test: UTF-8 text in its records (test_utf8); badutf8.test:
        # records that are not UTF-8.
        "utf8.test": ["v=spf1 ip4:192.0.2.1 -all"],
        "s1._domainkey.utf8.test": [UTF8_NOTE + box.keytable["s1._domainkey.utf8.test"][len("v=DKIM1; "):]],
        "_dmarc.utf8.test": [UTF8_DMARC],
        "badutf8.test": [NOT_UTF8_SPF],
        "_dmarc.badutf8.test": [NOT_UTF8_DMARC],
    }
    for i in range(4):
        zone[f"i{i}.toomany.test"] = [f"v=spf1 a mx include:j{i}.toomany.test ~all"]
        zone[f"j{i}.toomany.test"] = ["v=spf1 ip4:10.0.0.1 ~all"]
        zone[f"i{i}.toomany.test"].append(("A", f"10.0.1.{i}"))
        zone[f"i{i}.toomany.test"].append(("MX", f"10 i{i}.toomany.test"))
    dns = DnsServer(zone)


# A key record with a note (n=) in UTF-8, German and a euro sign, and a
# DMARC address with a U-label: text in JSON must come back as itself.
UTF8_NOTE = "v=DKIM1; n=Schl\u00fcssel f\u00fcr B\u00fccher, 5 \u20ac; "
UTF8_DMARC = "v=DMARC1; p=reject; rua=mailto:rapports@b\u00fccher.example"
# Octets that are not UTF-8: a lone 0xff, an overlong "/", a cut 3-octet
# sequence, a surrogate, a Latin-1 e-acute.
NOT_UTF8_SPF = b"v=spf1 ip4:192.0.2.1 \xff \xc0\xaf \xe2\x82 \xed\xa0\x80 -all"
NOT_UTF8_DMARC = b"v=DMARC1; p=reject; rua=mailto:a@caf\xe9.example"


def check(domain, *extra, resolver=True, expect=None):
    args = ["check", domain, "--json", *extra]
    if resolver:
        args += ["--resolver", dns.address]
    p = box.ctl(*args, check=False)
    assert p.returncode in (0, 3, 4, 5), f"check {domain}: exit {p.returncode}: {p.stderr}"
    report = json.loads(p.stdout)
    assert report["exit_status"] == p.returncode
    if expect is not None:
        assert p.returncode == expect, f"check {domain}: exit {p.returncode}, expected {expect}:\n{p.stdout}"
    return report


def ids(findings, verdict=None):
    return {f["id"] for f in findings if verdict is None or f["verdict"] == verdict}


def finding(findings, fid, verdict=None):
    for f in findings:
        if f["id"] == fid and (verdict is None or f["verdict"] == verdict):
            return f
    raise AssertionError(f"no {fid} ({verdict}) in {json.dumps(findings, indent=1)}")


def selector(report, name):
    for s in report["dkim"]["selectors"]:
        if s["selector"] == name:
            return s
    raise AssertionError(f"no selector {name}")


# --- DKIM ---------------------------------------------------------------

def test_dkim_selectors():
    r = check("example.test", expect=4)
    sels = {s["selector"]: s for s in r["dkim"]["selectors"]}
    assert set(sels) == {"match", "split", "other", "missing", "testing", "weak", "big", "alias"}, sels.keys()

    m = sels["match"]
    assert m["verdict"] == "ok" and m["matches"] and m["strings"] == 2, m
    assert m["record"] == records["match"]
    finding(m["findings"], "dkim-key", "ok")
    assert "2048 bits" in finding(m["findings"], "dkim-key-size", "ok")["message"]

    s = sels["split"]
    assert s["verdict"] == "ok" and s["matches"], s
    assert s["strings"] == len(split(records["split"], 60)) > 2, s["strings"]

    o = sels["other"]
    assert o["verdict"] == "error" and not o["matches"], o
    f = finding(o["findings"], "dkim-mismatch", "error")
    assert "different RSA key" in f["message"], f
    # The fix is the record to publish, in zone form.
    assert f["fix"].startswith("Replace it by other._domainkey.example.test. IN TXT ( \""), f["fix"]
    assert records["other"][:200] in f["fix"].replace('"\n  "', "")

    mi = sels["missing"]
    assert mi["verdict"] == "error" and mi["record"] is None
    f = finding(mi["findings"], "dkim-missing", "error")
    assert f["fix"] == f'Publish missing._domainkey.example.test. IN TXT "{records["missing"]}"', f["fix"]

    t = sels["testing"]
    assert t["matches"] and t["testing"] and t["verdict"] == "warning", t
    finding(t["findings"], "dkim-testing", "warning")

    w = sels["weak"]
    assert w["matches"] and w["bits"] == 1024 and w["verdict"] == "warning", w
    finding(w["findings"], "dkim-key-size", "warning")

    # 4096 bits: the answer needs TCP; the record still matches.
    b = sels["big"]
    assert b["matches"] and b["bits"] == 4096 and b["strings"] == 3, b
    # Through the CNAME the answer carries.
    a = sels["alias"]
    assert a["matches"] and a["verdict"] == "ok", a
    assert r["dkim"]["verdict"] == "error"


def test_dkim_revoked_and_garbage():
    zone = dict(dns.records)
    try:
        zone["match._domainkey.example.test"] = ["v=DKIM1; k=rsa; p="]
        zone["split._domainkey.example.test"] = ["v=DKIM1; p=MIIB; p=again"]
        dns.set_records(zone)
        r = check("example.test", expect=4)
        f = finding(selector(r, "match")["findings"], "dkim-revoked", "error")
        assert "revoked" in f["message"]
        f = finding(selector(r, "split")["findings"], "dkim-syntax", "error")
        assert "p= appears more than once" in f["message"], f
    finally:
        dns.set_records(ORIGINAL)


# --- SPF ----------------------------------------------------------------

def test_spf_ok():
    r = check("example.test")
    spf = r["spf"]
    assert spf["verdict"] == "ok", spf
    assert spf["record"] == "v=spf1 mx ip4:192.0.2.0/24 -all"
    assert spf["lookups"] == 1 and spf["void_lookups"] == 0 and spf["all"] == "-", spf


def test_spf_too_many_lookups():
    r = check("toomany.test", expect=4)
    spf = r["spf"]
    assert spf["lookups"] == 16, spf
    f = finding(spf["findings"], "spf-lookups", "error")
    assert "16 DNS lookups" in f["message"] and "limit of 10" in f["message"], f
    assert "ip4:/ip6:" in f["fix"]


def test_spf_loop():
    r = check("loop.test", expect=4)
    f = finding(r["spf"]["findings"], "spf-loop", "error")
    assert "loop.test -> a.loop.test -> b.loop.test -> a.loop.test" in f["message"], f
    assert f["fix"] == 'Remove "include:a.loop.test" from the SPF record of b.loop.test.', f


def test_spf_policy_and_syntax():
    r = check("plusall.test", expect=4)
    f = finding(r["spf"]["findings"], "spf-all", "error")
    assert "+all" in f["message"] and "~all" in f["fix"]
    r = check("badspf.test", expect=4)
    f = finding(r["spf"]["findings"], "spf-syntax", "error")
    assert '"ip4:192.0.2.300"' in f["message"], f
    r = check("twospf.test", expect=4)
    finding(r["spf"]["findings"], "spf-multiple", "error")
    r = check("redirect.test")
    spf = r["spf"]
    assert spf["verdict"] == "ok" and spf["all"] == "-" and spf["lookups"] == 2, spf
    assert "(through its redirect=) ends with -all" in finding(spf["findings"], "spf-all", "ok")["message"]
    r = check("nothing.test", expect=4)
    f = finding(r["spf"]["findings"], "spf-missing", "error")
    assert f["fix"].startswith('Publish nothing.test. IN TXT "v=spf1 mx ~all"'), f


# --- DMARC --------------------------------------------------------------

def test_dmarc_pct_and_external_reports():
    r = check("example.test")
    d = r["dmarc"]
    assert d["found_at"] == "example.test" and d["policy"] == "quarantine", d
    f = finding(d["findings"], "dmarc-pct", "warning")
    assert "historic" in f["message"] and "t=y" in f["fix"], f
    auth = [x for x in d["findings"] if x["id"] == "dmarc-report-auth"]
    ok = [x for x in auth if x["verdict"] == "ok"]
    bad = [x for x in auth if x["verdict"] == "error"]
    assert len(ok) == 1 and "reports.example" in ok[0]["message"], auth
    assert len(bad) == 1 and "unauth.example" in bad[0]["message"], auth
    assert ('example.test._report._dmarc.unauth.example. IN TXT "v=DMARC1"') in bad[0]["fix"], bad
    # The internal ruf needs no authorization, so no other report-auth finding.
    assert d["verdict"] == "error"


def test_dmarc_broken():
    r = check("brokendmarc.test", expect=4)
    d = r["dmarc"]
    assert "dmarc-p" in ids(d["findings"], "error") and "dmarc-alignment" in ids(d["findings"], "error"), d
    r = check("nosemicolon.test", expect=4)
    f = finding(r["dmarc"]["findings"], "dmarc-syntax", "error")
    assert "v=DMARC1" in f["message"] and f["fix"].startswith('Publish a valid record, e.g. _dmarc.nosemicolon.test.')
    r = check("order.test", expect=4)
    d = r["dmarc"]
    assert d["verdict"] == "warning" and d["policy"] == "reject", d
    assert ids(d["findings"], "warning") == {"dmarc-p-order", "dmarc-historic"}, d
    r = check("nothing.test", expect=4)
    f = finding(r["dmarc"]["findings"], "dmarc-missing", "error")
    assert 'v=DMARC1; p=none; rua=mailto:dmarc-reports@nothing.test' in f["fix"]


def test_dmarc_inherited():
    r = check("sub.allok.test", expect=4)   # no keys, no SPF of its own: errors, but DMARC is found
    d = r["dmarc"]
    assert d["found_at"] == "allok.test" and d["policy"] == "reject", d
    assert d["verdict"] == "ok", d


# --- exit status, output forms, resolver choice -------------------------

def test_exit_status_ok_and_warnings():
    r = check("allok.test", expect=0)
    assert r["verdict"] == "ok" and not r["incomplete"]
    r = check("monitor.test", expect=3)
    assert r["verdict"] == "warning"
    assert finding(r["dmarc"]["findings"], "dmarc-policy", "warning")
    assert finding(r["spf"]["findings"], "spf-all", "warning")


def test_timeout_is_incomplete():
    # A UDP socket nobody reads: every lookup times out ([dns] timeout = 2s).
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    try:
        start = time.monotonic()
        p = box.ctl("check", "allok.test", "--json", "--resolver", f"127.0.0.1:{s.getsockname()[1]}", check=False)
        took = time.monotonic() - start
    finally:
        s.close()
    assert p.returncode == 5, (p.returncode, p.stdout, p.stderr)
    r = json.loads(p.stdout)
    assert r["incomplete"] is True
    assert any(f["incomplete"] for f in r["spf"]["findings"])
    # Three lookups (SPF, one selector, DMARC) of at most 2 s each.
    assert took < 12, took


def test_refused_is_incomplete():
    # A server with no zones refuses every query: a temporary failure.
    with DnsServer({}) as empty:
        p = box.ctl("check", "allok.test", "--json", "--resolver", empty.address, check=False)
    assert p.returncode == 5, (p.returncode, p.stdout, p.stderr)
    r = json.loads(p.stdout)
    assert r["incomplete"] and r["verdict"] == "error"
    assert finding(r["spf"]["findings"], "spf-dns", "error")["incomplete"]
    assert finding(selector(r, "s1")["findings"], "dkim-dns", "error")["incomplete"]
    assert finding(r["dmarc"]["findings"], "dmarc-dns", "error")["incomplete"]


def test_resolver_from_config():
    box.write_config(f"[dns]\nresolver = {dns.address}\ntimeout = 2s\n")
    try:
        r = check("allok.test", resolver=False, expect=0)
        assert r["resolver"] == dns.address
    finally:
        box.write_config("[dns]\ntimeout = 2s\n")


def test_text_output():
    p = box.ctl("check", "example.test", "--resolver", dns.address, check=False)
    assert p.returncode == 4
    out = p.stdout
    assert out.startswith(f"DNS check of example.test (resolver: {dns.address})"), out[:200]
    assert "SPF  [ok]" in out and "DKIM [error]" in out and "DMARC [error]" in out, out
    assert " missing._domainkey.example.test (ed25519 256) [error]" in out, out
    assert "            fix: Publish missing._domainkey.example.test. IN TXT" in out
    assert out.rstrip().splitlines()[-1].endswith("warnings"), out.rstrip().splitlines()[-1]


def check_octets(domain):
    """check --json DOMAIN as the octets it printed, and parsed from them
    (json.loads refuses what is not UTF-8)."""
    p = subprocess.run([binary("dkimsignctl"), "--config", box.config, "check", domain, "--json",
                        "--resolver", dns.address], env=box.env, capture_output=True, timeout=120)
    assert p.returncode in (0, 3, 4), (p.returncode, p.stderr)
    report = json.loads(p.stdout)
    assert report["exit_status"] == p.returncode
    return p.stdout, report


def test_utf8_kept():
    out, r = check_octets("utf8.test")
    # UTF-8 stays UTF-8: not \u00XX per octet, which made "SchlÃ¼ssel" of it.
    s1 = selector(r, "s1")
    assert s1["record"].startswith(UTF8_NOTE), s1["record"]
    assert UTF8_NOTE.encode() in out, out[:2000]
    assert r["dmarc"]["record"] == UTF8_DMARC, r["dmarc"]
    assert UTF8_DMARC.encode() in out
    # The parsers take only ASCII in these tags; they say so.
    assert finding(s1["findings"], "dkim-syntax", "error")
    assert finding(r["dmarc"]["findings"], "dmarc-syntax", "error")


def test_not_utf8():
    # What is not UTF-8 is still valid JSON: each ill-formed sequence is one
    # U+FFFD, as Python's decoder replaces it; the rest is kept.
    out, r = check_octets("badutf8.test")
    assert r["spf"]["record"] == NOT_UTF8_SPF.decode("utf-8", "replace"), r["spf"]
    assert r["spf"]["record"].count("\ufffd") == 7, r["spf"]["record"]
    assert finding(r["spf"]["findings"], "spf-syntax", "error")
    assert r["dmarc"]["record"] == NOT_UTF8_DMARC.decode("utf-8", "replace"), r["dmarc"]
    # The text output shows the octets themselves.
    p = box.ctl("check", "badutf8.test", "--resolver", dns.address, check=False)
    assert p.returncode == 4
    assert "v=spf1 ip4:192.0.2.1 \\xff \\xc0\\xaf \\xe2\\x82 \\xed\\xa0\\x80 -all" in p.stdout, p.stdout


def test_usage_errors():
    p = box.ctl("check", check=False)
    assert p.returncode == 2 and "wrong number of arguments" in p.stderr, p.stderr
    p = box.ctl("check", "example.test", "--resolver", "not-an-ip", check=False)
    assert p.returncode == 2 and "not a resolver address" in p.stderr, p.stderr
    p = box.ctl("check", "bad_domain!", "--resolver", dns.address, check=False)
    assert p.returncode == 2 and "not a valid domain name" in p.stderr, p.stderr
    p = box.ctl("records", "example.test", "--resolver", dns.address, check=False)
    assert p.returncode == 2 and "does not take --resolver" in p.stderr, p.stderr


def test_records():
    p = box.ctl("records", "example.test", "--json")
    r = json.loads(p.stdout)
    by_name = {x["name"]: x for x in r["records"]}
    assert by_name["example.test"]["value"] == "v=spf1 mx ~all"
    assert by_name["_dmarc.example.test"]["value"] == "v=DMARC1; p=none; rua=mailto:dmarc-reports@example.test"
    for sel in ("match", "split", "other", "missing", "testing", "weak", "big", "alias"):
        x = by_name[f"{sel}._domainkey.example.test"]
        assert x["type"] == "dkim" and x["value"] == records[sel], sel
        assert x["note"], sel
    text = box.ctl("records", "example.test").stdout
    assert f'match._domainkey.example.test. IN TXT ( "{records["match"][:255]}"' in text, text[:600]
    assert '_dmarc.example.test. IN TXT "v=DMARC1; p=none; rua=mailto:dmarc-reports@example.test"' in text
    # What records suggests, check accepts: publish it and check again.
    zone = {"example.test": [by_name["example.test"]["value"]],
            "_dmarc.example.test": [by_name["_dmarc.example.test"]["value"]]}
    for x in r["records"]:
        if x["type"] == "dkim":
            zone[x["name"]] = [x["value"]]
    try:
        dns.set_records(zone)
        r = check("example.test")
        assert r["dkim"]["verdict"] != "error", json.dumps(r["dkim"], indent=1)
        assert all(s["matches"] for s in r["dkim"]["selectors"])
        assert r["spf"]["verdict"] == "warning"    # mx finds nothing in this zone: a void lookup
        assert r["dmarc"]["policy"] == "none"
    finally:
        dns.set_records(ORIGINAL)


ORIGINAL = None


def main():
    global ORIGINAL
    setup()
    ORIGINAL = dict(dns.records)
    try:
        run([test_dkim_selectors, test_dkim_revoked_and_garbage, test_spf_ok, test_spf_too_many_lookups,
             test_spf_loop, test_spf_policy_and_syntax, test_dmarc_pct_and_external_reports, test_dmarc_broken,
             test_dmarc_inherited, test_exit_status_ok_and_warnings, test_timeout_is_incomplete,
             test_refused_is_incomplete, test_resolver_from_config, test_text_output, test_utf8_kept, test_not_utf8,
             test_usage_errors, test_records])
    finally:
        dns.close()
        box.close()


if __name__ == "__main__":
    main()
