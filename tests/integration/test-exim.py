#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""dkimsign as an Exim transport_filter (docs/exim.md), end to end: a
private Exim 4.96 (Debian's exim4-daemon-light, never installed: fetched
with `apt-get download` into a cache under the build directory, unpacked
with `dpkg-deb -x` into the test's own directory) runs as root with a
configuration of the test's (-C), spool, log and pid file in the test's
directory, listening on 127.0.0.1 only.  It relays everything to a loopback
SMTP sink (tests/lib/smtpsink.py, no 8BITMIME) through a remote_smtp
transport whose transport_filter is `dkimsign --unsigned-ok`, run with the
socket's group (`group =`), as docs/exim.md shows.

The message set of issue 20 goes in by SMTP: plain; no Date and no
Message-ID; address lists with unqualified names; a 2,000-octet body line;
an 8-bit body; UTF-8 header fields; `Subject:x`; every canonicalization
pair (--canon); a domain without a key; dkimsignd down.  Every message
delivered to the sink is checked: signed and passing python3-dkim, OpenDKIM
(when built) and Mail::DKIM against the records of `dkimsignctl
dns-record`, or unsigned with dkimsignd's line saying why; none is lost.

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
import smtplib
import socket
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
from harness import BUILD, Sandbox, close_all, dkimpy_verify, run, signature_fields, stop_process, tags  # noqa: E402
from smtpsink import SmtpSink  # noqa: E402
from debpkg import unpack  # noqa: E402

PACKAGE = "exim4-daemon-light"
EXIM_USER = "Debian-exim"
# dkimsignd's socket group in the test, which the transport's `group =`
# gives the filter (any group Debian-exim is not in).
SOCKET_GROUP = "mail"
TOOLS = os.path.join(os.path.dirname(__file__), "..", "tools")
SMTP_PORT = 26250 + os.getpid() % 500
CANONS = ["simple/simple", "simple/relaxed", "relaxed/simple", "relaxed/relaxed"]

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

def message(marker, sender="alice@example.com", head=None, body=None, subject=None):
    """A message as an MUA writes it; head: the header fields after From
    (default To, Subject, Date, Message-ID, MIME fields)."""
    if head is None:
        head = ("To: Bob <bob@local.test>\r\n"
                f"Subject: {subject or 'test ' + marker}\r\n"
                "Date: Sun, 29 Nov 2026 10:00:00 +0000\r\n"
                f"Message-ID: <{marker}@example.com>\r\n"
                "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=us-ascii\r\n")
    if body is None:
        body = "Hello Bob.\r\n\r\n  Indented line  with  spaces \r\n.dot-stuffed line\r\n\r\n\r\n"
    text = f"From: Alice Example <{sender}>\r\n{head}\r\n{marker}\r\n{body}"
    return text.encode() if isinstance(text, str) else text


def send(data, rcpt="bob@local.test", sender="alice@example.com", eight_bit=False):
    """Submit by SMTP; returns Exim's queue id (from its 250 reply)."""
    with smtplib.SMTP("127.0.0.1", SMTP_PORT, timeout=60) as s:
        s.ehlo("client.test")
        s.mail(sender, ["BODY=8BITMIME"] if eight_bit else [])
        code, text = s.rcpt(rcpt)
        assert code == 250, (code, text)
        code, text = s.data(data)
        assert code == 250, (code, text)
    m = re.search(rb"id=(\S+)", text)
    assert m, text
    exim.deliver()
    return m.group(1).decode()


def verify_all(name, data, count=1):
    """Every verifier passes each of the count signatures of data; returns
    the verifiers' names."""
    assert dkimpy_verify(data, box.keytable), name
    path = os.path.join(tmp, re.sub(r"[^A-Za-z0-9]+", "-", name) + ".eml")
    with open(path, "wb") as f:
        f.write(data)
    keytable = os.path.join(tmp, "keytable")
    with open(keytable, "w") as f:
        for n, txt in box.keytable.items():
            f.write(f"{n} {txt}\n")
    verifiers = [("python3-dkim", ["/usr/bin/python3", os.path.join(TOOLS, "dkimpy-verify.py")]),
                 ("Mail::DKIM", ["/usr/bin/perl", os.path.join(TOOLS, "maildkim-verify.pl")])]
    opendkim = os.path.join(BUILD, "tests", "tools", "opendkim-verify")
    if os.path.exists(opendkim):
        verifiers.append(("OpenDKIM", [opendkim]))
    for vname, command in verifiers:
        p = subprocess.run(command + ["--keytable", keytable, path], capture_output=True, text=True, timeout=60)
        verdicts = p.stdout.rstrip("\n").rsplit("\t", 1)[-1].split(",")
        assert p.returncode == 0 and verdicts == ["pass"] * count, (name, vname, p.stdout, p.stderr)
    return [v for v, _ in verifiers]


results = []


def delivered_signed(name, marker, qid, canon="relaxed/relaxed"):
    """The sink got the message once, with one signature (d=example.com,
    c=canon) that every verifier passes; Exim logged its delivery."""
    m = sink.wait_for(marker.encode())
    assert len(sink.find(marker.encode())) == 1, name
    fields = signature_fields(m.data)
    assert len(fields) == 1, (name, m.data[:3000])
    t = tags(fields[0])
    assert t["d"] == "example.com" and t.get("c", "simple/simple") == canon, (name, t)
    verifiers = verify_all(name, m.data)
    exim.wait_log(rf"^.* {re.escape(qid)} Completed$")
    results.append(f"{name}: delivered signed ({canon}), passes {', '.join(verifiers)}")
    return m


# --- the tests -----------------------------------------------------------------

def test_plain():
    qid = send(message("m-plain"))
    delivered_signed("plain", "m-plain", qid)
    line = exim.wait_log(rf"^.* {re.escape(qid)} => bob@local\.test .*$")
    assert "T=remote_smtp" in line, line


def test_no_date_no_message_id():
    """Exim adds neither to mail from a remote client (it is not
    submission mode), so the delivered message has none; whatever Exim
    adds, it adds before the filter signs."""
    head = "To: Bob <bob@local.test>\r\nSubject: no date\r\n"
    qid = send(message("m-nodate", head=head))
    m = delivered_signed("no Date, no Message-ID", "m-nodate", qid)
    hdr = m.data.split(b"\r\n\r\n", 1)[0].lower()
    added = [f for f in (b"\r\ndate:", b"\r\nmessage-id:") if f in hdr]
    results[-1] += f" (Exim added: {', '.join(f.decode().strip() for f in added) or 'nothing'})"


def test_unqualified_address_lists():
    head = ("To: bob, carol@local.test,\r\n dave\r\nCc: eve, Frank <frank>\r\n"
            "Subject: unqualified\r\nMessage-ID: <m-unqual@example.com>\r\n")
    qid = send(message("m-unqual", head=head))
    m = delivered_signed("unqualified address lists", "m-unqual", qid)
    # Not rewritten: no sender_unqualified_hosts or
    # recipient_unqualified_hosts names the client.
    assert b"To: bob, carol@local.test,\r\n dave\r\n" in m.data, m.data[:2000]


def test_long_line():
    """A 2,000-octet body line: through the default transport Exim fails
    the address (message_linelength_limit, 998) before it runs the filter,
    and bounces; a transport that allows longer lines sends the line
    whole (Exim never wraps it), signed, and the signature verifies."""
    body = "x" * 2000 + "\r\nend\r\n"
    qid = send(message("m-long", body=body))
    line = exim.wait_log(rf"^.* {re.escape(qid)} \*\* bob@local\.test .*$")
    assert "message has lines too long for transport" in line, line
    assert sink.find(b"m-long\r\n" + b"x" * 10) == [], "the too-long message left"
    # The bounce (from <>, From Mailer-Daemon@example.com: qualify_domain)
    # goes out through the same transport at the next queue run, signed.
    exim.deliver()
    bounce = sink.wait_for(b"message has lines too long")
    assert bounce.mail_from == "" and len(signature_fields(bounce.data)) == 1, bounce.data[:2000]
    verify_all("bounce", bounce.data)
    results.append(f"2,000-octet line, default transport: not sent, bounced by Exim "
                   f"({line.split(qid, 1)[1].strip()}); the bounce delivered signed, verifies")
    qid = send(message("m-long-ok", body=body), rcpt="longlines@local.test")
    m = delivered_signed("2,000-octet line, message_linelength_limit = 100000", "m-long-ok", qid)
    assert b"\r\n" + b"x" * 2000 + b"\r\nend\r\n" in m.data, "the line was changed"


def test_8bit_body():
    """BODY=8BITMIME in, a next hop without 8BITMIME: Exim sends the
    octets as they are (it converts nothing), so the signature holds."""
    body = "Grüße aus Köln, 8-bit: é ñ ß €\r\n".encode()
    head = ("To: Bob <bob@local.test>\r\nSubject: 8bit\r\nMIME-Version: 1.0\r\n"
            "Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n")
    data = b"From: Alice Example <alice@example.com>\r\n" + head.encode() + b"\r\nm-8bit\r\n" + body
    qid = send(data, eight_bit=True)
    m = delivered_signed("8-bit body to a 7-bit next hop", "m-8bit", qid)
    assert body in m.data and "BODY=8BITMIME" not in " ".join(m.extensions), m.extensions


def test_utf8_headers():
    data = ("From: Ålice Exämple <alice@example.com>\r\nTo: Bøb <bob@local.test>\r\n"
            "Subject: Grüße, 日本語 test\r\n\r\nm-utf8hdr\r\nbody\r\n").encode()
    qid = send(data, eight_bit=True)
    m = delivered_signed("UTF-8 header fields", "m-utf8hdr", qid)
    assert "Subject: Grüße, 日本語 test\r\n".encode() in m.data


def test_subject_no_space():
    head = "To: bob@local.test\r\nSubject:x\r\nMessage-ID: <m-subjx@example.com>\r\n"
    qid = send(message("m-subjx", head=head))
    m = delivered_signed("Subject:x", "m-subjx", qid)
    assert b"\r\nSubject:x\r\n" in m.data


def test_every_canonicalization():
    for canon in CANONS:
        marker = "m-canon-" + canon.replace("/", "-")
        qid = send(message(marker, subject=f" folded  subject\r\n\tof {marker} "),
                   rcpt=canon.replace("/", "-") + "@local.test")
        delivered_signed(f"--canon {canon}", marker, qid, canon)


def test_domain_without_key():
    """Delivered unsigned and unchanged (not one line of dkimsign's in
    it); dkimsignd logged why."""
    data = message("m-nokey", sender="alice@example.org")
    qid = send(data, sender="alice@example.org")
    m = sink.wait_for(b"m-nokey")
    assert signature_fields(m.data) == [], m.data[:2000]
    assert m.data.endswith(data.split(b"\r\n\r\n", 1)[1]) and b"dkimsign" not in m.data, m.data[:2000]
    exim.wait_log(rf"^.* {re.escape(qid)} Completed$")
    assert "example.org" in box.log(), box.log()
    line = [x for x in box.log().splitlines() if "example.org" in x][-1]
    results.append(f"domain without a key: delivered unsigned; dkimsignd: {line.strip()}")


def test_filter_without_socket_group_defers():
    """Without `group =`, the filter runs with Exim's primary group only
    and cannot open the socket: exit 75, the message deferred (never
    bounced, never sent unsigned)."""
    qid = send(message("m-nogroup"), rcpt="nogroup@local.test")
    line = exim.wait_log(rf"^.* {re.escape(qid)} == nogroup@local\.test .*$")
    assert "transport filter process failed (75)" in line, line
    assert sink.find(b"m-nogroup") == []
    p = exim.run("-Mrm", qid)
    assert p.returncode == 0, p.stdout + p.stderr
    results.append(f"filter without the socket's group: deferred: {line.split(qid, 1)[1].strip()}")


def test_refused_stays_queued():
    """A message dkimsign refuses for good (no From field: exit 65) is
    deferred like any filter failure, and stays deferred after its retry
    rule's cutoff (3 s for short.test's host here): Exim neither bounces
    nor expires it (issue 20), so it waits for the postmaster (-Mrm)."""
    data = b"To: bob@short.test\r\nSubject: no from\r\n\r\nm-nofrom\r\n"
    qid = send(data, rcpt="bob@short.test")
    pattern = rf"^.* {re.escape(qid)} == bob@short\.test .*$"
    line = exim.wait_log(pattern)
    assert "transport filter process failed (65)" in line, line
    time.sleep(4)
    exim.deliver()
    assert len(re.findall(pattern, exim.log(), re.M)) == 2, exim.log()
    assert not re.search(rf"^.* {re.escape(qid)} \*\* ", exim.log(), re.M), exim.log()
    assert sink.find(b"m-nofrom") == []
    p = exim.run("-Mrm", qid)
    assert p.returncode == 0, p.stdout + p.stderr
    results.append(f"no From (exit 65): deferred at each attempt, past the retry rule's cutoff: "
                   f"{line.split(qid, 1)[1].strip()}")


def test_dkimsignd_down():
    """dkimsignd down: the filter exits 75, Exim defers and keeps the
    message; once dkimsignd is back, a forced queue run (-qff) delivers it
    signed."""
    box.stop()
    try:
        qid = send(message("m-down"))
        line = exim.wait_log(rf"^.* {re.escape(qid)} == bob@local\.test .*$")
        assert "transport filter process failed (75)" in line, line
        assert exim.queued() >= 1
        assert sink.find(b"m-down") == []
    finally:
        box.start()
    results.append(f"dkimsignd down: deferred: {line.split(qid, 1)[1].strip()}")
    p = exim.run("-qff")
    assert p.returncode == 0, p.stdout + p.stderr
    delivered_signed("dkimsignd down, then back and -qff", "m-down", qid)
    assert exim.queued() == 0, exim.run("-bp").stdout


def test_every_delivered_message():
    """Of everything the sink got, each message is signed and verifies,
    or is the one of the domain without a key; nothing was lost (each
    message sent is there, bar the one removed and the one bounced)."""
    unsigned = []
    for i, m in enumerate(sink.messages):
        if signature_fields(m.data):
            verify_all(f"delivered-{i}", m.data)
        else:
            unsigned.append(m)
    assert [b"m-nokey" in m.data for m in unsigned] == [True], [(m.mail_from, m.rcpts, m.data[:300]) for m in unsigned]
    for marker in ("m-plain", "m-nodate", "m-unqual", "m-long-ok", "m-8bit", "m-utf8hdr", "m-subjx", "m-nokey",
                   "m-down") + tuple("m-canon-" + c.replace("/", "-") for c in CANONS):
        assert len(sink.find(marker.encode() + b"\r\n")) == 1, marker
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
        run_tests = [test_plain, test_no_date_no_message_id, test_unqualified_address_lists, test_long_line,
                     test_8bit_body, test_utf8_headers, test_subject_no_space, test_every_canonicalization,
                     test_domain_without_key, test_filter_without_socket_group_defers, test_refused_stays_queued,
                     test_dkimsignd_down,
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
