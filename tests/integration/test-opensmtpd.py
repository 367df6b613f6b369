#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""dkimsign-smtpd-filter in a real OpenSMTPD (docs/opensmtpd.md), end to
end: a private OpenSMTPD 6.8 (Debian's opensmtpd, never installed: fetched
with `apt-get download` into a cache under the build directory, unpacked
with `dpkg-deb -x` into the test's own directory) runs as root with a
configuration of the test's (-f), in the foreground (-d), listening on
127.0.0.1 only, and relays everything to a loopback SMTP sink
(tests/lib/smtpsink.py, no 8BITMIME).  smtpd's paths are compiled in
(/var/spool/smtpd, /var/run/smtpd.sock, /var/lib/opensmtpd/empty): it runs
in a mount namespace of its own (unshare -m) where a directory of the
test's is bound over /var, so the host's /var is never touched.

Each listener has its filter, `proc-exec "dkimsign-smtpd-filter ..." group
mail` (the socket's group here), one per canonicalization, one with
--on-tempfail accept and one without the socket's group.  The message set
of issue 20 (tests/lib/mtacases.py) goes in by SMTP, and every message the
sink got is checked: signed and passing python3-dkim, or unsigned with the
filter's line saying why; none lost.  Then dkimsignd down: refused with 451
(the client keeps the message) and signed once dkimsignd is back; accepted
unsigned with --on-tempfail accept.

smtpd's users (opensmtpd, opensmtpq, compiled into Debian's binary) must
exist: the test adds them as the package's postinst would when they are
missing.  A machine without the package lists or the network fails the
test (it is not skipped); the second run finds the package in the cache.
Not root: skipped (exit 77)."""
import glob
import grp
import os
import pwd
import re
import shutil
import signal
import smtplib
import socket
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
from harness import Sandbox, run  # noqa: E402
from mtacases import (EAI_DOMAIN, case_name, cases, check, delivered, dkimsignd_down, down_case,  # noqa: E402
                      keykeys, signatures, smtp_send, unsigned, verify, wait_until)
from smtpsink import SmtpSink  # noqa: E402
from debpkg import unpack  # noqa: E402

PACKAGE = "opensmtpd"
USERS = ("opensmtpd", "opensmtpq")
# dkimsignd's socket group in the test, which the filter gets from
# `group` on its proc-exec line (smtpd gives a filter no other group).
SOCKET_GROUP = "mail"
HOSTNAME = "mx.example.com"
BASE_PORT = 27250 + os.getpid() % 400
# name -> (port, filter options, proc-exec user/group)
LISTENERS = {
        "rr": (0, "--canon relaxed/relaxed", f"group {SOCKET_GROUP}"),
        "rs": (1, "--canon relaxed/simple", f"group {SOCKET_GROUP}"),
        "sr": (2, "--canon simple/relaxed", f"group {SOCKET_GROUP}"),
        "ss": (3, "--canon simple/simple", f"group {SOCKET_GROUP}"),
        "accept": (4, "--on-tempfail accept", f"group {SOCKET_GROUP}"),
        "nogroup": (5, "", ""),
}
SANITIZERS = ("ASAN_OPTIONS", "UBSAN_OPTIONS", "LSAN_OPTIONS")

box = None
tmp = None
smtpd = None
sink = None
results = []


# --- OpenSMTPD, unpacked -------------------------------------------------------

def smtpd_binary():
    """The smtpd binary of PACKAGE, unpacked below tmp (tests/lib/debpkg.py)."""
    root = unpack([PACKAGE], os.path.join(tmp, "smtpd-root"))
    path = os.path.join(root, "usr", "sbin", "smtpd")
    assert os.access(path, os.X_OK), path
    p = subprocess.run(["ldd", path], capture_output=True, text=True, timeout=30)
    assert p.returncode == 0 and "not found" not in p.stdout, f"smtpd's libraries:\n{p.stdout}{p.stderr}"
    return path


def ensure_users():
    """smtpd looks its users up at start; add them as the package's
    postinst does (system users, each with its own group) when missing."""
    for name in USERS:
        try:
            pwd.getpwnam(name)
        except KeyError:
            subprocess.run(["useradd", "--system", "--user-group", "--no-create-home", "--home-dir",
                            "/var/lib/opensmtpd/empty", "--shell", "/usr/sbin/nologin", "--comment",
                            f"OpenSMTPD {name}", name], check=True, capture_output=True, timeout=60)
    pw = pwd.getpwnam("opensmtpd")
    assert grp.getgrnam(SOCKET_GROUP).gr_gid != pw.pw_gid, "the socket's group is opensmtpd's primary group"
    return pw


def sanitizer_env(logdir):
    """`env` arguments that give the filter the test's sanitizer options
    (smtpd runs a filter with an environment of its own), each logging to
    logdir, which the filter's user can write."""
    out = []
    for name in SANITIZERS:
        value = os.environ.get(name)
        if not value:
            continue
        m = re.search(r"(?:^|:)suppressions=([^:]+)", value)
        if m:
            value = value.replace(m.group(1), box.reachable(m.group(1), "lsan.supp"))
        if name != "LSAN_OPTIONS":
            value += f":log_path={logdir}/{name.split('_')[0].lower()}"
        out.append(f"{name}={value}")
    return out


class Smtpd:
    def __init__(self, filter_path):
        self.bin = smtpd_binary()
        ensure_users()
        self.dir = os.path.join(tmp, "smtpd")
        var = os.path.join(self.dir, "var")
        for d in ("spool/smtpd", "run", "lib/opensmtpd/empty", "mail", "tmp"):
            os.makedirs(os.path.join(var, d))
        for d, mode in (("spool/smtpd", 0o711), ("run", 0o755), ("lib/opensmtpd/empty", 0o755), ("tmp", 0o1777)):
            os.chmod(os.path.join(var, d), mode)
        os.chmod(tmp, 0o755)
        os.chmod(self.dir, 0o755)
        for d in ("var", "var/lib", "var/lib/opensmtpd", "var/spool"):
            os.chmod(os.path.join(self.dir, d), 0o755)
        # Where the sanitizers of the filter (run as opensmtpd) report.
        self.sanlog = os.path.join(self.dir, "sanitizers")
        os.makedirs(self.sanlog)
        os.chmod(self.sanlog, 0o1777)
        env = sanitizer_env(self.sanlog)
        prefix = "/usr/bin/env " + " ".join(env) + " " if env else ""
        lines = []
        for name, (offset, options, creds) in LISTENERS.items():
            lines.append(f'filter "dkimsign-{name}" proc-exec "{prefix}{filter_path} --socket {box.socket} '
                         f'{options}" {creds}')
        for name, (offset, _, _) in LISTENERS.items():
            lines.append(f'listen on 127.0.0.1 port {BASE_PORT + offset} hostname {HOSTNAME} '
                         f'filter "dkimsign-{name}"')
        lines += [f'action "sink" relay host smtp://127.0.0.1:{sink.port}', 'match from any for any action "sink"']
        self.config = os.path.join(self.dir, "smtpd.conf")
        with open(self.config, "w") as f:
            f.write("\n".join(lines) + "\n")
        p = subprocess.run([self.bin, "-n", "-f", self.config], capture_output=True, text=True, timeout=30)
        assert p.returncode == 0, p.stdout + p.stderr
        self.log_path = os.path.join(self.dir, "smtpd.log")
        log = open(self.log_path, "wb")
        # smtpd in a mount namespace of its own, with the test's var over
        # /var: its spool, control socket and chroot are the test's.
        self.proc = subprocess.Popen(
            ["unshare", "--mount", "--propagation", "private", "--", "sh", "-c",
             'mount --bind "$1" /var && exec "$2" -d -f "$3"', "sh", var, self.bin, self.config],
            stdout=log, stderr=log)
        log.close()
        deadline = time.monotonic() + 30
        for name, (offset, _, _) in LISTENERS.items():
            while True:
                try:
                    socket.create_connection(("127.0.0.1", BASE_PORT + offset), 1).close()
                    break
                except OSError:
                    if self.proc.poll() is not None or time.monotonic() > deadline:
                        raise AssertionError("smtpd did not listen:\n" + self.log())
                    time.sleep(0.1)

    def port(self, name):
        return BASE_PORT + LISTENERS[name][0]

    def log(self):
        try:
            with open(self.log_path, errors="replace") as f:
                return f.read()
        except FileNotFoundError:
            return ""

    def filters_running(self, path):
        """Pids of processes running the filter binary at path."""
        pids = []
        for pid in os.listdir("/proc"):
            if pid.isdigit():
                try:
                    with open(f"/proc/{pid}/cmdline", "rb") as f:
                        if path.encode() in f.read():
                            pids.append(int(pid))
                except OSError:
                    pass
        return pids

    def stop(self, filter_path):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        # The filters end at the end of their input; their sanitizers
        # report then (leaks at exit).
        deadline = time.monotonic() + 20
        while self.filters_running(filter_path) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not self.filters_running(filter_path), "the filters did not end with smtpd"
        reports = ""
        for path in glob.glob(os.path.join(self.sanlog, "*")):
            with open(path, errors="replace") as f:
                reports += f.read()
        assert reports == "", reports
        bad = [line for line in self.log().splitlines()
               if re.search(r"AddressSanitizer|LeakSanitizer|runtime error|misbehaving|fatal", line)]
        assert bad == [], "\n".join(bad)


# --- the tests -----------------------------------------------------------------

def port_for(case):
    """The listener whose filter signs with the case's canonicalization."""
    if not case.canon:
        return smtpd.port("rr")
    return smtpd.port({"relaxed/relaxed": "rr", "relaxed/simple": "rs", "simple/relaxed": "sr",
                       "simple/simple": "ss"}[case.canon])


def log():
    return smtpd.log() + box.log()


def messages():
    return list(sink.messages)


def test_message_set():
    """The message set, every case checked (tests/lib/mtacases.py).  An
    address without a domain in To or Cc: passed unsigned (smtpd qualifies
    it after the filter); everything else signed, and it verifies."""
    set_ = cases()
    for case in set_:
        smtp_send("127.0.0.1", port_for(case), case)
    results.extend(check(set_, messages, box.keytable, log, expect={
        "unqualified-addresses": unsigned(r"not signed: an address without a domain in To, which smtpd qualifies"),
    }))


def test_what_smtpd_changed():
    """What smtpd did after the filter, and what the filter did for it:
    Date and Message-ID were added by the filter (smtpd added none: one of
    each), the unqualified names were qualified with smtpd's host name, the
    2,000-octet line arrived split at 998 octets (smtpd cuts a filter's
    line at 2,047), and smtpd's Received field is not signed."""
    m = delivered(messages(), "no-date-no-message-id")[0]
    head = m.split(b"\r\n\r\n", 1)[0]
    assert len(re.findall(rb"(?mi)^Date:", head)) == 1, head
    mid = re.findall(rb"(?mi)^Message-ID:[^\r]*", head)
    assert len(mid) == 1 and mid[0].endswith(b"@example.com>"), head
    h = signatures(m)[0]["h"].lower().split(":")
    assert "date" in h and "message-id" in h, h
    results.append(f"no Date, no Message-ID: the filter added them before signing ({mid[0].decode()}); "
                   "smtpd added none")
    m = delivered(messages(), "unqualified-addresses")[0]
    assert f"To: bob@{HOSTNAME}, carol@local.test,\r\n dave@{HOSTNAME}\r\n".encode() in m, m[:1000]
    results.append(f"unqualified names: smtpd appended @{HOSTNAME} after the filter (To: bob@{HOSTNAME}, ...)")
    m = delivered(messages(), "long-line")[0]
    assert b"\r\n" + b"x" * 998 + b"\r\n" + b"x" * 998 + b"\r\n" + b"x" * 4 + b"\r\nend\r\n" in m, m[-2200:]
    assert re.search(r"signed \(body lines over 998 octets split\)", smtpd.log()), smtpd.log()
    results.append("2,000-octet line: split by the filter into 998 + 998 + 4 octets, signed so, verifies")
    m = delivered(messages(), "plain")[0]
    assert m.startswith(b"DKIM-Signature:") and b"\r\nReceived: from client.test" in m, m[:500]
    h = signatures(m)[0]["h"].lower().split(":")
    assert "received" not in h, h
    m = delivered(messages(), "8bit-body")[0]
    assert "Grüße aus Köln".encode() in m
    results.append("8-bit body to a 7-bit next hop: sent as it is (smtpd converts nothing), signature holds")
    m = delivered(messages(), "eai-from")[0]
    mid = re.findall(rb"(?mi)^Message-ID:[^\r]*", m.split(b"\r\n\r\n", 1)[0])
    assert "From: Jörg Müller <jörg@bücher.example>".encode() in m and len(mid) == 1 \
        and mid[0].endswith(f"@{EAI_DOMAIN}>".encode()), m[:1000]
    results.append(f"EAI From jörg@bücher.example: signed with d={EAI_DOMAIN}, the filter's {mid[0].decode()}")


def test_no_key_logged():
    """The keyless domain's message: the filter's own line (which smtpd
    logs), beside dkimsignd's."""
    line = [x for x in smtpd.log().splitlines() if "not signed:" in x and "example.org" in x]
    assert line, smtpd.log()
    results.append(f"no key: smtpd logged: {line[0].strip()}")


def test_unsigned_for_good():
    """A message dkimsignd refuses for good (no From field) and one with a
    header line over 998 octets (which smtpd could not take back whole
    past 2,047): delivered unsigned, each with the filter's line."""
    for name, head, why in (
            ("no-from", "To: bob@local.test\r\nSubject: no From\r\n", r"not signed: dkimsignd: .*From"),
            ("long-header", "From: Alice <alice@example.com>\r\nTo: bob@local.test\r\nSubject: " + "y" * 1200
             + "\r\n", r"not signed: a header line over 998 octets")):
        case = down_case(name=name)
        case.data = (head + f"X-Case: {name}\r\n\r\ncase {name}\r\n").encode()
        smtp_send("127.0.0.1", smtpd.port("rr"), case)
        deadline = time.monotonic() + 30
        while not delivered(messages(), name) and time.monotonic() < deadline:
            time.sleep(0.1)
        got = delivered(messages(), name)
        assert len(got) == 1 and not signatures(got[0]), (name, got)
        line = [x for x in smtpd.log().splitlines() if re.search(why, x)]
        assert line, (why, smtpd.log())
        results.append(f"{name}: delivered unsigned; smtpd logged: {line[0].strip()}")


def test_hostile_lines():
    """Body lines a remote sender chooses: a bare CR inside a line and at
    its end (smtpd strips only the CR of the line end and hands the rest to
    the filter: it must not end the filter, which would stop smtpd), and a
    line that is a lone "." or ".." (the filter un-escapes and re-escapes
    them, so the signed body is the delivered one).  Both messages are
    delivered, signed, and verify; the filter still runs."""
    bodies = {
        "bare-cr": b"a bare\rCR inside\r\ntwo at the end\r\r\nend\r\n",
        "dot-lines": b"before\r\n.\r\n..\r\n.x\r\nafter\r\n",
    }
    for name, body in bodies.items():
        case = down_case(name=name)
        case.data = case.data.split(b"\r\n\r\n", 1)[0] + b"\r\n\r\n" + body
        smtp_send("127.0.0.1", smtpd.port("rr"), case)
    for name, body in bodies.items():
        wait_until(lambda: delivered(messages(), name), 30, f"{name} delivered")
        m = delivered(messages(), name)[0]
        assert m.split(b"\r\n\r\n", 1)[1] == body, (name, m)
        assert signatures(m), (name, m[:600], log())
        ok, out = verify(m, keykeys(box.keytable))
        assert ok, (name, out)
        results.append(f"{name}: delivered as sent, signed, verifies")


def test_dkimsignd_down():
    """dkimsignd down: the filter refuses the message with 451 at the end
    of DATA, so the client keeps it, and it is signed once dkimsignd is
    back; with --on-tempfail accept it passes unsigned, with a line."""
    results.extend(dkimsignd_down(box, lambda c: smtp_send("127.0.0.1", smtpd.port("rr"), c), messages,
                                  box.keytable, log))
    assert re.search(r"dkimsign-rr: .*refused \(451\): cannot connect to dkimsignd", smtpd.log()), smtpd.log()
    assert re.search(r"dkimsign-rr: .*dkimsignd reachable again", smtpd.log()), smtpd.log()
    results.extend(dkimsignd_down(box, lambda c: smtp_send("127.0.0.1", smtpd.port("accept"), c), messages,
                                  box.keytable, log, case=down_case(name="dkimsignd-down-accept"), mode="passed",
                                  unsigned_log=r"dkimsign-accept: .*not signed: cannot connect to dkimsignd"))


def test_filter_without_socket_group():
    """Without `group` on its proc-exec line the filter runs with
    opensmtpd's own group and cannot open the socket: 451, never
    unsigned."""
    case = down_case(name="no-socket-group")
    try:
        smtp_send("127.0.0.1", smtpd.port("nogroup"), case)
        raise AssertionError("accepted without the socket's group")
    except smtplib.SMTPDataError as e:
        assert e.smtp_code == 451, e
        reply = f"{e.smtp_code} {e.smtp_error.decode()}"
    line = [x for x in smtpd.log().splitlines() if "dkimsign-nogroup:" in x and "refused (451)" in x]
    assert line and "Permission denied" in line[0], smtpd.log()
    assert not delivered(messages(), case.name)
    results.append(f"filter without the socket's group: {reply}; smtpd logged: {line[0].strip()}")


def test_every_delivered_message():
    """Nothing was lost and nothing is delivered with a failing signature:
    every message the sink got is a case of the set or of the outage
    scenarios, once; those with a signature verify (mtacases.check above),
    and the unsigned ones are the five expected."""
    names = [c.name for c in cases()] + ["no-from", "long-header", "bare-cr", "dot-lines", "dkimsignd-down",
                                         "dkimsignd-down-accept", "dkimsignd-down-accept-after"]
    got = sorted(delivered_names())
    assert got == sorted(names), (got, names)
    unsigned_names = sorted(n for n in got if not signatures(delivered(messages(), n)[0]))
    assert unsigned_names == ["dkimsignd-down-accept", "long-header", "no-from", "no-key", "unqualified-addresses"], \
        unsigned_names
    results.append(f"{len(got)} messages delivered, each once; unsigned: {', '.join(unsigned_names)}")


def delivered_names():
    return [case_name(m.data) for m in messages()]


def setup():
    global box, tmp, smtpd, sink
    tmp = tempfile.mkdtemp(prefix="dkimsign-opensmtpd-")
    box = Sandbox()
    assert not box.dir.startswith("/var/"), "the sandbox must not be below /var, which smtpd's namespace hides"
    # The socket as a package has it: 0660, group SOCKET_GROUP.
    with open(box.config) as f:
        cfg = f.read().replace("socket_mode = 0600\n", f"socket_mode = 0660\nsocket_group = {SOCKET_GROUP}\n")
    with open(box.config, "w") as f:
        f.write(cfg)
    box.open_to_others()
    box.init_token()
    box.keygen("example.com", "s2026")
    box.keygen("bücher.example", "s2026")
    box.start()
    filter_path = box.reachable_binary("dkimsign-smtpd-filter")
    sink = SmtpSink()
    smtpd = Smtpd(filter_path)
    return filter_path


def main():
    if os.geteuid() != 0:
        print("SKIP: a private OpenSMTPD needs root")
        sys.exit(77)
    start = time.monotonic()
    filter_path = None
    try:
        filter_path = setup()
        try:
            run([test_message_set, test_what_smtpd_changed, test_no_key_logged, test_unsigned_for_good,
                 test_hostile_lines, test_filter_without_socket_group, test_dkimsignd_down, test_every_delivered_message])
        finally:
            for r in results:
                print("result: " + r)
            if smtpd:
                print("\n".join(x for x in smtpd.log().splitlines() if "dkimsign-" in x or "smtp message" in x))
            print(f"total {time.monotonic() - start:.1f}s")
    finally:
        try:
            if smtpd:
                smtpd.stop(filter_path)
        finally:
            try:
                if sink:
                    sink.close()
            finally:
                try:
                    if box:
                        box.close()
                finally:
                    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
