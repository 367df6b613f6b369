#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""Token faults and daemon crashes while clients sign (issue 11), and
tokens that behave as some real HSMs do (quirks).

The daemon talks to tests/faultp11, a PKCS#11 module of our own that wraps
the real SoftHSM token and fails, hangs or corrupts signatures when its
control file says so.  Clients sign all the time with the real dkimsign;
every answer must be a signature that python3-dkim verifies or a temporary
error (exit 75): never a wrong signature, never a hang, and signing must
come back by itself once the fault clears.

Its quirks play what some real HSMs do and none of the packaged modules
(SoftHSM, opencryptoki, tpm2-pkcs11) shows: no Ed25519, no copies of
private keys, a cap on sessions, a login per session.  With each, the
daemon must sign with what the token can do, without a run of temporary
errors.

No test waits for a stretch of time and then looks: each waits, with a
generous bound, until what it checks has happened (the token returned the
fault so many times, clients saw so many temporary errors, signing came
back), so a loaded machine makes it slower, not flaky.
"""
import ctypes
import os
import socket
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
import harness  # noqa: E402

FAULTP11 = os.path.join(harness.BUILD, "tests", "faultp11", "libfaultp11.so")
MESSAGE = (b"From: Alice <alice@example.com>\nTo: bob@example.net\nSubject: faults\n"
           b"Message-ID: <faults@example.com>\nDate: Sun, 29 Nov 2026 08:00:00 +0000\n\n"
           b"A message signed while the token misbehaves.\n")
SIGN_TIMEOUT_S = 2
CLIENT_TIMEOUT_S = 20
EX_TEMPFAIL = 75
# The bound of every wait for something to happen: far beyond what it
# takes on an idle machine (well under a second to a few seconds).
WAIT_S = 90


class FaultBox(harness.Sandbox):
    """A Sandbox whose daemon reaches the token through faultp11."""

    def __init__(self, extra="", sessions=None):
        super().__init__(extra_config=f"[token]\nsign_timeout = {SIGN_TIMEOUT_S}s\n" + extra)
        with open(self.config) as f:
            text = f.read()
        text = text.replace(f"module = {harness.SOFTHSM}", f"module = {FAULTP11}")
        if sessions is not None:
            text = text.replace("sessions = 2\n", f"sessions = {sessions}\n", 1)
        with open(self.config, "w") as f:
            f.write(text)
        self.control = os.path.join(self.dir, "fault")
        self.quirks, self.session_cap = "none", 0
        self.set_fault("none")
        self.env.update(FAULTP11_MODULE=harness.SOFTHSM, FAULTP11_CONTROL=self.control)

    def set_fault(self, fault, latency_ms=0):
        """The fault (and latency) from now on; the quirks stay."""
        self.fault, self.latency_ms = fault, latency_ms
        tmp = self.control + ".tmp"
        with open(tmp, "w") as f:
            f.write(f"fault = {fault}\nlatency_ms = {latency_ms}\nquirks = {self.quirks}\n"
                    f"session_cap = {self.session_cap}\n")
        os.rename(tmp, self.control)

    def set_quirks(self, quirks, session_cap=0):
        """The quirks (a comma-separated list, or "none") and session cap
        from now on; the fault stays."""
        self.quirks, self.session_cap = quirks, session_cap
        self.set_fault(self.fault, self.latency_ms)

    def ctl(self, *args, check=True):
        """dkimsignctl, with faultp11's counters of its own: the daemon's
        stats file stays the daemon's."""
        env = self.env
        self.env = dict(env, FAULTP11_STATS=self.control + ".ctl-stats")
        try:
            return super().ctl(*args, check=check)
        finally:
            self.env = env

    def fault_stats(self):
        try:
            with open(self.control + ".stats") as f:
                return {k: int(v) for k, v in (line.strip().split("=", 1) for line in f if "=" in line)}
        except FileNotFoundError:
            return {}

    def wait_stat(self, name, at_least, timeout=WAIT_S):
        """Wait until faultp11 has counted `name` at least `at_least`
        times; returns the stats."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            stats = self.fault_stats()
            if stats.get(name, 0) >= at_least:
                return stats
            if self.daemon and self.daemon.poll() is not None:
                break
            time.sleep(0.02)
        raise AssertionError(f"faultp11 counted {name} fewer than {at_least} time(s) in {timeout}s: "
                             f"{self.fault_stats()}\n{log_events(self)}")

    def stopped_stats(self):
        """Stop the daemon and return faultp11's last counts (C_Finalize
        writes them all)."""
        assert self.stop() == 0, f"dkimsignd did not exit cleanly:\n{self.log()}"
        return self.fault_stats()

    def wait_fault_hit(self, before, hits=1, timeout=WAIT_S):
        """Wait until the token has returned the fault `hits` times since
        the stats `before`: on a busy machine the clients may need a while
        to reach it."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.fault_stats().get("faults", 0) >= before.get("faults", 0) + hits:
                return
            if self.daemon and self.daemon.poll() is not None:
                break
            time.sleep(0.02)
        alive = "running" if self.daemon and self.daemon.poll() is None else \
            f"exited with {self.daemon.returncode if self.daemon else None}"
        raise AssertionError(f"the token returned the fault fewer than {hits} time(s) in {timeout}s: "
                             f"{before} -> {self.fault_stats()}; dkimsignd {alive}:\n{self.log()[-3000:]}")


class Load:
    """Clients signing in a loop; every outcome is recorded with its time."""

    def __init__(self, box, clients=4):
        self.box = box
        self.results = []   # (time, "signed" | "tempfail" | "wrong" | "other:<detail>")
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self.client, daemon=True) for _ in range(clients)]

    def client(self):
        while not self.stop.is_set():
            started = time.monotonic()
            try:
                p = subprocess.run([harness.binary("dkimsign"), "--socket", self.box.socket], input=MESSAGE,
                                   capture_output=True, timeout=CLIENT_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                outcome = "other:hung"
            else:
                if p.returncode == 0:
                    ok = all(harness.dkimpy_verify(p.stdout, self.box.keytable, i) for i in range(2))
                    outcome = "signed" if ok else "wrong"
                elif p.returncode == EX_TEMPFAIL:
                    outcome = "tempfail"
                else:
                    outcome = f"other:{p.returncode}:{p.stderr.decode(errors='replace').strip()}"
            with self.lock:
                self.results.append((started, time.monotonic() - started, outcome))

    def __enter__(self):
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        for t in self.threads:
            t.join(CLIENT_TIMEOUT_S + 5)

    def wait_for(self, done, what, timeout=WAIT_S):
        """Wait until done(results) is true (results: a copy, in the order
        they finished); returns it."""
        deadline = time.monotonic() + timeout
        while True:
            with self.lock:
                results = list(self.results)
            if done(results):
                return results
            if time.monotonic() > deadline:
                raise AssertionError(f"{what}: not within {timeout}s; last outcomes: "
                                     f"{[r[2] for r in results[-10:]]}")
            time.sleep(0.05)

    def wait_signed(self, n, since=0, timeout=WAIT_S):
        """Wait until n requests started at or after `since` were signed."""
        self.wait_for(lambda rs: sum(1 for r in rs if r[0] >= since and r[2] == "signed") >= n,
                      f"{n} signatures", timeout)

    def wait_tempfails(self, n, since, timeout=WAIT_S):
        """Wait until n requests started at or after `since` got a
        temporary error."""
        self.wait_for(lambda rs: sum(1 for r in rs if r[0] >= since and r[2] == "tempfail") >= n,
                      f"{n} temporary error(s)", timeout)

    def wait_resumed(self, t0, n, timeout=WAIT_S):
        """Wait until the last n requests started at or after t0 (in the
        order they started) were all signed; returns the requests from the
        first of them on."""
        def signed_tail(rs):
            rs = sorted((r for r in rs if r[0] >= t0), key=lambda r: r[0])
            i = len(rs)
            while i > 0 and rs[i - 1][2] == "signed":
                i -= 1
            return rs[i:]

        return signed_tail(self.wait_for(lambda rs: len(signed_tail(rs)) >= n,
                                         f"{n} signatures in a row", timeout))

    def wait_after(self, t0, n, timeout=WAIT_S):
        """Wait until n requests started at or after t0 have finished
        (sanitizer builds make every request much slower); returns them."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                done = [r for r in self.results if r[0] >= t0]
            if len(done) >= n:
                return done
            time.sleep(0.05)
        return done

    def between(self, t0, t1):
        """Requests started at or after t0 and finished before t1."""
        with self.lock:
            return [r for r in self.results if t0 <= r[0] and r[0] + r[1] < t1]


def check_outcomes(results, what, box=None):
    bad = [r for r in results if r[2] not in ("signed", "tempfail")]
    assert not bad, f"{what}: outcomes other than a verified signature or a temporary error: {bad[:5]}" + \
        (f"\n{log_events(box)}" if box else "")


def log_events(box):
    """The end of the daemon's log, without the audit lines of signed
    requests (thousands of them)."""
    return "\n".join(line for line in box.log().splitlines() if "audit: signed" not in line)[-3000:]


def started_box():
    box = FaultBox()
    box.init_token()
    box.keygen("example.com", "rsa1", "rsa")
    box.keygen("example.com", "ed1", "ed25519")
    box.start()
    return box


def run_fault(fault, expect_visible, hits=1, tempfails=2):
    """Sign under load; turn the fault on until the token has returned it
    `hits` times (and, when clients see it, until they got `tempfails`
    temporary errors), then off; wait until signing is back."""
    with started_box() as box:
        with Load(box) as load:
            load.wait_signed(8)
            before = box.fault_stats()
            t_on = time.monotonic()
            box.set_fault(fault)
            box.wait_fault_hit(before, hits)
            if expect_visible:
                load.wait_tempfails(tempfails, since=t_on)
            t_off = time.monotonic()
            box.set_fault("none")
            # Hung calls return, sessions are reopened, the login redone:
            # then every request signs again.
            try:
                resumed = load.wait_resumed(t_off, 8)
            except AssertionError as e:
                raise AssertionError(f"{fault}: signing did not resume after the fault cleared: {e}\n"
                                     f"{log_events(box)}") from None
        check_outcomes(load.results, fault, box)
        early = load.between(0, t_on)
        assert early and all(r[2] == "signed" for r in early), \
            f"{fault}: signing failed before the fault: {[r[2] for r in early]}"
        if expect_visible:
            assert any(r[2] == "tempfail" for r in load.results), \
                f"{fault}: no temporary error while the fault was on"
        assert resumed and all(r[2] == "signed" for r in resumed), \
            f"{fault}: signing did not resume after the fault cleared: " \
            f"{[r[2] for r in resumed][:10]}\n{log_events(box)}"
        slowest = max(r[1] for r in load.results)
        assert slowest < SIGN_TIMEOUT_S + 8, f"{fault}: a request took {slowest:.1f}s"
        assert box.daemon.poll() is None, f"{fault}: dkimsignd died:\n{box.log()}"
        counts = {k: sum(1 for r in load.results if r[2] == k) for k in ("signed", "tempfail")}
        print(f"  {fault}: {counts['signed']} signed, {counts['tempfail']} temporary errors, "
              f"slowest answer {slowest:.2f}s")


def test_device_error():
    run_fault("device_error", expect_visible=True, hits=20)


def test_session_closed():
    # A lost session is reopened (and the login redone) and the request
    # retried once, so clients may never notice.
    run_fault("session_closed", expect_visible=False)


def test_session_handle_invalid():
    run_fault("session_handle_invalid", expect_visible=False)


def test_token_not_present():
    # Recovery fails fast for a while after each failed attempt, so the
    # module sees a few calls a second.
    run_fault("token_not_present", expect_visible=True, hits=5)


def test_user_not_logged_in():
    run_fault("user_not_logged_in", expect_visible=False)


def test_refused_pin_is_never_offered_again():
    """The user PIN was changed on the token under the running daemon, and
    the login is lost: the daemon offers its kept PIN, the token refuses
    it, and the daemon never offers it again (a real token locks its user
    out after 3 to 10 wrong PINs, every application's signing with it).
    Clients get temporary errors, the log says CKR_PIN_INCORRECT, and a
    restart (which reads the PIN anew) signs again."""
    with started_box() as box:
        with Load(box) as load:
            load.wait_signed(8)
            box.set_quirks("pin_changed")
            box.set_fault("user_not_logged_in")
            box.wait_stat("pins_refused", 1)
            # Long enough for many recoveries: each request that meets the
            # lost login tries one, 200 ms apart at most (the back-off):
            # temporary errors for requests begun 2 s after the refusal.
            load.wait_tempfails(10, since=time.monotonic() + 2)
        check_outcomes(load.results, "pin_changed", box)
        refused = box.stopped_stats()["pins_refused"]
        # One wrong PIN per signer process, at most: never one per request.
        assert refused == 1, f"the token was offered a wrong PIN {refused} times:\n{log_events(box)}"
        assert "CKR_PIN_INCORRECT" in box.log(), log_events(box)
        # The PIN file now holds the token's PIN (here: the token takes it
        # again); the restart logs in and signs.
        box.set_fault("none")
        box.set_quirks("none")
        box.start()
        p = box.sign(b"From: a@example.com\r\nSubject: x\r\n\r\nbody\r\n")
        assert p.returncode == 0, p.stderr
        tempfails = sum(1 for r in load.results if r[2] == "tempfail")
        print(f"  pin_changed: {refused} wrong PIN offered to the token, {tempfails} temporary errors; "
              f"signed again after a restart")


def test_corrupt_signature_never_released():
    # The token returns a wrong signature; the self-check against the
    # public key catches every one of them.
    run_fault("corrupt", expect_visible=True, hits=20)


def test_hang_is_bounded():
    # Every session hangs: requests get a temporary error after
    # sign_timeout, new sessions are opened (and hang: each counts), and
    # all of it recovers.
    run_fault("hang", expect_visible=True, hits=3, tempfails=3)


def test_one_hung_session_does_not_starve_the_others():
    with started_box() as box:
        with Load(box) as load:
            load.wait_signed(8)
            before = box.fault_stats()
            t_on = time.monotonic()
            box.set_fault("hang_one")
            box.wait_fault_hit(before)
            # The hung request (it may have started before t_on) is
            # answered after sign_timeout, while the other sessions go on
            # signing.
            load.wait_for(lambda rs: any(r[2] == "tempfail" for r in rs)
                          and sum(1 for r in rs if r[0] >= t_on and r[2] == "signed") >= 3,
                          "a temporary error for the hung request and 3 signatures by the others")
            t_off = time.monotonic()
            box.set_fault("none")
            # The hung call returns; signing goes on.
            load.wait_signed(4, since=t_off)
            deadline = time.monotonic() + WAIT_S
            while "has hung" not in box.log() and time.monotonic() < deadline:
                time.sleep(0.05)
        check_outcomes(load.results, "hang_one")
        temp = [r for r in load.results if r[2] == "tempfail"]
        signed = [r for r in load.between(t_on, t_off) if r[2] == "signed"]
        assert len(temp) >= 1, "the hung request was not answered with a temporary error"
        assert len(signed) >= 3, f"only {len(signed)} signatures while one session hung"
        # Measured by the client, from dkimsign's start: sign_timeout plus
        # the supervisor's tick, queueing and a loaded (ASan) machine's
        # process start; a request left waiting would take CLIENT_TIMEOUT_S.
        assert max(r[1] for r in temp) < 2 * SIGN_TIMEOUT_S + 2, "the hung request was answered too late"
        assert "has hung" in box.log(), box.log()
        print(f"  hang_one: {len(signed)} signed by the other sessions while one hung, "
              f"{len(temp)} temporary error(s)")


def test_kill_9_under_socket_activation():
    """systemd holds the listening socket: a daemon killed with SIGKILL and
    started again loses no connection attempt."""
    box = FaultBox()
    try:
        box.init_token()
        box.keygen("example.com", "rsa1", "rsa")
        box.keygen("example.com", "ed1", "ed25519")
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(box.socket)
        listener.listen(512)

        def spawn():
            # As systemd does: the socket is fd 3, LISTEN_PID names the daemon.
            log = open(box.log_path, "ab")
            fd = listener.fileno()
            p = subprocess.Popen(["/bin/sh", "-c", f'LISTEN_PID=$$ LISTEN_FDS=1 exec "$0" --config "$1" 3<&{fd}',
                                  harness.binary("dkimsignd"), box.config],
                                 env=box.env, stdout=log, stderr=log, pass_fds=(fd,))
            log.close()
            return p

        daemon = spawn()
        restarts = 0
        with Load(box, clients=6) as load:
            for _ in range(3):
                # Killed once it signs (this daemon, not only the last).
                load.wait_signed(8, since=time.monotonic())
                daemon.kill()
                daemon.wait()
                time.sleep(0.3)  # systemd's RestartSec, roughly
                daemon = spawn()
                restarts += 1
            # The last daemon was dead before this: every request from now
            # on waits in the listener's backlog and is signed.
            resumed = load.wait_after(time.monotonic(), 8)
        daemon.terminate()
        daemon.wait(30)
        listener.close()
        check_outcomes(load.results, "kill -9")
        assert resumed and all(r[2] == "signed" for r in resumed), "signing did not resume after restarts"
        counts = {k: sum(1 for r in load.results if r[2] == k) for k in ("signed", "tempfail")}
        slowest = max(r[1] for r in load.results)
        print(f"  kill -9 x{restarts}: {counts['signed']} signed, {counts['tempfail']} temporary errors, "
              f"slowest answer {slowest:.2f}s")
    finally:
        box.close()


class Library:
    """libdkimsign itself, through ctypes: one long-lived client, as an MTA
    holds it (the dkimsign program makes a new one per message)."""

    def __init__(self, socket_path):
        self.lib = ctypes.CDLL(os.path.join(harness.BUILD, "client", "libdkimsign.so.0"))
        self.lib.dkimsign_client_error.restype = ctypes.c_char_p
        self.lib.dkimsign_err_is_temporary.restype = ctypes.c_int
        self.client = ctypes.c_void_p()
        self.lib.dkimsign_client_open(socket_path.encode(), ctypes.byref(self.client))

    def sign(self, message):
        """(code, fields or the error sentence)."""
        m = ctypes.c_void_p()
        assert self.lib.dkimsign_message_new(ctypes.byref(m)) == 0
        try:
            assert self.lib.dkimsign_message_write(m, message, ctypes.c_size_t(len(message))) == 0
            out = ctypes.c_char_p()
            r = self.lib.dkimsign_sign(self.client, m, ctypes.byref(out))
            if r == 0:
                fields = out.value
                ctypes.CDLL(None).free(out)
                return 0, fields
            return r, self.lib.dkimsign_client_error(self.client).decode()
        finally:
            self.lib.dkimsign_message_free(m)

    def close(self):
        self.lib.dkimsign_client_free(self.client)


def test_library_reconnects_after_restart():
    with started_box() as box:
        lib = Library(box.socket)
        try:
            def signed_ok():
                r, fields = lib.sign(MESSAGE)
                assert r == 0, fields
                msg = fields.replace(b"\r\n", b"\n") + MESSAGE
                assert all(harness.dkimpy_verify(msg, box.keytable, i) for i in range(2))

            signed_ok()
            # A restart between two messages: the next one reconnects and is
            # sent again on the new connection.
            assert box.stop() == 0
            box.start()
            signed_ok()
            # No daemon: a temporary error, at once, not a hang.
            assert box.stop() == 0
            started = time.monotonic()
            r, why = lib.sign(MESSAGE)
            assert r < 0 and lib.lib.dkimsign_err_is_temporary(r), (r, why)
            assert time.monotonic() - started < 5, "the library waited for a daemon that is not there"
            box.start()
            signed_ok()
            print(f"  reconnected after two restarts; without a daemon: {why}")
        finally:
            lib.close()


# --- quirks: what some real HSMs do and the packaged modules never show ------

def signed_fields(box, n):
    """Sign n messages one after another; each must be signed and verify.
    Returns the algorithms (a= tags) of each message's signatures."""
    algs = []
    for _ in range(n):
        p = box.sign(MESSAGE)
        assert p.returncode == 0, f"dkimsign exited {p.returncode}: {p.stderr.decode(errors='replace')}\n" \
            f"{log_events(box)}"
        fields = harness.signature_fields(p.stdout)
        assert all(harness.dkimpy_verify(p.stdout, box.keytable, i) for i in range(len(fields))), p.stdout
        algs.append(sorted(harness.tags(f)["a"] for f in fields))
    return algs


def one_line_error(p, *needles):
    """dkimsignctl failed with one line on stderr naming each needle;
    returns the line."""
    lines = p.stderr.strip().splitlines()
    assert p.returncode == 1 and len(lines) == 1 and all(n in lines[0] for n in needles), \
        (p.returncode, p.stderr, needles)
    return lines[0]


def test_quirk_no_eddsa():
    """A token without Ed25519 (no CKM_EDDSA): keygen and import of an
    Ed25519 key are refused in one line; an Ed25519 key made before is
    refused at load (in list and the log), and its domain signs with RSA
    alone rather than failing every message."""
    with FaultBox() as box:
        box.init_token()
        box.keygen("example.com", "rsa1", "rsa")
        box.keygen("example.com", "ed1", "ed25519")
        box.set_quirks("no_eddsa")
        keygen = one_line_error(box.ctl("keygen", "--domain", "example.com", "--selector", "ed2",
                                        "--algorithm", "ed25519", check=False), "CKM_EDDSA", "--algorithm rsa")
        pem = os.path.join(box.dir, "ed.pem")
        subprocess.run(["openssl", "genpkey", "-algorithm", "ED25519", "-out", pem], check=True,
                       capture_output=True)
        imported = one_line_error(box.ctl("import", "--domain", "example.com", "--selector", "ed3", pem,
                                          check=False), "CKM_EDDSA", "RSA")
        listing = box.ctl("list").stdout
        rows = {line.split()[1]: line.split() for line in listing.splitlines() if line.startswith("example.com ")}
        assert set(rows) == {"rsa1", "ed1"}, listing
        assert rows["ed1"][4] == "refused" and rows["rsa1"][4] != "refused", listing
        note = next(line.strip() for line in listing.splitlines() if "ed1._domainkey" in line and "never" in line)
        assert "CKM_EDDSA" in note, listing

        box.start()
        logged = [line for line in box.log().splitlines()
                  if "ed1._domainkey.example.com" in line and "never signs" in line]
        assert len(logged) == 1 and "CKM_EDDSA" in logged[0], box.log()
        # Dual-signing example.com signs with RSA alone, every time.
        algs = signed_fields(box, 10)
        assert all(a == ["rsa-sha256"] for a in algs), algs
        stats = box.stopped_stats()
        assert stats.get("signatures", 0) >= 10, stats
        print(f"  keygen: {keygen}\n  import: {imported}\n  list: {note}\n  log: {logged[0]}\n"
              f"  10 messages signed with rsa-sha256 alone")


def test_quirk_ec_params_by_name():
    """A token that names Ed25519's curve only as "edwards25519" (YubiHSM's
    module): keygen and import of Ed25519 keys fall back to the name after
    the OID is refused, and the keys sign and verify."""
    with FaultBox() as box:
        box.init_token()
        box.set_quirks("ec_params_by_name")

        def ctl_refusals(*args):
            """dkimsignctl args; the OID templates its module refused."""
            box.ctl(*args)
            with open(box.control + ".ctl-stats") as f:
                return int(dict(line.strip().split("=", 1) for line in f)["params_refused"])

        refused = ctl_refusals("keygen", "--domain", "example.com", "--selector", "ed1", "--algorithm", "ed25519")
        assert refused == 1, refused
        box.keytable["ed1._domainkey.example.com"] = box.dns_record("example.com", "ed1")
        pem = os.path.join(box.dir, "ed.pem")
        subprocess.run(["openssl", "genpkey", "-algorithm", "ED25519", "-out", pem], check=True,
                       capture_output=True)
        # The private key object is refused with the OID; the pair is made by name.
        refused += ctl_refusals("import", "--domain", "example.org", "--selector", "ed2", pem)
        assert refused == 2, refused
        box.keytable["ed2._domainkey.example.org"] = box.dns_record("example.org", "ed2")
        box.start()
        algs = signed_fields(box, 3)
        assert all(a == ["ed25519-sha256"] for a in algs), algs
        p = box.sign(MESSAGE.replace(b"alice@example.com", b"alice@example.org"))
        assert p.returncode == 0 and harness.dkimpy_verify(p.stdout, box.keytable), p.stderr
        print(f"  Ed25519 keygen and import on a token that takes the curve by name only: "
              f"{refused} OID templates refused, then made by name; 4 messages verify")


def run_no_copy(quirk, ckr):
    """A token that won't copy private keys: signing uses the token
    objects, without an error, and the copy is not tried again on every
    signature, for the other key, nor after every reload.  The keys are
    made modifiable (lock_keys = no): a locked key's refusal can't be told
    from the token's policy, so it is counted against that key alone."""
    with FaultBox(extra="lock_keys = no\n") as box:
        box.init_token()
        box.keygen("example.com", "rsa1", "rsa")
        box.keygen("example.com", "ed1", "ed25519")
        box.set_quirks(quirk)
        box.start()
        n = 0
        for _ in range(3):
            algs = signed_fields(box, 10)
            assert all(a == ["ed25519-sha256", "rsa-sha256"] for a in algs), algs
            n += len(algs)
            assert "2 signing key(s)" in box.ctl("reload").stdout
        n += len(signed_fields(box, 10))
        stats = box.stopped_stats()
        assert stats.get("signatures", 0) >= 2 * n, stats
        assert stats.get("copies_refused") == stats.get("copy_calls"), stats
        assert stats["copy_calls"] == 1, \
            f"{quirk}: {stats['copy_calls']} C_CopyObject calls for {n} messages across 3 reloads: {stats}"
        events = log_events(box)
        assert "error" not in events.lower() and "fail" not in events.lower(), events
        print(f"  {quirk} ({ckr}): {stats['copy_calls']} C_CopyObject call for {stats['signatures']} "
              f"signatures ({n} messages, 2 keys, 3 reloads)")


def test_quirk_no_copy():
    run_no_copy("no_copy", "CKR_ACTION_PROHIBITED")


def test_quirk_copy_unsupported():
    run_no_copy("copy_unsupported", "CKR_FUNCTION_NOT_SUPPORTED")


def test_quirk_session_cap():
    """A token that opens only so many sessions to a process: dkimsignd
    with [token] sessions = 8 starts with those it got, says so once, and
    signs; with not even one for signing it refuses to start, saying why.
    faultp11's cap is per process (a module loaded into each process
    can't count another's), so dkimsignctl beside the daemon has its own."""
    with FaultBox(sessions=8) as box:
        box.init_token()
        box.keygen("example.com", "rsa1", "rsa")
        box.keygen("example.com", "ed1", "ed25519")
        # The admin session and two signing sessions.
        box.set_quirks("none", session_cap=3)
        box.start()
        with Load(box) as load:
            load.wait_signed(20)
            # dkimsignctl, another process, while the daemon holds them.
            listing = box.ctl("list").stdout
            assert "rsa1" in listing and "ed1" in listing, listing
            # The sessions it signs with, not the ones it asked for.
            status = box.ctl("status").stdout.splitlines()
            assert "sessions=2" in status, status
        check_outcomes(load.results, "session_cap", box)
        assert not any(r[2] == "tempfail" for r in load.results), [r[2] for r in load.results]
        warnings = [line for line in box.log().splitlines() if "[token] sessions" in line]
        assert len(warnings) == 1 and "2 of the 8" in warnings[0] and "sessions = 2" in warnings[0], box.log()
        stats = box.stopped_stats()
        assert stats["sessions_peak"] == 3 and stats["sessions_refused"] >= 1, stats
        signed = sum(1 for r in load.results if r[2] == "signed")
        print(f"  session_cap = 3, sessions = 8: {warnings[0]}\n"
              f"  {signed} signed by 4 clients; peak {stats['sessions_peak']} sessions, "
              f"{stats['sessions_refused']} refused")

        # Only the admin session: none to sign on.
        box.set_quirks("none", session_cap=1)
        offset = len(box.log())
        with open(box.log_path, "ab") as log:
            p = subprocess.Popen(harness.DAEMON_WRAPPER + [harness.binary("dkimsignd"), "--config", box.config],
                                 env=box.env, stdout=log, stderr=log)
        try:
            code = p.wait(WAIT_S)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
            raise AssertionError(f"dkimsignd with no session to sign on did not exit:\n{box.log()}") from None
        tail = box.log()[offset:].splitlines()
        errors = [line for line in tail if "CKR_SESSION_COUNT" in line]
        # 1, dkimsignd's start-up failure (a sanitizer's abort is not).
        assert code == 1 and len(errors) == 1, (code, tail)
        print(f"  session_cap = 1: exit {code}: {errors[0]}")


def test_quirk_fresh_session_login():
    """A token whose login is per session: every new signing session logs
    in on itself (with the kept PIN) and signs; after the sessions are
    lost, the new ones do the same.  Never a run of temporary errors."""
    with FaultBox() as box:
        box.init_token()
        box.keygen("example.com", "rsa1", "rsa")
        box.keygen("example.com", "ed1", "ed25519")
        box.set_quirks("fresh_session_login")
        box.start()
        with Load(box) as load:
            load.wait_signed(20)
            # A session logging in on itself is no fault.
            assert "after a token fault" not in box.log(), log_events(box)
            before = box.fault_stats()
            t_on = time.monotonic()
            box.set_fault("session_closed")
            box.wait_fault_hit(before)
            box.set_fault("none")
            load.wait_resumed(t_on, 20)
            # A reload (which may open the sessions anew) under load.
            t_reload = time.monotonic()
            assert "2 signing key(s)" in box.ctl("reload").stdout
            resumed = load.wait_resumed(t_reload, 20)
        check_outcomes(load.results, "fresh_session_login", box)
        assert resumed and all(r[2] == "signed" for r in resumed)
        tempfails = sum(1 for r in load.results if r[2] == "tempfail")
        assert tempfails == 0, f"{tempfails} temporary errors:\n{log_events(box)}"
        stats = box.stopped_stats()
        # Each signing session is refused at most once before it logs in
        # on itself, each time sessions are opened: at the start, after
        # the loss, after the reload.
        assert 1 <= stats["not_logged_in"] <= 6, stats
        assert stats["logins"] >= 2, stats
        signed = sum(1 for r in load.results if r[2] == "signed")
        print(f"  {signed} signed, {tempfails} temporary errors; {stats['not_logged_in']} C_SignInit refused "
              f"(CKR_USER_NOT_LOGGED_IN), {stats['logins']} C_Login calls")


if __name__ == "__main__":
    harness.run([
        test_device_error,
        test_session_closed,
        test_session_handle_invalid,
        test_token_not_present,
        test_user_not_logged_in,
        test_refused_pin_is_never_offered_again,
        test_corrupt_signature_never_released,
        test_hang_is_bounded,
        test_one_hung_session_does_not_starve_the_others,
        test_kill_9_under_socket_activation,
        test_quirk_no_eddsa,
        test_quirk_no_copy,
        test_quirk_copy_unsupported,
        test_quirk_session_cap,
        test_quirk_fresh_session_login,
        test_quirk_ec_params_by_name,
    # An ASan-built library can't be loaded into an uninstrumented Python
    # (ctypes): the gcc build runs this one.
    ] + ([] if os.environ.get("DKIMSIGN_SANITIZED") == "1" else [test_library_reconnects_after_restart]))
