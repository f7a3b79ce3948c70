"""The benchmark's rule set in nftables: a netdev ingress chain on the victim's veth, loaded with ``nft -f``.

The line-rate benchmark compares xdpd with what an operator would write in
nftables for the same rules (:mod:`tools.bench.ruleparts`): one rule per
xdpd rule and address family, in the same order, each with a ``counter``
(xdpd counts every rule too) and the rule's name as its comment
(read over netlink, :mod:`tools.bench.nftcounters`); addresses
of a rule that has more than one in a named set of their own, an interval
set (``flags interval; auto-merge``) where the set holds prefixes, a hash
set where it holds only hosts.  The last rule counts what no rule decided
(xdpd's ``pass_default``).

The netdev ingress hook runs in ``__netif_receive_skb_core``: after the
veth's NAPI has built an skb (with GRO on), before IP.  Everything happens
inside the bed's victim namespace (``ip netns exec``); the table goes with
the namespace, and :func:`remove` deletes it before the next scenario.
"""

from __future__ import annotations

import tempfile
import time

from tests.testbed.netbed import NetBed
from tools.bench import nftcounters
from tools.bench.ruleparts import address_fields, check, families, has_prefix, port_items, proto_name
from xdpd.model import Action, Rule

TABLE = "xdpd_bench"
DEFAULT = "default"
"""The comment of the last rule, which counts what no rule decided."""
NFPROTO_NETDEV = 5
_VERDICT = {Action.DROP: " drop", Action.PASS: " accept", Action.COUNT: ""}


def _items(items: list[str]) -> str:
    return items[0] if len(items) == 1 else "{ " + ", ".join(items) + " }"


def script(rules: list[Rule], dev: str) -> str:
    """The ``nft -f`` input: table ``netdev xdpd_bench`` with its sets and the ingress chain on ``dev``."""
    sets: list[str] = []
    chain: list[str] = []
    for i, rule in enumerate(rules):
        check(rule)
        for fam in families(rule):
            parts = []
            for direction, items, name in address_fields(rule, i, fam):
                match = f"ip{'6' if fam == 6 else ''} {direction[0]}addr"
                if name is None:
                    parts.append(f"{match} {items[0]}")
                    continue
                addrs = rule.src if direction == "src" else rule.dst
                flags = "\n    flags interval\n    auto-merge" if has_prefix(addrs, fam) else ""
                sets.append(f"  set {name} {{\n    type ipv{fam}_addr{flags}\n"
                            f"    elements = {{ {', '.join(items)} }}\n  }}")
                parts.append(f"{match} @{name}")
            if rule.protos:
                parts.append(f"meta l4proto {_items([proto_name(p) for p in sorted(rule.protos)])}")
            if rule.src_ports:
                parts.append(f"th sport {_items(port_items(rule.src_ports))}")
            if rule.dst_ports:
                parts.append(f"th dport {_items(port_items(rule.dst_ports))}")
            chain.append(f"    {' '.join(parts)} counter{_VERDICT[rule.action]} comment \"{rule.name}\"")
    chain.append(f"    counter comment \"{DEFAULT}\"")
    return (f"table netdev {TABLE} {{\n" + "\n".join(sets) + "\n"
            f"  chain ingress {{\n    type filter hook ingress device \"{dev}\" priority 0; policy accept;\n"
            + "\n".join(chain) + "\n  }\n}\n")


def load(bed: NetBed, text: str) -> float:
    """Load ``text`` with ``nft -f`` in the victim's namespace; return how long ``nft`` took (seconds)."""
    with tempfile.NamedTemporaryFile("w", prefix="xdpdt-nft-", suffix=".nft") as f:
        f.write(text)
        f.flush()
        t = time.perf_counter()
        proc = bed.run("victim", ["nft", "-f", f.name], timeout=600)
        seconds = time.perf_counter() - t
    if proc.returncode != 0:
        raise RuntimeError(f"nft -f failed: {proc.stderr.strip()[:2000]}")
    return seconds


def counters(bed: NetBed) -> dict[str, int]:
    """Packets counted per rule comment (a rule written for two families sums both), over netlink."""
    return nftcounters.rule_packets(bed.victim_ns, NFPROTO_NETDEV, TABLE)


def remove(bed: NetBed) -> None:
    """Delete the table (its sets and chain) from the victim's namespace."""
    bed.run("victim", ["nft", "delete", "table", "netdev", TABLE])
