#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""dkimsign as an Exim transport_filter (docs/exim.md), end to end: a
private Exim 4.96 (Debian's exim4-daemon-heavy, as issue 20 names it,
never installed: fetched with `apt-get download` into a cache under the
build directory, unpacked with `dpkg-deb -x` into the test's own
directory) runs as root with a
configuration of the test's (-C), spool, log and pid file in the test's
directory, listening on 127.0.0.1 only.  It relays everything to a loopback
SMTP sink (tests/lib/smtpsink.py, no 8BITMIME) through a remote_smtp
transport whose transport_filter is `dkimsign --unsigned-ok`, run with the
socket's group (`group =`), as docs/exim.md shows.

The message set of issue 20 (tests/lib/mtacases.py) goes in by SMTP, each
case to the transport of docs/exim.md (the canonicalization cases pick
--canon by recipient), and every message the sink got is checked: signed
and passing python3-dkim, OpenDKIM (when built) and Mail::DKIM against the
records of `dkimsignctl dns-record`, or unsigned with dkimsignd's line
saying why; none lost.  Exim changes nothing after the filter; the one
case it does not send is the 2,000-octet line, which its transport
refuses (message_linelength_limit) before the filter runs, and bounces,
signed; a transport with a raised limit sends it whole, signed.  Then
what is not in the set: the filter without the socket's group, a message
dkimsign refuses for good, dkimsignd down (deferred, then signed).

The shared libraries the heavy binary links (libpq5, libmariadb3,
libspf2-2, ...) are installed packages (TEST_PACKAGES in scripts/lib.sh),
not unpacked beside it: the binary is set-user-id root, so the loader
ignores LD_LIBRARY_PATH whenever Exim runs itself again, and Exim clears
its environment at start (keep_environment).

Exim's own user (Debian-exim, compiled into Debian's binary) must exist:
the test adds it as exim4-base's postinst would (a system user and group)
when it is missing.  A machine without the package lists or the network
fails the test (it is not skipped); the second run finds the package in the
cache.  Not root: skipped (exit 77), as Exim's -C is root's only."""
import grp
import os
import pwd
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
from harness import (Sandbox, close_all, dkimpy_verify, run, signature_fields, stop_process,  # noqa: E402
                     verify_files, write_keytable)
from mtacases import (LONG_LINE, Case, absent, case_name, cases, check, delivered, dkimsignd_down,  # noqa: E402
                      down_case, signatures, smtp_send, wait_until)
from smtpsink import SmtpSink  # noqa: E402
from debpkg import unpack  # noqa: E402

PACKAGE = "exim4-daemon-heavy"
EXIM_USER = "Debian-exim"
# dkimsignd's socket group in the test, which the transport's `group =`
# gives the filter (any group Debian-exim is not in).
SOCKET_GROUP = "mail"
SMTP_PORT = 26250 + os.getpid() % 500

box = None
tmp = None
exim = None
sink = None


# --- Exim, unpacked ----------------------------------------------------------

def exim_binary():
    """The exim4 binary of PACKAGE, unpacked below tmp (tests/lib/debpkg.py)."""
    root = unpack([PACKAGE], os.path.join(tmp, "exim-root"))
    path = os.path.join(root, "usr", "sbin", "exim4")
    assert os.access(path, os.X_OK), path
    return path


def ensure_exim_user():
    """Debian's exim4 looks its user up before reading any configuration;
    add it as exim4-base's postinst does when it is missing."""
    try:
        pwd.getpwnam(EXIM_USER)
    except KeyError:
        subprocess.run(["useradd", "--system", "--user-group", "--no-create-home", "--home-dir", "/var/spool/exim4",
                        "--shell", "/usr/sbin/nologin", "--comment", "Exim mail transport agent", EXIM_USER],
                       check=True, capture_output=True, timeout=60)
    pw = pwd.getpwnam(EXIM_USER)
    assert grp.getgrnam(SOCKET_GROUP).gr_gid != pw.pw_gid, "the socket's group is Exim's primary group"
    assert EXIM_USER not in grp.getgrnam(SOCKET_GROUP).gr_mem, f"{EXIM_USER} is in group {SOCKET_GROUP}"
    return pw


# The transport of docs/exim.md, with the test's paths; $local_part picks
# the canonicalization (one recipient a message), and two transports for
# the checks around it: one without `group =` (the filter then has Exim's
# primary group only) and one that lets a line longer than 998 octets out.
CONFIG = r"""
# $local_part is tainted (it came from the client), and Exim refuses a
# tainted argument in a command; inlist's $value is the list's own item.
CANONS = simple-simple : simple-relaxed : relaxed-simple : relaxed-relaxed

primary_hostname = mx.example.com
qualify_domain = example.com
exim_path = {exim}
spool_directory = {dir}/spool
log_file_path = {dir}/log/%slog
pid_file_path = {dir}/exim.pid
local_interfaces = 127.0.0.1
host_lookup =
rfc1413_hosts =
rfc1413_query_timeout = 0s
tls_advertise_hosts =
keep_environment =
log_selector = +subject +received_recipients
# Received mail waits for a queue run: Exim starts a delivery (or a queue
# runner) by running itself again as its own user, which loses root's
# privilege with -C; the test runs the queue as root instead (Exim.deliver).
queue_only = true
acl_smtp_rcpt = acl_check_rcpt

begin acl

acl_check_rcpt:
  # Submission mode (as an MSA on port 587 would set it), for one local
  # part: Exim then adds Date and Message-ID at reception, before the
  # filter (test_submission_mode).
  accept  hosts = 127.0.0.1
          local_parts = submission
          control = submission/sender_retain
  accept  hosts = 127.0.0.1
  deny    message = relay not permitted

begin routers

to_sink:
  driver = manualroute
  route_list = short.test localhost byname ; * 127.0.0.1
  self = send
  transport = ${{if eq{{$local_part}}{{nogroup}}{{smtp_nogroup}}{{${{if eq{{$local_part}}{{longlines}}{{smtp_longlines}}{{remote_smtp}}}}}}}}
  no_more

begin transports

remote_smtp:
  driver = smtp
  port = {sink_port}
  allow_localhost
  transport_filter = {dkimsign} --socket {socket} --unsigned-ok --queue-id $message_exim_id \
    --canon '${{if inlist{{$local_part}}{{CANONS}}{{${{sg{{$value}}{{-}}{{/}}}}}}{{relaxed/relaxed}}}}'
  group = {group}

smtp_longlines:
  driver = smtp
  port = {sink_port}
  allow_localhost
  message_linelength_limit = 100000
  transport_filter = {dkimsign} --socket {socket} --unsigned-ok --queue-id $message_exim_id
  group = {group}

smtp_nogroup:
  driver = smtp
  port = {sink_port}
  allow_localhost
  transport_filter = {dkimsign} --socket {socket} --unsigned-ok --queue-id $message_exim_id

begin retry

# A rule that gives up after 3 s, for short.test's host (localhost): it
# does not end a message the filter refuses (test_refused_stays_queued).
localhost   *  F,3s,1s
*           *  F,2h,15m; G,16h,1h,1.5; F,4d,6h
"""


class Exim:
    def __init__(self, dkimsign):
        self.bin = exim_binary()
        pw = ensure_exim_user()
        self.dir = os.path.join(tmp, "exim")
        for d in ("spool", "log"):
            os.makedirs(os.path.join(self.dir, d))
            os.chown(os.path.join(self.dir, d), pw.pw_uid, pw.pw_gid)
            os.chmod(os.path.join(self.dir, d), 0o750)
        os.chmod(tmp, 0o755)
        os.chmod(self.dir, 0o755)
        self.config = os.path.join(self.dir, "exim.conf")
        with open(self.config, "w") as f:
            f.write(CONFIG.format(exim=self.bin, dir=self.dir, sink_port=sink.port, dkimsign=dkimsign,
                                  socket=box.socket, group=SOCKET_GROUP))
        p = self.run("-bV")
        assert p.returncode == 0 and "Exim version 4." in p.stdout, p.stdout + p.stderr
        self.version = p.stdout.splitlines()[0]
        # -bdf: the daemon in the foreground, so the test has its pid.
        self.proc = subprocess.Popen([self.bin, "-C", self.config, "-bdf", "-oX", str(SMTP_PORT)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 20
        while True:
            try:
                socket.create_connection(("127.0.0.1", SMTP_PORT), 1).close()
                break
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError("exim did not listen:\n" + self.log("main") + self.log("panic"))
                time.sleep(0.1)

    def deliver(self):
        """One queue run, as root, as a queue runner does it (-q: a
        deferred message waits for its retry time); returns once every
        delivery it started is done."""
        p = self.run("-q")
        assert p.returncode == 0, p.stdout + p.stderr

    def run(self, *args):
        return subprocess.run([self.bin, "-C", self.config, *args], capture_output=True, text=True, timeout=60)

    def log(self, which="main"):
        try:
            with open(os.path.join(self.dir, "log", which + "log"), errors="replace") as f:
                return f.read()
        except FileNotFoundError:
            return ""

    def lines(self, qid):
        return [line for line in self.log().splitlines() if f" {qid} " in line]

    def wait_log(self, pattern, timeout=30):
        """The first main log line matching pattern (a regex)."""
        deadline = time.monotonic() + timeout
        while True:
            m = re.search(pattern, self.log(), re.M)
            if m:
                return m.group(0)
            if time.monotonic() > deadline:
                raise AssertionError(f"no {pattern!r} in Exim's log within {timeout}s:\n{self.log()}")
            time.sleep(0.1)

    def queued(self):
        p = self.run("-bpc")
        assert p.returncode == 0, p.stderr
        return int(p.stdout.strip())

    def stop(self):
        stop_process(self.proc)
        # Exim writes a bounce by running itself as its user, which loses
        # root's privilege for -C and says so here; the bounce is still
        # queued (and checked in test_long_line).  Nothing else may be here.
        panic = [line for line in self.log("panic").splitlines()
                 if line.strip() and not line.endswith("exim user lost privilege for using -C option")]
        assert panic == [], self.log("panic")


# --- the message set -----------------------------------------------------------

qids = {}
results = []


def send(case):
    """Submit by SMTP (tests/lib/mtacases.py), then one queue run; returns
    Exim's queue id (from its 250 reply)."""
    text = smtp_send("127.0.0.1", SMTP_PORT, case)
    m = re.search(r"id=(\S+)", text)
    assert m, text
    qids[case.name] = m.group(1)
    exim.deliver()
    return m.group(1)


def messages():
    return list(sink.messages)


def log():
    """Where the lines saying why are: Exim's main log (a bounce, a
    deferral) and dkimsignd's (a refusal: dkimsign's own line goes to
    syslog)."""
    return exim.log() + box.log()


def renamed(case, name, rcpt=None):
    """case under another name (X-Case, marker line, Message-ID), for a
    second run of it through another transport."""
    return Case(name, case.data.replace(case.name.encode(), name.encode()), case.sender, rcpt or case.rcpt,
                eight_bit=case.eight_bit, canon=case.canon, domain=case.domain)


def verify_all(name, data, count=1):
    """Every verifier passes each of the count signatures of data; returns
    the verifiers' names."""
    assert dkimpy_verify(data, box.keytable), name
    path = os.path.join(tmp, re.sub(r"[^A-Za-z0-9]+", "-", name) + ".eml")
    with open(path, "wb") as f:
        f.write(data)
    verdicts = verify_files([path], write_keytable(box))
    for vname, v in verdicts.items():
        assert v.get(path) == ["pass"] * count, (name, vname, v.get(path))
    return list(verdicts)


def bounces():
    return [m for m in sink.messages if m.mail_from == ""]


# The default transport's message_linelength_limit (998) fails the address
# before Exim runs the filter: the message is bounced, never sent.
LONG_LINE_BOUNCED = r"^.* \*\* bob@local\.test R=to_sink T=remote_smtp: message has lines too long for transport$"


def test_message_set():
    """The message set of issue 20 through remote_smtp (the transport of
    docs/exim.md), each case checked (tests/lib/mtacases.py): signed and
    verifying, the keyless domain's unsigned with dkimsignd's line, the
    2,000-octet line bounced by Exim with its line (and the bounce, which
    goes out through the same filter, is checked with everything else)."""
    set_ = cases()
    for case in set_:
        send(case)
    # The bounce, queued by the delivery that failed, goes at the next run.
    exim.deliver()
    wait_until(lambda: bounces(), 30, "the long line's bounce delivered")
    results.extend(check(set_, messages, box.keytable, log, expect={"long-line": absent(LONG_LINE_BOUNCED)}))


def test_what_exim_did():
    """What Exim did to each case, around the filter: nothing after it.
    The bounce of the long line is signed (every signed message passes
    every verifier: test_every_delivered_message)."""
    got = {c.name: delivered(messages(), c.name) for c in cases()}
    head = got["no-date-no-message-id"][0].split(b"\r\n\r\n", 1)[0]
    added = [f for f in ("Date", "Message-ID") if re.search(rf"(?mi)^{f}:".encode(), head)]
    h = signatures(got["no-date-no-message-id"][0])[0]["h"].lower().split(":")
    results.append(f"no Date, no Message-ID: Exim added {', '.join(added) or 'neither'} "
                   f"(h={':'.join(h)}), signed, verifies")
    assert b"To: bob, carol@local.test,\r\n dave\r\nCc: dave\r\n" in got["unqualified-addresses"][0], \
        got["unqualified-addresses"][0][:800]
    results.append("unqualified names: not rewritten (no *_unqualified_hosts names the client), signed as sent")
    eight = [m for m in sink.messages if case_name(m.data) == "8bit-body"][0]
    assert "Grüße aus Köln".encode() in eight.data and "BODY=8BITMIME" not in " ".join(eight.extensions), \
        eight.extensions
    results.append("8-bit body to a next hop without 8BITMIME: sent as it is (Exim converts nothing), verifies")
    assert "Subject: Grüße, 日本語 test\r\n".encode() in got["utf8-headers"][0]
    assert b"\r\nSubject:x\r\n" in got["subject-x"][0]
    bounce = bounces()
    assert len(bounce) == 1 and b"message has lines too long" in bounce[0].data, [b.data[:500] for b in bounce]
    assert b"X-Case: long-line" in bounce[0].data and len(signatures(bounce[0].data)) == 1, bounce[0].data[:2000]
    # It quotes the message, the long line cut (bounce_return_linesize_limit).
    assert max(len(x) for x in bounce[0].data.split(b"\r\n")) <= 998, "the bounce has a line over 998 octets"
    line = re.search(LONG_LINE_BOUNCED, exim.log(), re.M).group(0)
    results.append(f"2,000-octet line, default transport: bounced before the filter ran "
                   f"({line.split(qids['long-line'], 1)[1].strip()}); the bounce went out signed, verifies")


def test_submission_mode():
    """In submission mode Exim adds Date and Message-ID at reception, so
    the filter signs them as Exim sends them, and the signature holds; the
    unqualified names stay as they are."""
    set_ = [renamed(c, c.name + "-submission", rcpt="submission@local.test") for c in cases()
            if c.name in ("no-date-no-message-id", "unqualified-addresses")]
    for case in set_:
        send(case)
    results.extend(check(set_, messages, box.keytable, log))
    data = delivered(messages(), "no-date-no-message-id-submission")[0]
    head = data.split(b"\r\n\r\n", 1)[0]
    h = signatures(data)[0]["h"].lower().split(":")
    mid = re.search(rb"(?mi)^Message-Id:[^\r]*", head)
    assert re.search(rb"(?mi)^Date:", head) and mid, head
    assert "date" in h and "message-id" in h, h
    results.append(f"submission mode, no Date, no Message-ID: Exim added both at reception "
                   f"({mid.group(0).decode()}), signed, verifies")
    data = delivered(messages(), "unqualified-addresses-submission")[0]
    # Exim 4.96 qualifies header addresses only where a rewriting rule
    # applies; without one they stay as they are, in submission mode too.
    assert b"To: bob, carol@local.test,\r\n dave\r\nCc: dave\r\n" in data, data[:800]
    results.append("submission mode, unqualified names: left as they are (no rewriting rule), signed, verifies")


def test_long_line_raised_limit():
    """A transport that allows longer lines (message_linelength_limit =
    100000) sends the 2,000-octet line whole (Exim never wraps a line),
    signed, and the signature holds."""
    case = renamed([c for c in cases() if c.name == "long-line"][0], "long-line-raised-limit",
                   rcpt="longlines@local.test")
    send(case)
    results.extend(check([case], messages, box.keytable, log))
    assert b"\r\n" + b"x" * LONG_LINE + b"\r\nend\r\n" in delivered(messages(), case.name)[0], "the line was changed"


def test_filter_without_socket_group_defers():
    """Without `group =`, the filter runs with Exim's primary group only
    and cannot open the socket: exit 75, the message deferred (never
    bounced, never sent unsigned)."""
    qid = send(renamed(down_case(), "nogroup", rcpt="nogroup@local.test"))
    line = exim.wait_log(rf"^.* {re.escape(qid)} == nogroup@local\.test .*$")
    assert "transport filter process failed (75)" in line, line
    assert delivered(messages(), "nogroup") == []
    p = exim.run("-Mrm", qid)
    assert p.returncode == 0, p.stdout + p.stderr
    results.append(f"filter without the socket's group: deferred: {line.split(qid, 1)[1].strip()}")


def test_refused_stays_queued():
    """A message dkimsign refuses for good (no From field: exit 65) is
    deferred like any filter failure, and stays deferred after its retry
    rule's cutoff (3 s for short.test's host here): Exim neither bounces
    nor expires it (issue 20), so it waits for the postmaster (-Mrm)."""
    data = b"To: bob@short.test\r\nSubject: no from\r\nX-Case: no-from\r\n\r\ncase no-from\r\n"
    qid = send(Case("no-from", data, "alice@example.com", "bob@short.test"))
    pattern = rf"^.* {re.escape(qid)} == bob@short\.test .*$"
    line = exim.wait_log(pattern)
    assert "transport filter process failed (65)" in line, line
    time.sleep(4)
    exim.deliver()
    assert len(re.findall(pattern, exim.log(), re.M)) == 2, exim.log()
    assert not re.search(rf"^.* {re.escape(qid)} \*\* ", exim.log(), re.M), exim.log()
    assert delivered(messages(), "no-from") == []
    p = exim.run("-Mrm", qid)
    assert p.returncode == 0, p.stdout + p.stderr
    results.append(f"no From (exit 65): deferred at each attempt, past the retry rule's cutoff: "
                   f"{line.split(qid, 1)[1].strip()}")


def test_dkimsignd_down():
    """dkimsignd down: the filter exits 75, Exim defers and keeps the
    message; once dkimsignd is back, a forced queue run (-qff) delivers it
    signed (tests/lib/mtacases.py)."""
    case = down_case()

    def deferred():
        line = exim.wait_log(rf"^.* {re.escape(qids[case.name])} == bob@local\.test .*$")
        assert "transport filter process failed (75)" in line, line
        assert exim.queued() >= 1
        return line.split(qids[case.name], 1)[1].strip()

    def retry():
        p = exim.run("-qff")
        assert p.returncode == 0, p.stdout + p.stderr

    results.extend(dkimsignd_down(box, send, messages, box.keytable, log, case=case, wait_deferred=deferred,
                                  retry=retry))
    assert exim.queued() == 0, exim.run("-bp").stdout


def test_every_delivered_message():
    """Nothing lost, nothing with a failing signature: the sink got each
    case once (the long line as a bounce instead), and the bounce; every
    signed one passes every verifier; the only unsigned one is the keyless
    domain's; nothing is left in Exim's queue."""
    names = sorted(case_name(m.data) or "bounce" for m in sink.messages)
    want = sorted([c.name for c in cases() if c.name != "long-line"]
                  + ["bounce", "long-line-raised-limit", "dkimsignd-down", "no-date-no-message-id-submission",
                     "unqualified-addresses-submission"])
    assert names == want, (names, want)
    for i, m in enumerate(sink.messages):
        if signature_fields(m.data):
            verify_all(f"delivered-{i}", m.data)
    unsigned = [case_name(m.data) for m in sink.messages if not signature_fields(m.data)]
    assert unsigned == ["no-key"], unsigned
    assert exim.queued() == 0, exim.run("-bp").stdout
    # Where the filter failed, Exim closed the connection in DATA, before
    # the final dot: the next hop got no message.
    assert sorted(m.rcpts[0] for m in sink.aborted) == ["bob@local.test", "bob@short.test", "bob@short.test",
                                                         "nogroup@local.test"], \
        [(m.rcpts, m.data[:200]) for m in sink.aborted]
    results.append(f"filter failures: {len(sink.aborted)} SMTP transactions left in DATA, no message sent")


def setup():
    global box, tmp, exim, sink
    tmp = tempfile.mkdtemp(prefix="dkimsign-exim-")
    box = Sandbox()
    # The socket as a package has it: 0660, group SOCKET_GROUP.
    with open(box.config) as f:
        cfg = f.read().replace("socket_mode = 0600\n", f"socket_mode = 0660\nsocket_group = {SOCKET_GROUP}\n")
    with open(box.config, "w") as f:
        f.write(cfg)
    box.init_token()
    box.keygen("example.com", "s2026")
    box.keygen("bücher.example", "s2026")
    box.start()
    # Exim's user runs the filter: a copy it can reach and a socket
    # directory it can enter.
    dkimsign = box.reachable_binary("dkimsign")
    sink = SmtpSink()
    exim = Exim(dkimsign)
    print(exim.version)


def main():
    if os.geteuid() != 0:
        print("SKIP: a private Exim with -C needs root")
        sys.exit(77)
    start = time.monotonic()
    try:
        setup()
        run_tests = [test_message_set, test_what_exim_did, test_submission_mode, test_long_line_raised_limit,
                     test_filter_without_socket_group_defers, test_refused_stays_queued, test_dkimsignd_down,
                     test_every_delivered_message]
        try:
            run(run_tests)
        finally:
            for r in results:
                print("result: " + r)
            if exim:
                print(exim.log())
            print(f"total {time.monotonic() - start:.1f}s")
    finally:
        # Each one stopped whatever the one before raised: the Exim
        # daemon, the sink, dkimsignd, then the directory.
        close_all(exim and exim.stop, sink and sink.close, box and box.close,
                  lambda: shutil.rmtree(tmp, ignore_errors=True))


if __name__ == "__main__":
    main()
