"""Per-field match tables: for every value a header field can take, the mask
of the rules that accept it.

Pure.  :mod:`xdpd.tables` assembles these into a bank image; the program
reads one entry per field it needs (see the table at the top of
``bpf/xdpd.bpf.c``).  Rule ``i`` owns bit ``i``; a rule that does not name a
field ("wild") has its bit set in every entry of that field's table.
"""

from __future__ import annotations

from typing import Callable, Iterable, Sequence

from . import layout
from .model import PortRange, Rule


def bits(indexes: Iterable[int]) -> int:
    m = 0
    for i in indexes:
        m |= 1 << i
    return m


def wild(rules: Sequence[Rule], value_of: Callable[[Rule], object]) -> int:
    """The rules that do not name the field."""
    return bits(i for i, r in enumerate(rules) if value_of(r) is None)


def proto_table(rules: Sequence[Rule]) -> tuple[int, ...]:
    table = [0] * 256
    for i, r in enumerate(rules):
        bit = 1 << i
        for p in (range(256) if r.protos is None else r.protos):
            table[p] |= bit
    return tuple(table)


def restricted(table: tuple[int, ...], mask: int) -> tuple[int, ...]:
    """A table restricted to the rules in ``mask`` (ports of one protocol)."""
    return tuple(m & mask for m in table)


def range_table(rules: Sequence[Rule], ranges_of: Callable[[Rule], tuple[PortRange, ...] | None],
                size: int, absent_slot: bool = False) -> tuple[int, ...]:
    """Masks for the values ``0 .. size-1`` of a field given as ranges.

    With ``absent_slot``, one more entry for "the packet has no such value"
    (no ports, no VLAN tag): only the rules that do not name the field.
    Built from the range boundaries rather than value by value: 128 rules
    with full-range ports would otherwise cost millions of Python operations.
    """
    wild_bits = 0
    ranged: list[tuple[PortRange, int]] = []
    for i, r in enumerate(rules):
        ranges = ranges_of(r)
        if ranges is None:
            wild_bits |= 1 << i
        else:
            ranged.extend((pr, 1 << i) for pr in ranges)
    cuts = sorted({0, size} | {pr.lo for pr, _ in ranged} | {pr.hi + 1 for pr, _ in ranged})
    table: list[int] = []
    for lo, hi in zip(cuts, cuts[1:]):
        m = wild_bits
        for pr, bit in ranged:
            if pr.lo <= lo and hi - 1 <= pr.hi:
                m |= bit
        table.extend([m] * (hi - lo))
    if absent_slot:
        table.append(wild_bits)
    return tuple(table)


def port_table(rules: Sequence[Rule], ports_of: Callable[[Rule], tuple[PortRange, ...] | None]) -> tuple[int, ...]:
    """Ports 0..65535 plus the NO_PORT slot."""
    return range_table(rules, ports_of, layout.NO_PORT, absent_slot=True)


def longest_run(table: Sequence[int]) -> tuple[int, int, int]:
    """``(lo, hi, mask)`` of the longest run of equal entries (the first of equals).

    The program takes the mask of a value inside the run from the bank's
    settings instead of a lookup: the run is where most packets' values fall
    (TTL 3-255 beside a ``ttl: 0-2`` rule, lengths between the small and the
    jumbo rules).
    """
    best = (0, -1, 0)
    start = 0
    for i in range(1, len(table) + 1):
        if i == len(table) or table[i] != table[start]:
            if i - 1 - start > best[1] - best[0]:
                best = (start, i - 1, table[start])
            start = i
    return best


def tcp_flags_table(rules: Sequence[Rule]) -> tuple[int, ...]:
    """Masks for every value of the TCP flags byte."""
    table = []
    for flags in range(256):
        table.append(bits(i for i, r in enumerate(rules) if r.tcp_flags is None or r.tcp_flags.matches(flags)))
    return tuple(table)


def icmp_type_table(rules: Sequence[Rule]) -> tuple[int, ...]:
    """Masks for ICMP types 0..255, then ICMPv6 types 0..255."""
    table = []
    for family in (4, 6):
        for t in range(256):
            table.append(bits(i for i, r in enumerate(rules)
                              if r.icmp_types is None or (family, t) in r.icmp_types))
    return tuple(table)
