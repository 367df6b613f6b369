#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""Verify every DKIM signature of a message on stdin with python3-dkim,
answering key queries from the command line or from the token instead of
DNS.

    verify.py --key NAME "v=DKIM1; k=rsa; p=..." [--key NAME TEXT ...] < msg
    verify.py --ctl DKIMSIGNCTL CONFIG < msg

With --ctl, each signature's key record is what `DKIMSIGNCTL --config
CONFIG dns-record` prints for its d= and s= (the public key read from the
token), so every signature is checked whatever keys the token holds.
"""
import subprocess
import sys

import dkim


def record_from_token(ctl, name):
    """The TXT text dkimsignctl prints for NAME (selector._domainkey.domain),
    or None when the token has no such key."""
    selector, sep, domain = name.partition("._domainkey.")
    if not sep:
        return None
    p = subprocess.run([ctl[0], "--config", ctl[1], "dns-record", "--domain", domain, "--selector", selector],
                       capture_output=True, text=True, timeout=60)
    for line in p.stdout.splitlines():
        if line.startswith("; v=DKIM1"):
            return line[2:].encode()
    print(f"verify: no key {name} on the token: {p.stderr.strip()}", file=sys.stderr)
    return None


def main(argv):
    keys = {}
    ctl = None
    while argv[:1] == ["--key"] and len(argv) >= 3:
        keys[argv[1].lower().rstrip(".")] = argv[2].encode()
        argv = argv[3:]
    if argv[:1] == ["--ctl"] and len(argv) == 3:
        ctl = argv[1:3]
        argv = []
    if argv or not (keys or ctl):
        print(__doc__.strip(), file=sys.stderr)
        return 2
    message = sys.stdin.buffer.read().replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")

    def dnsfunc(name, timeout=5):
        name = (name.decode() if isinstance(name, bytes) else name).lower().rstrip(".")
        if ctl and name not in keys:
            keys[name] = record_from_token(ctl, name)
        return keys.get(name)

    d = dkim.DKIM(message)
    count = sum(1 for k, _ in d.headers if k.lower() == b"dkim-signature")
    if count == 0:
        print("verify: no DKIM-Signature", file=sys.stderr)
        return 1
    failed = 0
    for i in range(count):
        ok = d.verify(idx=i, dnsfunc=dnsfunc)
        sig = dict(d.signature_fields) if ok else {}
        print(f"signature {i + 1}: {'pass' if ok else 'FAIL'}"
              + (f" (d={sig.get(b'd', b'').decode()}, s={sig.get(b's', b'').decode()}, "
                 f"a={sig.get(b'a', b'').decode()})" if ok else ""))
        failed += not ok
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
