# SPDX-License-Identifier: MIT
"""scripts/check-layout, the architecture's rules (docs/architecture.md):
the tree and this build keep every rule, and each kind of violation,
planted in a copy of the sources or in a copy of the build's link lines,
fails the check with the file and the include (or the target and the
library) that broke it."""
import os
import shutil
import subprocess
import sys
import tempfile

SOURCE = os.environ.get("DKIMSIGN_SOURCE", os.path.join(os.path.dirname(__file__), "..", ".."))
BUILD = os.environ["DKIMSIGN_BUILD_DIR"]
SCRIPT = os.path.join(SOURCE, "scripts", "check-layout")
FOLDERS = ["protocol", "util", "dkim", "hsm", "dns", "dnscheck", "keys", "daemon", "client", "ctl"]


def check(source, build):
    return subprocess.run([SCRIPT, "--source", source, build], capture_output=True, text=True, timeout=120)


def plant(root, path, line):
    """Add line after the file's first #include."""
    full = os.path.join(root, path)
    text = open(full).read()
    i = text.index("#include")
    j = text.index("\n", i) + 1
    open(full, "w").write(text[:j] + line + "\n" + text[j:])
    return text[:j].count("\n") + 1  # the planted line's number


def test_tree_keeps_every_rule():
    p = check(SOURCE, BUILD)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "every rule holds" in p.stdout, p.stdout


# (file, planted line, what the check must say about it)
SOURCE_CASES = [
    ("dkim/canon.c", "#include <p11-kit/pkcs11.h>", "only hsm/ includes pkcs11.h"),
    ("protocol/buf.c", "static void planted(void) { (void) fopen(\"/x\", \"r\"); }", "fopen(): protocol/ does no I/O"),
    ("dkim/header.c", "#include <unistd.h>", "dkim/ does no I/O"),
    ("ctl/main.c", "#include \"daemon/dispatch.h\"", "ctl/ may not use daemon/"),
    ("keys/keys.c", "#include \"hsm/hsm-private.h\"", "hsm/hsm-private.h is private to hsm/"),
    ("keys/keystate.c", "#include <pthread.h>", "keys/ has no threads and no logging"),
    ("keys/lifecycle.c", "static void planted(void) { log_info(\"x\"); }", "log_info(): keys/ has no threads"),
    ("util/clock.c", "#include \"memdup.h\"", "includes are folder-qualified"),
    ("client/dkimsign-cli.c", "#include \"protocol/frame.h\"", "client/'s programs use only client/dkimsign.h"),
    ("dns/resolve.c", "#include \"keys/keys.h\"", "dns/ may not use keys/"),
]


def test_planted_includes_fail():
    with tempfile.TemporaryDirectory() as d:
        for f in FOLDERS:
            shutil.copytree(os.path.join(SOURCE, f), os.path.join(d, f))
        planted = [(f, plant(d, f, line), want) for f, line, want in SOURCE_CASES]
        p = check(d, BUILD)
        assert p.returncode == 1, p.stdout
        for f, n, want in planted:
            hits = [line for line in p.stdout.splitlines() if line.startswith(f"{f}:{n}:") and want in line]
            assert hits, f"{f}:{n}: no '{want}' in:\n{p.stdout}"


def test_planted_links_fail():
    with tempfile.TemporaryDirectory() as d:
        ninja = open(os.path.join(BUILD, "build.ninja")).read()
        ninja += ("\nbuild ctl/dkimsignctl: c_LINKER ctl/dkimsignctl.p/main.c.o | daemon/libdaemon.a\n"
                  " LINK_ARGS = -Wl,--start-group daemon/libdaemon.a -Wl,--end-group\n"
                  "\nbuild tests/fuzz/fuzz-frame: c_LINKER tests/fuzz/fuzz-frame.p/x.o | hsm/libhsm.a\n"
                  " LINK_ARGS = hsm/libhsm.a protocol/libprotocol.a\n"
                  "\nbuild client/libdkimsign.so.0.1.0: c_LINKER x.o | keys/libkeys.a\n"
                  " LINK_ARGS = -shared keys/libkeys.a -lsodium\n")
        open(os.path.join(d, "build.ninja"), "w").write(ninja)
        p = check(SOURCE, d)
        assert p.returncode == 1, p.stdout
        for want in ("ctl/dkimsignctl links daemon/: never",
                     "tests/fuzz/fuzz-frame links hsm/: a fuzz target links only its parser's library",
                     "client/libdkimsign.so links keys: it may link only dkim, protocol",
                     "client/libdkimsign.so links libsodium"):
            assert want in p.stdout, f"no '{want}' in:\n{p.stdout}"


def main():
    failed = 0
    tests = [test_tree_keeps_every_rule, test_planted_includes_fail, test_planted_links_fail]
    for t in tests:
        try:
            t()
            print(f"ok   {t.__name__}")
        except AssertionError as e:
            failed += 1
            print(f"FAIL {t.__name__}: {e}")
    print(f"{len(tests) - failed} passed, {failed} failed")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
