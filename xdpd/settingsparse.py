"""The ``settings:`` section: each key's value checked, with where it was set.

The values are not turned into :class:`model.Settings` here: settings may be
spread over several files, and :mod:`xdpd.config` merges them (and reports a
setting made twice) before building one.
"""

from __future__ import annotations

import math
from typing import Any

from yaml.nodes import Node, ScalarNode

from xdpd.model import Origin
from xdpd.yamldoc import INVALID, TAG, Doc, kind

MAX_ADDRESSES_LIMIT = 1 << 24
CAPACITY_LIMITS = {"max_addresses": MAX_ADDRESSES_LIMIT, "max_limit_sources": 1 << 24, "max_bans": 1 << 24}
"""The settings that size a BPF map, and their largest value."""
SETTINGS_KEYS = ("log_interval", "check_interval", "detach_on_stop", *CAPACITY_LIMITS)


def parse_settings(doc: Doc, node: Node) -> dict[str, tuple[Any, Origin]]:
    """Every valid setting of one file -> (value, origin of its key)."""
    fields = doc.mapping(node, "'settings'", SETTINGS_KEYS) or {}
    parsers = {
        "log_interval": _seconds,
        "check_interval": _seconds,
        "detach_on_stop": _detach_on_stop,
        **dict.fromkeys(CAPACITY_LIMITS, _capacity),
    }
    out: dict[str, tuple[Any, Origin]] = {}
    for key, (key_node, value_node) in fields.items():
        value = parsers[key](doc, value_node, key)
        if value is not INVALID:
            out[key] = (value, doc.origin(key_node))
    return out


def _seconds(doc: Doc, node: Node, key: str) -> Any:
    """A finite number of seconds > 0, as a float (log_interval, check_interval)."""
    if isinstance(node, ScalarNode) and node.tag in (TAG + "int", TAG + "float"):
        value = doc.construct(node)
        if value is INVALID:
            return value
        if math.isfinite(value) and value > 0:
            return float(value)
        doc.error(node, f"{key} must be a number of seconds > 0, got {node.value}")
        return INVALID
    doc.error(node, f"{key} must be a number of seconds > 0, got {kind(node)}")
    return INVALID


def _detach_on_stop(doc: Doc, node: Node, _key: str) -> Any:
    return doc.boolean(node, "detach_on_stop")


def _capacity(doc: Doc, node: Node, key: str) -> Any:
    """An integer 1 to the key's :data:`CAPACITY_LIMITS` (max_addresses, max_limit_sources, max_bans)."""
    bound = CAPACITY_LIMITS[key]
    expected = f"{key} must be an integer 1-{bound}"
    if not (isinstance(node, ScalarNode) and node.tag == TAG + "int"):
        doc.error(node, f"{expected}, got {kind(node)}")
        return INVALID
    value = doc.construct(node)
    if value is not INVALID and not 1 <= value <= bound:
        doc.error(node, f"{expected}, got {value}")
        return INVALID
    return value
