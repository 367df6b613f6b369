# SPDX-License-Identifier: MIT
"""Test harness: a real SoftHSM token, the real dkimsignd on a real socket,
the real dkimsign and dkimsignctl, and python3-dkim as the verifier.

Every Sandbox lives in a temporary directory of its own and cleans up after
itself (the daemon is stopped, the directory removed), so tests can run in
parallel.  Binaries come from DKIMSIGN_BUILD_DIR (meson passes it).

A test that runs a program as another user (setpriv, or the daemon's
[daemon] user) can't count on reaching the checkout: it may be below
/root or a `mktemp -d` directory, which only root enters.  It runs
Sandbox.reachable_binary() copies, with Sandbox.as_user() in front.
"""
import os
import pwd
import re
import secrets
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import time

BUILD = os.environ.get("DKIMSIGN_BUILD_DIR", os.path.join(os.path.dirname(__file__), "..", "..", "build"))
SOFTHSM = os.environ.get("SOFTHSM_MODULE", "/usr/lib/softhsm/libsofthsm2.so")
CORPUS = os.environ.get("DKIMSIGN_CORPUS",
                        os.path.join(os.path.dirname(__file__), "..", "data", "corpus"))
# Extra command prefix for the daemon, e.g. "valgrind --leak-check=full".
DAEMON_WRAPPER = os.environ.get("DKIMSIGN_DAEMON_WRAPPER", "").split()
def binary(name):
    for sub in ("daemon", "client", "ctl", "exporter"):
        path = os.path.join(BUILD, sub, name)
        if os.path.exists(path):
            return path
    raise FileNotFoundError(f"{name} not built under {BUILD}")


def build_libraries(path):
    """The shared libraries program `path` loads from the build tree (as
    the loader finds them now, by RUNPATH or LD_LIBRARY_PATH)."""
    out = subprocess.run(["ldd", path], capture_output=True, text=True, check=True).stdout
    build = os.path.realpath(BUILD) + os.sep
    libs = []
    for line in out.splitlines():
        m = re.match(r"\s*\S+ => (/\S+)", line)
        if m and os.path.realpath(m.group(1)).startswith(build):
            libs.append(m.group(1))
    return libs


def user_ids(user):
    """(uid, gid) of a user name."""
    pw = pwd.getpwnam(user)
    return pw.pw_uid, pw.pw_gid


class Sandbox:
    """A token, a configuration and (once started) a daemon, in a temp dir."""

    def __init__(self, label="dkimsign-test", extra_config=""):
        self.dir = tempfile.mkdtemp(prefix="dkimsign-test-")
        self.label = label
        self.socket = os.path.join(self.dir, "dkimsignd.sock")
        self.config = os.path.join(self.dir, "dkimsignd.conf")
        self.pin_file = os.path.join(self.dir, "pin")
        self.so_pin_file = os.path.join(self.dir, "so-pin")
        self.log_path = os.path.join(self.dir, "dkimsignd.log")
        self.daemon = None
        self.keytable = {}
        os.makedirs(os.path.join(self.dir, "tokens"))
        with open(os.path.join(self.dir, "softhsm2.conf"), "w") as f:
            f.write(f"directories.tokendir = {self.dir}/tokens\n"
                    "objectstore.backend = file\nlog.level = ERROR\n")
        for path in (self.pin_file, self.so_pin_file):
            with open(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600), "w") as f:
                f.write(secrets.token_hex(8) + "\n")
        self.write_config(extra_config)
        self.env = dict(os.environ, SOFTHSM2_CONF=os.path.join(self.dir, "softhsm2.conf"))

    def write_config(self, extra="", token=None):
        """The sandbox's configuration; token: the [token] lines that name
        the module and the token (default: module and label)."""
        token = token or f"module = {SOFTHSM}\nlabel = {self.label}\n"
        with open(self.config, "w") as f:
            f.write(f"[daemon]\nsocket = {self.socket}\nsocket_mode = 0600\nstate_dir = {self.dir}/state\n\n"
                    f"[token]\n{token}pin_file = {self.pin_file}\n"
                    "sessions = 2\n\n"
                    # No DNS in a sandbox: keys sign before their record is
                    # seen (test-lifecycle.py writes its own configuration).
                    "[signing]\nunpublished = sign\n\n" + extra)
        # dkimsignd refuses a configuration others may write, whatever the
        # caller's umask.
        os.chmod(self.config, 0o644)

    # --- what another user runs --------------------------------------------

    def open_to_others(self):
        """Let every user enter the sandbox directory (not list it): for a
        socket, token files or copies another user must reach.  Its parents
        must let them through too."""
        os.chmod(self.dir, 0o711)
        parent = os.path.dirname(self.dir)
        while True:
            if not os.stat(parent).st_mode & stat.S_IXOTH:
                raise AssertionError(f"{parent} is closed to other users, so {self.dir} is too: "
                                     "set TMPDIR to a directory they can enter")
            if parent == os.path.dirname(parent):
                break
            parent = os.path.dirname(parent)

    def open_socket_to_others(self):
        """Let every user reach the socket (open_to_others) and open it
        (socket_mode 0666 in the configuration as written now)."""
        self.open_to_others()
        with open(self.config) as f:
            text = f.read().replace("socket_mode = 0600", "socket_mode = 0666")
        with open(self.config, "w") as f:
            f.write(text)

    def reachable(self, path, rel=None):
        """A copy of file `path` that every user can read (and run, if it
        is a program), at `rel` (default: its name) below a directory of
        the sandbox that every user can enter; returns the copy's path."""
        shared = os.path.join(self.dir, "shared")
        if not os.path.isdir(shared):
            self.open_to_others()
            os.mkdir(shared)
            os.chmod(shared, 0o755)
        rel = rel or os.path.basename(path)
        dst = shared
        for part in os.path.dirname(rel).split(os.sep):
            dst = os.path.join(dst, part)
            if part and not os.path.isdir(dst):
                os.mkdir(dst)
                os.chmod(dst, 0o755)
        dst = os.path.join(dst, os.path.basename(rel))
        if not os.path.exists(dst):
            shutil.copyfile(path, dst)
            os.chmod(dst, 0o755 if os.access(path, os.X_OK) else 0o644)
        return dst

    def reachable_binary(self, name):
        """binary(name) for another user: copied below the sandbox with the
        shared libraries it loads from the build tree (libdkimsign.so.0),
        each at its place relative to the build directory, so meson's
        $ORIGIN-relative RUNPATH finds them there as it does in the build
        tree.  Returns the copy's path."""
        path = binary(name)
        for lib in build_libraries(path):
            self.reachable(lib, os.path.relpath(lib, BUILD))
        return self.reachable(path, os.path.relpath(path, BUILD))

    def as_user(self, user="nobody"):
        """The command prefix that runs a program as `user` (its uid and
        group, no other groups), with what the sanitizers read from the
        checkout (LSAN_OPTIONS' suppressions file) copied where it can
        read it."""
        uid, gid = user_ids(user)
        prefix = ["setpriv", f"--reuid={uid}", f"--regid={gid}", "--clear-groups", "--"]
        lsan = os.environ.get("LSAN_OPTIONS", "")
        m = re.search(r"(?:^|:)suppressions=([^:]+)", lsan)
        if m:
            copy = self.reachable(m.group(1), "lsan.supp")
            prefix += ["env", "LSAN_OPTIONS=" + lsan.replace(m.group(1), copy)]
        return prefix

    # --- dkimsignctl -------------------------------------------------------

    def ctl(self, *args, check=True):
        p = subprocess.run([binary("dkimsignctl"), "--config", self.config, *args],
                           env=self.env, capture_output=True, text=True, timeout=120)
        if check and p.returncode != 0:
            raise AssertionError(f"dkimsignctl {' '.join(args)} failed ({p.returncode}): {p.stderr}")
        return p

    def init_token(self):
        return self.ctl("init-token", "--so-pin-file", self.so_pin_file)

    def tokens(self):
        """(label, serial) of each initialized token of the sandbox's
        SoftHSM, in the order the module lists their slots."""
        out = subprocess.run(["softhsm2-util", "--show-slots"], env=self.env, capture_output=True, text=True,
                             check=True, timeout=60).stdout
        found = []
        for block in out.split("\nSlot ")[1:]:
            m = re.search(r"Serial number:[ \t]*(\S*).*?Initialized:[ \t]*(\w+).*?Label:[ \t]*([^\n]*)", block, re.S)
            if m and m.group(2) == "yes":
                found.append((m.group(3).rstrip(), m.group(1)))
        return found

    def keygen(self, domain, selector, algorithm="rsa", bits=None):
        args = ["keygen", "--domain", domain, "--selector", selector, "--algorithm", algorithm]
        if bits:
            args += ["--bits", str(bits)]
        out = self.ctl(*args).stdout
        # The key's DNS name as dkimsignctl made it: an internationalized
        # domain's is in A-label form.
        m = re.search(r" key (\S+) on token", out)
        name = m.group(1) if m else f"{selector}._domainkey.{domain}".lower()
        self.keytable[name] = self.dns_record(domain, selector)

    def dns_record(self, domain, selector):
        out = self.ctl("dns-record", "--domain", domain, "--selector", selector).stdout
        for line in out.splitlines():
            if line.startswith("; v=DKIM1"):
                return line[2:]
        raise AssertionError(f"no record text in: {out}")

    # --- dkimsignd ---------------------------------------------------------

    def start(self, timeout=20):
        log = open(self.log_path, "ab")
        self.daemon = subprocess.Popen(DAEMON_WRAPPER + [binary("dkimsignd"), "--config", self.config],
                                       env=self.env, stdout=log, stderr=log)
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.daemon.poll() is not None:
                raise AssertionError(f"dkimsignd exited with {self.daemon.returncode}:\n{self.log()}")
            try:
                with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
                    s.connect(self.socket)
                return
            except OSError:
                time.sleep(0.05)
        raise AssertionError(f"dkimsignd did not listen within {timeout}s:\n{self.log()}")

    def socket_activate(self, notify=None):
        """dkimsignd under systemd-socket-activate, which listens on
        self.socket and starts the daemon at the first connection (with
        NOTIFY_SOCKET=notify.path when given).  Returns the Popen once the
        socket exists; the caller stops it."""
        log = open(self.log_path, "ab")
        args = ["systemd-socket-activate", "-l", self.socket, "-E", f"SOFTHSM2_CONF={self.env['SOFTHSM2_CONF']}"]
        if notify:
            args += ["-E", f"NOTIFY_SOCKET={notify.path}"]
        proc = subprocess.Popen(args + [binary("dkimsignd"), "--config", self.config], stdout=log, stderr=log)
        log.close()
        deadline = time.monotonic() + 10
        while not os.path.exists(self.socket) and time.monotonic() < deadline:
            time.sleep(0.05)
        return proc

    def stop(self, sig=signal.SIGTERM, timeout=30):
        if not self.daemon:
            return None
        if self.daemon.poll() is None:
            self.daemon.send_signal(sig)
            try:
                self.daemon.wait(timeout)
            except subprocess.TimeoutExpired:
                self.daemon.kill()
                self.daemon.wait()
                raise AssertionError(f"dkimsignd did not stop within {timeout}s:\n{self.log()}")
        code, self.daemon = self.daemon.returncode, None
        return code

    def log(self):
        try:
            with open(self.log_path, errors="replace") as f:
                return f.read()
        except FileNotFoundError:
            return ""

    # --- dkimsign ----------------------------------------------------------

    def sign(self, message, *args):
        """Run dkimsign; returns the CompletedProcess (stdout bytes)."""
        return subprocess.run([binary("dkimsign"), "--socket", self.socket, *args],
                              input=message, capture_output=True, timeout=60)

    def close(self):
        try:
            self.stop()
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def to_crlf(message):
    """LF line ends become CRLF, as an MTA does before SMTP."""
    return message.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


def dkimpy_verify(message, keytable, index=0):
    """python3-dkim's verdict on signature `index`, DNS answered from keytable."""
    import dkim

    def dnsfunc(name, timeout=5):
        name = name.decode() if isinstance(name, bytes) else name
        txt = keytable.get(name.rstrip(".").lower())
        return txt.encode() if txt else None

    d = dkim.DKIM(to_crlf(message), minkey=1024)
    return d.verify(idx=index, dnsfunc=dnsfunc)


def signature_fields(message):
    """The DKIM-Signature fields at the top of a signed message, unfolded."""
    head = to_crlf(message).split(b"\r\n\r\n", 1)[0]
    fields, cur = [], None
    for line in head.split(b"\r\n"):
        if line[:1] in (b" ", b"\t") and cur is not None:
            cur += line
            continue
        if cur is not None:
            fields.append(cur)
        cur = line
    if cur is not None:
        fields.append(cur)
    return [f for f in fields if f.lower().startswith(b"dkim-signature:")]


def tags(field):
    """Tag dict of a DKIM-Signature field (whitespace removed)."""
    value = field.split(b":", 1)[1]
    out = {}
    for part in value.split(b";"):
        part = b"".join(part.split())
        if b"=" in part:
            k, v = part.split(b"=", 1)
            out[k.decode()] = v.decode()
    return out


def corpus_sign_inputs():
    """The corpus's signing inputs (index.tsv): (file, expected, tolerate),
    expected being sign, refuse or either, tolerate a list of verifiers that
    cannot handle the message at all."""
    rows = []
    with open(os.path.join(CORPUS, "index.tsv"), encoding="utf-8") as f:
        next(f)
        for line in f:
            cols = line.rstrip("\n").split("\t")
            if len(cols) >= 4 and cols[1] == "sign-input":
                rows.append((cols[0], cols[2], [t for t in cols[3].split(",") if t and t != "-"]))
    return rows


def read_corpus(name):
    with open(os.path.join(CORPUS, name), "rb") as f:
        return f.read()


def from_domain(message):
    """The domain of the From address, lowercased (None without one): what
    the daemon signs for by default."""
    import re
    head = to_crlf(message).split(b"\r\n\r\n", 1)[0]
    m = re.search(rb"(?mi)^from\s*:(.*(?:\r\n[ \t].*)*)", head)
    found = re.findall(rb"@([A-Za-z0-9.\-]+)", m.group(1)) if m else []
    return found[-1].decode().lower() if found else None


def keygen_corpus_domains(box, rows, keys):
    """Keys on box's token for every From domain of the corpus rows, one per
    (selector, algorithm) in keys; returns the domains."""
    domains = sorted({d for f, _, _ in rows if (d := from_domain(read_corpus(f)))})
    for d in domains:
        for selector, algorithm in keys:
            box.keygen(d, selector, algorithm)
    return domains


class Notify:
    """A NOTIFY_SOCKET: records what the daemon tells systemd, with each
    message's sender pid (SCM_CREDENTIALS)."""

    def __init__(self, path):
        self.path = path
        self.s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.s.bind(path)
        self.s.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        self.s.settimeout(0.2)
        self.messages = []   # (pid, text)

    def wait_for(self, needle, timeout=30):
        """Wait for a message containing needle; returns its sender's pid."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for pid, text in self.messages:
                if needle in text:
                    return pid
            try:
                data, anc, _, _ = self.s.recvmsg(4096, socket.CMSG_SPACE(12))
            except (socket.timeout, TimeoutError):
                continue
            pid = None
            for level, kind, value in anc:
                if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS:
                    pid = int.from_bytes(value[0:4], sys.byteorder)
            self.messages.append((pid, data.decode()))
        raise AssertionError(f"no {needle!r} on NOTIFY_SOCKET; got {self.messages}")


# Three independent DKIM verifiers, each a program of its own (tests/tools):
# `PROGRAM --keytable FILE MSGFILE...` prints `MSGFILE<TAB>v1,v2,...`, a
# verdict per DKIM-Signature from the top: pass, fail, or skip (Debian 12's
# Mail::DKIM has no Ed25519).  All three, always: opendkim-verify is built
# when libopendkim-dev (TEST_PACKAGES) is there, and a test that quietly
# ran two would claim more than it checked.
TOOLS = os.path.join(os.path.dirname(__file__), "..", "tools")
VERIFIERS = {
    "dkimpy": ["/usr/bin/python3", os.path.join(TOOLS, "dkimpy-verify.py")],
    "mail-dkim": ["/usr/bin/perl", os.path.join(TOOLS, "maildkim-verify.pl")],
    "opendkim": [os.path.join(BUILD, "tests", "tools", "opendkim-verify")],
}


def write_keytable(box, records=None):
    """records (box's key records by default), {name: TXT}, as a verifier
    key table file in box's directory; returns its path."""
    path = os.path.join(box.dir, "keytable.txt")
    with open(path, "w") as f:
        for name, txt in (box.keytable if records is None else records).items():
            f.write(f"{name} {txt}\n")
    return path


def verify_files(files, keytable, verifiers=None):
    """The verdicts of each verifier (every one of VERIFIERS unless named)
    on the message files, DNS answered from the keytable file:
    {verifier: {file: [verdict per signature]}}."""
    out = {}
    for name in verifiers or VERIFIERS:
        cmd = VERIFIERS[name]
        assert os.path.exists(cmd[-1]), f"{name} verifier {cmd[-1]} is missing (libopendkim-dev not installed?)"
        p = subprocess.run(cmd + ["--keytable", keytable] + files, capture_output=True, text=True, timeout=600)
        assert p.returncode == 0, f"{name} verifier failed ({p.returncode}): {p.stderr}"
        out[name] = {}
        for line in p.stdout.splitlines():
            path, _, verdicts = line.partition("\t")
            out[name][path] = verdicts.split(",")
    return out
def stop_process(proc, sig=signal.SIGTERM, timeout=10):
    """Stop a Popen the test started: sig, then SIGKILL after timeout
    seconds; nothing when it already exited."""
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def close_all(*steps):
    """Run each cleanup step (a callable; None is skipped) in order, every
    one even when one before raised (a daemon stopped whatever the MTA's
    stop raised); then raise the first error, if any."""
    first = None
    for step in steps:
        if step is None:
            continue
        try:
            step()
        except BaseException as e:  # noqa: BLE001 - re-raised below
            if first is None:
                first = e
    if first is not None:
        raise first


class Skip(Exception):
    """Raised by a test that cannot run here (the reason is its text)."""


def run(tests):
    """Run test functions; print a summary; exit 1 on any failure, else 77
    (meson's "skipped") when any test was skipped: a skip is never
    reported as a pass, even beside tests that passed."""
    failed = skipped = 0
    for t in tests:
        start = time.monotonic()
        try:
            t()
            print(f"ok   {t.__name__} ({time.monotonic() - start:.1f}s)")
        except Skip as e:
            skipped += 1
            print(f"SKIP {t.__name__}: {e}")
        except Exception as e:  # noqa: BLE001 - report every failure the same way
            failed += 1
            print(f"FAIL {t.__name__}: {e}")
            import traceback
            traceback.print_exc()
    print(f"{len(tests) - failed - skipped} passed, {failed} failed, {skipped} skipped")
    sys.exit(1 if failed else 77 if skipped else 0)
