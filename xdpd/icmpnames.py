"""The standard ICMP and ICMPv6 type names, per family.

The same name means different numbers in the two families (echo-request is
8 in ICMP and 128 in ICMPv6), so a name in ``icmp_type`` resolves once for
each ICMP family the rule's ``proto`` names.  Families are 4 (``icmp``,
protocol 1, RFC 792) and 6 (``icmpv6``, protocol 58, RFC 4443 and 4861).
"""

from __future__ import annotations

FAMILY_OF_PROTO: dict[int, int] = {1: 4, 58: 6}
"""ICMP protocol number -> family."""
FAMILY_NAMES: dict[int, str] = {4: "icmp", 6: "icmpv6"}
"""Family -> the protocol name a user writes in ``proto``."""

ICMP_TYPES: dict[int, dict[str, int]] = {
    4: {
        "echo-reply": 0,
        "destination-unreachable": 3,
        "source-quench": 4,
        "redirect": 5,
        "echo-request": 8,
        "router-advertisement": 9,
        "router-solicitation": 10,
        "time-exceeded": 11,
        "parameter-problem": 12,
        "timestamp-request": 13,
        "timestamp-reply": 14,
    },
    6: {
        "destination-unreachable": 1,
        "packet-too-big": 2,
        "time-exceeded": 3,
        "parameter-problem": 4,
        "echo-request": 128,
        "echo-reply": 129,
        "router-solicitation": 133,
        "router-advertisement": 134,
        "neighbour-solicitation": 135,
        "neighbour-advertisement": 136,
        "redirect": 137,
    },
}

_ALIASES = {
    "neighbor-solicitation": "neighbour-solicitation",
    "neighbor-advertisement": "neighbour-advertisement",
}
"""Other accepted spellings (US English)."""


def type_number(family: int, name: str) -> int | None:
    """The type ``name`` (any case, either spelling) has in ``family``, or None."""
    name = name.lower()
    return ICMP_TYPES[family].get(_ALIASES.get(name, name))


def type_names(families: frozenset[int]) -> list[str]:
    """The names valid in any of ``families``, in table order, each once."""
    return list(dict.fromkeys(name for family in sorted(families) for name in ICMP_TYPES[family]))


def family_list(families: frozenset[int]) -> str:
    """'icmp', 'icmpv6' or 'icmp or icmpv6', for messages."""
    return " or ".join(FAMILY_NAMES[family] for family in sorted(families))
