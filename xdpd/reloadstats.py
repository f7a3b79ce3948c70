"""How many reloads were applied and rejected, kept in a small map pinned beside the filter.

``xdpd_reloads_total`` is a Prometheus counter, and a counter that goes back
to 0 whenever the daemon restarts (``systemctl restart``, a package upgrade,
a crash and ``Restart=on-failure``) reads as a burst of resets.  The
filter's own counters do not have that problem: they live in pinned maps
and a new daemon adopts them.  So these numbers live there too, in
``<pin dir>/reloads-v1``, a BPF array the first daemon creates and every
later one reopens.  They therefore last exactly as long as the counters
beside them (until a reboot, or ``apt purge``, which removes the pins), and
do not depend on the runtime directory, which systemd removes whenever the
service stops.

Only the daemon writes (one writer: the main loop); a scrape reads the same
map by its fd from the HTTP server's thread.  Each value is one u64 lookup,
so a reader sees each value whole; the values are not read as one
snapshot, which a counter does not need.
"""

from __future__ import annotations

import ctypes as ct
import os
import time
from dataclasses import dataclass

from . import bpfsys, pins

PIN_NAME = "reloads-v1"
"""Under the pin dir.  The version names the slot layout below; a new
layout takes a new name, so an old daemon never misreads a new map."""

APPLIED, REJECTED, LAST_SUCCESS_NS, ADDRESSES = range(4)
SLOTS = 4

_SHAPE = pins.SmallMap(bpfsys.BPF_MAP_TYPE_ARRAY, "xdpd_reloads", ct.c_uint32, ct.c_uint64, SLOTS)


@dataclass(frozen=True)
class ReloadCounts:
    applied: int = 0
    """Reloads whose config was enforced."""
    rejected: int = 0
    """Reloads that left the previous config in force (invalid config, or the kernel refused it)."""
    last_success: float = 0.0
    """UNIX time of the last config enforced, by a reload or by the start; 0: never."""
    addresses: int = 0
    """Addresses (and prefixes) in the config enforced then."""


class ReloadStats:
    """The pinned reload counts: :meth:`count` and :meth:`enforced` write, :meth:`read` reads."""

    def __init__(self, pin_dir: str) -> None:
        """Open ``<pin_dir>/reloads-v1``, creating and pinning it on the first start.

        A map there of another shape (which only a hand-made pin can be) is
        replaced.  Raises :class:`OSError` when the kernel refuses.
        """
        self._map = _SHAPE.open_or_create(os.path.join(pin_dir, PIN_NAME))

    def close(self) -> None:
        self._map.close()

    def __enter__(self) -> "ReloadStats":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def count(self, applied: bool) -> None:
        """One more reload, applied or rejected."""
        self._add(APPLIED if applied else REJECTED)

    def enforced(self, addresses: int, now: float | None = None) -> None:
        """A config was enforced (at start, or by a reload): when, and how many addresses it has."""
        self._set(LAST_SUCCESS_NS, int((time.time() if now is None else now) * 1e9))
        self._set(ADDRESSES, addresses)

    def read(self) -> ReloadCounts:
        v = [self._get(i) for i in range(SLOTS)]
        return ReloadCounts(v[APPLIED], v[REJECTED], v[LAST_SUCCESS_NS] / 1e9, v[ADDRESSES])

    def _get(self, slot: int) -> int:
        value = self._map.lookup(ct.c_uint32(slot))
        return int(value.value) if value is not None else 0

    def _set(self, slot: int, value: int) -> None:
        self._map.update(ct.c_uint32(slot), ct.c_uint64(value))

    def _add(self, slot: int) -> None:
        self._set(slot, self._get(slot) + 1)
