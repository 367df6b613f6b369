# SPDX-License-Identifier: MIT
"""Debian packages a test runs without installing them (a private Exim,
Sendmail or OpenSMTPD): each .deb is fetched with `apt-get download` into a
cache under the build directory, once, and unpacked with `dpkg-deb -x` into
a directory of the test's own.

    root = unpack(["sendmail-bin", "sendmail-cf"], os.path.join(tmp, "root"))

A machine without the package lists or the network fails the test (it is
not skipped): the message says so; the second run finds the packages in
the cache.
"""
import glob
import os
import subprocess

from harness import BUILD

CACHE = os.path.join(BUILD, "deb-cache")


def fetch(package, cache=CACHE):
    """The path of package's .deb in cache, downloaded there first if it is
    not (the newest there when several are)."""
    os.makedirs(cache, exist_ok=True)
    debs = sorted(glob.glob(os.path.join(cache, package + "_*.deb")))
    if not debs:
        # Root's apt, not the _apt sandbox user: the cache may be below a
        # directory _apt cannot enter.
        p = subprocess.run(["apt-get", "download", "-q", "-o", "APT::Sandbox::User=root", package],
                           cwd=cache, capture_output=True, text=True, timeout=120)
        debs = sorted(glob.glob(os.path.join(cache, package + "_*.deb")))
        assert p.returncode == 0 and debs, \
            f"apt-get download {package} failed (no network, or no package lists: apt-get update):\n" \
            f"{p.stdout}{p.stderr}"
    return debs[-1]


def unpack(packages, root, cache=CACHE):
    """Every package unpacked into root (created); returns root."""
    os.makedirs(root, exist_ok=True)
    for package in packages:
        subprocess.run(["dpkg-deb", "-x", fetch(package, cache), root], check=True, timeout=60)
    return root


def library_path(root):
    """The directories of root that hold shared libraries, for
    LD_LIBRARY_PATH (a package's library dependency unpacked beside it)."""
    return ":".join(d for d in (os.path.join(root, "usr", "lib", "x86_64-linux-gnu"),
                                os.path.join(root, "lib", "x86_64-linux-gnu"), os.path.join(root, "usr", "lib"))
                    if os.path.isdir(d))
