"""The per-packet benchmark's workloads: address pools, rule sets, their bank images, the frames.

Everything is generated from ``random.Random(42)``, so every run measures
the same rule sets.  Random addresses never collide with the no-match
packet, the 10-rule set or the documentation ranges.
"""

from __future__ import annotations

import array
import random
import socket
import sys
from dataclasses import dataclass

from tests.testbed import frames
from xdpd import layout, tables
from xdpd.model import Action, AddrSet, Config, Interface, Limit, LimitPer, LimitUnit, PortRange, Rule, TcpFlags
from xdpd.plan import assign_slots

TEST_IFINDEX = 1  # BPF_PROG_TEST_RUN reports ingress_ifindex 1 (lo)
IFACE_SLOT = 0

NOMATCH_SRC, NOMATCH_DST = "203.0.113.7", "198.51.100.1"
NOMATCH6_SRC, NOMATCH6_DST = "2001:db8:ffff::7", "2001:db8:ffff::1"
NOMATCH6_ELSEWHERE_SRC = "3fff::7"
"""In the other IPv6 documentation prefix (3fff::/20, RFC 9637): a /32 no rule's prefix
reaches, where 2001:db8::/32 holds the 10-rule set's 2001:db8:bad::/48."""
BASE_DROP_SRC = "198.18.7.9"

ETH_SRC, ETH_DST = bytes.fromhex("020000000002"), bytes.fromhex("020000000001")
ETH_ZLEN = 60
"""The minimum Ethernet frame (without FCS): shorter frames are padded to it on a wire."""


# --------------------------------------------------------------- frames


def frame4(src: str, dst: str, sport: int = 40000, dport: int = 443, ttl: int = 64) -> bytes:
    """Ethernet + IPv4 + TCP SYN, padded to the 60-byte minimum."""
    frame = frames.frame_v4("tcp", src, dst, sport, dport, eth_dst=ETH_DST, eth_src=ETH_SRC,
                            ident=0x1234, dont_fragment=True, ttl=ttl)
    return frame.ljust(ETH_ZLEN, b"\0")


def frame6(src: str, dst: str, sport: int = 40000, dport: int = 443) -> bytes:
    """Ethernet + IPv6 + TCP SYN."""
    return frames.frame_v6("tcp", src, dst, sport, dport, eth_dst=ETH_DST, eth_src=ETH_SRC)


# --------------------------------------------------------------- addresses

# Random addresses come only from these first octets: never 10/8 (the admin
# nets of the rule sets), 127/8, or anything at or above 190 (so never the
# no-match packet's 203.0.113.7 or 198.51.100.1, nor 198.18/15 and 192.0.2/24
# of the 10-rule set).
_V4_OCTETS = bytes(o for o in range(1, 190) if o not in (10, 100, 127))
_V4_OCTET_MAP = bytes(_V4_OCTETS[i % len(_V4_OCTETS)] for i in range(256))


def _be_ints(data: bytes) -> list[int]:
    a = array.array("I", data)
    if sys.byteorder == "little":
        a.byteswap()
    return a.tolist()


def pack_be(ints: list[int]) -> bytes:
    """IPv4 addresses (ints) as packed network-order bytes, 4 per address."""
    a = array.array("I", ints)
    if sys.byteorder == "little":
        a.byteswap()
    return a.tobytes()


def _rand_v4(rng: random.Random, n: int) -> list[int]:
    """``n`` distinct random IPv4 addresses (ints) from the allowed octets, in generation order."""
    out: dict[int, None] = {}
    while len(out) < n:
        need = n - len(out)
        raw = bytearray(rng.randbytes(4 * (need + need // 50 + 16)))
        raw[0::4] = bytes(raw[0::4]).translate(_V4_OCTET_MAP)
        for a in _be_ints(bytes(raw)):
            out[a] = None
            if len(out) == n:
                break
    return list(out)


@dataclass
class Pool:
    """Sorted, unique address material for one scenario."""

    v4_hosts: list[int]                    # /32s as ints
    v4_nets: list[int]                     # /24 networks as ints
    v6_nets: list[tuple[int, int]]         # (network int, plen)
    v6_hosts: list[int]                    # /128s as ints

    def count(self) -> int:
        return len(self.v4_hosts) + len(self.v4_nets) + len(self.v6_nets) + len(self.v6_hosts)

    def subset(self, step: int) -> "Pool":
        return Pool(self.v4_hosts[::step], self.v4_nets[::step], self.v6_nets[::step], self.v6_hosts[::step])


def make_pool(n_v4_hosts: int, n_v4_nets: int, n_v6_nets: int, n_v6_hosts: int) -> Pool:
    rng = random.Random(42)
    hosts = sorted(_rand_v4(rng, n_v4_hosts))
    nets = sorted({a & 0xFFFFFF00 for a in _rand_v4(rng, n_v4_nets * 2)})
    rng.shuffle(nets)
    nets = sorted(nets[:n_v4_nets])
    v6_nets: dict[tuple[int, int], None] = {}
    while len(v6_nets) < n_v6_nets:
        plen = rng.randint(48, 64)
        # Under 2a00::/12: never 2001:db8::/32 (the IPv6 packets and the 10-rule set).
        a = (0x2A0 << 116) | rng.getrandbits(116)
        v6_nets[(a >> (128 - plen) << (128 - plen), plen)] = None
    v6_hosts = {(0x2A0 << 116) | rng.getrandbits(116) for _ in range(n_v6_hosts)}
    return Pool(hosts, nets, sorted(v6_nets), sorted(v6_hosts))


def aset(v4_hosts=(), v4_nets=(), v6_nets=(), v6_hosts=(), v4_plen: int = 24) -> AddrSet:
    """An AddrSet from int addresses (each list sorted and unique)."""
    return AddrSet(
        v4_exact=pack_be(list(v4_hosts)),
        v6_exact=b"".join(a.to_bytes(16, "big") for a in v6_hosts),
        v4_prefixes=tuple((n.to_bytes(4, "big"), v4_plen) for n in v4_nets),
        v6_prefixes=tuple((n.to_bytes(16, "big"), p) for n, p in v6_nets),
    )


def v4(s: str) -> bytes:
    return socket.inet_pton(socket.AF_INET, s)


def v6(s: str) -> bytes:
    return socket.inet_pton(socket.AF_INET6, s)


def ip_str(a: int) -> str:
    return socket.inet_ntop(socket.AF_INET, a.to_bytes(4, "big"))


# --------------------------------------------------------------- rule sets


def base_rules() -> list[Rule]:
    """The realistic 10-rule set."""
    tcp, udp, icmp = frozenset({6}), frozenset({17}), frozenset({1})
    return [
        Rule("admin-pass", Action.PASS, src=AddrSet(v4_prefixes=((v4("10.99.0.0"), 24),))),
        Rule("count-icmp", Action.COUNT, protos=icmp),
        Rule("drop-testnet", Action.DROP, src=AddrSet(v4_prefixes=((v4("192.0.2.0"), 24),))),
        Rule("drop-cgnat", Action.DROP, src=AddrSet(v4_prefixes=((v4("100.64.0.0"), 10),))),
        Rule("drop-hosts", Action.DROP, src=AddrSet(
            v4_exact=b"".join(sorted(v4(a) for a in ("198.18.0.5", "198.18.7.9", "198.18.200.1"))),
            v6_exact=v6("2001:db8:bad::1"))),
        Rule("drop-dns", Action.DROP, protos=udp, dst_ports=(PortRange(53, 53),)),
        Rule("drop-telnet", Action.DROP, protos=tcp, dst_ports=(PortRange(23, 23),)),
        Rule("drop-x11", Action.DROP, protos=tcp, dst_ports=(PortRange(6000, 6063),)),
        Rule("drop-bad-v6", Action.DROP, src=AddrSet(v6_prefixes=((v6("2001:db8:bad::"), 48),))),
        Rule("drop-db-ssh", Action.DROP, dst=AddrSet(v4_exact=v4("198.51.100.99")),
             protos=tcp, dst_ports=(PortRange(22, 22),)),
    ]


def field_rules() -> list[Rule]:
    """10 rules using the header fields of issue 9 the way its example does: with
    the protocol and ports they belong to (none matches the no-match packet,
    TCP SYN 40000 -> 443 with TTL 64, untagged)."""
    tcp, udp, icmp = frozenset({6}), frozenset({17}), frozenset({1})
    span = lambda lo, hi: (PortRange(lo, hi),)  # noqa: E731
    return [
        Rule("admin-ssh", Action.PASS, interfaces=("eth1",), protos=tcp, dst_ports=span(22, 22)),
        Rule("syn-flood-web", Action.DROP, protos=tcp, dst_ports=(PortRange(80, 80), PortRange(8080, 8080)),
             tcp_flags=TcpFlags(0x12, 0x02)),
        Rule("no-ping", Action.DROP, protos=frozenset({1, 58}), icmp_types=frozenset({(4, 8), (6, 128)})),
        Rule("ttl-scan", Action.DROP, ttl=span(0, 2)),
        Rule("jumbo-udp", Action.DROP, protos=udp, length=span(1400, 65535)),
        Rule("vlan-20-only", Action.DROP, vlans=span(20, 20)),
        Rule("no-redirect", Action.DROP, protos=icmp, icmp_types=frozenset({(4, 5)}), icmp_codes=span(0, 3)),
        Rule("rst-ssh", Action.DROP, protos=tcp, dst_ports=span(22, 22), tcp_flags=TcpFlags(0x04, 0x04)),
        Rule("scoped-net", Action.DROP, interfaces=("eth1",),
             src=AddrSet(v4_prefixes=((v4("192.0.2.0"), 24),))),
        Rule("big-dns", Action.DROP, protos=udp, dst_ports=span(53, 53), length=span(512, 65535)),
    ]


def field_rules_worst() -> list[Rule]:
    """10 rules of which four only a header lookup of their own can rule out for
    the no-match packet (tcp_flags, ttl, length, vlan-less length): the costliest
    mix of the new fields for it."""
    tcp = frozenset({6})
    span = lambda lo, hi: (PortRange(lo, hi),)  # noqa: E731
    return field_rules()[:6] + [
        Rule("xmas", Action.DROP, protos=tcp, tcp_flags=TcpFlags(0x29, 0x29)),
        Rule("huge", Action.DROP, length=span(9000, 65535)),
        Rule("ttl-255", Action.DROP, ttl=span(255, 255)),
        Rule("tiny", Action.DROP, length=span(0, 27)),
    ]


def limit_rules(rate: float, burst: int, per: LimitPer = LimitPer.SOURCE) -> list[Rule]:
    """A DNS flood limit (UDP to port 53, the issue's example) in front of the
    10 base rules: ``nomatch`` packets (TCP to 443) do not match it."""
    return [Rule("dns-flood", Action.LIMIT, protos=frozenset({17}), dst_ports=(PortRange(53, 53),),
                 limit=Limit(rate, LimitUnit.PACKETS, burst, per))] + base_rules()


def dns4(src: str, dst: str) -> bytes:
    """Ethernet + IPv4 + UDP to port 53, padded to the 60-byte minimum."""
    frame = frames.frame_v4("udp", src, dst, 40000, 53, eth_dst=ETH_DST, eth_src=ETH_SRC, payload=bytes(12))
    return frame.ljust(ETH_ZLEN, b"\0")


def port_rules() -> list[Rule]:
    """43 protocol/port rules (none matches TCP 40000 -> 443)."""
    tcp, udp = frozenset({6}), frozenset({17})
    out: list[Rule] = []
    for p in (19, 17, 111, 123, 137, 161, 389, 520, 1434, 1900, 3702, 5353, 11211, 27015):
        out.append(Rule(f"drop-reflect-{p}", Action.DROP, protos=udp, src_ports=(PortRange(p, p),)))
    for lo, hi in ((135, 135), (137, 139), (445, 445), (1433, 1433), (1521, 1521), (2375, 2376),
                   (3306, 3306), (3389, 3389), (5432, 5432), (5900, 5910), (6379, 6379),
                   (9200, 9300), (27017, 27019), (11211, 11211)):
        out.append(Rule(f"drop-tcp-{lo}", Action.DROP, protos=tcp, dst_ports=(PortRange(lo, hi),)))
    for k in range(5):
        out.append(Rule(f"ssh-mgmt-{k}", Action.PASS, protos=tcp, dst_ports=(PortRange(22, 22),),
                        src=AddrSet(v4_prefixes=((bytes((10, k + 1, 0, 0)), 16),))))
    counts = [("count-http", tcp, 80), ("count-smtp", tcp, 25), ("count-imaps", tcp, 993),
              ("count-ike", udp, 500), ("count-ipsec-nat", udp, 4500), ("count-ntp", udp, 123),
              ("count-syslog", udp, 514), ("count-dns-tcp", tcp, 53), ("count-bgp", tcp, 179),
              ("count-wireguard", udp, 51820)]
    for name, proto, p in counts:
        out.append(Rule(name, Action.COUNT, protos=proto, dst_ports=(PortRange(p, p),)))
    return out


def address_rules(pool: Pool) -> list[Rule]:
    """11 rules holding the pool: one big source blocklist, six smaller
    source feeds and four destination lists.  ``pool.v4_hosts[0]`` lands in
    the big list (the dropped packet's source)."""
    main: list[int] = []
    feeds: list[list[int]] = [[] for _ in range(6)]
    dsts: list[list[int]] = [[] for _ in range(4)]
    for i, a in enumerate(pool.v4_hosts):
        r = i % 20
        if r < 16:
            main.append(a)
        elif r < 18:
            feeds[(i // 20) % 6].append(a)
        else:
            dsts[(i // 20) % 4].append(a)
    nets: list[list[int]] = [[] for _ in range(7)]
    for j, n in enumerate(pool.v4_nets):
        nets[j % 7].append(n)
    v6n: list[list[tuple[int, int]]] = [[] for _ in range(7)]
    for j, n in enumerate(pool.v6_nets):
        v6n[j % 7].append(n)
    rules = [Rule("blocklist-src", Action.DROP,
                  src=aset(main, nets[0], v6n[0], pool.v6_hosts))]
    for k in range(6):
        rules.append(Rule(f"feed-src-{k}", Action.DROP, src=aset(feeds[k], nets[k + 1], v6n[k + 1])))
    for k in range(4):
        rules.append(Rule(f"blocklist-dst-{k}", Action.DROP, dst=aset(dsts[k])))
    return rules


def breakdown_steps() -> list[tuple[str, list[Rule], layout.Verdict | None]]:
    """Rule sets that add one kind of lookup at a time: (label, rules, expected verdict).

    The first step leaves the interface disabled (no verdict is counted).
    """
    V = layout.Verdict
    host = aset([0x01020304])
    net = aset(v4_nets=[0x05060700])
    both = aset([0x01020304], [0x05060700])
    return [
        ("interface not enabled: state + iface_cfg, then XDP_PASS", [], None),
        ("0 rules: + parse, bank, proto/sport/dport masks, verdict counter", [], V.PASS_DEFAULT),
        ("1 rule, src /32: + exact hash lookup", [Rule("h", Action.DROP, src=host)], V.PASS_DEFAULT),
        ("1 rule, src /24: + LPM trie lookup", [Rule("n", Action.DROP, src=net)], V.PASS_DEFAULT),
        ("1 rule, src /32 and /24: hash + trie", [Rule("b", Action.DROP, src=both)], V.PASS_DEFAULT),
        ("2 rules, src and dst /32 and /24: 2 hashes + 2 tries",
         [Rule("s", Action.DROP, src=both), Rule("d", Action.DROP, dst=both)], V.PASS_DEFAULT),
    ]


# --------------------------------------------------------------- images


def config_of(rules: list[Rule]) -> Config:
    return Config(rules=tuple(rules), interfaces=(Interface("lo"),))


def image_of(cfg: Config, enabled: bool = True) -> tables.BankImage:
    """The bank image of ``cfg``, the test-run interface enabled (or not: nothing is counted)."""
    slots = assign_slots([r.name for r in cfg.rules], {}, [], layout.MAX_RULE_SLOTS)
    ifaces = tables.iface_entries(cfg, {"lo": TEST_IFINDEX}, {"lo": IFACE_SLOT}) if enabled else []
    return tables.build_image(cfg, slots, ifaces)
