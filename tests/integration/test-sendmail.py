#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""dkimsign-milter behind a private Sendmail 8.17 (docs/sendmail.md), end
to end.  Debian's sendmail-bin and sendmail-cf (and libwrap0, which the
binary loads) are never installed: fetched with `apt-get download` into a
cache under the build directory and unpacked into the test's directory
(tests/lib/debpkg.py).  The test writes an .mc as docs/sendmail.md shows
(INPUT_MAIL_FILTER with its timeouts, the esmtp mailer: L=990, no F=8),
builds sendmail.cf from it with m4 and sendmail-cf's files, and runs
`sendmail -C sendmail.cf -bD` as root on 127.0.0.1 in a UTS namespace of
its own whose host name is mx.example.com (Sendmail sleeps a minute at
start on a host name it cannot qualify, and the test must not change the
machine's).  It relays everything to a loopback SMTP sink without 8BITMIME
(tests/lib/smtpsink.py).

The message set of issue 20 (tests/lib/mtacases.py) goes in by SMTP; the
milter has `mta = sendmail`.  Every delivered message is checked: signed
and passing python3-dkim, or unsigned with the milter's line saying why;
none lost, none with a failing signature.  Sendmail adds Date and
Message-ID after the milter, so the milter adds them: the message without
them arrives with one of each, signed.  Then dkimsignd down (Sendmail
answers 451, the client keeps the message and sends it again; with
on_tempfail = accept it goes on unsigned, with the milter's line), and mail
submitted on the command line with sendmail.cf, which never reaches a
milter and leaves unsigned (docs/sendmail.md: submit.cf).

Not root, or no dkimsign-milter (no libmilter): skipped (exit 77).  A
machine without the package lists or the network fails the test."""
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
from harness import Sandbox, close_all, run, stop_process  # noqa: E402
from smtpsink import SmtpSink  # noqa: E402
from debpkg import library_path, unpack  # noqa: E402
import milterproc  # noqa: E402
from milterproc import Milter  # noqa: E402
import mtacases  # noqa: E402

PACKAGES = ["sendmail-bin", "sendmail-cf", "libwrap0"]
HOSTNAME = "mx.example.com"

box = None
tmp = None
sendmail = None
sink = None
milter = None
results = []


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# The .mc of docs/sendmail.md, with the test's paths.  SMART_HOST with the
# esmtp mailer: what Sendmail uses for a remote MX (L=990, no F=8), not
# the relay mailer (L=2040, F=8).
MC = """\
divert(-1)
divert(0)dnl
OSTYPE(`linux')dnl
define(`confDOMAIN_NAME', `{hostname}')dnl
define(`confSERVICE_SWITCH_FILE', `{dir}/service.switch')dnl
define(`QUEUE_DIR', `{dir}/mqueue')dnl
define(`STATUS_FILE', `{dir}/statistics')dnl
define(`confPID_FILE', `{dir}/sendmail.pid')dnl
define(`ALIAS_FILE', `')dnl
define(`HELP_FILE', `')dnl
define(`confHOST_STATUS_DIRECTORY', `')dnl
define(`confDONT_PROBE_INTERFACES', `True')dnl
define(`confTO_IDENT', `0s')dnl
dnl The test's directory is below /tmp (1777): Sendmail trusts its sticky bit.
define(`confDONT_BLAME_SENDMAIL', `TrustStickyBit')dnl
define(`SMART_HOST', `esmtp:[127.0.0.1]')dnl
define(`ESMTP_MAILER_ARGS', `TCP $h {sink_port}')dnl
FEATURE(`nocanonify')dnl
FEATURE(`accept_unresolvable_domains')dnl
dnl No MSA on port 587: only the test's own port, so two runs can't collide.
FEATURE(`no_default_msa')dnl
DAEMON_OPTIONS(`Port={port}, Addr=127.0.0.1, Name=MTA')dnl
INPUT_MAIL_FILTER(`dkimsign', `S=unix:{milter_socket}, F=T, T=C:30s;S:1m;R:1m;E:5m')dnl
MAILER(`smtp')dnl
"""


class Sendmail:
    def __init__(self, milter_socket, sink_port):
        root = unpack(PACKAGES, os.path.join(tmp, "sendmail-root"))
        self.bin = os.path.join(root, "usr", "libexec", "sendmail", "sendmail")
        # The loader ignores LD_LIBRARY_PATH (libwrap0, unpacked beside it)
        # for a set-group-id program: this copy needs none.
        os.chmod(self.bin, 0o755)
        self.env = dict(os.environ, LD_LIBRARY_PATH=library_path(root))
        self.dir = os.path.join(tmp, "sendmail")
        os.makedirs(os.path.join(self.dir, "mqueue"))
        os.chmod(os.path.join(self.dir, "mqueue"), 0o700)
        with open(os.path.join(self.dir, "service.switch"), "w") as f:
            f.write("hosts files\naliases files\n")
        self.port = free_port()
        mc = os.path.join(self.dir, "sendmail.mc")
        with open(mc, "w") as f:
            f.write(MC.format(hostname=HOSTNAME, dir=self.dir, sink_port=sink_port, port=self.port,
                              milter_socket=milter_socket))
        self.cf = os.path.join(self.dir, "sendmail.cf")
        cfdir = os.path.join(root, "usr", "share", "sendmail", "cf")
        with open(self.cf, "w") as f:
            p = subprocess.run(["m4", f"-D_CF_DIR_={cfdir}/", os.path.join(cfdir, "m4", "cf.m4"), mc], stdout=f,
                               stderr=subprocess.PIPE, text=True, timeout=60)
        assert p.returncode == 0 and not p.stderr, p.stderr
        self.proc = subprocess.Popen(self.command("-bD"), env=self.env, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), 1).close()
                break
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise AssertionError(f"sendmail did not listen: {self.output}")
                time.sleep(0.1)
        self.output = ""

    def command(self, *args):
        """sendmail with the test's sendmail.cf, in a UTS namespace whose
        host name is HOSTNAME."""
        return ["unshare", "--uts", "sh", "-c", f'hostname {HOSTNAME} && exec "$@"', "sh", self.bin, "-C", self.cf,
                *args]

    def run(self, *args, data=None):
        return subprocess.run(self.command(*args), env=self.env, input=data, capture_output=True, timeout=60)

    def queue(self):
        """What `mailq` says (-bp)."""
        p = self.run("-bp")
        return (p.stdout + p.stderr).decode(errors="replace")

    def stop(self):
        stop_process(self.proc)
        self.output = self.proc.stdout.read().decode(errors="replace") if self.proc.stdout else ""


def start_milter(canon, extra=""):
    """The milter of docs/sendmail.md (mta = sendmail), signing with canon,
    on the socket Sendmail's INPUT_MAIL_FILTER names."""
    global milter
    socket_path = milter.socket if milter else None
    if milter:
        milter.stop()
    milter = Milter(tmp, box.socket, "sendmail-milter", socket=socket_path,
                    extra=f"mta = sendmail\ncanonicalization = {canon}\n{extra}", log_level="info")
    milter.canon = canon


def send(case):
    """By SMTP to Sendmail, through a milter signing with the case's
    canonicalization."""
    canon = case.canon or "relaxed/relaxed"
    if milter.canon != canon:
        start_milter(canon)
    return mtacases.smtp_send("127.0.0.1", sendmail.port, case)


def delivered():
    return sink.messages


def logs():
    return milter.log() + box.log()


# Sendmail's changes the milter turns down (client/milter-mta.c).
EXPECT = {
    "unqualified-addresses": mtacases.unsigned(r"not signed: an address without a domain in To, which sendmail "
                                               r"qualifies after signing"),
    "long-line": mtacases.unsigned(r"not signed: a body line longer than the 990 octets sendmail sends unbroken"),
    "8bit-body": mtacases.unsigned(r"not signed: an 8-bit body, which sendmail may convert"),
    "utf8-headers": mtacases.unsigned(r"not signed: 8-bit header fields without MIME-Version, which sendmail labels"),
}


def test_message_set():
    for case in mtacases.cases():
        send(case)
    results.extend(mtacases.check(mtacases.cases(), delivered, box.keytable, logs, expect=EXPECT))


def test_sendmail_changes():
    """What Sendmail did to what it was given: the Date and Message-ID the
    milter added are the only ones (Sendmail did not add its own); the
    unqualified names it qualified, the long line it broke, the 8-bit body
    it converted, each in a message the milter left unsigned."""
    head = mtacases.delivered(delivered(), "no-date-no-message-id")[0].split(b"\r\n\r\n", 1)[0].lower()
    assert head.count(b"\r\ndate:") == 1 and head.count(b"\r\nmessage-id:") == 1, head
    # The milter's Message-ID names Sendmail's host (the j macro).
    assert b"@mx.example.com>" in head, head
    unqual = mtacases.delivered(delivered(), "unqualified-addresses")[0]
    long_line = mtacases.delivered(delivered(), "long-line")[0]
    eight = mtacases.delivered(delivered(), "8bit-body")[0]
    changed = [b"bob@" in unqual.split(b"\r\n\r\n", 1)[0] and "qualified the names",
               b"x" * 2000 not in long_line and "broke the long line",
               b"X-MIME-Autoconverted" in eight and "converted the 8-bit body"]
    results.append("sendmail, after the milter: " + ", ".join(c for c in changed if c))
    assert all(changed), (changed, unqual[:800], eight[:800])


def test_dkimsignd_down():
    """Sendmail answers 451 at the end of DATA (the milter tempfails, F=T):
    the client keeps the message, and once dkimsignd is back it is
    delivered, signed."""
    results.extend(mtacases.dkimsignd_down(box, send, delivered, box.keytable, logs))


def test_dkimsignd_down_accept():
    """With on_tempfail = accept the message goes on at once, unsigned,
    with the milter's line; the next one, once dkimsignd is back, is
    signed."""
    start_milter("relaxed/relaxed", "on_tempfail = accept\n")
    try:
        results.extend(mtacases.dkimsignd_down(
            box, send, delivered, box.keytable, logs, case=mtacases.down_case(name="dkimsignd-down-accept"),
            mode="passed", unsigned_log=r"not signed: dkimsignd unavailable, on_tempfail = accept"))
    finally:
        start_milter("relaxed/relaxed")


def test_command_line_submission_unsigned():
    """`sendmail -C sendmail.cf -t` queues the message without SMTP: no
    milter sees it, and it leaves unsigned, with no line anywhere saying
    so (docs/sendmail.md: submit through submit.cf, which relays by SMTP)."""
    case = mtacases.down_case(name="command-line")
    before = milter.log()
    p = sendmail.run("-t", "-f", case.sender, data=case.data)
    assert p.returncode == 0, p.stdout + p.stderr
    mtacases.wait_until(lambda: mtacases.delivered(delivered(), "command-line"), 60, "command-line delivered")
    got = mtacases.delivered(delivered(), "command-line")
    assert len(got) == 1 and not mtacases.signatures(got[0]), got
    assert milter.log() == before, milter.log()[len(before):]
    results.append("command-line submission with sendmail.cf: delivered unsigned, the milter never saw it")


def test_nothing_left():
    """Nothing is left in Sendmail's queue, and every message the sink got
    is a case's."""
    queue = sendmail.queue()
    assert "is empty" in queue, queue
    names = [mtacases.case_name(m.data) for m in sink.messages]
    assert None not in names and len(names) == len(set(names)), names


def setup():
    global box, tmp, sendmail, sink
    tmp = tempfile.mkdtemp(prefix="dkimsign-sendmail-")
    box = Sandbox()
    box.init_token()
    box.keygen(mtacases.SIGNING_DOMAIN, "s2026")
    box.keygen("bücher.example", "s2026")
    box.start()
    sink = SmtpSink()
    start_milter("relaxed/relaxed")
    sendmail = Sendmail(milter.socket, sink.port)


def main():
    milterproc.require("Sendmail")
    start = time.monotonic()
    try:
        setup()
        try:
            run([test_message_set, test_sendmail_changes, test_dkimsignd_down, test_dkimsignd_down_accept,
                 test_command_line_submission_unsigned, test_nothing_left])
        finally:
            for r in results:
                print("result: " + r)
            if milter:
                print(milter.log())
            print(f"total {time.monotonic() - start:.1f}s")
    finally:
        # Each one stopped whatever the one before raised.
        close_all(sendmail and sendmail.stop, milter and milter.stop, sink and sink.close, box and box.close,
                  lambda: shutil.rmtree(tmp, ignore_errors=True))


if __name__ == "__main__":
    main()
