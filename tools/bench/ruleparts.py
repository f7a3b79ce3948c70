"""A benchmark rule's parts as text, for the configs of the filters the line-rate benchmark compares.

xdpd (YAML and list files), nftables and iptables with ipset are given the
same :class:`xdpd.model.Rule` objects (:mod:`tools.bench.rulesets`); each
renderer writes its own syntax from the parts here, so the three configs
cannot drift apart in what they hold.  Only what the benchmark's rule sets
use is supported (addresses, protocols, ports; drop, pass, count): any other
field raises :class:`Unsupported` rather than being silently left out, which
would make the other filter look cheaper than it is.
"""

from __future__ import annotations

import dataclasses
import functools
import socket
from typing import Iterator

from xdpd.model import PROTO_NAMES, Action, AddrSet, PortRange, Rule

FAMILIES = (4, 6)
_NAMES = {number: name for name, number in PROTO_NAMES.items()}
_SUPPORTED = {"name", "action", "src", "dst", "protos", "src_ports", "dst_ports", "origin"}


class Unsupported(ValueError):
    """A rule uses a field the other filters' renderers do not translate."""


def check(rule: Rule) -> None:
    """Raise :class:`Unsupported` unless ``rule`` uses only addresses, protocols, ports and drop/pass/count."""
    if rule.action not in (Action.DROP, Action.PASS, Action.COUNT):
        raise Unsupported(f"rule {rule.name}: action {rule.action.value}")
    for name in rule.__dataclass_fields__:
        value = getattr(rule, name)
        if name not in _SUPPORTED and value not in (None, ()):
            raise Unsupported(f"rule {rule.name}: field {name}")


@functools.lru_cache(maxsize=128)
def cidrs(addrs: AddrSet | None, family: int) -> tuple[str, ...]:
    """The addresses of one family as text: hosts bare, prefixes as ``net/len``.

    Cached: the million-address set is rendered once for all three filters
    (an AddrSet is frozen and hashable; bytes cache their hash).
    """
    if addrs is None:
        return ()
    if family == 4:
        exact, width, prefixes, af = addrs.v4_exact, 4, addrs.v4_prefixes, socket.AF_INET
    else:
        exact, width, prefixes, af = addrs.v6_exact, 16, addrs.v6_prefixes, socket.AF_INET6
    hosts = [socket.inet_ntop(af, exact[i:i + width]) for i in range(0, len(exact), width)]
    return tuple(hosts + [f"{socket.inet_ntop(af, net)}/{plen}" for net, plen in prefixes])


def has_prefix(addrs: AddrSet | None, family: int) -> bool:
    """Whether the family's part holds a prefix (not only hosts): nftables then needs an interval set."""
    if addrs is None:
        return False
    return bool(addrs.v4_prefixes if family == 4 else addrs.v6_prefixes)


def families(rule: Rule) -> list[int | None]:
    """The address families the rule has to be written for: ``[None]`` when it names no address.

    A rule with both ``src`` and ``dst`` matches only where both have
    addresses of the family; a family missing from a present field matches
    nothing, so it is left out.
    """
    fields = [f for f in (rule.src, rule.dst) if f is not None]
    if not fields:
        return [None]
    return [fam for fam in FAMILIES if all(cidrs(f, fam) for f in fields)]


def address_fields(rule: Rule, index: int, family: int) -> Iterator[tuple[str, tuple[str, ...], str | None]]:
    """``(direction, addresses, set name)`` for the rule's ``src`` and ``dst`` in one family.

    The set name (``r<index>_<direction><family>``) is None for a single
    address, which nftables and iptables take literally; more go into a
    named set (nftables) or an ipset.
    """
    for direction, addrs in (("src", rule.src), ("dst", rule.dst)):
        if addrs is not None:
            items = cidrs(addrs, family)
            yield direction, items, None if len(items) == 1 else f"r{index}_{direction}{family}"


def proto_name(number: int) -> str:
    """``tcp`` for 6 (the names xdpd's config accepts), else the number."""
    return _NAMES.get(number, str(number))


def port_items(ranges: tuple[PortRange, ...] | None, sep: str = "-") -> list[str]:
    """``["53", "6000-6063"]``: single ports bare, ranges joined by ``sep``."""
    return [str(r.lo) if r.lo == r.hi else f"{r.lo}{sep}{r.hi}" for r in ranges or ()]


def with_host(rule: Rule, address: str) -> Rule:
    """``rule`` with one more IPv4 source host (kept sorted and unique, as AddrSet requires)."""
    src = rule.src or AddrSet()
    packed = socket.inet_pton(socket.AF_INET, address)
    hosts = {src.v4_exact[i:i + 4] for i in range(0, len(src.v4_exact), 4)} | {packed}
    return dataclasses.replace(rule, src=dataclasses.replace(src, v4_exact=b"".join(sorted(hosts))))
