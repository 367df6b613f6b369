#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""The signing options of dkimsignd.conf (issue 21), end to end: the real
daemon signs through a SoftHSM token, and every signature it returns is
checked by three verifiers run as programs of their own (python3-dkim,
Mail::DKIM, OpenDKIM's library; Debian 12's Mail::DKIM skips Ed25519).

- identity: i= as @subdomain (a [domain]'s own), as a quoted address, and
  following d= from [signing] (@%d) on a domain without a section;
- also_sign: the second domain's signatures beside the first's; refused
  whole when the peer may not sign for the second domain; the first alone,
  logged, when the second has no key;
- expire: x= - t= per domain, else [signing]'s;
- over-signing: always N+1 (absent fields once) against only present
  fields (oversign_if_present), read from h=;
- also_sign's d= counts against that domain's own quota: a peer can't get
  more of its signatures through another domain than its quota allows;
- i= with every local-part character the syntax admits (the dot-atom's
  specials, a quoted string's) passes the three verifiers as it is;
- h= of 4095 characters (OpenDKIM's most) is signed and verified; one
  character more is refused with a sentence, never signed;
- a configuration whose i= is not under d= is refused at load, naming the line.
"""
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
from harness import (Sandbox, binary, run, signature_fields, tags,  # noqa: E402
                     verify_files, write_keytable)

DAY = 86400

# h= names each instance: From and 62 fields of a 64-character name and
# one of 60 make 4095 characters; From, 47 of them and 17 of the short one
# make 4096.
LONG_NAMES = ["x-%02d-" % i + "n" * 59 for i in range(62)]
SHORT_NAME = "y-" + "n" * 58
HLIST = "".join("\n  " + n for n in LONG_NAMES + [SHORT_NAME])


def message(sender, extra=b""):
    return (b"From: Alice <" + sender + b">\r\n"
            b"To: bob@example.net\r\n"
            b"Subject: options\r\n"
            b"Date: Sat, 05 Dec 2026 10:00:00 +0000\r\n"
            b"Message-ID: <" + str(time.monotonic_ns()).encode() + b"@example.com>\r\n" + extra +
            b"\r\n"
            b"Hello.\r\n")


# The peer is this process: a uid that is not it stands for "not allowed".
OTHER_UID = os.getuid() + 1

CONFIG = f"""[signing]
identity = @%d
expire = 1d
also_sign = esp.example
oversign_if_present = cc

[domain example.com]
identity = @news.example.com
expire = 3d

[domain addr.example]
identity = "j.doe"@Mail.Addr.example
also_sign = nokey.example

[domain denied.example]
also_sign = closed.example

[domain closed.example]
allow = user:{OTHER_UID}

[domain denied2.example]
also_sign = keyless.example

[domain keyless.example]
allow = user:{OTHER_UID}

[domain present.example]
also_sign = none
oversign =
oversign_if_present = from, to, cc, subject, date, reply-to, message-id, mime-version, content-type

[domain always.example]
also_sign = none
oversign_if_present =

[domain quota.example]
also_sign = espq.example

[domain espq.example]
quota_per_day = 1

[domain chars.example]
also_sign = none
identity = a!#$%&'*+-/?^_`{{|}}~.b@chars.example

[domain quoted.example]
also_sign = none
identity = "a(b),<c>[d]:e.f"@sub.quoted.example

[domain hlist.example]
also_sign = none
oversign =
headers = from{HLIST}
"""

box = None
signed = {}     # file -> algorithms of its signatures, top down


def setup():
    global box
    box = Sandbox(extra_config=CONFIG)
    box.init_token()
    box.keygen("example.com", "r1", "rsa")
    box.keygen("example.com", "e1", "ed25519")
    for domain in ("esp.example", "addr.example", "denied.example", "denied2.example", "closed.example",
                   "present.example",
                   "always.example", "plain.example", "quota.example", "espq.example", "chars.example",
                   "quoted.example", "hlist.example"):
        box.keygen(domain, "r1", "rsa")
    box.start()


def sign_ok(msg, name):
    p = box.sign(msg)
    assert p.returncode == 0, p.stderr
    assert p.stdout.endswith(msg)
    fields = [tags(f) for f in signature_fields(p.stdout)]
    path = os.path.join(box.dir, name + ".eml")
    with open(path, "wb") as f:
        f.write(p.stdout)
    signed[path] = [t["a"] for t in fields]
    return fields


def test_identity_expire_and_also_sign():
    """example.com: its own i= and x=, and esp.example's signature beside
    it with [signing]'s (i= follows d=, x= one day)."""
    fields = sign_ok(message(b"alice@example.com"), "example-com")
    assert [(t["d"], t["a"]) for t in fields] == [("example.com", "rsa-sha256"), ("example.com", "ed25519-sha256"),
                                                  ("esp.example", "rsa-sha256")], fields
    for t in fields[:2]:
        assert t["i"] == "@news.example.com", t
        assert int(t["x"]) - int(t["t"]) == 3 * DAY, t
    assert fields[2]["i"] == "@esp.example" and int(fields[2]["x"]) - int(fields[2]["t"]) == DAY, fields[2]


def test_identity_address_and_also_sign_without_key():
    """A quoted address as i= (its domain lowercased); the also_sign domain
    has no key: the first domain signs alone, and the log says why."""
    fields = sign_ok(message(b"alice@addr.example"), "addr-example")
    assert len(fields) == 1 and fields[0]["d"] == "addr.example", fields
    assert fields[0]["i"] == '"j.doe"@mail.addr.example', fields[0]
    deadline = time.monotonic() + 10
    while "also_sign" not in box.log() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert "not signed with d=nokey.example, only with d=addr.example" in box.log(), box.log()


def test_identity_follows_d_without_a_section():
    fields = sign_ok(message(b"alice@plain.example"), "plain-example")
    assert [(t["d"], t["i"]) for t in fields] == [("plain.example", "@plain.example"),
                                                  ("esp.example", "@esp.example")], fields


def test_also_sign_not_allowed_is_refused():
    """The peer may sign for denied.example but not for its also_sign
    domain: nothing is signed, and the sentence says which and why; so too
    when that domain has no key (the refusal comes first)."""
    for domain, also in (("denied.example", "closed.example"), ("denied2.example", "keyless.example")):
        p = box.sign(message(b"alice@" + domain.encode()))
        assert p.returncode == 65 and p.stdout == b"", (domain, p.returncode, p.stderr)
        err = p.stderr.decode()
        assert f"also_sign {also} (for {domain}): uid {os.getuid()} is not authorized to sign for domain {also}" \
            in err, err


def test_also_sign_counts_against_its_quota():
    """espq.example may sign one message a day: the second message of
    quota.example, which also_sign gives an espq.example signature, is
    refused for a while (75) rather than signed past that quota."""
    fields = sign_ok(message(b"alice@quota.example"), "quota-example")
    assert [t["d"] for t in fields] == ["quota.example", "espq.example"], fields
    p = box.sign(message(b"alice@quota.example"))
    assert p.returncode == 75 and p.stdout == b"", (p.returncode, p.stderr)
    assert b"domain espq.example is over its signing quota of 1 messages a day" in p.stderr, p.stderr


def test_identity_local_part_characters():
    """The local parts identity admits go into i= as they are, and every
    verifier reads them alike (test_three_verifiers)."""
    for domain, want in (("chars.example", "a!#$%&'*+-/?^_`{|}~.b@chars.example"),
                         ("quoted.example", '"a(b),<c>[d]:e.f"@sub.quoted.example')):
        fields = sign_ok(message(b"alice@" + domain.encode()), domain.replace(".", "-"))
        assert [t["i"] for t in fields] == [want], fields


def test_hlist_length_bound():
    """The longest h= OpenDKIM verifies is signed (test_three_verifiers
    checks it); one character more is refused, permanently, saying why."""
    def msg(names):
        return (b"From: Alice <alice@hlist.example>\r\n" + b"".join(n.encode() + b": v\r\n" for n in names) +
                b"\r\nHello.\r\n")

    fields = sign_ok(msg(LONG_NAMES + [SHORT_NAME]), "hlist-4095")
    assert len(fields[0]["h"]) == 4095, len(fields[0]["h"])
    p = box.sign(msg(LONG_NAMES[:47] + [SHORT_NAME] * 17))
    assert p.returncode == 65 and p.stdout == b"", (p.returncode, p.stderr)
    assert b"too many header fields to sign under the policy" in p.stderr, p.stderr
    assert b"4095 characters" in p.stderr, p.stderr


def h_counts(t):
    hs = t["h"].lower().split(":")
    return {n: hs.count(n) for n in set(hs)}


def test_oversign_modes():
    """Always: a field is listed once more than it occurs, absent ones
    once.  If present: absent fields are not in h= at all."""
    extra = b"Cc: carol@example.net\r\nCc: dave@example.net\r\n"
    present = sign_ok(message(b"alice@present.example", extra), "present-example")
    assert len(present) == 1
    got = h_counts(present[0])
    assert got == {"from": 2, "to": 2, "cc": 3, "subject": 2, "date": 2, "message-id": 2}, got
    always = sign_ok(message(b"alice@always.example", extra), "always-example")
    assert len(always) == 1
    got = h_counts(always[0])
    for name in ("from", "to", "subject", "date", "message-id"):
        assert got[name] == 2, (name, got)
    assert got["cc"] == 3, got
    for name in ("reply-to", "mime-version", "content-type"):
        assert got[name] == 1, (name, got)
    # [signing]'s oversign_if_present = cc, the default's list for the rest.
    plain = sign_ok(message(b"alice@plain.example"), "plain-oversign")
    got = h_counts(plain[0])
    assert "cc" not in got and got["reply-to"] == 1 and got["from"] == 2, got


def test_three_verifiers():
    """Every signature above passes all three verifiers (Mail::DKIM skips
    Ed25519)."""
    assert len(signed) >= 6, signed
    keytable = write_keytable(box)
    files = sorted(signed)
    problems = []
    for verifier, verdicts in verify_files(files, keytable).items():
        for path in files:
            want = ["skip" if verifier == "mail-dkim" and a == "ed25519-sha256" else "pass" for a in signed[path]]
            if verdicts.get(path) != want:
                problems.append(f"{verifier}: {os.path.basename(path)}: {verdicts.get(path)}, expected {want}")
    assert not problems, "\n".join(problems)


def test_identity_not_under_d_is_refused_at_load():
    bad = os.path.join(box.dir, "bad.conf")
    with open(box.config) as f:
        text = f.read()
    with open(bad, "w") as f:
        f.write(text.replace("identity = @news.example.com", "identity = @example.net"))
    os.chmod(bad, 0o644)
    p = subprocess.run([binary("dkimsignd"), "--config", bad], env=box.env, capture_output=True, text=True,
                       timeout=60)
    assert p.returncode != 0, p
    assert "[domain example.com] identity '@example.net': example.net is neither d=example.com" in p.stderr, p.stderr


def main():
    setup()
    try:
        run([test_identity_expire_and_also_sign, test_identity_address_and_also_sign_without_key,
             test_identity_follows_d_without_a_section, test_also_sign_not_allowed_is_refused,
             test_also_sign_counts_against_its_quota, test_identity_local_part_characters, test_hlist_length_bound,
             test_oversign_modes, test_three_verifiers, test_identity_not_under_d_is_refused_at_load])
    finally:
        box.close()


if __name__ == "__main__":
    main()
