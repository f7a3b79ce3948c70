"""One reading of every pinned counter, for :func:`xdpd.rates.rate_rows`.

Lighter than :func:`xdpd.status.read_status`, which a live view would call
every second: no netlink and no scan of the ban table (which can hold a
million entries during the very incident ``xdpd top`` is for), only the
slot bookkeeping, the active rule order and the per-CPU counters.  Like
``status`` it needs no daemon: everything lives in the pinned maps.

The maps are opened afresh for each reading, so a daemon restarted with a
new map layout in between is simply read from its new maps (its counters
start from zero: :mod:`xdpd.rates` shows that as ``reset`` or ``new``).
"""

from __future__ import annotations

import os
import time

from . import layout
from .maps import PinnedMaps
from .pins import current_maps_dir
from .rates import IfaceReading, RuleReading, Snapshot


class NothingPinned(Exception):
    """No (usable) maps under the pin dir: the message says which dir."""


def read_snapshot(pin_dir: str) -> Snapshot:
    """Every interface's and active rule's counters, with the time they were read.

    Raises :class:`NothingPinned`, :class:`PermissionError` (not root), or
    :class:`xdpd.maps.LayoutMismatch`.
    """
    try:
        os.listdir(pin_dir)  # PermissionError for a user who may not look (status would say "nothing")
    except (FileNotFoundError, NotADirectoryError):
        raise NothingPinned(f"nothing pinned under {pin_dir}") from None
    maps_dir = current_maps_dir(pin_dir)
    if maps_dir is None:
        raise NothingPinned(f"nothing pinned under {pin_dir}")
    maps = PinnedMaps(maps_dir)
    try:
        bank = maps.active_bank()
        ifaces = sorted(maps.iface_slots().items(), key=lambda x: x[1].name)
        owners = maps.rule_slots()
        order = maps.rule_order(bank)
        # The counters last: the time stamp brackets only them.
        t0 = time.monotonic()
        interfaces = tuple(
            IfaceReading(iface.name, slot, {v.label: maps.counter("iface_stats", slot * layout.NVERDICTS + v)
                                            for v in layout.Verdict})
            for slot, iface in ifaces)
        rules = []
        for pos, r in enumerate(order, 1):
            name = owners[r.slot].name if r.slot in owners else f"slot{r.slot}"
            limited = maps.counter("limit_stats", r.slot) if r.action == layout.ACT_LIMIT else None
            rules.append(RuleReading(name, r.slot, pos, layout.ACTION_NAMES.get(r.action, str(r.action)),
                                     maps.counter("rule_stats", r.slot), limited))
        t1 = time.monotonic()
    finally:
        maps.close()
    return Snapshot((t0 + t1) / 2, interfaces, tuple(rules))
