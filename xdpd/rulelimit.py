"""A ``limit`` rule's ``rate``, ``burst``, ``per`` and ``ban`` -> :class:`model.Limit`.

The values' own syntax is :mod:`xdpd.units`'; this module adds what only
makes sense in a rule: the keys belong to ``action: limit`` alone, a byte
bucket must hold at least one full-size frame, and only a bucket of one's
own can get a source banned.  Whether ``rate`` is missing from a limit rule
is reported by :mod:`xdpd.ruleparse`, which knows every rule key (a
misspelt ``rat:`` was already reported with "did you mean 'rate'?").
"""

from __future__ import annotations

from yaml.nodes import Node, ScalarNode

from xdpd.model import Action, Limit, LimitPer, LimitUnit
from xdpd.units import MAX_DURATION, parse_duration, parse_rate
from xdpd.yamldoc import TAG, Doc, Fields, kind

LIMIT_KEYS = ("rate", "burst", "per", "ban")
MIN_BYTE_BURST = 1514
"""One full-size Ethernet frame (1500 bytes of IP and a 14-byte header): a
byte bucket that holds less could never pass such a frame, however idle."""
_NUMBER_TAGS = (TAG + "int", TAG + "float")


def parse_limit(doc: Doc, fields: Fields, action: Action | None) -> Limit | None:
    """The rule's :class:`Limit`, or None: not a limit rule, ``rate`` absent, or something was wrong.

    ``action`` is the parsed action (None if absent or wrong: then the keys'
    values are still checked, but not whether they fit the action).  Every
    mistake is reported, so a rule with problems never yields a Limit.
    """
    if action is not None and action is not Action.LIMIT:
        for key in LIMIT_KEYS:
            if key in fields:
                doc.error(fields[key][0], f"{key} needs action: limit")
    rate = _rate(doc, fields["rate"][1]) if "rate" in fields else None
    burst = _burst(doc, fields["burst"][1], rate) if "burst" in fields else None
    per = doc.choice(fields["per"][1], "per", LimitPer) if "per" in fields else LimitPer.SOURCE
    ban = _ban(doc, fields["ban"][1]) if "ban" in fields else None
    if "ban" in fields and per is LimitPer.RULE:
        doc.error(fields["ban"][0], "ban needs per: source (with per: rule everything the rule matches "
                  "shares one bucket, and banning whichever source tipped it over would ban innocents)")
    if action is not Action.LIMIT or rate is None or per is None:
        return None
    if "burst" not in fields:
        burst = _default_burst(*rate)
    if burst is None or ("ban" in fields and ban is None):
        return None
    return Limit(rate=rate[0], unit=rate[1], burst=burst, per=per, ban=ban)


def _rate(doc: Doc, node: Node) -> tuple[float, LimitUnit] | None:
    """``1000/s``, ``10mbit/s``...; a YAML number (``rate: 1000``) is read as its text, so it
    gets the same "write '1000/s'" as the string ``"1000"``."""
    if not (isinstance(node, ScalarNode) and node.tag in (TAG + "str", *_NUMBER_TAGS)):
        doc.error(node, f"rate must be a string like '1000/s' or '10mbit/s', got {kind(node)}")
        return None
    try:
        return parse_rate(str(node.value))
    except ValueError as exc:
        doc.error(node, str(exc))
        return None


def _default_burst(rate: float, unit: LimitUnit) -> int:
    """One second of the rate; for bytes at least one full-size frame."""
    burst = max(1, round(rate))
    return max(MIN_BYTE_BURST, burst) if unit is LimitUnit.BYTES else burst


def _burst(doc: Doc, node: Node, rate: tuple[float, LimitUnit] | None) -> int | None:
    """A positive integer of packets or (with a byte rate) bytes.

    With a byte rate it must hold one full-size frame; it must refill within
    :data:`units.MAX_DURATION`, which also keeps the XDP program's bucket
    arithmetic (nanoseconds in 64 bits) from overflowing.
    """
    expected = "burst must be a positive integer (packets, or bytes for a byte rate)"
    if not (isinstance(node, ScalarNode) and node.tag == TAG + "int"):
        doc.error(node, f"{expected}, got {kind(node)}")
        return None
    value = doc.construct(node)
    if not isinstance(value, int):  # INVALID, reported by construct
        return None
    if value < 1:
        doc.error(node, f"{expected}, got {value}")
        return None
    if rate is None:
        return value
    per_second, unit = rate
    if unit is LimitUnit.BYTES and value < MIN_BYTE_BURST:
        doc.error(node, f"burst {value} bytes is less than one full-size Ethernet frame "
                  f"({MIN_BYTE_BURST} bytes): no such frame could ever pass; use at least {MIN_BYTE_BURST}")
        return None
    if value > per_second * MAX_DURATION:  # not value / per_second: an int may be too big for a float
        doc.error(node, "burst takes more than 365 days to refill at this rate; use a smaller burst")
        return None
    return value


def _ban(doc: Doc, node: Node) -> float | None:
    """A duration (``60s``, ``10m``, ``1h``, ``2d``); a YAML number (``ban: 60``) is read as its
    text and so told to write ``60s``."""
    if not (isinstance(node, ScalarNode) and node.tag in (TAG + "str", *_NUMBER_TAGS)):
        doc.error(node, f"ban must be a duration like '60s', '10m' or '1h', got {kind(node)}")
        return None
    try:
        return parse_duration(str(node.value), what="ban")
    except ValueError as exc:
        doc.error(node, str(exc))
        return None
