#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""python3-dkim as a separate verifier program, with the same interface as
maildkim-verify.pl and opendkim-verify:

    dkimpy-verify.py --keytable FILE MSGFILE...

FILE holds `selector._domainkey.domain TXT-text` lines (no DNS).  For each
message one line: `MSGFILE<TAB>v1,v2,...`, a verdict per DKIM-Signature
field from the top: pass or fail (`none` when there is no signature).
RFC 8301 rules: RSA keys under 1024 bits fail.  Exit 0, or 2 on usage or
unreadable input.
"""
import sys

import dkim


def load_keytable(path):
    keys = {}
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if line and not line.startswith("#"):
                name, _, txt = line.partition(" ") if " " in line else line.partition("\t")
                keys[name.strip().lower().rstrip(".")] = txt.strip().encode()
    return keys


def main(argv):
    if len(argv) < 3 or argv[0] != "--keytable":
        print(__doc__.strip(), file=sys.stderr)
        return 2
    keys = load_keytable(argv[1])

    def dnsfunc(name, timeout=5):
        name = name.decode() if isinstance(name, bytes) else name
        return keys.get(name.lower().rstrip("."))

    for path in argv[2:]:
        try:
            with open(path, "rb") as f:
                message = f.read()
        except OSError as e:
            print(f"dkimpy-verify: {path}: {e}", file=sys.stderr)
            return 2
        message = message.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
        if not message.endswith(b"\r\n"):
            message += b"\r\n"
        verdicts = []
        try:
            d = dkim.DKIM(message, minkey=1024)
            count = sum(1 for k, _ in d.headers if k.lower() == b"dkim-signature")
            for i in range(count):
                try:
                    verdicts.append("pass" if d.verify(idx=i, dnsfunc=dnsfunc) else "fail")
                except Exception:  # noqa: BLE001 - any library error is a failed signature
                    verdicts.append("fail")
        except Exception:  # noqa: BLE001 - unparseable message
            verdicts = ["fail"]
        print(f"{path}\t{','.join(verdicts) if verdicts else 'none'}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
