"""What makes the running daemon reconcile, without SIGHUP: files, links, drift.

Each test starts the real daemon in a bed's victim namespace and changes the
world the way an operator (or another tool) would: an editor saving
``rules.yaml`` or a list file, an interface deleted and created again, a
program detached or replaced by someone else.  Real traffic decides.
``xdpd plan`` is tested here too, since it is the same planner read-only.
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
import time

import pytest

from tests.testbed.daemon import PYTHON, REPO_ROOT, config, pythonpath
from tests.testbed.netbed import NetBed
from tests.testbed.netns import in_netns
from tests.testbed.xdplink import detach_xdp, xdp_attachment

pytestmark = pytest.mark.kernel

BAD_V4 = "192.0.2.1"
OTHER_V4 = "198.51.100.1"
ENFORCE_TIMEOUT = 5.0


def until(predicate, timeout: float = ENFORCE_TIMEOUT, interval: float = 0.1) -> bool:
    """Poll ``predicate`` until true or ``timeout``; return its last value."""
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)


def dropped_now(bed: NetBed, src: str) -> bool:
    return bed.send("udp", src, count=2, settle=0.1) == 0


def passes_now(bed: NetBed, src: str) -> bool:
    return bed.send("udp", src, count=2, settle=0.1) == 2


def test_saving_rules_yaml_is_enforced_without_a_signal(netbed, xdpd):
    d = xdpd(config(netbed.victim_if, f"[{{name: bad, action: drop, src: [{BAD_V4}]}}]"))
    pid = d.proc.pid
    assert dropped_now(netbed, BAD_V4) and passes_now(netbed, OTHER_V4)
    # An editor's save: write a temporary file, rename it over rules.yaml.
    d.write_config(config(netbed.victim_if, f"[{{name: other, action: drop, src: [{OTHER_V4}]}}]"))
    assert until(lambda: dropped_now(netbed, OTHER_V4)), d.stderr()
    assert passes_now(netbed, BAD_V4)
    assert d.proc.pid == pid and d.proc.poll() is None
    assert "reload_applied" in d.stderr() and "file change" in d.stderr()
    reload_state = json.loads(open(os.path.join(d.runtime_dir, "reload.json")).read())
    assert reload_state["ok"] is True and reload_state["seq"] >= 1


def test_a_list_file_elsewhere_is_watched_and_an_invalid_edit_changes_nothing(netbed, xdpd):
    with tempfile.TemporaryDirectory(prefix="xdpdt-lists-") as lists:
        path = os.path.join(lists, "block.txt")
        with open(path, "w") as f:
            f.write(f"# blocklist\n{BAD_V4}\n")
        d = xdpd(config(netbed.victim_if, f"[{{name: listed, action: drop, src_file: {path}}}]"))
        assert dropped_now(netbed, BAD_V4) and passes_now(netbed, OTHER_V4)

        tmp = path + ".new"
        with open(tmp, "w") as f:
            f.write(f"# blocklist\n{BAD_V4}\n{OTHER_V4}\n")
        os.rename(tmp, path)
        assert until(lambda: dropped_now(netbed, OTHER_V4)), d.stderr()

        # A bad line: rejected with its location, the live rules stay.
        with open(tmp, "w") as f:
            f.write(f"{BAD_V4}\nnot-an-address\n")
        os.rename(tmp, path)
        msg = d.wait_message(r"STATUS=reload rejected", timeout=ENFORCE_TIMEOUT)
        assert f"{path}:2" in msg
        assert dropped_now(netbed, OTHER_V4) and dropped_now(netbed, BAD_V4)
        assert d.proc.poll() is None


def _veth_in_victim(bed: NetBed, name: str, peer: str) -> None:
    for argv in (["ip", "link", "add", name, "type", "veth", "peer", "name", peer],
                 ["ip", "link", "set", name, "up"], ["ip", "link", "set", peer, "up"]):
        bed.run(bed.victim_ns, argv, check=True)


def test_interface_appearing_late_and_coming_back_is_attached(netbed, xdpd):
    extra, peer = f"{netbed.tag}-x", f"{netbed.tag}-y"
    text = (f"settings: {{log_interval: 60, max_addresses: 1024}}\n"
            f"interfaces:\n  {netbed.victim_if}: {{mode: auto}}\n  {extra}: {{mode: generic}}\n"
            f"rules: [{{name: bad, action: drop, src: [{BAD_V4}]}}]\n")
    d = xdpd(text)
    assert "interface_missing" in d.stderr() and not _exists(netbed, extra)

    _veth_in_victim(netbed, extra, peer)
    assert until(lambda: xdp_attachment(netbed.victim_ns, extra) == "xdpgeneric"), d.stderr()

    netbed.run(netbed.victim_ns, ["ip", "link", "del", extra], check=True)
    assert until(lambda: "interface_gone" in d.stderr()), d.stderr()
    _veth_in_victim(netbed, extra, peer)
    assert until(lambda: xdp_attachment(netbed.victim_ns, extra) == "xdpgeneric"), d.stderr()
    assert d.status()["interfaces"][extra]["attached"] is True
    assert dropped_now(netbed, BAD_V4)


def _exists(bed: NetBed, name: str) -> bool:
    return bed.run(bed.victim_ns, ["ip", "link", "show", name], check=False).returncode == 0


@pytest.mark.parametrize("attach", ["bpf_link", "netlink"])
def test_foreign_detach_and_replacement_are_repaired(netbed, xdpd, attach):
    """Through a pinned bpf_link (the default) the kernel refuses another tool's detach and
    replacement; a link forced off anyway is put back.  Through netlink (``XDPD_ATTACH=netlink``,
    what a kernel without XDP links gets) the detach and the replacement happen and are put back."""
    d = xdpd(config(netbed.victim_if, f"[{{name: bad, action: drop, src: [{BAD_V4}]}}]",
                    mode="native", settings="check_interval: 1"), start=False)
    if attach == "netlink":
        d.env["XDPD_ATTACH"] = "netlink"
    d.start()
    ours = d.status()["interfaces"][netbed.victim_if]["prog_id"]
    off = netbed.run(netbed.victim_ns, ["ip", "link", "set", "dev", netbed.victim_if, "xdp", "off"])
    if attach == "bpf_link":
        assert off.returncode != 0 and "BPF XDP link" in off.stderr, off
        assert dropped_now(netbed, BAD_V4) and "drift_repaired" not in d.stderr()
        detach_xdp(netbed.victim_ns, netbed.victim_if)   # bpftool link detach: the one way left
    else:
        assert off.returncode == 0, off.stderr
    assert until(lambda: "drift_repaired" in d.stderr()), d.stderr()
    assert xdp_attachment(netbed.victim_ns, netbed.victim_if) == "xdp"
    assert dropped_now(netbed, BAD_V4)

    # Someone replaces it with their own program (a pass-all one here).
    foreign = _pinned_pass_program(netbed.tag)
    try:
        replace = subprocess.run(in_netns(netbed.victim_ns, ["bpftool", "net", "attach", "xdpdrv", "pinned",
                                                             foreign, "dev", netbed.victim_if, "overwrite"]),
                                 capture_output=True, text=True, timeout=30)
        if attach == "bpf_link":
            assert replace.returncode != 0, "bpftool replaced a program held by a bpf_link"
            assert d.status()["interfaces"][netbed.victim_if]["prog_id"] == ours
        else:
            assert replace.returncode == 0, replace.stderr
            assert until(lambda: "replace foreign program" in d.stderr()), d.stderr()
            assert until(lambda: d.status()["interfaces"][netbed.victim_if]["prog_id"] == ours, timeout=8), \
                d.stderr()
        assert dropped_now(netbed, BAD_V4)
    finally:
        os.unlink(foreign)


def _pinned_pass_program(tag: str) -> str:
    """A pass-all XDP program that is not xdpd's, pinned under a test-owned name."""
    from bcc import BPF
    b = BPF(text=b"int not_xdpd(struct xdp_md *ctx) { return XDP_PASS; }")
    fn = b.load_func(b"not_xdpd", BPF.XDP)
    from xdpd import bpfsys
    path = f"/sys/fs/bpf/{tag}-foreign"
    bpfsys.obj_pin(fn.fd, path)
    return path


def _plan(d, config_dir: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1", "PYTHONPATH": pythonpath()}
    return subprocess.run(in_netns(d.ns, [PYTHON, "-m", "xdpd", "plan", "--config-dir", config_dir,
                                          "--pin-dir", d.pin_dir]),
                          cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=120)


def test_plan_shows_what_a_reload_would_change_and_touches_nothing(netbed, xdpd):
    d = xdpd(config(netbed.victim_if, f"[{{name: bad, action: drop, src: [{BAD_V4}, 192.0.2.2]}}]"))
    same = _plan(d, d.config_dir)
    assert same.returncode == 0, same.stdout + same.stderr
    assert "no changes" in same.stdout

    with tempfile.TemporaryDirectory(prefix="xdpdt-plan-") as other:
        with open(os.path.join(other, "rules.yaml"), "w") as f:
            f.write(config(netbed.victim_if, f"""
                - {{name: bad, action: drop, src: [{BAD_V4}, 192.0.2.3, 192.0.2.4]}}
                - {{name: dns, action: drop, proto: udp, dst_port: 53}}
            """))
        before = d.status()
        changed = _plan(d, other)
        assert changed.returncode == 2, changed.stdout + changed.stderr
        assert "add rule dns" in changed.stdout
        assert "change rule bad" in changed.stdout
        assert "addresses: +2 -1" in changed.stdout
        after = d.status()
        assert after["rules"].keys() == before["rules"].keys() == {"bad"}
        assert dropped_now(netbed, "192.0.2.2")    # still the old rules


def test_upgrade_restart_leaves_the_filter_attached_for_the_next_daemon(netbed, xdpd):
    """The package's postinst flags an upgrade restart: the stop keeps the
    program attached (the new daemon replaces it in place); a stale flag is ignored."""
    d = xdpd(config(netbed.victim_if, f"[{{name: bad, action: drop, src: [{BAD_V4}]}}]"))
    flag = os.path.join(d.runtime_dir, "keep-attached")
    open(flag, "w").close()
    assert d.stop() == 0
    assert xdp_attachment(netbed.victim_ns, netbed.victim_if) == "xdp"
    assert dropped_now(netbed, BAD_V4)
    assert not os.path.exists(flag)
    d.restart()
    assert dropped_now(netbed, BAD_V4)
    open(flag, "w").close()
    os.utime(flag, (time.time() - 600, time.time() - 600))
    assert d.stop() == 0
    assert xdp_attachment(netbed.victim_ns, netbed.victim_if) is None
