"""The header fields of a rule beyond addresses and ports: ``tcp_flags``,
``icmp_type``, ``icmp_code``, ``ttl``, ``length`` and ``vlan``.

A field that cannot match with the rule's ``proto`` is an error at its key,
not a rule that silently never matches: ``tcp_flags`` needs ``proto: tcp``
alone, ``icmp_type`` needs ``proto`` to be icmp and/or icmpv6 alone, and
``icmp_code`` needs ``icmp_type``.  When ``proto`` itself was wrong, that is
reported once and these checks stay quiet.
"""

from __future__ import annotations

from typing import Any

from yaml.nodes import Node, ScalarNode

from xdpd.icmpnames import FAMILY_NAMES, FAMILY_OF_PROTO, family_list, type_names, type_number
from xdpd.model import ICMP_PROTOS, TCP_FLAG_BITS, TcpFlags
from xdpd.problems import show
from xdpd.ruleranges import ICMP_CODE, LENGTH, NUMBER_RE, TTL, VLAN, in_bound, parse_ranges
from xdpd.yamldoc import TAG, Doc, Fields, suggest

MATCH_KEYS = ("tcp_flags", "icmp_type", "icmp_code", "ttl", "length", "vlan")
_RANGE_FIELDS = {"icmp_code": ("icmp_codes", ICMP_CODE), "ttl": ("ttl", TTL),
                 "length": ("length", LENGTH), "vlan": ("vlans", VLAN)}  # fmt: skip
_ALL_FAMILIES = frozenset(FAMILY_NAMES)


def parse_match_fields(doc: Doc, fields: Fields, protos: frozenset[int] | None) -> dict[str, Any]:
    """The header fields of one rule as :class:`model.Rule` keyword arguments (None: absent or wrong).

    ``protos`` is the parsed ``proto`` (None if absent or wrong; ``fields``
    tells which).
    """
    proto_wrong = "proto" in fields and protos is None
    out: dict[str, Any] = {"tcp_flags": None, "icmp_types": None}
    for key, (attr, numbers) in _RANGE_FIELDS.items():
        out[attr] = parse_ranges(doc, fields[key][1], key, numbers) if key in fields else None
    if "tcp_flags" in fields:
        out["tcp_flags"] = _tcp_flags(doc, fields["tcp_flags"][1])
        if not proto_wrong and protos != {6}:
            doc.error(fields["tcp_flags"][0], "tcp_flags needs proto: tcp (and no other protocol)")
    if "icmp_type" in fields:
        icmp_ok = bool(protos) and protos is not None and protos <= ICMP_PROTOS
        families = frozenset(FAMILY_OF_PROTO[p] for p in protos) if icmp_ok and protos else _ALL_FAMILIES
        out["icmp_types"] = _icmp_types(doc, fields["icmp_type"][1], families)
        if not proto_wrong and not icmp_ok:
            doc.error(fields["icmp_type"][0],
                      "icmp_type needs proto: icmp, icmpv6 or both (and no other protocol)")
    elif "icmp_code" in fields:
        doc.error(fields["icmp_code"][0], "icmp_code needs icmp_type in the same rule")
    return out


def _tcp_flags(doc: Doc, node: Node) -> TcpFlags | None:
    """``"syn,!ack"``: mask = every flag named, value = the ones named without '!'."""
    if isinstance(node, ScalarNode) and node.tag.startswith("!") and not node.tag.startswith(TAG):
        doc.error(node, f"tcp_flags must be a string: quote it (YAML reads {show(node.tag)} as a tag)")
        return None
    text = doc.string(node, "tcp_flags")
    if text is None:
        return None
    if not text.strip():
        doc.error(node, "tcp_flags is empty; write flags like 'syn,!ack', or remove the key")
        return None
    seen: dict[str, bool] = {}
    ok = True
    for item in text.split(","):
        problem = _flag_problem(item.strip(), seen, text)
        if problem:
            doc.error(node, problem)
            ok = False
    if not ok:
        return None
    mask = sum(TCP_FLAG_BITS[name] for name in seen)
    value = sum(TCP_FLAG_BITS[name] for name, clear in seen.items() if not clear)
    return TcpFlags(mask=mask, value=value)


def _flag_problem(item: str, seen: dict[str, bool], text: str) -> str | None:
    """Record one ``name`` or ``!name`` of tcp_flags in ``seen``, or say what is wrong with it."""
    clear = item.startswith("!")
    name = item[1:].strip().lower() if clear else item.lower()
    if not name:
        return f"empty flag in tcp_flags {show(text)}; expected names separated by ','"
    if name not in TCP_FLAG_BITS:
        return f"unknown TCP flag {show(name)}" + suggest(name, list(TCP_FLAG_BITS))
    if name in seen:
        twice = "named twice" if seen[name] == clear else "both set and clear"
        return f"TCP flag {show(name)} is {twice} in tcp_flags {show(text)}"
    seen[name] = clear
    return None


def _icmp_types(doc: Doc, node: Node, families: frozenset[int]) -> frozenset[tuple[int, int]] | None:
    """Names and numbers -> (family, type) pairs; None if any item was wrong."""
    pairs: set[tuple[int, int]] = set()
    ok = True
    for item in doc.items(node, "icmp_type") or ():
        found = _icmp_type(doc, item, families)
        ok = ok and found is not None
        pairs.update(found or ())
    return frozenset(pairs) if ok and pairs else None


def _icmp_type(doc: Doc, node: Node, families: frozenset[int]) -> set[tuple[int, int]] | None:
    """One name (for each family it exists in) or number (for every family)."""
    text = doc.item_text(node, "ICMP type")
    if text is None:
        return None
    if NUMBER_RE.fullmatch(text):
        number = int(text)
        return {(f, number) for f in families} if in_bound(doc, node, number, "ICMP type", 255) else None
    found = {(f, n) for f in families if (n := type_number(f, text)) is not None}
    if found:
        return found
    elsewhere = frozenset(f for f in _ALL_FAMILIES - families if type_number(f, text) is not None)
    if elsewhere:
        doc.error(node, f"ICMP type {show(text)} does not exist for {family_list(families)} "
                  f"(it is an {family_list(elsewhere)} type)")
    else:
        names = type_names(families)
        doc.error(node, f"unknown {family_list(families)} type {show(text)}" + suggest(text, names)
                  + " (or a number 0-255)")
    return None
