"""The protocol fields of a rule: ``proto``, ``src_port``/``dst_port``, and that they agree."""

from __future__ import annotations

import re

from yaml.nodes import Node

from xdpd.model import PORT_PROTOS, PROTO_NAMES, PortRange
from xdpd.problems import show
from xdpd.yamldoc import Doc, Fields, suggest

PORT_KEYS = ("src_port", "dst_port")
_PORT_RE = re.compile(r"([0-9]+)(?:\s*-\s*([0-9]+))?", re.ASCII)
_NUMBER_RE = re.compile(r"[0-9]+", re.ASCII)


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
    if _NUMBER_RE.fullmatch(text):
        if int(text) <= 255:
            return int(text)
        doc.error(node, f"protocol number {text} is out of range 0-255")
        return None
    number = PROTO_NAMES.get(text.lower())
    if number is None:
        names = list(PROTO_NAMES)
        doc.error(node, f"unknown protocol {show(text)}" + suggest(text, names) + " (or a number 0-255)")
    return number


def parse_ports(doc: Doc, node: Node, key: str) -> tuple[PortRange, ...] | None:
    """Ports and ranges, sorted with overlapping and adjacent ranges merged."""
    ranges: list[PortRange] = []
    ok = True
    for item in doc.items(node, key) or ():
        port_range = _port_range(doc, item)
        ok = ok and port_range is not None
        if port_range is not None:
            ranges.append(port_range)
    if not ok or not ranges:
        return None
    return _merge_ranges(ranges)


def _port_range(doc: Doc, node: Node) -> PortRange | None:
    text = doc.item_text(node, "port")
    if text is None:
        return None
    match = _PORT_RE.fullmatch(text)
    if not match:
        doc.error(node, f"bad port {show(text)}; expected a number 0-65535 or a range like '1000-2000'")
        return None
    lo = int(match.group(1))
    hi = int(match.group(2)) if match.group(2) is not None else lo
    for port in (lo, hi):
        if port > 65535:
            doc.error(node, f"port {port} is out of range 0-65535")
            return None
    if lo > hi:
        doc.error(node, f"port range {show(text)} is reversed (write {hi}-{lo})")
        return None
    return PortRange(lo, hi)


def _merge_ranges(ranges: list[PortRange]) -> tuple[PortRange, ...]:
    merged: list[PortRange] = []
    for current in sorted(ranges):
        if merged and current.lo <= merged[-1].hi + 1:
            last = merged[-1]
            merged[-1] = PortRange(last.lo, max(last.hi, current.hi))
        else:
            merged.append(current)
    return tuple(merged)


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
