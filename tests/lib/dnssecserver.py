# SPDX-License-Identifier: MIT
"""DNSSEC on loopback for tests: zones signed here with ldns-signzone,
served by nsd, resolved by a validating unbound that knows the zones' keys
as trust anchors.  Nothing is faked: the answers, signatures and validation
are those real servers make.

    zones = {"secure.example": Zone(signed=True, records={...}),
             "plain.example": Zone(signed=False, records={...}),
             "bogus.example": Zone(signed=True, records={...}, tamper=["s1._domainkey"])}
    with DnssecServers(zones) as dns:
        dns.resolver        # "127.0.0.1:PORT": unbound, for [dns] resolver
        dns.trust_anchor    # the signed zones' DS records, for [dns] trust_anchor

records maps a name relative to the zone ("@" for its apex) to a list of
TXT texts (each split into 255-octet character-strings).  tamper names
the owners whose TXT signature (RRSIG) is damaged after signing: a
validator calls those answers bogus, while the zone's keys still validate.
unbound runs in permissive mode, so it hands a bogus answer on (without
AD) instead of SERVFAIL, and the validator of the client under test has
to find out by itself.  It logs every query it gets (log-queries), so a
test can count a client's lookups (queries()).
"""
import os
import shutil
import subprocess
import tempfile
import time

from dnsserver import free_port, wait_answering

NSD = shutil.which("nsd") or "/usr/sbin/nsd"
UNBOUND = shutil.which("unbound") or "/usr/sbin/unbound"
KEYGEN = shutil.which("ldns-keygen") or "/usr/bin/ldns-keygen"
SIGNZONE = shutil.which("ldns-signzone") or "/usr/bin/ldns-signzone"
ALGORITHM = "ECDSAP256SHA256"


class Zone:
    def __init__(self, records, signed=True, tamper=()):
        self.records = records
        self.signed = signed
        self.tamper = list(tamper)


def _txt(text):
    data = text.encode()
    parts = [data[i:i + 255] for i in range(0, len(data), 255)] or [b""]
    return " ".join('"' + p.decode().replace("\\", "\\\\").replace('"', '\\"') + '"' for p in parts)


def _tamper(path, zone, owners):
    """Flip one character of the base64 signature of each owner's TXT RRSIG
    (ldns-signzone writes one record per line, the signature last)."""
    names = {f"{o}.{zone}.".lower() for o in owners}
    done = set()
    with open(path) as f:
        lines = f.read().splitlines()
    for i, line in enumerate(lines):
        fields = line.split()
        if len(fields) > 5 and fields[0].lower() in names and fields[3] == "RRSIG" and fields[4] == "TXT":
            sig = fields[-1]
            k = len(sig) // 2
            fields[-1] = sig[:k] + ("A" if sig[k] != "A" else "B") + sig[k + 1:]
            lines[i] = "\t".join(fields)
            done.add(fields[0].lower())
    assert done == names, f"no TXT RRSIG found for {sorted(names - done)} in {path}"
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")


def _run(*args, cwd):
    p = subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=60)
    if p.returncode != 0:
        raise RuntimeError(f"{' '.join(args)}: {p.returncode}\n{p.stdout}{p.stderr}")
    return p.stdout


class DnssecServers:
    def __init__(self, zones):
        self.dir = tempfile.mkdtemp(prefix="dkimsign-dnssec-")
        self.zones = zones
        self.nsd = self.unbound = None
        self.nsd_port = self.port = None
        self.trust_anchor = os.path.join(self.dir, "anchors.ds")
        self.unbound_log = os.path.join(self.dir, "unbound.log")
        try:
            self._make_zones()
            self._start_nsd()
            self._start_unbound()
        except BaseException:
            self.close()
            raise

    @property
    def resolver(self):
        return f"127.0.0.1:{self.port}"

    def _zone_text(self, name, zone):
        lines = [f"$ORIGIN {name}.", "$TTL 60",
                 f"@ IN SOA ns.{name}. hostmaster.{name}. 1 3600 600 86400 60",
                 f"@ IN NS ns.{name}.", "ns IN A 127.0.0.1"]
        for owner, texts in zone.records.items():
            for text in texts:
                lines.append(f"{owner} IN TXT {_txt(text)}")
        return "\n".join(lines) + "\n"

    def _make_zones(self):
        anchors = []
        for name, zone in self.zones.items():
            path = os.path.join(self.dir, f"{name}.zone")
            with open(path, "w") as f:
                f.write(self._zone_text(name, zone))
            if not zone.signed:
                continue
            ksk = _run(KEYGEN, "-a", ALGORITHM, "-k", name, cwd=self.dir).strip()
            zsk = _run(KEYGEN, "-a", ALGORITHM, name, cwd=self.dir).strip()
            _run(SIGNZONE, "-f", path + ".signed", path, zsk, ksk, cwd=self.dir)
            _tamper(path + ".signed", name, zone.tamper)
            with open(os.path.join(self.dir, ksk + ".ds")) as f:
                anchors.append(f.read().strip())
        with open(self.trust_anchor, "w") as f:
            f.write("\n".join(anchors) + "\n")

    def _start(self, argv, port, log, what):
        logf = open(log, "a")
        proc = subprocess.Popen(argv, stdout=logf, stderr=logf, stdin=subprocess.DEVNULL)
        logf.close()
        probe = next(iter(self.zones))
        if not wait_answering(proc, port, timeout=15, name=probe):
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            with open(log) as f:
                raise RuntimeError(f"{what} did not start:\n" + f.read()[-3000:])
        return proc

    def _start_nsd(self):
        self.nsd_port = free_port()
        conf = os.path.join(self.dir, "nsd.conf")
        zones = "".join(f"zone:\n  name: {name}\n  zonefile: {name}.zone{'.signed' if z.signed else ''}\n"
                        for name, z in self.zones.items())
        with open(conf, "w") as f:
            f.write(f"server:\n  ip-address: 127.0.0.1\n  port: {self.nsd_port}\n  do-ip6: no\n"
                    f"  username: \"\"\n  chroot: \"\"\n  zonesdir: \"{self.dir}\"\n  database: \"\"\n"
                    f"  zonelistfile: \"{self.dir}/zone.list\"\n  xfrdfile: \"{self.dir}/xfrd.state\"\n"
                    f"  xfrdir: \"{self.dir}\"\n  pidfile: \"{self.dir}/nsd.pid\"\n"
                    f"  logfile: \"{self.dir}/nsd.log\"\n  server-count: 1\n  verbosity: 1\n"
                    f"remote-control:\n  control-enable: no\n" + zones)
        self.nsd = self._start([NSD, "-d", "-c", conf], self.nsd_port, os.path.join(self.dir, "nsd.out"), "nsd")

    def _start_unbound(self):
        self.port = free_port()
        conf = os.path.join(self.dir, "unbound.conf")
        stubs = "".join(f"stub-zone:\n  name: \"{name}\"\n  stub-addr: 127.0.0.1@{self.nsd_port}\n"
                        for name in self.zones)
        insecure = "".join(f"  domain-insecure: \"{name}\"\n" for name, z in self.zones.items() if not z.signed)
        with open(conf, "w") as f:
            f.write(f"server:\n  interface: 127.0.0.1\n  port: {self.port}\n  do-ip6: no\n"
                    f"  username: \"\"\n  chroot: \"\"\n  directory: \"{self.dir}\"\n"
                    f"  pidfile: \"{self.dir}/unbound.pid\"\n  logfile: \"{self.unbound_log}\"\n"
                    f"  use-syslog: no\n  do-daemonize: no\n  num-threads: 1\n  log-queries: yes\n"
                    f"  access-control: 127.0.0.0/8 allow\n  do-not-query-localhost: no\n"
                    f"  module-config: \"validator iterator\"\n  trust-anchor-file: \"{self.trust_anchor}\"\n"
                    f"  val-permissive-mode: yes\n  cache-max-ttl: 0\n  cache-max-negative-ttl: 0\n"
                    f"  harden-referral-path: no\n  qname-minimisation: no\n" + insecure +
                    "remote-control:\n  control-enable: no\n" + stubs)
        self.unbound = self._start([UNBOUND, "-d", "-c", conf], self.port, os.path.join(self.dir, "unbound.out"),
                                   "unbound")

    def queries(self, name, rtype="TXT"):
        """How many times unbound was asked for name's rtype records."""
        try:
            with open(self.unbound_log) as f:
                return sum(1 for line in f if f" {name.rstrip('.')}. {rtype} IN" in line)
        except FileNotFoundError:
            return 0

    def wait_queries(self, name, n, timeout=60):
        """Wait until unbound has been asked for name n more times."""
        want = self.queries(name) + n
        deadline = time.monotonic() + timeout
        while (seen := self.queries(name)) < want:
            assert time.monotonic() < deadline, f"{seen} of {want} queries for {name} in {timeout}s"
            time.sleep(0.1)
        return seen

    def close(self):
        for proc in (self.unbound, self.nsd):
            if proc is not None and proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        self.unbound = self.nsd = None
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
