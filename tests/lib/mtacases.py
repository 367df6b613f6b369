# SPDX-License-Identifier: MIT
"""The message set every MTA test sends (issue 20, "Must show"), and the
check of what the MTA delivered.  MTA-agnostic: a test says how to send a
case (a callable), where its delivered messages are and where the lines
that say why a message went unsigned are; this module builds the messages
and judges the result.

    from mtacases import cases, check, smtp_send, dkimsignd_down
    for case in cases():
        smtp_send("127.0.0.1", port, case)     # or the MTA's own way
    for line in check(cases(), lambda: [m.data for m in sink.messages],
                      box.keytable, log=lambda: milter.log() + box.log(),
                      expect={"long-line": unsigned(r"line longer than")}):
        print("result: " + line)

Each message carries `X-Case: NAME` (and "case NAME" as its first body
line, which survives any transfer encoding) so the check finds it among
what the next hop got.  A case is expected signed and verifying with
python3-dkim (tests/lib/verify.py, keys from the test's table) unless the
test overrides it: unsigned(LOG) (delivered without a signature, and LOG,
a regex, is in the log) or absent(LOG) (not delivered: the MTA bounced or
refused it and said so).  Whatever the expectation, a case is never
delivered twice nor lost, and no delivered message (the cases, bounces,
anything) carries a signature that fails.
"""
import os
import re
import smtplib
import subprocess
import time

VERIFY = os.path.join(os.path.dirname(os.path.abspath(__file__)), "verify.py")
CANONS = ["simple/simple", "simple/relaxed", "relaxed/simple", "relaxed/relaxed"]
SIGNING_DOMAIN = "example.com"
# The EAI case's From domain, bücher.example, in the A-label form d= and
# the key's DNS name take (RFC 8616): a test sending cases(eai=True) has
# keys for SIGNING_DOMAIN and for this one.
EAI_DOMAIN = "xn--bcher-kva.example"
KEYLESS_DOMAIN = "example.org"
LONG_LINE = 2000


class Case:
    """One message: data (bytes, CRLF), its envelope (sender, rcpt), whether
    it needs BODY=8BITMIME, and the canonicalization it asks for (None: the
    signer's default; a test that can choose per message, e.g. by rcpt's
    local part or a milter restarted with another canonicalization, reads
    case.canon)."""

    def __init__(self, name, data, sender, rcpt, eight_bit=False, canon=None, domain=SIGNING_DOMAIN):
        self.name = name
        self.data = data
        self.sender = sender
        self.rcpt = rcpt
        self.eight_bit = eight_bit
        self.canon = canon
        self.domain = domain

    def __repr__(self):
        return f"Case({self.name})"


class Expect:
    """What a case must come to: "signed", "unsigned" (with log, a regex
    that must match a log line saying why) or "absent" (not delivered, with
    log saying why)."""

    def __init__(self, outcome, log=None):
        assert outcome in ("signed", "unsigned", "absent"), outcome
        assert outcome == "signed" or log, "an unsigned or absent case needs the log line that says why"
        self.outcome = outcome
        self.log = log

    def __repr__(self):
        return self.outcome + (f" ({self.log})" if self.log else "")


SIGNED = Expect("signed")


def unsigned(log):
    return Expect("unsigned", log)


def absent(log):
    return Expect("absent", log)


# The lines that say a keyless domain's mail was left unsigned: the
# milter's "not signed: no signing key for this domain (From domain
# example.org)", dkimsign's "not signed: ...", dkimsignd's audit line.
NO_KEY_LOG = r"(?i)(no signing key|no_key|no key)[^\n]*example\.org|example\.org[^\n]*(no signing key|no_key|no key)"


def _message(name, head, body, sender=f"alice@{SIGNING_DOMAIN}", from_name="Alice Example", from_addr=None):
    head = f"From: {from_name} <{from_addr or sender}>\r\n" + head + f"X-Case: {name}\r\n"
    return (head + "\r\n" + f"case {name}\r\n" + body).encode()


def _plain_head(name, subject=None):
    return (f"To: Bob <bob@{{rcpt_domain}}>\r\nSubject: {subject or 'test ' + name}\r\n"
            "Date: Sun, 29 Nov 2026 10:00:00 +0000\r\n"
            f"Message-ID: <{name}@{SIGNING_DOMAIN}>\r\n"
            "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=us-ascii\r\n")


PLAIN_BODY = "Hello Bob.\r\n\r\n  Indented line  with  spaces \r\n.dot-stuffed line\r\n\r\n\r\n"


def cases(rcpt_domain="local.test", eai=True):
    """The set, in sending order; recipients are bob@rcpt_domain (the
    canonicalization cases: SIMPLE-RELAXED@rcpt_domain etc., for an MTA
    that picks the signer's canonicalization by recipient).  eai: with the
    case "eai-from" (keys for EAI_DOMAIN needed: every MTA test makes
    them)."""
    rcpt = f"bob@{rcpt_domain}"
    sender = f"alice@{SIGNING_DOMAIN}"
    out = []

    def add(name, head, body=PLAIN_BODY, **kw):
        head = head.replace("{rcpt_domain}", rcpt_domain)
        kw.setdefault("sender", sender)
        kw.setdefault("rcpt", rcpt)
        data = _message(name, head, body, sender=kw["sender"], from_name=kw.pop("from_name", "Alice Example"),
                        from_addr=kw.pop("from_addr", None))
        out.append(Case(name, data, **kw))

    add("plain", _plain_head("plain"))
    add("no-date-no-message-id", "To: Bob <bob@{rcpt_domain}>\r\nSubject: no Date, no Message-ID\r\n")
    add("unqualified-addresses",
        "To: bob, carol@{rcpt_domain},\r\n dave\r\nCc: dave\r\n"
        "Subject: unqualified names\r\nDate: Sun, 29 Nov 2026 10:00:00 +0000\r\n"
        f"Message-ID: <unqualified-addresses@{SIGNING_DOMAIN}>\r\n")
    add("long-line", _plain_head("long-line"), body="x" * LONG_LINE + "\r\nend\r\n")
    add("8bit-body",
        "To: Bob <bob@{rcpt_domain}>\r\nSubject: 8-bit body\r\nDate: Sun, 29 Nov 2026 10:00:00 +0000\r\n"
        f"Message-ID: <8bit-body@{SIGNING_DOMAIN}>\r\nMIME-Version: 1.0\r\n"
        "Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n",
        body="Grüße aus Köln, 8-bit: é ñ ß €\r\n", eight_bit=True)
    add("utf8-headers",
        "To: Bøb <bob@{rcpt_domain}>\r\nSubject: Grüße, 日本語 test\r\nDate: Sun, 29 Nov 2026 10:00:00 +0000\r\n"
        f"Message-ID: <utf8-headers@{SIGNING_DOMAIN}>\r\n", from_name="Ålice Exämple", eight_bit=True)
    # RFC 6532 mail from an internationalized domain: the From address in
    # UTF-8 with U-labels, signed with d= in A-labels.  No Message-ID: a
    # signer that adds one names the domain in A-labels.  The envelope
    # sender is the A-label form, as a next hop without SMTPUTF8 takes it.
    # A 7-bit body: what is looked at is the From domain, not the 8-bit
    # body that some MTA setups leave unsigned (8bit-body covers that).
    if eai:
        add("eai-from", "To: Bob <bob@{rcpt_domain}>\r\nSubject: Grüße aus der Bücherei\r\n"
            "Date: Sun, 29 Nov 2026 10:00:00 +0000\r\nMIME-Version: 1.0\r\n"
            "Content-Type: text/plain; charset=utf-8\r\n",
            body="Hello from the library.\r\n", from_name="Jörg Müller", from_addr="jörg@bücher.example",
            sender=f"joerg@{EAI_DOMAIN}", domain=EAI_DOMAIN, eight_bit=True)
    add("subject-x", "To: bob@{rcpt_domain}\r\nSubject:x\r\nDate: Sun, 29 Nov 2026 10:00:00 +0000\r\n"
        f"Message-ID: <subject-x@{SIGNING_DOMAIN}>\r\n")
    for canon in CANONS:
        name = "canon-" + canon.replace("/", "-")
        add(name, _plain_head(name, subject=f" folded  subject\r\n\tof {name} "), canon=canon,
            rcpt=canon.replace("/", "-") + "@" + rcpt_domain)
    add("no-key", _plain_head("no-key"), sender=f"alice@{KEYLESS_DOMAIN}", domain=KEYLESS_DOMAIN)
    return out


def down_case(rcpt_domain="local.test", name="dkimsignd-down"):
    """The message of the dkimsignd-down scenario."""
    return Case(name, _message(name, _plain_head(name).replace("{rcpt_domain}", rcpt_domain), PLAIN_BODY),
                f"alice@{SIGNING_DOMAIN}", f"bob@{rcpt_domain}")


def expectations(set_, expect=None):
    """name -> Expect: signed, but the keyless domain's case unsigned with
    NO_KEY_LOG; expect (name -> Expect) overrides, per MTA."""
    out = {c.name: SIGNED for c in set_}
    out["no-key"] = unsigned(NO_KEY_LOG)
    for name, e in (expect or {}).items():
        assert name in out, f"no case {name}"
        out[name] = e
    return out


def smtp_send(host, port, case, helo="client.test", timeout=60):
    """Send a case by SMTP (BODY=8BITMIME when it needs it); returns the
    final reply's text (the MTA's queue id is in it)."""
    with smtplib.SMTP(host, port, timeout=timeout) as s:
        s.ehlo(helo)
        code, text = s.mail(case.sender, ["BODY=8BITMIME"] if case.eight_bit else [])
        if code != 250:
            raise smtplib.SMTPSenderRefused(code, text, case.sender)
        code, text = s.rcpt(case.rcpt)
        if code != 250:
            raise smtplib.SMTPRecipientsRefused({case.rcpt: (code, text)})
        code, text = s.data(case.data)
        if code != 250:
            raise smtplib.SMTPDataError(code, text)
    return text.decode(errors="replace")


# --- looking at what was delivered ----------------------------------------------

def _data(m):
    return m if isinstance(m, (bytes, bytearray)) else m.data


def _head(data):
    return data.replace(b"\r\n", b"\n").split(b"\n\n", 1)[0]


def case_name(data):
    """The X-Case of a delivered message, None without one."""
    m = re.search(rb"(?mi)^X-Case:[ \t]*(\S+)", _head(data))
    return m.group(1).decode() if m else None


def delivered(messages, name):
    """The delivered messages (data) of case name."""
    return [_data(m) for m in messages if case_name(_data(m)) == name]


def signatures(data):
    """The tag dicts of the DKIM-Signature fields of data."""
    out = []
    for field in re.findall(rb"(?mi)^DKIM-Signature:.*(?:\n[ \t].*)*", _head(data)):
        tags = {}
        for part in field.split(b":", 1)[1].split(b";"):
            part = b"".join(part.split())
            if b"=" in part:
                k, v = part.split(b"=", 1)
                tags[k.decode()] = v.decode()
        out.append(tags)
    return out


def _canon(tags):
    c = tags.get("c", "simple/simple")
    return c if "/" in c else c + "/simple"


def verify(data, keytable):
    """python3-dkim's verdict on every signature of data (tests/lib/verify.py,
    keys from keytable: name -> record text); returns (ok, its output)."""
    args = ["/usr/bin/python3", VERIFY]
    for name, txt in keytable.items():
        args += ["--key", name, txt if isinstance(txt, str) else txt.decode()]
    p = subprocess.run(args, input=bytes(data), capture_output=True, timeout=120)
    return p.returncode == 0, (p.stdout + p.stderr).decode(errors="replace").strip()


def wait_until(pred, timeout, what):
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout}s")
        time.sleep(0.1)


def check(set_, messages, keytable, log, expect=None, timeout=60):
    """Judge what was delivered.  messages: a callable returning what the
    next hop has now (data bytes or objects with .data); log: a callable
    returning the log text where the "why" lines are; expect: per-MTA
    overrides (expectations()).  Waits (bounded) for every case expected
    delivered.  Returns one result line a case; raises AssertionError on
    the first case that is wrong, after checking that no delivered message
    carries a failing signature."""
    want = expectations(set_, expect)
    names = [c.name for c in set_]
    wait_until(lambda: all(want[n].outcome == "absent" or delivered(messages(), n) for n in names), timeout,
               "every case expected delivered arrived: missing "
               + ", ".join(n for n in names if want[n].outcome != "absent" and not delivered(messages(), n)))
    problems, results = [], []
    # No delivered message with a failing signature, case or not.
    for i, m in enumerate(messages()):
        data = _data(m)
        if signatures(data):
            ok, out = verify(data, keykeys(keytable))
            if not ok:
                problems.append(f"delivered message {i} ({case_name(data)}) has a failing signature: {out}")
    for c in set_:
        e, got = want[c.name], delivered(messages(), c.name)
        if e.outcome == "absent":
            if got:
                problems.append(f"{c.name}: expected not delivered ({e.log}), delivered {len(got)} times")
            elif not re.search(e.log, log(), re.M):
                problems.append(f"{c.name}: not delivered, but no log line matches {e.log!r}")
            else:
                results.append(f"{c.name}: not delivered: {_line(e.log, log())}")
            continue
        if len(got) != 1:
            problems.append(f"{c.name}: delivered {len(got)} times")
            continue
        sigs = signatures(got[0])
        if e.outcome == "unsigned":
            if sigs:
                problems.append(f"{c.name}: expected unsigned ({e.log}), delivered signed")
            elif not re.search(e.log, log(), re.M):
                problems.append(f"{c.name}: delivered unsigned, but no log line matches {e.log!r}")
            else:
                results.append(f"{c.name}: delivered unsigned: {_line(e.log, log())}")
            continue
        if len(sigs) != 1:
            problems.append(f"{c.name}: expected one signature, got {len(sigs)}")
            continue
        t = sigs[0]
        if t.get("d") != c.domain:
            problems.append(f"{c.name}: d={t.get('d')}, not {c.domain}")
        elif c.canon and _canon(t) != c.canon:
            problems.append(f"{c.name}: c={_canon(t)}, not {c.canon}")
        else:
            results.append(f"{c.name}: delivered signed (c={_canon(t)}, h={t.get('h')}), verifies")
    assert not problems, "\n".join(problems + ["-- log --", log()[-4000:]])
    return results


def keykeys(keytable):
    """keytable with its names lowercased, without a trailing dot."""
    return {k.lower().rstrip("."): v for k, v in keytable.items()}


def _line(pattern, text):
    """The whole line where pattern first matches in text."""
    m = re.search(pattern, text, re.M)
    if not m:
        return ""
    start = text.rfind("\n", 0, m.start()) + 1
    end = text.find("\n", m.end())
    return text[start:end if end >= 0 else len(text)].strip()


# --- dkimsignd down -----------------------------------------------------------

def dkimsignd_down(box, send, messages, keytable, log, case=None, mode="deferred", wait_deferred=None, retry=None,
                   unsigned_log=None, timeout=60):
    """dkimsignd stopped while the MTA handles a message, then started
    again; the message is never lost.  send(case) hands it to the MTA.

    mode "deferred" (the default: milter on_tempfail = tempfail, a
    transport filter's exit 75): either send raises a temporary SMTP error
    (4xx: the client keeps the message, and sends it again once dkimsignd
    is back) or the MTA queues it, and wait_deferred() returns once the
    MTA says it deferred it, retry() runs the queue after the restart.
    Nothing is delivered while dkimsignd is down; afterwards the message
    arrives once, signed, and verifies.

    mode "passed" (on_tempfail = accept): the message is delivered at once,
    unsigned, with unsigned_log (a regex) in log(); a second one, sent
    after the restart, arrives signed.  Returns the result lines."""
    case = case or down_case()
    results = []
    box.stop()
    tempfailed = None
    try:
        try:
            send(case)
        except smtplib.SMTPResponseException as e:
            if mode != "deferred" or not 400 <= e.smtp_code < 500:
                raise
            tempfailed = f"{e.smtp_code} {e.smtp_error.decode(errors='replace')}"
        if mode == "deferred":
            if tempfailed:
                results.append(f"{case.name}: dkimsignd down: tempfailed at SMTP ({tempfailed}); the client keeps it")
            else:
                results.append(f"{case.name}: dkimsignd down: queued: {wait_deferred() if wait_deferred else ''}")
            assert not delivered(messages(), case.name), f"{case.name} delivered while dkimsignd was down"
        else:
            wait_until(lambda: delivered(messages(), case.name), timeout, f"{case.name} delivered unsigned")
            got = delivered(messages(), case.name)
            assert len(got) == 1 and not signatures(got[0]), got
            assert unsigned_log and re.search(unsigned_log, log(), re.M), f"no {unsigned_log!r} in the log"
            results.append(f"{case.name}: dkimsignd down: passed unsigned: {_line(unsigned_log, log())}")
    finally:
        box.start()
    if mode == "deferred":
        if tempfailed:
            send(case)
        elif retry:
            retry()
        after = case
    else:
        after = down_case(case.rcpt.split("@", 1)[1], case.name + "-after")
        send(after)
    wait_until(lambda: delivered(messages(), after.name), timeout, f"{after.name} delivered after the restart")
    got = delivered(messages(), after.name)
    assert len(got) == 1, f"{after.name} delivered {len(got)} times"
    assert len(signatures(got[0])) == 1, f"{after.name} not signed after the restart"
    ok, out = verify(got[0], keykeys(keytable))
    assert ok, f"{after.name}: {out}"
    results.append(f"{after.name}: dkimsignd back: delivered signed, verifies")
    return results
