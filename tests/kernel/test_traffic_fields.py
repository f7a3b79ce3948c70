"""The fields of issue 9 with real traffic: ``xdpd run`` on veths in a test bed.

What a socket can produce is sent by a socket: TCP connects against a SYN
rule, pings against an echo-request rule (and the victim's own pings, whose
replies are other ICMP), ``IP_TTL`` / ``IPV6_UNICAST_HOPS``, payload sizes.
VLAN tags cannot come from a socket here (the test kernel has no 802.1Q
devices), so tagged frames are injected from the sender's veth: a
priority-tagged frame (VLAN id 0) is still delivered by the victim's stack.
Two interfaces from one daemon, each with its own rules, carry traffic of
their own (a second veth pair).  Each send is judged by what the victim
received and by the per-rule counts of ``xdpd status --json``.
"""

from __future__ import annotations

import socket
import time

import pytest

from tests.kernel.test_traffic import dropped, passes, verdicts
from tests.testbed import links, traffic
from tests.testbed.daemon import config
from tests.testbed.frames import ETH_P_8021Q, frame_v4, frame_v6
from tests.testbed.netbed import NetBed

pytestmark = pytest.mark.kernel

V4, V6 = NetBed.sender_v4_primary, NetBed.sender_v6_primary
IPV6_UNICAST_HOPS = getattr(socket, "IPV6_UNICAST_HOPS", 16)


def ttl(value: int, v6: bool) -> list[tuple[int, int, int]]:
    return [(socket.IPPROTO_IPV6, IPV6_UNICAST_HOPS, value) if v6 else (socket.IPPROTO_IP, socket.IP_TTL, value)]


def tagged_udp(bed: NetBed, src: str, dport: int, vid: int) -> bytes:
    """A UDP datagram to the victim behind an 802.1Q tag, as the victim's stack accepts it."""
    build = frame_v6 if ":" in src else frame_v4
    return build("udp", src, bed.victim_addr(6 if ":" in src else 4), 40000, dport, payload=b"tagged",
                 eth_dst=bed.victim_mac(), eth_src=bed.sender_mac(), vlans=[(ETH_P_8021Q, vid)])


def wait_for(what, predicate, timeout: float = 3.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"{what} within {timeout} s"
        time.sleep(0.02)


def test_each_new_field_with_real_traffic(netbed: NetBed, xdpd) -> None:
    d = xdpd(config(netbed.victim_if, mode="native", rules="""
        - {name: syn-7001, action: drop, proto: tcp, dst_port: 7001, tcp_flags: "syn,!ack"}
        - {name: syns-7002, action: count, proto: tcp, dst_port: 7002, tcp_flags: syn}
        - {name: no-ping, action: drop, proto: [icmp, icmpv6], icmp_type: echo-request}
        - {name: replies, action: count, proto: [icmp, icmpv6], icmp_type: echo-reply}
        - {name: port-unreach, action: count, proto: [icmp, icmpv6], icmp_type: destination-unreachable,
           icmp_code: [3, 4]}
        - {name: low-ttl, action: drop, ttl: "0-2"}
        - {name: big-udp, action: drop, proto: udp, length: "1400-65535"}
        - {name: prio-tagged, action: drop, proto: udp, dst_port: 7005, vlan: 0}
        - {name: vlan-20, action: count, vlan: 20}
    """))
    for src in (V4, V6):
        v6 = ":" in src
        # tcp_flags: the SYN of a connect is dropped on 7001; on 7002 the handshake
        # completes and only its SYN (not the ACK or the closing RST) is counted.
        dropped(netbed, "tcp", src, 3, dport=7001)
        passes(netbed, "tcp", src, 3, dport=7002)
        # icmp_type: echo requests in are dropped; the replies to the victim's own pings are not.
        dropped(netbed, "icmpv6" if v6 else "icmp", src, 3)
        wait = traffic.Wait()
        assert traffic.icmp_exchange(netbed.victim_ns, netbed.victim_addr(6 if v6 else 4), src, 2, 32, wait) == 2
        # icmp_code: a datagram to a closed port of the sender brings back port unreachable.
        traffic.send_trigger(netbed.victim_ns, netbed.victim_addr(6 if v6 else 4), src, port=7)
        # ttl: what the socket sets is what the program reads.
        for hops, want in ((1, 0), (2, 0), (3, 3), (64, 3)):
            got = netbed.send("udp", src, count=3, dport=7003, tx_opts=ttl(hops, v6))
            assert got == want, f"{src} ttl {hops}: sent 3, received {got}"
        # length: IP length = header (20 / 40) + 8 (UDP) + payload.
        edge = 1400 - (40 if v6 else 20) - 8
        dropped(netbed, "udp", src, 3, dport=7004, payload_len=edge)
        passes(netbed, "udp", src, 3, dport=7004, payload_len=edge - 1)
        # vlan: priority-tagged frames are filtered by their tag, untagged ones are not.
        assert traffic.inject_udp_exchange(netbed, tagged_udp(netbed, src, 7005, 0), 3) == 0
        assert traffic.inject_udp_exchange(netbed, tagged_udp(netbed, src, 7006, 0), 3) == 3
        passes(netbed, "udp", src, 3, dport=7005)
        netbed.inject(tagged_udp(netbed, src, 7006, 20), 3)  # not delivered: no 802.1Q here

    wait_for("two port unreachables counted", lambda: d.rule_packets()["port-unreach"] >= 2)
    assert d.rule_packets() == {"syn-7001": 6, "syns-7002": 6, "no-ping": 6, "replies": 4, "port-unreach": 2,
                                "low-ttl": 12, "big-udp": 6, "prio-tagged": 6, "vlan-20": 6}


def test_two_interfaces_carry_different_policies(netbed: NetBed, xdpd) -> None:
    """One daemon, two veths: a rule restricted to one interface does not touch the other."""
    b = links.add_veth_pair(netbed)
    a = netbed.victim_if
    d = xdpd(f"""
        settings: {{log_interval: 60, max_addresses: 1024}}
        interfaces:
          {a}: {{mode: native}}
          {b.victim_if}: {{mode: native, default: drop}}
        rules:
          - {{name: udp-7000-on-a, action: drop, interfaces: [{a}], proto: udp, dst_port: 7000}}
          - {{name: ping-on-b, action: pass, interfaces: [{b.victim_if}], proto: [icmp, icmpv6],
              icmp_type: echo-request}}
          - {{name: udp-on-b, action: pass, interfaces: [{b.victim_if}], proto: udp, dst_port: "7000-7001"}}
          - {{name: no-7001, action: drop, proto: udp, dst_port: 7001}}
    """)
    st = d.status()
    assert st["interfaces"][a]["attached"] and st["interfaces"][b.victim_if]["attached"]
    for fam in (4, 6):
        a_src, a_dst = netbed.sender_primary(fam), netbed.victim_addr(fam)
        b_src, b_dst = b.sender[fam], b.victim[fam]
        ping = "icmp" if fam == 4 else "icmpv6"
        dropped(netbed, "udp", a_src, 3, dst=a_dst, dport=7000)    # a: its own rule
        passes(netbed, "udp", b_src, 3, dst=b_dst, dport=7000)     # b: a's rule does not apply
        dropped(netbed, "udp", a_src, 2, dst=a_dst, dport=7001)    # a: unscoped rule
        passes(netbed, "udp", b_src, 2, dst=b_dst, dport=7001)     # b: its pass rule comes first
        dropped(netbed, "udp", b_src, 2, dst=b_dst, dport=7002)    # b: default drop
        passes(netbed, "udp", a_src, 2, dst=a_dst, dport=7002)     # a: default pass
        passes(netbed, ping, a_src, 2, dst=a_dst)
        passes(netbed, ping, b_src, 2, dst=b_dst)
    assert d.rule_packets() == {"udp-7000-on-a": 6, "ping-on-b": 4, "udp-on-b": 10, "no-7001": 4}
    st = d.status()
    va, vb = verdicts(d, st), st["interfaces"][b.victim_if]["counters"]
    assert va["drop_rule"] == 10 and va.get("pass_rule", 0) == 0
    assert vb["drop_default"]["packets"] == 4 and vb["drop_rule"]["packets"] == 0
    assert vb["pass_rule"]["packets"] == 14
