#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""The man pages say what the code does: every configuration key and
section the parsers accept is in dkimsignd.conf(5) or dkimsign-milter(8),
every dkimsignctl command in dkimsignctl(8), every long option of each
program in its page, and every page renders without a warning.  A key or a
command added to the code without its documentation fails here."""
import os
import re
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
from harness import run  # noqa: E402

SOURCE = os.environ.get("DKIMSIGN_SOURCE_DIR", os.path.join(os.path.dirname(__file__), "..", ".."))
MAN = os.path.join(SOURCE, "packaging", "man")
PAGES = {"dkimsignd": "dkimsignd.8", "dkimsign": "dkimsign.1", "dkimsignctl": "dkimsignctl.8",
         "dkimsign-milter": "dkimsign-milter.8", "dkimsignd.conf": "dkimsignd.conf.5",
         "dkimsign-smtpd-filter": "dkimsign-smtpd-filter.8"}
PROGRAMS = {"dkimsignd": "daemon/main.c", "dkimsign": "client/dkimsign-cli.c", "dkimsignctl": "ctl/main.c",
            "dkimsign-milter": "client/milter.c", "dkimsign-smtpd-filter": "client/smtpd-filter.c"}


def source(path):
    with open(os.path.join(SOURCE, path)) as f:
        return f.read()


def page_text(name):
    """The page as roff source with escapes for '-' undone, so words match."""
    with open(os.path.join(MAN, PAGES[name])) as f:
        return f.read().replace("\\-", "-").replace("\\&", "")


def missing(words, text):
    return sorted(w for w in set(words) if not re.search(r"(?<![\w-])" + re.escape(w) + r"(?![\w-])", text))


def test_config_keys_documented():
    code = source("keys/config.c")
    keys = re.findall(r'strcmp\(name, "([a-z_]+)"\)', code)
    sections = re.findall(r'strcmp\(section, "([a-z]+)"\)', code)
    assert len(keys) > 30 and {"daemon", "token", "limits", "signing"} <= set(sections), (keys, sections)
    text = page_text("dkimsignd.conf")
    assert not missing(keys, text), f"dkimsignd.conf(5) lacks keys: {missing(keys, text)}"
    absent = sorted(s for s in sections if f".SH [{s}]" not in text)
    assert not absent, f"dkimsignd.conf(5) has no section for: {absent}"
    # The commented default config shows every section and key too.
    with open(os.path.join(SOURCE, "packaging", "dkimsignd.conf")) as f:
        default = f.read()
    absent = missing(keys, default)
    assert not absent, f"packaging/dkimsignd.conf does not mention: {absent}"


def test_milter_keys_documented():
    keys = re.findall(r'strcmp\(name, "([a-z_]+)"\)', source("client/milter.c"))
    assert len(keys) >= 5, keys
    text = page_text("dkimsign-milter")
    assert not missing(keys, text), f"dkimsign-milter(8) lacks keys: {missing(keys, text)}"


def test_ctl_commands_documented():
    commands = re.findall(r'\{ "([a-z-]+)", cmd_\w+,', source("ctl/main.c"))
    assert len(commands) >= 12, commands
    text = page_text("dkimsignctl")
    synopsis = text.split(".SH DESCRIPTION")[0]
    described = text.split(".SH COMMANDS")[1].split(".SH OPTIONS")[0]
    for part, where in ((synopsis, "SYNOPSIS"), (described, "COMMANDS")):
        absent = missing(commands, part)
        assert not absent, f"dkimsignctl(8) {where} lacks: {absent}"


def test_options_documented():
    for program, path in PROGRAMS.items():
        options = re.findall(r'\{ "([a-z-]+)", (?:required|no|optional)_argument,', source(path))
        assert {"help", "version"} <= set(options), (program, options)
        absent = missing(["--" + o for o in options], page_text(program))
        assert not absent, f"{PAGES[program]} lacks options: {absent}"


def test_pages_render_cleanly():
    env = dict(os.environ, MANWIDTH="80", LC_ALL="C.UTF-8")
    for name, page in PAGES.items():
        p = subprocess.run(["man", "--warnings", "-l", os.path.join(MAN, page)], capture_output=True,
                           text=True, env=env, timeout=60)
        assert p.returncode == 0 and not p.stderr.strip(), f"{page}: {p.stderr}"
        assert "SEE ALSO" in p.stdout and name.split(".")[0] in p.stdout, page


if __name__ == "__main__":
    run([test_config_keys_documented, test_milter_keys_documented, test_ctl_commands_documented,
         test_options_documented, test_pages_render_cleanly])
