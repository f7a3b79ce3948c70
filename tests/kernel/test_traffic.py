"""The real daemon filtering real traffic: ``xdpd run`` on a veth in a test bed.

Each test starts ``python3 -m xdpd run`` in the victim namespace of a fresh
:class:`tests.testbed.netbed.NetBed` (see :mod:`tests.testbed.daemon`), sends packets from the
sender namespace and checks two things for every send:

* what the victim's socket received (``netbed.send`` returns that count), and
* what ``xdpd status --json`` reports: per-rule packet counts must equal the
  packets sent exactly.  Interface counters also see the echo replies' and
  TCP handshakes' other packets, ARP and ND, so they are checked exactly only
  where nothing else can land in that verdict.

A daemon start costs ~3 s (compiling the BPF program), so each test uses one
config with several rules and checks several traffic classes against it.
"""

from __future__ import annotations

import os
import subprocess

import pytest

from tests.testbed.daemon import DaemonFailed, XdpdProcess, config
from tests.testbed.netbed import NetBed
from tests.testbed.xdplink import detach_xdp, xdp_attachment

pytestmark = pytest.mark.kernel

V4 = NetBed.sender_v4_primary        # 203.0.113.1
V6 = NetBed.sender_v6_primary        # 2001:db8:ffff::1
# Second victim addresses for dst rules (added by add_victim_address).
OTHER_DST_V4, OTHER_DST_V6 = "203.0.113.20", "2001:db8:ffff::20"
# A sender source inside 2001:db8:bad::/48 but outside the bed's 2001:db8:bad::/64.
WIDE_BAD_V6 = "2001:db8:bad:1::1"


# --------------------------------------------------------------------------- helpers


def expect(bed: NetBed, proto: str, src: str, count: int, received: int, **kw) -> None:
    """Send ``count`` packets of ``proto`` from ``src``; assert the victim got ``received``."""
    got = bed.send(proto, src, count=count, **kw)
    where = f"{proto} {src} -> {kw.get('dst') or bed.victim_addr(6 if ':' in src else 4)}"
    ports = {k: v for k, v in kw.items() if k in ("dport", "sport")}
    assert got == received, f"{where} {ports or ''}: sent {count}, expected {received} received, got {got}"


def passes(bed: NetBed, proto: str, src: str, count: int = 3, **kw) -> None:
    expect(bed, proto, src, count, count, **kw)


def dropped(bed: NetBed, proto: str, src: str, count: int = 3, **kw) -> None:
    expect(bed, proto, src, count, 0, **kw)


def iface_status(d: XdpdProcess, status: dict | None = None) -> dict:
    return (status or d.status())["interfaces"][d.bed.victim_if]


def verdicts(d: XdpdProcess, status: dict | None = None) -> dict[str, int]:
    """Packets per interface verdict (pass_rule, drop_rule, pass_default, ...)."""
    return {v: c["packets"] for v, c in iface_status(d, status)["counters"].items()}


def add_victim_address(bed: NetBed, addr: str) -> None:
    """Give the victim another address, and the sender a permanent neighbour entry for it.

    The permanent entry means sending to it needs no ARP/ND mid-test.
    (A local helper: netbed offers one victim address per family.)
    """
    v6 = ":" in addr
    subprocess.run(["ip", "-n", bed.victim_ns, "addr", "add", f"{addr}/{128 if v6 else 32}", "dev", bed.victim_if,
                    *(["nodad"] if v6 else [])], check=True, capture_output=True, timeout=30)
    subprocess.run(["ip", "-n", bed.sender_ns, "neigh", "replace", addr, "lladdr", bed.victim_mac(),
                    "dev", bed.sender_if, "nud", "permanent"], check=True, capture_output=True, timeout=30)


def add_sender_source(bed: NetBed, addr: str) -> None:
    """One more IPv6 source address on the sender (a local helper)."""
    subprocess.run(["ip", "-n", bed.sender_ns, "addr", "add", f"{addr}/128", "dev", bed.sender_if, "nodad"],
                   check=True, capture_output=True, timeout=30)


# --------------------------------------------------------------------------- address rules


def test_src_and_dst_rules_v4_v6(netbed: NetBed, xdpd) -> None:
    """CIDR and exact src rules, dst rules, both families; everything else still passes."""
    add_victim_address(netbed, OTHER_DST_V4)
    add_victim_address(netbed, OTHER_DST_V6)
    add_sender_source(netbed, WIDE_BAD_V6)
    d = xdpd(config(netbed.victim_if, mode="native", rules="""
        - {name: drop-v4-net, action: drop, src: 192.0.2.0/24}
        - {name: drop-v6-net, action: drop, src: "2001:db8:bad::/48"}
        - {name: drop-v4-host, action: drop, src: 198.51.100.7}
        - {name: drop-v6-host, action: drop, src: "2001:db8:900d::7/128"}
        - {name: drop-to-v4, action: drop, dst: 203.0.113.20/32}
        - {name: drop-to-v6, action: drop, dst: ["2001:db8:ffff::20"]}
    """))
    st = d.status()
    assert iface_status(d, st)["attached"] and iface_status(d, st)["mode"] == "native"
    assert xdp_attachment(netbed.victim_ns, netbed.victim_if) == "xdp"

    # 192.0.2.0/24: a prefix whose host octet is zero; every address in it, any protocol.
    dropped(netbed, "udp", "192.0.2.1", 5)
    dropped(netbed, "udp", "192.0.2.9", 3)
    dropped(netbed, "icmp", "192.0.2.4", 2)
    # 2001:db8:bad::/48 also covers 2001:db8:bad:1::/64.
    dropped(netbed, "udp", "2001:db8:bad::1", 4)
    dropped(netbed, "udp", WIDE_BAD_V6, 3)
    dropped(netbed, "icmpv6", "2001:db8:bad::2", 2)
    # Exact /32 and /128: only that address; its neighbours pass.
    dropped(netbed, "udp", "198.51.100.7", 5)
    passes(netbed, "udp", "198.51.100.6", 5)
    passes(netbed, "udp", "198.51.100.8", 5)
    dropped(netbed, "udp", "2001:db8:900d::7", 5)
    passes(netbed, "udp", "2001:db8:900d::6", 5)
    passes(netbed, "udp", "2001:db8:900d::8", 5)
    # dst: the same source is dropped towards one victim address, not the other.
    dropped(netbed, "udp", V4, 4, dst=OTHER_DST_V4)
    passes(netbed, "udp", V4, 4)
    dropped(netbed, "udp", V6, 4, dst=OTHER_DST_V6)
    passes(netbed, "udp", V6, 4)
    passes(netbed, "icmp", V4, 3)
    passes(netbed, "icmpv6", V6, 3)

    st = d.status()
    assert {n: r["packets"] for n, r in st["rules"].items()} == {
        "drop-v4-net": 10, "drop-v6-net": 9, "drop-v4-host": 5, "drop-v6-host": 5,
        "drop-to-v4": 4, "drop-to-v6": 4}
    # (status --json sorts keys: config order is in "position")
    assert sorted(st["rules"], key=lambda n: st["rules"][n]["position"]) == [
        "drop-v4-net", "drop-v6-net", "drop-v4-host", "drop-v6-host", "drop-to-v4", "drop-to-v6"]
    assert all(r["action"] == "drop" for r in st["rules"].values())
    assert all(r["bytes"] > 0 for r in st["rules"].values())
    v = verdicts(d, st)
    assert v["drop_rule"] == 37 == iface_status(d, st)["dropped"]
    assert v["pass_default"] >= 5 * 4 + 4 * 2 + 3 * 2
    assert v["pass_rule"] == v["drop_default"] == v["drop_malformed"] == 0


# --------------------------------------------------------------------------- protocol and port rules


def test_proto_and_port_rules(netbed: NetBed, xdpd) -> None:
    """proto udp vs tcp, dst_port single/range/list, src_port, icmp and icmpv6; IPv4 and IPv6."""
    d = xdpd(config(netbed.victim_if, mode="generic", rules="""
        - {name: drop-dns-udp, action: drop, proto: udp, dst_port: 53}
        - {name: drop-port-range, action: drop, dst_port: "6000-6010"}
        - {name: drop-port-list, action: drop, proto: [tcp, udp], dst_port: [7001, 7003, "7100-7101"]}
        - {name: drop-src-port, action: drop, proto: udp, src_port: 5353}
        - {name: drop-icmp4, action: drop, proto: icmp}
        - {name: drop-ping6-one, action: drop, proto: icmpv6, src: "2001:db8:900d::3"}
    """))
    st = d.status()
    assert iface_status(d, st)["attached"] and iface_status(d, st)["mode"] == "generic"
    assert xdp_attachment(netbed.victim_ns, netbed.victim_if) == "xdpgeneric"

    # proto: udp/53 is dropped, tcp/53 is not.
    dropped(netbed, "udp", V4, 3, dport=53)
    dropped(netbed, "udp", V6, 3, dport=53)
    passes(netbed, "tcp", V4, 2, dport=53)
    passes(netbed, "tcp", V6, 2, dport=53)
    # dst_port range (no proto: tcp and udp), both ends inclusive.
    dropped(netbed, "udp", V4, 2, dport=6000)
    dropped(netbed, "tcp", V4, 2, dport=6010)
    dropped(netbed, "udp", V6, 2, dport=6005)
    passes(netbed, "udp", V4, 2, dport=5999)
    passes(netbed, "tcp", V6, 2, dport=6011)
    # dst_port list with a range item.
    dropped(netbed, "udp", V4, 2, dport=7001)
    dropped(netbed, "tcp", V6, 2, dport=7003)
    dropped(netbed, "udp", V6, 2, dport=7101)
    passes(netbed, "udp", V4, 2, dport=7002)
    passes(netbed, "tcp", V4, 2, dport=7102)
    # src_port.
    dropped(netbed, "udp", V4, 3, sport=5353, dport=9000)
    dropped(netbed, "udp", V6, 2, sport=5353, dport=9000)
    passes(netbed, "udp", V4, 3, sport=5354, dport=9000)
    passes(netbed, "udp", V6, 3, sport=5352, dport=9000)
    # icmp is IPv4 only; icmpv6 limited to one source.
    dropped(netbed, "icmp", V4, 3)
    dropped(netbed, "icmp", "198.51.100.3", 1)
    passes(netbed, "icmpv6", V6, 3)
    dropped(netbed, "icmpv6", "2001:db8:900d::3", 2)
    passes(netbed, "udp", "2001:db8:900d::3", 2)
    passes(netbed, "icmpv6", "2001:db8:900d::4", 2)

    st = d.status()
    assert {n: r["packets"] for n, r in st["rules"].items()} == {
        "drop-dns-udp": 6, "drop-port-range": 6, "drop-port-list": 6, "drop-src-port": 5,
        "drop-icmp4": 4, "drop-ping6-one": 2}
    v = verdicts(d, st)
    assert v["drop_rule"] == 29
    assert v["pass_rule"] == v["drop_default"] == v["drop_malformed"] == 0


# --------------------------------------------------------------------------- rule order


def test_first_match_wins_and_count_rules(netbed: NetBed, xdpd) -> None:
    """A pass rule before a broader drop rule wins; count rules count and go on; a count rule
    after the deciding rule does not see the decided packets."""
    d = xdpd(config(netbed.victim_if, rules="""
        - {name: count-all, action: count}
        - {name: count-net4, action: count, src: 192.0.2.0/24}
        - {name: pass-one, action: pass, src: [192.0.2.5, "2001:db8:bad::5"]}
        - {name: drop-nets, action: drop, src: [192.0.2.0/24, "2001:db8:bad::/48"]}
        - {name: count-late, action: count, src: [192.0.2.0/24, "2001:db8:bad::/48", 198.51.100.4]}
    """))
    passes(netbed, "udp", "192.0.2.5", 4)          # count-all, count-net4, pass-one
    dropped(netbed, "udp", "192.0.2.1", 3)         # count-all, count-net4, drop-nets
    passes(netbed, "udp", "2001:db8:bad::5", 4)    # count-all, pass-one
    dropped(netbed, "udp", "2001:db8:bad::1", 3)   # count-all, drop-nets
    passes(netbed, "udp", "198.51.100.4", 2)       # count-all, count-late (nothing decided)
    passes(netbed, "icmp", V4, 2)                  # count-all only

    st = d.status()
    assert {n: r["packets"] for n, r in st["rules"].items()} == {
        "count-all": 18, "count-net4": 7, "pass-one": 8, "drop-nets": 6, "count-late": 2}
    assert {n: r["action"] for n, r in st["rules"].items()} == {
        "count-all": "count", "count-net4": "count", "pass-one": "pass", "drop-nets": "drop",
        "count-late": "count"}
    v = verdicts(d, st)
    assert v["pass_rule"] == 8 and v["drop_rule"] == 6
    assert v["pass_default"] >= 4  # 198.51.100.4 and the echo requests, plus whatever else arrived


# --------------------------------------------------------------------------- default drop


def test_default_drop_with_pass_rule_keeps_arp_and_nd(netbed: NetBed, xdpd) -> None:
    d = xdpd(config(netbed.victim_if, default="drop", rules="""
        - {name: allow-good, action: pass, src: [198.51.100.1, "2001:db8:900d::1"]}
    """))
    passes(netbed, "udp", "198.51.100.1", 3)
    passes(netbed, "icmp", "198.51.100.1", 2)
    passes(netbed, "udp", "2001:db8:900d::1", 3)
    passes(netbed, "icmpv6", "2001:db8:900d::1", 2)
    dropped(netbed, "udp", "198.51.100.2", 3)
    dropped(netbed, "udp", "192.0.2.1", 3)
    dropped(netbed, "icmp", V4, 2)
    dropped(netbed, "udp", "2001:db8:900d::2", 3)
    dropped(netbed, "icmpv6", V6, 2)

    st = d.status()
    assert iface_status(d, st)["default"] == "drop"
    assert st["rules"]["allow-good"]["packets"] == 10
    v = verdicts(d, st)
    assert v["pass_rule"] == 10
    assert v["drop_default"] == 13 == iface_status(d, st)["dropped"]

    # Neighbour resolution is exempt from the default drop.
    assert netbed.arp_works(), "ARP to the victim failed under default: drop"
    assert netbed.nd_works(), "IPv6 neighbour discovery to the victim failed under default: drop"
    v = verdicts(d)
    assert v["pass_exempt"] > 0, v
    # arp_works()/nd_works() each send one UDP trigger from the primary address: dropped.
    assert v["drop_default"] == 15
    passes(netbed, "udp", "198.51.100.1", 2)  # still filtering as configured


# --------------------------------------------------------------------------- modes and stopping


@pytest.mark.parametrize("mode,kind", [("native", "xdp"), ("generic", "xdpgeneric")])
def test_mode_filters_and_sigterm_detaches(netbed: NetBed, xdpd, mode: str, kind: str) -> None:
    """Native and generic XDP both work on veth; SIGTERM (default detach_on_stop) detaches, exit 0."""
    d = xdpd(config(netbed.victim_if, mode=mode, rules="""
        - {name: drop-bad, action: drop, src: [192.0.2.0/24, "2001:db8:bad::/48"]}
    """))
    st = d.status()
    i = iface_status(d, st)
    assert i["attached"] and i["mode"] == mode and i["prog_id"] == st["prog_id"] > 0
    assert xdp_attachment(netbed.victim_ns, netbed.victim_if) == kind
    dropped(netbed, "udp", "192.0.2.1", 3)
    dropped(netbed, "udp", "2001:db8:bad::1", 3)
    passes(netbed, "udp", "198.51.100.1", 3)
    passes(netbed, "udp", "2001:db8:900d::1", 3)
    assert d.rule_packets() == {"drop-bad": 6}

    assert d.stop() == 0, d.stderr()
    assert xdp_attachment(netbed.victim_ns, netbed.victim_if) is None, "XDP still attached after SIGTERM"
    assert "detached" in d.stderr()
    passes(netbed, "udp", "192.0.2.1", 3)
    passes(netbed, "udp", "2001:db8:bad::1", 3)
    # status still reads the pinned state, and tells the program is no longer attached.
    i = iface_status(d)
    assert not i["attached"] and i["mode"] == "none"


def test_detach_on_stop_false_keeps_filtering_after_sigterm(netbed: NetBed, xdpd) -> None:
    d = xdpd(config(netbed.victim_if, settings="detach_on_stop: false", rules="""
        - {name: drop-bad, action: drop, src: [192.0.2.0/24, "2001:db8:bad::/48"]}
    """))
    kind = xdp_attachment(netbed.victim_ns, netbed.victim_if)
    assert kind in ("xdp", "xdpgeneric")
    dropped(netbed, "udp", "192.0.2.1", 3)
    dropped(netbed, "udp", "2001:db8:bad::1", 2)

    assert d.stop() == 0, d.stderr()
    assert "left_attached" in d.stderr()
    try:
        assert xdp_attachment(netbed.victim_ns, netbed.victim_if) == kind
        st = d.status()
        i = iface_status(d, st)
        assert i["attached"] and i["prog_id"] == st["prog_id"]
        assert st["rules"]["drop-bad"]["packets"] == 5
        # Nobody is running, yet the filter still works and still counts.
        dropped(netbed, "udp", "192.0.2.2", 4)
        dropped(netbed, "icmpv6", "2001:db8:bad::2", 2)
        passes(netbed, "udp", "198.51.100.1", 3)
        passes(netbed, "icmpv6", V6, 2)
        assert d.rule_packets() == {"drop-bad": 11}
        table = d.status_cmd()
        assert table.returncode == 0 and "drop-bad" in table.stdout and netbed.victim_if in table.stdout, table
    finally:
        detach_xdp(netbed.victim_ns, netbed.victim_if)
    assert xdp_attachment(netbed.victim_ns, netbed.victim_if) is None
    passes(netbed, "udp", "192.0.2.1", 3)


# --------------------------------------------------------------------------- bad config


@pytest.mark.parametrize("bad_rule", [
    "- {name: typo, action: drop, sorce: 192.0.2.0/24}",       # unknown key
    "- {name: host-bits, action: drop, src: 192.0.2.1/24}",    # host bits set
], ids=["unknown-key", "host-bits"])
def test_bad_config_at_start_exits_78_and_attaches_nothing(netbed: NetBed, xdpd, bad_rule: str) -> None:
    d = xdpd(config(netbed.victim_if, rules=f"""
        - {{name: fine, action: drop, src: 198.51.100.9}}
        {bad_rule}
    """), start=False)
    with pytest.raises(DaemonFailed) as failed:
        d.start()
    assert failed.value.returncode == 78, failed.value
    assert not any("READY=1" in m.splitlines() for m in d.messages), d.messages
    assert "config_invalid" in failed.value.stderr
    assert xdp_attachment(netbed.victim_ns, netbed.victim_if) is None
    assert not os.path.exists(os.path.join(d.pin_dir, "prog"))
    passes(netbed, "udp", "192.0.2.1", 2)


# --------------------------------------------------------------------------- reload


def test_sighup_enforces_changed_rules(netbed: NetBed, xdpd) -> None:
    d = xdpd(config(netbed.victim_if, rules="""
        - {name: drop-a, action: drop, src: [192.0.2.0/24, "2001:db8:bad::/48"]}
    """))
    prog_id = iface_status(d)["prog_id"]
    dropped(netbed, "udp", "192.0.2.1", 2)
    passes(netbed, "udp", "198.51.100.1", 2)
    passes(netbed, "udp", "2001:db8:900d::1", 2)

    msg = d.reload(config(netbed.victim_if, rules="""
        - {name: drop-b, action: drop, src: [198.51.100.0/24, "2001:db8:900d::/48"]}
    """))
    assert "rejected" not in msg and "failed" not in msg, msg
    assert d.proc.poll() is None, "xdpd exited on SIGHUP"
    dropped(netbed, "udp", "198.51.100.1", 3)          # passed before the reload
    dropped(netbed, "udp", "2001:db8:900d::1", 2)
    passes(netbed, "udp", "192.0.2.1", 3)              # dropped before the reload
    passes(netbed, "udp", "2001:db8:bad::1", 2)
    st = d.status()
    assert {n: r["packets"] for n, r in st["rules"].items()} == {"drop-b": 5}
    assert iface_status(d, st)["prog_id"] == prog_id   # swapped in place, not re-attached

    # An invalid config on SIGHUP is rejected; the last good rule set stays enforced.
    msg = d.reload("rules: [{name: broken, action: explode}]\n")
    assert "reload rejected" in msg, msg
    assert d.proc.poll() is None
    dropped(netbed, "udp", "198.51.100.2", 2)
    passes(netbed, "udp", "192.0.2.2", 2)
    assert d.rule_packets() == {"drop-b": 7}
    assert d.stop() == 0
