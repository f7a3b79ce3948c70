"""The protocol fields of a rule: ``proto``, ``src_port``/``dst_port``, and that they agree."""

from __future__ import annotations

from yaml.nodes import Node

from xdpd.model import PORT_PROTOS, PROTO_NAMES, PortRange
from xdpd.problems import show
from xdpd.ruleranges import NUMBER_RE, PORT, in_bound, parse_ranges
from xdpd.yamldoc import Doc, Fields, suggest

PORT_KEYS = ("src_port", "dst_port")


def parse_protos(doc: Doc, node: Node) -> frozenset[int] | None:
    """Protocol names or numbers -> numbers; None if any item was wrong."""
    protos: set[int] = set()
    ok = True
    for item in doc.items(node, "proto") or ():
        proto = _proto(doc, item)
        ok = ok and proto is not None
        if proto is not None:
            protos.add(proto)
    return frozenset(protos) if ok and protos else None


def _proto(doc: Doc, node: Node) -> int | None:
    text = doc.item_text(node, "protocol")
    if text is None:
        return None
    if NUMBER_RE.fullmatch(text):
        return int(text) if in_bound(doc, node, int(text), "protocol number", 255) else None
    number = PROTO_NAMES.get(text.lower())
    if number is None:
        names = list(PROTO_NAMES)
        doc.error(node, f"unknown protocol {show(text)}" + suggest(text, names) + " (or a number 0-255)")
    return number


def parse_ports(doc: Doc, node: Node, key: str) -> tuple[PortRange, ...] | None:
    """Ports and ranges, sorted with overlapping and adjacent ranges merged."""
    return parse_ranges(doc, node, key, PORT)


def check_port_protos(
    doc: Doc,
    fields: Fields,
    ports: dict[str, tuple[PortRange, ...] | None],
    protos: frozenset[int] | None,
) -> None:
    """Ports only exist for TCP and UDP; a port match on ICMP would never hit."""
    if protos is None or protos & PORT_PROTOS:
        return
    for key, value in ports.items():
        if value is not None:
            doc.error(fields[key][0], f"{key} needs proto tcp or udp")
