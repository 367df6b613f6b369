#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""End to end: dkimsignctl makes keys on a real SoftHSM token, dkimsignd
signs over its socket, dkimsign prints the message, python3-dkim verifies."""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
from harness import Sandbox, dkimpy_verify, run, signature_fields, tags  # noqa: E402

MESSAGE = (b"From: Alice <alice@example.com>\r\n"
           b"To: bob@example.net\r\n"
           b"Subject: hello\r\n"
           b"Date: Sun, 29 Nov 2026 10:00:00 +0000\r\n"
           b"Message-ID: <1@example.com>\r\n"
           b"\r\n"
           b"Hello Bob.\r\n")

box = None


def setup():
    global box
    box = Sandbox()
    box.init_token()
    box.keygen("example.com", "s2026")
    box.start()


def test_signs_and_verifies():
    p = box.sign(MESSAGE)
    assert p.returncode == 0, p.stderr
    assert p.stdout.endswith(MESSAGE), "the message must follow the signature unchanged"
    fields = signature_fields(p.stdout)
    assert len(fields) == 1
    t = tags(fields[0])
    assert t["v"] == "1" and t["a"] == "rsa-sha256" and t["c"] == "relaxed/relaxed"
    assert t["d"] == "example.com" and t["s"] == "s2026" and int(t["t"]) > 1700000000
    assert "l" not in t, "never l= (body length tag)"
    hs = t["h"].split(":")
    # From, To, Subject, Date and Message-ID are present once and oversigned.
    for name in ("from", "to", "subject", "date", "message-id"):
        assert hs.count(name) == 2, (name, hs)
    assert dkimpy_verify(p.stdout, box.keytable)


def test_lf_message_keeps_lf_and_verifies():
    lf = MESSAGE.replace(b"\r\n", b"\n")
    p = box.sign(lf)
    assert p.returncode == 0, p.stderr
    assert b"\r" not in p.stdout, "LF input gets LF output"
    assert dkimpy_verify(p.stdout, box.keytable)


def test_simple_canonicalization_verifies():
    for canon in ("simple/simple", "simple/relaxed", "relaxed/simple"):
        p = box.sign(MESSAGE, "--canon", canon)
        assert p.returncode == 0, p.stderr
        assert tags(signature_fields(p.stdout)[0])["c"] == canon
        assert dkimpy_verify(p.stdout, box.keytable), canon


def test_refuses_no_from():
    p = box.sign(b"To: bob@example.net\r\nSubject: x\r\n\r\nbody\r\n")
    assert p.returncode == 65, (p.returncode, p.stderr)
    lines = p.stderr.decode().strip().splitlines()
    assert len(lines) == 1 and "no From" in lines[0], lines
    assert p.stdout == b""


def test_refuses_two_from():
    for second in (b"From: mallory@example.com", b"FROM: mallory@example.com", b"From : mallory@example.com"):
        p = box.sign(b"From: alice@example.com\r\n" + second + b"\r\nSubject: x\r\n\r\nbody\r\n")
        assert p.returncode == 65, (second, p.returncode, p.stderr)
        lines = p.stderr.decode().strip().splitlines()
        assert len(lines) == 1 and "more than one From" in lines[0], lines


def test_refuses_domain_without_key():
    p = box.sign(MESSAGE.replace(b"alice@example.com", b"alice@example.org"))
    assert p.returncode == 65, p.stderr
    assert b"no signing key for domain example.org" in p.stderr


def test_unsigned_ok_passes_a_domain_without_key_unchanged():
    """--unsigned-ok: a message of a domain without a key comes back byte
    for byte (CRLF, LF, header only and without a last line end), exit
    0, with one line naming why (and the queue id when given)."""
    other = MESSAGE.replace(b"alice@example.com", b"alice@example.org")
    for message in (other, other.replace(b"\r\n", b"\n"), other.split(b"\r\n\r\n")[0],
                    other.split(b"\r\n\r\n")[0] + b"\r\n"):
        p = box.sign(message, "--unsigned-ok")
        assert p.returncode == 0, (p.returncode, p.stderr)
        assert p.stdout == message, p.stdout
        assert p.stderr == b"dkimsign: not signed: dkimsignd: no signing key for domain example.org\n", p.stderr
    p = box.sign(other, "-u", "--queue-id", "1xZq-0007-AB")
    assert p.returncode == 0 and p.stdout == other, p.stderr
    assert p.stderr == b"dkimsign: 1xZq-0007-AB: not signed: dkimsignd: no signing key for domain example.org\n", p.stderr
    # A domain with a key is signed as without the option.
    p = box.sign(MESSAGE, "--unsigned-ok")
    assert p.returncode == 0 and p.stderr == b"", p.stderr
    assert len(signature_fields(p.stdout)) == 1 and dkimpy_verify(p.stdout, box.keytable)


def test_unsigned_ok_still_refuses_broken_and_defers():
    """A malformed message is still refused (65) and an unreachable daemon
    still a temporary failure (75): nothing on stdout either way."""
    cases = [(b"To: bob@example.net\r\nSubject: x\r\n\r\nbody\r\n", 65, b"no From"),
             (b"From: a@example.com\r\nFrom: b@example.com\r\nSubject: x\r\n\r\nbody\r\n", 65,
              b"more than one From"),
             (b"From: a@example.com, b@example.com\r\nSubject: x\r\n\r\nbody\r\n", 65, b"more than one From")]
    for message, code, why in cases:
        p = box.sign(message, "--unsigned-ok")
        assert p.returncode == code and p.stdout == b"", (message, p.returncode, p.stderr)
        lines = p.stderr.splitlines()
        assert len(lines) == 1 and why in lines[0] and b"not signed" not in lines[0], lines
    p = box.sign(MESSAGE, "--unsigned-ok", "--socket", os.path.join(box.dir, "nothing.sock"))
    assert p.returncode == 75 and p.stdout == b"" and b"cannot connect to dkimsignd" in p.stderr, p.stderr


def test_unsigned_ok_passes_a_domain_not_ours():
    """A domain this user may not sign for ([domain] allow) is refused
    (65) without the option and written back unchanged with it, with the
    daemon's reason."""
    box.write_config("[domain example.com]\nallow = user:nobody\n")
    box.stop()
    box.start()
    try:
        p = box.sign(MESSAGE)
        assert p.returncode == 65 and b"not authorized to sign for domain example.com" in p.stderr, p.stderr
        p = box.sign(MESSAGE, "--unsigned-ok")
        assert p.returncode == 0 and p.stdout == MESSAGE, p.stderr
        assert p.stderr == (b"dkimsign: not signed: dkimsignd: uid %d is not authorized to sign for domain "
                            b"example.com\n" % os.geteuid()), p.stderr
    finally:
        box.write_config()
        box.stop()
        box.start()


def test_usage_errors():
    for args in (["--canon", "loose"], ["--no-such-option"], ["extra-argument"]):
        p = box.sign(MESSAGE, *args)
        assert p.returncode == 64 and p.stdout == b"", (args, p.returncode, p.stderr)
    p = box.sign(MESSAGE, "--help")
    assert p.returncode == 0 and b"--unsigned-ok" in p.stdout and b"--queue-id" in p.stdout


def test_domain_override():
    p = box.sign(MESSAGE.replace(b"alice@example.com", b"alice@example.org"), "--domain", "example.com")
    assert p.returncode == 0, p.stderr
    assert tags(signature_fields(p.stdout)[0])["d"] == "example.com"
    assert dkimpy_verify(p.stdout, box.keytable)


def test_large_body_streams():
    body = b"".join(b"line %07d with some text   \r\n" % i for i in range(400000))  # ~13 MB
    p = box.sign(MESSAGE + body)
    assert p.returncode == 0, p.stderr
    assert dkimpy_verify(p.stdout, box.keytable)


def test_daemon_down_is_temporary():
    p = box.sign(MESSAGE, "--socket", os.path.join(box.dir, "nothing.sock"))
    assert p.returncode == 75, (p.returncode, p.stderr)
    assert b"cannot connect to dkimsignd" in p.stderr


def test_ctl_refuses_duplicate_and_unknown():
    p = box.ctl("keygen", "--domain", "example.com", "--selector", "s2026", check=False)
    assert p.returncode == 1 and "already exists" in p.stderr, p.stderr
    p = box.ctl("dns-record", "--domain", "example.com", "--selector", "nope", check=False)
    assert p.returncode == 1 and "no key named nope._domainkey.example.com" in p.stderr, p.stderr
    p = box.ctl("keygen", "--domain", "example.com", "--selector", "x", "--bits", "512", check=False)
    assert p.returncode == 2 and "1024" in p.stderr, p.stderr


def test_wrong_pin_is_clear_and_secret():
    good = open(box.pin_file).read()
    with open(box.pin_file, "w") as f:
        f.write("0000wrong\n")
    try:
        p = box.ctl("list", check=False)
    finally:
        with open(box.pin_file, "w") as f:
            f.write(good)
    assert p.returncode == 1 and "refused the PIN" in p.stderr, p.stderr
    assert "0000wrong" not in p.stderr and good.strip() not in p.stderr


def test_dns_record_format():
    out = box.ctl("dns-record", "--domain", "example.com", "--selector", "s2026").stdout
    first = out.splitlines()[0]
    assert first.startswith("s2026._domainkey.example.com. IN TXT ( \"v=DKIM1; k=rsa; p="), first
    assert box.keytable["s2026._domainkey.example.com"].startswith("v=DKIM1; k=rsa; p=MIIBIjAN")


def test_bad_config_is_refused_clearly():
    bad = os.path.join(box.dir, "bad.conf")
    with open(bad, "w") as f:
        f.write("[token]\nmodule = /x\nlabel = y\n[limits]\nmax_frame = lots\n")
    import subprocess
    from harness import binary
    p = subprocess.run([binary("dkimsignd"), "--config", bad], capture_output=True, text=True, timeout=30)
    assert p.returncode == 1, p.returncode
    assert "line 5" in p.stderr and "max_frame" in p.stderr, p.stderr


def test_dual_signing_rsa_and_ed25519():
    box.keygen("example.net", "r1", "rsa")
    box.keygen("example.net", "e1", "ed25519")
    box.keygen("example.info", "e1", "ed25519")
    box.stop()
    box.start()  # keys are read at start-up
    p = box.sign(MESSAGE.replace(b"alice@example.com", b"alice@example.net"))
    assert p.returncode == 0, p.stderr
    fields = signature_fields(p.stdout)
    assert [tags(f)["a"] for f in fields] == ["rsa-sha256", "ed25519-sha256"], fields
    assert [tags(f)["s"] for f in fields] == ["r1", "e1"]
    assert dkimpy_verify(p.stdout, box.keytable, 0) and dkimpy_verify(p.stdout, box.keytable, 1)
    record = box.keytable["e1._domainkey.example.net"]
    assert record.startswith("v=DKIM1; k=ed25519; p=") and len(record) == len("v=DKIM1; k=ed25519; p=") + 44
    p = box.sign(MESSAGE.replace(b"alice@example.com", b"alice@example.info"))
    assert p.returncode == 0, p.stderr
    assert [tags(f)["a"] for f in signature_fields(p.stdout)] == ["ed25519-sha256"]
    assert dkimpy_verify(p.stdout, box.keytable)


def test_policy_subdomains_expire_and_headers():
    box.write_config("[signing]\nexpire = 7d\n\n"
                     "[domain example.com]\nsubdomains = yes\nheaders = from, subject\noversign = from\n")
    box.stop()
    box.start()
    try:
        p = box.sign(MESSAGE.replace(b"alice@example.com", b"alice@mail.Example.COM"))
        assert p.returncode == 0, p.stderr
        t = tags(signature_fields(p.stdout)[0])
        assert t["d"] == "example.com", t
        assert int(t["x"]) == int(t["t"]) + 7 * 86400, t
        assert t["h"] == "from:from:subject", t
        assert dkimpy_verify(p.stdout, box.keytable)
        # A sibling that is not a subdomain gets no key.
        p = box.sign(MESSAGE.replace(b"alice@example.com", b"alice@notexample.com"))
        assert p.returncode == 65 and b"no signing key for domain notexample.com" in p.stderr, p.stderr
    finally:
        box.write_config()
        box.stop()
        box.start()


def test_sigterm_exits_cleanly():
    assert box.stop() == 0, box.log()
    box.start()


if __name__ == "__main__":
    setup()
    try:
        run([test_signs_and_verifies, test_lf_message_keeps_lf_and_verifies,
             test_simple_canonicalization_verifies, test_refuses_no_from, test_refuses_two_from,
             test_refuses_domain_without_key, test_unsigned_ok_passes_a_domain_without_key_unchanged,
             test_unsigned_ok_still_refuses_broken_and_defers, test_unsigned_ok_passes_a_domain_not_ours,
             test_usage_errors, test_domain_override, test_large_body_streams,
             test_daemon_down_is_temporary, test_ctl_refuses_duplicate_and_unknown,
             test_wrong_pin_is_clear_and_secret, test_dns_record_format,
             test_bad_config_is_refused_clearly, test_dual_signing_rsa_and_ed25519,
             test_policy_subdomains_expire_and_headers, test_sigterm_exits_cleanly])
    finally:
        box.close()
