#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""Every signing input of the DKIM test corpus (tests/data/corpus) (index.tsv), signed by the real
daemon through the real token, verified by python3-dkim.  Must-refuse
messages must be refused with a clear error; 'either' messages may be
refused, and if signed must verify (unless the verifier is listed as unable
to handle the message at all, in the tolerate column)."""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
from harness import (Sandbox, corpus_sign_inputs, dkimpy_verify, from_domain,  # noqa: E402
                     keygen_corpus_domains, read_corpus,
                     run, signature_fields, tags)




def expected_tail(message):
    """What dkimsign writes after its fields: the message, and for one
    without a body the empty line that ends its header."""
    if b"\n\n" in message.replace(b"\r\n", b"\n"):
        return message
    eol = b"\r\n" if message.split(b"\n", 1)[0].endswith(b"\r") else b"\n"
    return message + (b"" if message.endswith(b"\n") else eol) + eol




def test_corpus():
    rows = corpus_sign_inputs()
    assert len(rows) > 50, f"only {len(rows)} signing inputs in the corpus"
    with Sandbox() as box:
        box.init_token()
        domains = keygen_corpus_domains(box, rows, [("corpus", "rsa")])
        box.start()
        problems, counts = [], {"signed": 0, "refused": 0}
        for name, expected, tolerate in rows:
            message = read_corpus(name)
            p = box.sign(message)
            if expected == "refuse":
                if p.returncode != 65 or len(p.stderr.strip().splitlines()) != 1:
                    problems.append(f"{name}: must be refused with one line, got {p.returncode} {p.stderr!r}")
                else:
                    counts["refused"] += 1
                continue
            if p.returncode != 0:
                if expected == "either" and p.returncode == 65:
                    counts["refused"] += 1
                    continue
                problems.append(f"{name}: not signed ({p.returncode}): {p.stderr.decode(errors='replace')}")
                continue
            # Ours is the topmost field; the message may carry older ones below.
            fields = signature_fields(p.stdout)
            theirs = len(signature_fields(message))
            if len(fields) != theirs + 1 or tags(fields[0])["d"] != from_domain(message):
                problems.append(f"{name}: expected one new signature for the From domain, got {fields[:1]}")
                continue
            # The message follows unchanged; one with no body also gets the
            # empty line that ends its header.
            if not p.stdout.endswith(expected_tail(message)):
                problems.append(f"{name}: the message was altered")
                continue
            ok = dkimpy_verify(p.stdout, box.keytable)
            if not ok and "dkimpy" in tolerate:
                # index.tsv: dkimpy cannot handle this message at all.
                print(f"  {name}: dkimpy failure tolerated (index.tsv: {','.join(tolerate)})")
                counts["signed"] += 1
                continue
            if not ok:
                problems.append(f"{name}: python3-dkim does not verify the signature")
                continue
            counts["signed"] += 1
        print(f"  {counts['signed']} signed and verified, {counts['refused']} refused, "
              f"{len(domains)} domains")
        assert not problems, "\n".join(problems)


if __name__ == "__main__":
    run([test_corpus])
