#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""dkimsignd as an operator runs it: started by systemd-socket-activate
(the socket passed in, not created) with sd_notify on a socket the test
listens on; peers authorized per domain by uid and group (a client run as
another uid with setpriv); started as root, it drops to its user; SIGHUP
and RELOAD add a key while 8 clients sign, a broken configuration is
refused and the old one stays; SIGTERM finishes the requests in flight;
64 clients pipelining, every signature verified."""
import hashlib
import re
import os
import signal
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
import wire  # noqa: E402
from harness import (SOFTHSM, Notify, Sandbox, Skip, binary, dkimpy_verify, run, signature_fields, tags,  # noqa: E402
                     user_ids)

HEADERS = (b"From: Alice <alice@example.com>\r\nTo: bob@example.net\r\nSubject: load\r\n"
           b"Date: Sun, 29 Nov 2026 10:00:00 +0000\r\nMessage-ID: <d@example.com>\r\n")
BODY = b"Hello from the load test.\r\n"
MESSAGE = HEADERS + b"\r\n" + BODY
NOBODY, NOBODY_GID = user_ids("nobody")
WIRE = os.path.join(os.path.dirname(__file__), "..", "lib", "wire.py")


def relaxed_body_hash(body):
    # BODY has no whitespace to fold and ends in CRLF: relaxed = as is.
    return hashlib.sha256(body).digest()


def admin(box, mtype):
    c = wire.Conn(box.socket)
    c.send(wire.hello() + wire.frame(mtype, 2))
    c.recv_frame()
    t, rid, payload = c.recv_frame()
    c.close()
    if t == wire.ERROR:
        return t, wire.parse_error(payload)[3]
    return t, payload[4:].decode()


def status(box):
    """dkimsignctl status, parsed."""
    text = box.ctl("status").stdout
    return dict(line.split("=", 1) for line in text.splitlines())


def test_socket_activation_and_notify():
    with Sandbox() as box:
        box.init_token()
        box.keygen("example.com", "sa")
        notify = Notify(os.path.join(box.dir, "notify.sock"))
        proc = box.socket_activate(notify)
        try:
            # The first connection starts the daemon; it must use the socket it was given.
            p = box.sign(MESSAGE)
            assert p.returncode == 0, p.stderr
            assert dkimpy_verify(p.stdout, box.keytable)
            assert "listening on the socket passed by systemd" in box.log(), box.log()
            notify.wait_for("READY=1")
            notify.wait_for("STATUS=signing with 1 key(s)")
            proc.send_signal(signal.SIGHUP)
            notify.wait_for("RELOADING=1")
            proc.send_signal(signal.SIGTERM)
            notify.wait_for("STOPPING=1")
            assert proc.wait(30) == 0, box.log()
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def test_peer_authorization():
    extra = ("[daemon]\nallow = user:root\n\n"
             "[domain example.net]\nallow = user:nobody\n")
    with Sandbox(extra_config=extra) as box:
        box.write_config(extra)
        box.open_socket_to_others()   # nobody must reach the socket and open it
        box.init_token()
        box.keygen("example.com", "a1")
        box.keygen("example.net", "a1")
        box.start()
        # ...and the client: the build tree may be closed to it.
        as_nobody = box.as_user("nobody") + [box.reachable_binary("dkimsign"), "--socket", box.socket]
        p = subprocess.run(as_nobody, input=MESSAGE, capture_output=True, timeout=30)
        assert p.returncode == 65, (p.returncode, p.stderr)
        assert b"not authorized to sign for domain example.com" in p.stderr, p.stderr
        import re
        assert re.search(rb"audit: refused time=\S+Z uid=%d pid=\d+ domain=example.com " % NOBODY,
                         open(box.log_path, "rb").read()), box.log()
        net = MESSAGE.replace(b"alice@example.com", b"alice@example.net")
        p = subprocess.run(as_nobody, input=net, capture_output=True, timeout=30)
        assert p.returncode == 0, p.stderr
        assert dkimpy_verify(p.stdout, box.keytable)
        assert box.sign(MESSAGE).returncode == 0          # root, the [daemon] default
        p = box.sign(net)                                 # the domain's list replaces the default
        assert p.returncode == 65 and b"not authorized" in p.stderr, p.stderr
        # STATUS is for root and the daemon's user only.
        c = subprocess.run(box.as_user("nobody") + [
                            "/usr/bin/python3", "-c",
                            "import sys; sys.path.insert(0, sys.argv[1]); import wire;"
                            "c = wire.Conn(sys.argv[2]); c.send(wire.hello() + wire.frame(6, 2));"
                            "c.recv_frame(); print(wire.parse_error(c.recv_frame()[2]))",
                            os.path.dirname(box.reachable(WIRE)), box.socket],
                           capture_output=True, text=True, timeout=30)
        assert "(5, False" in c.stdout, (c.stdout, c.stderr)


def test_authorization_on_d_and_from():
    """The three ways around the allow lists found in issue 19, against the
    real daemon: a key_domain whose d= the peer may not sign, a subdomain
    the peer may sign whose d= aligns with a From it may not, and a
    subdomain section without a list of its own (its parent's applies)."""
    extra = ("[domain b.example]\nallow = user:root\n\n"
             "[domain a.example]\nkey_domain = b.example\n\n"
             "[domain sub.b.example]\nallow = user:nobody\n\n"
             "[domain list.b.example]\n")
    with Sandbox(extra_config=extra) as box:
        box.open_socket_to_others()
        box.init_token()
        box.keygen("b.example", "k1")
        box.keygen("sub.b.example", "k2")
        box.keygen("list.b.example", "k3")
        box.start()
        as_nobody = box.as_user("nobody") + [box.reachable_binary("dkimsign"), "--socket", box.socket]

        def msg(sender):
            return MESSAGE.replace(b"alice@example.com", sender.encode())

        def nobody(sender, *args):
            return subprocess.run(as_nobody + list(args), input=msg(sender), capture_output=True, timeout=30)

        # 1. a.example's list ([daemon] allow, "*") lets nobody ask; its key is b.example's.
        p = nobody("ceo@b.example", "--domain", "a.example")
        assert p.returncode == 65 and b"not authorized to sign with d=b.example (the key domain of a.example)" \
            in p.stderr, (p.returncode, p.stderr)
        p = box.sign(msg("ceo@b.example"), "--domain", "a.example")      # root may
        assert p.returncode == 0 and tags(signature_fields(p.stdout)[0])["d"] == "b.example", p.stderr
        # 2. nobody may sign sub.b.example, but d=sub.b.example aligns with From b.example.
        p = nobody("ceo@b.example", "--domain", "sub.b.example")
        assert p.returncode == 65 and b"not authorized to sign for the From domain b.example, which " \
            b"d=sub.b.example aligns with" in p.stderr, (p.returncode, p.stderr)
        p = nobody("news@sub.b.example")
        assert p.returncode == 0 and dkimpy_verify(p.stdout, box.keytable), p.stderr
        # ... and a From of another organization does not align: d= alone decides.
        p = nobody("someone@elsewhere.example", "--domain", "sub.b.example")
        assert p.returncode == 0, p.stderr
        # 3. list.b.example has a section but no list: b.example's, not [daemon]'s "*".
        p = nobody("x@list.b.example")
        assert p.returncode == 65 and b"not authorized to sign for domain list.b.example" in p.stderr, p.stderr
        assert box.sign(msg("x@list.b.example")).returncode == 0


def test_signing_quotas():
    """Over a quota a request gets its own temporary refusal, the audit
    line and status say so; two signer processes count in one table."""
    # Days, not minutes: a minute boundary in the middle would reset the count.
    extra = ("[limits]\nuid_quota_per_day = 5\n\n"
             "[domain capped.example]\nquota_per_day = 2\n")
    for processes in (1, 2):
        with Sandbox(extra_config=extra + f"\n[token]\nprocesses = {processes}\n") as box:
            box.init_token()
            box.keygen("example.com", "q1")
            box.keygen("capped.example", "q2")
            box.start()
            capped = MESSAGE.replace(b"alice@example.com", b"alice@capped.example")
            got = [box.sign(MESSAGE).returncode for _ in range(2)] + [box.sign(capped).returncode for _ in range(3)]
            assert got == [0, 0, 0, 0, 75], (processes, got, box.log())
            assert "domain capped.example is over its signing quota of 2 messages a day" in box.log(), box.log()
            # The refused message was not counted against the uid: one more.
            assert box.sign(MESSAGE).returncode == 0
            p = box.sign(MESSAGE)
            assert p.returncode == 75 and b"uid 0 is over its signing quota of 5 messages a day" in p.stderr, \
                (processes, p.returncode, p.stderr)
            log = box.log()
            assert re.search(r"audit: refused .* domain=example.com .*error=\"uid 0 is over its signing quota", log), log
            if processes == 1:
                assert status(box)["refused_quota"] == "2", status(box)


def test_reload_recovers_from_a_failed_initialization():
    """A module that fails C_Initialize at one reload (here SoftHSM, its
    configuration away for a moment) refuses that reload, saying signing
    fails until one succeeds; the next reload initializes it again and
    signing goes on, with no restart."""
    with Sandbox(extra_config="[token]\nreinitialize = always\n") as box:
        box.init_token()
        box.keygen("example.com", "sel")
        box.start()
        assert box.sign(MESSAGE).returncode == 0
        conf = box.env["SOFTHSM2_CONF"]
        os.rename(conf, conf + ".away")
        p = box.ctl("reload", check=False)
        assert p.returncode == 1 and "C_Initialize failed after C_Finalize" in p.stderr \
            and "signing fails until a reload or restart succeeds" in p.stderr, (p.returncode, p.stderr)
        assert box.sign(MESSAGE).returncode == 75
        os.rename(conf + ".away", conf)
        p = box.ctl("reload")
        assert "reloaded: 1 signing key(s)" in p.stdout, p.stdout
        p = box.sign(MESSAGE)
        assert p.returncode == 0 and dkimpy_verify(p.stdout, box.keytable), p.stderr


def test_drops_privileges_when_started_as_root():
    if os.geteuid() != 0:
        raise Skip("not root: nothing to drop")
    with Sandbox(extra_config="[daemon]\nuser = nobody\n") as box:
        box.write_config("[daemon]\nuser = nobody\n")
        box.open_to_others()  # nobody must reach the token files below it
        box.init_token()
        box.keygen("example.com", "u1")
        # The token files must be readable by the user the daemon becomes.
        for root, dirs, files in os.walk(os.path.join(box.dir, "tokens")):
            for n in dirs + files:
                os.chown(os.path.join(root, n), NOBODY, NOBODY_GID)
        os.chown(os.path.join(box.dir, "tokens"), NOBODY, NOBODY_GID)
        box.start()
        # A signed message means start-up (and so the drop) is complete.
        p = box.sign(MESSAGE)
        assert p.returncode == 0, p.stderr + box.log().encode()
        ids = {}
        with open(f"/proc/{box.daemon.pid}/status") as f:
            for line in f:
                k, _, v = line.partition(":")
                ids[k] = v.split()
        assert ids["Uid"] == [str(NOBODY)] * 4 and ids["Gid"][0] == str(NOBODY_GID), ids
        assert ids["CapEff"] == ["0000000000000000"], ids["CapEff"]
        p = box.sign(MESSAGE)
        assert p.returncode == 0, p.stderr + box.log().encode()
        assert dkimpy_verify(p.stdout, box.keytable)
        assert "running as nobody" in box.log()


def sign_loop(box, stop, results):
    while not stop.is_set():
        p = box.sign(MESSAGE)
        ok = p.returncode == 0 and dkimpy_verify(p.stdout, box.keytable)
        results.append(ok or p.stderr)


def wait_results(results, n, box, timeout=120):
    deadline = time.monotonic() + timeout
    while len(results) < n:
        assert time.monotonic() < deadline, f"{len(results)} of {n} signatures in {timeout}s\n{box.log()[-2000:]}"
        time.sleep(0.05)


def test_reload_under_load():
    with Sandbox() as box:
        box.init_token()
        box.keygen("example.com", "r1")
        box.start()
        stop, results = threading.Event(), []
        threads = [threading.Thread(target=sign_loop, args=(box, stop, results)) for _ in range(8)]
        for t in threads:
            t.start()
        try:
            wait_results(results, 8, box)    # the clients are signing
            org = MESSAGE.replace(b"alice@example.com", b"alice@example.org")
            assert box.sign(org).returncode == 65
            box.keygen("example.org", "r1", "ed25519")
            box.daemon.send_signal(signal.SIGHUP)          # by signal...
            deadline = time.monotonic() + 20
            while box.sign(org).returncode != 0:
                assert time.monotonic() < deadline, box.log()
                time.sleep(0.1)
            box.keygen("example.info", "r1", "ed25519")
            text = box.ctl("reload").stdout                # ...and by dkimsignctl
            assert "3 signing key(s)" in text, text
            assert box.sign(MESSAGE.replace(b"alice@example.com", b"alice@example.info")).returncode == 0
            # A broken configuration is refused; the old one goes on signing.
            with open(box.config, "a") as f:
                f.write("[limits]\nmax_frame = lots\n")
            box.daemon.send_signal(signal.SIGHUP)
            deadline = time.monotonic() + 20
            while "reload refused" not in box.log():
                assert time.monotonic() < deadline, box.log()
                time.sleep(0.1)
            assert "max_frame" in box.log()
            p = box.ctl("reload", check=False)            # dkimsignctl refuses the file itself
            assert p.returncode == 1 and "max_frame" in p.stderr, p.stderr
            t, text = admin(box, 8)                         # the RELOAD request itself
            assert t == wire.ERROR and "max_frame" in text, text
            assert box.sign(org).returncode == 0
            wait_results(results, max(51, len(results) + 8), box)  # and go on after the refused reloads
        finally:
            stop.set()
            for t in threads:
                t.join()
        box.write_config()  # dkimsignctl reads the socket path from it
        failures = [r for r in results if r is not True]
        print(f"  {len(results)} signatures by 8 clients across 2 reloads and 2 refused ones, {len(failures)} failed")
        assert len(results) > 50 and not failures, failures[:3]
        st = status(box)
        assert st["reloads"] == "2" and st["reload_failures"] == "2", st
        assert st["keys"] == "3" and st["sessions"] == "2", st
        assert int(st["requests_signed"]) >= len(results)


def test_sigterm_finishes_requests_in_flight():
    with Sandbox() as box:
        box.init_token()
        box.keygen("example.com", "t1")
        box.start()
        conns = []
        for k in range(8):
            c = wire.Conn(box.socket, timeout=30)
            c.send(wire.hello() + b"".join(wire.sign(100 + i, HEADERS, relaxed_body_hash(BODY))
                                           for i in range(30)))
            conns.append(c)
        for c in conns:
            assert c.recv_frame()[0] == wire.HELLO_OK
            assert c.recv_frame()[0] == wire.SIGNED  # the daemon has read this connection's requests
        box.daemon.send_signal(signal.SIGTERM)
        answered = 0
        for c in conns:
            for _ in range(29):
                f = c.recv_frame()
                assert f is not None and f[0] == wire.SIGNED, f
                answered += 1
            assert c.closed_by_peer()
            c.close()
        assert box.daemon.wait(30) == 0, box.log()
        print(f"  {answered + 8} of 240 requests in flight at SIGTERM answered, exit 0")


def test_64_pipelining_clients():
    with Sandbox() as box:
        box.init_token()
        box.keygen("example.com", "c1", "rsa")
        box.keygen("example.com", "c2", "ed25519")
        box.start()
        signed, errors = [], []

        def client(n):
            try:
                c = wire.Conn(box.socket, timeout=60)
                c.send(wire.hello() + b"".join(
                    wire.sign(i, HEADERS.replace(b"<d@", b"<d%d.%d@" % (n, i)), relaxed_body_hash(BODY))
                    for i in range(10)))
                assert c.recv_frame()[0] == wire.HELLO_OK
                for _ in range(10):
                    t, rid, payload = c.recv_frame()
                    assert t == wire.SIGNED, wire.parse_error(payload)
                    fields = wire.parse_signed(payload)
                    head = HEADERS.replace(b"<d@", b"<d%d.%d@" % (n, rid))
                    signed.append(b"".join(f + b"\r\n" for f in fields) + head + b"\r\n" + BODY)
                c.close()
            except Exception as e:  # noqa: BLE001 - reported below
                errors.append(f"client {n}: {e!r}")

        threads = [threading.Thread(target=client, args=(n,)) for n in range(64)]
        start = time.monotonic()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        elapsed = time.monotonic() - start
        assert not errors, errors[:3]
        bad = [m for m in signed if not (dkimpy_verify(m, box.keytable, 0) and dkimpy_verify(m, box.keytable, 1))]
        print(f"  64 clients x 10 pipelined requests: {len(signed)} dual-signed in {elapsed:.1f}s, "
              f"{len(bad)} failed verification")
        assert len(signed) == 640 and not bad


def test_token_uri():
    """[token] uri: of two tokens holding a key of the same name, dkimsignd
    signs with the one the URI's serial= chooses and logs which (label and
    serial); a URI that no token or two tokens match keeps it from
    starting, with one line naming the URI (two: their serials)."""
    with Sandbox(label="uri-one") as box:
        box.init_token()
        box.keygen("example.com", "same", "ed25519")
        box.label = "uri-two"
        box.write_config()
        box.init_token()
        box.keygen("example.com", "same", "ed25519")   # the record verifiers see is uri-two's
        serial = dict(box.tokens())
        box.write_config(token=f"uri = pkcs11:serial={serial['uri-two']}?module-path={SOFTHSM}\n")
        box.start()
        try:
            p = box.sign(MESSAGE)
            assert p.returncode == 0, p.stderr + box.log().encode()
            assert dkimpy_verify(p.stdout, box.keytable), "signed with the other token's key"
            assert f"dkimsignd: token 'uri-two' (serial {serial['uri-two']}) in {SOFTHSM}\n" in box.log(), box.log()
        finally:
            assert box.stop() == 0, box.log()

        def check(uri):
            box.write_config(token=f"module = {SOFTHSM}\nuri = {uri}\n")
            p = subprocess.run([binary("dkimsignd"), "--check", "--config", box.config], env=box.env,
                               capture_output=True, text=True, timeout=60)
            assert p.returncode == 1, (p.returncode, p.stderr)
            return [line.split("dkimsignd: ", 1)[1] for line in p.stderr.splitlines() if line.startswith("<3>")]

        uri = "pkcs11:token=uri-two;model=nothing"
        assert check(uri) == [f"no token of {SOFTHSM} matches {uri}"]
        box.label = "uri-one"           # a second token labelled uri-one
        box.write_config()
        with open(box.so_pin_file) as f, open(box.pin_file) as g:
            subprocess.run(["softhsm2-util", "--init-token", "--free", "--label", "uri-one", "--so-pin",
                            f.read().strip(), "--pin", g.read().strip()], env=box.env, check=True,
                           capture_output=True, timeout=60)
        ones = [s for label, s in box.tokens() if label == "uri-one"]
        assert len(ones) == 2, ones
        assert check("pkcs11:token=uri-one") in (
            [f"2 tokens of {SOFTHSM} match pkcs11:token=uri-one (serials {a}, {b}): add serial= to the uri to "
             "choose one"] for a, b in (ones, ones[::-1]))


if __name__ == "__main__":
    run([test_socket_activation_and_notify, test_peer_authorization, test_authorization_on_d_and_from, test_signing_quotas,
         test_reload_recovers_from_a_failed_initialization, test_drops_privileges_when_started_as_root,
         test_reload_under_load, test_sigterm_finishes_requests_in_flight, test_64_pipelining_clients,
         test_token_uri])
