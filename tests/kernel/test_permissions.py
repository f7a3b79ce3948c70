"""strict_permissions in the running daemon: an unsafe file is refused, the live filter stays.

The real daemon in a bed's victim namespace (:mod:`tests.testbed.daemon`);
its config dir is ``mkdtemp``'s (0700, root's, under the sticky ``/tmp``),
so it starts safe.  Each change here is a ``chmod`` alone, no byte of the
file changes: the watcher sees the attribute change (IN_ATTRIB) and the
reload that follows is judged by :mod:`xdpd.permissions`.  Real traffic
proves what the kernel enforces throughout.
"""

from __future__ import annotations

import json
import os
import time

import pytest

from tests.testbed.daemon import XdpdProcess, config, status_line
from tests.testbed.netbed import NetBed

pytestmark = pytest.mark.kernel

BAD_V4 = "192.0.2.1"
OTHER_V4 = "198.51.100.1"
TIMEOUT = 5.0
"""Seconds for a file change to be answered (the debounce is 0.1 s)."""


def dropped_now(bed: NetBed, src: str) -> bool:
    return bed.send("udp", src, count=2, settle=0.1) == 0


def passes_now(bed: NetBed, src: str) -> bool:
    return bed.send("udp", src, count=2, settle=0.1) == 2


def until(predicate, timeout: float = TIMEOUT) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.1)
    return True


def reload_state(d: XdpdProcess) -> dict:
    with open(os.path.join(d.runtime_dir, "reload.json")) as f:
        return json.load(f)


def answer_to(d: XdpdProcess, change, pattern: str) -> str:
    """Make ``change`` and return the daemon's STATUS= line that answers it (matching ``pattern``)."""
    d.drain_messages()
    change()
    return status_line(d.wait_message(pattern, timeout=TIMEOUT))


def drop(src: str) -> str:
    return f"[{{name: bad, action: drop, src: [{src}]}}]"


def test_a_rules_file_made_group_writable_is_refused_and_the_filter_stays(netbed, xdpd):
    d = xdpd(config(netbed.victim_if, drop(BAD_V4)))
    rules = os.path.join(d.config_dir, d.config_name)
    assert dropped_now(netbed, BAD_V4) and passes_now(netbed, OTHER_V4)

    status = answer_to(d, lambda: os.chmod(rules, 0o664), r"STATUS=reload rejected")
    assert status == (
        f"reload rejected (1 problem(s)), still enforcing the previous config: {rules}: writable by group "
        f"'root' (mode 0664): a user who can write it controls this host's firewall; chmod g-w,o-w it "
        f"(or set strict_permissions: false)")
    state = reload_state(d)
    assert state["ok"] is False and state["errors"] == [status.split("previous config: ", 1)[1]]
    assert dropped_now(netbed, BAD_V4) and passes_now(netbed, OTHER_V4)
    # As `systemctl reload` would: SIGHUP, answered with the same refusal.
    assert status_line(d.reload()).startswith(f"reload rejected (1 problem(s)), still enforcing the previous "
                                               f"config: {rules}: writable by group")
    assert dropped_now(netbed, BAD_V4)
    assert d.proc.poll() is None
    assert "reload_rejected" in d.stderr()

    # chmod back: that alone is a change, and its reload is applied.
    status = answer_to(d, lambda: os.chmod(rules, 0o644), r"STATUS=enforcing")
    assert status.startswith("enforcing 1 rules") and reload_state(d)["ok"] is True
    # ... and so is the next edit.
    answer_to(d, lambda: d.write_config(config(netbed.victim_if, drop(OTHER_V4))), r"STATUS=enforcing")
    assert dropped_now(netbed, OTHER_V4) and passes_now(netbed, BAD_V4)


def test_the_config_dir_made_world_writable_is_refused(netbed, xdpd):
    d = xdpd(config(netbed.victim_if, drop(BAD_V4)))
    status = answer_to(d, lambda: os.chmod(d.config_dir, 0o777), r"STATUS=reload rejected")
    assert f"previous config: {d.config_dir}: config directory writable by group 'root' and every user " \
           f"(mode 0777)" in status
    assert dropped_now(netbed, BAD_V4)
    # An edit made meanwhile (anyone could have made it) is not enforced either.
    d.drain_messages()
    d.write_config(config(netbed.victim_if, drop(OTHER_V4)))
    assert status_line(d.wait_message(r"STATUS=reload rejected", timeout=TIMEOUT))
    assert dropped_now(netbed, BAD_V4) and passes_now(netbed, OTHER_V4)
    answer_to(d, lambda: os.chmod(d.config_dir, 0o700), r"STATUS=enforcing")
    assert dropped_now(netbed, OTHER_V4) and passes_now(netbed, BAD_V4)


def test_the_opt_out_counts_only_from_a_safe_file(netbed, xdpd):
    d = xdpd(config(netbed.victim_if, drop(BAD_V4), settings="strict_permissions: false"))
    rules = os.path.join(d.config_dir, d.config_name)
    # Its own opt-out cannot excuse rules.yaml: whoever can write it could have written that.
    status = answer_to(d, lambda: os.chmod(rules, 0o664), r"STATUS=reload rejected")
    assert status.startswith(f"reload rejected (2 problem(s)), still enforcing the previous config: {rules}: "
                             f"writable by group 'root' (mode 0664)")
    assert any("strict_permissions: false is ignored" in e for e in reload_state(d)["errors"])
    assert dropped_now(netbed, BAD_V4)

    # The opt-out in a file only root can write; rules.yaml written anew (0644), then loosened.
    answer_to(d, lambda: d.write_config(config(netbed.victim_if, drop(BAD_V4))), r"STATUS=enforcing")
    answer_to(d, lambda: d.write_file("00-trust.yaml", "settings: {strict_permissions: false}\n"),
              r"STATUS=enforcing")
    status = answer_to(d, lambda: os.chmod(rules, 0o664), r"STATUS=")
    assert status.startswith("enforcing 1 rules") and reload_state(d)["ok"] is True
    # An edit in place keeps the mode 0664, and is applied.
    d.write_file(d.config_name, config(netbed.victim_if, drop(OTHER_V4)), atomic=False)
    assert os.stat(rules).st_mode & 0o777 == 0o664
    assert until(lambda: dropped_now(netbed, OTHER_V4) and passes_now(netbed, BAD_V4)), d.stderr()
    assert reload_state(d)["ok"] is True


def test_an_unsafe_config_at_start_exits_78(netbed, xdpd):
    d = xdpd(config(netbed.victim_if, drop(BAD_V4)), start=False)
    os.chmod(os.path.join(d.config_dir, d.config_name), 0o646)
    d.start(wait=False)
    assert d.wait_exit() == 78
    assert f"{d.config_dir}/rules.yaml: writable by every user (mode 0646)" in d.stderr()
    assert passes_now(netbed, BAD_V4)  # nothing was attached
