"""A rule's ``sample``: how many of the packets it matches per second the
program hands to the daemon, to be logged with their headers.

Any action may sample.  The rate is a packet rate in the syntax of
:mod:`xdpd.units` (``10/s``, ``30/m``); a byte rate means nothing here.  At
most :data:`MAX_SAMPLE_RATE` per second per rule: samples are log lines,
and a flood must not become a flood of the journal.
"""

from __future__ import annotations

from yaml.nodes import ScalarNode

from xdpd.model import LimitUnit
from xdpd.units import parse_rate
from xdpd.yamldoc import TAG, Doc, Fields, kind

SAMPLE_KEYS = ("sample",)
MAX_SAMPLE_RATE = 1000.0


def parse_sample(doc: Doc, fields: Fields) -> float | None:
    """Samples per second, or None: no ``sample`` key, or it was wrong (reported)."""
    if "sample" not in fields:
        return None
    node = fields["sample"][1]
    if not (isinstance(node, ScalarNode) and node.tag in (TAG + "str", TAG + "int", TAG + "float")):
        doc.error(node, f"sample must be a rate like '10/s', got {kind(node)}")
        return None
    try:
        rate, unit = parse_rate(str(node.value), what="sample")
    except ValueError as e:
        doc.error(node, str(e))
        return None
    if unit is not LimitUnit.PACKETS:
        doc.error(node, f"sample counts packets, not bytes: write a rate like '10/s', got {node.value!r}")
        return None
    if rate > MAX_SAMPLE_RATE:
        doc.error(node, f"sample {node.value!r} is more than {MAX_SAMPLE_RATE:g} per second: samples are "
                        "log lines; count the rest with the rule's counters")
        return None
    return rate
