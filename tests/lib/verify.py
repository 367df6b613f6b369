#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""Verify every DKIM signature of a message on stdin with python3-dkim,
answering key queries from the command line instead of DNS.

    verify.py --key NAME "v=DKIM1; k=rsa; p=..." [--key NAME TEXT ...] < msg
"""
import sys

import dkim


def main(argv):
    keys = {}
    while argv[:1] == ["--key"] and len(argv) >= 3:
        keys[argv[1].lower().rstrip(".")] = argv[2].encode()
        argv = argv[3:]
    if argv or not keys:
        print(__doc__.strip(), file=sys.stderr)
        return 2
    message = sys.stdin.buffer.read().replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")

    def dnsfunc(name, timeout=5):
        name = name.decode() if isinstance(name, bytes) else name
        return keys.get(name.lower().rstrip("."))

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
