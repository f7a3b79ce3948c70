"""The ``settings:`` section: each key's value checked, with where it was set.

The values are not turned into :class:`model.Settings` here: settings may be
spread over several files, and :mod:`xdpd.config` merges them (and reports a
setting made twice) before building one.
"""

from __future__ import annotations

import ipaddress
import math
from typing import Any

from yaml.nodes import Node, ScalarNode

from xdpd.model import Origin
from xdpd.yamldoc import INVALID, TAG, Doc, kind

MAX_ADDRESSES_LIMIT = 1 << 24
CAPACITY_LIMITS = {"max_addresses": MAX_ADDRESSES_LIMIT, "max_limit_sources": 1 << 24, "max_bans": 1 << 24}
"""The settings that size a BPF map, and their largest value."""
SETTINGS_KEYS = ("log_interval", "check_interval", "detach_on_stop", *CAPACITY_LIMITS,
                 "metrics_listen", "metrics_textfile", "strict_permissions")


def parse_settings(doc: Doc, node: Node) -> dict[str, tuple[Any, Origin]]:
    """Every valid setting of one file -> (value, origin of its key)."""
    fields = doc.mapping(node, "'settings'", SETTINGS_KEYS) or {}
    parsers = {
        "log_interval": _seconds,
        "check_interval": _seconds,
        "detach_on_stop": _detach_on_stop,
        **dict.fromkeys(CAPACITY_LIMITS, _capacity),
        "metrics_listen": _listen,
        "metrics_textfile": _textfile,
        "strict_permissions": lambda doc, node, key: doc.boolean(node, key),
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


def _listen(doc: Doc, node: Node, key: str) -> Any:
    """``HOST:PORT`` with an IP literal host (``[::1]:9436`` for IPv6): where
    ``/metrics`` is served.  A name would make the daemon depend on DNS, and
    the unit's IP allow-list is by address."""
    text = doc.string(node, key)
    if text is None:
        return INVALID
    try:
        return parse_listen(text)
    except ValueError as e:
        doc.error(node, f"{key}: {e}")
        return INVALID


def parse_listen(text: str) -> tuple[str, int]:
    """``"127.0.0.1:9436"`` -> ``("127.0.0.1", 9436)``; ``"[::1]:9436"`` -> ``("::1", 9436)``."""
    example = "like '127.0.0.1:9436' or '[::1]:9436'"
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise ValueError(f"{text!r} is not HOST:PORT, {example}")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
        if ":" not in host:
            raise ValueError(f"{text!r}: brackets are for IPv6 addresses, {example}")
    elif ":" in host:
        raise ValueError(f"{text!r}: write an IPv6 address in brackets, {example}")
    try:
        ipaddress.ip_address(host)
    except ValueError:
        raise ValueError(f"{text!r}: the host must be an IP address, {example}") from None
    if not 1 <= int(port) <= 65535:
        raise ValueError(f"{text!r}: port must be 1-65535")
    return host, int(port)


def _textfile(doc: Doc, node: Node, key: str) -> Any:
    """An absolute path ending in ``.prom`` (node_exporter's textfile collector reads only those)."""
    text = doc.string(node, key)
    if text is None:
        return INVALID
    if not text.startswith("/") or not text.endswith(".prom") or "\0" in text:
        doc.error(node, f"{key} must be an absolute path ending in .prom "
                        f"(node_exporter reads only those), got {text!r}")
        return INVALID
    return text


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
