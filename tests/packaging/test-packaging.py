#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""The Debian packages, end to end, on this machine (root only; skipped
otherwise, and when dkimsign packages are already installed).

Builds the .deb files with packaging/build-deb (dpkg-buildpackage -us -uc
-b), installs them with dpkg, checks what installing did (users, folders,
commented default config, enabled socket and timer, man pages), checks the
units with systemd-analyze verify and their security scores (the default
unit, with each drop-in, the milter and refresh units).  Then it runs the
installed programs as the units would (systemd is not PID 1 here, so the
units themselves can't be started): `dkimsignctl refresh` (what
dkimsignd-refresh.timer runs) as user dkimsignd sees the keys' records on a
real DNS server (dnsmasq on loopback), and /usr/sbin/dkimsignd runs under
systemd-socket-activate as user dkimsignd with the installed default
config, the PIN as a credential, a SoftHSM token made with the installed
dkimsignctl, traced by strace (once as shipped, once with [token]
processes = 2, the supervisor and its signers): every system call it
makes must pass the
unit's SystemCallFilter, it may open nothing in /proc or /dev that
ProcSubset=pid and PrivateDevices=yes hide, write nowhere
ProtectSystem=strict forbids, and open no IP socket.  The installed
dkimsign and an out-of-tree program built with `pkg-config --cflags --libs
dkimsign` sign a message; python3-dkim verifies both.  A `meson install
--destdir` of a build without the milter and without systemd, into another
prefix, must install exactly what it should.  Last, the packages are purged
and nothing of them may remain; that cleanup runs whatever failed before.
"""
import fcntl
import glob
import grp
import os
import pwd
import re
import secrets
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
from dnsserver import DnsServer  # noqa: E402
from harness import dkimpy_verify, run  # noqa: E402

SOURCE = os.environ.get("DKIMSIGN_SOURCE_DIR", os.path.join(os.path.dirname(__file__), "..", ".."))
SOFTHSM = os.environ.get("SOFTHSM_MODULE", "/usr/lib/softhsm/libsofthsm2.so")
PACKAGES = ["dkimsignd", "dkimsign-milter", "dkimsign-smtpd-filter", "libdkimsign0", "libdkimsign-dev"]
USERS = ["dkimsignd", "dkimsign-milter"]
GROUPS = ["dkimsign"]
CONFIG = "/etc/dkimsignd/dkimsignd.conf"
UNITDIR = "/lib/systemd/system"
DOMAIN = "pkg.example"
MESSAGE = (b"From: Operator <op@pkg.example>\r\nTo: b@example.net\r\nSubject: from the package\r\n"
           b"Date: Sun, 29 Nov 2026 07:00:00 +0000\r\nMessage-ID: <pkg@pkg.example>\r\n\r\n"
           b"Signed by the installed dkimsignd.\r\n")
# What systemd-analyze security may score (issue 10): the README says
# what they are today (0.4 and 1.2).
SCORE_DEFAULT_MAX = 1.0
SCORE_NETWORK_HSM_MAX = 1.5

work = None  # the test's folder, made by main()
state = {"keytable": {}}
preexisting = {"users": [], "groups": []}  # left alone by the cleanup


def sh(*args, check=True, timeout=600, **kw):
    p = subprocess.run(args, capture_output=True, text=True, timeout=timeout, **kw)
    if check and p.returncode != 0:
        raise AssertionError(f"{' '.join(args)} failed ({p.returncode}):\n{p.stdout[-3000:]}{p.stderr[-3000:]}")
    return p


def exists(lookup, name):
    try:
        lookup(name)
        return True
    except KeyError:
        return False


def installed(package):
    p = sh("dpkg-query", "-W", "-f=${db:Status-Status}", package, check=False)
    return p.returncode == 0 and p.stdout not in ("", "not-installed")


def test_build_debs():
    out = os.path.join(work, "debs")
    start = time.monotonic()
    sh(os.path.join(SOURCE, "packaging", "build-deb"), out, timeout=900)
    print(f"     .deb files built in {time.monotonic() - start:.0f}s")
    for pkg in PACKAGES:
        found = glob.glob(os.path.join(out, f"{pkg}_*.deb"))
        assert len(found) == 1, f"{pkg}: {found}"
        state[pkg] = found[0]
    lib = sh("dpkg-deb", "-c", state["libdkimsign0"]).stdout
    assert "libdkimsign.so.0 -> libdkimsign.so.0" in lib, "libdkimsign0 has no soname link"
    dev = sh("dpkg-deb", "-c", state["libdkimsign-dev"]).stdout
    for f in ("usr/include/dkimsign.h", "pkgconfig/dkimsign.pc", "examples/sign-message.c"):
        assert f in dev, f"libdkimsign-dev lacks {f}"
    # Only the public API leaves the library.
    sh("dpkg-deb", "-x", state["libdkimsign0"], os.path.join(work, "lib0"))
    so = glob.glob(os.path.join(work, "lib0", "usr", "lib", "*", "libdkimsign.so.0.*"))[0]
    assert "SONAME               libdkimsign.so.0" in sh("objdump", "-p", so).stdout
    syms = [line.split()[-1] for line in sh("nm", "-D", "--defined-only", so).stdout.splitlines()]
    leaked = [s for s in syms if not s.startswith("dkimsign_") and s != "DKIMSIGN_0"]
    assert not leaked and len(syms) > 10, f"exported beyond dkimsign_*: {leaked}"


def test_install():
    sh("dpkg", "-i", *[state[p] for p in PACKAGES], timeout=300)
    for pkg in PACKAGES:
        assert installed(pkg), f"{pkg} is not installed"
    # sysusers.d: the users and the socket's group; the milter may connect.
    daemon = pwd.getpwnam("dkimsignd")
    assert daemon.pw_uid < 1000 and daemon.pw_shell in ("/usr/sbin/nologin", "/sbin/nologin"), daemon
    assert exists(pwd.getpwnam, "dkimsign-milter")
    assert "dkimsign-milter" in grp.getgrnam("dkimsign").gr_mem
    if exists(grp.getgrnam, "softhsm"):
        assert "dkimsignd" in grp.getgrnam("softhsm").gr_mem, "dkimsignd is not in group softhsm"
    # tmpfiles.d: the runtime and state folders.
    for path, mode, user, group in (("/run/dkimsignd", 0o750, "dkimsignd", "dkimsign"),
                                    ("/var/lib/dkimsignd", 0o700, "dkimsignd", "dkimsignd")):
        st = os.stat(path)
        got = (stat.S_IMODE(st.st_mode), pwd.getpwuid(st.st_uid).pw_name, grp.getgrgid(st.st_gid).gr_name)
        assert got == (mode, user, group), f"{path}: {got}"
    # A commented default config that the installed tools accept as it is.
    text = open(CONFIG).read()
    assert sum(1 for line in text.splitlines() if line.startswith("#")) >= 20, "the config is not commented"
    assert "pin_file =" not in text.replace("#pin_file", ""), "the default config sets pin_file"
    assert "/etc/dkimsign/dkimsign-milter.conf" in sh("dpkg-query", "-L", "dkimsign-milter").stdout
    # The socket is enabled (deb-systemd-helper works without a running systemd).
    for link in ("/etc/systemd/system/sockets.target.wants/dkimsignd.socket",
                 "/etc/systemd/system/timers.target.wants/dkimsignd-refresh.timer"):
        assert os.path.islink(link) and os.readlink(link).endswith(os.path.basename(link)), link
    assert not os.path.exists("/etc/systemd/system/multi-user.target.wants/dkimsign-milter.service")
    # python3-dkim's own dkimsign(1) is diverted while ours is installed.
    if installed("python3-dkim"):
        assert "dkimsignd" in sh("dpkg-divert", "--listpackage", "/usr/bin/dkimsign").stdout
        assert os.path.exists("/usr/bin/dkimsign.dkimpy")
    assert b"dkimsignd" in open("/usr/bin/dkimsign", "rb").read(), "/usr/bin/dkimsign is not ours"
    # Man pages for every binary and the config file.
    for page in ("1 dkimsign", "8 dkimsignd", "8 dkimsignctl", "8 dkimsign-milter", "8 dkimsign-smtpd-filter",
                 "5 dkimsignd.conf"):
        sh("man", "-w", *page.split())
        render = sh("man", "-P", "cat", *page.split(), env=dict(os.environ, MANWIDTH="80", LC_ALL="C.UTF-8"))
        assert "SEE ALSO" in render.stdout and "dkimsignd" in render.stdout, page


def test_units_verify():
    units = [os.path.join(UNITDIR, u) for u in ("dkimsignd.service", "dkimsignd.socket", "dkimsign-milter.service",
                                                "dkimsignd-refresh.service", "dkimsignd-refresh.timer")]
    p = sh("systemd-analyze", "verify", *units, check=False)
    # Documentation=man:... pages are looked up with man(1): those must exist too.
    assert p.returncode == 0 and not p.stderr.strip(), f"systemd-analyze verify:\n{p.stdout}{p.stderr}"
    for u in units[0], units[2], units[3]:
        assert re.search(r"^ExecStart=/usr/s?bin/", open(u).read(), re.M), u


def exposure(*args):
    p = sh("systemd-analyze", "security", "--offline=true", *args, check=False)
    m = re.search(r"Overall exposure level for \S+: ([0-9.]+)", p.stdout)
    assert m, f"no score:\n{p.stdout}{p.stderr}"
    return float(m.group(1))


def with_dropin(name):
    """The installed unit's score with an installed drop-in, in a scratch root."""
    root = os.path.join(work, "root-" + name)
    unitdir = os.path.join(root, "etc", "systemd", "system")
    os.makedirs(os.path.join(unitdir, "dkimsignd.service.d"))
    for u in ("dkimsignd.service", "dkimsignd.socket"):
        shutil.copy(os.path.join(UNITDIR, u), unitdir)
    shutil.copy(f"/usr/share/dkimsign/dkimsignd-{name}.conf",
                os.path.join(unitdir, "dkimsignd.service.d", f"{name}.conf"))
    return exposure(f"--root={root}", "dkimsignd.service")


def test_security_scores():
    default = exposure(os.path.join(UNITDIR, "dkimsignd.service"))
    network = with_dropin("network-hsm")
    dns = with_dropin("dns")
    milter = exposure(os.path.join(UNITDIR, "dkimsign-milter.service"))
    refresh = exposure(os.path.join(UNITDIR, "dkimsignd-refresh.service"))
    print(f"     systemd-analyze security: dkimsignd.service {default}, with network-hsm.conf {network},"
          f" with dns.conf {dns}, dkimsign-milter.service {milter}, dkimsignd-refresh.service {refresh}")
    assert default <= SCORE_DEFAULT_MAX, default
    for score in network, dns, milter, refresh:
        assert default < score <= SCORE_NETWORK_HSM_MAX, score


def derived_config(resolver):
    """The installed default config as it is ([dns] watch = timer), plus
    the test's DNS server and no wait once a record is seen."""
    path = os.path.join(work, "dkimsignd.conf")
    with open(path, "w") as f:
        f.write(open(CONFIG).read() + f"\n[dns]\nresolver = {resolver}\npublish_wait = 0\n")
    os.chmod(path, 0o644)
    state["config"] = path


def make_token(resolver):
    """A SoftHSM token the installed dkimsignctl makes, with the installed
    default config, the PIN given as a credential (LoadCredential=pin:)."""
    derived_config(resolver)
    tokens = os.path.join(work, "tokens")
    creds = os.path.join(work, "credentials")
    os.makedirs(tokens)
    os.makedirs(creds)
    conf = os.path.join(work, "softhsm2.conf")
    with open(conf, "w") as f:
        f.write(f"directories.tokendir = {tokens}\nobjectstore.backend = file\nlog.level = ERROR\n")
    for path in (os.path.join(creds, "pin"), os.path.join(work, "so-pin")):
        with open(os.open(path, os.O_WRONLY | os.O_CREAT, 0o400), "w") as f:
            f.write(secrets.token_hex(8) + "\n")
    env = dict(os.environ, SOFTHSM2_CONF=conf, CREDENTIALS_DIRECTORY=creds)
    ctl = ["/usr/bin/dkimsignctl", "--config", state["config"]]
    sh(*ctl, "init-token", "--so-pin-file", os.path.join(work, "so-pin"), env=env)
    for selector, algorithm in (("pkgr", "rsa"), ("pkge", "ed25519")):
        sh(*ctl, "keygen", "--domain", DOMAIN, "--selector", selector, "--algorithm", algorithm, env=env)
        out = sh(*ctl, "dns-record", "--domain", DOMAIN, "--selector", selector, env=env).stdout
        record = [line[2:] for line in out.splitlines() if line.startswith("; v=DKIM1")]
        assert record, out
        state["keytable"][f"{selector}._domainkey.{DOMAIN}"] = record[0]
    # What systemd does for the unit: the token and the credential belong
    # to the service's user.
    daemon = pwd.getpwnam("dkimsignd")
    for path in [tokens, creds] + glob.glob(os.path.join(tokens, "**"), recursive=True) + \
            glob.glob(os.path.join(creds, "*")):
        os.chown(path, daemon.pw_uid, daemon.pw_gid)
    return env


def allowed_syscalls():
    """The unit's SystemCallFilter: @system-service minus @privileged and
    @resources, groups expanded the way systemd-analyze lists them."""
    listing = sh("systemd-analyze", "syscall-filter").stdout
    groups, current = {}, None
    for line in listing.splitlines():
        if line.startswith("@"):
            current = groups.setdefault(line.strip(), set())
        elif current is not None and line.strip() and not line.strip().startswith("#"):
            current.add(line.strip())

    def expand(name, seen=()):
        out = set()
        for item in groups.get(name, ()):
            out |= expand(item, seen + (name,)) if item.startswith("@") and item not in seen else {item}
        return out

    unit = open(os.path.join(UNITDIR, "dkimsignd.service")).read()
    filters = re.findall(r"^SystemCallFilter=(.*)$", unit, re.M)
    assert filters == ["@system-service", "~@privileged @resources"], filters
    return expand("@system-service") - expand("@privileged") - expand("@resources")


def test_installed_daemon_signs():
    with DnsServer({}) as dns:
        installed_daemon_signs(dns)


def installed_daemon_signs(dns):
    env = make_token(dns.address)
    # The keys are pending until dkimsignctl refresh (dkimsignd-refresh.service,
    # user dkimsignd) has seen their records in DNS.
    dns.set_records({name: [record] for name, record in state["keytable"].items()})
    refresh = sh("setpriv", "--reuid=dkimsignd", "--regid=dkimsignd", "--init-groups", "--",
                 "/usr/bin/dkimsignctl", "--config", state["config"], "refresh", env=env)
    for label in state["keytable"]:
        assert f"{label}: active since" in refresh.stdout, refresh.stdout + refresh.stderr
    sock = os.path.join(work, "dkimsignd.sock")
    log_path = os.path.join(work, "dkimsignd.log")
    start_traced(env, sock, "strace.log", log_path)
    signed = sh("/usr/bin/dkimsign", "--socket", sock, input=MESSAGE.decode(), timeout=60).stdout.encode()
    check_signed(signed, "dkimsign")
    state["socket"] = sock

    # The out-of-tree program, from the installed -dev package's examples.
    src = os.path.join(work, "example", "sign-message.c")
    os.makedirs(os.path.dirname(src))
    shutil.copy("/usr/share/doc/libdkimsign-dev/examples/sign-message.c", src)
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("PKG_CONFIG", "LD_", "C_INCLUDE", "LIBRARY"))}
    flags = sh("pkg-config", "--cflags", "--libs", "dkimsign", env=clean).stdout.split()
    exe = os.path.join(work, "example", "sign-message")
    sh("cc", "-Wall", "-Wextra", "-Werror", "-o", exe, src, *flags, env=clean)
    ldd = sh("ldd", exe).stdout
    assert re.search(r"libdkimsign\.so\.0 => (/usr)?/lib/\S+/libdkimsign\.so\.0 ", ldd), ldd
    signed = subprocess.run([exe, sock], input=MESSAGE, capture_output=True, timeout=60, env=clean)
    assert signed.returncode == 0, signed.stderr
    check_signed(signed.stdout, "sign-message")
    # A domain without a key: refused, exit 65, from both.
    other = MESSAGE.replace(b"@pkg.example", b"@nokey.example")
    assert sh("/usr/bin/dkimsign", "--socket", sock, input=other.decode(), check=False).returncode == 65
    assert subprocess.run([exe, sock], input=other, capture_output=True).returncode == 65
    stop_daemon()
    check_trace(os.path.join(work, "strace.log"), log_path, "dkimsignd")

    # [token] processes = 2: a supervisor and two signer processes, traced
    # the same way (strace -f follows them), under the same filter.
    with open(state["config"], "a") as f:
        f.write("\n[token]\nprocesses = 2\n")
    log_path = os.path.join(work, "dkimsignd-processes.log")
    start_traced(env, sock, "strace-processes.log", log_path)
    for _ in range(6):
        signed = sh("/usr/bin/dkimsign", "--socket", sock, input=MESSAGE.decode(), timeout=60).stdout.encode()
        check_signed(signed, "dkimsign, 2 signer processes")
    stop_daemon()
    logtext = open(log_path, errors="replace").read()
    assert "2 signer processes serve" in logtext, logtext
    check_trace(os.path.join(work, "strace-processes.log"), log_path, "dkimsignd with 2 signer processes")


def start_traced(env, sock, trace_name, log_path):
    """The installed daemon as the unit runs it: user dkimsignd (strace -u
    also sets its groups), the socket passed by systemd's protocol; strace
    -D keeps the daemon's pid, which LISTEN_PID names."""
    trace = os.path.join(work, trace_name)
    log = open(log_path, "wb")
    # The last run's socket file outlives systemd-socket-activate.
    if os.path.exists(sock):
        os.unlink(sock)
    daemon = subprocess.Popen(
        ["systemd-socket-activate", "-l", sock, "-E", "SOFTHSM2_CONF", "-E", "CREDENTIALS_DIRECTORY",
         "strace", "-D", "-f", "-qq", "-u", "dkimsignd", "-o", trace,
         "/usr/sbin/dkimsignd", "--config", state["config"]],
        env=env, stdout=log, stderr=log)
    state["daemon"] = daemon
    state["trace"] = trace
    deadline = time.monotonic() + 30
    while not os.path.exists(sock):
        assert daemon.poll() is None and time.monotonic() < deadline, open(log_path).read()
        time.sleep(0.05)


def check_trace(trace, log_path, who):
    """What the traced daemon did stays inside its unit's sandbox."""
    used = set(re.findall(r"^\d+\s+([a-z0-9_]+)\(", open(trace).read(), re.M))
    assert {"connect", "accept4", "sendmsg", "epoll_wait"} & used and len(used) > 20, sorted(used)
    blocked = sorted(used - allowed_syscalls())
    print(f"     {who} made {len(used)} distinct system calls, all in its SystemCallFilter")
    assert not blocked, f"system calls the unit's SystemCallFilter blocks: {blocked}"
    # ProcSubset=pid and PrivateDevices=yes: only its own /proc entries
    # and the pseudo devices a private /dev has.
    text = open(trace).read()
    # [dns] watch = timer (the packaged config): the daemon has no network.
    assert not re.search(r"socket\(AF_INET6?,", text), "dkimsignd opened an IP socket"
    every = set(re.findall(r'open(?:at)?\((?:AT_FDCWD, )?"([^"]*)"', text))
    # ProtectSystem=strict: it writes only where the unit lets it (the state
    # folder; the token's, here under the test's folder).
    written = set(re.findall(r'open(?:at)?\((?:AT_FDCWD, )?"([^"]*)", [^)]*O_(?:WRONLY|RDWR|CREAT)', text))
    astray = sorted(p for p in written if not p.startswith(("/var/lib/dkimsignd/", work + "/")))
    assert not astray, f"writes outside the unit's writable paths: {astray}"
    assert any(p.endswith("/softhsm2.conf") for p in every), sorted(every)  # the pattern finds opens
    opened = {p for p in every if p.startswith(("/proc/", "/dev/"))}
    private_dev = {"/dev/null", "/dev/zero", "/dev/full", "/dev/random", "/dev/urandom", "/dev/tty"}
    outside = sorted(p for p in opened if not (p in private_dev or re.match(r"/proc/(self|thread-self|\d+)/", p)))
    print(f"     /proc and /dev opened: {sorted(opened)}; files written: {len(written)}, all allowed")
    assert not outside, f"outside what the unit leaves visible: {outside}"
    logtext = open(log_path, errors="replace").read()
    assert "listening on the socket passed by systemd" in logtext, logtext
    assert open(os.path.join(work, "credentials", "pin")).read().strip() not in logtext, "the PIN is logged"


def check_signed(signed, who):
    assert signed.startswith(b"DKIM-Signature:"), f"{who}: {signed[:200]!r}"
    assert signed.count(b"DKIM-Signature:") == 2, f"{who}: expected RSA and Ed25519 signatures"
    for i in (0, 1):
        assert dkimpy_verify(signed, state["keytable"], i), f"{who}: signature {i} does not verify"


def stop_daemon():
    daemon = state.pop("daemon", None)
    if daemon and daemon.poll() is None:
        daemon.send_signal(signal.SIGTERM)
        try:
            assert daemon.wait(30) == 0, f"dkimsignd exited with {daemon.returncode}"
        except subprocess.TimeoutExpired:
            daemon.kill()
            daemon.wait()
            raise
    # strace -D runs detached: wait until it has written the daemon's exit.
    trace = state.get("trace", os.path.join(work, "strace.log"))
    deadline = time.monotonic() + 10
    while daemon and os.path.exists(trace) and time.monotonic() < deadline:
        if re.search(r"^%d\s+\+\+\+ exited" % daemon.pid, open(trace).read(), re.M):
            break
        time.sleep(0.1)


def test_meson_install_options():
    """Without the milter and without systemd, into another prefix."""
    build = os.path.join(work, "build-nosystemd")
    dest = os.path.join(work, "dest")
    prefix = "/opt/dkimsign"
    sh("meson", "setup", build, SOURCE, f"--prefix={prefix}", "-Dtests=false", "-Dmilter=disabled",
       "-Dsystemd=disabled", timeout=300)
    sh("ninja", "-C", build, timeout=600)
    sh("meson", "install", "-C", build, "--destdir", dest, "--quiet", timeout=300)
    files = sorted(os.path.relpath(os.path.join(d, f), dest) for d, _, fs in os.walk(dest) for f in fs)
    want = {"opt/dkimsign/sbin/dkimsignd", "opt/dkimsign/bin/dkimsign", "opt/dkimsign/bin/dkimsignctl",
            "opt/dkimsign/include/dkimsign.h", "opt/dkimsign/include/dkimsign-errors.h",
            "opt/dkimsign/etc/dkimsignd/dkimsignd.conf", "opt/dkimsign/share/man/man1/dkimsign.1",
            "opt/dkimsign/share/man/man5/dkimsignd.conf.5", "opt/dkimsign/share/man/man8/dkimsignd.8",
            "opt/dkimsign/share/man/man8/dkimsignctl.8", "opt/dkimsign/sbin/dkimsign-smtpd-filter",
            "opt/dkimsign/share/man/man8/dkimsign-smtpd-filter.8"}
    assert want <= set(files), sorted(want - set(files))
    assert all(f.startswith("opt/dkimsign/") for f in files), files
    for f in files:
        assert "milter" not in f and "systemd" not in f and "sysusers" not in f and "tmpfiles" not in f, f
    pc = [f for f in files if f.endswith("pkgconfig/dkimsign.pc")]
    assert pc and "prefix=/opt/dkimsign" in open(os.path.join(dest, pc[0])).read()
    # The daemon's built-in default config follows the prefix.
    helptext = sh(os.path.join(dest, "opt/dkimsign/sbin/dkimsignd"), "--help").stdout
    assert "/opt/dkimsign/etc/dkimsignd/dkimsignd.conf" in helptext, helptext
    ldd = sh("ldd", os.path.join(dest, "opt/dkimsign/sbin/dkimsignd")).stdout
    assert "libsystemd" not in ldd, ldd
    # With systemd, in that prefix, the units name the prefix's paths
    # (configured at setup: no second build needed).
    build2 = os.path.join(work, "build-units")
    sh("meson", "setup", build2, SOURCE, f"--prefix={prefix}", "-Dtests=false", "-Dmilter=disabled",
       "-Dsystemd=enabled", timeout=300)
    unit = open(os.path.join(build2, "packaging", "dkimsignd.service")).read()
    assert f"ExecStart={prefix}/sbin/dkimsignd --config {prefix}/etc/dkimsignd/dkimsignd.conf" in unit
    assert f"LoadCredential=pin:{prefix}/etc/dkimsignd/pin" in unit


def purge():
    """Remove everything the test installed or created; safe to repeat."""
    stop_daemon()
    present = [p for p in PACKAGES if installed(p)]
    if present:
        sh("dpkg", "--purge", *present, timeout=300)
    for u in USERS:
        if exists(pwd.getpwnam, u) and u not in preexisting["users"]:
            sh("userdel", u, check=False)
    for g in GROUPS + USERS:
        if exists(grp.getgrnam, g) and g not in preexisting["groups"]:
            sh("groupdel", g, check=False)


def test_purge_cleanly():
    purge()
    for pkg in PACKAGES:
        assert not installed(pkg), f"{pkg} is still there"
    for path in ("/etc/dkimsignd", "/etc/dkimsign", "/var/lib/dkimsignd", "/run/dkimsignd",
                 "/etc/systemd/system/sockets.target.wants/dkimsignd.socket",
                 "/lib/systemd/system/dkimsignd.service", "/usr/sbin/dkimsignd", "/usr/include/dkimsign.h"):
        assert not os.path.lexists(path), f"{path} is left after purge"
    for u in USERS:
        assert not exists(pwd.getpwnam, u), u
    diversions = sh("dpkg-divert", "--list").stdout
    assert "dkimsignd" not in diversions, diversions
    if installed("python3-dkim"):
        assert "python3-dkim" in sh("dpkg", "-S", "/usr/bin/dkimsign").stdout
        assert os.path.exists("/usr/bin/dkimsign") and not os.path.exists("/usr/bin/dkimsign.dkimpy")


def main():
    if os.geteuid() != 0:
        print("SKIP: installs packages: root only")
        sys.exit(77)
    # Two builds' test runs at once would install over each other: take turns.
    lock = open("/run/lock/dkimsign-packaging-test.lock", "w")
    fcntl.flock(lock, fcntl.LOCK_EX)
    already = [p for p in PACKAGES if installed(p)]
    if already:
        print(f"SKIP: {', '.join(already)} already installed here; not touching an operator's install")
        sys.exit(77)
    global work
    work = tempfile.mkdtemp(prefix="dkimsign-pkg-")
    os.chmod(work, 0o755)  # the token and the credential are read by user dkimsignd
    preexisting["users"] = [u for u in USERS if exists(pwd.getpwnam, u)]
    preexisting["groups"] = [g for g in GROUPS + USERS if exists(grp.getgrnam, g)]
    try:
        run([test_build_debs, test_install, test_units_verify, test_security_scores,
             test_installed_daemon_signs, test_meson_install_options, test_purge_cleanly])
    finally:
        try:
            purge()
        finally:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
