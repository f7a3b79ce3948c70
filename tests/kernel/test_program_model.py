"""Property test: the bit-vector program agrees with a naive first-match model.

Hypothesis draws rule sets (addresses and prefixes from small pools, so that
packets hit them; protocols; ports and ranges; every action) and packets;
each rule set is loaded into the real program (both banks, the way the
daemon does) and every packet's verdict is compared with a plain Python loop
over the rules, written from the README's semantics.  Sizes are drawn both
below and above the small-table limit, so the small scan, its /16 block
index, the hash with its filter and the trie are all exercised.
"""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.testbed.frames import frame_v4, frame_v6

pytestmark = pytest.mark.kernel

V4_HOSTS = [f"192.0.2.{i}" for i in (1, 2, 3, 130)] + [f"198.51.100.{i}" for i in (1, 9, 200)]
V4_NETS = ["192.0.2.0/24", "192.0.2.128/25", "198.51.0.0/16", "0.0.0.0/0", "203.0.113.0/28"]
V6_HOSTS = ["2001:db8::1", "2001:db8::2", "2001:db8:bad::5"]
V6_NETS = ["2001:db8:bad::/48", "2001:db8::/32", "2001:db8::/126"]
PROTOS = {"tcp": 6, "udp": 17, "icmp": 1, "icmpv6": 58}
FILLER_V4 = [f"203.0.113.{i}" for i in range(100, 130)]      # pushes a list past the small table
FILLER_V6 = [f"2001:db8:f111::{i:x}" for i in range(1, 30)]

ports = st.one_of(st.integers(0, 65535).map(str),
                  st.tuples(st.integers(0, 2000), st.integers(0, 2000)).map(
                      lambda t: f'"{min(t)}-{max(t)}"'))


@st.composite
def address_list(draw) -> list[str]:
    items = draw(st.lists(st.sampled_from(V4_HOSTS + V4_NETS + V6_HOSTS + V6_NETS), min_size=1, max_size=5,
                          unique=True))
    if draw(st.booleans()):
        items += FILLER_V4 + FILLER_V6
    return items


@st.composite
def rule(draw, i: int) -> dict:
    r: dict = {"name": f"r{i}", "action": draw(st.sampled_from(["drop", "pass", "count"]))}
    if draw(st.booleans()):
        r["src"] = draw(address_list())
    if draw(st.booleans()):
        r["dst"] = draw(address_list())
    if draw(st.booleans()):
        r["proto"] = draw(st.lists(st.sampled_from(["tcp", "udp"]), min_size=1, max_size=2, unique=True))
        if draw(st.booleans()):
            r["dst_port"] = draw(st.lists(ports, min_size=1, max_size=3))
        if draw(st.booleans()):
            r["src_port"] = draw(st.lists(ports, min_size=1, max_size=2))
    elif draw(st.booleans()):
        r["proto"] = [draw(st.sampled_from(["icmp", "icmpv6", "tcp"]))]
    return r


@st.composite
def rule_sets(draw) -> list[dict]:
    n = draw(st.integers(1, 8))
    return [draw(rule(i)) for i in range(n)]


@st.composite
def packets(draw) -> tuple[str, str, str, int, int]:
    v6 = draw(st.booleans())
    hosts = (V6_HOSTS + ["2001:db8:bad:1::9", "2001:db8::3", "2001:db8:ffff::1"] if v6 else
             V4_HOSTS + ["192.0.2.200", "198.51.7.7", "203.0.113.5", "203.0.113.101", "10.1.1.1"])
    proto = draw(st.sampled_from(["tcp", "udp", "icmpv6" if v6 else "icmp"]))
    return (proto, draw(st.sampled_from(hosts)), draw(st.sampled_from(hosts)),
            draw(st.sampled_from([53, 80, 1000, 1999, 40000])), draw(st.sampled_from([22, 53, 443, 1500])))


def _yaml(rules: list[dict]) -> str:
    def value(v):
        if isinstance(v, list):
            return "[" + ", ".join(f"'{x}'" if ":" in str(x) and not str(x).startswith('"') else str(x)
                                   for x in v) + "]"
        return str(v)
    return "rules:\n" + "".join("  - {" + ", ".join(f"{k}: {value(v)}" for k, v in r.items()) + "}\n"
                                for r in rules)


def _in(addr: str, items: list[str]) -> bool:
    a = ipaddress.ip_address(addr)
    return any(a in ipaddress.ip_network(x) for x in items)


def _port_ok(port: int, specs: list[str]) -> bool:
    for s in specs:
        s = s.strip('"')
        lo, _, hi = s.partition("-")
        if int(lo) <= port <= int(hi or lo):
            return True
    return False


def model(rules: list[dict], pkt: tuple[str, str, str, int, int]) -> str:
    """The README's semantics, one rule at a time."""
    proto, src, dst, sport, dport = pkt
    has_ports = proto in ("tcp", "udp")
    for r in rules:
        if "src" in r and not _in(src, r["src"]):
            continue
        if "dst" in r and not _in(dst, r["dst"]):
            continue
        if "proto" in r and proto not in r["proto"]:
            continue
        if "dst_port" in r and not (has_ports and _port_ok(dport, r["dst_port"])):
            continue
        if "src_port" in r and not (has_ports and _port_ok(sport, r["src_port"])):
            continue
        if r["action"] != "count":
            return r["action"]
    return "pass"   # the interface default


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rules=rule_sets(), pkts=st.lists(packets(), min_size=5, max_size=12))
def test_program_agrees_with_the_first_match_model(prog, rules, pkts):
    prog.load(_yaml(rules))
    for pkt in pkts:
        proto, src, dst, sport, dport = pkt
        make = frame_v6 if ":" in src else frame_v4
        frame = make(proto, src, dst, sport, dport) if proto in ("tcp", "udp") else make(proto, src, dst)
        assert prog.run(frame) == model(rules, pkt), (pkt, _yaml(rules))
