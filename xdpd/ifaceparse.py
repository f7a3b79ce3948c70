"""The ``interfaces:`` section, and what the kernel accepts as an interface name."""

from __future__ import annotations

from collections.abc import Iterator

from yaml.nodes import Node

from xdpd.model import Default, Interface, Mode, Origin
from xdpd.problems import show
from xdpd.yamldoc import Doc

IFNAMSIZ = 16
"""Linux interface names are at most IFNAMSIZ - 1 bytes."""
INTERFACE_KEYS = ("mode", "default", "observe")


def parse_interfaces(doc: Doc, node: Node) -> Iterator[tuple[str, Origin, Interface | None]]:
    """Yield every named interface, also invalid ones (for duplicate checks)."""
    fields = doc.mapping(node, "'interfaces'", None, key_what="interface name")
    for name, (key_node, value_node) in (fields or {}).items():
        origin = doc.origin(key_node)
        start = len(doc.problems)
        problem = _ifname_problem(name)
        if problem:
            doc.error(key_node, problem)
        options = doc.mapping(value_node, f"interface {show(name)}", INTERFACE_KEYS)
        mode, default = Mode.AUTO, Default.PASS
        if options and "mode" in options:
            mode = doc.choice(options["mode"][1], "mode", Mode) or mode
        if options and "default" in options:
            default = doc.choice(options["default"][1], "default", Default) or default
        # observe: decide and count as usual, pass what would be dropped.
        observe = doc.boolean(options["observe"][1], "observe") is True if options and "observe" in options \
            else False
        ok = len(doc.problems) == start
        yield name, origin, Interface(name, mode, default, observe, origin=origin) if ok else None


def _ifname_problem(name: str) -> str | None:
    """Why the kernel would refuse ``name`` as an interface name (dev_valid_name)."""
    if not name:
        return "interface name is empty"
    if len(name.encode()) >= IFNAMSIZ:
        return f"interface name {show(name)} is too long (at most {IFNAMSIZ - 1} bytes)"
    if name in (".", ".."):
        return f"{show(name)} is not a valid interface name"
    if any(c in "/:\0" or c.isspace() for c in name):
        return f"interface name {show(name)} must not contain '/', ':' or whitespace"
    return None
