#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""dkimsignctl and dkimsignd on one PKCS#11 module, named by --module:
SoftHSM 2 (softhsm), opencryptoki's software token with pkcsslotd
(opencryptoki), tpm2-pkcs11 on swtpm behind tpm2-abrmd (tpm2).  Each flow
starts the module's services itself (tests/lib/tokens.py: a directory of
its own, unix sockets only, opencryptoki in a private mount and IPC
namespace) and stops them after, so that two of these tests can run at
once.  A module that can't be set up here fails the test: it is never
skipped.  Root only (CI runs as root).

What each flow asserts, through the real programs, every signature
verified by python3-dkim against the record `dkimsignctl dns-record`
prints:

 - init_token: a user PIN outside the free slot's ulMinPinLen..ulMaxPinLen
   is refused in one line naming the limit, before anything changed (no
   slot is initialized, `list` finds no token); a good PIN then works;
   a second init-token is refused.
 - keygen_limits: RSA 2048, and Ed25519 where the token has CKM_EDDSA; RSA
   4096 where the token makes it, else refused in one line naming its
   range; Ed25519 elsewhere refused in one line.  tpm2-pkcs11 makes only
   RSA keys that also decrypt: keygen is refused naming
   allow_decrypt_keys, works with it, and `list`/`list --json` show the
   uses.  A refusal leaves nothing on the token.
 - import: a PEM RSA and Ed25519 key (openssl genpkey) go into the token
   where it takes them and sign (dual signatures where both do); else one
   line says why, and nothing is left behind.
 - sign_and_restart: RSA, Ed25519 and dual signatures; after a restart the
   keys are still there and sign.
 - reload_processes_1, reload_processes_2: with [token] processes = 1 and
   2, while dkimsignd runs, dkimsignctl makes a key, retires one, destroys
   two; after `dkimsignctl reload` and, in a second round, after SIGHUP,
   every signer process signs with the new key, refuses the domain of the
   retired one and of the destroyed one, and no longer signs with the
   retired (first round) or destroyed (second) half of a dual-signed
   domain; the same after a restart.
 - unprivileged: [daemon] user = nobody.  On a token not granted to it,
   the signer processes fail with the CKR name and the hint; granted
   (Token.grant), dkimsignd starts and signs with 1 and 2 processes that
   run as nobody.  tpm2-pkcs11's store then belongs to nobody, which
   module_env accepts only because nobody is the [daemon] user.
 - always_authenticate: a key made (ctypes) with CKA_ALWAYS_AUTHENTICATE is
   refused at load with its reason in `list`, `list --json` and the log;
   dkimsignd answers a permanent "no signing key", every time.

Prints each flow's time (harness.run), the module's set-up time per token,
and at the end the number of checks made.

    DKIMSIGN_BUILD_DIR=build tests/integration/test-tokens.py --module softhsm
"""
import argparse
import atexit
import json
import os
import re
import secrets
import signal
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
import tokens  # noqa: E402
from harness import Sandbox, dkimpy_verify, run, signature_fields, tags, user_ids  # noqa: E402

LABEL = "dkimsign-test"
USER = "nobody"
WAIT = 20          # seconds: every wait is a bounded poll
MODULE = None      # the name given by --module
CLS = None         # its tokens.Token class

# What each module is known to do (docs/tokens.md); the flows assert it.
# pins: the free slot's ulMinPinLen, ulMaxPinLen; bad_pin: a user PIN length
# outside them; rsa_gen: the RSA sizes keygen offers there (the token's
# range within DKIM's 1024 to 4096); decrypt_only: its RSA keys always
# decrypt too; ungranted_ckr: the CKR a signer process fails to open the
# token with when it runs as a user the token was not granted to.
FACTS = {
    "softhsm": {"pins": (4, 255), "bad_pin": 3, "ed25519": True, "rsa_gen": (1024, 4096), "decrypt_only": False,
                "imports": True, "ungranted_ckr": "CKR_GENERAL_ERROR"},
    "opencryptoki": {"pins": (4, 8), "bad_pin": 16, "ed25519": False, "rsa_gen": (1024, 4096),
                     "decrypt_only": False, "imports": True, "ungranted_ckr": "CKR_FUNCTION_FAILED"},
    "tpm2": {"pins": (0, 128), "bad_pin": 129, "ed25519": False, "rsa_gen": (1024, 3072), "decrypt_only": True,
             "imports": False, "ungranted_ckr": "CKR_GENERAL_ERROR"},
}

HINT = ("running as a user other than root: the token's files or the module's group must be reachable by this "
        "user (SoftHSM: its token directory, tokendir in SOFTHSM2_CONF; opencryptoki: membership of the pkcs11 "
        "group; tpm2-pkcs11: its store, TPM2_PKCS11_STORE)")
ALWAYS_AUTH_WHY = ("its private key is CKA_ALWAYS_AUTHENTICATE: the token wants the PIN again for every "
                   "signature, which dkimsign does not give")

CHECKS = 0
SETUP = []         # each token's set-up time, seconds


def facts():
    return FACTS[MODULE]


# --- checks ---------------------------------------------------------------------

def check(ok, what):
    """One check: counted, and an AssertionError saying what when false."""
    global CHECKS
    CHECKS += 1
    if not ok:
        raise AssertionError(what)


def check_eq(got, want, what):
    check(got == want, f"{what}:\n  got:      {got!r}\n  expected: {want!r}")


# What a module itself writes to stderr, before dkimsignctl's line:
# tpm2-pkcs11 logs its errors so, and no variable silences them.
MODULE_NOISE = {"tpm2": re.compile(r"(ERROR|WARNING): ")}


def ctl_said(stderr):
    """(dkimsignctl's own lines, the module's lines) of stderr; any other
    line, or a module line after dkimsignctl's, is an error."""
    ours, module = [], []
    noise = MODULE_NOISE.get(MODULE)
    for line in stderr.splitlines():
        if noise and noise.match(line) and not ours:
            module.append(line)
        else:
            ours.append(line)
    return ours, module


def check_ctl(p, rc, stderr=None, stdout_first=None, what=""):
    """dkimsignctl's exit status, its exact stderr (after what the module
    itself wrote there) and/or first stdout line."""
    check(p.returncode == rc, f"{what or 'dkimsignctl'}: exit {p.returncode}, expected {rc}\n"
                              f"stdout: {p.stdout}\nstderr: {p.stderr}")
    if stderr is not None:
        ours, module = ctl_said(p.stderr)
        check_eq(ours, [stderr], f"{what}: dkimsignctl's stderr")
        if module:
            print(f"  ({what}: the module wrote first: {' / '.join(module)})")
    if stdout_first is not None:
        first = p.stdout.split("\n", 1)[0]
        # dkimsignctl names the token it used with its serial, which
        # differs every run: left out of the comparison.
        first = re.sub(r"(token '[^']*') \(serial [0-9A-Za-z]+\)", r"\1", first)
        check_eq(first, stdout_first, f"{what}: first line of stdout")


def wait_until(cond, what, timeout=WAIT, detail=lambda: ""):
    """Poll cond() until true; fail after timeout seconds, saying what and
    detail().  One check, however many polls (cond may raise
    AssertionError to fail at once)."""
    global CHECKS
    deadline = time.monotonic() + timeout
    delay = 0.02
    while not cond():
        if time.monotonic() > deadline:
            check(False, f"not within {timeout}s: {what}{detail()}")
        time.sleep(delay)
        delay = min(delay * 2, 0.2)
    CHECKS += 1


# --- PKCS#11 through ctypes, in a child process (the module never loads here) ------

P11_CHILD = r'''
import ctypes, json, sys
UL = ctypes.c_ulong
class Attr(ctypes.Structure):
    _fields_ = [("type", UL), ("value", ctypes.c_void_p), ("len", UL)]
class Mech(ctypes.Structure):
    _fields_ = [("mechanism", UL), ("param", ctypes.c_void_p), ("len", UL)]
class Version(ctypes.Structure):
    _fields_ = [("major", ctypes.c_ubyte), ("minor", ctypes.c_ubyte)]
class TokenInfo(ctypes.Structure):
    _fields_ = ([("label", ctypes.c_char * 32), ("manufacturer", ctypes.c_char * 32), ("model", ctypes.c_char * 16),
                 ("serial", ctypes.c_char * 16), ("flags", UL)]
                + [(n, UL) for n in ("max_sessions", "sessions", "max_rw", "rw", "max_pin", "min_pin",
                                     "pub_total", "pub_free", "priv_total", "priv_free")]
                + [("hw", Version), ("fw", Version), ("time", ctypes.c_char * 16)])
class InitArgs(ctypes.Structure):
    _fields_ = [("create", ctypes.c_void_p), ("destroy", ctypes.c_void_p), ("lock", ctypes.c_void_p),
                ("unlock", ctypes.c_void_p), ("flags", UL), ("reserved", ctypes.c_void_p)]
RV = {0: "CKR_OK", 5: "CKR_GENERAL_ERROR", 6: "CKR_FUNCTION_FAILED", 0x12: "CKR_ATTRIBUTE_TYPE_INVALID",
      0x13: "CKR_ATTRIBUTE_VALUE_INVALID", 0xD1: "CKR_TEMPLATE_INCONSISTENT"}
args = json.loads(sys.argv[1])
lib = ctypes.CDLL(args["module"])
def call(name, *a):
    f = getattr(lib, "C_" + name)
    f.restype = UL
    rv = f(*a)
    return RV.get(rv, hex(rv))
def must(name, *a):
    rv = call(name, *a)
    if rv != "CKR_OK":
        raise SystemExit(f"C_{name}: {rv}")
must("Initialize", ctypes.byref(InitArgs(flags=2)))     # CKF_OS_LOCKING_OK
n = UL(0)
must("GetSlotList", ctypes.c_ubyte(1), None, ctypes.byref(n))
slots = (UL * max(n.value, 1))()
must("GetSlotList", ctypes.c_ubyte(1), slots, ctypes.byref(n))
out = {"slots": []}
mine = None
for slot in slots[:n.value]:
    ti = TokenInfo()
    must("GetTokenInfo", UL(slot), ctypes.byref(ti))
    label = ti.label.decode(errors="replace").rstrip()
    out["slots"].append({"label": label, "initialized": bool(ti.flags & 0x400), "user_pin": bool(ti.flags & 0x8),
                         "min_pin": ti.min_pin, "max_pin": ti.max_pin})
    if label == args["label"] and ti.flags & 0x400:
        mine = slot

def template(items):
    keep, arr = [], (Attr * len(items))()
    for i, (t, v) in enumerate(items):
        if isinstance(v, bool):
            b = ctypes.c_ubyte(v)
        elif isinstance(v, int):
            b = UL(v)
        else:
            b = ctypes.create_string_buffer(v, len(v))
        keep.append(b)
        size = len(v) if isinstance(v, bytes) else ctypes.sizeof(b)
        arr[i] = Attr(t, ctypes.cast(ctypes.byref(b), ctypes.c_void_p), size)
    return arr, keep

if args.get("always_authenticate"):
    # An RSA 2048 key pair named like a DKIM key, its private half
    # CKA_ALWAYS_AUTHENTICATE (0x202): made as a vendor's tool would.
    s = UL(0)
    must("OpenSession", UL(mine), UL(6), None, None, ctypes.byref(s))
    pin = args["pin"].encode()
    must("Login", s, UL(1), pin, UL(len(pin)))
    label, kid = args["always_authenticate"].encode(), b"\xaa\x01"
    pub, k1 = template([(1, True), (3, label), (0x102, kid), (0x10A, True), (0x121, 2048), (0x122, b"\x01\x00\x01")])
    priv, k2 = template([(1, True), (2, True), (0x103, True), (0x162, False), (3, label), (0x102, kid), (0x108, True),
                         (0x202, True)])
    hpub, hpriv = UL(0), UL(0)
    out["generate"] = call("GenerateKeyPair", s, ctypes.byref(Mech(0, None, 0)), pub, UL(len(pub)), priv,
                           UL(len(priv)), ctypes.byref(hpub), ctypes.byref(hpriv))
    call("Logout", s)
call("Finalize", None)
print(json.dumps(out))
'''


def p11(tok, **what):
    """The slots' tokens (label, initialized, PIN lengths); with
    always_authenticate=LABEL, also make such a key on tok's token."""
    args = dict(module=tok.module, label=tok.label, pin=tok.user_pin, **what)
    p = subprocess.run([sys.executable, "-c", P11_CHILD, json.dumps(args)], env=tok.env, capture_output=True,
                       text=True, timeout=120)
    if p.returncode != 0:
        raise AssertionError(f"PKCS#11 child: exit {p.returncode}: {p.stdout}{p.stderr}")
    return json.loads(p.stdout.strip().splitlines()[-1])


# --- a token, a configuration and the daemon --------------------------------------

def new_token(pin=None):
    """A started token of the module under test (a context manager); its
    set-up time is printed and kept for the summary."""
    tok = CLS(label=LABEL, user_pin=pin)
    tok.start()
    SETUP.append(tok.setup_seconds)
    print(f"  {MODULE}: set up in {tok.setup_seconds:.2f}s")
    return tok


def message(domain):
    return (f"From: Alice <alice@{domain}>\r\nTo: bob@example.net\r\nSubject: tokens\r\n"
            f"Date: Sun, 29 Nov 2026 10:00:00 +0000\r\nMessage-ID: <{secrets.token_hex(6)}@{domain}>\r\n"
            f"\r\nHello from {MODULE}.\r\n").encode()


def signed(*selectors):
    """The outcome of a message signed by these selectors (rsa: r..., ed25519: e...)."""
    return (0, " ".join(sorted(selectors)))


def no_key(domain, retired=False):
    why = " (its keys are retired)" if retired else ""
    return (65, f"dkimsign: dkimsignd: no signing key for domain {domain}{why}")


class Box(Sandbox):
    """harness.Sandbox on a tokens.Token: its own directory for the
    configuration, the socket, the log and the key states."""

    def __init__(self, tok, processes=1, user=None, allow_decrypt=None):
        self.tok = tok
        self.dir = tempfile.mkdtemp(prefix=f"dkimsign-tokens-{tok.name}-")
        self.label = tok.label
        self.socket = os.path.join(self.dir, "dkimsignd.sock")
        self.config = os.path.join(self.dir, "dkimsignd.conf")
        self.pin_file = tok.pin_file
        self.so_pin_file = tok.so_pin_file
        self.log_path = os.path.join(self.dir, "dkimsignd.log")
        self.state_dir = os.path.join(self.dir, "state")
        self.daemon = None
        self.keytable = {}
        self.keys = set()          # labels on the token, as far as this box made them
        self.processes = processes
        self.user = user
        # tpm2-pkcs11 makes no key that only signs: allowed unless said otherwise.
        self.allow_decrypt = facts()["decrypt_only"] if allow_decrypt is None else allow_decrypt
        self.env = tok.env
        if user:
            # The daemon's user writes the key states and passes through.
            self.open_to_others()
            os.mkdir(self.state_dir, 0o750)
            os.chown(self.state_dir, *user_ids(user))
        self.write_config()

    def write_config(self, extra=""):
        user = f"user = {self.user}\n" if self.user else ""
        allow = "allow_decrypt_keys = yes\n" if self.allow_decrypt else ""
        with open(self.config, "w") as f:
            f.write(f"[daemon]\nsocket = {self.socket}\nsocket_mode = 0600\nstate_dir = {self.state_dir}\n{user}\n"
                    f"[token]\n{self.tok.config_lines()}sessions = 2\nprocesses = {self.processes}\n{allow}\n"
                    "[signing]\nunpublished = sign\n\n" + extra)
        os.chmod(self.config, 0o644)

    def keygen(self, domain, selector, algorithm="rsa", bits=None):
        super().keygen(domain, selector, algorithm, bits)
        self.keys.add(f"{selector}._domainkey.{domain}")

    def remember(self, domain, selector):
        """A key made otherwise (import, ctypes): its record, for the verifier."""
        self.keytable[f"{selector}._domainkey.{domain}"] = self.dns_record(domain, selector)
        self.keys.add(f"{selector}._domainkey.{domain}")

    def destroy(self, domain, selector):
        p = self.ctl("destroy", "--domain", domain, "--selector", selector, "--yes", check=False)
        check_ctl(p, 0, stdout_first=f"destroyed key {selector}._domainkey.{domain}; its DNS record can be removed "
                                     "once dkimsignd has reloaded", what=f"destroy {selector}._domainkey.{domain}")
        self.keys.discard(f"{selector}._domainkey.{domain}")

    def retire(self, domain, selector):
        p = self.ctl("retire", "--domain", domain, "--selector", selector, check=False)
        check_ctl(p, 0, what=f"retire {selector}._domainkey.{domain}")
        check(p.stdout.startswith(f"retired key {selector}._domainkey.{domain} on "), p.stdout)

    def list_json(self):
        return json.loads(self.ctl("list", "--json").stdout)

    def start(self, timeout=WAIT):
        super().start(timeout)
        if self.processes > 1:
            serving = f"{self.processes} signer processes serve"
            wait_until(lambda: serving in self.log() or self.daemon.poll() is not None,
                       "every signer process serving", timeout, lambda: "\n" + self.log()[-3000:])
            check(self.daemon.poll() is None, f"dkimsignd exited with {self.daemon.returncode}:\n{self.log()}")

    def stop_clean(self):
        """Stop dkimsignd with SIGTERM: it exits 0 (and, under ASan, leaks nothing)."""
        code = self.stop()
        check_eq(code, 0, f"dkimsignd's exit status; log:\n{self.log()[-4000:]}\n")

    def outcome(self, domain):
        """(0, 'selectors that signed, sorted') with every signature verified,
        or (exit status, dkimsign's stderr)."""
        p = self.sign(message(domain))
        if p.returncode != 0:
            return (p.returncode, p.stderr.decode(errors="replace").strip())
        sels = []
        for i, field in enumerate(signature_fields(p.stdout)):
            t = tags(field)
            ok = dkimpy_verify(p.stdout, self.keytable, i)
            sels.append(t.get("s") if ok else f"{t.get('s')}(does not verify)")
        return (0, " ".join(sorted(sels)))

    def expect(self, want, what):
        """Sign once for each domain of want ({domain: outcome}): exactly those outcomes."""
        got = {d: self.outcome(d) for d in want}
        check_eq(got, want, what)

    def signers(self):
        """The signer process ids: the daemon, or its children."""
        if self.processes == 1:
            return [self.daemon.pid]
        with open(f"/proc/{self.daemon.pid}/task/{self.daemon.pid}/children") as f:
            return [int(p) for p in f.read().split()]


def uid_of(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("Uid:"):
                return int(line.split()[1])
    return None


def ctl_init(box):
    p = box.ctl("init-token", "--so-pin-file", box.so_pin_file, check=False)
    check_ctl(p, 0, stdout_first=f"initialized token '{LABEL}'", what="init-token")


# --- the flows --------------------------------------------------------------------

def test_init_token():
    lo, hi = facts()["pins"]
    bad = facts()["bad_pin"]
    check(bad < lo or bad > hi, f"a {bad}-character PIN is within {lo}..{hi}")
    with new_token(pin="7" * bad) as tok:
        box = Box(tok)
        try:
            before = p11(tok)["slots"]
            check(before and not any(s["initialized"] for s in before), f"a free slot, none initialized: {before}")
            check_eq([(s["min_pin"], s["max_pin"]) for s in before], [(lo, hi)] * len(before),
                     "the free slot's PIN lengths (ulMinPinLen, ulMaxPinLen)")
            p = box.ctl("init-token", "--so-pin-file", tok.so_pin_file, check=False)
            check_ctl(p, 1, stderr=f"dkimsignctl: initializing token '{LABEL}' in {tok.module}: this token takes "
                                   f"PINs of {lo} to {hi} characters; the user PIN in {tok.pin_file} has {bad}; "
                                   "nothing was changed", what=f"init-token with a {bad}-character user PIN")
            check_eq(p11(tok)["slots"], before, "the slots after the refused init-token")
            p = box.ctl("list", check=False)
            check_ctl(p, 1, stderr=f"dkimsignctl: token '{LABEL}' in {tok.module}: no token with that label",
                      what="list after the refused init-token")
            tok.set_user_pin("12345678")
            ctl_init(box)
            mine = [s for s in p11(tok)["slots"] if s["label"] == LABEL]
            check_eq([(s["initialized"], s["user_pin"]) for s in mine], [(True, True)],
                     "the token after init-token (initialized, user PIN set)")
            p = box.ctl("list", check=False)
            check_ctl(p, 0, what="list (a login with the new user PIN)")
            check_eq(p.stdout.splitlines()[0].split(), ["DOMAIN", "SELECTOR", "ALG", "BITS", "STATE", "CREATED",
                                                        "ORIGIN", "FINGERPRINT"], "list's header")
            check_eq(box.list_json(), [], "list --json on the new token")
            p = box.ctl("init-token", "--so-pin-file", tok.so_pin_file, check=False)
            check_ctl(p, 1, stderr=f"dkimsignctl: initializing token '{LABEL}' in {tok.module}: already exists (a "
                                   "token with this label is initialized already)", what="init-token again")
        finally:
            box.close()


def test_keygen_limits():
    f = facts()
    with new_token() as tok:
        box = Box(tok, allow_decrypt=False)
        try:
            ctl_init(box)
            if f["decrypt_only"]:
                p = box.ctl("keygen", "--domain", "limits.example", "--selector", "r1", "--algorithm", "rsa",
                            check=False)
                check_ctl(p, 1, stderr="dkimsignctl: generating rsa key r1._domainkey.limits.example: the token "
                                       "refused a key that can only sign (CKR_GENERAL_ERROR); it may make only keys "
                                       "that also decrypt (tpm2-pkcs11 does): set [token] allow_decrypt_keys = yes "
                                       "to accept such keys", what="keygen without allow_decrypt_keys")
                check_eq(box.list_json(), [], "the keys after the refused keygen")
                box.allow_decrypt = True
                box.write_config()
            p = box.ctl("keygen", "--domain", "limits.example", "--selector", "r1", "--algorithm", "rsa",
                        "--bits", "2048", check=False)
            check_ctl(p, 0, stdout_first=f"generated rsa 2048-bit key r1._domainkey.limits.example on token '{LABEL}'",
                      what="keygen rsa 2048")
            box.remember("limits.example", "r1")
            uses = ["sign", "decrypt"] if f["decrypt_only"] else ["sign"]
            keys = box.list_json()
            check_eq([(k["selector"], k["algorithm"], k["bits"], k["origin"], k["uses"], k["refused"])
                      for k in keys], [("r1", "rsa", 2048, "generated", uses, None)], "list --json")
            text = box.ctl("list").stdout
            check(f"  r1._domainkey.limits.example: {', '.join(uses)}\n" in text,
                  f"list shows the uses ({', '.join(uses)}):\n{text}")
            lo4096, hi4096 = f["rsa_gen"]
            p = box.ctl("keygen", "--domain", "limits.example", "--selector", "r4096", "--algorithm", "rsa",
                        "--bits", "4096", check=False)
            if hi4096 >= 4096:
                check_ctl(p, 0, stdout_first="generated rsa 4096-bit key r4096._domainkey.limits.example on token "
                                             f"'{LABEL}'", what="keygen rsa 4096")
                box.remember("limits.example", "r4096")
            else:
                check_ctl(p, 1, stderr="dkimsignctl: generating rsa key r4096._domainkey.limits.example: this token "
                                       f"makes RSA keys of {lo4096} to {hi4096} bits; use --bits {hi4096}",
                          what="keygen rsa 4096")
            p = box.ctl("keygen", "--domain", "limits.example", "--selector", "e1", "--algorithm", "ed25519",
                        check=False)
            if f["ed25519"]:
                check_ctl(p, 0, stdout_first=f"generated ed25519 256-bit key e1._domainkey.limits.example on token "
                                             f"'{LABEL}'", what="keygen ed25519")
                box.remember("limits.example", "e1")
            else:
                check_ctl(p, 1, stderr="dkimsignctl: generating ed25519 key e1._domainkey.limits.example: this "
                                       "token has no Ed25519 (CKM_EDDSA); use --algorithm rsa", what="keygen ed25519")
            check_eq(sorted(f"{k['selector']}._domainkey.{k['domain']}" for k in box.list_json()), sorted(box.keys),
                     "the keys on the token: nothing left by a refusal")
        finally:
            box.close()


def test_import():
    f = facts()
    with new_token() as tok:
        box = Box(tok)
        try:
            ctl_init(box)
            pems = {}
            for alg, gen in (("rsa", ["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"]),
                             ("ed25519", ["-algorithm", "ED25519"])):
                pems[alg] = os.path.join(box.dir, f"{alg}.pem")
                subprocess.run(["openssl", "genpkey", *gen, "-out", pems[alg]], check=True, capture_output=True)
            p = box.ctl("import", "--domain", "imp.example", "--selector", "ir", pems["rsa"], check=False)
            if f["imports"]:
                check_ctl(p, 0, stdout_first="imported rsa 2048-bit key ir._domainkey.imp.example into token "
                                             f"'{LABEL}' (listed as imported: it was not made there)",
                          what="import rsa")
                box.remember("imp.example", "ir")
            else:
                check_ctl(p, 1, stderr="dkimsignctl: importing ir._domainkey.imp.example: the token would not "
                                       "create the private key object (CKR_ATTRIBUTE_VALUE_INVALID): it may not "
                                       "import private keys (tpm2-pkcs11 does not); generate a key on the token "
                                       "instead (dkimsignctl keygen)", what="import rsa")
            p = box.ctl("import", "--domain", "imp.example", "--selector", "ie", pems["ed25519"], check=False)
            if f["ed25519"]:
                check_ctl(p, 0, stdout_first="imported ed25519 256-bit key ie._domainkey.imp.example into token "
                                             f"'{LABEL}' (listed as imported: it was not made there)",
                          what="import ed25519")
                box.remember("imp.example", "ie")
            else:
                check_ctl(p, 1, stderr="dkimsignctl: importing ie._domainkey.imp.example: this token has no Ed25519 "
                                       "(CKM_EDDSA); use an RSA key", what="import ed25519")
            check_eq(sorted((k["selector"], k["origin"]) for k in box.list_json()),
                     sorted((label.split(".")[0], "imported") for label in box.keys),
                     "the keys on the token: the imported ones, nothing left by a refusal")
            if not box.keys:
                return
            box.start()
            box.expect({"imp.example": signed(*(label.split(".")[0] for label in box.keys))},
                       "signing with the imported keys")
            box.stop_clean()
        finally:
            box.close()


def test_sign_and_restart():
    f = facts()
    with new_token() as tok:
        box = Box(tok)
        try:
            ctl_init(box)
            box.keygen("rsa.example", "r1", "rsa", 2048)
            want = {"rsa.example": signed("r1")}
            if f["ed25519"]:
                box.keygen("ed.example", "e1", "ed25519")
                box.keygen("dual.example", "dr", "rsa", 2048)
                box.keygen("dual.example", "de", "ed25519")
                want.update({"ed.example": signed("e1"), "dual.example": signed("dr", "de")})
            want["none.example"] = no_key("none.example")
            box.start()
            box.expect(want, "signing")
            box.stop_clean()
            box.start()
            box.expect(want, "signing after a restart")
            box.stop_clean()
        finally:
            box.close()


# Per-process lines of the log: "dkimsignd: ..." or "dkimsignd/1: ...".
RELOADED = re.compile(r"dkimsignd(?:/(\d+))?: reloaded: (\d+) signing key\(s\)")
AUDIT = re.compile(r"dkimsignd(?:/(\d+))?: audit: (signed|refused) time=\S+ uid=\d+ pid=\d+ domain=(\S+)")


def reload_round(box, how):
    """One round of changes made by dkimsignctl while dkimsignd runs, seen
    after a reload (how: "ctl", dkimsignctl reload, or "hup", SIGHUP) by
    every signer process.  Its keys are named after how (reload_flow)."""
    f = facts()
    keep, new, ret, gone = "keep.example", f"new-{how}.example", f"retire-{how}.example", f"destroy-{how}.example"
    dual = f"dual-{how}.example"
    want = {keep: signed("k1"), ret: signed("r1"), gone: signed("x1"), new: no_key(new)}
    if f["ed25519"]:
        want[dual] = signed("dr", "de")
    box.expect(want, f"[{how}] signing before the changes")

    box.keygen(new, "n1", "rsa", 2048)
    box.retire(ret, "r1")
    box.destroy(gone, "x1")
    if f["ed25519"]:
        # The domain goes on signing with its other key.
        if how == "ctl":
            box.retire(dual, "de")
        else:
            box.destroy(dual, "de")
    # Not seen before a reload.
    check_eq(box.outcome(new), no_key(new), f"[{how}] signing for {new} before the reload")

    mark = len(box.log())
    procs = [str(i) for i in range(box.processes)] if box.processes > 1 else [None]
    if how == "ctl":
        p = box.ctl("reload", check=False)
        check_ctl(p, 0, what="dkimsignctl reload")
        reply = p.stdout.strip()
    else:
        os.kill(box.daemon.pid, signal.SIGHUP)
        reply = None

    def reloaded():
        return {m.group(1): int(m.group(2)) for m in RELOADED.finditer(box.log()[mark:])}

    wait_until(lambda: set(reloaded()) == set(procs), f"[{how}] a reload by every signer process {procs}",
               detail=lambda: f"; reloaded: {reloaded()}\n{box.log()[mark:][-3000:]}")
    want = {keep: signed("k1"), new: signed("n1"), ret: no_key(ret, retired=True), gone: no_key(gone)}
    if f["ed25519"]:
        want[dual] = signed("dr")
    last = {}

    def all_as_wanted():
        last.update({d: box.outcome(d) for d in want})
        return last == want

    wait_until(all_as_wanted, f"[{how}] signing as the changes say, after the reload",
               detail=lambda: "".join(f"\n  {d}: got {last.get(d)}, expected {w}" for d, w in want.items()
                                      if last.get(d) != w))
    # Every signer process answers so: sign until each has served both the
    # new key and the retired key's refusal, every answer as wanted.
    def served(outcome, domain):
        return {m.group(1) for m in AUDIT.finditer(box.log()[mark:]) if m.group(2) == outcome and m.group(3) == domain}

    def every_process_served():
        for d, w in want.items():
            got = box.outcome(d)
            if got != w:
                raise AssertionError(f"[{how}] signing for {d} after every signer process reloaded:\n"
                                     f"  got:      {got!r}\n  expected: {w!r}")
        return served("signed", new) >= set(procs) and served("refused", ret) >= set(procs)

    wait_until(every_process_served, f"[{how}] every signer process {procs} signing for {new} and refusing {ret}",
               detail=lambda: f"; signed {new}: {served('signed', new)}, refused {ret}: {served('refused', ret)}")
    count = len(box.keys)
    check_eq(reloaded(), {p: count for p in procs}, f"[{how}] the keys each signer process reloaded")
    if reply is not None:
        check_eq(reply, f"reloaded: {count} signing key(s)", "dkimsignctl reload's answer")
    return want


def reload_flow(processes):
    f = facts()
    with new_token() as tok:
        box = Box(tok, processes=processes)
        try:
            ctl_init(box)
            box.keygen("keep.example", "k1", "rsa", 2048)
            for how in ("ctl", "hup"):
                box.keygen(f"retire-{how}.example", "r1", "rsa", 2048)
                box.keygen(f"destroy-{how}.example", "x1", "rsa", 2048)
                if f["ed25519"]:
                    box.keygen(f"dual-{how}.example", "dr", "rsa", 2048)
                    box.keygen(f"dual-{how}.example", "de", "ed25519")
            box.start()
            want = {}
            for how in ("ctl", "hup"):
                t0 = time.monotonic()
                want.update(reload_round(box, how))
                print(f"  reload by {'dkimsignctl reload' if how == 'ctl' else 'SIGHUP'}: "
                      f"{time.monotonic() - t0:.1f}s")
            box.stop_clean()
            box.start()
            box.expect(want, "signing after a restart")
            box.stop_clean()
        finally:
            box.close()


def test_reload_processes_1():
    reload_flow(1)


def test_reload_processes_2():
    reload_flow(2)


def test_unprivileged():
    f = facts()
    uid = user_ids(USER)[0]
    with new_token() as tok:
        box = Box(tok, processes=2, user=USER)
        # Under ASan, LeakSanitizer reads its suppressions at exit, as USER
        # by then: a copy that user can read, wherever the checkout is.
        lsan = os.environ.get("LSAN_OPTIONS", "")
        m = re.search(r"(?:^|:)suppressions=([^:]+)", lsan)
        if m:
            box.env = dict(box.env, LSAN_OPTIONS=lsan.replace(m.group(1), box.reachable(m.group(1), "lsan.supp")))
        try:
            ctl_init(box)
            box.keygen("drop.example", "r1", "rsa", 2048)
            want = {"drop.example": signed("r1")}
            if f["ed25519"]:
                box.keygen("drop.example", "e1", "ed25519")
                want = {"drop.example": signed("r1", "e1")}
            # Not granted: the signer processes, which open the token as
            # nobody, fail with the CKR name and where to look.
            box.write_config()
            try:
                Sandbox.start(box)
            except AssertionError:
                pass    # it may exit before it listens
            code = box.daemon.wait(WAIT)
            box.daemon = None
            log = box.log()
            check_eq(code, 1, f"dkimsignd's exit status on a token not granted to {USER}; log:\n{log}")
            line = (f"dkimsignd/0: token '{LABEL}' in {tok.module}: the token failed ({f['ungranted_ckr']}); "
                    f"{HINT}")
            check(any(x.endswith(line) for x in log.splitlines()),
                  f"the log says why and where to look:\n  expected a line: {line}\n  log:\n{log}")
            tok.grant(USER)
            if MODULE == "tpm2":
                # A store that belongs to a user other than root and the
                # [daemon] user is not trusted.
                box.user = None
                box.write_config()
                store = tok.module_env["TPM2_PKCS11_STORE"]
                p = box.ctl("list", check=False)
                check_ctl(p, 1, stderr="dkimsignctl: [token] module_env: TPM2_PKCS11_STORE names a file the PKCS#11 "
                                       f"module reads as this user: bad permissions on {store} (owner uid {uid}, mode "
                                       "0755): owned by a user other than root and uid 0 (who runs this)",
                          what="list with a store that belongs to another user")
                box.user = USER
            for processes in (1, 2):
                box.processes = processes
                box.write_config()
                # It listens before it drops its privileges, then says so;
                # the log already holds the line of the runs before this one.
                said = f"running as {USER} (uid {uid})"
                before = box.log().count(said)
                box.start()
                wait_until(lambda: box.log().count(said) > before, f"the log saying it runs as {USER}",
                           detail=lambda: f"\n{box.log()}")
                check_eq([uid_of(p) for p in box.signers()], [uid] * processes,
                         f"the uid of the {processes} signer process(es)")
                for _ in range(2 * processes):
                    box.expect(want, f"signing as {USER}, processes = {processes}")
                box.stop_clean()
        finally:
            box.close()


def test_always_authenticate():
    with new_token() as tok:
        box = Box(tok)
        try:
            ctl_init(box)
            box.keygen("ok.example", "r1", "rsa", 2048)
            made = p11(tok, always_authenticate="aa._domainkey.aa.example")
            check_eq(made.get("generate"), "CKR_OK", "C_GenerateKeyPair with CKA_ALWAYS_AUTHENTICATE")
            box.remember("aa.example", "aa")
            keys = {k["selector"]: k for k in box.list_json()}
            check_eq((keys["aa"]["always_authenticate"], keys["aa"]["refused"]), (True, ALWAYS_AUTH_WHY),
                     "list --json: always_authenticate, refused")
            check_eq((keys["r1"]["always_authenticate"], keys["r1"]["refused"]), (False, None),
                     "list --json of the other key")
            text = box.ctl("list").stdout
            row = [x.split()[:5] for x in text.splitlines() if x.startswith("aa.example ")]
            check_eq(row, [["aa.example", "aa", "rsa", "2048", "refused"]], "list's row of the key")
            check(f"  aa._domainkey.aa.example: never signs: {ALWAYS_AUTH_WHY}\n" in text,
                  f"list says why it never signs:\n{text}")
            box.start()
            log_line = f"dkimsignd: key aa._domainkey.aa.example: never signs: {ALWAYS_AUTH_WHY}"
            check(any(x.endswith(log_line) for x in box.log().splitlines()),
                  f"the log says why it never signs:\n  expected a line: {log_line}\n{box.log()}")
            for _ in range(3):
                box.expect({"aa.example": no_key("aa.example"), "ok.example": signed("r1")},
                           "signing: a permanent refusal for the always-authenticate key")
            box.stop_clean()
        finally:
            box.close()


def summary():
    total = sum(SETUP)
    print(f"tokens-{MODULE}: {CHECKS} checks; {len(SETUP)} token(s) set up in {total:.2f}s "
          f"(each {min(SETUP, default=0):.2f}s to {max(SETUP, default=0):.2f}s)")


def main():
    global MODULE, CLS
    ap = argparse.ArgumentParser()
    ap.add_argument("--module", required=True, choices=sorted(tokens.MODULES))
    MODULE = ap.parse_args().module
    CLS = tokens.MODULES[MODULE]
    if os.geteuid() != 0:
        # Not a skip: every module needs root here (opencryptoki's namespace,
        # the unprivileged signers), and CI runs as root.
        print(f"tokens-{MODULE}: must run as root")
        sys.exit(1)
    atexit.register(summary)
    run([test_init_token, test_keygen_limits, test_import, test_sign_and_restart, test_reload_processes_1,
         test_reload_processes_2, test_unprivileged, test_always_authenticate])


if __name__ == "__main__":
    main()
