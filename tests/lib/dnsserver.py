# SPDX-License-Identifier: MIT
"""A real DNS server on loopback for tests: dnsmasq, answering only from the
records the test gives it (no upstream, no /etc/hosts).

    with DnsServer({"sel._domainkey.example.com": ["v=DKIM1; k=rsa; p=..."],
                    "example.com": ["v=spf1 -all", ("MX", "10 mx.example.com"),
                                    ("A", "192.0.2.1")]}) as dns:
        run("dkimsignctl", "check", "example.com", "--resolver", dns.address)

A record is a str (one TXT record, split into 255-octet character-strings),
a list of str (one TXT record made of exactly these character-strings), or
a tuple ("A", addr), ("AAAA", addr), ("MX", "PREF HOST") or
("CNAME", target).  A TXT text is served as its UTF-8 octets; bytes
instead of a str are served as they are, for a record that is not UTF-8
(any octet but the controls: dnsmasq's configuration is lines).  Every
name under a zone the records mention (the last top-level label of each
name) that has no record answers NXDOMAIN; a name with records of other
types only answers NODATA.

set_records() replaces everything by restarting dnsmasq on the same port
(dnsmasq reads its records only at start), which takes well under a second.
"""
import os
import shutil
import signal
import socket
import struct
import subprocess
import tempfile
import time

DNSMASQ = shutil.which("dnsmasq") or "/usr/sbin/dnsmasq"


def _octets(s):
    return s if isinstance(s, bytes) else s.encode()


def _quote(s):
    """A dnsmasq config quoted string (str or bytes): backslash escapes for
    \\ and ", other octets as they are (the file is written with
    surrogateescape, so bytes that are not UTF-8 stay themselves)."""
    data = _octets(s)
    if any(c < 0x20 or c == 0x7f for c in data):
        raise ValueError(f"dnsmasq can't serve {s!r}: no control characters")
    text = data.decode("utf-8", "surrogateescape")
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _split255(text):
    data = _octets(text)
    if not data:
        return [b""]
    return [data[i:i + 255] for i in range(0, len(data), 255)]


def _zone_of(name):
    """The top-level domain: the server answers for all of it, so that a
    walk up the tree (DMARC policy discovery) gets NXDOMAIN, not REFUSED."""
    return name.rstrip(".").split(".")[-1]


def free_port():
    """A port free for both UDP and TCP on 127.0.0.1 right now."""
    for _ in range(50):
        u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        u.bind(("127.0.0.1", 0))
        port = u.getsockname()[1]
        t = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            t.bind(("127.0.0.1", port))
            return port
        except OSError:
            continue
        finally:
            t.close()
            u.close()
    raise RuntimeError("no free port on 127.0.0.1")


def probe_query(name):
    """A minimal DNS query packet (SOA, to see the server is up)."""
    qid = os.getpid() & 0xffff
    q = b"".join(bytes([len(p)]) + p.encode() for p in name.split(".") if p) + b"\0"
    return qid, struct.pack("!HHHHHH", qid, 0x0100, 1, 0, 0, 0) + q + struct.pack("!HH", 6, 1)


def wait_answering(proc, port, timeout=5.0, name="ready.invalid"):
    """Whether the server proc on 127.0.0.1:port answers a query (any
    answer) within timeout; False as soon as proc has ended."""
    qid, packet = probe_query(name)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.settimeout(0.1)
        try:
            s.sendto(packet, ("127.0.0.1", port))
            data = s.recv(512)
            if len(data) >= 2 and struct.unpack("!H", data[:2])[0] == qid:
                return True
        except OSError:
            time.sleep(0.05)
        finally:
            s.close()
    return False


class DnsServer:
    def __init__(self, records=None):
        self.dir = tempfile.mkdtemp(prefix="dkimsign-dns-")
        self.conf = os.path.join(self.dir, "dnsmasq.conf")
        self.log = os.path.join(self.dir, "dnsmasq.log")
        self.proc = None
        self.port = None
        self.records = {}
        self.set_records(records or {})

    @property
    def address(self):
        return f"127.0.0.1:{self.port}"

    def _write_conf(self, records):
        lines = ["no-resolv", "no-hosts", "no-poll", "bind-interfaces", "listen-address=127.0.0.1",
                 "except-interface=nonexisting", f"port={self.port}", "log-queries",
                 "cache-size=0", "user=root", "pid-file=", "local-ttl=0"]
        zones = set()
        for name, recs in records.items():
            name = name.rstrip(".")
            zones.add(_zone_of(name))
            for rec in recs:
                if isinstance(rec, (str, bytes)):
                    strings = _split255(rec)
                elif isinstance(rec, list):
                    strings = rec
                else:
                    rtype, value = rec
                    rtype = rtype.upper()
                    if rtype in ("A", "AAAA"):
                        lines.append(f"host-record={name},{value}")
                    elif rtype == "MX":
                        pref, host = value.split()
                        lines.append(f"mx-host={name},{host.rstrip('.')},{int(pref)}")
                    elif rtype == "CNAME":
                        lines.append(f"cname={name},{value.rstrip('.')}")
                    else:
                        raise ValueError(f"record type {rtype} not supported")
                    continue
                lines.append(f"txt-record={name}," + ",".join(_quote(s) for s in strings))
        # Answer only from these records: unknown names in the zones are NXDOMAIN.
        for zone in sorted(zones):
            lines.append(f"local=/{zone}/")
        with open(self.conf, "w", encoding="utf-8", errors="surrogateescape") as f:
            f.write("\n".join(lines) + "\n")

    def _start(self):
        # A restart keeps its port (clients hold the address); only the
        # first start may move to another port if the probed one was taken.
        keep_port = self.port is not None
        for attempt in range(5):
            if self.port is None:
                self.port = free_port()
            self._write_conf(self.records)
            logf = open(self.log, "a")
            self.proc = subprocess.Popen(
                [DNSMASQ, "--keep-in-foreground", f"--conf-file={self.conf}", "--log-facility=-"],
                stdout=logf, stderr=logf, stdin=subprocess.DEVNULL)
            logf.close()
            if self._wait_ready():
                return
            self._stop()
            if keep_port:
                time.sleep(0.2)
            else:
                self.port = None
        with open(self.log) as f:
            raise RuntimeError("dnsmasq did not start:\n" + f.read()[-2000:])

    def _wait_ready(self, timeout=5.0):
        return wait_answering(self.proc, self.port, timeout)

    def _stop(self):
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.send_signal(signal.SIGTERM)
                try:
                    self.proc.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait()
            self.proc = None

    def set_records(self, records):
        """Replace every record; in effect when this returns."""
        self.records = {k: list(v) for k, v in records.items()}
        self._stop()
        self._start()

    def close(self):
        self._stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        try:
            self._stop()
        except Exception:
            pass
