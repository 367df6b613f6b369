#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""Internationalized domains end to end (issue 23, RFC 6532 and RFC 8616):
keys made with dkimsignctl for a U-label --domain, a [domain] section
written with U-labels, an EAI message from user@bücher.example signed by
the real dkimsignd with d=xn--bcher-kva.example and passed by the three
verifiers (python3-dkim, Mail::DKIM, OpenDKIM), identity and also_sign
written with U-labels, and invalid IDNs refused with their reason by
dkimsignd and by dkimsignctl."""
import json
import os
import shutil
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
from harness import Sandbox, run, signature_fields, tags, verify_files, write_keytable  # noqa: E402

ULABEL = "bücher.example"
ALABEL = "xn--bcher-kva.example"
BOTH = f"{ALABEL} ({ULABEL})"
# RFC 6532: UTF-8 in the From address (local part and domain), the display
# name and the Subject, unencoded.
MESSAGE = ("From: Jörg Müller <jörg@bücher.example>\r\n"
           "To: bob@example.net\r\n"
           "Subject: Grüße aus der Bücherei\r\n"
           "Date: Sat, 05 Dec 2026 10:00:00 +0000\r\n"
           "Message-ID: <idn-1@bücher.example>\r\n"
           "\r\n"
           "Schöne Grüße.\r\n").encode()
# What each verifier must say of the two signatures (rsa, then ed25519):
# Debian 12's Mail::DKIM has no Ed25519.
EXPECTED = {"dkimpy": ["pass", "pass"], "mail-dkim": ["pass", "skip"], "opendkim": ["pass", "pass"]}
# A second domain whose section writes identity and also_sign with U-labels.
MUNICH = "münchen.example"
MUNICH_A = "xn--mnchen-3ya.example"
CONFIG = f"""[domain {ULABEL}]
selectors = r2026, e2026

[domain {MUNICH}]
identity = @nëws.%d
also_sign = {ULABEL}
"""

box = None


def setup():
    global box
    # The section is written with U-labels: found for the From domain's
    # A-labels only if the configuration converted it.
    box = Sandbox(extra_config=CONFIG)
    box.init_token()
    box.keygen(ULABEL, "r2026", "rsa")
    box.keygen("XN--BCHER-KVA.Example", "e2026", "ed25519")
    box.keygen(MUNICH, "m2026", "rsa")
    box.start()


def test_keys_are_named_by_alabels():
    assert sorted(box.keytable) == [f"e2026._domainkey.{ALABEL}", f"m2026._domainkey.{MUNICH_A}",
                                    f"r2026._domainkey.{ALABEL}"], box.keytable
    out = box.ctl("dns-record", "--domain", ULABEL, "--selector", "r2026").stdout
    lines = out.splitlines()
    assert lines[0] == f"; for {BOTH}", out
    assert lines[1].startswith(f"r2026._domainkey.{ALABEL}. IN TXT "), out
    # The same key by its A-labels: the same record.
    assert box.ctl("dns-record", "--domain", ALABEL, "--selector", "r2026").stdout == out


def test_list_shows_both_forms():
    table = box.ctl("list").stdout.splitlines()
    rows = [line for line in table if line.startswith(ALABEL)]
    assert len(rows) == 2 and all(r.startswith(BOTH + " ") for r in rows), table
    # Columns still line up: the U-label counts in characters, not octets.
    col = table[0].index("SELECTOR")
    assert sorted(r[col:].split()[0] for r in rows) == ["e2026", "r2026"], table
    keys = json.loads(box.ctl("list", "--json").stdout)
    assert {(k["domain"], k["domain_unicode"], k["selector"]) for k in keys} == \
        {(ALABEL, ULABEL, "r2026"), (ALABEL, ULABEL, "e2026"), (MUNICH_A, MUNICH, "m2026")}, keys


def test_records_take_a_ulabel():
    doc = json.loads(box.ctl("records", ULABEL, "--json").stdout)
    assert doc["domain"] == ALABEL and doc["domain_unicode"] == ULABEL, doc
    names = sorted(r["name"] for r in doc["records"])
    assert f"r2026._domainkey.{ALABEL}" in names and f"_dmarc.{ALABEL}" in names, names
    text = box.ctl("records", ULABEL + ".").stdout
    assert text.startswith(f"; Records to publish for {BOTH}\n"), text
    # An ASCII domain is shown alone, in text and JSON.
    doc = json.loads(box.ctl("records", "Example.COM", "--json").stdout)
    assert doc["domain"] == doc["domain_unicode"] == "example.com", doc


def test_ctl_refuses_invalid_idns_with_their_reason():
    cases = [(["dns-record", "--domain", "a\u200db.example", "--selector", "r2026"], "joiner"),
             (["keygen", "--domain", "xn--zz.example", "--selector", "x"], "not a valid A-label"),
             (["records", "\u0661\u0662.example"], "Bidi rule"),
             (["rotate", "--domain", "☃.example"], "does not allow")]
    for args, why in cases:
        p = box.ctl(*args, check=False)
        lines = p.stderr.strip().splitlines()
        assert p.returncode == 2 and len(lines) == 1, (args, p.returncode, p.stderr)
        assert "is not a valid domain name: " in lines[0] and why in lines[0], (args, lines)
    assert len(json.loads(box.ctl("list", "--json").stdout)) == 3, "nothing was made"


def test_eai_message_signed_with_alabels_and_verified_by_three():
    files = []
    for canon in ("relaxed/relaxed", "simple/simple", "relaxed/simple"):
        p = box.sign(MESSAGE, "--canon", canon)
        assert p.returncode == 0, (canon, p.stderr)
        assert p.stdout.endswith(MESSAGE), "the message must follow the signatures byte for byte"
        t = [tags(f) for f in signature_fields(p.stdout)]
        assert [(x["a"], x["d"], x["s"], x["c"]) for x in t] == \
            [("rsa-sha256", ALABEL, "r2026", canon), ("ed25519-sha256", ALABEL, "e2026", canon)], t
        path = os.path.join(box.dir, canon.replace("/", "-") + ".eml")
        with open(path, "wb") as f:
            f.write(p.stdout)
        files.append(path)
    verdicts = verify_files(files, write_keytable(box))
    for name, want in EXPECTED.items():
        for path in files:
            assert verdicts[name].get(path) == want, (name, path, verdicts[name].get(path))


def test_identity_and_also_sign_written_with_ulabels():
    """i= and the second d= in A-label form, as the section's own d= is,
    and every signature passes the three verifiers."""
    message = MESSAGE.replace("jörg@bücher.example".encode(), f"jörg@{MUNICH}".encode())
    p = box.sign(message)
    assert p.returncode == 0, p.stderr
    t = [tags(f) for f in signature_fields(p.stdout)]
    assert [(x["d"], x["s"]) for x in t] == [(MUNICH_A, "m2026"), (ALABEL, "r2026"), (ALABEL, "e2026")], t
    assert t[0]["i"] == f"@xn--nws-jma.{MUNICH_A}", t[0]
    path = os.path.join(box.dir, "also-sign.eml")
    with open(path, "wb") as f:
        f.write(p.stdout)
    want = {"dkimpy": ["pass"] * 3, "mail-dkim": ["pass", "pass", "skip"], "opendkim": ["pass"] * 3}
    for name, verdicts in verify_files([path], write_keytable(box)).items():
        assert verdicts.get(path) == want[name], (name, verdicts.get(path))


def test_requested_ulabel_domain_is_signed_for_as_alabels():
    message = MESSAGE.replace("jörg@bücher.example".encode(), "jörg@post.bücher.example".encode())
    p = box.sign(message, "--domain", ULABEL)
    assert p.returncode == 0, p.stderr
    assert [tags(f)["d"] for f in signature_fields(p.stdout)] == [ALABEL, ALABEL]


def test_invalid_idn_refused_with_its_reason():
    cases = [("jörg@a\u200db.example", "it contains a joiner"),
             ("jörg@\u0661\u0662.example", "Bidi rule"),
             ("jörg@xn--zz.example", "not a valid A-label")]
    for sender, why in cases:
        p = box.sign(MESSAGE.replace("jörg@bücher.example".encode(), sender.encode()))
        lines = p.stderr.decode().strip().splitlines()
        assert p.returncode == 65 and p.stdout == b"", (sender, p.returncode, p.stderr)
        assert len(lines) == 1 and "the From domain is not a valid internationalized domain name" in lines[0] \
            and why in lines[0], (sender, lines)
    p = box.sign(MESSAGE, "--domain", "a\u200db.example")
    lines = p.stderr.decode().strip().splitlines()
    assert p.returncode == 65 and len(lines) == 1 and "joiner" in lines[0], (p.returncode, lines)
    assert "not a valid internationalized domain name" in box.log(), "dkimsignd logs why"


def test_import_opendkim_ulabels():
    """An OpenDKIM KeyTable and SigningTable naming köln.example with
    U-labels: the key is imported under its A-label name, and the
    [domain] section is written in A-labels; an invalid IDN in either
    table is refused with its reason, and nothing is imported."""
    assert shutil.which("opendkim-genkey"), "opendkim-genkey (opendkim-tools) is needed"
    od = os.path.join(box.dir, "opendkim")
    os.makedirs(od)
    subprocess.run(["opendkim-genkey", "-d", "xn--kln-sna.example", "-s", "imp", "-D", od], check=True, timeout=120)
    keytable, signingtable = os.path.join(od, "KeyTable"), os.path.join(od, "SigningTable")
    conf_out = os.path.join(box.dir, "opendkim.conf")

    def tables(kt_domain, st_pattern):
        with open(keytable, "w") as f:
            f.write(f"imp {kt_domain}:imp:{od}/imp.private\n")
        with open(signingtable, "w") as f:
            f.write(f"{st_pattern} imp\n")

    for kt_domain, st_pattern, why in (("k\u200döln.example", "*@köln.example",
                                        "KeyTable:1: 'k\u200döln.example' is not a valid domain name: "
                                        "it contains a joiner"),
                                       ("köln.example", "*@*.xn--zz.example",
                                        "SigningTable:1: '*@*.xn--zz.example': not a valid domain name: an xn-- "
                                        "label is not a valid A-label")):
        tables(kt_domain, st_pattern)
        p = box.ctl("import-opendkim", keytable, signingtable, "--config-out", conf_out, check=False)
        assert p.returncode == 1 and why in p.stderr and "nothing was imported" in p.stderr, (p.returncode, p.stderr)
        assert not os.path.exists(conf_out)
    tables("KÖLN.example", "*@köln.example")
    p = box.ctl("import-opendkim", keytable, signingtable, "--config-out", conf_out)
    assert "key imp._domainkey.xn--kln-sna.example from" in p.stdout, p.stdout
    with open(conf_out) as f:
        sections = f.read()
    assert "[domain xn--kln-sna.example]\nselectors = imp\n" in sections, sections
    keys = json.loads(box.ctl("list", "--json").stdout)
    assert ("xn--kln-sna.example", "köln.example", "imp") in \
        {(k["domain"], k["domain_unicode"], k["selector"]) for k in keys}, keys


if __name__ == "__main__":
    setup()
    try:
        run([test_keys_are_named_by_alabels, test_list_shows_both_forms, test_records_take_a_ulabel,
             test_ctl_refuses_invalid_idns_with_their_reason, test_eai_message_signed_with_alabels_and_verified_by_three,
             test_identity_and_also_sign_written_with_ulabels, test_requested_ulabel_domain_is_signed_for_as_alabels,
             test_import_opendkim_ulabels, test_invalid_idn_refused_with_its_reason])
    finally:
        box.close()
