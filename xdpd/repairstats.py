"""Drift repairs and fights per interface, kept in a small map pinned beside the filter.

``xdpd status`` is another process and reads only the pin dir, so what the
daemon's :class:`~xdpd.repairs.RepairLimiter` knows (how many repairs, how
many had to wait, whether an interface is being fought over) is written to
``<pin dir>/repairs-v1``: a BPF hash keyed by interface name.  The running
daemon is the one writer; it clears the map when it starts, so the numbers
are that daemon's (and, once it is gone, its last word).
"""

from __future__ import annotations

import ctypes as ct
import os
from typing import Mapping

from . import bpfsys, pins
from .repairs import RepairCount

PIN_NAME = "repairs-v1"
"""Under the pin dir.  The version names the value layout below."""
MAX_ENTRIES = 256
IFNAMSIZ = 16


class _Key(ct.Structure):
    _fields_ = [("name", ct.c_char * IFNAMSIZ)]


class _Value(ct.Structure):
    _fields_ = [("repairs", ct.c_uint64), ("deferred", ct.c_uint64), ("fighting", ct.c_uint64)]


_SHAPE = pins.SmallMap(bpfsys.BPF_MAP_TYPE_HASH, "xdpd_repairs", _Key, _Value, MAX_ENTRIES)


class RepairStats:
    """The pinned map: :meth:`write` replaces its contents with the limiter's counts."""

    def __init__(self, pin_dir: str) -> None:
        """Open ``<pin_dir>/repairs-v1`` (creating and pinning it on the first start) and clear it."""
        m = _SHAPE.open_or_create(os.path.join(pin_dir, PIN_NAME))
        self._map = m
        self._written: dict[str, RepairCount] = {}
        for key in list(m.keys()):
            m.delete(key)

    def write(self, counts: Mapping[str, RepairCount]) -> None:
        """Record ``counts`` (only what changed since the last write)."""
        for name, c in counts.items():
            if self._written.get(name) != c and len(name.encode()) < IFNAMSIZ:
                self._map.update(_Key(name.encode()), _Value(c.repairs, c.deferred, int(c.fighting)))
                self._written[name] = c

    def close(self) -> None:
        self._map.close()


def read(pin_dir: str) -> dict[str, RepairCount]:
    """What the last daemon recorded, by interface name ({} when it never recorded anything)."""
    m = _SHAPE.open(os.path.join(pin_dir, PIN_NAME))
    if m is None:
        return {}
    try:
        out = {}
        for key in m.keys():
            v = m.lookup(key)
            if v is not None:
                out[key.name.decode(errors="replace")] = RepairCount(v.repairs, v.deferred, bool(v.fighting))
        return out
    finally:
        m.close()
