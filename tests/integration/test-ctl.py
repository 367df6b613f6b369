#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""dkimsignctl against a real SoftHSM token: every subcommand, every bad
input the key-custody issue names (wrong PIN, missing token, unknown and
duplicate selectors, malformed and encrypted PEM, a KeyTable naming a
missing key file), each a clear one-line error with the token unchanged
(`list --json` before and after); generated keys checked non-extractable
through paths that do not use hsm.c (pkcs11-tool from OpenSC, and the
PKCS#11 module called directly through ctypes); an OpenDKIM migration
(opendkim-genkey keys imported, then mail signed by dkimsignd verified
against the DNS records OpenDKIM wrote); and retirement taking a key out of
signing; and [token] module_env, through which dkimsignctl and dkimsignd
find a SoftHSM token whose configuration is not in their environment."""
import base64
import datetime
import hashlib
import json
import os
import pty
import re
import select
import shutil
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
from harness import (SOFTHSM, Sandbox, binary, dkimpy_verify, run, signature_fields,  # noqa: E402
                     tags, verify_files, write_keytable)

MESSAGE = (b"From: Alice <alice@example.com>\r\n"
           b"To: bob@example.net\r\n"
           b"Subject: keys\r\n"
           b"Date: Sun, 29 Nov 2026 10:00:00 +0000\r\n"
           b"Message-ID: <ctl@example.com>\r\n"
           b"\r\n"
           b"Hello Bob.\r\n")

box = None


def setup():
    global box
    box = Sandbox()
    box.init_token()


# --- helpers ---------------------------------------------------------------

def ctl(*args, check=True, sandbox=None, env=None, one_line=True):
    """Run dkimsignctl without a terminal (stdin /dev/null, its own session).
    Whatever happens, the PIN never appears in its output, and a failure is
    explained on stderr in lines that start with 'dkimsignctl: '."""
    b = sandbox or box
    p = subprocess.run([binary("dkimsignctl"), "--config", b.config, *args], env=env or b.env,
                       stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=300,
                       start_new_session=True)
    with open(b.pin_file) as f:
        pin = f.read().strip()
    assert pin not in p.stdout and pin not in p.stderr, "the PIN must never be printed"
    if check and p.returncode != 0:
        raise AssertionError(f"dkimsignctl {' '.join(args)} failed ({p.returncode}): {p.stderr}")
    if p.returncode != 0:
        lines = p.stderr.splitlines()
        assert lines and all(line.startswith("dkimsignctl: ") for line in lines), p.stderr
        if one_line:
            assert len(lines) == 1, p.stderr
    return p


def keys(sandbox=None):
    return json.loads(ctl("list", "--json", sandbox=sandbox).stdout)


def key(domain, selector, sandbox=None):
    found = [k for k in keys(sandbox) if k["domain"] == domain and k["selector"] == selector]
    assert len(found) == 1, found
    return found[0]


def fails(code, text, *args, sandbox=None, one_line=True):
    """dkimsignctl args exits with code, says text, and changes nothing on the token."""
    before = keys(sandbox)
    p = ctl(*args, check=False, sandbox=sandbox, one_line=one_line)
    assert p.returncode == code, (args, p.returncode, p.stderr)
    assert text in p.stderr, (args, p.stderr)
    assert keys(sandbox) == before, f"dkimsignctl {' '.join(args)} changed the token"
    return p


def today():
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d")


def record_of(out):
    """The one-string record from dns-record/keygen/import output."""
    for line in out.splitlines():
        if line.startswith("; v=DKIM1"):
            return line[2:]
    raise AssertionError(f"no record in: {out}")


def spki_of_record(record):
    """The DER SubjectPublicKeyInfo a DKIM record's p= stands for."""
    t = dict(part.strip().split("=", 1) for part in record.split(";") if "=" in part)
    raw = base64.b64decode(t["p"])
    if t.get("k", "rsa") == "ed25519":
        return bytes.fromhex("302a300506032b6570032100") + raw
    return raw


def fingerprint(spki):
    return "SHA256:" + base64.b64encode(hashlib.sha256(spki).digest()).decode().rstrip("=")


def openssl(*args, **kw):
    return subprocess.run(["openssl", *args], check=True, capture_output=True, timeout=120, **kw)


def secret_lines(path):
    """The base64 lines of a PEM private key file that are not also part of
    its public key (an RSA key's modulus is in both): key material that
    must never be printed."""
    public = base64.b64encode(openssl("pkey", "-in", path, "-pubout", "-outform", "DER").stdout).decode()
    with open(path) as f:
        lines = [line.strip() for line in f if line.strip() and not line.startswith("-----") and ":" not in line]
    return [line for line in lines if line not in public]


def on_tty(args, answer, sandbox=None):
    """Run dkimsignctl on a pseudo-terminal, answer its question; (exit code, output)."""
    b = sandbox or box
    path = binary("dkimsignctl")
    pid, fd = pty.fork()
    if pid == 0:
        try:
            os.execve(path, [path, "--config", b.config, *args], b.env)
        finally:
            os._exit(127)
    out = b""
    try:
        while b"[y/N]" not in out:
            ready, _, _ = select.select([fd], [], [], 60)
            assert ready, f"no question within 60s: {out!r}"
            out += os.read(fd, 4096)
        os.write(fd, answer + b"\n")
        while True:
            ready, _, _ = select.select([fd], [], [], 60)
            assert ready, f"no end within 60s: {out!r}"
            try:
                data = os.read(fd, 4096)
            except OSError:  # EIO: the child closed the terminal
                break
            if not data:
                break
            out += data
    finally:
        _, status = os.waitpid(pid, 0)
        os.close(fd)
    return os.waitstatus_to_exitcode(status), out.decode(errors="replace")


# --- usage -----------------------------------------------------------------

def test_help_and_usage():
    p = ctl("--help")
    for name in ("init-token", "keygen", "list", "dns-record", "import", "import-opendkim", "retire", "destroy"):
        assert re.search(rf"(?m)^  {name} ", p.stdout), (name, p.stdout)
    assert "Exit status: 0 success, 1 failure, 2 usage error" in p.stdout
    for name in ("keygen", "import-opendkim", "destroy"):
        p = ctl(name, "--help")
        assert p.stdout.startswith(f"Usage: dkimsignctl [--config FILE] {name} "), p.stdout
    assert ctl("--version").stdout.startswith("dkimsignctl ")
    for args, text in ((["frobnicate"], "unknown command 'frobnicate'"),
                       (["list", "--yes"], "list does not take --yes"),
                       (["keygen", "--domain", "example.com"], "keygen needs --domain and --selector"),
                       (["keygen", "--domain", "exa mple.com", "--selector", "s"], "not a valid domain name"),
                       (["keygen", "--domain", "example.com", "--selector", "s_1"], "not a valid selector"),
                       (["keygen", "--domain", "example.com", "--selector", "s", "--bits", "lots"], "--bits takes a number"),
                       (["import", "--domain", "example.com", "--selector", "s"], "wrong number of arguments"),
                       (["import-opendkim"], "wrong number of arguments"),
                       (["import-opendkim", "a", "b", "c"], "wrong number of arguments"),
                       (["import-opendkim", "KeyTable", "--config-out", "x.conf"], "--config-out needs a SIGNINGTABLE"),
                       (["import-opendkim", "dsn:mysql://user:secret@db/dkim"], "only flat-file tables"),
                       (["list", "--frob"], "unknown option --frob"),
                       (["destroy", "--domain"], "--domain needs a value")):
        fails(2, text, *args)
    p = fails(2, "never taken from the command line", "--pin=12345678", "list")
    assert "12345678" not in p.stderr
    fails(2, "no command given")


# --- keygen, list, dns-record ----------------------------------------------

def test_keygen_list_and_dns_record():
    before = today()
    out = {}
    for sel, alg, bits in (("r2048", "rsa", None), ("r1024", "rsa", 1024), ("r4096", "rsa", 4096), ("ed", "ed25519", None)):
        args = ["keygen", "--domain", "Keys.Example", "--selector", sel, "--algorithm", alg]
        if bits:
            args += ["--bits", str(bits)]
        out[sel] = ctl(*args).stdout
        assert f"{sel}._domainkey.keys.example. IN TXT" in out[sel], out[sel]
    listed = {k["selector"]: k for k in keys() if k["domain"] == "keys.example"}
    assert sorted(listed) == ["ed", "r1024", "r2048", "r4096"], listed
    for sel, alg, bits in (("r2048", "rsa", 2048), ("r1024", "rsa", 1024), ("r4096", "rsa", 4096), ("ed", "ed25519", 256)):
        k = listed[sel]
        assert (k["algorithm"], k["bits"], k["state"], k["origin"]) == (alg, bits, "active", "generated"), k
        assert k["local"] is True and k["always_sensitive"] is True and k["never_extractable"] is True, k
        assert k["created"] in (before, today()) and k["retired"] is None, k
        # The fingerprint is the SHA-256 of the key the DNS record publishes.
        record = record_of(ctl("dns-record", "--domain", "keys.example", "--selector", sel).stdout)
        assert record == record_of(out[sel])
        assert k["fingerprint"] == fingerprint(spki_of_record(record)), (k, record)

    # The table says the same.
    table = ctl("list").stdout.splitlines()
    assert table[0].split() == ["DOMAIN", "SELECTOR", "ALG", "BITS", "STATE", "CREATED", "ORIGIN", "FINGERPRINT"]
    row = [line.split() for line in table if line.split()[:2] == ["keys.example", "ed"]]
    assert row == [["keys.example", "ed", "ed25519", "256", "active", listed["ed"]["created"], "generated",
                    listed["ed"]["fingerprint"]]], table

    # Zone-file form: character-strings of at most 255 octets, joined = the one string.
    zone = ctl("dns-record", "--domain", "keys.example", "--selector", "r4096").stdout
    strings = re.findall(r'"([^"]*)"', zone.split("\n; as one string:")[0])
    assert len(strings) >= 3 and all(len(s) <= 255 for s in strings), strings
    assert "".join(strings) == record_of(zone)
    ed = ctl("dns-record", "--domain", "keys.example", "--selector", "ed").stdout
    assert ed.startswith('ed._domainkey.keys.example. IN TXT "v=DKIM1; k=ed25519; p='), ed

    fails(1, "a key named r2048._domainkey.keys.example already exists", "keygen", "--domain", "keys.example",
          "--selector", "r2048", "--algorithm", "ed25519")
    fails(1, "no key named nope._domainkey.keys.example", "dns-record", "--domain", "keys.example", "--selector", "nope")
    fails(2, "from 1024 to 4096", "keygen", "--domain", "keys.example", "--selector", "x", "--bits", "512")
    fails(2, "from 1024 to 4096", "keygen", "--domain", "keys.example", "--selector", "x", "--bits", "8192")
    fails(2, "--bits is for RSA keys", "keygen", "--domain", "keys.example", "--selector", "x", "--algorithm",
          "ed25519", "--bits", "2048")
    fails(2, "--algorithm takes rsa or ed25519", "keygen", "--domain", "keys.example", "--selector", "x",
          "--algorithm", "dsa")


# --- token access ------------------------------------------------------------

def test_wrong_pin():
    with open(box.pin_file) as f:
        good = f.read()
    before = keys()
    try:
        with open(box.pin_file, "w") as f:
            f.write("0000wrong\n")
        for args in (["list"], ["keygen", "--domain", "pin.example", "--selector", "s"],
                     ["retire", "--domain", "keys.example", "--selector", "r2048"]):
            p = subprocess.run([binary("dkimsignctl"), "--config", box.config, *args], env=box.env,
                               stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60)
            assert p.returncode == 1 and "refused the PIN" in p.stderr, (args, p.stderr)
            assert len(p.stderr.splitlines()) == 1 and p.stderr.startswith("dkimsignctl: ")
            assert "0000wrong" not in p.stderr + p.stdout and good.strip() not in p.stderr + p.stdout
    finally:
        with open(box.pin_file, "w") as f:
            f.write(good)
    assert keys() == before


def test_missing_token_and_pin():
    before = keys()
    other = os.path.join(box.dir, "other.conf")
    with open(box.config) as f:
        text = f.read()
    with open(other, "w") as f:
        f.write(text.replace(f"label = {box.label}", "label = no-such-token"))
    for args in (["list"], ["keygen", "--domain", "tok.example", "--selector", "s"]):
        p = ctl("--config", other, *args, check=False)
        assert p.returncode == 1 and "token 'no-such-token'" in p.stderr and "no token with that label" in p.stderr, p.stderr
    # No pin_file: the systemd credential $CREDENTIALS_DIRECTORY/pin is used.
    with open(other, "w") as f:
        f.write(re.sub(r"(?m)^pin_file = .*\n", "", text))
    p = ctl("--config", other, "list", check=False, env=dict(box.env, CREDENTIALS_DIRECTORY=""))
    assert p.returncode == 1 and "no PIN" in p.stderr, p.stderr
    creds = os.path.join(box.dir, "credentials")
    os.makedirs(creds, exist_ok=True)
    shutil.copy(box.pin_file, os.path.join(creds, "pin"))
    p = ctl("--config", other, "list", "--json", env=dict(box.env, CREDENTIALS_DIRECTORY=creds))
    assert json.loads(p.stdout) == before
    p = ctl("--config", os.path.join(box.dir, "nope.conf"), "list", check=False)
    assert p.returncode == 1 and "configuration" in p.stderr
    # init-token: the configured label exists already.
    fails(1, f"initializing token '{box.label}'", "init-token", "--so-pin-file", box.so_pin_file)
    fails(2, "init-token needs --so-pin-file", "init-token")
    assert keys() == before


# --- import ------------------------------------------------------------------

def test_import():
    d = os.path.join(box.dir, "pem")
    os.makedirs(d)
    files = {
        "pkcs1": (["genrsa", "-traditional", "-out", f"{d}/pkcs1.pem", "2048"], "rsa", 2048, "RSA PRIVATE KEY"),
        "pkcs8": (["genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:1024", "-out", f"{d}/pkcs8.pem"],
                  "rsa", 1024, "PRIVATE KEY"),
        "ed": (["genpkey", "-algorithm", "ED25519", "-out", f"{d}/ed.pem"], "ed25519", 256, "PRIVATE KEY"),
    }
    for sel, (cmd, alg, bits, kind) in files.items():
        openssl(*cmd)
        path = f"{d}/{sel}.pem"
        with open(path) as f:
            assert f.readline().strip() == f"-----BEGIN {kind}-----"
        p = ctl("import", "--domain", "imp.example", "--selector", sel, path)
        for line in secret_lines(path):
            assert line not in p.stdout and line not in p.stderr, "key material printed"
        k = key("imp.example", sel)
        assert (k["algorithm"], k["bits"], k["origin"], k["local"], k["state"]) == (alg, bits, "imported", False, "active"), k
        assert k["created"] is not None and k["retired"] is None, k
        spki = openssl("pkey", "-in", path, "-pubout", "-outform", "DER").stdout
        assert k["fingerprint"] == fingerprint(spki), k
        assert spki_of_record(record_of(p.stdout)) == spki

    # Bad input: a clear error, nothing on the token.
    openssl("genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-aes-128-cbc", "-pass", "pass:x",
            "-out", f"{d}/enc8.pem")
    openssl("genrsa", "-traditional", "-aes128", "-passout", "pass:x", "-out", f"{d}/enc1.pem", "2048")
    openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", f"{d}/ec.pem")
    openssl("genrsa", "-out", f"{d}/small.pem", "512")
    openssl("genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-pkeyopt", "rsa_keygen_primes:3",
            "-out", f"{d}/multiprime.pem")
    with open(f"{d}/pkcs8.pem") as f:
        good = f.read()
    with open(f"{d}/truncated.pem", "w") as f:
        f.write(good[:300])
    with open(f"{d}/damaged.pem", "w") as f:
        lines = good.splitlines()
        f.write("\n".join([lines[0], "A" * 64] + lines[2:]) + "\n")
    with open(f"{d}/text.pem", "w") as f:
        f.write("not a key\n")
    with open(f"{d}/two.pem", "w") as f:
        f.write(good + open(f"{d}/ed.pem").read())
    for name, text in (("enc8", "is encrypted"), ("enc1", "is encrypted"), ("ec", "DKIM keys are RSA or Ed25519"),
                       ("small", "a 512-bit RSA key"), ("multiprime", "multi-prime"), ("truncated", "malformed"), ("damaged", "malformed"),
                       ("text", "no PEM private key"), ("two", "more than one private key"),
                       ("missing", "No such file or directory")):
        p = fails(1, text, "import", "--domain", "imp.example", "--selector", "bad-" + name, f"{d}/{name}.pem")
        assert f"{d}/{name}.pem" in p.stderr
    # Duplicate selector, with a good file.
    fails(1, "a key named pkcs1._domainkey.imp.example already exists", "import", "--domain", "imp.example",
          "--selector", "pkcs1", f"{d}/ed.pem")


# --- retire, destroy -------------------------------------------------------------

def test_retire_and_destroy():
    ctl("keygen", "--domain", "life.example", "--selector", "a", "--algorithm", "ed25519")
    ctl("keygen", "--domain", "life.example", "--selector", "b", "--algorithm", "ed25519")
    p = ctl("retire", "--domain", "life.example", "--selector", "a")
    assert "retired key a._domainkey.life.example" in p.stdout, p.stdout
    k = key("life.example", "a")
    assert k["state"] == "retired" and k["retired"] == today(), k
    assert key("life.example", "b")["state"] == "active"
    before = keys()
    p = ctl("retire", "--domain", "life.example", "--selector", "a")
    assert "already" in p.stdout and keys() == before
    p = ctl("retire", "--domain", "life.example", "--selector", "b")
    assert "life.example has no active key left" in p.stdout, p.stdout
    fails(1, "no key named zz._domainkey.life.example", "retire", "--domain", "life.example", "--selector", "zz")
    fails(1, "no key named zz._domainkey.life.example", "destroy", "--domain", "life.example", "--selector", "zz",
          "--yes")

    # No terminal, no --yes: refused.
    fails(1, "pass --yes", "destroy", "--domain", "life.example", "--selector", "a")
    # On a terminal: "n" keeps it, "y" destroys it.
    before = keys()
    code, out = on_tty(["destroy", "--domain", "life.example", "--selector", "a"], b"n")
    assert code == 1 and "destroy key a._domainkey.life.example? This cannot be undone [y/N]" in out, out
    assert "not destroyed" in out and keys() == before
    code, out = on_tty(["destroy", "--domain", "life.example", "--selector", "a"], b"y")
    assert code == 0 and "destroyed key a._domainkey.life.example" in out, out
    assert [k["selector"] for k in keys() if k["domain"] == "life.example"] == ["b"]
    ctl("destroy", "--domain", "life.example", "--selector", "b", "--yes")
    assert not [k for k in keys() if k["domain"] == "life.example"]


def test_retired_key_no_longer_signs():
    with Sandbox() as b:
        b.init_token()
        b.keygen("example.com", "old")
        b.start()
        p = b.sign(MESSAGE)
        assert p.returncode == 0 and tags(signature_fields(p.stdout)[0])["s"] == "old", p.stderr
        ctl("retire", "--domain", "example.com", "--selector", "old", sandbox=b)
        assert key("example.com", "old", sandbox=b)["state"] == "retired"
        b.stop()
        b.start()  # keys are read at start-up
        p = b.sign(MESSAGE)
        assert p.returncode == 65 and b"no signing key for domain example.com" in p.stderr, (p.returncode, p.stderr)
        # Rotation: a new key signs; the retired one does not make it ambiguous.
        b.keygen("example.com", "new")
        b.stop()
        b.start()
        p = b.sign(MESSAGE)
        assert p.returncode == 0, p.stderr
        assert [tags(f)["s"] for f in signature_fields(p.stdout)] == ["new"]


def test_retired_in_state_file():
    """Retirement is written to the state file, which a reloading daemon
    reads whatever its module shows it; a key whose token can't carry the
    date (here: its public object is gone) is retired all the same."""
    with Sandbox() as b:
        b.init_token()
        b.keygen("keep.example", "k1")
        b.keygen("nodate.example", "n1")
        b.start()
        assert b.sign(MESSAGE.replace(b"example.com", b"nodate.example")).returncode == 0
        ctl("retire", "--domain", "keep.example", "--selector", "k1", sandbox=b)
        with open(os.path.join(b.dir, "state", "keys.state")) as f:
            lines = [line.split() for line in f if line.startswith("k1._domainkey.keep.example ")]
        assert len(lines) == 1 and lines[0][2] == "retired", lines
        p = pkcs11_tool("--login", "--delete-object", "--type", "pubkey", "--label", "n1._domainkey.nodate.example",
                        sandbox=b)
        assert p.returncode == 0, p.stderr
        p = ctl("retire", "--domain", "nodate.example", "--selector", "n1", sandbox=b)
        assert (f"retired key n1._domainkey.nodate.example in {b.dir}/state/keys.state only: "
                "it has no public key object to carry the date") in p.stdout, p.stdout
        ctl("reload", sandbox=b)
        p = b.sign(MESSAGE.replace(b"example.com", b"nodate.example"))
        assert p.returncode == 65 and b"its keys are retired" in p.stderr, (p.returncode, p.stderr)
        p = ctl("retire", "--domain", "nodate.example", "--selector", "n1", sandbox=b)
        assert "already" in p.stdout, p.stdout


# --- non-extractable, checked without hsm.c ---------------------------------------

def pkcs11_tool(*args, sandbox=None):
    """pkcs11-tool (OpenSC) on the sandbox token.  Its PIN comes from the
    environment (--pin env:VAR), not argv; it is a throwaway test token."""
    b = sandbox or box
    with open(b.pin_file) as f:
        env = dict(b.env, DKIMSIGN_TEST_PIN=f.read().strip())
    return subprocess.run(["pkcs11-tool", "--module", SOFTHSM, "--token-label", b.label,
                           "--pin", "env:DKIMSIGN_TEST_PIN", *args],
                          env=env, capture_output=True, timeout=120, cwd=b.dir)


def pkcs11_objects(out):
    """pkcs11-tool --list-objects output as [(kind, {field: value})]."""
    objs = []
    for line in out.splitlines():
        if not line.startswith(" "):
            objs.append((line.strip(), {}))
        elif objs and ":" in line:
            k, v = line.split(":", 1)
            objs[-1][1][k.strip()] = v.strip()
    return objs


# PKCS#11 through ctypes, straight into the module: the attributes a
# private key must never give up, and a C_WrapKey that must be refused.
RAW_CHECK = r'''
import ctypes, os, sys
from ctypes import byref, c_ulong, c_void_p, c_char_p, Structure, POINTER
class ATTR(Structure):
    _fields_ = [("type", c_ulong), ("pValue", c_void_p), ("ulValueLen", c_ulong)]
class MECH(Structure):
    _fields_ = [("mechanism", c_ulong), ("pParameter", c_void_p), ("ulParameterLen", c_ulong)]
lib = ctypes.CDLL(sys.argv[1])
for name, args in (("C_Initialize", [c_void_p]), ("C_GetSlotList", [ctypes.c_ubyte, POINTER(c_ulong), POINTER(c_ulong)]),
                   ("C_GetTokenInfo", [c_ulong, c_void_p]),
                   ("C_OpenSession", [c_ulong, c_ulong, c_void_p, c_void_p, POINTER(c_ulong)]),
                   ("C_Login", [c_ulong, c_ulong, c_char_p, c_ulong]),
                   ("C_FindObjectsInit", [c_ulong, POINTER(ATTR), c_ulong]),
                   ("C_FindObjects", [c_ulong, POINTER(c_ulong), c_ulong, POINTER(c_ulong)]),
                   ("C_FindObjectsFinal", [c_ulong]), ("C_GetAttributeValue", [c_ulong, c_ulong, POINTER(ATTR), c_ulong]),
                   ("C_SetAttributeValue", [c_ulong, c_ulong, POINTER(ATTR), c_ulong]),
                   ("C_GenerateKey", [c_ulong, POINTER(MECH), POINTER(ATTR), c_ulong, POINTER(c_ulong)]),
                   ("C_WrapKey", [c_ulong, POINTER(MECH), c_ulong, c_ulong, c_void_p, POINTER(c_ulong)]),
                   ("C_Finalize", [c_void_p])):
    getattr(lib, name).argtypes = args
    getattr(lib, name).restype = c_ulong
def attr(t, buf):
    return ATTR(t, ctypes.addressof(buf), ctypes.sizeof(buf))
assert lib.C_Initialize(None) == 0
slots, n = (c_ulong * 64)(), c_ulong(64)
assert lib.C_GetSlotList(1, slots, byref(n)) == 0
session = c_ulong()
for i in range(n.value):
    info = ctypes.create_string_buffer(512)
    if lib.C_GetTokenInfo(slots[i], info) == 0 and info.raw[:32].rstrip(b" \0").decode() == sys.argv[2]:
        assert lib.C_OpenSession(slots[i], 6, None, None, byref(session)) == 0
        break
else:
    sys.exit("token not found")
pin = os.environ["DKIMSIGN_TEST_PIN"].encode()
assert lib.C_Login(session, 1, pin, len(pin)) == 0
for label in sys.argv[3:]:
    cls, lab = c_ulong(3), ctypes.create_string_buffer(label.encode(), len(label))
    t = (ATTR * 2)(attr(0x0, cls), attr(0x3, lab))
    objs, count = (c_ulong * 2)(), c_ulong()
    assert lib.C_FindObjectsInit(session, t, 2) == 0
    assert lib.C_FindObjects(session, objs, 2, byref(count)) == 0
    lib.C_FindObjectsFinal(session)
    assert count.value == 1, (label, count.value)
    priv = objs[0]
    # CKA_VALUE (Ed25519), CKA_PRIVATE_EXPONENT, CKA_PRIME_1 (RSA): CKR_ATTRIBUTE_SENSITIVE or absent.
    for t in (0x11, 0x123, 0x124):
        buf = ctypes.create_string_buffer(1024)
        a = attr(t, buf)
        rv = lib.C_GetAttributeValue(session, priv, byref(a), 1)
        assert rv in (0x11, 0x12), (label, hex(t), hex(rv))
        assert buf.raw == b"\0" * 1024, "secret bytes came back"
    # Neither readable nor extractable can be switched on.
    yes, no = ctypes.c_ubyte(1), ctypes.c_ubyte(0)
    for t, v in ((0x162, yes), (0x103, no)):
        a = attr(t, v)
        assert lib.C_SetAttributeValue(session, priv, byref(a), 1) != 0, (label, hex(t))
    # Locked ([token] lock_keys): CKA_MODIFIABLE false, so no PIN holder can
    # relabel it onto another domain (CKR_ATTRIBUTE_READ_ONLY, 0x10, or as
    # SoftHSM says, CKR_ACTION_PROHIBITED, 0x1b).
    mod = ctypes.c_ubyte(1)
    a = attr(0x170, mod)
    assert lib.C_GetAttributeValue(session, priv, byref(a), 1) == 0 and mod.value == 0, (label, "CKA_MODIFIABLE")
    other = ctypes.create_string_buffer(b"x._domainkey.other.example", 26)
    a = attr(0x3, other)
    rv = lib.C_SetAttributeValue(session, priv, byref(a), 1)
    assert rv in (0x10, 0x1B), (label, "relabel", hex(rv))
    # Wrapping it under a fresh AES key: CKR_KEY_UNEXTRACTABLE (0x6a).
    vlen, true, false = c_ulong(32), ctypes.c_ubyte(1), ctypes.c_ubyte(0)
    t = (ATTR * 3)(attr(0x161, vlen), attr(0x106, true), attr(0x1, false))
    aes = c_ulong()
    assert lib.C_GenerateKey(session, byref(MECH(0x1080, None, 0)), t, 3, byref(aes)) == 0
    out = c_ulong(0)
    rv = lib.C_WrapKey(session, byref(MECH(0x210A, None, 0)), aes, priv, None, byref(out))
    assert rv == 0x6A, (label, "C_WrapKey", hex(rv))
    print("not extractable:", label)
lib.C_Finalize(None)
'''


def test_generated_keys_not_extractable():
    ctl("keygen", "--domain", "vault.example", "--selector", "rsa")
    ctl("keygen", "--domain", "vault.example", "--selector", "ed", "--algorithm", "ed25519")
    labels = {"rsa": "rsa._domainkey.vault.example", "ed": "ed._domainkey.vault.example"}

    # pkcs11-tool's account of the attributes.
    p = pkcs11_tool("--list-objects")
    assert p.returncode == 0, p.stderr
    objs = pkcs11_objects(p.stdout.decode())
    for sel, label in labels.items():
        priv = [o for kind, o in objs if kind.startswith("Private Key Object") and o.get("label") == label]
        assert len(priv) == 1, (label, p.stdout)
        access = [a.strip() for a in priv[0]["Access"].split(",")]
        assert access == ["sensitive", "always sensitive", "never extractable", "local"], (label, access)
        assert priv[0]["Usage"] == "sign", priv

    # The public key can be read, and is the one in the DNS record and the list.
    pub = os.path.join(box.dir, "pub.der")
    p = pkcs11_tool("--read-object", "--type", "pubkey", "--label", labels["rsa"], "--output-file", pub)
    assert p.returncode == 0, p.stderr
    with open(pub, "rb") as f:
        spki = f.read()
    assert spki == spki_of_record(box.dns_record("vault.example", "rsa"))
    assert fingerprint(spki) == key("vault.example", "rsa")["fingerprint"]
    ed_point = [o for kind, o in objs if kind.startswith("Public Key Object") and o.get("label") == labels["ed"]]
    raw = base64.b64decode(box.dns_record("vault.example", "ed").split("p=")[1])
    assert ed_point and ed_point[0]["EC_POINT"].lower() == "0420" + raw.hex(), ed_point

    # The private key can't: no file is written.  (OpenSC 0.23 reads no
    # private key of any kind, so this alone proves little; the attributes
    # above and the direct checks below do.)
    for label in labels.values():
        priv = os.path.join(box.dir, "priv.der")
        p = pkcs11_tool("--read-object", "--type", "privkey", "--label", label, "--output-file", priv)
        assert not os.path.exists(priv), (label, p.stdout, p.stderr)

    with open(box.pin_file) as f:
        env = dict(box.env, DKIMSIGN_TEST_PIN=f.read().strip())
    p = subprocess.run(["/usr/bin/python3", "-c", RAW_CHECK, SOFTHSM, box.label, *labels.values()],
                       env=env, capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stdout + p.stderr
    assert p.stdout.count("not extractable:") == 2, p.stdout

    # An imported key is shown as what it is.
    k = [k for k in keys() if k["domain"] == "imp.example" and k["selector"] == "pkcs1"]
    if k:
        assert (k[0]["origin"], k[0]["local"], k[0]["always_sensitive"], k[0]["never_extractable"]) == \
            ("imported", False, False, False), k


def test_custody_checked_at_load():
    """A key whose private half can leave the token (CKA_EXTRACTABLE, put
    there by another tool) is listed with the reason and never signs, in
    the daemon as in the listing."""
    with Sandbox() as b:
        b.init_token()
        b.keygen("safe.example", "s1")
        pem, der, pub = (os.path.join(b.dir, n) for n in ("x.pem", "x.der", "x.pub.der"))
        subprocess.run(["openssl", "genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", pem],
                       check=True, capture_output=True)
        subprocess.run(["openssl", "pkey", "-in", pem, "-outform", "DER", "-out", der], check=True)
        subprocess.run(["openssl", "pkey", "-in", pem, "-pubout", "-outform", "DER", "-out", pub], check=True)
        label = "x._domainkey.leaky.example"
        for args in (["--write-object", der, "--type", "privkey", "--extractable", "--private"],
                     ["--write-object", pub, "--type", "pubkey"]):
            p = pkcs11_tool("--login", *args, "--label", label, "--id", "77", sandbox=b)
            assert p.returncode == 0, p.stderr

        listed = {k["domain"]: k for k in json.loads(ctl("list", "--json", sandbox=b).stdout)}
        assert listed["leaky.example"]["refused"] == \
            "its private key is CKA_EXTRACTABLE: it can be wrapped and taken off the token", listed
        assert listed["safe.example"]["refused"] is None, listed
        table = ctl("list", sandbox=b).stdout
        assert re.search(r"leaky\.example +x +rsa +2048 refused", table), table
        assert "x._domainkey.leaky.example: never signs: its private key is CKA_EXTRACTABLE" in table, table

        b.start()
        try:
            p = b.sign(MESSAGE.replace(b"example.com", b"leaky.example"))
            assert p.returncode == 65 and b"no signing key for domain leaky.example" in p.stderr, \
                (p.returncode, p.stderr)
            assert "key x._domainkey.leaky.example: never signs: its private key is CKA_EXTRACTABLE" in b.log()
            p = b.sign(MESSAGE.replace(b"example.com", b"safe.example"))
            assert p.returncode == 0, p.stderr
        finally:
            b.stop()


# --- OpenDKIM migration ------------------------------------------------------------

def opendkim_record(path):
    """The TXT text of an opendkim-genkey .txt file: its quoted strings joined."""
    with open(path) as f:
        return "".join(re.findall(r'"([^"]*)"', f.read()))


def test_opendkim_migration():
    assert shutil.which("opendkim-genkey"), "opendkim-genkey (opendkim-tools) is needed"
    with Sandbox() as b:
        b.init_token()
        od = os.path.join(b.dir, "opendkim")
        os.makedirs(od)
        for domain, sel, bits in (("example.org", "mig", None), ("example.net", "legacy", 1024)):
            subprocess.run(["opendkim-genkey", "-d", domain, "-s", sel, "-D", od] + (["-b", str(bits)] if bits else []),
                           check=True, timeout=120)
        keytable, signingtable = os.path.join(od, "KeyTable"), os.path.join(od, "SigningTable")
        with open(keytable, "w") as f:
            f.write(f"# OpenDKIM KeyTable\nmig     example.org:mig:{od}/mig.private\n\n"
                    f"legacy  example.net:legacy:{od}/legacy.private   # the old one\n")
        with open(signingtable, "w") as f:
            f.write("*@example.org       mig\n*@*.example.org     mig\n"
                    "*@example.net       legacy\n*@lists.example.com legacy\n")
        conf_out = os.path.join(b.dir, "opendkim.conf")

        # A KeyTable naming a missing key file: every problem listed, nothing changed.
        bad = os.path.join(od, "KeyTable.bad")
        with open(bad, "w") as f:
            f.write(open(keytable).read() + f"gone    example.com:gone:{od}/gone.private\n")
        p = fails(1, f"{od}/gone.private: No such file or directory", "import-opendkim", bad, signingtable,
                  "--config-out", conf_out, sandbox=b, one_line=False)
        assert "nothing was imported" in p.stderr.splitlines()[-1], p.stderr
        assert keys(b) == [] and not os.path.exists(conf_out)
        # An unsupported SigningTable pattern, the same.
        with open(os.path.join(od, "SigningTable.bad"), "w") as f:
            f.write("alice@example.org mig\n")
        fails(1, "not by sender", "import-opendkim", keytable, os.path.join(od, "SigningTable.bad"), sandbox=b,
              one_line=False)

        p = ctl("import-opendkim", "refile:" + keytable, "refile:" + signingtable, "--config-out", conf_out, sandbox=b)
        assert f"imported mig: rsa 2048-bit key mig._domainkey.example.org from {od}/mig.private" in p.stdout, p.stdout
        assert f"imported legacy: rsa 1024-bit key legacy._domainkey.example.net from {od}/legacy.private" in p.stdout
        for path in (f"{od}/mig.private", f"{od}/legacy.private"):
            for line in secret_lines(path):
                assert line not in p.stdout and line not in p.stderr, "key material printed"
        with open(conf_out) as f:
            sections = f.read()
        assert "[domain example.org]\nselectors = mig\nsubdomains = yes\n" in sections, sections
        assert "[domain example.net]\nselectors = legacy\n" in sections, sections
        assert "[domain lists.example.com]\nselectors = legacy\nkey_domain = example.net\n" in sections, sections
        assert "[domain example.org]\nselectors = mig\nsubdomains = yes\n" in p.stdout
        listed = {k["selector"]: k for k in keys(b)}
        assert sorted(listed) == ["legacy", "mig"]
        assert all(k["origin"] == "imported" and k["state"] == "active" for k in listed.values()), listed

        # The token holds OpenDKIM's keys: the records OpenDKIM wrote are the ones to check against.
        records = {f"{sel}._domainkey.{domain}": opendkim_record(os.path.join(od, f"{sel}.txt"))
                   for domain, sel in (("example.org", "mig"), ("example.net", "legacy"))}
        for name, txt in records.items():
            sel, domain = name.split("._domainkey.")
            ours = ctl("dns-record", "--domain", domain, "--selector", sel, sandbox=b).stdout
            assert spki_of_record(record_of(ours)) == spki_of_record(txt), name

        # Again: every label exists now, so nothing is imported twice.
        os.unlink(conf_out)
        fails(1, "already exists on token", "import-opendkim", keytable, signingtable, sandbox=b, one_line=False)

        b.write_config(sections)
        b.start()
        files = []
        for sender, d, s in (("alice@example.org", "example.org", "mig"), ("bob@news.example.org", "example.org", "mig"),
                             ("carol@example.net", "example.net", "legacy"),
                             ("list@lists.example.com", "example.net", "legacy")):
            p = b.sign(MESSAGE.replace(b"alice@example.com", sender.encode()))
            assert p.returncode == 0, (sender, p.stderr)
            t = tags(signature_fields(p.stdout)[0])
            assert (t["d"], t["s"]) == (d, s), (sender, t)
            path = os.path.join(b.dir, sender + ".eml")
            with open(path, "wb") as f:
                f.write(p.stdout)
            files.append(path)
        for name, verdicts in verify_files(files, write_keytable(b, records)).items():
            for path in files:
                assert verdicts.get(path) == ["pass"], (name, path, verdicts.get(path))


def test_module_env_names_the_token_config():
    """SOFTHSM2_CONF out of the environment, [token] module_env naming it:
    init-token, list and keygen find the token, and the daemon signs, with
    one signer process and with two (forked after it set the variable)."""
    with Sandbox(label="dkimsign-env") as b:
        softhsm_conf = b.env["SOFTHSM2_CONF"]
        env = {k: v for k, v in b.env.items() if k != "SOFTHSM2_CONF"}
        # What b.start() and b.keygen() run with too.
        b.env = env
        # Without the setting, SoftHSM reads its system-wide file: no such token.
        assert ctl("list", sandbox=b, env=env, check=False).returncode != 0
        setting = f"[token]\nmodule_env = SOFTHSM2_CONF={softhsm_conf}\n"
        b.write_config(setting)
        ctl("init-token", "--so-pin-file", b.so_pin_file, sandbox=b, env=env)
        assert json.loads(ctl("list", "--json", sandbox=b, env=env).stdout) == []
        ctl("keygen", "--domain", "example.com", "--selector", "env1", sandbox=b, env=env)
        assert [k["selector"] for k in json.loads(ctl("list", "--json", sandbox=b, env=env).stdout)] == ["env1"]
        b.keytable["env1._domainkey.example.com"] = b.dns_record("example.com", "env1")
        for processes in (1, 2):
            b.write_config(setting + f"processes = {processes}\n")
            b.start()
            try:
                p = b.sign(MESSAGE)
                assert p.returncode == 0, (processes, p.stderr, b.log())
                assert tags(signature_fields(p.stdout)[0])["s"] == "env1"
                assert dkimpy_verify(p.stdout, b.keytable), processes
            finally:
                assert b.stop() == 0, b.log()


# --- [token] uri ---------------------------------------------------------------

def softhsm_init_free(b, label):
    """A token labelled `label` on the free slot, by SoftHSM's own tool
    (which, unlike init-token, lets two tokens share a label)."""
    with open(b.so_pin_file) as f:
        so_pin = f.read().strip()
    with open(b.pin_file) as f:
        pin = f.read().strip()
    subprocess.run(["softhsm2-util", "--init-token", "--free", "--label", label, "--so-pin", so_pin, "--pin", pin],
                   env=b.env, check=True, capture_output=True, timeout=60)


def config_line(b, text):
    with open(b.config) as f:
        return 1 + [i for i, line in enumerate(f.read().split("\n")) if text in line][0]


def test_token_uri():
    """[token] uri (RFC 7512) chooses the token: by token=, by token= and
    manufacturer=, by serial= (read with softhsm2-util); init-token by URI
    labels a free token with its token=; none or two tokens matching are
    refused in one line naming the URI (two: their serials, and serial=
    to choose); a pin-value is refused without being printed."""
    with Sandbox(label="uri-a") as b:
        b.init_token()
        uri_b = f"pkcs11:token=uri-b;manufacturer=SoftHSM%20project?module-path={SOFTHSM}"
        b.write_config(token=f"uri = {uri_b}\n")
        p = ctl("init-token", "--so-pin-file", b.so_pin_file, sandbox=b)
        tokens = b.tokens()
        assert sorted(label for label, _ in tokens) == ["uri-a", "uri-b"], tokens
        serial = dict(tokens)
        assert p.stdout == f"initialized token 'uri-b' (serial {serial['uri-b']})\n", p.stdout
        p = ctl("init-token", "--so-pin-file", b.so_pin_file, sandbox=b, check=False)
        assert p.returncode == 1 and p.stderr == (
            f"dkimsignctl: initializing token '{uri_b}' in {SOFTHSM}: a token of {SOFTHSM} matches {uri_b} already "
            f"(label 'uri-b', serial {serial['uri-b']}): init-token makes a new one\n"), p.stderr

        # By token=, the module in the URI: keygen lands on uri-b, named with its serial.
        b.write_config(token=f"uri = pkcs11:token=uri-b?module-path={SOFTHSM}\n")
        p = ctl("keygen", "--domain", "b.example", "--selector", "s", "--algorithm", "ed25519", sandbox=b)
        assert f" on token 'uri-b' (serial {serial['uri-b']})\n" in p.stdout, p.stdout
        # By token= and manufacturer=, the module apart.
        b.write_config(token=f"module = {SOFTHSM}\nuri = pkcs11:token=uri-b;manufacturer=SoftHSM%20project\n")
        assert [(k["domain"], k["selector"]) for k in keys(b)] == [("b.example", "s")]
        # By serial=: uri-a, which has no key yet; then one is made there.
        b.write_config(token=f"module = {SOFTHSM}\nuri = pkcs11:serial={serial['uri-a']}\n")
        assert keys(b) == []
        p = ctl("keygen", "--domain", "a.example", "--selector", "s", "--algorithm", "ed25519", sandbox=b)
        assert f" on token 'uri-a' (serial {serial['uri-a']})\n" in p.stdout, p.stdout
        b.write_config()
        assert [k["domain"] for k in keys(b)] == ["a.example"]

        # No token matches.
        uri = "pkcs11:token=uri-b;model=nothing"
        b.write_config(token=f"module = {SOFTHSM}\nuri = {uri}\n")
        p = ctl("list", sandbox=b, check=False)
        assert p.returncode == 1 and p.stderr == f"dkimsignctl: no token of {SOFTHSM} matches {uri}\n", p.stderr
        # Two tokens match: neither is used, serial= chooses.
        softhsm_init_free(b, "twin")
        softhsm_init_free(b, "twin")
        twins = [s for label, s in b.tokens() if label == "twin"]
        assert len(twins) == 2 and twins[0] != twins[1], twins
        b.write_config(token=f"module = {SOFTHSM}\nuri = pkcs11:token=twin\n")
        p = ctl("list", sandbox=b, check=False)
        # In the order the module lists them (softhsm2-util's, as a rule).
        assert p.returncode == 1 and p.stderr in (
            f"dkimsignctl: 2 tokens of {SOFTHSM} match pkcs11:token=twin (serials {one}, {two}): add serial= to the "
            "uri to choose one\n" for one, two in (twins, twins[::-1])), p.stderr
        b.write_config(token=f"module = {SOFTHSM}\nuri = pkcs11:token=twin;serial={twins[1]}\n")
        assert keys(b) == []

        # A PIN in the URI: refused, never printed (ctl() checks that).
        with open(b.pin_file) as f:
            pin = f.read().strip()
        b.write_config(token=f"module = {SOFTHSM}\nuri = pkcs11:token=uri-b?pin-value={pin}\n")
        p = ctl("list", sandbox=b, check=False)
        assert p.returncode == 1 and p.stderr == (
            f"dkimsignctl: configuration: {b.config}: line {config_line(b, 'uri =')}: 'uri': pin-value= would put "
            "the PIN in the configuration and in logs; it is refused: the PIN comes from [token] pin_file or the "
            "'pin' credential\n"), p.stderr
        # uri and label both.
        b.write_config(token=f"module = {SOFTHSM}\nlabel = uri-a\nuri = pkcs11:token=uri-b\n")
        p = ctl("list", sandbox=b, check=False)
        assert p.returncode == 1 and p.stderr == (
            f"dkimsignctl: configuration: {b.config}: line {config_line(b, 'uri =')}: [token] 'uri' and 'label' "
            f"(line {config_line(b, 'label =')}) both choose the token: keep one\n"), p.stderr


# --- tokens other than SoftHSM: asked first, uses shown, refusals said ------------

def test_uses_listed():
    """Every key's allowed uses, in --json and under the table: a key made
    by dkimsignctl may only sign; RSA-4096 (dkimsign's maximum, within
    SoftHSM's 16384) still passes the token's own check."""
    ctl("keygen", "--domain", "uses.example", "--selector", "big", "--bits", "4096")
    ctl("keygen", "--domain", "uses.example", "--selector", "ed", "--algorithm", "ed25519")
    for sel in ("big", "ed"):
        k = key("uses.example", sel)
        assert k["uses"] == ["sign"], k
        assert k["always_authenticate"] is False, k
    assert key("uses.example", "big")["bits"] == 4096
    table = ctl("list").stdout
    assert "Allowed uses" in table and "big._domainkey.uses.example: sign\n" in table, table


def test_init_token_pin_length_checked_first():
    """A user PIN shorter than the token takes (SoftHSM: 4 to 255) is
    refused before C_InitToken: the token stays uninitialized, and
    init-token works afterwards with a good PIN.  (Before, SoftHSM
    initialized the token, then C_InitPIN failed: a token without a user
    PIN, and the retry said 'already exists'.)"""
    with Sandbox() as b:
        good = open(b.pin_file).read()
        with open(b.pin_file, "w") as f:
            f.write("123\n")
        p = ctl("init-token", "--so-pin-file", b.so_pin_file, check=False, sandbox=b)
        assert p.returncode == 1, p.stderr
        assert "this token takes PINs of 4 to 255 characters; the user PIN in " + b.pin_file + " has 3" in p.stderr, \
            p.stderr
        assert "nothing was changed" in p.stderr, p.stderr
        # Nothing changed: no token with the label.
        p = ctl("list", check=False, sandbox=b)
        assert p.returncode == 1 and "no token" in p.stderr, p.stderr
        with open(b.pin_file, "w") as f:
            f.write(good)
        b.init_token()
        assert json.loads(ctl("list", "--json", sandbox=b).stdout) == []


def foreign_keypair(b, label, *flags):
    p = pkcs11_tool("--login", "--keypairgen", "--key-type", "rsa:2048", "--label", label, "--id", "a1b2",
                    "--private", *flags, sandbox=b)
    assert p.returncode == 0, p.stdout + p.stderr


def test_always_authenticate_refused():
    """A key that wants the PIN for every use (CKA_ALWAYS_AUTHENTICATE) is
    listed as refused with the reason, logged, and the daemon answers 'no
    signing key' (permanent), never a temporary failure for ever."""
    with Sandbox() as b:
        b.init_token()
        b.keygen("safe.example", "s1")
        foreign_keypair(b, "aa._domainkey.aa.example", "--usage-sign", "--always-auth")
        listed = {k["domain"]: k for k in json.loads(ctl("list", "--json", sandbox=b).stdout)}
        aa = listed["aa.example"]
        assert aa["refused"].startswith("its private key is CKA_ALWAYS_AUTHENTICATE"), aa
        # SoftHSM gives the uses pkcs11-tool leaves unset their default, true.
        assert aa["always_authenticate"] is True and aa["uses"][0] == "sign", aa
        table = ctl("list", sandbox=b).stdout
        assert re.search(r"aa\.example +aa +rsa +2048 refused", table), table
        b.start()
        try:
            p = b.sign(MESSAGE.replace(b"example.com", b"aa.example"))
            assert p.returncode == 65 and b"no signing key for domain aa.example" in p.stderr, (p.returncode, p.stderr)
            assert "key aa._domainkey.aa.example: never signs: its private key is CKA_ALWAYS_AUTHENTICATE" in b.log()
            p = b.sign(MESSAGE.replace(b"example.com", b"safe.example"))
            assert p.returncode == 0, p.stderr
        finally:
            b.stop()


def test_decrypt_keys_need_the_setting():
    """A key that may also decrypt (as tpm2-pkcs11 makes them) is shown with
    its uses and refused, naming [token] allow_decrypt_keys; with the
    setting, it signs."""
    with Sandbox() as b:
        b.init_token()
        foreign_keypair(b, "dec._domainkey.dec.example", "--usage-sign", "--usage-decrypt")
        k = json.loads(ctl("list", "--json", sandbox=b).stdout)[0]
        assert k["uses"][:2] == ["sign", "decrypt"], k
        assert "allow_decrypt_keys = yes" in k["refused"], k
        b.start()
        try:
            p = b.sign(MESSAGE.replace(b"example.com", b"dec.example"))
            assert p.returncode == 65 and b"no signing key for domain dec.example" in p.stderr, (p.returncode, p.stderr)
        finally:
            b.stop()
        with open(b.config) as f:
            text = f.read()
        with open(b.config, "w") as f:
            f.write(text.replace("[token]\n", "[token]\nallow_decrypt_keys = yes\n", 1))
        k = json.loads(ctl("list", "--json", sandbox=b).stdout)[0]
        assert k["refused"] is None and k["uses"][:2] == ["sign", "decrypt"], k
        b.start()
        try:
            p = b.sign(MESSAGE.replace(b"example.com", b"dec.example"))
            assert p.returncode == 0, p.stderr
        finally:
            b.stop()


if __name__ == "__main__":
    setup()
    try:
        run([test_help_and_usage, test_keygen_list_and_dns_record, test_wrong_pin, test_missing_token_and_pin,
             test_import, test_retire_and_destroy, test_generated_keys_not_extractable,
             test_retired_key_no_longer_signs, test_retired_in_state_file, test_custody_checked_at_load, test_opendkim_migration,
             test_module_env_names_the_token_config, test_uses_listed, test_init_token_pin_length_checked_first,
             test_always_authenticate_refused, test_decrypt_keys_need_the_setting, test_token_uri])
    finally:
        box.close()
