# SPDX-License-Identifier: MIT
"""A private Postfix for a test: its own configuration, queue and log in a
directory of the test's, listening on 127.0.0.1 only (test-milter.py,
test-postfix-cases.py).  Needs root and the postfix user (the postfix
package installed, not running as the system MTA)."""
import os
import pwd
import socket
import subprocess
import time

# The services a private Postfix runs: smtpd on the test's port.
MASTER_CF = """\
127.0.0.1:{port} inet n - n - - smtpd
cleanup   unix  n - n - 0 cleanup
qmgr      unix  n - n 300 1 qmgr
rewrite   unix  - - n - - trivial-rewrite
bounce    unix  - - n - 0 bounce
defer     unix  - - n - 0 bounce
trace     unix  - - n - 0 bounce
verify    unix  - - n - 1 verify
flush     unix  n - n 1000? 0 flush
proxymap  unix  - - n - - proxymap
smtp      unix  - - n - - smtp
relay     unix  - - n - - smtp
showq     unix  n - n - - showq
error     unix  - - n - - error
retry     unix  - - n - - error
discard   unix  - - n - - discard
local     unix  - n n - - local
virtual   unix  - n n - - virtual
anvil     unix  - - n - 1 anvil
scache    unix  - - n - 1 scache
postlog   unix-dgram n - n - 1 postlogd
"""


def main_cf(d):
    """The main.cf lines every private Postfix of the tests has: its
    directory d, loopback only, relaying for 127.0.0.0/8, no local
    delivery, no aliases."""
    return f"""\
compatibility_level = 3.6
queue_directory = {d}/queue
data_directory = {d}/data
meta_directory = /etc/postfix
maillog_file = {d}/maillog
maillog_file_prefixes = {d}
myhostname = mx.example.com
mydomain = example.com
myorigin = example.com
mydestination =
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
smtpd_relay_restrictions = permit_mynetworks, reject
alias_maps =
alias_database =
smtputf8_enable = no
biff = no
"""


def start(conf, port, log):
    """postfix -c conf start, then wait (bounded) until smtpd listens on
    127.0.0.1:port; log() is Postfix's log, for the error."""
    p = subprocess.run(["postfix", "-c", conf, "start"], capture_output=True, text=True, timeout=60)
    if p.returncode != 0:
        raise AssertionError(f"postfix start failed: {p.stdout}{p.stderr}{log()}")
    deadline = time.monotonic() + 20
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), 1).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise AssertionError("postfix did not listen:\n" + log())
            time.sleep(0.1)


class PrivatePostfix:
    """What every private Postfix of the tests has: its log (maillog in
    self.dir) and a stop."""

    def log(self):
        try:
            with open(os.path.join(self.dir, "maillog"), errors="replace") as f:
                return f.read()
        except FileNotFoundError:
            return ""

    def stop(self):
        subprocess.run(["postfix", "-c", self.conf, "stop"], capture_output=True, timeout=60)


class RelayPostfix(PrivatePostfix):
    """Postfix that relays everything to relayhost (HOST:PORT) through
    smtpd_milters, with main.cf lines extra on top."""

    def __init__(self, directory, port, relayhost, milters, extra=""):
        self.dir = directory
        self.conf = os.path.join(directory, "conf")
        self.port = port
        for d in (self.conf, os.path.join(directory, "queue"), os.path.join(directory, "data")):
            os.makedirs(d, exist_ok=True)
        pw = pwd.getpwnam("postfix")
        os.chown(os.path.join(directory, "data"), pw.pw_uid, pw.pw_gid)
        os.chmod(directory, 0o755)
        with open(os.path.join(self.conf, "main.cf"), "w") as f:
            f.write(f"""\
{main_cf(directory)}relayhost = [{relayhost.split(':')[0]}]:{relayhost.split(':')[1]}
smtp_tls_security_level = none
smtpd_milters = {" ".join("unix:" + m for m in milters)}
milter_default_action = tempfail
{extra}""")
        with open(os.path.join(self.conf, "master.cf"), "w") as f:
            f.write(MASTER_CF.format(port=port))
        start(self.conf, port, self.log)
