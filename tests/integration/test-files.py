#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""How dkimsignd and dkimsignctl treat the files that steer them, against a
real SoftHSM token and the real daemon: the listening socket is never
chowned or chmodded by its path (strace shows the calls; the socket ends up
with the configured owner, group and mode), and its directory is refused
when others may write it without the sticky bit; a group-writable (or
another user's) configuration, PIN file, PKCS#11 module, or directory above
the module is refused by both programs with the path and the mode; import
refuses a key file that is a symbolic link; header names that are not field
names (';', '=') are refused with their line."""
import grp
import os
import pwd
import re
import shutil
import stat
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
from harness import SOFTHSM, Sandbox, Skip, binary, run  # noqa: E402

MESSAGE = (b"From: Alice <alice@example.com>\r\nTo: bob@example.net\r\nSubject: files\r\n"
           b"Date: Mon, 1 Jan 2024 00:00:00 +0000\r\nMessage-ID: <files@example.com>\r\n\r\nHello.\r\n")
TRACED = "chown,fchown,lchown,fchownat,chmod,fchmod,fchmodat,bind,rename,renameat,renameat2,mkdir,mkdirat"


def ready_box(extra=""):
    box = Sandbox(extra_config=extra)
    box.init_token()
    box.keygen("example.com", "f1")
    return box


def set_config(box, old, new):
    with open(box.config) as f:
        text = f.read()
    assert old in text, (old, text)
    with open(box.config, "w") as f:
        f.write(text.replace(old, new))


def start_daemon(box, wrapper=(), timeout=20):
    """dkimsignd, under wrapper; returns the Popen once it listens, or after it
    exited (the caller looks at the returncode and the log)."""
    log = open(box.log_path, "ab")
    proc = subprocess.Popen([*wrapper, binary("dkimsignd"), "--config", box.config], env=box.env,
                            stdout=log, stderr=log)
    log.close()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return proc
        if os.path.exists(box.socket) and box.sign(MESSAGE).returncode == 0:
            return proc
        time.sleep(0.1)
    proc.kill()
    proc.wait()
    raise AssertionError(f"dkimsignd did not start within {timeout}s:\n{box.log()}")


def stop_daemon(proc):
    """SIGTERM to dkimsignd itself (under strace, strace's child)."""
    if proc.poll() is None:
        pid = proc.pid
        if os.path.basename(proc.args[0]) == "strace":
            with open(f"/proc/{pid}/task/{pid}/children") as f:
                pid = int(f.read().split()[0])
        os.kill(pid, 15)
        proc.wait(30)


def daemon_refuses(box, *expect):
    """dkimsignd exits non-zero, its log saying each of expect."""
    before = len(box.log())
    proc = start_daemon(box)
    if proc.poll() is None:
        stop_daemon(proc)
        raise AssertionError(f"dkimsignd started; expected a refusal with {expect}:\n{box.log()}")
    log = box.log()[before:]
    assert proc.returncode != 0, log
    for e in expect:
        assert e in log, (e, log)


def ctl_refuses(box, *expect, args=("list",)):
    p = box.ctl(*args, check=False)
    assert p.returncode != 0, (args, p.stdout, p.stderr)
    for e in expect:
        assert e in p.stderr, (e, p.stderr)


def test_socket_never_changed_by_path():
    if os.geteuid() != 0:
        raise Skip("not root: the socket's owner can't be set")
    nobody = pwd.getpwnam("nobody")
    group = grp.getgrgid(nobody.pw_gid)
    with ready_box() as box:
        set_config(box, "socket_mode = 0600", f"socket_mode = 0640\nsocket_user = nobody\nsocket_group = {group.gr_name}")
        trace = os.path.join(box.dir, "strace.log")
        # Twice: the second start finds the first one's socket and replaces it.
        for run_no in (1, 2):
            proc = start_daemon(box, ["strace", "-f", "-qq", "-o", trace, "-e", f"trace={TRACED}"])
            try:
                assert proc.poll() is None, box.log()
                st = os.lstat(box.socket)
                assert stat.S_ISSOCK(st.st_mode), st
                assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (nobody.pw_uid, nobody.pw_gid, 0o640), \
                    (run_no, st)
            finally:
                stop_daemon(proc)
            calls = open(trace).read()
            sock = re.escape(box.socket)
            # Nothing by the socket's path, nothing following a link, nothing
            # relative to the current directory.
            bad = [line for line in calls.splitlines()
                   if re.search(rf'\b(chown|lchown|chmod)\("{sock}"', line)
                   or re.search(r'\b(fchownat|fchmodat)\(AT_FDCWD', line)
                   or (re.search(r'\bfchownat\(', line) and "AT_SYMLINK_NOFOLLOW" not in line)
                   or re.search(rf'\bbind\(\d+, \{{sa_family=AF_UNIX, sun_path="{sock}"', line)]
            assert not bad, (run_no, bad, calls)
            assert re.search(r'\bfchownat\(\d+, "s", %d, %d, AT_SYMLINK_NOFOLLOW\)' % (nobody.pw_uid, nobody.pw_gid),
                             calls), calls
            assert re.search(rf'\brenameat2?\(\d+, "s", \d+, "{re.escape(os.path.basename(box.socket))}"', calls), calls
        # No private directory left behind.
        assert not [n for n in os.listdir(box.dir) if n.startswith(".dkimsignd-")], os.listdir(box.dir)


def test_socket_directory_others_may_write():
    with ready_box() as box:
        for mode, why in ((0o777, "writable by its group and by everyone"), (0o770, "writable by its group"),
                          (0o703, "writable by everyone")):
            os.chmod(box.dir, mode)
            daemon_refuses(box, f"the socket's directory: bad permissions on {box.dir} (owner uid {os.geteuid()}, "
                                f"mode {mode:04o}): {why}", "could put another socket in the daemon's place")
            assert not os.path.exists(box.socket)
        # The sticky bit: no one may replace another user's file there.
        os.chmod(box.dir, 0o1777)
        proc = start_daemon(box)
        try:
            assert proc.poll() is None, box.log()
        finally:
            stop_daemon(proc)
        os.chmod(box.dir, 0o700)
        if os.geteuid() == 0:
            os.chown(box.dir, pwd.getpwnam("nobody").pw_uid, -1)
            daemon_refuses(box, f"bad permissions on {box.dir}", "owned by a user other than root")
            os.chown(box.dir, 0, -1)


def test_writable_config_pin_and_module():
    with ready_box() as box:
        # The configuration.
        os.chmod(box.config, 0o664)
        ctl_refuses(box, f"bad permissions on {box.config} (owner uid {os.geteuid()}, mode 0664): "
                         "writable by its group (chmod g-w)")
        daemon_refuses(box, f"bad permissions on {box.config}", "mode 0664")
        os.chmod(box.config, 0o646)
        ctl_refuses(box, f"bad permissions on {box.config}", "mode 0646): writable by everyone")
        os.chmod(box.config, 0o644)

        # The PIN file: by hsm_login_pin_file, hsm_pin_read ([token]
        # processes > 1) and init-token's own reading.
        os.chmod(box.pin_file, 0o660)
        want = f"refusing the PIN file: bad permissions on {box.pin_file} (owner uid {os.geteuid()}, mode 0660)"
        ctl_refuses(box, want, "writable by its group")
        ctl_refuses(box, want, args=("init-token", "--so-pin-file", box.so_pin_file))
        daemon_refuses(box, want)
        set_config(box, "sessions = 2\n", "sessions = 2\nprocesses = 2\n")
        daemon_refuses(box, want)
        set_config(box, "processes = 2\n", "")
        os.chmod(box.pin_file, 0o600)
        if os.geteuid() == 0:
            os.chown(box.pin_file, pwd.getpwnam("nobody").pw_uid, -1)
            ctl_refuses(box, f"bad permissions on {box.pin_file}", "owned by a user other than root")
            os.chown(box.pin_file, 0, -1)
        box.ctl("list")

        # The module, and the directories above it.
        moddir = os.path.join(box.dir, "p11")
        os.makedirs(moddir)
        os.chmod(moddir, 0o755)
        module = os.path.join(moddir, "libsofthsm2.so")
        shutil.copy(os.path.realpath(SOFTHSM), module)
        os.chmod(module, 0o755)
        set_config(box, f"module = {SOFTHSM}", f"module = {module}")
        box.ctl("list")                                   # the copy is a working module
        os.chmod(module, 0o775)
        want = f"refusing to load the PKCS#11 module: bad permissions on {module} (owner uid {os.geteuid()}, mode 0775)"
        ctl_refuses(box, want)
        daemon_refuses(box, want)
        os.chmod(module, 0o755)
        os.chmod(moddir, 0o775)
        want = f"bad permissions on {moddir}, a directory above {module} (owner uid {os.geteuid()}, mode 0775)"
        ctl_refuses(box, want)
        daemon_refuses(box, want)
        os.chmod(moddir, 0o755)
        # Through a link: what is checked is the file it leads to.
        link = os.path.join(box.dir, "module-link.so")
        os.symlink(module, link)
        set_config(box, f"module = {module}", f"module = {link}")
        box.ctl("list")
        os.chmod(module, 0o757)
        ctl_refuses(box, f"bad permissions on {module} (owner uid {os.geteuid()}, mode 0757): writable by everyone")
        os.chmod(module, 0o755)
        if os.geteuid() == 0:
            os.chown(module, pwd.getpwnam("nobody").pw_uid, -1)
            ctl_refuses(box, f"bad permissions on {module}", "owned by a user other than root")
            os.chown(module, 0, -1)
        proc = start_daemon(box)
        try:
            assert proc.poll() is None, box.log()
        finally:
            stop_daemon(proc)


def test_import_refuses_a_link():
    with ready_box() as box:
        d = os.path.join(box.dir, "pem")
        os.makedirs(d)
        key = os.path.join(d, "key.pem")
        subprocess.run(["openssl", "genpkey", "-algorithm", "ED25519", "-out", key], check=True, capture_output=True)
        link = os.path.join(d, "link.pem")
        os.symlink(key, link)
        ctl_refuses(box, f"{link}: a symbolic link, refused: name the file itself",
                    args=("import", "--domain", "imp.example", "--selector", "lnk", link))
        # An OpenDKIM KeyTable naming the link: the same refusal.
        keytable = os.path.join(d, "KeyTable")
        with open(keytable, "w") as f:
            f.write(f"lnk._domainkey.imp.example imp.example:lnk:{link}\n")
        ctl_refuses(box, f"{link}: a symbolic link, refused", args=("import-opendkim", keytable))
        assert "imp.example" not in box.ctl("list").stdout
        # The file itself imports.
        box.ctl("import", "--domain", "imp.example", "--selector", "lnk", key)
        assert "lnk._domainkey.imp.example" in box.ctl("list").stdout


def test_header_names():
    with ready_box() as box:
        for extra, name in (("[signing]\nheaders = From;x\n", "From;x"),
                            ("[signing]\nheaders = from, to\noversign = a=b\n", "a=b"),
                            ("[domain example.com]\nheaders = from, x=y\n", "x=y")):
            box.write_config(extra)
            with open(box.config) as f:
                line = 1 + [i for i, text in enumerate(f.read().split("\n")) if name in text][0]
            want = f"line {line}: '{name}' is not a valid header field name"
            ctl_refuses(box, want)
            daemon_refuses(box, want)
            p = subprocess.run([binary("dkimsignd"), "--check", "--config", box.config], env=box.env,
                               capture_output=True, text=True, timeout=60)
            assert p.returncode != 0 and want in p.stderr, (p.returncode, p.stderr)


if __name__ == "__main__":
    run([test_socket_never_changed_by_path, test_socket_directory_others_may_write,
         test_writable_config_pin_and_module, test_import_refuses_a_link, test_header_names])
