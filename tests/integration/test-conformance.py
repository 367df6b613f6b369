#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""DKIM conformance: every signable message of the DKIM test corpus (tests/data/corpus), signed by
the real daemon through the real token with each of the four
canonicalization combinations, dual (rsa-sha256 + ed25519-sha256) from one
request, then verified by three independent verifiers run as separate
programs: python3-dkim, Mail::DKIM and OpenDKIM's library.  Debian 12's
Mail::DKIM has no Ed25519, so it checks the RSA signature only.  Where
index.tsv says a verifier cannot handle a message at all (tolerate column),
its failure there is reported and tolerated."""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
from harness import (Sandbox, corpus_sign_inputs, keygen_corpus_domains, read_corpus,  # noqa: E402
                     run, signature_fields, tags, verify_files, write_keytable)

COMBOS = ("relaxed/relaxed", "relaxed/simple", "simple/relaxed", "simple/simple")
# What each verifier must say of our two signatures (rsa first, then ed25519).
EXPECTED = {"dkimpy": ["pass", "pass"], "mail-dkim": ["pass", "skip"], "opendkim": ["pass", "pass"]}


def test_conformance():
    rows = corpus_sign_inputs()
    assert len(rows) > 50, f"only {len(rows)} signing inputs in the corpus"
    with Sandbox() as box:
        box.init_token()
        domains = keygen_corpus_domains(box, rows, [("r2026", "rsa"), ("e2026", "ed25519")])
        box.start()
        keytable = write_keytable(box)

        problems, signed, tolerated = [], {}, {}
        refused = 0
        for combo in COMBOS:
            outdir = os.path.join(box.dir, combo.replace("/", "-"))
            os.makedirs(outdir)
            for name, expected, tolerate in rows:
                message = read_corpus(name)
                p = box.sign(message, "--canon", combo)
                if expected == "refuse" or (expected == "either" and p.returncode == 65):
                    ok = p.returncode == 65 and len(p.stderr.strip().splitlines()) == 1
                    if not ok:
                        problems.append(f"{name} [{combo}]: must be refused with one line: {p.returncode} {p.stderr!r}")
                    refused += combo == COMBOS[0]
                    continue
                if p.returncode != 0:
                    problems.append(f"{name} [{combo}]: not signed: {p.stderr.decode(errors='replace')}")
                    continue
                fields = signature_fields(p.stdout)[:2]
                t = [tags(f) for f in fields]
                if [x.get("a") for x in t] != ["rsa-sha256", "ed25519-sha256"] or \
                        any(x.get("c") != combo for x in t):
                    problems.append(f"{name} [{combo}]: expected rsa + ed25519 signatures with c={combo}: {t}")
                    continue
                out = os.path.join(outdir, name.replace("/", "_"))
                with open(out, "wb") as f:
                    f.write(p.stdout)
                signed[out] = (name, combo, tolerate)

        files = sorted(signed)
        verdicts = verify_files(files, keytable)
        for verifier, want in EXPECTED.items():
            for path in files:
                name, combo, tolerate = signed[path]
                got = verdicts[verifier].get(path, ["missing"])[:2]
                if got == want:
                    continue
                if verifier in tolerate:
                    tolerated.setdefault(verifier, []).append(f"{name} [{combo}] {got}")
                    continue
                problems.append(f"{verifier}: {name} [{combo}]: {got}, expected {want}")

        print(f"  {len(files)} signed messages ({len(files) // len(COMBOS)} per canonicalization), "
              f"{refused} refused, {len(domains)} domains, 2 signatures each, 3 verifiers")
        for verifier, items in tolerated.items():
            print(f"  tolerated (index.tsv: {verifier} cannot handle these messages at all):")
            for item in items:
                print(f"    {item}")
        assert not problems, "\n".join(problems[:40]) + (f"\n... {len(problems)} in all" if len(problems) > 40 else "")


if __name__ == "__main__":
    run([test_conformance])
