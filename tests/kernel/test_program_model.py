"""Property test: the bit-vector program agrees with a naive first-match model.

Hypothesis draws rule sets (addresses and prefixes from small pools, so that
packets hit them; protocols; ports and ranges; every action; the fields of
issue 9: tcp_flags, icmp_type and icmp_code, ttl, length, vlan, and rules
scoped to one or both of two interfaces) and packets (VLAN and QinQ tags,
TTLs, sizes, TCP flags, ICMP types and codes, non-first fragments); each
rule set is loaded into the real program (both banks, the way the daemon
does) as one of the two interfaces, and every packet's verdict is compared
with a plain Python loop over the rules, written from the README's
semantics.  Sizes are drawn both below and above the small-table limit, so
the small scan, its /16 block index, the hash with its filter and the trie
are all exercised.
"""

from __future__ import annotations

import ipaddress
import itertools
from dataclasses import dataclass

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.testbed.frames import ETH_P_8021AD, ETH_P_8021Q, frame_v4, frame_v6

pytestmark = pytest.mark.kernel

V4_HOSTS = [f"192.0.2.{i}" for i in (1, 2, 3, 130)] + [f"198.51.100.{i}" for i in (1, 9, 200)]
V4_NETS = ["192.0.2.0/24", "192.0.2.128/25", "198.51.0.0/16", "0.0.0.0/0", "203.0.113.0/28"]
V6_HOSTS = ["2001:db8::1", "2001:db8::2", "2001:db8:bad::5"]
V6_NETS = ["2001:db8:bad::/48", "2001:db8::/32", "2001:db8::/126"]
PROTOS = {"tcp": 6, "udp": 17, "icmp": 1, "icmpv6": 58}
FILLER_V4 = [f"203.0.113.{i}" for i in range(100, 130)]      # pushes a list past the small table
FILLER_V6 = [f"2001:db8:f111::{i:x}" for i in range(1, 30)]

IFACES = ("pub", "priv")
FLAGS = {"fin": 0x01, "syn": 0x02, "rst": 0x04, "ack": 0x10}
ICMP_NAMES = {"echo-request": {4: 8, 6: 128}, "echo-reply": {4: 0, 6: 129}, "destination-unreachable": {4: 3, 6: 1}}
ICMP_FAMILY = {"icmp": 4, "icmpv6": 6}
TAGS = [(), ((ETH_P_8021Q, 5),), ((ETH_P_8021AD, 20),), ((ETH_P_8021AD, 20), (ETH_P_8021Q, 5)), ((ETH_P_8021Q, 0),)]


def ranges(values: list[int]):
    """A number, a quoted range or a list of them, drawn from boundary values."""
    item = st.one_of(st.sampled_from(values).map(str),
                     st.tuples(st.sampled_from(values), st.sampled_from(values)).map(
                         lambda t: f'"{min(t)}-{max(t)}"'))
    return st.one_of(item, st.lists(item, min_size=1, max_size=3))


def sometimes():
    return st.integers(0, 3).map(lambda n: n == 0)


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
    r: dict = {"name": f"r{i}", "action": draw(st.sampled_from(["drop", "pass", "count", "limit"]))}
    if r["action"] == "limit":
        # One shared bucket: a burst of 1 is spent by the first packet the rule
        # sees, so every later one is over the rate; a huge burst never is.
        # (The test renames limit rules for each example: see fresh_buckets.)
        r.update(rate="1/h", per="rule", burst=draw(st.sampled_from([1, 1000])))
    if draw(sometimes()):
        r["src"] = draw(address_list())
    if draw(sometimes()):
        r["dst"] = draw(address_list())
    if draw(st.booleans()):
        r["proto"] = draw(st.lists(st.sampled_from(["tcp", "udp"]), min_size=1, max_size=2, unique=True))
        if draw(st.booleans()):
            r["dst_port"] = draw(st.lists(ports, min_size=1, max_size=3))
        if draw(st.booleans()):
            r["src_port"] = draw(st.lists(ports, min_size=1, max_size=2))
    elif draw(st.booleans()):
        r["proto"] = draw(st.sampled_from([["icmp"], ["icmpv6"], ["icmp", "icmpv6"], ["tcp"]]))
        if r["proto"] != ["tcp"] and draw(st.booleans()):
            r["icmp_type"] = draw(st.lists(st.sampled_from([*ICMP_NAMES, 0, 1, 3, 8, 128]), min_size=1, max_size=2,
                                           unique=True))
            if draw(sometimes()):
                r["icmp_code"] = draw(ranges([0, 1, 3, 4, 255]))
    if r.get("proto") == ["tcp"] and draw(st.booleans()):
        flags = draw(st.lists(st.sampled_from(sorted(FLAGS)), min_size=1, max_size=3, unique=True))
        r["tcp_flags"] = '"' + ",".join(("!" if draw(st.booleans()) else "") + f for f in flags) + '"'
    if draw(sometimes()):
        r["ttl"] = draw(ranges([0, 1, 2, 63, 64, 65, 255]))
    if draw(sometimes()):
        r["length"] = draw(ranges([0, 40, 60, 100, 1000, 1100, 65535]))
    if draw(sometimes()):
        r["vlan"] = draw(ranges([0, 1, 5, 19, 20, 4095]))
    if draw(sometimes()):
        r["interfaces"] = [draw(st.sampled_from(IFACES))] if draw(st.booleans()) else list(IFACES)
    return r


@st.composite
def rule_sets(draw) -> list[dict]:
    n = draw(st.integers(1, 8))
    return [draw(rule(i)) for i in range(n)]


@dataclass(frozen=True)
class Packet:
    proto: str
    src: str
    dst: str
    sport: int
    dport: int
    ttl: int = 64
    payload: int = 0
    vlans: tuple = ()
    nonfirst: bool = False
    tcp_flags: int = 0x02
    icmp_type: int = 8
    icmp_code: int = 0

    @property
    def family(self) -> int:
        return 6 if ":" in self.src else 4

    def frame(self) -> bytes:
        v6 = self.family == 6
        kw: dict = {"vlans": self.vlans, "payload": b"x" * self.payload}
        kw.update(hop_limit=self.ttl) if v6 else kw.update(ttl=self.ttl)
        if self.proto == "tcp":
            kw["tcp_flags"] = self.tcp_flags
        if self.proto.startswith("icmp"):
            kw.update(icmp_type=self.icmp_type, icmp_code=self.icmp_code)
        if self.nonfirst:
            kw.update(exts=[(44, {"frag_offset": 100})]) if v6 else kw.update(frag_offset=100)
        return (frame_v6 if v6 else frame_v4)(self.proto, self.src, self.dst, self.sport, self.dport, **kw)

    def ip_length(self) -> int:
        return len(self.frame()) - 14 - 4 * len(self.vlans)


@st.composite
def packets(draw) -> Packet:
    v6 = draw(st.booleans())
    hosts = (V6_HOSTS + ["2001:db8:bad:1::9", "2001:db8::3", "2001:db8:ffff::1"] if v6 else
             V4_HOSTS + ["192.0.2.200", "198.51.7.7", "203.0.113.5", "203.0.113.101", "10.1.1.1"])
    proto = draw(st.sampled_from(["tcp", "udp", "icmpv6" if v6 else "icmp"]))
    return Packet(proto, draw(st.sampled_from(hosts)), draw(st.sampled_from(hosts)),
                  draw(st.sampled_from([53, 80, 1000, 1999, 40000])), draw(st.sampled_from([22, 53, 443, 1500])),
                  ttl=draw(st.sampled_from([1, 2, 64, 65, 255])), payload=draw(st.sampled_from([0, 40, 1000])),
                  vlans=draw(st.sampled_from(TAGS)), nonfirst=draw(sometimes()),
                  tcp_flags=draw(st.integers(0, 255)), icmp_type=draw(st.sampled_from([0, 1, 3, 8, 128, 129])),
                  icmp_code=draw(st.sampled_from([0, 1, 3, 4, 200])))


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


def _in_ranges(value: int, spec) -> bool:
    for item in spec if isinstance(spec, list) else [spec]:
        lo, _, hi = str(item).strip('"').partition("-")
        if int(lo) <= value <= int(hi or lo):
            return True
    return False


def _flags_ok(flags: int, spec: str) -> bool:
    for item in spec.strip('"').split(","):
        bit = FLAGS[item.lstrip("!")]
        if bool(flags & bit) == item.startswith("!"):
            return False
    return True


def _icmp_types(r: dict) -> set[tuple[int, int]]:
    """(family, type) pairs: names per family of the rule's ICMP protocols, numbers for each of them."""
    families = [ICMP_FAMILY[p] for p in r["proto"]]
    return {(fam, ICMP_NAMES[t][fam] if t in ICMP_NAMES else t) for t in r["icmp_type"] for fam in families}


def model(rules: list[dict], pkt: Packet, iface: str, default: str, spent: dict[str, int]) -> str:
    """The README's semantics, one rule at a time; ``spent`` counts what each
    limit rule's bucket let through so far."""
    l4 = not pkt.nonfirst             # a non-first fragment has no TCP/UDP/ICMP header
    has_ports = pkt.proto in ("tcp", "udp") and l4
    icmp = pkt.proto.startswith("icmp") and l4
    outer_vlan = pkt.vlans[0][1] if pkt.vlans else None
    for r in rules:
        if "interfaces" in r and iface not in r["interfaces"]:
            continue
        if "src" in r and not _in(pkt.src, r["src"]):
            continue
        if "dst" in r and not _in(pkt.dst, r["dst"]):
            continue
        if "proto" in r and pkt.proto not in r["proto"]:
            continue
        if "dst_port" in r and not (has_ports and _in_ranges(pkt.dport, r["dst_port"])):
            continue
        if "src_port" in r and not (has_ports and _in_ranges(pkt.sport, r["src_port"])):
            continue
        if "tcp_flags" in r and not (pkt.proto == "tcp" and l4 and _flags_ok(pkt.tcp_flags, r["tcp_flags"])):
            continue
        if "icmp_type" in r and not (icmp and (pkt.family, pkt.icmp_type) in _icmp_types(r)):
            continue
        if "icmp_code" in r and not (icmp and _in_ranges(pkt.icmp_code, r["icmp_code"])):
            continue
        if "ttl" in r and not _in_ranges(pkt.ttl, r["ttl"]):
            continue
        if "length" in r and not _in_ranges(pkt.ip_length(), r["length"]):
            continue
        if "vlan" in r and not (outer_vlan is not None and _in_ranges(outer_vlan, r["vlan"])):
            continue
        if r["action"] == "limit":
            if spent.get(r["name"], 0) >= r["burst"]:
                return "drop"
            spent[r["name"]] = spent.get(r["name"], 0) + 1
            continue
        if r["action"] != "count":
            return r["action"]
    return default


_EXAMPLE = itertools.count()


def fresh_buckets(rules: list[dict]) -> list[dict]:
    """The rules with each limit rule named for this example alone: its buckets
    (keyed by its name's hash) then start full, whatever earlier examples spent
    (hypothesis draws the same rule sets again, and shrinking repeats them)."""
    n = next(_EXAMPLE)
    return [{**r, "name": f"{r['name']}-e{n}"} if r["action"] == "limit" else r for r in rules]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rules=rule_sets(), pkts=st.lists(packets(), min_size=20, max_size=40), iface=st.sampled_from(IFACES),
       default=st.sampled_from(["pass", "drop"]))
def test_program_agrees_with_the_first_match_model(prog, rules, pkts, iface, default):
    rules = fresh_buckets(rules)
    yaml = f"interfaces:\n  {iface}: {{default: {default}}}\n  {IFACES[iface == IFACES[0]]}: {{}}\n" + _yaml(rules)
    prog.load(yaml, iface=iface)
    spent: dict[str, int] = {}
    for pkt in pkts:
        assert prog.run(pkt.frame()) == model(rules, pkt, iface, default, spent), (pkt, yaml)
