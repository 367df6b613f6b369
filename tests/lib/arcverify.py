# SPDX-License-Identifier: MIT
"""Three independent ARC verifiers (RFC 8617), each run as its own program:
python3-dkim's arc_verify (keys from a file of "NAME TEXT" lines),
Mail::DKIM's ARC::Verifier (keys from a DNS server on loopback) and, when
given one, a private rspamd (tests/lib/rspamd.py).

    short, full = verdicts(message, keys_path, dns_port, rs)
    # short: {"python3-dkim": "pass", "Mail::DKIM": "pass", "rspamd": "pass"}

A verdict is pass, fail, none, or (rspamd's ARC_INVALID) invalid; full has
each verifier's own words."""
import subprocess

PYTHON = "/usr/bin/python3"

DKIMPY_VERIFY = r"""
import sys, dkim
keys = dict(line.split(" ", 1) for line in open(sys.argv[1]).read().splitlines())
def dnsfunc(name, timeout=5):
    name = (name.decode() if isinstance(name, bytes) else name).rstrip(".").lower()
    return keys[name].encode() if name in keys else None
cv, results, comment = dkim.arc_verify(sys.stdin.buffer.read(), dnsfunc=dnsfunc)
# A chain whose newest seal says cv=fail comes back as cv None, "the chain
# is terminated": a failed chain.
if cv is None:
    cv = b"fail" if "reported failure" in str(comment) else b"none"
print(cv.decode(), comment)
"""

MAILDKIM_VERIFY = r"""
use strict; use warnings; use Mail::DKIM::ARC::Verifier; use Net::DNS::Resolver;
my ($port) = @ARGV;
Mail::DKIM::DNS::resolver(Net::DNS::Resolver->new(nameservers => ['127.0.0.1'], port => $port,
        recurse => 1, udp_timeout => 5, tcp_timeout => 5, retry => 1));
binmode STDIN;
my $msg = do { local $/; <STDIN> };
my $v = Mail::DKIM::ARC::Verifier->new();
$v->PRINT($msg); $v->CLOSE;
print $v->result, " ", ($v->result_detail // ''), "\n";
"""

RSPAMD_VERDICTS = {"ARC_ALLOW": "pass", "ARC_REJECT": "fail", "ARC_INVALID": "invalid"}


def prog(args, data):
    p = subprocess.run(args, input=data, capture_output=True, timeout=60)
    assert p.returncode == 0, (args[:2], p.stderr.decode(errors="replace"))
    return p.stdout


def write_keys(path, records):
    """records: {"sel._domainkey.domain": text or [strings]}."""
    with open(path, "w") as f:
        for name, rec in records.items():
            f.write(f"{name} {rec if isinstance(rec, str) else ''.join(rec)}\n")


def verdicts(msg, keys_path, dns_port, rs=None):
    full = {"python3-dkim": prog([PYTHON, "-c", DKIMPY_VERIFY, keys_path], msg).decode(),
            "Mail::DKIM": prog(["perl", "-e", MAILDKIM_VERIFY, str(dns_port)], msg).decode()}
    if rs:
        arc = sorted(s for s in rs.symbols(msg) if s.startswith("ARC_"))
        full["rspamd"] = f"{RSPAMD_VERDICTS.get(arc[0] if arc else '')} {' '.join(arc)}"
    return {k: v.split()[0] if v.split() else "" for k, v in full.items()}, full
