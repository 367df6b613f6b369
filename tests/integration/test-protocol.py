#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""The socket is the daemon's attack surface: feed the running daemon what
libdkimsign never sends (truncated and oversize frames, 0-byte and 4 GiB
length claims, unknown types, out-of-bounds fields, trailing garbage, NUL
and invalid UTF-8 in headers, 5,000 headers, a slow-loris client, 2,000
idle connections, incompatible versions).  After each case the daemon must
still sign a valid message correctly, and its memory and descriptors must
be back to where they were."""
import os
import resource
import struct
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
import wire  # noqa: E402
from harness import Sandbox, dkimpy_verify, run  # noqa: E402

HEADERS = (b"From: Alice <alice@example.com>\r\nTo: bob@example.net\r\nSubject: hi\r\n"
           b"Date: Sun, 29 Nov 2026 10:00:00 +0000\r\nMessage-ID: <p@example.com>\r\n")
MESSAGE = HEADERS + b"\r\nHello.\r\n"
READ_TIMEOUT = 2
RSS_SLACK_KIB = 1024
SANITIZED = os.environ.get("DKIMSIGN_SANITIZED") == "1"  # RSS is meaningless under ASan

box = None
baseline = {}


def setup():
    global box
    # One uid opens the 2,000 connections below: its share must allow them.
    box = Sandbox(extra_config=f"[limits]\nread_timeout = {READ_TIMEOUT}s\nmax_connections_per_uid = 4096\n")
    box.init_token()
    box.keygen("example.com", "p1")
    box.start()
    # Warm up every path once (workers, arenas, both reply kinds), then
    # take the baseline the later cases are held to.
    for _ in range(20):
        assert_signs()
        c = hello_conn()
        c.send(wire.sign(2, b"To: x@example.com\r\n"))
        c.recv_frame()
        c.close()
    settle()
    baseline["rss"] = wire.rss_kib(box.daemon.pid)
    baseline["fds"] = wire.open_fds(box.daemon.pid)
    print(f"  baseline: RSS {baseline['rss']} KiB, {baseline['fds']} descriptors")


def settle():
    time.sleep(1.3)  # the daemon sweeps and trims once a second


def assert_signs():
    p = box.sign(MESSAGE)
    assert p.returncode == 0, p.stderr
    assert dkimpy_verify(p.stdout, box.keytable), "the daemon's signature no longer verifies"


def assert_recovered(case):
    """The daemon signs correctly and holds no more than before."""
    assert box.daemon.poll() is None, f"dkimsignd died after {case}:\n{box.log()}"
    assert_signs()
    settle()
    rss, fds = wire.rss_kib(box.daemon.pid), wire.open_fds(box.daemon.pid)
    print(f"  {case}: RSS {rss} KiB ({rss - baseline['rss']:+d}), {fds} descriptors")
    assert fds == baseline["fds"], f"{case}: {fds} descriptors open, {baseline['fds']} before"
    assert SANITIZED or rss <= baseline["rss"] + RSS_SLACK_KIB, f"{case}: RSS {rss} KiB, {baseline['rss']} KiB before"


def hello_conn():
    c = wire.Conn(box.socket)
    c.send(wire.hello())
    t, rid, payload = c.recv_frame()
    assert t == wire.HELLO_OK and rid == 1, (t, rid)
    return c


def expect_error(c, rid, status, closes, text=None):
    f = c.recv_frame()
    assert f is not None, "closed without an ERROR frame"
    t, got_id, payload = f
    assert t == wire.ERROR, f"expected ERROR, got type {t}"
    st, temporary, detail, msg = wire.parse_error(payload)
    assert (got_id, st) == (rid, status), (got_id, st, msg)
    assert msg, "an ERROR must carry a sentence"
    if text:
        assert text in msg, msg
    if closes:
        assert c.closed_by_peer(), "the daemon should close this connection"
    return msg


def test_truncated_frames():
    full = wire.hello() + wire.sign(2, HEADERS)
    for cut in (1, 3, 4, 7, len(wire.hello()) + 6, len(full) - 1):
        c = wire.Conn(box.socket)
        c.send(full[:cut])
        c.close()
    assert_recovered("truncated frames")


def test_length_claims():
    for prefix, status in ((b"\x00\x00\x00\x00", 1), (b"\x00\x00\x00\x04", 1),
                           (b"\xff\xff\xff\xff", 3), (struct.pack(">I", 1024 * 1024 + 1), 3)):
        c = wire.Conn(box.socket)
        c.send(prefix + b"\x01\x00\x00\x00\x01")
        expect_error(c, 0, status, closes=True)
        c.close()
    assert_recovered("0-byte, 4-byte, 4 GiB and oversize length claims")


def test_unknown_type_keeps_connection():
    c = hello_conn()
    c.send(wire.frame(99, 5, b"\x00\x01\x02"))
    expect_error(c, 5, 1, closes=False, text="unknown message type 99")
    c.send(wire.sign(6, HEADERS))
    t, rid, payload = c.recv_frame()
    assert (t, rid) == (wire.SIGNED, 6), (t, rid)
    c.close()
    assert_recovered("unknown message type")


def test_sign_before_hello():
    c = wire.Conn(box.socket)
    c.send(wire.sign(3, HEADERS))
    expect_error(c, 3, 1, closes=True, text="HELLO must come first")
    c.close()
    assert_recovered("SIGN before HELLO")


def test_fields_out_of_bounds():
    c = hello_conn()
    bad = [
        wire.sign(10, HEADERS, body_hash=b"\x00" * 31),                      # hash too short
        wire.sign(11, HEADERS, domain=b"a" * 254),                            # domain too long
        wire.sign(12, HEADERS, hcanon=7),                                     # no such canonicalization
        wire.frame(wire.SIGN, 13, b"\x01\x01" + struct.pack(">I", 1 << 30)),  # field past the frame
        wire.sign(14, HEADERS)[:-0 or None] + b"",                            # placeholder, replaced below
    ]
    # Trailing octets inside an otherwise valid SIGN payload.
    valid = wire.sign(14, HEADERS)
    bad[4] = struct.pack(">I", struct.unpack(">I", valid[:4])[0] + 2) + valid[4:] + b"xx"
    for i, f in enumerate(bad):
        c.send(f)
        expect_error(c, 10 + i, 1, closes=False)
    c.send(wire.sign(20, HEADERS, domain=b"not a domain"))
    expect_error(c, 20, 1, closes=False, text="not a valid domain name")
    c.close()
    assert_recovered("fields out of bounds")


def test_garbage_after_valid_frame():
    c = wire.Conn(box.socket)
    c.send(wire.hello() + os.urandom(3000))
    t, rid, _ = c.recv_frame()
    assert t == wire.HELLO_OK
    f = c.recv_frame()
    assert f is None or f[0] == wire.ERROR, f
    assert f is None or c.closed_by_peer()
    c.close()
    assert_recovered("garbage after a valid frame")


def test_nul_and_invalid_utf8_in_headers():
    c = hello_conn()
    c.send(wire.sign(2, HEADERS + b"X-Bad: a\x00b\r\n"))
    expect_error(c, 2, 4, closes=False, text="malformed")
    c.close()
    # Invalid UTF-8 is only 8-bit data (RFC 6532 allows UTF-8; DKIM signs octets).
    p = box.sign(HEADERS.replace(b"Subject: hi", b"Subject: \xff\xfe \xc3\x28 bad utf-8") + b"\r\nbody\r\n")
    assert p.returncode == 0, p.stderr
    assert dkimpy_verify(p.stdout, box.keytable)
    assert_recovered("NUL and invalid UTF-8 in headers")


def test_five_thousand_headers():
    many = HEADERS + b"".join(b"X-Filler-%d: value %d\r\n" % (i, i) for i in range(5000))
    c = hello_conn()
    c.send(wire.sign(2, many))
    msg = expect_error(c, 2, 3, closes=False)
    assert "limit" in msg, msg
    c.close()
    p = box.sign(many + b"\r\nbody\r\n")
    assert p.returncode == 65 and b"limit" in p.stderr, (p.returncode, p.stderr)
    assert_recovered("5,000 headers")


def test_slow_loris():
    c = wire.Conn(box.socket, timeout=READ_TIMEOUT + 5)
    c.send(wire.hello())
    c.recv_frame()
    half = wire.sign(2, HEADERS)
    c.send(half[:len(half) // 2])
    start = time.monotonic()
    # Others are served while the half frame waits.
    assert_signs()
    assert c.closed_by_peer(), "a half frame must be dropped after the read timeout"
    waited = time.monotonic() - start
    assert READ_TIMEOUT - 0.5 <= waited <= READ_TIMEOUT + 3, waited
    c.close()
    assert_recovered("slow-loris client")


def test_two_thousand_idle_connections():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 8192), hard))
    conns = []
    for i in range(2000):
        c = wire.Conn(box.socket)
        if i % 2:
            c.send(wire.hello())
        conns.append(c)
    for c in conns[1::2]:
        assert c.recv_frame()[0] == wire.HELLO_OK
    rss = wire.rss_kib(box.daemon.pid)
    print(f"  with 2,000 idle connections: RSS {rss} KiB ({rss - baseline['rss']:+d})")
    assert_signs()
    for c in conns:
        c.close()
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    assert_recovered("2,000 idle connections")


def test_versions():
    c = wire.Conn(box.socket)
    c.send(wire.hello(lo=3, hi=5))
    msg = expect_error(c, 1, 2, closes=True)
    assert "1 to 2" in msg and "3 to 5" in msg, msg
    c.close()
    # A version 1 client (libdkimsign 0.1) gets version 1, where METRICS
    # (type 10, format 0) is not a message: an error, and the connection goes on.
    c = wire.Conn(box.socket)
    c.send(wire.hello(lo=1, hi=1))
    t, _, payload = c.recv_frame()
    assert t == wire.HELLO_OK and struct.unpack(">H", payload[:2])[0] == 1
    c.send(struct.pack(">IBIB", 6, 10, 7, 0))
    expect_error(c, 7, 1, closes=False)
    c.close()
    for lo, hi, want in ((1, 9, 2), (1, 1, 1)):  # a newer client; an older one, which gets version 1
        c = wire.Conn(box.socket)
        c.send(wire.hello(lo=lo, hi=hi))
        t, _, payload = c.recv_frame()
        assert t == wire.HELLO_OK and struct.unpack(">H", payload[:2])[0] == want
        if want == 1:
            # SEAL is version 2's: on a version 1 connection it is an unknown
            # type (status 1) and the connection goes on.
            c.send(wire.seal(2, HEADERS, b"example.com") + wire.sign(3, HEADERS))
            expect_error(c, 2, 1, closes=False)
            t, rid, _ = c.recv_frame()
            assert (t, rid) == (wire.SIGNED, 3), (t, rid)
        c.close()
    c = wire.Conn(box.socket)
    c.send(wire.hello(lo=3, hi=1))
    expect_error(c, 1, 1, closes=True)
    c.close()
    assert_recovered("version negotiation")


def test_pipelined_requests():
    c = hello_conn()
    c.send(b"".join(wire.sign(100 + i, HEADERS) for i in range(40)))
    seen = set()
    for _ in range(40):
        t, rid, payload = c.recv_frame()
        assert t == wire.SIGNED, (t, payload)
        assert wire.parse_signed(payload)[0].startswith(b"DKIM-Signature: v=1;")
        seen.add(rid)
    assert seen == set(range(100, 140))
    c.close()
    assert_recovered("40 pipelined requests")


if __name__ == "__main__":
    setup()
    try:
        run([test_truncated_frames, test_length_claims, test_unknown_type_keeps_connection,
             test_sign_before_hello, test_fields_out_of_bounds, test_garbage_after_valid_frame,
             test_nul_and_invalid_utf8_in_headers, test_five_thousand_headers, test_slow_loris,
             test_two_thousand_idle_connections, test_versions, test_pipelined_requests])
    finally:
        box.close()
