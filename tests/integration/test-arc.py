#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""ARC sealing end to end (RFC 8617): a corpus of ARC chains made here by
independent sealers with their own keys (python3-dkim's arc_sign and
Mail::DKIM's ARC::Signer), their key records on a real DNS server on
loopback (dnsmasq, tests/lib/dnsserver.py), sealed once more by `dkimsign
--arc` through dkimsignd on a SoftHSM token; every resulting chain checked
by python3-dkim's arc_verify and Mail::DKIM's ARC::Verifier, each run as
its own program, and by rspamd 3.4's arc module (a private rspamd on
loopback, tests/lib/rspamd.py, asked through rspamc: ARC_ALLOW,
ARC_REJECT, ARC_INVALID).

CASES is the table: how each message is made, the cv= dkimsign must seal
(None: it must refuse, the chain having ended with cv=fail upstream), and
what the verifiers must then say of the whole chain."""
import os
import re
import struct
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
from dnsserver import DnsServer  # noqa: E402
import arcverify  # noqa: E402
import rspamd  # noqa: E402
from arcverify import PYTHON, prog  # noqa: E402
import wire  # noqa: E402
from harness import BUILD, Sandbox, run, to_crlf  # noqa: E402

SEAL_DOMAIN = "list.example"
IDN_ULABEL, IDN_ALABEL = "bücher.example", "xn--bcher-kva.example"
AUTHSERV = "mx.list.example"

BASE = (b"Authentication-Results: mx.list.example; dkim=pass header.d=example.com;\r\n"
        b"\tspf=pass smtp.mailfrom=example.com\r\n"
        b"Authentication-Results: evil.example; dkim=pass header.d=forged.example\r\n"
        b"From: Alice <alice@example.com>\r\n"
        b"To: list@list.example\r\n"
        b"Subject: ARC test\r\n"
        b"Date: Sat, 05 Dec 2026 10:00:00 +0000\r\n"
        b"Message-ID: <arc-1@example.com>\r\n"
        b"\r\n"
        b"Hello list.\r\n")

box = None
dns = None
rs = None       # the private rspamd, when it runs here
rs_why = ""     # why not
workdir = None
sealers = {}    # name -> (domain, selector, PEM key path)

DKIMPY_SEAL = r"""
import sys, dkim
domain, selector, keyfile, cv = sys.argv[1:5]
srv = ("mx." + domain).encode()
msg = sys.stdin.buffer.read()
# arc_sign takes cv= from its own authserv-id's arc= result.
ar = b"Authentication-Results: " + srv + b"; spf=pass smtp.mailfrom=example.com"
if cv != "none":
    ar += b"; arc=" + cv.encode()
msg = ar + b"\r\n" + msg
sigs = dkim.arc_sign(msg, selector.encode(), domain.encode(), open(keyfile, "rb").read(), srv,
                     include_headers=[b"from", b"to", b"subject", b"date", b"message-id"])
if not sigs:
    sys.exit("python3-dkim did not seal")
sys.stdout.buffer.write(b"".join(sigs) + msg)
"""

MAILDKIM_SEAL = r"""
use strict; use warnings; use Mail::DKIM::ARC::Signer;
my ($domain, $selector, $keyfile, $cv) = @ARGV;
binmode STDIN; binmode STDOUT;
# $/ only while reading: the key file is read by lines.
my $msg = "Authentication-Results: mx.$domain; spf=pass smtp.mailfrom=example.com\015\012" . do { local $/; <STDIN> };
my $s = Mail::DKIM::ARC::Signer->new(Algorithm => 'rsa-sha256', Chain => $cv, Domain => $domain,
        SrvId => "mx.$domain", Selector => $selector, KeyFile => $keyfile,
        Headers => 'from:to:subject:date:message-id');
$s->PRINT($msg); $s->CLOSE;
die "Mail::DKIM did not seal: " . $s->result . " " . ($s->result_detail // '') . "\n" unless $s->result eq 'sealed';
my $h = $s->as_string; $h =~ s/\015?\012$//;
print $h, "\015\012", $msg;
"""

def seal_dkimpy(msg, name, cv):
    domain, selector, key = sealers[name]
    return prog([PYTHON, "-c", DKIMPY_SEAL, domain, selector, key, cv], msg)


def seal_maildkim(msg, name, cv):
    domain, selector, key = sealers[name]
    return prog(["perl", "-e", MAILDKIM_SEAL, domain, selector, key, cv], msg)


def change_body(msg):
    return msg.replace(b"Hello list.", b"Hello list, changed.")


def drop_field(msg, name):
    """msg without its first field called name (and its folded lines)."""
    head, sep, body = msg.partition(b"\r\n\r\n")
    lines, out, skipping, done = head.split(b"\r\n"), [], False, False
    for line in lines:
        if skipping and line[:1] in (b" ", b"\t"):
            continue
        skipping = not done and line.lower().startswith(name.lower() + b":")
        done = done or skipping
        if not skipping:
            out.append(line)
    return b"\r\n".join(out) + sep + body


# name: (how the message is made, the cv= dkimsign seals (None: it must
# refuse), what python3-dkim and Mail::DKIM then say of the whole chain,
# what rspamd says).  A chain whose structure was broken upstream stays
# broken under a cv=fail set: rspamd calls it ARC_INVALID, the other two
# just fail.
CASES = {
    "no chain": (lambda: BASE, "none", "pass", "pass"),
    "python3-dkim once": (lambda: seal_dkimpy(BASE, "a", "none"), "pass", "pass", "pass"),
    "Mail::DKIM once": (lambda: seal_maildkim(BASE, "b", "none"), "pass", "pass", "pass"),
    "three sealers": (lambda: seal_dkimpy(seal_maildkim(seal_dkimpy(BASE, "a", "none"), "b", "pass"), "c", "pass"),
                      "pass", "pass", "pass"),
    "changed body": (lambda: change_body(seal_dkimpy(BASE, "a", "none")), "fail", "fail", "fail"),
    "wrong instance": (lambda: seal_dkimpy(BASE, "a", "none").replace(b"i=1;", b"i=2;"), "fail", "fail", "invalid"),
    "missing seal": (lambda: drop_field(seal_maildkim(BASE, "b", "none"), b"ARC-Seal"), "fail", "fail", "invalid"),
    "cv=fail upstream": (lambda: seal_dkimpy(change_body(seal_dkimpy(BASE, "a", "none")), "c", "fail"),
                         None, None, None),
}


def setup():
    global box, dns, workdir
    workdir = tempfile.mkdtemp(prefix="dkimsign-arc-")
    # The test runs as root: "denied.example" is for nobody, so SEAL for it
    # is refused as SIGN would be.
    box = Sandbox(extra_config="[domain denied.example]\nallow = user:nobody\n")
    box.init_token()
    box.keygen(SEAL_DOMAIN, "arc2026")
    box.keygen(SEAL_DOMAIN, "arc2026e", "ed25519")
    box.keygen("ed.example", "arced", "ed25519")
    box.keygen(IDN_ULABEL, "arcidn")
    box.keygen("denied.example", "s1")
    box.start()
    records = {name: [text] for name, text in box.keytable.items()}
    for name, domain in (("a", "a.example"), ("b", "b.example"), ("c", "c.example")):
        key = os.path.join(workdir, name + ".pem")
        subprocess.run(["openssl", "genrsa", "-traditional", "-out", key, "2048"], check=True, capture_output=True)
        der = subprocess.run(["openssl", "rsa", "-in", key, "-pubout", "-outform", "DER"], check=True,
                             capture_output=True).stdout
        import base64
        records[f"s{name}._domainkey.{domain}"] = ["v=DKIM1; k=rsa; p=" + base64.b64encode(der).decode()]
        sealers[name] = (domain, "s" + name, key)
    dns = DnsServer({k: v for k, v in records.items()})
    arcverify.write_keys(os.path.join(workdir, "keys"), records)
    start_rspamd()


def start_rspamd():
    """rspamd's arc module as the third verifier; its hyperscan databases
    are kept in the build directory, so only a build's first run waits
    for them to compile."""
    global rs, rs_why
    if not rspamd.available():
        rs_why = "rspamd is not installed"
        return
    try:
        rs = rspamd.Rspamd(dns.address, os.path.join(BUILD, "tests", "rspamd-cache"))
    except RuntimeError as e:
        rs_why = str(e)


def dkimsign_seal(msg, *args, domain=SEAL_DOMAIN):
    return box.sign(msg, "--arc", "--domain", domain, "--authserv-id", AUTHSERV, "--dns-server", dns.address,
                    *args)


def verdicts(msg):
    """Each verifier's verdict on the chain: pass, fail, none or invalid."""
    return arcverify.verdicts(msg, os.path.join(workdir, "keys"), dns.port, rs)


def arc_fields(msg, name):
    head = msg.partition(b"\r\n\r\n")[0]
    return [f for f in re.split(rb"\r\n(?![ \t])", head) if f.lower().startswith(name.lower() + b":")]


def test_corpus_sealed_and_verified():
    failures = []
    for case, (make, want_cv, want, want_rspamd) in CASES.items():
        msg = to_crlf(make())
        p = dkimsign_seal(msg)
        if want_cv is None:
            if p.returncode != 65 or b"cv=fail" not in p.stderr:
                failures.append(f"{case}: expected a refusal, got {p.returncode} {p.stderr!r}")
            q = dkimsign_seal(msg, "--unsigned-ok")
            if q.returncode != 0 or q.stdout != msg:
                failures.append(f"{case}: --unsigned-ok must pass the message on unchanged")
            continue
        if p.returncode != 0:
            failures.append(f"{case}: dkimsign failed: {p.stderr!r}")
            continue
        sealed = p.stdout
        seal = arc_fields(sealed, b"ARC-Seal")[0]
        got_cv = re.search(rb"cv=(\w+)", seal).group(1).decode()
        if got_cv != want_cv:
            failures.append(f"{case}: sealed cv={got_cv}, expected cv={want_cv}")
        short, full = verdicts(sealed)
        for verifier, verdict in short.items():
            expected = want_rspamd if verifier == "rspamd" else want
            if verdict != expected:
                failures.append(f"{case}: {verifier} says {full[verifier].strip()!r}, expected {expected}")
        print(f"  {case}: cv={got_cv}; " + ", ".join(f"{k} {v}" for k, v in short.items()))
    assert not failures, "\n".join(failures)


def test_aar_records_only_own_authserv_id():
    p = dkimsign_seal(BASE)
    assert p.returncode == 0, p.stderr
    aar = arc_fields(p.stdout, b"ARC-Authentication-Results")[0]
    flat = re.sub(rb"\s+", b" ", aar)
    assert flat.startswith(b"ARC-Authentication-Results: i=1; mx.list.example; dkim=pass header.d=example.com; "
                           b"spf=pass smtp.mailfrom=example.com"), aar
    assert b"forged" not in aar, "an Authentication-Results of another authserv-id must be ignored"
    assert b"arc=none" in aar


def test_rsa_seals_when_domain_has_both():
    p = dkimsign_seal(BASE)
    assert p.returncode == 0, p.stderr
    for name in (b"ARC-Seal", b"ARC-Message-Signature"):
        fields = arc_fields(p.stdout, name)
        assert len(fields) == 1, "one ARC set per instance"
        assert b"a=rsa-sha256" in fields[0] and b"s=arc2026;" in fields[0], fields[0]


def test_ed25519_seal_verifies():
    """A domain with an Ed25519 key alone seals with it.  Neither python3-dkim
    1.1.4 nor Mail::DKIM 1.20230212 checks Ed25519 ARC ("unsupported
    algorithm"), which is why a domain with both keys seals with RSA; the
    chain check of dkimsign itself does, when it seals the result again."""
    p = dkimsign_seal(BASE, domain="ed.example")
    assert p.returncode == 0, p.stderr
    assert b"a=ed25519-sha256" in arc_fields(p.stdout, b"ARC-Seal")[0]
    q = dkimsign_seal(p.stdout)
    assert q.returncode == 0, q.stderr
    assert b"cv=pass" in arc_fields(q.stdout, b"ARC-Seal")[0], "dkimsign verifies its own Ed25519 set"
    q = dkimsign_seal(change_body(p.stdout))
    assert q.returncode == 0, q.stderr
    assert b"cv=fail" in arc_fields(q.stdout, b"ARC-Seal")[0]


def test_internationalized_sealing_domain():
    """A sealing domain given in U-labels, in any case, seals as its
    lowercase A-labels, the form SIGN's domains take; one IDNA2008 refuses
    is refused."""
    p = dkimsign_seal(BASE, domain=IDN_ULABEL.upper())
    assert p.returncode == 0, p.stderr
    for name in (b"ARC-Seal", b"ARC-Message-Signature"):
        assert f"d={IDN_ALABEL};".encode() in arc_fields(p.stdout, name)[0], arc_fields(p.stdout, name)
    short, full = verdicts(p.stdout)
    assert all(v == "pass" for v in short.values()), full
    p = dkimsign_seal(BASE, domain="xn--zz.example")
    assert p.returncode != 0 and b"not a valid" in p.stderr, (p.returncode, p.stderr)


def test_refuses_domain_without_key():
    p = dkimsign_seal(BASE, domain="nokey.example")
    assert p.returncode == 65, (p.returncode, p.stderr)


def seal_request(headers, domain=b"list.example", cv=0, instance=1):
    """A SEAL sent as is over a version 2 connection: (type, status or fields)."""
    c = wire.Conn(box.socket)
    try:
        c.send(wire.hello(hi=2) + wire.seal(2, headers, domain, cv=cv, instance=instance))
        t, _, payload = c.recv_frame()
        assert t == wire.HELLO_OK and struct.unpack(">H", payload[:2])[0] == 2
        t, rid, payload = c.recv_frame()
        assert rid == 2
        return (t, wire.parse_error(payload)) if t == wire.ERROR else (t, wire.parse_signed(payload))
    finally:
        c.close()


def test_daemon_checks_what_it_seals():
    """dkimsignd checks the chain's structure itself: its seal covers it."""
    head = to_crlf(seal_dkimpy(BASE, "a", "none")).partition(b"\r\n\r\n")[0] + b"\r\n"
    plain = BASE.partition(b"\r\n\r\n")[0] + b"\r\n"
    t, fields = seal_request(head, cv=1, instance=2)
    assert t == wire.SIGNED and [f.split(b":")[0] for f in fields] == [
        b"ARC-Seal", b"ARC-Message-Signature", b"ARC-Authentication-Results"], fields
    for headers, cv, instance, status, text in (
            (plain, 1, 2, 4, "next is i=1"),             # no chain: the next set is i=1
            (head, 1, 3, 4, "next is i=2"),
            (head, 1, 51, 4, "at most 50"),
            (head.replace(b"cv=none", b"cv=fail"), 1, 2, 4, "cv=fail upstream"),
            (plain, 0, 1, 5, None)):                    # the peer may not seal for the domain
        domain = b"denied.example" if status == 5 else b"list.example"
        t, err = seal_request(headers, domain=domain, cv=cv, instance=instance)
        assert t == wire.ERROR and err[0] == status, (instance, err)
        assert text is None or text in err[3], err
    # A chain too broken to parse is sealed cv=fail after its highest instance.
    broken = head.replace(b"i=1;", b"i=2;")
    assert seal_request(broken, cv=2, instance=3)[0] == wire.SIGNED
    t, err = seal_request(broken, cv=2, instance=2)
    assert t == wire.ERROR and err[0] == 4, err


def test_rspamd_ran():
    """The third verifier ran (its verdicts are in the corpus test)."""
    assert rs, f"rspamd could not run here: {rs_why}"


def teardown():
    if rs:
        rs.close()
    if dns:
        dns.close()
    if box:
        box.close()
    if workdir:
        subprocess.run(["rm", "-rf", workdir])


if __name__ == "__main__":
    setup()
    try:
        run([test_corpus_sealed_and_verified, test_aar_records_only_own_authserv_id, test_rsa_seals_when_domain_has_both,
             test_ed25519_seal_verifies, test_internationalized_sealing_domain, test_refuses_domain_without_key,
             test_daemon_checks_what_it_seals, test_rspamd_ran])
    finally:
        teardown()
