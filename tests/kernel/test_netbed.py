"""Tests of the test bed itself: real traffic between two namespaces, no XDP.

If these fail, every XDP test built on :class:`tests.testbed.netbed.NetBed` would report
nonsense, so they check delivery, the counting of losses, neighbour
discovery, clean-up (including after failures and crashes) and frame
injection.
"""

from __future__ import annotations

import json
import os
import secrets
import socket
import subprocess
import sys
import time

import pytest

from tests.testbed import frames
from tests.testbed.daemon import REPO_ROOT, pythonpath
from tests.testbed.netbed import IFNAMSIZ, OWNER_DIR, NetBed

pytestmark = pytest.mark.kernel

V4_SOURCES = [NetBed.sender_v4_primary, "192.0.2.1", "192.0.2.9", "198.51.100.1", "198.51.100.5"]
V6_SOURCES = [NetBed.sender_v6_primary, "2001:db8:bad::1", "2001:db8:bad::9", "2001:db8:900d::1", "2001:db8:900d::5"]
# Assigned to nobody: neighbour resolution fails, so nothing is ever delivered.
V4_NOWHERE, V6_NOWHERE = "203.0.113.77", "2001:db8:ffff::77"


def netns_names() -> set[str]:
    """Named namespaces as listed by ``ip netns list``."""
    return set(subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True).stdout.split())


def ip_json_links(ns: str | None = None) -> list[str]:
    """Interface names in ``ns`` (None: the host namespace; read-only)."""
    argv = ["ip", *(["-n", ns] if ns else []), "-j", "link", "show"]
    return [link["ifname"] for link in json.loads(subprocess.run(argv, capture_output=True, text=True, check=True).stdout)]


# --------------------------------------------------------------------------- layout


def test_layout_names_and_devices(netbed: NetBed) -> None:
    for name in (netbed.sender_ns, netbed.victim_ns, netbed.sender_if, netbed.victim_if):
        assert name.startswith("xdpdt-")
    assert len(netbed.sender_if) <= IFNAMSIZ and len(netbed.victim_if) <= IFNAMSIZ
    assert {netbed.sender_ns, netbed.victim_ns} <= netns_names()
    assert netbed.sender_if in ip_json_links(netbed.sender_ns)
    assert netbed.victim_if in ip_json_links(netbed.victim_ns)
    assert not [n for n in ip_json_links() if n.startswith("xdpdt-")], "a test device leaked into the host namespace"
    assert netbed.victim_ifindex() > 0
    assert netbed.victim_addr(socket.AF_INET) == "203.0.113.2" and netbed.victim_addr(6) == "2001:db8:ffff::2"


def test_run_and_popen_stay_in_own_namespaces(netbed: NetBed) -> None:
    out = netbed.run("victim", ["ip", "-br", "addr", "show", "dev", netbed.victim_if]).stdout
    assert "203.0.113.2/24" in out and "2001:db8:ffff::2/64" in out
    assert "192.0.2.9/32" in netbed.run(netbed.sender_ns, ["ip", "-br", "addr"]).stdout
    with pytest.raises(ValueError):
        netbed.run("xdpdt-nope-s", ["true"])
    with pytest.raises(ValueError):
        netbed.popen("init", ["true"])


# --------------------------------------------------------------------------- delivery


@pytest.mark.parametrize("proto", ["udp", "tcp", "icmp"])
def test_ipv4_traffic_from_all_sources_arrives(netbed: NetBed, proto: str) -> None:
    for src in V4_SOURCES:
        assert netbed.send(proto, src, count=5) == 5, src


@pytest.mark.parametrize("proto", ["udp", "tcp", "icmpv6"])
def test_ipv6_traffic_from_all_sources_arrives(netbed: NetBed, proto: str) -> None:
    for src in V6_SOURCES:
        assert netbed.send(proto, src, count=5) == 5, src


@pytest.mark.parametrize("src", ["192.0.2.3", "2001:db8:bad::3"])
def test_fixed_source_port_and_other_options(netbed: NetBed, src: str) -> None:
    assert netbed.send("tcp", src, dport=8080, sport=40000, count=3) == 3
    assert netbed.send("udp", src, dport=5353, sport=40000, count=3, payload_len=1200) == 3
    proto = "icmpv6" if ":" in src else "icmp"
    assert netbed.send(proto, src, count=3, payload_len=1000) == 3


def test_large_batches_are_counted_exactly(netbed: NetBed) -> None:
    assert netbed.send("udp", "198.51.100.2", count=300) == 300
    assert netbed.send("tcp", "2001:db8:900d::2", count=100) == 100
    assert netbed.send("icmp", "192.0.2.2", count=100) == 100


def test_send_rejects_mismatched_arguments(netbed: NetBed) -> None:
    with pytest.raises(ValueError):
        netbed.send("icmpv6", "192.0.2.1")
    with pytest.raises(ValueError):
        netbed.send("udp", "192.0.2.1", dst="2001:db8:ffff::2")
    with pytest.raises(ValueError):
        netbed.send("sctp", "192.0.2.1")


# --------------------------------------------------------------------------- losses


@pytest.mark.parametrize("proto,src,dst", [
    ("udp", "192.0.2.1", V4_NOWHERE),
    ("tcp", "192.0.2.1", V4_NOWHERE),
    ("icmp", "192.0.2.1", V4_NOWHERE),
    ("udp", "2001:db8:bad::1", V6_NOWHERE),
    ("tcp", "2001:db8:bad::1", V6_NOWHERE),
    ("icmpv6", "2001:db8:bad::1", V6_NOWHERE),
])
def test_lost_packets_count_zero_quickly(netbed: NetBed, proto: str, src: str, dst: str) -> None:
    start = time.monotonic()
    assert netbed.send(proto, src, dst=dst, count=5, settle=0.15, timeout=5.0) == 0
    # One settle period (0.15 s), not the 5 s timeout (UDP, ICMP) nor count * 0.9 s (TCP, whose
    # wait is capped below the SYN retransmission): a bound far from both, so machine speed
    # does not decide it.
    assert time.monotonic() - start < 2.0


def test_delivered_batch_returns_without_waiting(netbed: NetBed) -> None:
    start = time.monotonic()
    assert netbed.send("udp", "192.0.2.1", count=5, settle=5.0, timeout=5.0) == 5
    # No settle wait when everything arrived: far below the 5 s settle period, however slow the machine.
    assert time.monotonic() - start < 2.5


# --------------------------------------------------------------------------- neighbour discovery


def test_neighbour_discovery_works(netbed: NetBed) -> None:
    assert netbed.arp_works()
    assert netbed.nd_works()


def test_arp_failure_is_detected(netbed: NetBed) -> None:
    netbed.run("victim", ["sysctl", "-qw", f"net.ipv4.conf.{netbed.victim_if}.arp_ignore=8"], check=True)
    assert not netbed.arp_works(timeout=0.3)
    assert netbed.nd_works()


def test_nd_failure_is_detected(netbed: NetBed) -> None:
    subprocess.run(["ip", "-n", netbed.victim_ns, "link", "set", netbed.victim_if, "arp", "off"], check=True)
    assert not netbed.nd_works(timeout=0.3)


# --------------------------------------------------------------------------- frame injection


@pytest.mark.parametrize("src,dst,builder", [
    ("192.0.2.4", NetBed.victim_v4, frames.frame_v4),
    ("2001:db8:bad::4", NetBed.victim_v6, frames.frame_v6),
])
def test_injected_frames_are_accepted_by_the_stack(netbed: NetBed, src: str, dst: str, builder) -> None:
    """Proves frames.py checksums are right: the victim's UDP stack drops bad ones."""
    fam = socket.AF_INET6 if ":" in dst else socket.AF_INET
    with netbed.socket("victim", fam, socket.SOCK_DGRAM) as rx:
        rx.bind((dst, 7777))
        rx.settimeout(1.0)
        frame = builder("udp", src, dst, 1111, 7777, payload=b"crafted", eth_dst=netbed.victim_mac(), eth_src=netbed.sender_mac())
        netbed.inject(frame)
        data, addr = rx.recvfrom(100)
        assert data == b"crafted" and addr[0] == src and addr[1] == 1111


def test_injected_frame_with_bad_udp_checksum_is_dropped_by_the_stack(netbed: NetBed) -> None:
    seg = bytearray(frames.udp(1111, 7778, b"bad"))
    seg[6:8] = b"\x12\x34"  # non-zero, wrong: left alone by frames.ipv4
    frame = frames.eth(netbed.victim_mac(), netbed.sender_mac()) + frames.ipv4("192.0.2.4", NetBed.victim_v4, "udp", bytes(seg))
    with netbed.socket("victim", socket.AF_INET, socket.SOCK_DGRAM) as rx:
        rx.bind((NetBed.victim_v4, 7778))
        rx.settimeout(0.3)
        netbed.inject(frame)
        with pytest.raises(socket.timeout):
            rx.recvfrom(100)


# --------------------------------------------------------------------------- clean-up


def test_destroy_removes_namespaces_and_is_idempotent() -> None:
    bed = NetBed.create()
    names = {bed.sender_ns, bed.victim_ns}
    assert names <= netns_names()
    assert os.path.exists(bed.owner_file)
    bed.destroy()
    assert not names & netns_names()
    assert not os.path.exists(bed.owner_file)
    bed.destroy()


def test_failure_inside_with_still_cleans_up() -> None:
    names: set[str] = set()
    with pytest.raises(AssertionError):
        with NetBed.create() as bed:
            names = {bed.sender_ns, bed.victim_ns}
            assert bed.send("udp", "192.0.2.1") == 99
    assert names and not names & netns_names()


def test_destroy_ends_processes_started_with_popen() -> None:
    with NetBed.create() as bed:
        proc = bed.popen("victim", ["sleep", "60"])
    assert proc.wait(timeout=5) is not None


def test_sweep_removes_namespaces_of_dead_owner_only(netbed: NetBed) -> None:
    """A crashed run leaves namespaces behind; the sweep removes them but not live beds."""
    crash = (
        "import os; from tests.testbed.netbed import NetBed; "
        "b = NetBed.create(); print(b.sender_ns, b.victim_ns, flush=True); os._exit(1)"
    )
    env = {**os.environ, "PYTHONPATH": pythonpath()}
    out = subprocess.run([sys.executable, "-c", crash], cwd=REPO_ROOT, env=env, capture_output=True, text=True,
                         timeout=60).stdout
    orphaned = set(out.split())
    assert len(orphaned) == 2 and orphaned <= netns_names()
    try:
        removed = NetBed.sweep_stale()
        assert orphaned <= set(removed)
        assert not orphaned & netns_names()
        assert {netbed.sender_ns, netbed.victim_ns} <= netns_names()
        assert netbed.send("udp", "192.0.2.1") == 1
        tag = next(iter(orphaned)).rsplit("-", 1)[0]
        assert not os.path.exists(os.path.join(OWNER_DIR, f"{tag}.owner"))
    finally:
        for ns in orphaned & netns_names():
            subprocess.run(["ip", "netns", "del", ns], check=False)


def test_sweep_leaves_namespaces_it_does_not_own_alone() -> None:
    """Other tools share the xdpdt- prefix: without a dead owner's file, never sweep."""
    suffix = secrets.token_hex(2)
    foreign = [f"xdpdt-{suffix}-s", f"xdpdt-t{suffix}"]  # bed-like name without owner file; free-form name
    try:
        for ns in foreign:
            subprocess.run(["ip", "netns", "add", ns], check=True)
        NetBed.sweep_stale()
        assert set(foreign) <= netns_names()
    finally:
        for ns in foreign:
            subprocess.run(["ip", "netns", "del", ns], check=False)
