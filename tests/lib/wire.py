# SPDX-License-Identifier: MIT
"""A minimal client of the dkimsign wire protocol (docs/protocol.md), for
tests that must send what libdkimsign never would."""
import hashlib
import socket
import struct

HELLO, HELLO_OK, SIGN, SIGNED, ERROR = 1, 2, 3, 4, 5


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
