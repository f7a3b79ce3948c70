"""``mode: auto`` falls back to generic XDP where the driver has no native XDP (issue 2).

veth supports native XDP, so these tests use devices that do not: a macvlan
on the victim's veth (which also carries real traffic, sent to its own
address) and an empty bridge, both built into this kernel and created in the
bed's victim namespace.  What an operator sees is checked: ``ip -d link``
(``xdpgeneric``), ``xdpd status --json`` (mode ``generic``), the
``mode_fallback`` warning in the log, the exit code and message when native
mode is demanded, and real packets dropped in generic mode.
"""

from __future__ import annotations

import pytest

from tests.testbed.daemon import DaemonFailed, status_line
from tests.testbed.netbed import NetBed
from tests.testbed.xdplink import xdp_attachment

pytestmark = pytest.mark.kernel

MACVLAN_V4, MACVLAN_V6 = "203.0.113.30", "2001:db8:ffff::30"
BLOCKED_V4, BLOCKED_V6 = "192.0.2.1", "2001:db8:bad::1"
ALLOWED_V4, ALLOWED_V6 = "198.51.100.1", "2001:db8:900d::1"


def cfg(dev: str, mode: str, rules: str) -> str:
    return ("settings: {log_interval: 60, max_addresses: 1024}\n"
            f"interfaces:\n  {dev}: {{mode: {mode}, default: pass}}\n"
            f"rules:\n  {rules}\n")


DROP_BAD = "- {name: drop-bad, action: drop, src: [192.0.2.1, '2001:db8:bad::1']}"


def device(bed: NetBed, kind: str) -> str:
    return bed.add_macvlan(MACVLAN_V4, MACVLAN_V6) if kind == "macvlan" else bed.add_bridge()


def received(bed: NetBed, src: str, count: int, dst: str) -> int:
    return bed.send("udp", src, dst=dst, count=count)


@pytest.mark.parametrize("kind", ["macvlan", "bridge"])
def test_auto_falls_back_to_generic_with_a_warning(netbed: NetBed, xdpd, kind: str) -> None:
    """``mode: auto`` on a device without native XDP: attached in generic mode (``ip link`` and
    ``status`` agree), a ``mode_fallback`` warning naming the device is logged, and on the
    macvlan a drop rule really drops (IPv4 and IPv6) while other sources pass."""
    dev = device(netbed, kind)
    d = xdpd(cfg(dev, "auto", DROP_BAD))
    assert xdp_attachment(netbed.victim_ns, dev) == "xdpgeneric"
    st = d.status()
    i = st["interfaces"][dev]
    assert i["attached"] and i["mode"] == "generic" and i["prog_id"] == st["prog_id"] > 0, i
    log = d.stderr()
    warnings = [line for line in log.splitlines() if "mode_fallback" in line]
    assert warnings and dev in warnings[0], f"no mode_fallback warning naming {dev}:\n{log}"
    assert "warning" in warnings[0].lower(), warnings[0]
    assert xdp_attachment(netbed.victim_ns, netbed.victim_if) is None  # only the configured device

    if kind == "macvlan":
        assert received(netbed, BLOCKED_V4, 4, MACVLAN_V4) == 0, "generic XDP on the macvlan did not drop"
        assert received(netbed, BLOCKED_V6, 3, MACVLAN_V6) == 0, "generic XDP on the macvlan did not drop (IPv6)"
        assert received(netbed, ALLOWED_V4, 4, MACVLAN_V4) == 4
        assert received(netbed, ALLOWED_V6, 3, MACVLAN_V6) == 3
        # The same source to the veth's own address does not cross the macvlan: not filtered.
        assert received(netbed, BLOCKED_V4, 3, netbed.victim_v4) == 3
        st = d.status()
        assert {n: r["packets"] for n, r in st["rules"].items()} == {"drop-bad": 7}
        counters = st["interfaces"][dev]["counters"]
        assert counters["drop_rule"]["packets"] == 7 and counters["pass_default"]["packets"] >= 7, counters

    # A reload with the same config keeps the generic attachment as it is.
    prog = st["interfaces"][dev]["prog_id"]
    msg = d.reload()
    assert "fail" not in (status_line(msg) or "") and "reject" not in (status_line(msg) or ""), msg
    assert xdp_attachment(netbed.victim_ns, dev) == "xdpgeneric"
    assert d.status()["interfaces"][dev]["prog_id"] == prog
    assert d.stop() == 0
    assert xdp_attachment(netbed.victim_ns, dev) is None


@pytest.mark.parametrize("kind", ["macvlan", "bridge"])
def test_native_mode_on_a_device_without_native_xdp_fails_clearly(netbed: NetBed, xdpd, kind: str) -> None:
    """``mode: native`` where the driver cannot: the daemon does not start (nonzero exit, no
    READY=1), says which interface and mode failed, and attaches nothing."""
    dev = device(netbed, kind)
    d = xdpd(cfg(dev, "native", DROP_BAD), start=False)
    with pytest.raises(DaemonFailed) as failed:
        d.start()
    err = failed.value
    assert err.returncode not in (0, None), err
    assert not any("READY=1" in m.splitlines() for m in d.messages), d.messages
    lines = [line for line in err.stderr.splitlines() if dev in line]
    assert lines and any("native" in line for line in lines), f"no message naming {dev} and native mode:\n{err.stderr}"
    assert "Traceback" not in err.stderr, err.stderr
    assert xdp_attachment(netbed.victim_ns, dev) is None
    assert xdp_attachment(netbed.victim_ns, netbed.victim_if) is None
    if kind == "macvlan":
        assert received(netbed, BLOCKED_V4, 2, MACVLAN_V4) == 2


def test_failed_start_leaves_nothing_attached(netbed: NetBed, xdpd) -> None:
    """The veth (listed first, attaches fine) and a bridge in native mode (cannot): the daemon
    fails to start, and must not leave the veth filtered by a program nobody runs."""
    br = device(netbed, "bridge")
    v = netbed.victim_if
    d = xdpd("settings: {log_interval: 60, max_addresses: 1024}\n"
             f"interfaces:\n  {v}: {{mode: auto, default: pass}}\n  {br}: {{mode: native, default: pass}}\n"
             f"rules:\n  {DROP_BAD}\n", start=False)
    with pytest.raises(DaemonFailed) as failed:
        d.start()
    assert failed.value.returncode not in (0, None), failed.value
    assert br in failed.value.stderr, failed.value.stderr
    assert xdp_attachment(netbed.victim_ns, br) is None
    assert xdp_attachment(netbed.victim_ns, v) is None, f"failed start left {v} attached"
    assert received(netbed, BLOCKED_V4, 2, netbed.victim_v4) == 2


def test_reload_demanding_native_on_a_generic_only_device_keeps_the_old_state(netbed: NetBed, xdpd) -> None:
    """A running daemon filters a macvlan in generic mode (auto fell back); a reload that asks
    for native mode there (and changes the rules) cannot be applied.  The daemon must say so,
    keep running, and leave what is enforced as it was: the macvlan still filtered by the
    program, with the old rules."""
    m = device(netbed, "macvlan")
    d = xdpd(cfg(m, "auto", DROP_BAD))
    assert xdp_attachment(netbed.victim_ns, m) == "xdpgeneric"
    assert received(netbed, BLOCKED_V4, 2, MACVLAN_V4) == 0

    try:
        msg = d.reload(cfg(m, "native", "- {name: drop-other, action: drop, src: 198.51.100.1}"))
    except DaemonFailed as exc:
        msg = f"(no answer: {exc})"
    status = status_line(msg) or ""
    attached = xdp_attachment(netbed.victim_ns, m)
    blocked = received(netbed, BLOCKED_V4, 3, MACVLAN_V4)
    allowed = received(netbed, ALLOWED_V4, 3, MACVLAN_V4)
    state = f"{m}: {attached}; 192.0.2.1 got {blocked}/3 through, 198.51.100.1 {allowed}/3"
    assert d.proc.poll() is None, f"xdpd died on the reload ({state}):\n{d.stderr()[-2500:]}"
    assert ("fail" in status or "reject" in status) and m in status, f"reload reported as applied: {msg!r}"
    assert attached == "xdpgeneric", f"the failed reload left {m} without its program (ip link: {attached})"
    assert (blocked, allowed) == (0, 3), (
        f"the failed reload changed the live verdict: 192.0.2.1 got {blocked}/3 through, 198.51.100.1 got "
        f"{allowed}/3 (old rules: drop 192.0.2.1; STATUS says: {status!r})")
    assert d.rule_packets().get("drop-bad") == 5
    assert d.stop() == 0
