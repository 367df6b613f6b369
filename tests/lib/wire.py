# SPDX-License-Identifier: MIT
"""A minimal client of the dkimsign wire protocol (docs/protocol.md), for
tests that must send what libdkimsign never would."""
import hashlib
import socket
import struct

HELLO, HELLO_OK, SIGN, SIGNED, ERROR = 1, 2, 3, 4, 5
SEAL = 12


def frame(mtype, rid, payload=b""):
    body = struct.pack(">BI", mtype, rid) + payload
    return struct.pack(">I", len(body)) + body


def string(b):
    return struct.pack(">I", len(b)) + b


def hello(rid=1, lo=1, hi=1, name=b"test"):
    return frame(HELLO, rid, struct.pack(">HH", lo, hi) + string(name))


def sign(rid, headers, body_hash=None, domain=b"", hcanon=1, bcanon=1):
    if body_hash is None:
        body_hash = hashlib.sha256(b"").digest()  # relaxed canonical empty body
    return frame(SIGN, rid, bytes([hcanon, bcanon]) + string(domain) + string(body_hash) + string(headers))


def seal(rid, headers, domain, cv=0, instance=1, authserv=b"mx.test", results=b"", body_hash=None):
    """A SEAL request (protocol version 2): cv 0 none, 1 pass, 2 fail."""
    if body_hash is None:
        body_hash = hashlib.sha256(b"").digest()
    return frame(SEAL, rid, bytes([cv, instance]) + string(domain) + string(authserv) + string(results)
                 + string(body_hash) + string(headers))


class Conn:
    def __init__(self, path, timeout=10):
        self.s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.s.settimeout(timeout)
        self.s.connect(path)
        self.buf = b""

    def send(self, data):
        self.s.sendall(data)

    def recv_frame(self):
        """(type, id, payload), or None when the daemon closed the connection."""
        while True:
            if len(self.buf) >= 4:
                n = struct.unpack(">I", self.buf[:4])[0]
                if len(self.buf) >= 4 + n:
                    body, self.buf = self.buf[4:4 + n], self.buf[4 + n:]
                    mtype, rid = struct.unpack(">BI", body[:5])
                    return mtype, rid, body[5:]
            chunk = self.s.recv(65536)
            if not chunk:
                return None
            self.buf += chunk

    def closed_by_peer(self):
        """True when the daemon has closed (reads EOF)."""
        try:
            while True:
                chunk = self.s.recv(65536)
                if not chunk:
                    return True
        except (socket.timeout, TimeoutError):
            return False
        except ConnectionResetError:
            return True

    def close(self):
        self.s.close()


def parse_error(payload):
    status, flags, detail = struct.unpack(">HBH", payload[:5])
    n = struct.unpack(">I", payload[5:9])[0]
    return status, bool(flags & 1), detail, payload[9:9 + n].decode()


def parse_signed(payload):
    count = struct.unpack(">H", payload[:2])[0]
    fields, off = [], 2
    for _ in range(count):
        n = struct.unpack(">I", payload[off:off + 4])[0]
        fields.append(payload[off + 4:off + 4 + n])
        off += 4 + n
    return fields


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def open_fds(pid):
    import os
    return len(os.listdir(f"/proc/{pid}/fd"))


# --- load and latency: for test-fairness.py and scripts/bench -------------
# Run as a program too (`python3 wire.py latencies|flood ...`, one JSON
# line out), so another uid can run it from a copy (Sandbox.reachable).

STATUS, STATUS_OK = 6, 7
BUSY_STATUS, TOO_LARGE_STATUS = 8, 3


def headers_for(domain, tag=b"x"):
    """A small valid header block From domain (bytes), CRLF-terminated."""
    d = domain.encode() if isinstance(domain, str) else domain
    return (b"From: Load <load@" + d + b">\r\nTo: someone@example.net\r\nSubject: load\r\n"
            b"Date: Sun, 29 Nov 2026 10:00:00 +0000\r\nMessage-ID: <" + tag + b"@" + d + b">\r\n")


def status(path, timeout=10):
    """The daemon's STATUS figures as a dict of ints (and strings); the
    caller must be root or the daemon's user."""
    c, out = status_open(path, timeout)
    c.close()
    return out


def status_open(path, timeout=10):
    """status(), and the connection it asked on, left open: with [token]
    processes > 1 a new connection goes to the signer process that holds
    the fewest, so keeping one open sends the next to another process."""
    c = Conn(path, timeout)
    try:
        c.send(hello() + frame(STATUS, 2))
        f = c.recv_frame()
        assert f and f[0] == HELLO_OK, f
        t, _, payload = c.recv_frame()
        assert t == STATUS_OK, (t, payload)
    except BaseException:
        c.close()
        raise
    n = struct.unpack(">I", payload[:4])[0]
    out = {}
    for line in payload[4:4 + n].decode().splitlines():
        k, _, v = line.partition("=")
        out[k] = int(v) if v.isdigit() else v
    return c, out


def sign_latencies(path, n, domain="example.com", timeout=30):
    """n SIGN requests, one after the other on one connection (HELLO
    first, not timed).  Returns {"ms": [latency of each SIGNED], "busy":
    BUSY answers, "errors": other ERROR sentences, "refused": the
    connection itself refused (its sentence), else None}."""
    import time
    out = {"ms": [], "busy": 0, "errors": [], "refused": None}
    c = Conn(path, timeout)
    try:
        c.send(hello())
        f = c.recv_frame()
        if f is None or f[0] != HELLO_OK:
            out["refused"] = parse_error(f[2])[3] if f and f[0] == ERROR else "closed before HELLO_OK"
            return out
        head = headers_for(domain)
        for i in range(n):
            start = time.monotonic()
            c.send(sign(2 + i, head))
            f = c.recv_frame()
            took = (time.monotonic() - start) * 1e3
            if f is None:
                out["errors"].append("closed")
                break
            if f[0] == SIGNED:
                out["ms"].append(took)
            elif f[0] == ERROR and parse_error(f[2])[0] == BUSY_STATUS:
                out["busy"] += 1
            else:
                out["errors"].append(parse_error(f[2])[3] if f[0] == ERROR else f"type {f[0]}")
    finally:
        c.close()
    return out


_stop = []   # flood() ends early once this holds something (SIGTERM)


def flood(path, conns, depth, seconds, domain="example.com"):
    """conns connections that each keep depth SIGN requests in flight for
    seconds (or until SIGTERM, when run as a program): a reply in, a
    request out.  Returns counts: signed, busy, errors (other ERRORs),
    refused (connections the daemon refused or closed), and sent."""
    import errno
    import selectors
    import time
    sel = selectors.DefaultSelector()
    head = hello() + b"".join(sign(2 + i, headers_for(domain)) for i in range(depth))
    one = sign(2, headers_for(domain))
    res = {"signed": 0, "busy": 0, "errors": 0, "refused": 0, "sent": conns * depth}
    state = {}
    for _ in range(conns):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(path)
        s.setblocking(False)
        state[s] = {"in": b"", "out": head, "hello": False}
        sel.register(s, selectors.EVENT_READ | selectors.EVENT_WRITE)
    end = time.monotonic() + seconds
    while state and time.monotonic() < end and not _stop:
        for key, ev in sel.select(0.2):
            s, st = key.fileobj, state.get(key.fileobj)
            if st is None:
                continue
            if ev & selectors.EVENT_WRITE and st["out"]:
                try:
                    n = s.send(st["out"])
                    st["out"] = st["out"][n:]
                except OSError as e:
                    if e.errno != errno.EAGAIN:
                        st["out"] = b""
            if ev & selectors.EVENT_READ:
                try:
                    chunk = s.recv(65536)
                except BlockingIOError:
                    chunk = None
                except OSError:
                    chunk = b""
                if chunk == b"":
                    res["refused"] += 1
                    sel.unregister(s)
                    s.close()
                    del state[s]
                    continue
                if chunk:
                    st["in"] += chunk
                while len(st["in"]) >= 4:
                    n = struct.unpack(">I", st["in"][:4])[0]
                    if len(st["in"]) < 4 + n:
                        break
                    body, st["in"] = st["in"][4:4 + n], st["in"][4 + n:]
                    if body[0] == HELLO_OK:
                        continue
                    if body[0] == SIGNED:
                        res["signed"] += 1
                    elif body[0] == ERROR and parse_error(body[5:])[0] == BUSY_STATUS:
                        res["busy"] += 1
                    else:
                        res["errors"] += 1
                    st["out"] += one
                    res["sent"] += 1
            events = selectors.EVENT_READ | (selectors.EVENT_WRITE if st["out"] else 0)
            sel.modify(s, events)
    for s in list(state):
        s.close()
    return res


def wrap(sock):
    """A Conn over a socket already connected."""
    c = Conn.__new__(Conn)
    c.s, c.buf = sock, b""
    return c


def readable(socks, timeout):
    """The sockets of socks with something to read (or EOF) within timeout."""
    import selectors
    sel = selectors.DefaultSelector()
    for s in socks:
        sel.register(s, selectors.EVENT_READ)
    try:
        return {k.fileobj for k, _ in sel.select(timeout)}
    finally:
        sel.close()


def idle_connections(path, n):
    """n connections that send nothing (the caller closes them)."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            socks.append(s)
            s.settimeout(30)
            s.connect(path)
    except BaseException:
        for s in socks:
            s.close()
        raise
    return socks


def sort_refused(socks):
    """(accepted, refused) of connections that sent nothing: a refused one
    has an ERROR at once and is closed, and is closed here too (refused
    holds its (status, temporary, detail, sentence)); an accepted one has
    nothing to read.  Only once the daemon has taken them all from its
    backlog (e.g. a later connection was answered)."""
    gone = readable(socks, 0.2)
    accepted, refused = [s for s in socks if s not in gone], []
    for s in gone:
        try:
            f = wrap(s).recv_frame()
        except OSError as e:
            f = e
        refused.append(parse_error(f[2]) if isinstance(f, tuple) and f[0] == ERROR else (None, None, None, repr(f)))
        s.close()
    return accepted, refused


def partial_frames(socks, announce=1 << 20, send=512 * 1024, stop=None):
    """On each connection HELLO, then a SIGN frame announcing announce
    octets and send of them, as far as the daemon reads: until all is sent,
    nothing moved for 0.5 s, or stop() says so.  Returns (octets sent, the
    sockets the daemon closed meanwhile)."""
    import selectors
    import time
    data = hello() + struct.pack(">IBI", announce, SIGN, 2) + b"\x01" * send
    sel = selectors.DefaultSelector()
    left = {}
    for s in socks:
        s.setblocking(False)
        left[s] = memoryview(data)
        sel.register(s, selectors.EVENT_WRITE)
    sent, closed = 0, set()
    last_move = time.monotonic()
    while left and time.monotonic() - last_move < 0.5 and not (stop and stop()):
        for k, _ in sel.select(0.1):
            s = k.fileobj
            try:
                n = s.send(left[s][:65536])
            except BlockingIOError:
                continue
            except OSError:
                closed.add(s)
                n = len(left[s])
            sent += n
            left[s] = left[s][n:]
            last_move = time.monotonic()
            if not len(left[s]):
                sel.unregister(s)
                del left[s]
    sel.close()
    return sent, closed


def closed_by_daemon(socks, closed):
    """Add to the set closed those of socks the daemon has closed (EOF or
    reset), reading what they hold; returns it."""
    for s in readable([s for s in socks if s not in closed], 0.1):
        try:
            while s.recv(65536):
                pass
            closed.add(s)
        except BlockingIOError:
            pass
        except OSError:
            closed.add(s)
    return closed


def _main(argv):
    import json
    if argv[1] == "latencies":   # SOCKET N [DOMAIN]
        print(json.dumps(sign_latencies(argv[2], int(argv[3]), *argv[4:5])))
    elif argv[1] == "flood":     # SOCKET CONNS DEPTH SECONDS [DOMAIN]
        import signal
        signal.signal(signal.SIGTERM, lambda *_: _stop.append(True))
        print(json.dumps(flood(argv[2], int(argv[3]), int(argv[4]), float(argv[5]), *argv[6:7])))
    else:
        raise SystemExit(f"usage: {argv[0]} latencies|flood ...")


if __name__ == "__main__":
    import sys
    _main(sys.argv)
