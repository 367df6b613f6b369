#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""dkimsign-milter behind a private Postfix that relays to a loopback SMTP
sink without 8BITMIME (tests/lib/smtpsink.py), with the message set of
issue 20 (tests/lib/mtacases.py): every delivered message signed and
passing python3-dkim, or unsigned with the milter's line saying why; none
lost, none with a failing signature.

Twice: Postfix's defaults with the milter's (mta = postfix: a line over
smtp_line_length_limit, 998, and an 8-bit body, which Postfix would
convert to quoted-printable, pass unsigned), then the main.cf of
dkimsign-milter(8) (disable_mime_output_conversion = yes) with
converts_8bit = no, where the 8-bit cases are signed and arrive as they
were sent.  Postfix adds Date and Message-ID, and qualifies names without
a domain, before its milters see the header: those cases are signed.
Then dkimsignd down (Postfix answers 451, the client sends again later).

Not root, no postfix, or no dkimsign-milter: skipped (exit 77) as
test-milter.py does."""
import os
import shutil
import socket
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
from harness import Sandbox, close_all, run  # noqa: E402
from smtpsink import SmtpSink  # noqa: E402
import milterproc  # noqa: E402
from milterproc import Milter  # noqa: E402
from postfixproc import RelayPostfix  # noqa: E402
import mtacases  # noqa: E402

box = None
tmp = None
sink = None
results = []

# Postfix's changes the milter turns down with its defaults.
EXPECT_DEFAULT = {
    "long-line": mtacases.unsigned(r"not signed: a body line longer than the 998 octets postfix sends unbroken"),
    "8bit-body": mtacases.unsigned(r"not signed: an 8-bit body, which postfix may convert"),
}
# dkimsign-milter(8)'s main.cf lines for 8-bit mail, and the milter's.
NO_CONVERSION = "disable_mime_output_conversion = yes\n"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Setup:
    """A milter (one per canonicalization, restarted on the same socket)
    and a Postfix in front of it, in a directory of their own."""

    def __init__(self, name, milter_extra="", postfix_extra=""):
        self.dir = os.path.join(tmp, name)
        os.makedirs(self.dir)
        os.chmod(self.dir, 0o755)
        self.name, self.milter_extra = name, milter_extra
        self.milter = None
        self.start_milter("relaxed/relaxed")
        try:
            self.postfix = RelayPostfix(os.path.join(self.dir, "postfix"), free_port(), f"127.0.0.1:{sink.port}",
                                        [self.milter.socket], postfix_extra)
        except BaseException:
            # Not left running when Postfix does not start.
            self.milter.stop()
            raise

    def start_milter(self, canon):
        socket_path = self.milter.socket if self.milter else None
        if self.milter:
            self.milter.stop()
        self.milter = Milter(self.dir, box.socket, "milter", socket=socket_path, log_level="info",
                             extra=f"mta = postfix\ncanonicalization = {canon}\n{self.milter_extra}")
        self.canon = canon

    def send(self, case):
        canon = case.canon or "relaxed/relaxed"
        if canon != self.canon:
            self.start_milter(canon)
        return mtacases.smtp_send("127.0.0.1", self.postfix.port, case)

    def logs(self):
        return self.milter.log() + box.log() + self.postfix.log()

    def close(self):
        close_all(self.postfix.stop, self.milter.stop)


def delivered():
    return sink.messages


def test_defaults():
    """Postfix's defaults, mta = postfix."""
    s = Setup("default")
    try:
        for case in mtacases.cases():
            s.send(case)
        results.extend("defaults: " + r for r in mtacases.check(mtacases.cases(), delivered, box.keytable, s.logs,
                                                                 expect=EXPECT_DEFAULT))
        # What Postfix did: it added Date and Message-ID and qualified the
        # names before the milter (signed, verified above), and it broke
        # the long line and converted the 8-bit body after it.
        nodate = mtacases.delivered(delivered(), "no-date-no-message-id")[0].split(b"\r\n\r\n", 1)[0].lower()
        assert b"\r\ndate:" in nodate and b"\r\nmessage-id:" in nodate, nodate
        unqual = mtacases.delivered(delivered(), "unqualified-addresses")[0]
        assert b"bob@example.com" in unqual, unqual[:1500]
        long_line = mtacases.delivered(delivered(), "long-line")[0]
        eight = mtacases.delivered(delivered(), "8bit-body")[0]
        assert b"x" * 2000 not in long_line, "Postfix sent the 2,000-octet line whole"
        assert b"quoted-printable" in eight.lower(), eight[:1500]
        results.append("defaults: Postfix added Date/Message-ID and qualified names before the milter; "
                       "broke the long line and converted the 8-bit body after it")
        results.extend("defaults: " + r for r in mtacases.dkimsignd_down(box, s.send, delivered, box.keytable, s.logs))
    finally:
        s.close()


def test_no_conversion():
    """disable_mime_output_conversion = yes and converts_8bit = no: the
    8-bit cases (renamed, so the set's check sees them apart) are signed
    and arrive as they were sent."""
    s = Setup("noconv", milter_extra="converts_8bit = no\n", postfix_extra=NO_CONVERSION)
    try:
        cases = []
        for case in mtacases.cases():
            if case.eight_bit:
                case.data = case.data.replace(f"X-Case: {case.name}".encode(), f"X-Case: noconv-{case.name}".encode())
                case.name = "noconv-" + case.name
                cases.append(case)
                s.send(case)
        results.extend("no conversion: " + r for r in mtacases.check(cases, delivered, box.keytable, s.logs))
        for case in cases:
            body = case.data.split(b"\r\n\r\n", 1)[1]
            assert body in mtacases.delivered(delivered(), case.name)[0], case.name
    finally:
        s.close()


def test_nothing_else():
    """The sink got nothing but the cases, each once."""
    names = [mtacases.case_name(m.data) for m in sink.messages]
    assert None not in names and len(names) == len(set(names)), names


def main():
    milterproc.require("Postfix")
    global box, tmp, sink
    start = time.monotonic()
    tmp = tempfile.mkdtemp(prefix="dkimsign-postfix-")
    # Postfix's processes run as user postfix and must reach their directories.
    os.chmod(tmp, 0o755)
    try:
        box = Sandbox()
        box.init_token()
        box.keygen(mtacases.SIGNING_DOMAIN, "s2026")
        box.keygen("bücher.example", "s2026")
        box.start()
        sink = SmtpSink()
        try:
            run([test_defaults, test_no_conversion, test_nothing_else])
        finally:
            for r in results:
                print("result: " + r)
            print(f"total {time.monotonic() - start:.1f}s")
    finally:
        close_all(sink and sink.close, box and box.close, lambda: shutil.rmtree(tmp, ignore_errors=True))


if __name__ == "__main__":
    main()
