"""Numbers and ranges of numbers in rule fields: ports, TTL, length, VLAN id, ICMP code.

Every such field has the same forms (a number, a range ``"lo-hi"``, or a list
of these) and the same problems (not a number, out of range, a reversed
range); only what a number is called and its largest value differ, and those
are a :class:`Numbers`.  Ranges come out sorted, with overlapping and
adjacent ones merged, so two spellings of the same set compare equal.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from yaml.nodes import Node

from xdpd.model import PortRange
from xdpd.problems import show
from xdpd.yamldoc import Doc

_RANGE_RE = re.compile(r"([0-9]+)(?:\s*-\s*([0-9]+))?", re.ASCII)
NUMBER_RE = re.compile(r"[0-9]+", re.ASCII)
"""A decimal number as written (no sign, no 0x, no exponent)."""


@dataclass(frozen=True)
class Numbers:
    """What the numbers of one field are called in messages, and their bound."""

    noun: str
    bound: int
    example: str
    """A range shown in the message for something that is not a number."""


PORT = Numbers("port", 65535, "1000-2000")
TTL = Numbers("TTL", 255, "0-2")
LENGTH = Numbers("length", 65535, "1400-65535")
VLAN = Numbers("VLAN id", 4095, "100-199")
ICMP_CODE = Numbers("ICMP code", 255, "0-3")


def in_bound(doc: Doc, node: Node, value: int, noun: str, bound: int) -> bool:
    """Whether ``0 <= value <= bound``; if not, says so at ``node``."""
    if value <= bound:
        return True
    doc.error(node, f"{noun} {value} is out of range 0-{bound}")
    return False


def parse_ranges(doc: Doc, node: Node, key: str, numbers: Numbers) -> tuple[PortRange, ...] | None:
    """Numbers and ranges, sorted, overlapping and adjacent ones merged; None if any item was wrong."""
    ranges: list[PortRange] = []
    ok = True
    for item in doc.items(node, key) or ():
        one = _range(doc, item, numbers)
        ok = ok and one is not None
        if one is not None:
            ranges.append(one)
    if not ok or not ranges:
        return None
    return merge_ranges(ranges)


def _range(doc: Doc, node: Node, numbers: Numbers) -> PortRange | None:
    text = doc.item_text(node, numbers.noun)
    if text is None:
        return None
    match = _RANGE_RE.fullmatch(text)
    if not match:
        doc.error(
            node,
            f"bad {numbers.noun} {show(text)}; expected a number 0-{numbers.bound} "
            f"or a range like {show(numbers.example)}",
        )
        return None
    lo = int(match.group(1))
    hi = int(match.group(2)) if match.group(2) is not None else lo
    if not all(in_bound(doc, node, value, numbers.noun, numbers.bound) for value in (lo, hi)):
        return None
    if lo > hi:
        doc.error(node, f"{numbers.noun} range {show(text)} is reversed (write {hi}-{lo})")
        return None
    return PortRange(lo, hi)


def merge_ranges(ranges: list[PortRange]) -> tuple[PortRange, ...]:
    """Sorted, with overlapping and adjacent ranges merged into one."""
    merged: list[PortRange] = []
    for current in sorted(ranges):
        if merged and current.lo <= merged[-1].hi + 1:
            last = merged[-1]
            merged[-1] = PortRange(last.lo, max(last.hi, current.hi))
        else:
            merged.append(current)
    return tuple(merged)
