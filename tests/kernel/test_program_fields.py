"""The match fields of issue 9 in the XDP program, on crafted frames (BPF_PROG_TEST_RUN).

Each field (tcp_flags, icmp_type, icmp_code, ttl, length, vlan) in IPv4 and
IPv6, untagged and behind a VLAN or QinQ tag, in first and non-first
fragments: rules naming tcp_flags or an ICMP type or code need the L4 header
and so never match a non-first fragment; ttl, length and vlan are in the IP
and Ethernet headers and do.  Scoping (a rule restricted to another
interface does not match) and observe mode are in test_program_scope.py.
"""

from __future__ import annotations

import pytest

from tests.testbed.frames import ETH_P_8021AD, ETH_P_8021Q, frame_v4, frame_v6

pytestmark = pytest.mark.kernel

SRC4, DST4 = "198.51.100.1", "203.0.113.9"
SRC6, DST6 = "2001:db8:900d::1", "2001:db8:ffff::9"
TAGS = {"untagged": [], "vlan": [(ETH_P_8021Q, 7)], "802.1ad": [(ETH_P_8021AD, 7)],
        "qinq": [(ETH_P_8021AD, 100), (ETH_P_8021Q, 200)]}


def frame(family: int, proto: str, tags: str = "untagged", fragment: str = "whole", **kw) -> bytes:
    """One frame of ``family`` (4/6) behind ``tags``; ``fragment`` is whole, first or nonfirst.

    ``ttl`` means the IPv4 TTL or the IPv6 hop limit; other keywords go to
    :func:`frame_v4` / :func:`frame_v6`.  A non-first fragment still carries
    bytes that look like the L4 header the whole frame would have (the
    program must not read them).
    """
    kw["vlans"] = TAGS[tags]
    if family == 4:
        if fragment != "whole":
            kw.update(more_fragments=True, frag_offset=100 if fragment == "nonfirst" else 0)
        return frame_v4(proto, SRC4, DST4, **kw)
    if "ttl" in kw:
        kw["hop_limit"] = kw.pop("ttl")
    if fragment != "whole":
        kw["exts"] = [(44, {"frag_offset": 100 if fragment == "nonfirst" else 0, "more_fragments": True})]
    return frame_v6(proto, SRC6, DST6, **kw)


def everywhere(build) -> list[tuple[str, bytes, str]]:
    """``build(family, tags)`` -> cases, for both families behind every tag stack."""
    return [(f"v{fam} {tags} {what}", f, want) for fam in (4, 6) for tags in TAGS
            for what, f, want in build(fam, tags)]


def test_tcp_flags_set_and_clear(prog):
    """``syn,!ack``: SYN set and ACK clear, the other flags either way; only TCP."""
    prog.load("""
        rules:
          - {name: syn, action: drop, proto: tcp, tcp_flags: "syn,!ack"}
          - {name: xmas, action: drop, proto: tcp, tcp_flags: "fin,psh,urg"}
    """)
    prog.check(everywhere(lambda fam, tags: [
        ("SYN", frame(fam, "tcp", tags, tcp_flags="S"), "drop"),
        ("SYN+FIN", frame(fam, "tcp", tags, tcp_flags="SF"), "drop"),
        ("SYN+ECE+CWR", frame(fam, "tcp", tags, tcp_flags="SEC"), "drop"),
        ("SYN+ACK", frame(fam, "tcp", tags, tcp_flags="SA"), "pass"),
        ("ACK", frame(fam, "tcp", tags, tcp_flags="A"), "pass"),
        ("no flags", frame(fam, "tcp", tags, tcp_flags=0), "pass"),
        ("FIN+PSH+URG", frame(fam, "tcp", tags, tcp_flags="FPU"), "drop"),
        ("FIN+PSH+URG+ACK", frame(fam, "tcp", tags, tcp_flags="FPUA"), "drop"),
        ("FIN+PSH", frame(fam, "tcp", tags, tcp_flags="FP"), "pass"),
        ("UDP", frame(fam, "udp", tags), "pass"),
        ("first fragment SYN", frame(fam, "tcp", tags, "first", tcp_flags="S"), "drop"),
        ("non-first fragment", frame(fam, "tcp", tags, "nonfirst", tcp_flags="S"), "pass"),
    ]))
    # IPv4 options move the TCP header; the flags are still found.
    prog.check([(f"options {n}", frame_v4("tcp", SRC4, DST4, tcp_flags=flags, options=b"\x01" * n), want)
                 for n in (4, 40) for flags, want in (("S", "drop"), ("SA", "pass"))])


def test_icmp_type_per_family_and_code(prog):
    """echo-request is type 8 for ICMP and 128 for ICMPv6; a number applies to
    every ICMP family of the rule's proto; codes are ranges within a type."""
    prog.load("""
        rules:
          - {name: ping, action: drop, proto: [icmp, icmpv6], icmp_type: echo-request}
          - {name: unreach, action: drop, proto: icmp, icmp_type: 3, icmp_code: "1-3"}
          - {name: both, action: drop, proto: [icmp, icmpv6], icmp_type: 200}
    """)

    def build(fam: int, tags: str) -> list[tuple[str, bytes, str]]:
        proto = "icmp" if fam == 4 else "icmpv6"
        echo, reply, other = (8, 0, 128) if fam == 4 else (128, 129, 8)
        cases = [
            ("echo request", frame(fam, proto, tags, icmp_type=echo), "drop"),
            ("echo request, code 5", frame(fam, proto, tags, icmp_type=echo, icmp_code=5), "drop"),
            ("echo reply", frame(fam, proto, tags, icmp_type=reply), "pass"),
            ("the other family's echo type", frame(fam, proto, tags, icmp_type=other), "pass"),
            ("type 200", frame(fam, proto, tags, icmp_type=200), "drop"),
            ("first fragment echo", frame(fam, proto, tags, "first", icmp_type=echo), "drop"),
            ("non-first fragment echo", frame(fam, proto, tags, "nonfirst", icmp_type=echo), "pass"),
            ("UDP", frame(fam, "udp", tags), "pass"),
        ]
        for code in range(6):
            cases.append((f"type 3 code {code}", frame(fam, proto, tags, icmp_type=3, icmp_code=code),
                          "drop" if fam == 4 and 1 <= code <= 3 else "pass"))
        cases.append(("non-first fragment type 3 code 2",
                      frame(fam, proto, tags, "nonfirst", icmp_type=3, icmp_code=2), "pass"))
        return cases

    prog.check(everywhere(build))


def test_ttl_and_hop_limit(prog):
    """ttl is the IPv4 TTL and the IPv6 hop limit, in every fragment."""
    prog.load("""
        rules:
          - {name: low, action: drop, ttl: "0-2"}
          - {name: odd, action: drop, proto: udp, ttl: [100, 255]}
    """)
    prog.check(everywhere(lambda fam, tags: [
        (f"{proto} ttl {ttl} {fragment}", frame(fam, proto, tags, fragment, ttl=ttl), want)
        for fragment in ("whole", "first", "nonfirst")
        for proto, ttl, want in (("tcp", 0, "drop"), ("udp", 1, "drop"), ("tcp", 2, "drop"), ("udp", 3, "pass"),
                                 ("udp", 64, "pass"), ("udp", 100, "drop"), ("tcp", 100, "pass"),
                                 ("udp", 255, "drop"), ("udp", 254, "pass"))
    ]))


def test_length_is_the_ip_packet_length(prog):
    """IPv4 total length, IPv6 payload length + 40, whatever the tags and fragments."""
    prog.load("""
        rules:
          - {name: jumbo, action: drop, proto: udp, length: "1400-65535"}
          - {name: exact, action: drop, length: 100}
    """)

    def build(fam: int, tags: str) -> list[tuple[str, bytes, str]]:
        cases = []
        for ip_len, want in ((1399, "pass"), (1400, "drop"), (1500, "drop"), (99, "pass"), (100, "drop"),
                             (101, "pass")):
            # IP header (20 / 40) + UDP header (8) + payload = ip_len
            payload = b"x" * (ip_len - (20 if fam == 4 else 40) - 8)
            for fragment in ("whole", "first", "nonfirst"):
                frag_hdr = 8 if fam == 6 and fragment != "whole" else 0
                f = frame(fam, "udp", tags, fragment, payload=payload[frag_hdr:])
                cases.append((f"udp length {ip_len} {fragment}", f, want))
        tcp_payload = b"x" * (1500 - (20 if fam == 4 else 40) - 20)
        cases.append(("tcp length 1500", frame(fam, "tcp", tags, payload=tcp_payload), "pass"))
        return cases

    prog.check(everywhere(build))
    # The header says the length, not the frame size: an IPv6 payload length of
    # 65535 (+ 40) is past what the config can name and counts as 65535.
    prog.check([("v6 payload length 65535", frame_v6("udp", SRC6, DST6, payload_len=65535), "drop"),
                 ("v4 total length 1400", frame_v4("udp", SRC4, DST4, tot_len=1400), "drop"),
                 ("v4 total length 1399", frame_v4("udp", SRC4, DST4, tot_len=1399), "pass")])


def test_vlan_is_the_outer_tag(prog):
    """The outer VLAN id, 802.1Q or 802.1ad; the inner tag of QinQ and untagged frames do not match."""
    prog.load("""
        rules:
          - {name: v20, action: drop, vlan: [20]}
          - {name: range, action: drop, proto: tcp, vlan: "100-199"}
          - {name: zero, action: drop, proto: udp, vlan: 0}
    """)
    cases = []
    for fam in (4, 6):
        build = frame_v4 if fam == 4 else frame_v6
        src, dst = (SRC4, DST4) if fam == 4 else (SRC6, DST6)
        for tags, proto, want in (([], "udp", "pass"), ([], "tcp", "pass"),
                                  ([(ETH_P_8021Q, 20)], "udp", "drop"), ([(ETH_P_8021AD, 20)], "icmp", "drop"),
                                  ([(ETH_P_8021Q, 21)], "udp", "pass"), ([(ETH_P_8021Q, 19)], "udp", "pass"),
                                  ([(ETH_P_8021AD, 20), (ETH_P_8021Q, 5)], "udp", "drop"),
                                  ([(ETH_P_8021AD, 5), (ETH_P_8021Q, 20)], "udp", "pass"),
                                  ([(ETH_P_8021Q, 100)], "tcp", "drop"), ([(ETH_P_8021Q, 199)], "tcp", "drop"),
                                  ([(ETH_P_8021Q, 200)], "tcp", "pass"), ([(ETH_P_8021Q, 150)], "udp", "pass"),
                                  ([(ETH_P_8021AD, 150), (ETH_P_8021Q, 20)], "tcp", "drop"),
                                  ([(ETH_P_8021Q, 0)], "udp", "drop"), ([(ETH_P_8021Q, 0)], "tcp", "pass"),
                                  ([(ETH_P_8021Q, 4095)], "udp", "pass")):
            proto = "icmpv6" if proto == "icmp" and fam == 6 else proto
            cases.append((f"v{fam} {tags} {proto}", build(proto, src, dst, vlans=tags), want))
            if fam == 4:
                f = build(proto, src, dst, vlans=tags, frag_offset=100, more_fragments=True)
            else:
                f = build(proto, src, dst, vlans=tags, exts=[(44, {"frag_offset": 100})])
            cases.append((f"v{fam} {tags} {proto} non-first fragment", f, want))
    prog.check(cases)


def test_all_fields_together_in_first_match_order(prog):
    """The new fields AND together with the old ones, and rules still decide in config order."""
    prog.load("""
        rules:
          - {name: keep-ssh, action: pass, proto: tcp, dst_port: 22, vlan: 20}
          - {name: syn-web, action: drop, proto: tcp, dst_port: [80, 443], tcp_flags: "syn,!ack", ttl: "0-63",
             src: [192.0.2.0/24, "2001:db8:bad::/48"]}
          - {name: count-big, action: count, length: "1000-65535"}
          - {name: scan, action: drop, ttl: "0-2", vlan: "0-4095"}
    """)
    b4, b6 = "192.0.2.5", "2001:db8:bad::5"
    before = prog.rule("count-big")[0]
    prog.check([
        ("v4 syn web, ttl 63", frame_v4("tcp", b4, DST4, 999, 443, ttl=63), "drop"),
        ("v6 syn web, hop limit 10", frame_v6("tcp", b6, DST6, 999, 80, hop_limit=10), "drop"),
        ("v4 syn web, ttl 64", frame_v4("tcp", b4, DST4, 999, 443, ttl=64), "pass"),
        ("v4 syn web, other source", frame_v4("tcp", SRC4, DST4, 999, 443, ttl=5), "pass"),
        ("v4 syn-ack web", frame_v4("tcp", b4, DST4, 999, 443, ttl=5, tcp_flags="SA"), "pass"),
        ("v4 syn port 81", frame_v4("tcp", b4, DST4, 999, 81, ttl=5), "pass"),
        ("ssh on vlan 20, ttl 1", frame_v4("tcp", b4, DST4, 999, 22, ttl=1, vlans=[(ETH_P_8021Q, 20)]), "pass"),
        ("ssh on vlan 21, ttl 1", frame_v4("tcp", b4, DST4, 999, 22, ttl=1, vlans=[(ETH_P_8021Q, 21)]), "drop"),
        ("ttl 1 untagged", frame_v4("udp", b4, DST4, ttl=1), "pass"),
        ("big, ttl 1, tagged", frame_v6("udp", SRC6, DST6, hop_limit=1, payload=b"x" * 1000,
                                        vlans=[(ETH_P_8021Q, 9)]), "drop"),
    ])
    assert prog.rule("count-big")[0] - before == 1
