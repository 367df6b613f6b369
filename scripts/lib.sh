# SPDX-License-Identifier: MIT
# Shared by scripts/quickstart, scripts/test, scripts/fuzz: the Debian
# packages dkimsign needs, installed when missing.

BUILD_PACKAGES="gcc clang valgrind libclang-rt-14-dev meson ninja-build pkg-config libssl-dev libinih-dev libsodium-dev libpsl-dev publicsuffix libidn2-dev
        libunbound-dev dns-root-data
        libsystemd-dev libp11-kit-dev libcmocka-dev softhsm2 python3 python3-dkim python3-nacl libmilter-dev
        debhelper dpkg-dev fakeroot build-essential libjansson-dev"
# The independent verifiers the conformance tests run, and what the other
# tests start: systemd-socket-activate, setpriv, Postfix, swaks, openssl,
# strace and man (tests/packaging); for test-tokens.py (tests/lib/tokens.py)
# opencryptoki's pkcsslotd and pkcsconf with its soft token, tpm2-pkcs11 and
# tpm2_ptool, swtpm, tpm2-abrmd with the TCTIs it and the module use, and
# dbus-daemon and dbus-send for tpm2-abrmd's private bus; m4, which builds
# test-sendmail.py's sendmail.cf (Sendmail itself is unpacked, not installed);
# the libraries Debian's exim4-daemon-heavy links that nothing above brings
# (test-exim.py unpacks Exim itself; its binary is set-user-id and runs
# itself again, so the loader would not look for them beside it);
# nsd, unbound and ldnsutils (test-dnssec.py's signed zone and validating
# resolver); Prometheus (promtool for the alert rules, the server for
# test-metrics.py); python3-authres and rspamd (test-arc.py's ARC verifiers);
# pyflakes3, which reads every Python file of the tree (the pyflakes test).
TEST_PACKAGES="pyflakes3 libmail-dkim-perl libnet-dns-perl python3-authres rspamd libopendkim-dev opensc opendkim-tools postfix swaks miltertest
        systemd util-linux openssl python3-cryptography dnsmasq-base strace man-db sasl2-bin libsasl2-modules
        nsd unbound ldnsutils opencryptoki libopencryptoki0 libtpm2-pkcs11-1 libtpm2-pkcs11-tools swtpm tpm2-abrmd libtss2-tcti-tabrmd0
        libtss2-tcti-swtpm0 dbus-daemon dbus-bin m4 libgnutls-dane0 libidn12 libmariadb3 libpq5 libspf2-2 prometheus"

# install_packages PKG...: apt-get install the ones not installed yet.
install_packages() {
        local missing=() p
        for p in "$@"; do
                dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
        done
        [ ${#missing[@]} -eq 0 ] && return 0
        if [ "$(id -u)" -ne 0 ]; then
                echo "missing Debian packages: ${missing[*]}" >&2
                echo "run as root, or: sudo apt-get install ${missing[*]}" >&2
                return 1
        fi
        echo "installing: ${missing[*]}"
        # postfix (test-milter.py runs a private instance): no system config.
        echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
        # No service starts from what is installed (opencryptoki's system
        # pkcsslotd, tpm2-abrmd, postfix): the tests start private instances
        # of their own (test-tokens.py: pkcsslotd in a mount and IPC
        # namespace of its own, tpm2-abrmd on a bus of its own), and a test
        # machine needs no system one.  policy-rc.d answers "not allowed"
        # (101) to invoke-rc.d and deb-systemd-invoke; one already there is
        # left as it is.
        local policy=/usr/sbin/policy-rc.d ours="" r
        if [ ! -e "$policy" ]; then
                printf '#!/bin/sh\n# scripts/lib.sh install_packages: no service starts\nexit 101\n' >"$policy" &&
                        chmod 755 "$policy" && ours=1
        fi
        # Another apt-get (a second checkout's tests, unattended-upgrades)
        # may hold the dpkg lock: wait for it rather than fail.
        apt-get -o DPkg::Lock::Timeout=600 update -qq
        DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
        r=$?
        [ -z "$ours" ] || rm -f "$policy"
        return $r
}
