#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""Issue 19: one socket user must not take all of the daemon.  Against the
real daemon on a SoftHSM token, uid A (root, this test) floods it the ways
the issue found, and another uid B (nobody, from a copy of tests/lib/wire.py
run with setpriv) must still be served:

  - 4,096 idle connections: A gets its share (max_connections_per_uid),
    the rest BUSY naming the per-uid limit; B connects and signs;
  - partial frames announcing 1 MiB: the daemon's RSS stays under the bound
    docs/configuration.md gives; B signs; read_timeout closes them all and
    status counts them;
  - 90 connections x 64 pipelined SIGNs: B gets no BUSY, and its median
    latency stays within 3 x its unloaded median on a token whose
    signatures take 10 ms of wall time (the wait in the queue alone), and
    within 10 x on SoftHSM, whose signatures take the CPU B needs too;
  - a client that never reads its replies is closed after write_timeout,
    counted, and logged once;
  - before HELLO a frame over 1,024 octets closes the connection with an
    error saying so, without waiting for its body;
  - a SIGN over max_header_block is refused while the token is stuck, so
    it was never queued, and the daemon's memory does not grow;
  - 2,000 refused connections log at most 20 lines, and a line with the
    count of the others when the minute is over.

Every wait is bounded; the figures are printed."""
import json
import os
import re
import resource
import socket
import statistics
import struct
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
import harness  # noqa: E402
import wire  # noqa: E402
from harness import Sandbox, run  # noqa: E402

WIRE = os.path.join(os.path.dirname(__file__), "..", "lib", "wire.py")
FAULTP11 = os.path.join(harness.BUILD, "tests", "faultp11", "libfaultp11.so")
SANITIZED = os.environ.get("DKIMSIGN_SANITIZED") == "1"  # ASan's quarantine: RSS says nothing
READ_TIMEOUT = 3
WRITE_TIMEOUT = 2
# The defaults these tests hold the daemon to (docs/configuration.md).
PER_UID_CONNECTIONS = 256
MAX_BUFFERED = 128 * 1024 * 1024
MAX_HEADER_BLOCK = 262144
HELLO_FRAME_MAX = 1024
LOG_BURST, LOG_WINDOW_S = 20, 60
SLOW_SIGN_MS = 10
WAIT_S = 60   # the bound of a wait for what takes well under a second idle

box = None       # the shared sandbox: max_connections = 8192, a short read_timeout
logbox = None    # max_connections = 2, for the refusal log
log_started = None


def open_box(extra):
    """A sandbox whose socket uid B (nobody) may open, started, with an
    RSA key for example.com."""
    b = Sandbox(extra_config=extra)
    b.open_socket_to_others()
    b.init_token()
    b.keygen("example.com", "f1")
    b.start()
    return b


def as_b(b, *args, timeout=120):
    """wire.py's program run as nobody against b's socket; its JSON."""
    cmd = b.as_user("nobody") + ["/usr/bin/python3", b.reachable(WIRE), args[0], b.socket, *map(str, args[1:])]
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise AssertionError(f"uid B's {args[0]} {args[1:]} not done within {timeout}s") from None
    assert p.returncode == 0, f"uid B's client failed ({p.returncode}): {p.stderr}"
    return json.loads(p.stdout.strip().splitlines()[-1])


def assert_b_signs(b, n=10, why=""):
    r = as_b(b, "latencies", n)
    assert r["refused"] is None, f"uid B refused{why}: {r['refused']}"
    assert r["busy"] == 0 and not r["errors"], f"uid B{why}: {r['busy']} BUSY, errors {r['errors'][:3]}"
    assert len(r["ms"]) == n, r
    return r


def wait_for(what, test, timeout=WAIT_S, every=0.05, show=None):
    """Poll test() until it returns a true value (returned), at most
    timeout s; show() says what there was instead."""
    deadline = time.monotonic() + timeout
    while True:
        v = test()
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout:.0f}s" + (f" ({show()})" if show else ""))
        time.sleep(every)


def status(b):
    return wire.status(b.socket)


def rss_kib(b):
    return wire.rss_kib(b.daemon.pid)


def reset_peak(b):
    """Start VmHWM (the peak RSS) again from the RSS now."""
    with open(f"/proc/{b.daemon.pid}/clear_refs", "w") as f:
        f.write("5")


def peak_kib(b):
    with open(f"/proc/{b.daemon.pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    raise AssertionError("no VmHWM")


def median(xs):
    return statistics.median(xs)


def p99(xs):
    return sorted(xs)[min(len(xs) - 1, int(len(xs) * 0.99))]


# --- the refusal log (first: its minute runs while the others do) ---------

def test_refused_connections_log_at_most_a_burst():
    global logbox, log_started
    logbox = open_box("[limits]\nmax_connections = 2\n")
    # Both places (the daemon may not have seen start()'s probe go yet:
    # then a try is refused too, and counted).
    refused = []
    held = [wait_for("a connection", lambda: hello_conn(logbox, refused)) for _ in range(2)]
    log_started = time.monotonic()
    busy = 0
    for _ in range(2000):
        c = wire.Conn(logbox.socket)
        f = c.recv_frame()
        busy += f is not None and f[0] == wire.ERROR and wire.parse_error(f[2])[0] == wire.BUSY_STATUS
        c.close()
    held.pop().close()   # a place for the STATUS connection
    st = wait_for("a STATUS connection", lambda: try_status(logbox) or refused.append(True))
    others = len(refused)
    held.append(wait_for("a connection", lambda: hello_conn(logbox, refused)))
    logbox.held = held
    lines = refused_lines(logbox)
    print(f"  2,000 refused connections: {busy} BUSY answers, connections_refused={st.get('connections_refused')}, "
          f"{len(lines)} log lines")
    assert busy == 2000, busy
    assert len(lines) <= LOG_BURST, f"{len(lines)} log lines for 2,000 refused connections, e.g. {lines[-1]!r}"
    assert st["connections_refused"] == 2000 + others, (st, others)


def hello_conn(b, refused):
    """A connection past HELLO, or None when the daemon refused it (one
    more in the list refused)."""
    c = wire.Conn(b.socket)
    try:
        c.send(wire.hello())
        f = c.recv_frame()
        if f and f[0] == wire.HELLO_OK:
            return c
    except OSError:
        pass
    c.close()
    refused.append(True)
    return None


def try_status(b):
    try:
        return status(b)
    except (AssertionError, OSError, TypeError):
        return None


def refused_lines(b):
    return [line for line in b.log().splitlines() if re.search(r"connection from uid=\d+ pid=\d+ refused", line)]


def test_refused_connections_log_the_count_after_the_minute():
    """The rest are counted in one line, with the first refusal logged once
    the minute is over: one more refused connection a second until it is."""
    more_re = re.compile(r"(\d+) more refused connections were not logged")
    assert logbox is not None, "the first refusal-log test did not run"
    tries = 0

    def counted():
        nonlocal tries
        m = more_re.search(logbox.log())
        if m:
            return m
        if time.monotonic() - log_started > LOG_WINDOW_S - 1:
            c = wire.Conn(logbox.socket)
            c.recv_frame()
            c.close()
            tries += 1
        return None

    left = LOG_WINDOW_S + 30 - (time.monotonic() - log_started)
    m = wait_for("the count of refusals left out", counted, timeout=max(left, 10), every=0.5)
    for c in logbox.held:
        c.close()
    st = wait_for("a STATUS connection", lambda: try_status(logbox))
    lines = refused_lines(logbox)
    left_out = int(m.group(1))
    print(f"  after {time.monotonic() - log_started:.0f}s and {tries} more refusals: \"{m.group(0)}\", "
          f"{len(lines)} refusal lines in all, connections_refused={st['connections_refused']}")
    assert len(lines) <= LOG_BURST + 1, len(lines)
    # Every refusal is either a line or in the count.
    assert left_out + len(lines) == st["connections_refused"], (left_out, len(lines), st["connections_refused"])
    assert_exits_cleanly(logbox)


def assert_exits_cleanly(b):
    """SIGTERM: the daemon exits 0 (under ASan: no leak, no error)."""
    code = b.stop()
    assert code == 0, f"dkimsignd exited with {code}:\n{b.log()[-3000:]}"


def test_daemons_exit_cleanly():
    for b in (box, slowbox):
        if b:
            assert_exits_cleanly(b)


# --- one uid's connections ------------------------------------------------

def test_idle_connections_get_a_share():
    before = status(box)
    socks = wire.idle_connections(box.socket, 4096)
    try:
        # B's connection is behind A's in the backlog: once B signs, the
        # daemon has taken (and answered) every one of A's.
        r = assert_b_signs(box, why=" beside 4,096 idle connections of uid A")
        accepted, refused = wire.sort_refused(socks)
        texts = {x[3] for x in refused}
        print(f"  uid A's 4,096 idle connections: {len(accepted)} accepted, {len(refused)} refused {texts}; "
              f"uid B signed {len(r['ms'])} with no BUSY (median {median(r['ms']):.2f} ms)")
        assert len(accepted) == PER_UID_CONNECTIONS, f"{len(accepted)} of uid A's connections accepted"
        assert all(x[0] == wire.BUSY_STATUS for x in refused), refused[:3]
        assert texts == {"too many connections from this uid (max_connections_per_uid)"}, texts
        # The accepted ones are live.
        for s in accepted[:8]:
            s.sendall(wire.hello())
            f = wire.wrap(s).recv_frame()
            assert f and f[0] == wire.HELLO_OK, f
    finally:
        for s in socks:
            s.close()
    st = wait_for("A's connections gone", lambda: (s := try_status(box)) and s["connections"] == 1 and s)
    assert st["connections_refused"] - before["connections_refused"] == 4096 - PER_UID_CONNECTIONS, st


def test_partial_frames_stay_within_the_memory_bound():
    before = status(box)
    base = rss_kib(box)
    reset_peak(box)
    socks = wire.idle_connections(box.socket, 800)
    try:
        # B's connection is behind A's in the backlog: once B signs, the
        # daemon has taken every one of A's.
        assert_b_signs(box, n=1, why=" beside 800 connections of uid A")
        accepted, refused = wire.sort_refused(socks)
        # HELLO, then a SIGN frame announcing 1 MiB, and half of it; no
        # further once the RSS is past any sane bound (the daemon before
        # issue 19 takes it all).
        sent, closed = wire.partial_frames(accepted, 1 << 20, 512 * 1024,
                                           stop=lambda: not SANITIZED and rss_kib(box) - base > 2 * MAX_BUFFERED // 1024)
        last_octet = time.monotonic()
        r = assert_b_signs(box, why=" while uid A's frames were partial")
        held = len(accepted) - len(wire.closed_by_daemon(accepted, closed))
        hwm = peak_kib(box)
        bound_kib = (MAX_BUFFERED + 65536 + 2048 * len(accepted)) // 1024
        share_kib = (32 * 1024 * 1024 + 65536 + 2048 * len(accepted)) // 1024
        print(f"  uid A: {len(accepted)} of 800 connections accepted, {sent / 2**20:.0f} MiB of partial frames sent; "
              f"uid B signed {len(r['ms'])} with no BUSY beside {held} of them (median {median(r['ms']):.2f} ms)\n"
              f"  daemon RSS {base} KiB before, peak {hwm} KiB (+{hwm - base} KiB; the bound above base: "
              f"{bound_kib} KiB, uid A's share {share_kib} KiB)")
        assert SANITIZED or hwm - base <= bound_kib, f"RSS rose by {hwm - base} KiB, over the bound {bound_kib} KiB"
        assert len(accepted) == PER_UID_CONNECTIONS, len(accepted)
        assert held == len(accepted), f"only {held} of A's partial frames were still held when B had signed"
        # read_timeout closes every one of them.
        wait_for("A's partial frames closed", lambda: len(wire.closed_by_daemon(accepted, closed)) == len(accepted))
        print(f"  all {len(accepted)} closed {time.monotonic() - last_octet:.1f}s after the last octet sent "
              f"(read_timeout {READ_TIMEOUT}s)")
    finally:
        for s in socks:
            s.close()
    st = wait_for("A's connections gone", lambda: (s := try_status(box)) and s["connections"] == 1 and s)
    timed_out = st["closed_read_timeout"] - before["closed_read_timeout"]
    print(f"  status: closed_read_timeout +{timed_out}, buffered_octets {st['buffered_octets']}, "
          f"RSS {rss_kib(box)} KiB")
    assert timed_out == PER_UID_CONNECTIONS, st
    assert st["buffered_octets"] == 0, st
    # uid A is back to signing too.
    p = box.sign(b"From: a@example.com\r\nSubject: x\r\n\r\nbody\r\n")
    assert p.returncode == 0, p.stderr


def pipelining_rounds(b, rounds, n):
    """uid B's latencies (n requests one after another), unloaded and while
    uid A keeps 90 connections x 64 pipelined SIGNs going, in turn for
    rounds rounds: the host's speed drifts, and figures compared with each
    other must share its spells.  A's load generator runs at nice 19: what
    it costs the CPU is the test's, not the daemon's.  Returns B's unloaded
    and loaded latencies (ms), B's BUSY and other errors under the load,
    A's counts summed and the deepest queue seen."""
    quiet, loaded, busy, errors, depth = [], [], 0, [], 0
    a = {"signed": 0, "busy": 0, "errors": 0}
    as_b(b, "latencies", 20)   # warm B's path
    for _ in range(rounds):
        u = as_b(b, "latencies", n)
        assert not u["busy"] and not u["errors"] and len(u["ms"]) == n, u
        quiet += u["ms"]
        flood = subprocess.Popen(["nice", "-n", "19", "/usr/bin/python3", WIRE, "flood", b.socket, "90", "64", "120"],
                                 stdout=subprocess.PIPE, text=True)
        try:
            st = wait_for("uid A's flood under way",
                          lambda: (s := try_status(b)) and s["queue_depth"] >= 200 and s, timeout=WAIT_S)
            depth = max(depth, st["queue_depth"])
            r = as_b(b, "latencies", n, timeout=WAIT_S)
            # The flood is root's, as STATUS is: root's frames wait while its
            # 256 requests in flight are taken, so this one may not be
            # answered in time; the depth is only reported.
            st = try_status(b)
            depth = max(depth, st["queue_depth"] if st else 0)
        finally:
            flood.terminate()
            out = flood.communicate(timeout=WAIT_S)[0]
        for k, v in json.loads(out.strip().splitlines()[-1]).items():
            if k in a:
                a[k] += v
        # A's requests still queued are signed all the same (their
        # connection is gone): B's next unloaded round waits for them.
        wait_for("uid A's last requests done", lambda: (s := try_status(b)) and s["queue_depth"] == 0)
        loaded += r["ms"]
        busy += r["busy"]
        errors += r["errors"]
    return quiet, loaded, busy, errors, a, depth


def report_pipelining(what, quiet, loaded, busy, errors, a, depth):
    ratio = median(loaded) / median(quiet) if loaded else float("inf")
    print(f"  {what}: uid A 90 x 64 pipelined (queue depth up to {depth}): A got {a['signed']} signed, "
          f"{a['busy']} BUSY, {a['errors']} other errors")
    print(f"  uid B, {len(quiet)} requests unloaded: median {median(quiet):.2f} ms, p99 {p99(quiet):.2f} ms; "
          f"{len(loaded)} under the flood: median {median(loaded) if loaded else float('nan'):.2f} ms, "
          f"p99 {p99(loaded) if loaded else float('nan'):.2f} ms; {ratio:.2f} x; {busy} BUSY, {len(errors)} errors")
    assert busy == 0, f"uid B got {busy} BUSY under uid A's flood"
    assert not errors, errors[:3]
    return ratio


def test_pipelining_uid_does_not_delay_another():
    """The fair queue itself, on a token whose signatures take 10 ms of
    wall time (tests/faultp11 over SoftHSM, as a network HSM): the CPU is
    not the limit, so B's latency shows only how long its requests wait
    for a session.  One A request per turn before B's: about 2 x; in
    arrival order B would wait behind A's 256 (about 128 x)."""
    b = slow_box()
    b.set_latency(SLOW_SIGN_MS)
    try:
        res = pipelining_rounds(b, 3, 50)
    finally:
        b.set_latency(0)
    ratio = report_pipelining(f"token of {SLOW_SIGN_MS} ms a signature", *res)
    # Under ASan the daemon's own CPU per request is several times larger
    # and the two cores are shared with the flood's generator, so the CPU
    # starts to count beside the token's wait: 5 x there (measured 3.25 and
    # 3.6 x on a loaded host), still far from arrival order's 128 x.
    bound = 5 if SANITIZED else 3
    assert ratio <= bound, f"uid B's median under the flood is {ratio:.2f} x its unloaded median (bound {bound})"


def test_pipelining_uid_on_a_cpu_bound_token():
    """The same on SoftHSM, whose signatures are CPU: its 2 sessions fill
    both cores of a small host, so B's requests share the CPU with A's
    signatures as well as waiting their turn, and whatever else runs on the
    host moves the figure: 1.5 to 2.4 x on a quiet 2-core host, up to 3.8 x
    while other work kept it busy, 3.2 to 4.9 x under ASan.  2 connections x 2 requests, which keep
    the sessions busy with no queue at all, cost B 1.7 x to 3.6 x by
    themselves (scripts/bench --only fairness).  So the 3 x bound is held
    on the token above, where only the wait in the queue shows; here B must
    get no BUSY and stay within 10 x: behind A's 256 requests in arrival
    order it would wait about 150 x, behind the queue before issue 19
    seconds."""
    res = pipelining_rounds(box, 3, 150)
    ratio = report_pipelining("SoftHSM", *res)
    assert ratio <= 10, f"uid B's median under the flood is {ratio:.2f} x its unloaded median"


def test_reader_that_never_reads_is_closed():
    b = open_box(f"[limits]\nwrite_timeout = {WRITE_TIMEOUT}s\n")
    c = None
    try:
        c = wire.Conn(b.socket)
        c.send(wire.hello())
        assert c.recv_frame()[0] == wire.HELLO_OK
        c.s.setblocking(False)
        req = wire.sign(2, wire.headers_for("example.com"))
        pending, sent, last_move = b"", 0, time.monotonic()
        # Requests, never reading: the replies fill the socket, then the
        # daemon stops reading us; stop once nothing moved for a second.
        while time.monotonic() - last_move < 1.0:
            if not pending:
                pending = req * 64
            try:
                k = c.s.send(pending)
                pending, sent, last_move = pending[k:], sent + k, time.monotonic()
            except BlockingIOError:
                time.sleep(0.02)
        st = wait_for("the reader that never reads closed",
                      lambda: (s := status(b)) and s.get("closed_write_timeout", 0) >= 1 and s,
                      timeout=WRITE_TIMEOUT + 10, every=0.1)
        took = time.monotonic() - last_move
        lines = [x for x in b.log().splitlines() if "replies not read within write_timeout" in x]
        print(f"  {sent // len(req)} requests sent, never read: closed {took:.1f}s after the daemon stopped "
              f"taking them (write_timeout {WRITE_TIMEOUT}s); closed_write_timeout={st['closed_write_timeout']}, "
              f"{len(lines)} log line(s)")
        assert st["closed_write_timeout"] == 1, st
        assert len(lines) == 1, lines
        # Gone once the requests it left are done (signed all the same).
        wait_for("the closed reader's requests done",
                 lambda: (s := status(b)) and s["connections"] == 1 and s["queue_depth"] == 0, show=lambda: status(b))
        # Closed: what the daemon wrote ends with EOF.
        c.s.setblocking(True)
        c.s.settimeout(10)
        assert c.closed_by_peer()
        p = b.sign(b"From: a@example.com\r\nSubject: x\r\n\r\nbody\r\n")
        assert p.returncode == 0, p.stderr
        c.close()
        c = None
        assert_exits_cleanly(b)
    finally:
        if c:
            c.close()
        b.close()


def test_frame_over_hello_size_before_hello():
    before = status(box)
    for what, data in (("a 4-octet header announcing 1 MiB", struct.pack(">I", 1 << 20)),
                       (f"a whole frame of {HELLO_FRAME_MAX + 1} octets",
                        struct.pack(">IBI", HELLO_FRAME_MAX + 1, wire.HELLO, 1) + b"\0" * (HELLO_FRAME_MAX - 4))):
        c = wire.Conn(box.socket, timeout=READ_TIMEOUT + 5)
        c.send(data)
        start = time.monotonic()
        f = c.recv_frame()
        took = time.monotonic() - start
        assert f is not None, f"{what} before HELLO: closed without an ERROR frame"
        st, temporary, _, msg = wire.parse_error(f[2])
        print(f"  {what} before HELLO: ERROR {st} in {took * 1000:.0f} ms: {msg!r}")
        assert f[0] == wire.ERROR and st == wire.TOO_LARGE_STATUS, (f[0], st, msg)
        assert "before HELLO" in msg and "larger" in msg, msg
        assert took < READ_TIMEOUT / 2, f"{what}: answered after {took:.1f}s, as if its body was waited for"
        assert c.closed_by_peer(), "the connection must be closed"
        c.close()
    after = status(box)
    assert after["closed_bad_frame"] - before["closed_bad_frame"] == 2, (before, after)


class SlowTokenBox(Sandbox):
    """A sandbox whose daemon reaches the token through tests/faultp11,
    which can hold every C_Sign until told to let go, or make each take a
    given time."""

    def __init__(self):
        super().__init__(extra_config="[token]\nsign_timeout = 60s\n")
        with open(self.config) as f:
            text = f.read().replace(f"module = {harness.SOFTHSM}", f"module = {FAULTP11}")
        with open(self.config, "w") as f:
            f.write(text)
        self.open_socket_to_others()
        self.control = os.path.join(self.dir, "fault")
        self.control_write("none", 0)
        self.env.update(FAULTP11_MODULE=harness.SOFTHSM, FAULTP11_CONTROL=self.control)

    def control_write(self, fault, latency_ms):
        with open(self.control + ".tmp", "w") as f:
            f.write(f"fault = {fault}\nlatency_ms = {latency_ms}\n")
        os.rename(self.control + ".tmp", self.control)
        # faultp11 reads it at its next call, unless it looked less than
        # 5 ms before (and a file's times may move in steps of a few ms).
        time.sleep(0.05)

    def faults(self):
        """How many times faultp11 has applied a fault (a hang counts once
        a call)."""
        try:
            with open(self.control + ".stats") as f:
                return next((int(x.split("=")[1]) for x in f if x.startswith("faults=")), 0)
        except FileNotFoundError:
            return 0

    def hold(self, on):
        self.control_write("hang" if on else "none", 0)

    def set_latency(self, ms):
        self.control_write("none", ms)


slowbox = None


def slow_box():
    global slowbox
    if not slowbox:
        slowbox = SlowTokenBox()
        slowbox.init_token()
        slowbox.keygen("example.com", "h1")
        slowbox.start()
    return slowbox


def test_header_block_over_the_limit_is_never_queued():
    """With the token holding every signature, the queue can't move: a
    SIGN over max_header_block answered meanwhile was never queued.  8
    connections x 64 of them (300 KiB each, 150 MiB in all) leave the
    daemon's memory where it was."""
    b = slow_box()
    try:
        assert b.sign(b"From: a@example.com\r\nSubject: x\r\n\r\nbody\r\n").returncode == 0
        faults = b.faults()
        b.hold(True)
        stuck = wire.Conn(b.socket, timeout=60)
        stuck.send(wire.hello() + b"".join(wire.sign(2 + i, wire.headers_for("example.com")) for i in range(4)))
        assert stuck.recv_frame()[0] == wire.HELLO_OK
        # Both sessions inside the hang, two requests queued behind them.
        wait_for("both token sessions held", lambda: b.faults() >= faults + 2, show=lambda: status(b))
        before = wait_for("4 requests held by the token", lambda: (s := status(b)) and s["queue_depth"] == 4 and s,
                          show=lambda: status(b))
        base = rss_kib(b)
        reset_peak(b)
        big = wire.headers_for("example.com") + b"".join(b"X-Filler-%d: %s\r\n" % (i, b"f" * 900)
                                                        for i in range(300 * 1024 // 920))
        assert MAX_HEADER_BLOCK < len(big) < 1 << 20
        conns = []
        for _ in range(8):
            c = wire.Conn(b.socket, timeout=10)
            c.send(wire.hello() + b"".join(wire.sign(100 + i, big) for i in range(64)))
            conns.append(c)
        too_large, other = 0, []
        try:
            for c in conns:
                assert c.recv_frame()[0] == wire.HELLO_OK
                for _ in range(64):
                    f = c.recv_frame()
                    if f and f[0] == wire.ERROR and wire.parse_error(f[2])[0] == wire.TOO_LARGE_STATUS:
                        too_large += 1
                    else:
                        other.append(f)
        except (TimeoutError, socket.timeout):
            other.append("no answer within 10 s while the token held the queue")
        after = status(b)
        hwm = peak_kib(b)
        print(f"  8 x 64 SIGNs with a {len(big) // 1024} KiB header block, the token holding 4 requests: "
              f"{too_large} answered TOO_LARGE meanwhile; queue_depth {after['queue_depth']}, errors_too_large "
              f"+{after['errors_too_large'] - before['errors_too_large']}; RSS {base} KiB before, peak +{hwm - base} KiB")
        assert SANITIZED or hwm - base <= 16 * 1024, f"RSS peak rose by {hwm - base} KiB"
        assert after["queue_depth"] == 4 and after["requests_signed"] == before["requests_signed"], after
        assert too_large == 512, other[:3]
        assert after["errors_too_large"] - before["errors_too_large"] == 512, (before, after)
        b.hold(False)
        for _ in range(4):
            assert stuck.recv_frame()[0] == wire.SIGNED
        for c in conns + [stuck]:
            c.close()
    finally:
        b.hold(False)


def setup():
    global box
    # max_connections above uid A's 4,096: what stops A must be its share.
    box = open_box(f"[limits]\nmax_connections = 8192\nread_timeout = {READ_TIMEOUT}s\n")
    for _ in range(10):   # warm the paths the baselines are read after
        assert box.sign(b"From: a@example.com\r\nSubject: x\r\n\r\nbody\r\n").returncode == 0


if __name__ == "__main__":
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard < 8192:
        print(f"SKIP: uid A's 4,096 connections need RLIMIT_NOFILE 8192, the hard limit is {hard}")
        sys.exit(77)
    # The daemon raises its own soft limit to the hard one.
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, 8192), hard))
    try:
        setup()
        run([test_refused_connections_log_at_most_a_burst, test_idle_connections_get_a_share,
             test_partial_frames_stay_within_the_memory_bound, test_pipelining_uid_does_not_delay_another,
             test_pipelining_uid_on_a_cpu_bound_token, test_reader_that_never_reads_is_closed,
             test_frame_over_hello_size_before_hello, test_header_block_over_the_limit_is_never_queued,
             test_refused_connections_log_the_count_after_the_minute, test_daemons_exit_cleanly])
    finally:
        for b in (logbox, slowbox):
            if b:
                b.close()
        if box:
            box.close()
