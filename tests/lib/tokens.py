# SPDX-License-Identifier: MIT
"""PKCS#11 tokens for tests: one class per module, the same interface.

    with SoftHSMToken() as t:          # or OpenCryptokiToken(), Tpm2Token()
        t.start()                      # services up, a free slot for C_InitToken
        t.init_token()                 # optional: the vendor's tool initializes it
        config_text = t.config_lines() # the [token] lines for dkimsignd.conf
        subprocess.run(..., env=t.env)

Every token lives in a temporary directory of its own (t.dir): its data
store, its configuration, the SO PIN (t.so_pin_file) and the user PIN
(t.pin_file), and the sockets of the services it starts.  Services listen
on unix sockets in that directory only, are started with bounded,
polled waits, and are stopped by close() (also on an exception: use the
context manager), which then removes the directory.

 - SoftHSMToken: SoftHSM 2 (softhsm2), SOFTHSM2_CONF naming a token
   directory of its own.
 - OpenCryptokiToken: opencryptoki's software token (opencryptoki), with its
   slot daemon pkcsslotd.  opencryptoki 3.8.1 honours no variable for its
   paths (/etc/opencryptoki/opencryptoki.conf, /var/lib/opencryptoki,
   /run/pkcsslotd.socket, /run/lock/opencryptoki are built in), so the
   calling process moves into a private mount and IPC namespace (as root),
   with directories of the token's own bound over those paths; the
   processes it starts afterwards (pkcsslotd, dkimsignctl, dkimsignd)
   inherit it and see that token only.  close() returns the process to the
   namespaces it came from.  The host's opencryptoki is never touched.
 - Tpm2Token: tpm2-pkcs11 (libtpm2-pkcs11-1, libtpm2-pkcs11-tools for
   tpm2_ptool) on a software TPM (swtpm) on a unix socket, shared through
   tpm2-abrmd (libtss2-tcti-tabrmd0) on a private D-Bus bus of its own
   (dbus-daemon), so that several processes can use the TPM at once.
"""
import ctypes
import os
import secrets
import shutil
import signal
import subprocess
import tempfile
import time

LIBDIR = "/usr/lib/x86_64-linux-gnu"
SOFTHSM_MODULE = os.environ.get("SOFTHSM_MODULE", "/usr/lib/softhsm/libsofthsm2.so")
OPENCRYPTOKI_MODULE = f"{LIBDIR}/pkcs11/libopencryptoki.so"
TPM2_MODULE = f"{LIBDIR}/pkcs11/libtpm2_pkcs11.so"
SPY_MODULE = f"{LIBDIR}/pkcs11/pkcs11-spy.so"


def wait_for(what, check, timeout, proc=None, log=None):
    """Poll check() until it is true; fail after timeout seconds, or at
    once when proc has exited."""
    deadline = time.monotonic() + timeout
    delay = 0.01
    while True:
        if check():
            return
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{what}: the process exited with {proc.returncode}" + _tail(log))
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what}: not ready within {timeout}s" + _tail(log))
        time.sleep(delay)
        delay = min(delay * 2, 0.1)


def _tail(path, n=20):
    if not path:
        return ""
    try:
        with open(path, errors="replace") as f:
            return "\n" + "".join(f.readlines()[-n:])
    except OSError:
        return ""


def _write_secret(path, text):
    with open(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as f:
        f.write(text + "\n")


class Token:
    """What every module's token offers.  Subclasses set name, module,
    default PIN lengths, and implement _start, init_token and _stop."""

    name = "?"
    module = None
    slot_hint = None       # the slot a test may name, where the module fixes it
    so_pin_default = None  # an SO PIN C_InitToken must be given (opencryptoki), else random

    def __init__(self, label="dkimsign-test", user_pin=None, so_pin=None, base_dir=None):
        self.dir = tempfile.mkdtemp(prefix=f"dkimsign-{self.name}-", dir=base_dir)
        self.label = label
        self.user_pin = user_pin or secrets.token_hex(4)          # 8 characters
        self.so_pin = so_pin or self.so_pin_default or secrets.token_hex(4)
        self.pin_file = os.path.join(self.dir, "pin")
        self.so_pin_file = os.path.join(self.dir, "so-pin")
        _write_secret(self.pin_file, self.user_pin)
        _write_secret(self.so_pin_file, self.so_pin)
        self.module_env = {}      # NAME -> VALUE, for [token] module_env and self.env
        self.procs = []           # (name, Popen, log path): stopped by close(), last first
        self.setup_seconds = None
        self.teardown_seconds = None
        self.started = False

    # --- the interface -----------------------------------------------------

    def start(self):
        """Start what the module needs; leave a free slot for C_InitToken."""
        t0 = time.monotonic()
        try:
            self._start()
        except BaseException:
            self.close()
            raise
        self.started = True
        self.setup_seconds = time.monotonic() - t0
        return self

    def init_token(self):
        """Initialize the token with the vendor's tool: label, SO PIN, user PIN."""
        raise NotImplementedError

    def set_user_pin(self, pin):
        """Write another user PIN to pin_file (before init-token)."""
        self.user_pin = pin
        _write_secret(self.pin_file, pin)

    @property
    def env(self):
        """The environment a process that uses the token needs."""
        return dict(os.environ, **self.module_env)

    def config_lines(self, module=None, extra_env=None):
        """The [token] section's lines (without the header): module, label,
        pin_file, module_env.  module: another path (pkcs11-spy);
        extra_env: more module_env entries."""
        lines = [f"module = {module or self.module}", f"label = {self.label}", f"pin_file = {self.pin_file}"]
        env = dict(self.module_env, **(extra_env or {}))
        for i, (k, v) in enumerate(env.items()):
            lines.append(("module_env = " if i == 0 else "    ") + f"{k}={v}")
        return "\n".join(lines) + "\n"

    def spy_env(self, log_path):
        """module_env entries for OpenSC's pkcs11-spy in front of the module."""
        return {"PKCS11SPY": self.module, "PKCS11SPY_OUTPUT": log_path}

    def grant(self, user):
        """Let user (dkimsignd's [daemon] user) use the token as root can."""
        raise NotImplementedError

    def _chown_tree(self, top, user):
        import pwd
        pw = pwd.getpwnam(user)
        os.chmod(self.dir, 0o711)
        for d, dirs, files in os.walk(top):
            os.chown(d, pw.pw_uid, pw.pw_gid)
            for f in files:
                os.chown(os.path.join(d, f), pw.pw_uid, pw.pw_gid)

    def close(self):
        t0 = time.monotonic()
        errors = []
        try:
            self._stop()
        except Exception as e:  # noqa: BLE001 - the rest must still be stopped
            errors.append(e)
        for name, proc, _ in reversed(self.procs):
            try:
                self._terminate(proc)
            except Exception as e:  # noqa: BLE001
                errors.append(RuntimeError(f"{name}: {e}"))
        self.procs = []
        try:
            self._after_stop()
        except Exception as e:  # noqa: BLE001
            errors.append(e)
        shutil.rmtree(self.dir, ignore_errors=True)
        self.teardown_seconds = time.monotonic() - t0
        if errors:
            raise errors[0]

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # --- helpers for subclasses --------------------------------------------

    def _spawn(self, name, args, env=None, ready=None, timeout=20):
        log = os.path.join(self.dir, f"{name}.log")
        with open(log, "ab") as f:
            proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=f, stderr=f,
                                    env=env or self.env, start_new_session=True)
        self.procs.append((name, proc, log))
        if ready:
            wait_for(name, ready, timeout, proc, log)
        return proc

    @staticmethod
    def _terminate(proc, timeout=10):
        if proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout)

    @property
    def tool_env(self):
        """The environment of the vendor's tools (pkcsconf, tpm2_ptool, ...)."""
        return self.env

    def _run(self, args, input=None, timeout=60):
        p = subprocess.run(args, input=input, capture_output=True, text=True, env=self.tool_env, timeout=timeout)
        if p.returncode != 0:
            raise RuntimeError(f"{' '.join(args)}: exit {p.returncode}: {p.stdout}{p.stderr}")
        return p

    def _start(self):
        raise NotImplementedError

    def _stop(self):
        pass

    def _after_stop(self):
        pass


class SoftHSMToken(Token):
    """SoftHSM 2: a token directory of its own, named by SOFTHSM2_CONF."""

    name = "softhsm"
    module = SOFTHSM_MODULE

    def _start(self):
        tokens = os.path.join(self.dir, "tokens")
        os.makedirs(tokens)
        conf = os.path.join(self.dir, "softhsm2.conf")
        with open(conf, "w") as f:
            f.write(f"directories.tokendir = {tokens}\nobjectstore.backend = file\nlog.level = ERROR\n")
        self.module_env = {"SOFTHSM2_CONF": conf}

    def grant(self, user):
        self._chown_tree(os.path.join(self.dir, "tokens"), user)

    def init_token(self):
        self._run(["softhsm2-util", "--init-token", "--free", "--label", self.label,
                   "--so-pin", self.so_pin, "--pin", self.user_pin])


# --- opencryptoki ------------------------------------------------------------

CLONE_NEWNS = 0x00020000
CLONE_NEWIPC = 0x08000000
_libc = ctypes.CDLL(None, use_errno=True)


def _libc_call(fn, *args):
    if fn(*args) != 0:
        e = ctypes.get_errno()
        raise OSError(e, f"{fn.__name__}: {os.strerror(e)}")


class OpenCryptokiToken(Token):
    """opencryptoki 3.8.1's software token (slot 3), with pkcsslotd, in a
    private mount and IPC namespace of the calling process (root only).

    Paths bound over the built-in ones, in that namespace only:
      DIR/etc  -> /etc/opencryptoki       (opencryptoki.conf: slot 3, libpkcs11_sw.so)
      DIR/lib  -> /var/lib/opencryptoki   (swtok/: NVTOK.DAT, MK_SO, MK_USER, TOK_OBJ/)
      DIR/run  -> /run                    (pkcsslotd.socket, pkcsslotd.pid, lock/opencryptoki/)
    pkcsslotd keeps its slot table in SysV shared memory: private too
    (CLONE_NEWIPC).  The fresh token's SO PIN is opencryptoki's default,
    87654321, which C_InitToken checks (so_pin_file holds it); its PINs
    must be 4 to 8 characters.  A process that uses the token must be root
    or in the group pkcs11 (the socket and the store are 0770 root:pkcs11).
    """

    name = "opencryptoki"
    module = OPENCRYPTOKI_MODULE
    slot_hint = 3
    so_pin_default = "87654321"
    BINDS = (("etc", "/etc/opencryptoki"), ("lib", "/var/lib/opencryptoki"), ("run", "/run"))

    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        self._saved_ns = []
        self._saved_cwd = None
        self._mounted = []

    def _enter_namespace(self):
        if os.geteuid() != 0:
            raise RuntimeError("opencryptoki: a private pkcsslotd needs root (mount namespace)")
        # Come back here in close(): the namespaces this process is in now,
        # and its working directory (setns() to a mount namespace moves it
        # to that namespace's root).
        self._saved_cwd = os.getcwd()
        self._saved_ns = [(os.open(f"/proc/self/ns/{ns}", os.O_RDONLY | os.O_CLOEXEC), flag)
                          for ns, flag in (("mnt", CLONE_NEWNS), ("ipc", CLONE_NEWIPC))]
        _libc_call(_libc.unshare, CLONE_NEWNS | CLONE_NEWIPC)
        # Mounts made here must not reach the host.
        subprocess.run(["mount", "--make-rprivate", "/"], check=True)

    def _start(self):
        import grp
        gid = grp.getgrnam("pkcs11").gr_gid
        etc, lib, run = (os.path.join(self.dir, d) for d in ("etc", "lib", "run"))
        os.makedirs(os.path.join(lib, "swtok", "TOK_OBJ"))
        os.makedirs(os.path.join(run, "lock", "opencryptoki", "swtok"))
        os.makedirs(etc)
        with open(os.path.join(etc, "opencryptoki.conf"), "w") as f:
            f.write("version opencryptoki-3.1\nslot 3\n{\nstdll = libpkcs11_sw.so\n}\n")
        for top in (lib, os.path.join(run, "lock", "opencryptoki")):
            for d, _, _ in os.walk(top):
                os.chown(d, 0, gid)
                os.chmod(d, 0o770)
        os.chmod(run, 0o755)
        os.chmod(os.path.join(run, "lock"), 0o755)
        os.chmod(self.dir, 0o755)   # the pkcs11 group must reach the binds
        self._enter_namespace()
        for sub, target in self.BINDS:
            subprocess.run(["mount", "--bind", os.path.join(self.dir, sub), target], check=True)
            self._mounted.append(target)
        sock = "/run/pkcsslotd.socket"
        self._spawn("pkcsslotd", ["/usr/sbin/pkcsslotd", "-f"], ready=lambda: os.path.exists(sock))

    def grant(self, user):
        """user joins the group pkcs11, in this namespace only: a copy of
        /etc/group bound over it."""
        with open("/etc/group") as f:
            lines = f.read().splitlines()
        out = []
        for line in lines:
            parts = line.split(":")
            if parts[0] == "pkcs11" and user not in parts[3].split(","):
                parts[3] = ",".join([m for m in parts[3].split(",") if m] + [user])
            out.append(":".join(parts))
        path = os.path.join(self.dir, "group")
        with open(path, "w") as f:
            f.write("\n".join(out) + "\n")
        os.chmod(path, 0o644)
        subprocess.run(["mount", "--bind", path, "/etc/group"], check=True)
        self._mounted.append("/etc/group")

    def init_token(self):
        # pkcsconf asks for the label on its standard input.
        self._run(["pkcsconf", "-c", "3", "-I", "-S", self.so_pin], input=self.label + "\n")
        self._run(["pkcsconf", "-c", "3", "-u", "-S", self.so_pin, "-n", self.user_pin])

    def _after_stop(self):
        errors = []
        for target in reversed(self._mounted):
            p = subprocess.run(["umount", "-l", target], capture_output=True, text=True)
            if p.returncode != 0:
                errors.append(p.stderr.strip())
        self._mounted = []
        for fd, flag in self._saved_ns:
            try:
                _libc_call(_libc.setns, fd, flag)
            except OSError as e:
                errors.append(str(e))
            os.close(fd)
        self._saved_ns = []
        if self._saved_cwd:
            try:
                os.chdir(self._saved_cwd)
            except OSError as e:
                errors.append(f"back to {self._saved_cwd}: {e}")
            self._saved_cwd = None
        if errors:
            raise RuntimeError("opencryptoki teardown: " + "; ".join(errors))


# --- tpm2-pkcs11 -------------------------------------------------------------

class Tpm2Token(Token):
    """tpm2-pkcs11 on swtpm, shared by tpm2-abrmd on a private D-Bus bus.

      swtpm socket --tpm2 --server type=unixio,path=DIR/tpm.sock
            --ctrl type=unixio,path=DIR/tpm.sock.ctrl --flags not-need-init,startup-clear
      dbus-daemon --config-file=DIR/bus.conf --nofork   (listens on DIR/bus.sock only)
      tpm2-abrmd --session --allow-root --tcti=swtpm:path=DIR/tpm.sock --dbus-name=NAME
      tpm2_ptool init --path DIR/store                  (the primary key: a free slot)
    module_env: TPM2_PKCS11_STORE, TPM2_PKCS11_TCTI (tabrmd:bus_name=NAME,bus_type=session),
    DBUS_SESSION_BUS_ADDRESS, TSS2_LOG (quiet).
    """

    name = "tpm2"
    module = TPM2_MODULE

    def _start(self):
        state, store = os.path.join(self.dir, "tpm-state"), os.path.join(self.dir, "store")
        os.makedirs(state)
        os.makedirs(store)
        tpm_sock = os.path.join(self.dir, "tpm.sock")
        bus_sock = os.path.join(self.dir, "bus.sock")
        bus_name = f"com.dkimsign.Tabrmd.t{os.getpid()}x{secrets.token_hex(3)}"
        self._spawn("swtpm", ["swtpm", "socket", "--tpm2", "--tpmstate", f"dir={state}",
                              "--server", f"type=unixio,path={tpm_sock}",
                              "--ctrl", f"type=unixio,path={tpm_sock}.ctrl",
                              "--flags", "not-need-init,startup-clear",
                              "--log", f"file={self.dir}/swtpm-tpm.log"],
                    ready=lambda: os.path.exists(tpm_sock) and os.path.exists(tpm_sock + ".ctrl"))
        conf = os.path.join(self.dir, "bus.conf")
        with open(conf, "w") as f:
            f.write(f"""<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>session</type>
  <listen>unix:path={bus_sock}</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow user="*"/>
    <allow own="*"/>
    <allow send_destination="*"/>
    <allow receive_sender="*"/>
  </policy>
</busconfig>
""")
        self._spawn("dbus-daemon", ["dbus-daemon", "--config-file", conf, "--nofork", "--nopidfile"],
                    ready=lambda: os.path.exists(bus_sock))
        bus = f"unix:path={bus_sock}"
        tcti = f"tabrmd:bus_name={bus_name},bus_type=session"
        self.module_env = {"TPM2_PKCS11_STORE": store, "TPM2_PKCS11_TCTI": tcti,
                           "DBUS_SESSION_BUS_ADDRESS": bus, "TSS2_LOG": "all+none"}
        env = self.tool_env
        self._spawn("tpm2-abrmd", ["tpm2-abrmd", "--session", "--allow-root", f"--dbus-name={bus_name}",
                                   f"--tcti=swtpm:path={tpm_sock}", "--logger=stdout", "--flush-all"],
                    env=env, ready=lambda: self._bus_has(bus, bus_name))
        self._run(["tpm2_ptool", "init", "--path", store])

    @property
    def tool_env(self):
        return dict(self.env, TPM2TOOLS_TCTI=self.module_env["TPM2_PKCS11_TCTI"])

    @staticmethod
    def _bus_has(bus, name):
        p = subprocess.run(["dbus-send", f"--bus={bus}", "--print-reply", "--dest=org.freedesktop.DBus",
                            "/org/freedesktop/DBus", "org.freedesktop.DBus.NameHasOwner", f"string:{name}"],
                           capture_output=True, text=True, timeout=10)
        return p.returncode == 0 and "boolean true" in p.stdout

    def grant(self, user):
        self._chown_tree(self.module_env["TPM2_PKCS11_STORE"], user)

    def init_token(self):
        self._run(["tpm2_ptool", "addtoken", "--pid=1", f"--sopin={self.so_pin}", f"--userpin={self.user_pin}",
                   f"--label={self.label}", "--path", self.module_env["TPM2_PKCS11_STORE"]])


MODULES = {"softhsm": SoftHSMToken, "opencryptoki": OpenCryptokiToken, "tpm2": Tpm2Token}
