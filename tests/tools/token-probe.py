#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""A probe, not a test (scripts/test does not run it): how dkimsignctl and dkimsignd behave on three
PKCS#11 modules (SoftHSM 2, opencryptoki's software token, tpm2-pkcs11 on
swtpm; tests/lib/tokens.py sets each up).  Every flow is run through the
real programs and its outcome recorded (stderr's last line, the CK_RV
names in it, and for a failed dkimsignctl command the failing calls that
OpenSC's pkcs11-spy saw); signatures are verified with python3-dkim.  The
module's own facts (mechanisms, PIN lengths, sessions, C_CopyObject,
object caching across processes, refused key templates) come from a
ctypes PKCS#11 client in a child process.  Prints a table per module and
exits 0 whatever happened (until the outcomes are asserted).

    DKIMSIGN_BUILD_DIR=build tests/tools/token-probe.py [--module softhsm|opencryptoki|tpm2]... [--out DIR]
"""
import argparse
import ctypes
import json
import os
import re
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
import traceback

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
import tokens  # noqa: E402
from harness import binary, dkimpy_verify, signature_fields, tags  # noqa: E402

RESULTS = []   # (module, flow, outcome, detail)
OUT = None


def record(module, flow, outcome, detail=""):
    RESULTS.append((module, flow, outcome, detail))
    print(f"[{module}] {flow}: {outcome}" + (f" | {detail}" if detail else ""), flush=True)


def ckrs(text):
    return sorted(set(re.findall(r"CKR_[A-Z_0-9]+", text or "")))


def last_line(text):
    lines = [x for x in (text or "").strip().splitlines() if x.strip()]
    return lines[-1].strip() if lines else ""


def message(domain, n=0):
    return (f"From: Alice <alice@{domain}>\r\nTo: bob@example.net\r\nSubject: probe {n}\r\n"
            f"Date: Sun, 29 Nov 2026 10:00:00 +0000\r\nMessage-ID: <p{n}.{secrets.token_hex(4)}@{domain}>\r\n"
            f"\r\nHello from the token probe.\r\n").encode()


# --- pkcs11-spy ----------------------------------------------------------------

def spy_failures(path, limit=6):
    """The calls the spy log shows returning something other than CKR_OK,
    each with the lines of its [in] arguments (templates)."""
    try:
        with open(path, errors="replace") as f:
            lines = f.read().splitlines()
    except OSError:
        return []
    out, call, args = [], None, []
    for line in lines:
        m = re.match(r"^\d+: (C_\w+)", line)
        if m:
            call, args = m.group(1), []
            continue
        if line.startswith("Returned:"):
            rv = line.split()[-1]
            if rv != "CKR_OK" and call not in ("C_GetAttributeValue",):
                out.append(f"{call} -> {rv}" + (" [" + "; ".join(a.strip() for a in args[-40:]) + "]" if args else ""))
            elif rv != "CKR_OK":
                out.append(f"{call} -> {rv}")
            continue
        if call and (line.startswith("[in]") or line.startswith("    ")):
            if len(args) < 80:
                args.append(line)
    return out[-limit:]


# --- a sandbox: a token, a configuration, the daemon -----------------------------

class Box:
    def __init__(self, tok, processes=1, extra="", daemon_user=None):
        self.tok = tok
        self.dir = tempfile.mkdtemp(prefix="dkimsign-probe-", dir=OUT)
        os.chmod(self.dir, 0o755)
        self.socket = os.path.join(self.dir, "dkimsignd.sock")
        self.config = os.path.join(self.dir, "dkimsignd.conf")
        self.spy_config = os.path.join(self.dir, "dkimsignd-spy.conf")
        self.log_path = os.path.join(self.dir, "dkimsignd.log")
        self.keytable = {}
        self.daemon = None
        self.nspy = 0
        self.processes = processes
        self.extra = extra
        self.daemon_user = daemon_user
        self.write()

    def write(self):
        def text(token_lines):
            user = f"user = {self.daemon_user}\n" if self.daemon_user else ""
            return (f"[daemon]\nsocket = {self.socket}\nsocket_mode = 0666\nstate_dir = {self.dir}/state\n{user}\n"
                    f"[token]\n{token_lines}sessions = 2\nprocesses = {self.processes}\n\n"
                    "[signing]\nunpublished = sign\n\n" + self.extra)
        with open(self.config, "w") as f:
            f.write(text(self.tok.config_lines()))
        self.spy_log = os.path.join(self.dir, "spy-%d.log")
        with open(self.spy_config, "w") as f:
            f.write(text(self.tok.config_lines(module=tokens.SPY_MODULE,
                                               extra_env=self.tok.spy_env(os.path.join(self.dir, "spy.log")))))

    def ctl(self, *args, spy=False):
        """(returncode, stdout, stderr, spy failures)."""
        cfg = self.config
        spylog = os.path.join(self.dir, "spy.log")
        if spy:
            if os.path.exists(spylog):
                os.unlink(spylog)
            cfg = self.spy_config
        try:
            p = subprocess.run([binary("dkimsignctl"), "--config", cfg, *args], env=self.tok.env,
                               capture_output=True, text=True, timeout=180, stdin=subprocess.DEVNULL)
            rc, out, err = p.returncode, p.stdout, p.stderr
        except subprocess.TimeoutExpired as e:
            rc, out, err = "timeout", e.stdout or "", (e.stderr or "") + " (timed out after 180s)"
            out = out.decode() if isinstance(out, bytes) else out
            err = err.decode() if isinstance(err, bytes) else err
        fails = []
        if spy:
            self.nspy += 1
            keep = os.path.join(self.dir, f"spy-{self.nspy}-{args[0]}.log")
            if os.path.exists(spylog):
                shutil.copy(spylog, keep)
                fails = spy_failures(keep)
        return rc, out, err, fails

    def ctl_probe(self, flow, *args, repeatable=True, first_spy=False):
        """Run, record; on failure, once more through pkcs11-spy when the
        command changes nothing when it fails (repeatable)."""
        rc, out, err, fails = self.ctl(*args, spy=first_spy)
        if rc == 0:
            record(self.tok.name, flow, "ok", last_line(out)[:160])
            return True, out
        if not fails and repeatable and not first_spy:
            _, _, err2, fails = self.ctl(*args, spy=True)
        detail = f"exit {rc}: {last_line(err)}"
        if fails:
            detail += " || spy: " + " ; ".join(fails)
        record(self.tok.name, flow, "FAIL", detail)
        return False, out + err

    def keygen(self, flow, domain, selector, alg="rsa", bits=None):
        args = ["keygen", "--domain", domain, "--selector", selector, "--algorithm", alg]
        if bits:
            args += ["--bits", str(bits)]
        ok, _ = self.ctl_probe(flow, *args)
        if not ok and alg == "rsa":
            # What the issue says works: the same key made by OpenSC's generic tool.
            p = subprocess.run(["pkcs11-tool", "--module", self.tok.module, "--token-label", self.tok.label,
                                "--login", "--pin", self.tok.user_pin, "--keypairgen", "--key-type",
                                f"rsa:{bits or 2048}", "--label", f"{selector}._domainkey.{domain}",
                                "--id", secrets.token_hex(8), "--usage-sign", "--private"],
                               env=self.tok.env, capture_output=True, text=True)
            ok = p.returncode == 0
            record(self.tok.name, "  instead: pkcs11-tool --keypairgen (vendor-made key)", "ok" if ok else "FAIL",
                   last_line(p.stdout + p.stderr)[:200])
        if ok:
            self.dns(domain, selector, quiet=True)
        return ok

    def dns(self, domain, selector, quiet=False, flow=None):
        rc, out, err, _ = self.ctl("dns-record", "--domain", domain, "--selector", selector)
        rec = None
        for line in out.splitlines():
            if line.startswith("; v=DKIM1"):
                rec = line[2:]
        if rec:
            self.keytable[f"{selector}._domainkey.{domain}"] = rec
        if not quiet:
            record(self.tok.name, flow or f"dns-record {selector}._domainkey.{domain}", "ok" if rec else "FAIL",
                   (rec or "")[:60] + "..." if rec else f"exit {rc}: {last_line(err)}")
        return rec

    def start(self, timeout=60):
        log = open(self.log_path, "ab")
        self.daemon = subprocess.Popen([binary("dkimsignd"), "--config", self.config], env=self.tok.env,
                                       stdout=log, stderr=log, stdin=subprocess.DEVNULL)
        log.close()
        deadline = time.monotonic() + timeout
        import socket
        while time.monotonic() < deadline:
            if self.daemon.poll() is not None:
                return False, f"dkimsignd exited with {self.daemon.returncode}"
            try:
                with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
                    s.connect(self.socket)
                # a signer process may still be loading: ask status until it answers
                return True, ""
            except OSError:
                time.sleep(0.05)
        return False, f"not listening within {timeout}s"

    def stop(self):
        if not self.daemon:
            return
        if self.daemon.poll() is None:
            self.daemon.terminate()
            try:
                self.daemon.wait(30)
            except subprocess.TimeoutExpired:
                self.daemon.kill()
                self.daemon.wait()
        self.daemon = None

    def log(self):
        try:
            with open(self.log_path, errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def sign(self, domain, n=0, timeout=30):
        """(outcome, detail): which selectors signed, verified or not."""
        try:
            p = subprocess.run([binary("dkimsign"), "--socket", self.socket], input=message(domain, n),
                               capture_output=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            return "FAIL", f"dkimsign timed out after {timeout}s"
        if p.returncode != 0:
            return "FAIL", f"dkimsign exit {p.returncode}: {last_line(p.stderr.decode(errors='replace'))}"
        sigs = signature_fields(p.stdout)
        if not sigs:
            return "FAIL", "no DKIM-Signature"
        parts = []
        allok = True
        for i, field in enumerate(sigs):
            t = tags(field)
            try:
                v = dkimpy_verify(p.stdout, self.keytable, i)
            except Exception as e:  # noqa: BLE001
                v = f"error {e}"
            allok = allok and v is True
            parts.append(f"s={t.get('s')} a={t.get('a')} verified={v}")
        return ("ok" if allok else "FAIL"), "; ".join(parts)

    def sign_probe(self, flow, domain, expect=None):
        outcome, detail = self.sign(domain)
        if expect:
            detail += f" (expected: {expect})"
        record(self.tok.name, flow, outcome, detail)
        return outcome, detail

    def reload(self, flow):
        rc, out, err, _ = self.ctl("reload")
        time.sleep(0.3)   # the signers load the keys after answering
        new_log = self.log()
        tail = [line for line in new_log.splitlines() if "reload" in line.lower() or "key" in line.lower()][-2:]
        record(self.tok.name, flow, "ok" if rc == 0 else "FAIL",
               (last_line(out) if rc == 0 else f"exit {rc}: {last_line(err)}") + " | log: " + " / ".join(tail)[:300])

    def close(self):
        self.stop()
        if not OUT:
            shutil.rmtree(self.dir, ignore_errors=True)


def log_errors(box, n=4):
    lines = [x for x in box.log().splitlines() if re.search(r"err|fail|refus|cannot|CKR_|hint|denied", x, re.I)]
    return " / ".join(lines[-n:])[:600]


# --- PKCS#11 facts, through ctypes, in a child process ------------------------------

FACTS_CHILD = r'''
import ctypes, json, os, subprocess, sys
CK_ULONG = ctypes.c_ulong
class ATTR(ctypes.Structure):
    _fields_ = [("type", CK_ULONG), ("pValue", ctypes.c_void_p), ("ulValueLen", CK_ULONG)]
class MECH(ctypes.Structure):
    _fields_ = [("mechanism", CK_ULONG), ("pParameter", ctypes.c_void_p), ("ulParameterLen", CK_ULONG)]
class MINFO(ctypes.Structure):
    _fields_ = [("min", CK_ULONG), ("max", CK_ULONG), ("flags", CK_ULONG)]
class VER(ctypes.Structure):
    _fields_ = [("major", ctypes.c_ubyte), ("minor", ctypes.c_ubyte)]
class TINFO(ctypes.Structure):
    _fields_ = [("label", ctypes.c_char * 32), ("manufacturerID", ctypes.c_char * 32), ("model", ctypes.c_char * 16),
                ("serial", ctypes.c_char * 16), ("flags", CK_ULONG), ("ulMaxSessionCount", CK_ULONG),
                ("ulSessionCount", CK_ULONG), ("ulMaxRwSessionCount", CK_ULONG), ("ulRwSessionCount", CK_ULONG),
                ("ulMaxPinLen", CK_ULONG), ("ulMinPinLen", CK_ULONG), ("a", CK_ULONG), ("b", CK_ULONG),
                ("c", CK_ULONG), ("d", CK_ULONG), ("hw", VER), ("fw", VER), ("utc", ctypes.c_char * 16)]
class INITARGS(ctypes.Structure):
    _fields_ = [("c", ctypes.c_void_p), ("d", ctypes.c_void_p), ("l", ctypes.c_void_p), ("u", ctypes.c_void_p),
                ("flags", CK_ULONG), ("r", ctypes.c_void_p)]
RV = {0: "CKR_OK", 5: "CKR_GENERAL_ERROR", 6: "CKR_FUNCTION_FAILED", 7: "CKR_ARGUMENTS_BAD", 0x10: "CKR_ATTRIBUTE_READ_ONLY",
      0x11: "CKR_ATTRIBUTE_SENSITIVE", 0x12: "CKR_ATTRIBUTE_TYPE_INVALID", 0x13: "CKR_ATTRIBUTE_VALUE_INVALID",
      0x54: "CKR_FUNCTION_NOT_SUPPORTED", 0x60: "CKR_KEY_HANDLE_INVALID", 0x62: "CKR_KEY_SIZE_RANGE",
      0x63: "CKR_KEY_TYPE_INCONSISTENT", 0x68: "CKR_KEY_FUNCTION_NOT_PERMITTED", 0x70: "CKR_MECHANISM_INVALID",
      0x71: "CKR_MECHANISM_PARAM_INVALID", 0x82: "CKR_OBJECT_HANDLE_INVALID", 0x90: "CKR_OPERATION_ACTIVE",
      0xA0: "CKR_PIN_INCORRECT", 0xA1: "CKR_PIN_INVALID", 0xA2: "CKR_PIN_LEN_RANGE", 0xB1: "CKR_SESSION_COUNT",
      0xB3: "CKR_SESSION_HANDLE_INVALID", 0xD0: "CKR_TEMPLATE_INCOMPLETE", 0xD1: "CKR_TEMPLATE_INCONSISTENT",
      0x100: "CKR_USER_ALREADY_LOGGED_IN", 0x101: "CKR_USER_NOT_LOGGED_IN", 0x150: "CKR_BUFFER_TOO_SMALL",
      0x191: "CKR_CRYPTOKI_ALREADY_INITIALIZED", 0x0B5: "CKR_SESSION_READ_ONLY", 0x0E2: "CKR_TOKEN_WRITE_PROTECTED",
      0x0B4: "CKR_SESSION_PARALLEL_NOT_SUPPORTED", 0x102: "CKR_USER_PIN_NOT_INITIALIZED", 0x0C0: "CKR_SIGNATURE_INVALID",
      0x0A3: "CKR_PIN_EXPIRED", 0x0A4: "CKR_PIN_LOCKED", 0x104: "CKR_USER_TYPE_INVALID", 0x0E0: "CKR_TOKEN_NOT_PRESENT"}
def rvname(rv): return RV.get(rv, hex(rv))
MECHS = {"CKM_RSA_PKCS": 1, "CKM_RSA_PKCS_KEY_PAIR_GEN": 0, "CKM_EDDSA": 0x1057, "CKM_EC_EDWARDS_KEY_PAIR_GEN": 0x1055,
         "CKM_ECDSA": 0x1041, "CKM_EC_KEY_PAIR_GEN": 0x1040}
FLAGS = {0x1: "HW", 0x100: "ENCRYPT", 0x200: "DECRYPT", 0x400: "DIGEST", 0x800: "SIGN", 0x1000: "SIGN_RECOVER",
         0x2000: "VERIFY", 0x4000: "VERIFY_RECOVER", 0x8000: "GENERATE", 0x10000: "GENERATE_KEY_PAIR",
         0x20000: "WRAP", 0x40000: "UNWRAP", 0x80000: "DERIVE", 0x100000: "EC_F_P", 0x400000: "EC_ECPARAMETERS",
         0x800000: "EC_NAMEDCURVE", 0x1000000: "EC_UNCOMPRESS", 0x2000000: "EC_COMPRESS"}
TFLAGS = {0x1: "RNG", 0x2: "WRITE_PROTECTED", 0x4: "LOGIN_REQUIRED", 0x8: "USER_PIN_INITIALIZED",
          0x20: "RESTORE_KEY_NOT_NEEDED", 0x40: "CLOCK_ON_TOKEN", 0x100: "PROTECTED_AUTHENTICATION_PATH",
          0x200: "DUAL_CRYPTO_OPERATIONS", 0x400: "TOKEN_INITIALIZED", 0x800: "SECONDARY_AUTHENTICATION",
          0x10000: "USER_PIN_COUNT_LOW", 0x20000: "USER_PIN_FINAL_TRY", 0x40000: "USER_PIN_LOCKED",
          0x80000: "USER_PIN_TO_BE_CHANGED", 0x100000: "SO_PIN_COUNT_LOW", 0x200000: "SO_PIN_FINAL_TRY",
          0x400000: "SO_PIN_LOCKED", 0x800000: "SO_PIN_TO_BE_CHANGED"}
def flags(v, table): return "|".join(n for b, n in table.items() if v & b) + (f"|0x{v & ~sum(table):x}" if v & ~sum(table) else "")

args = json.loads(sys.argv[1])
lib = ctypes.CDLL(args["module"])
def call(name, *a):
    f = getattr(lib, "C_" + name)
    f.restype = CK_ULONG
    return f(*a)
ia = INITARGS(flags=2)   # CKF_OS_LOCKING_OK
facts = {}
rv = call("Initialize", ctypes.byref(ia))
facts["C_Initialize"] = rvname(rv)
n = CK_ULONG(0)
call("GetSlotList", 1, None, ctypes.byref(n))
slots = (CK_ULONG * max(n.value, 1))()
call("GetSlotList", 1, slots, ctypes.byref(n))
slot = None
for i in range(n.value):
    ti = TINFO()
    if call("GetTokenInfo", slots[i], ctypes.byref(ti)) == 0 and ti.label.decode().rstrip() == args["label"]:
        slot = slots[i]
        break
facts["slot"] = slot
ti = TINFO()
call("GetTokenInfo", slot, ctypes.byref(ti))
facts["token"] = {"label": ti.label.decode().rstrip(), "manufacturer": ti.manufacturerID.decode().rstrip(),
                  "model": ti.model.decode().rstrip(), "flags": flags(ti.flags, TFLAGS),
                  "ulMinPinLen": ti.ulMinPinLen, "ulMaxPinLen": ti.ulMaxPinLen,
                  "ulMaxSessionCount": ti.ulMaxSessionCount, "ulMaxRwSessionCount": ti.ulMaxRwSessionCount}
n = CK_ULONG(0)
call("GetMechanismList", slot, None, ctypes.byref(n))
ml = (CK_ULONG * max(n.value, 1))()
call("GetMechanismList", slot, ml, ctypes.byref(n))
have = set(ml[i] for i in range(n.value))
facts["mechanism_count"] = n.value
facts["mechanisms"] = {}
for name, m in MECHS.items():
    mi = MINFO()
    rv = call("GetMechanismInfo", slot, CK_ULONG(m), ctypes.byref(mi))
    facts["mechanisms"][name] = ({"listed": m in have, "ulMinKeySize": mi.min, "ulMaxKeySize": mi.max,
                                  "flags": flags(mi.flags, FLAGS)} if rv == 0 else {"listed": m in have, "rv": rvname(rv)})
s = CK_ULONG(0)
rv = call("OpenSession", slot, 6, None, None, ctypes.byref(s))
pin = args["pin"].encode()
rv = call("Login", s, CK_ULONG(1), pin, CK_ULONG(len(pin)))
facts["C_Login"] = rvname(rv)

def tmpl(items):
    keep = []
    arr = (ATTR * len(items))()
    for i, (t, v) in enumerate(items):
        if isinstance(v, bool):
            b = ctypes.c_ubyte(1 if v else 0); keep.append(b); arr[i] = ATTR(t, ctypes.cast(ctypes.byref(b), ctypes.c_void_p), 1)
        elif isinstance(v, int):
            u = CK_ULONG(v); keep.append(u); arr[i] = ATTR(t, ctypes.cast(ctypes.byref(u), ctypes.c_void_p), ctypes.sizeof(u))
        else:
            bb = ctypes.create_string_buffer(bytes(v), len(v)); keep.append(bb); arr[i] = ATTR(t, ctypes.cast(bb, ctypes.c_void_p), len(v))
    return arr, len(items), keep

def find(sess, items):
    arr, cnt, keep = tmpl(items)
    rv = call("FindObjectsInit", sess, arr, CK_ULONG(cnt))
    if rv: return rvname(rv), []
    objs = (CK_ULONG * 64)(); got = CK_ULONG(0)
    rv = call("FindObjects", sess, objs, CK_ULONG(64), ctypes.byref(got))
    call("FindObjectsFinal", sess)
    return rvname(rv), [objs[i] for i in range(got.value)]

def destroy(h):
    return rvname(call("DestroyObject", s, CK_ULONG(h)))

CKA = {"CLASS": 0, "TOKEN": 1, "PRIVATE": 2, "LABEL": 3, "KEY_TYPE": 0x100, "ID": 0x102, "SENSITIVE": 0x103,
       "ENCRYPT": 0x104, "DECRYPT": 0x105, "WRAP": 0x106, "UNWRAP": 0x107, "SIGN": 0x108, "SIGN_RECOVER": 0x109,
       "VERIFY": 0x10A, "VERIFY_RECOVER": 0x10B, "DERIVE": 0x10C, "START_DATE": 0x110, "END_DATE": 0x111,
       "MODULUS_BITS": 0x121, "PUBLIC_EXPONENT": 0x122, "EXTRACTABLE": 0x162, "EC_PARAMS": 0x180,
       "ALWAYS_AUTHENTICATE": 0x202}
def A(name, v): return (CKA[name], v)

def genpair(alg, pub_extra, priv_extra, label, bits=2048, token=True):
    if alg == "rsa":
        mech = MECH(0, None, 0)
        pub = [A("TOKEN", token), A("LABEL", label.encode()), A("MODULUS_BITS", bits), A("PUBLIC_EXPONENT", b"\x01\x00\x01")]
    else:
        mech = MECH(0x1055, None, 0)
        pub = [A("TOKEN", token), A("LABEL", label.encode()), A("EC_PARAMS", b"\x06\x03\x2b\x65\x70")]
    priv = [A("TOKEN", token), A("PRIVATE", True), A("SENSITIVE", True), A("EXTRACTABLE", False), A("LABEL", label.encode())]
    pa, pn, k1 = tmpl(pub + pub_extra)
    va, vn, k2 = tmpl(priv + priv_extra)
    hpub, hpriv = CK_ULONG(0), CK_ULONG(0)
    rv = call("GenerateKeyPair", s, ctypes.byref(mech), pa, CK_ULONG(pn), va, CK_ULONG(vn), ctypes.byref(hpub), ctypes.byref(hpriv))
    return rv, hpub.value, hpriv.value

# Which attributes of dkimsign's templates (hsm/keys-create.c) the module refuses.
if args.get("templates"):
    today = b"20260101"
    PRIV_ATTRS = [("SIGN", True), ("SIGN_RECOVER", False), ("DECRYPT", False), ("UNWRAP", False), ("DERIVE", False),
                  ("ID", b"0123456789abcdef")]
    PUB_ATTRS = [("VERIFY", True), ("VERIFY_RECOVER", False), ("ENCRYPT", False), ("WRAP", False), ("DERIVE", False),
                 ("PRIVATE", False), ("ID", b"0123456789abcdef"), ("START_DATE", today)]
    res = {}
    algs = ["rsa"] + (["ed25519"] if 0x1055 in have else [])
    for alg in algs:
        r = {}
        def attempt(name, pubx, privx):
            rv, hp, hv = genpair(alg, pubx, privx, "tmpl-probe")
            r[name] = rvname(rv)
            if rv == 0:
                destroy(hp); destroy(hv)
        attempt("minimal (no usage attributes)", [], [])
        for a, v in PRIV_ATTRS:
            attempt(f"priv +{a}={v}", [], [A(a, v)])
        for a, v in PUB_ATTRS:
            attempt(f"pub +{a}={v}", [A(a, v)], [])
        attempt("priv SIGN=true DECRYPT=true", [], [A("SIGN", True), A("DECRYPT", True)])
        attempt("pub VERIFY=true ENCRYPT=true", [A("VERIFY", True), A("ENCRYPT", True)], [])
        attempt("dkimsign's full templates", [A(a, v) for a, v in PUB_ATTRS], [A(a, v) for a, v in PRIV_ATTRS])
        attempt("dkimsign's full templates without START_DATE", [A(a, v) for a, v in PUB_ATTRS if a != "START_DATE"],
                [A(a, v) for a, v in PRIV_ATTRS])
        if alg == "rsa":
            for bits in (2048, 3072, 4096):
                rv, hp, hv = genpair(alg, [], [A("SIGN", True)], "tmpl-probe", bits=bits)
                r[f"minimal, {bits} bits"] = rvname(rv)
                if rv == 0:
                    destroy(hp); destroy(hv)
        res[alg] = r
    facts["templates"] = res

# C_CopyObject on a private key (session copy, as hsm/copies.c makes).
rv, hp, hv = genpair("rsa", [A("VERIFY", True)], [A("SIGN", True)], "copy-probe")
if rv == 0:
    ta, tn, keep = tmpl([A("TOKEN", False)])
    new = CK_ULONG(0)
    rv2 = call("CopyObject", s, CK_ULONG(hv), ta, CK_ULONG(tn), ctypes.byref(new))
    facts["C_CopyObject(private key, CKA_TOKEN=false)"] = rvname(rv2)
    if rv2 == 0:
        destroy(new.value)
    # CKA_ALWAYS_AUTHENTICATE: can the module make such a key at all?
    destroy(hp); destroy(hv)
else:
    facts["C_CopyObject(private key, CKA_TOKEN=false)"] = f"no key to copy: C_GenerateKeyPair {rvname(rv)}"
rv, hp, hv = genpair("rsa", [A("VERIFY", True)], [A("SIGN", True), A("ALWAYS_AUTHENTICATE", True)], "aa-probe")
facts["C_GenerateKeyPair with CKA_ALWAYS_AUTHENTICATE=true"] = rvname(rv)
if rv == 0:
    v = ctypes.c_ubyte(0)
    at = (ATTR * 1)(ATTR(CKA["ALWAYS_AUTHENTICATE"], ctypes.cast(ctypes.byref(v), ctypes.c_void_p), 1))
    rvg = call("GetAttributeValue", s, CK_ULONG(hv), at, CK_ULONG(1))
    facts["CKA_ALWAYS_AUTHENTICATE read back"] = f"{rvname(rvg)} value={v.value}"
    destroy(hp); destroy(hv)

# Object caching: does an open, logged-in session see what another process
# made or destroyed after it started?
if args.get("config"):
    lbl = b"c1._domainkey.cache.example"
    before = find(s, [A("CLASS", 3), A("LABEL", lbl)])
    p = subprocess.run([args["ctl"], "--config", args["config"], "keygen", "--domain", "cache.example",
                        "--selector", "c1", "--algorithm", "rsa", "--bits", "2048"], capture_output=True, text=True)
    made = p.returncode == 0
    after_same = find(s, [A("CLASS", 3), A("LABEL", lbl)])
    s2 = CK_ULONG(0)
    call("OpenSession", slot, 6, None, None, ctypes.byref(s2))
    after_new = find(s2, [A("CLASS", 3), A("LABEL", lbl)])
    facts["cache: key made by another process"] = {
        "made": made if made else p.stderr.strip()[-200:], "found before": len(before[1]),
        "found after, same session": len(after_same[1]), "found after, new session": len(after_new[1])}
    if made:
        # the handle we hold, then destroyed by the other process
        handle = (after_same[1] or after_new[1] or [None])[0]
        p = subprocess.run([args["ctl"], "--config", args["config"], "destroy", "--domain", "cache.example",
                            "--selector", "c1", "--yes"], capture_output=True, text=True)
        gone = find(s, [A("CLASS", 3), A("LABEL", lbl)])
        d = {"destroyed": p.returncode == 0 or p.stderr.strip()[-200:], "found after destroy, same session": len(gone[1])}
        if handle:
            b = ctypes.create_string_buffer(256)
            at = (ATTR * 1)(ATTR(CKA["LABEL"], ctypes.cast(b, ctypes.c_void_p), 256))
            d["C_GetAttributeValue(old handle)"] = rvname(call("GetAttributeValue", s, CK_ULONG(handle), at, CK_ULONG(1)))
            m = MECH(1, None, 0)
            d["C_SignInit(old handle)"] = rvname(call("SignInit", s, ctypes.byref(m), CK_ULONG(handle)))
        facts["cache: key destroyed by another process"] = d
# Sessions: how many can be open at once.
opened = []
last = "CKR_OK"
for i in range(300):
    h = CK_ULONG(0)
    rv = call("OpenSession", slot, 4, None, None, ctypes.byref(h))
    if rv:
        last = rvname(rv)
        break
    opened.append(h.value)
facts["sessions opened (of 300 tried)"] = f"{len(opened)}" + ("" if last == "CKR_OK" else f", then {last}")
for h in opened:
    call("CloseSession", CK_ULONG(h))
call("Finalize", None)
print(json.dumps(facts))
'''


def facts(tok, config, templates=True):
    args = {"module": tok.module, "label": tok.label, "pin": tok.user_pin, "templates": templates,
            "config": config, "ctl": binary("dkimsignctl")}
    p = subprocess.run([sys.executable, "-c", FACTS_CHILD, json.dumps(args)], env=tok.env, capture_output=True,
                       text=True, timeout=600)
    try:
        return json.loads(p.stdout.strip().splitlines()[-1])
    except (IndexError, ValueError):
        return {"error": f"exit {p.returncode}: {p.stderr[-800:]}"}


# --- the flows ------------------------------------------------------------------------

def make_token(cls, pin_len=8):
    tok = cls()
    if pin_len != 8:
        tok.set_user_pin(secrets.token_hex(pin_len)[:pin_len])
    tok.start()
    return tok


def flows_init_token(cls):
    name = cls.name
    for pin_len in (8, 16):
        tok = make_token(cls, pin_len)
        box = Box(tok)
        try:
            ok, _ = box.ctl_probe(f"init-token (user PIN {pin_len} chars)", "init-token", "--so-pin-file",
                                  tok.so_pin_file, first_spy=True)
            rc, out, err, _ = box.ctl("list")
            record(name, f"  then list (login with the {pin_len}-char PIN)", "ok" if rc == 0 else "FAIL",
                   last_line(out) if rc == 0 else f"exit {rc}: {last_line(err)}")
            if not ok:
                tok.set_user_pin("12345678")
                box.ctl_probe("  then init-token again (8-char PIN)", "init-token", "--so-pin-file",
                              tok.so_pin_file, repeatable=False)
                rc, out, err, _ = box.ctl("list")
                record(name, "  then list", "ok" if rc == 0 else "FAIL",
                       last_line(out) if rc == 0 else f"exit {rc}: {last_line(err)}")
            p = subprocess.run(["pkcs11-tool", "--module", tok.module, "-L"], env=tok.env, capture_output=True,
                               text=True)
            slots = re.findall(r"Slot \d+ \((0x[0-9a-f]+)\): ?(.*)", p.stdout)
            record(name, "  slots after init-token (pkcs11-tool -L)", "info", str(slots))
        finally:
            box.close()
            tok.close()


def flows_main(cls):
    name = cls.name
    tok = make_token(cls)
    record(name, "fixture setup (services up, free slot)", "info", f"{tok.setup_seconds:.2f}s")
    box = Box(tok)
    try:
        ok, _ = box.ctl_probe("init-token for the main flows", "init-token", "--so-pin-file", tok.so_pin_file,
                              first_spy=True)
        if not ok:
            tok.close()
            tok = make_token(cls)
            tok.init_token()
            box = Box(tok)
            record(name, "  (token initialized with the vendor's tool instead)", "info", "")
        rsa_ok = box.keygen("keygen rsa 2048", "rsa.example", "r2048", "rsa", 2048)
        box.keygen("keygen rsa 3072", "rsa3072.example", "r3072", "rsa", 3072)
        box.keygen("keygen rsa 4096", "rsa4096.example", "r4096", "rsa", 4096)
        box.keygen("keygen rsa 1024", "rsa1024.example", "r1024", "rsa", 1024)
        ed_ok = box.keygen("keygen ed25519", "ed.example", "e1", "ed25519")
        box.keygen("keygen rsa 2048 (dual.example)", "dual.example", "dr", "rsa", 2048)
        box.keygen("keygen ed25519 (dual.example)", "dual.example", "de", "ed25519")
        if not rsa_ok:
            # What the issue says works: a key made by the vendor's generic tool.
            label = "v1._domainkey.vendor.example"
            p = subprocess.run(["pkcs11-tool", "--module", tok.module, "--token-label", tok.label, "--login",
                                "--pin", tok.user_pin, "--keypairgen", "--key-type", "rsa:2048", "--label", label,
                                "--id", "0102", "--usage-sign", "--private"], env=tok.env, capture_output=True,
                               text=True)
            record(name, "pkcs11-tool --keypairgen rsa:2048 (vendor-made key)", "ok" if p.returncode == 0 else "FAIL",
                   last_line(p.stdout + p.stderr)[:200])
            box.dns("vendor.example", "v1", flow="dns-record of the vendor-made key")
        ok, out = box.ctl_probe("list --json", "list", "--json")
        if ok:
            try:
                keys = json.loads(out)
                keys = keys.get("keys", keys) if isinstance(keys, dict) else keys
                summary = [{k: v for k, v in key.items() if k not in ("fingerprint",)} for key in keys[:2]]
                record(name, "  list --json fields", "info", json.dumps(summary)[:900])
            except ValueError as e:
                record(name, "  list --json parse", "FAIL", str(e))
        rc, out, err, _ = box.ctl("list")
        record(name, "  list (text)", "info", " / ".join(out.strip().splitlines())[:700])
        for dom, sel in (("rsa.example", "r2048"), ("ed.example", "e1")):
            box.dns(dom, sel)

        # The daemon, one signer process.
        daemon_flows(box, name, "processes=1", rsa_dom="rsa.example", ed_dom="ed.example",
                     new=("new1.example", "n1"), retire=("rsa.example", "r2048"), destroy=("ed.example", "e1"))
        box.stop()

        # Two signer processes.
        box.processes = 2
        box.write()
        daemon_flows(box, name, "processes=2", rsa_dom="rsa3072.example", ed_dom="dual.example",
                     new=("new2.example", "n2"), retire=("rsa3072.example", "r3072"), destroy=("dual.example", "de"))
        box.stop()

        # Import.
        imports(box, name)

        # CKA_ALWAYS_AUTHENTICATE.
        always_auth(box, name)

        # Facts (ctypes): mechanisms, PINs, sessions, copy, caching, templates.
        f = facts(tok, box.config)
        for k, v in f.items():
            if k == "templates":
                for alg, r in v.items():
                    for variant, rv in r.items():
                        record(name, f"template {alg}: {variant}", "ok" if rv == "CKR_OK" else "REFUSED", rv)
            else:
                record(name, f"fact {k}", "info", json.dumps(v))
    finally:
        box.close()
        tok.close()
        record(name, "fixture teardown", "info", f"{tok.teardown_seconds:.2f}s")


def daemon_flows(box, name, tag, rsa_dom, ed_dom, new, retire, destroy):
    ok, why = box.start()
    record(name, f"[{tag}] dkimsignd start", "ok" if ok else "FAIL", why or log_errors(box, 2))
    if not ok:
        record(name, f"[{tag}] dkimsignd log", "info", log_errors(box))
        return
    time.sleep(0.5)
    box.sign_probe(f"[{tag}] sign RSA ({rsa_dom})", rsa_dom)
    box.sign_probe(f"[{tag}] sign Ed25519 ({ed_dom})", ed_dom)
    box.sign_probe(f"[{tag}] sign dual (dual.example)", "dual.example")
    # keygen while the daemon runs, then reload
    box.keygen(f"[{tag}] keygen {new[1]}._domainkey.{new[0]} while running", new[0], new[1], "rsa", 2048)
    box.sign_probe(f"[{tag}]   sign {new[0]} before reload", new[0], "no key yet")
    box.reload(f"[{tag}]   dkimsignctl reload")
    for i in range(3):
        box.sign_probe(f"[{tag}]   sign {new[0]} after reload (try {i + 1})", new[0], "signed s=" + new[1])
    # retire, reload
    box.ctl_probe(f"[{tag}] retire {retire[1]}._domainkey.{retire[0]}", "retire", "--domain", retire[0],
                  "--selector", retire[1], repeatable=False)
    box.reload(f"[{tag}]   dkimsignctl reload")
    for i in range(2):
        box.sign_probe(f"[{tag}]   sign {retire[0]} after retire+reload (try {i + 1})", retire[0],
                       f"not signed with s={retire[1]}")
    # destroy, reload
    box.ctl_probe(f"[{tag}] destroy {destroy[1]}._domainkey.{destroy[0]}", "destroy", "--domain", destroy[0],
                  "--selector", destroy[1], "--yes", repeatable=False)
    box.reload(f"[{tag}]   dkimsignctl reload")
    for i in range(2):
        box.sign_probe(f"[{tag}]   sign {destroy[0]} after destroy+reload (try {i + 1})", destroy[0],
                       f"not signed with s={destroy[1]}")
    rc, out, err, _ = box.ctl("status")
    record(name, f"[{tag}] dkimsignctl status", "info", " ".join(out.split())[:300] if rc == 0 else last_line(err))
    record(name, f"[{tag}] daemon log (errors)", "info", log_errors(box))


def imports(box, name):
    for alg, dom, sel, gen in (("rsa", "imp-rsa.example", "ir", ["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"]),
                               ("ed25519", "imp-ed.example", "ie", ["-algorithm", "ED25519"])):
        pem = os.path.join(box.dir, f"{sel}.pem")
        subprocess.run(["openssl", "genpkey", *gen, "-out", pem], check=True, capture_output=True)
        ok, _ = box.ctl_probe(f"import PEM {alg}", "import", "--domain", dom, "--selector", sel, pem)
        if ok:
            box.dns(dom, sel, quiet=True)
    box.processes = 1
    box.write()
    ok, why = box.start()
    if ok:
        time.sleep(0.3)
        box.sign_probe("sign with imported RSA key", "imp-rsa.example")
        box.sign_probe("sign with imported Ed25519 key", "imp-ed.example")
    else:
        record(name, "dkimsignd start for imports", "FAIL", why + " " + log_errors(box))
    box.stop()


def always_auth(box, name):
    """A key pair made (ctypes, not dkimsign) with CKA_ALWAYS_AUTHENTICATE on
    the private key, labelled as a DKIM key: listed? signed with?"""
    tok = box.tok
    child = FACTS_CHILD.split("# Which attributes")[0] + r'''
rv, hp, hv = genpair("rsa", [A("VERIFY", True), A("ID", b"aa01")], [A("SIGN", True), A("ID", b"aa01"), A("ALWAYS_AUTHENTICATE", True)],
                     "aa._domainkey.aa.example")
print(json.dumps({"rv": rvname(rv)}))
call("Finalize", None)
'''
    args = {"module": tok.module, "label": tok.label, "pin": tok.user_pin}
    p = subprocess.run([sys.executable, "-c", child, json.dumps(args)], env=tok.env, capture_output=True, text=True,
                       timeout=120)
    made = last_line(p.stdout)
    record(name, "make a key with CKA_ALWAYS_AUTHENTICATE=true (ctypes C_GenerateKeyPair)",
           "ok" if '"CKR_OK"' in made else "FAIL", made or last_line(p.stderr))
    if '"CKR_OK"' not in made:
        return
    box.dns("aa.example", "aa", flow="  dns-record of the always-authenticate key")
    rc, out, err, _ = box.ctl("list")
    line = [x for x in out.splitlines() if "aa.example" in x]
    record(name, "  list shows it", "info", (line[0] if line else f"not listed; exit {rc} {last_line(err)}")[:300])
    ok, why = box.start()
    if not ok:
        record(name, "  dkimsignd start", "FAIL", why + " " + log_errors(box))
        return
    time.sleep(0.3)
    box.sign_probe("  sign with the always-authenticate key", "aa.example")
    box.sign_probe("  sign with it again", "aa.example")
    record(name, "  daemon log", "info", log_errors(box, 3))
    box.stop()


def flows_drop_user(cls):
    name = cls.name
    if os.geteuid() != 0:
        record(name, "daemon as root with [daemon] user = nobody", "SKIP", "not root")
        return
    tok = make_token(cls)
    tok.init_token()
    for procs, granted in ((1, False), (2, False), (1, True), (2, True)):
        if granted:
            tok.grant("nobody")
        box = Box(tok, processes=procs, daemon_user="nobody")
        os.makedirs(os.path.join(box.dir, "state"))
        os.chown(os.path.join(box.dir, "state"), 65534, 65534)
        try:
            if not box.dns("drop.example", "d1", quiet=True):
                box.keygen("  keygen for the user=nobody flows", "drop.example", "d1", "rsa", 2048)
            ok, why = box.start(timeout=20)
            if ok:
                time.sleep(1)
                outcome, detail = box.sign("drop.example")
                record(name, f"[user=nobody, processes={procs}{', store granted' if granted else ''}] start and sign", outcome,
                       detail + " | log: " + log_errors(box, 3))
            else:
                record(name, f"[user=nobody, processes={procs}{', store granted' if granted else ''}] start", "FAIL", why + " | log: " + log_errors(box, 4))
        finally:
            box.close()
    tok.close()


def print_table():
    print("\n" + "=" * 100)
    mods = []
    for m, *_ in RESULTS:
        if m not in mods:
            mods.append(m)
    for m in mods:
        print(f"\n## {m}\n")
        print("| flow | outcome | detail |\n|---|---|---|")
        for mm, flow, outcome, detail in RESULTS:
            if mm == m:
                print(f"| {flow} | {outcome} | {detail.replace('|', '/')} |")


def main():
    global OUT
    ap = argparse.ArgumentParser()
    ap.add_argument("--module", action="append", choices=list(tokens.MODULES))
    ap.add_argument("--out", help="keep the sandboxes' logs (spy logs, daemon logs) under this directory")
    ap.add_argument("--json", help="write the outcomes to this file")
    a = ap.parse_args()
    if a.out:
        os.makedirs(a.out, exist_ok=True)
        OUT = a.out
    for m in a.module or list(tokens.MODULES):
        cls = tokens.MODULES[m]
        t0 = time.monotonic()
        for fn in (flows_init_token, flows_main, flows_drop_user):
            try:
                fn(cls)
            except Exception as e:  # noqa: BLE001 - a probe records and goes on
                record(m, fn.__name__, "PROBE ERROR", f"{e!r}")
                traceback.print_exc()
        record(m, "probe time", "info", f"{time.monotonic() - t0:.1f}s")
    print_table()
    if a.json:
        with open(a.json, "w") as f:
            json.dump(RESULTS, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
