"""``xdpd ban`` without a kernel: argument errors, what ``list`` prints, and fail2ban's action.

The command runs as a separate process, as an operator or fail2ban runs it.
Every bad argument is given together with a ``--pin-dir`` where nothing is
pinned: the exit status 64 (not 69, "nothing pinned") shows that arguments
are checked before the table is even looked for.  The kernel tests
(``tests/kernel/test_ban_cli.py``) run the same command on real pins.
"""

from __future__ import annotations

import configparser
import os
import re
import subprocess
import time

import pytest

from xdpd import layout
from xdpd.bans import BanRecord, parse_source
from xdpd.cli.ban import format_table, human_duration, list_rows
from xdpd.tables import rule_hash
from tests.unit.test_pure_imports import KERNEL_SIDE, run_child

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PYTHON = "/usr/bin/python3"
ACTION_CONF = os.path.join(REPO_ROOT, "etc", "fail2ban", "action.d", "xdpd.conf")
NOBODY = 65534


def xdpd_ban(*args: str, **kw) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": REPO_ROOT, "PYTHONDONTWRITEBYTECODE": "1"}
    return subprocess.run([PYTHON, "-m", "xdpd", "ban", *args], cwd=REPO_ROOT, capture_output=True, text=True,
                          timeout=60, env=env, **kw)


@pytest.fixture
def no_pins(tmp_path) -> str:
    """A pin dir with nothing in it (absent)."""
    return str(tmp_path / "pins")


# --------------------------------------------------------------------------- bad arguments


@pytest.mark.parametrize("args, message", [
    (["add", "192.0.2.0/24"], "192.0.2.0/24: a ban holds one IPv4 address, not a prefix"),
    (["add", "2001:db8::/48"], "2001:db8::/48: an IPv6 ban covers one /64; /48 is wider"),
    (["add", "example.org"], "'example.org' is not an IPv4 or IPv6 address"),
    (["add", "192.0.2.256"], "'192.0.2.256' is not an IPv4 or IPv6 address"),
    (["add", ""], "'' is not an IPv4 or IPv6 address"),
    (["add", "192.0.2.1", "--for", "5x"], "unknown unit 'x' in --for '5x'; expected s, m, h or d"),
    (["add", "192.0.2.1", "--for", "60"], "--for '60' has no unit; write '60s'"),
    (["add", "192.0.2.1", "--for", "0s"], "--for must be more than 0, got '0s'"),
    (["add", "192.0.2.1", "--for=-5m"], "--for must be more than 0, got '-5m'"),
    (["add", "192.0.2.1", "--for", "366d"], "--for '366d' is more than 365 days"),
    (["add", "192.0.2.1", "--reason", "x" * 64], "--reason is 64 bytes long; at most 63 are stored"),
    (["add", "192.0.2.1", "--reason", "é" * 32], "--reason is 64 bytes long; at most 63 are stored"),
    (["add", "192.0.2.1", "--reason", "two\nlines"], "--reason 'two\\nlines' has control characters"),
    (["del", "192.0.2.0/24"], "192.0.2.0/24: a ban holds one IPv4 address, not a prefix"),
    (["del", "nope"], "'nope' is not an IPv4 or IPv6 address"),
])
def test_bad_arguments_exit_64_with_one_line_before_looking_for_pins(no_pins, args, message):
    r = xdpd_ban(*args, "--pin-dir", no_pins)
    assert r.returncode == 64, r.stderr
    assert r.stdout == ""
    lines = r.stderr.splitlines()
    assert len(lines) == 1, r.stderr
    assert lines[0].startswith(f"xdpd ban {args[0]}: ") and message in lines[0], lines[0]
    assert not os.path.exists(no_pins)


def test_an_argument_error_is_found_first_even_with_no_bpf_on_the_machine(no_pins):
    """Parsing touches no kernel: with libbpf unloadable the answer is still the usage error."""
    got = run_child(f"from xdpd.cli import main\n"
                    f"result = main(['ban', 'add', '192.0.2.1', '--for', '5x', '--pin-dir', {no_pins!r}])")
    assert got["result"] == 64
    # xdpd.bans brings bpfsys and pins along, but nothing ran them: loading libbpf would have failed.
    assert KERNEL_SIDE & set(got["modules"]) <= {"xdpd.bpfsys", "xdpd.pins"}, got["modules"]


@pytest.mark.parametrize("args", [
    ["add"], ["del"], [], ["remove", "192.0.2.1"], ["add", "192.0.2.1", "--for"],
])
def test_missing_or_unknown_words_are_argparse_errors(no_pins, args):
    r = xdpd_ban(*args)
    assert r.returncode == 2, r.stderr
    assert r.stderr.startswith("usage: xdpd ban")


# --------------------------------------------------------------------------- nothing pinned, not root


@pytest.mark.parametrize("args", [
    ["add", "192.0.2.1"],
    ["add", "192.0.2.1/32", "--for", "1.5h", "--reason", "r" * 63],   # the longest reason that fits
    ["add", "2001:db8:1:2::7", "--for", "30s", "--reason", "é" * 31 + "x"],  # 63 bytes
    ["add", "2001:db8:1:2::/64"],
    ["add", "::ffff:192.0.2.1"],
    ["del", "192.0.2.1"],
    ["list"],
    ["list", "--json"],
])
def test_valid_arguments_with_nothing_pinned_exit_69_naming_the_pin_dir(no_pins, args):
    r = xdpd_ban(*args, "--pin-dir", no_pins)
    assert r.returncode == 69, r.stderr
    assert r.stdout == ""
    assert r.stderr == (f"xdpd ban {args[0]}: no ban table pinned under {no_pins} "
                        "(xdpd creates it when it starts; see --pin-dir)\n")


def test_an_empty_pin_dir_is_nothing_pinned(tmp_path):
    r = xdpd_ban("list", "--pin-dir", str(tmp_path))
    assert r.returncode == 69 and "no ban table pinned under" in r.stderr


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to run a command as nobody")
def test_not_root_exits_77(tmp_path):
    """A pin dir nobody may read: the answer is to run as root, not "nothing pinned"."""
    locked = tmp_path / "locked"
    (locked / "pins").mkdir(parents=True)
    locked.chmod(0o700)
    tmp_path.chmod(0o755)
    r = xdpd_ban("add", "192.0.2.1", "--pin-dir", str(locked / "pins"),
                 user=NOBODY, group=NOBODY, extra_groups=[])
    assert r.returncode == 77, r.stderr
    assert r.stderr == f"xdpd ban add: not allowed to read {locked / 'pins'} (run as root)\n"
    # ...but a bad argument is still a usage error first.
    r = xdpd_ban("add", "192.0.2.0/24", "--pin-dir", str(locked / "pins"), user=NOBODY, group=NOBODY,
                 extra_groups=[])
    assert r.returncode == 64


# --------------------------------------------------------------------------- what list shows


def record(address: str, expires_in: float | None, rule_slot: int = layout.BAN_BY_CLI, reason: str = "",
           now_ns: int = 10**12, rule: str = "") -> BanRecord:
    expires = 0 if expires_in is None else now_ns + int(expires_in * 1e9)
    return BanRecord(parse_source(address), expires, now_ns - 10**9, rule_slot, reason,
                     rule_hash(rule) if rule else 0)


def test_list_rows_are_the_documented_shape_active_only_v4_first():
    now_ns, now_unix = 10**12, 1_700_000_000.0
    rows = list_rows([
        record("2001:db8:1:2::5", 300, rule_slot=4, reason="dns-flood", rule="dns-flood-limit"),
        record("198.51.100.7", None, reason="f2b-sshd"),
        record("192.0.2.9", -0.5),  # expired, not yet swept: not shown
        record("192.0.2.10", 2, rule_slot=9),  # a rule no longer configured
    ], now_ns, now_unix, {4: "dns-flood-limit"})
    assert rows == [
        {"address": "192.0.2.10", "expires": 1_700_000_002.0, "reason": "", "source": "slot9"},
        {"address": "198.51.100.7", "expires": None, "reason": "f2b-sshd", "source": "cli"},
        {"address": "2001:db8:1:2::/64", "expires": 1_700_000_300.0, "reason": "dns-flood",
         "source": "dns-flood-limit"},
    ]


def test_table_for_people():
    now_unix = time.time()
    rows = [{"address": "192.0.2.1", "expires": now_unix + 300, "reason": "f2b-sshd", "source": "cli"},
            {"address": "2001:db8:1:2::/64", "expires": None, "reason": "", "source": "dns-flood"}]
    lines = format_table(rows, now_unix).splitlines()
    assert re.split(r"\s{2,}", lines[0]) == ["ADDRESS", "EXPIRES", "SOURCE", "REASON"]
    local = time.strftime("%Y-%m-%d %H:%M", time.localtime(now_unix + 300))
    assert lines[1].startswith("192.0.2.1 ") and local in lines[1] and "(in 5m)" in lines[1]
    assert lines[1].split()[-2:] == ["cli", "f2b-sshd"]
    assert lines[2].startswith("2001:db8:1:2::/64 ") and "until deleted" in lines[2]
    assert lines[2].endswith("dns-flood")
    # columns line up
    assert lines[1].index("cli") == lines[2].index("dns-flood") == lines[0].index("SOURCE")
    assert format_table([], now_unix) == "no active bans"


@pytest.mark.parametrize("seconds, text", [
    (0, "0s"), (0.2, "1s"), (1, "1s"), (59, "59s"), (60, "1m"), (90, "1m 30s"), (299.4, "5m"),
    (3600, "1h"), (3661, "1h 1m"), (86400, "1d"), (86400 + 4 * 3600 + 5, "1d 4h"), (365 * 86400, "365d"),
])
def test_human_duration(seconds, text):
    assert human_duration(seconds) == text


def test_source_names():
    def made_by(slot: int, name: str = "") -> BanRecord:
        return BanRecord(bytes(16), 0, 0, slot, "", rule_hash(name) if name else 0)
    assert made_by(layout.BAN_BY_CLI).source({}) == "cli"
    assert made_by(3, "ssh-syn").source({3: "ssh-syn"}) == "ssh-syn"
    assert made_by(3, "ssh-syn").source({}) == "slot3"                      # the rule is gone
    assert made_by(3, "ssh-syn").source({3: "web-syn"}) == "slot3"          # its slot went to another


# --------------------------------------------------------------------------- fail2ban's action file


def action_conf() -> configparser.RawConfigParser:
    cp = configparser.RawConfigParser()
    assert cp.read(ACTION_CONF) == [ACTION_CONF]
    return cp


def render(option: str, **tags: str) -> str:
    """What fail2ban runs for ``option``: [Init] tags and the ticket's tags substituted until none is left."""
    cp = action_conf()
    values = {**dict(cp["Init"]), **tags}
    cmd = cp["Definition"][option]
    while True:
        new = re.sub(r"<([\w-]+)>", lambda m: values.get(m.group(1), m.group(0)), cmd)
        if new == cmd:
            return cmd
        cmd = new


@pytest.fixture
def wrapped_xdpd(tmp_path):
    """An ``xdpd`` for the action that records its arguments, then runs the real command."""
    argv_file = tmp_path / "argv"
    script = tmp_path / "xdpd"
    script.write_text(f'#!/bin/sh\nprintf "%s\\n" "$@" > {argv_file}\n'
                      f'PYTHONPATH={REPO_ROOT} exec {PYTHON} -m xdpd "$@"\n')
    script.chmod(0o755)
    return str(script), argv_file


def run_action(option: str, xdpd: str, pin_dir: str, **tags: str) -> subprocess.CompletedProcess:
    cmd = render(option, xdpd=xdpd, pin_dir=pin_dir, name="sshd", **tags)
    return subprocess.run(["/bin/sh", "-c", cmd], capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("bantime, expect_for", [
    ("600", ["--for", "600s"]),
    ("5", ["--for", "5s"]),
    ("31536000", ["--for", "31536000s"]),   # 365 days, xdpd's longest
    ("31536001", []),                       # longer: until fail2ban unbans
    ("-1", []),                             # permanent
])
def test_actionban_gives_xdpd_the_bantime_or_no_deadline(wrapped_xdpd, no_pins, bantime, expect_for):
    xdpd, argv_file = wrapped_xdpd
    r = run_action("actionban", xdpd, no_pins, ip="192.0.2.7", bantime=bantime)
    assert argv_file.read_text().split("\n")[:-1] == [
        "ban", "add", "192.0.2.7", *expect_for, "--reason", "f2b-sshd", "--pin-dir", no_pins]
    # The real command took the arguments (69: only the table is missing).
    assert r.returncode == 69 and "no ban table pinned under" in r.stderr, r.stderr


def test_actionunban_accepts_not_banned_but_not_other_failures(tmp_path, wrapped_xdpd, no_pins):
    xdpd, argv_file = wrapped_xdpd
    r = run_action("actionunban", xdpd, no_pins, ip="2001:db8::5", bantime="600")
    assert argv_file.read_text().split("\n")[:-1] == ["ban", "del", "2001:db8::5", "--pin-dir", no_pins]
    assert r.returncode != 0 and "no ban table pinned" in r.stderr  # fail2ban logs this one
    for rc, ok in ((0, True), (1, True), (64, False), (69, False), (77, False)):
        stub = tmp_path / f"exit{rc}"
        stub.write_text(f"#!/bin/sh\nexit {rc}\n")
        stub.chmod(0o755)
        assert (run_action("actionunban", str(stub), no_pins, ip="192.0.2.7").returncode == 0) == ok, rc


def test_action_needs_no_setup_and_ships_the_package_paths():
    cp = action_conf()
    for option in ("actionstart", "actionstop", "actioncheck"):
        assert cp["Definition"][option] == ""
    assert cp["Init"]["xdpd"] == "/usr/sbin/xdpd"
    assert cp["Init"]["pin_dir"] == "/sys/fs/bpf/xdpd"
    assert "%" not in open(ACTION_CONF).read()  # fail2ban's parser would interpolate it
