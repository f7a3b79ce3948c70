"""The ban table: sources dropped before any rule, until a deadline or for good.

Bans come from two places and live in one pinned hash (``bans-v1-<capacity>/bans``
under the pin dir, apart from the layout's maps so that restarts and upgrades
keep them): ``limit`` rules with ``ban:`` (the XDP program inserts the source
that went over the rate) and ``xdpd ban add`` (this module, also while the
daemon is down).  A key is a source as the program sees it: an IPv4 address
as ``::ffff:a.b.c.d``, an IPv6 address reduced to its /64 (one host owns a
/64, and an attacker rotates through it).

Three pieces of kernel state, and the order in which they are written, keep
the program's check both cheap and safe without locks (see the C source):

- the entry in ``bans``, written first;
- its byte in ``ban_filter`` (one byte per hash value; a clear byte proves
  the source is not banned), written second, with a single byte store
  through an mmap, so no writer ever loses another's mark;
- ``state.bans_armed`` (also through an mmap: one u32 store, never a
  read-modify-write of the bank switch next to it), written last.  While it
  is 0, packets do not look at the ban table at all.

Only the daemon clears marks or disarms (:meth:`BanTable.sweep`), and only in
an order that can never hide a ban someone adds at the same moment.  Expiry
is decided by the program on lookup (CLOCK_MONOTONIC deadlines, the clock of
``time.monotonic_ns``); sweeping expired entries only frees their memory.
"""

from __future__ import annotations

import ctypes as ct
import errno
import ipaddress
import os
import shutil
import struct
import time
from dataclasses import dataclass

from . import bpfsys, layout, pins
from .tables import rule_hash

V4_MAPPED = bytes(10) + b"\xff\xff"
"""The first 12 bytes of an IPv4 source's key."""


class BanError(Exception):
    """A ban could not be made or read; the message names what to do."""


def parse_source(text: str) -> bytes:
    """The ban key for an address as an operator writes it.

    An IPv4 address, or an IPv6 address or prefix of /64 or longer (reduced
    to its /64).  IPv4 prefixes and IPv6 prefixes wider than /64 are refused:
    a ban is one source, and banning a network is what a ``drop`` rule with a
    ``src`` list is for.
    """
    text = text.strip()
    try:
        if "/" in text:
            net = ipaddress.ip_network(text, strict=False)
            if net.version == 4:
                if net.prefixlen != 32:
                    raise BanError(f"{text}: a ban holds one IPv4 address, not a prefix "
                                   "(to drop a network, use a drop rule with a src list)")
                addr: ipaddress.IPv4Address | ipaddress.IPv6Address = net.network_address
            else:
                if net.prefixlen < 64:
                    raise BanError(f"{text}: an IPv6 ban covers one /64; /{net.prefixlen} is wider "
                                   "(to drop a network, use a drop rule with a src list)")
                addr = net.network_address
        else:
            addr = ipaddress.ip_address(text)
    except ValueError:
        raise BanError(f"{text!r} is not an IPv4 or IPv6 address") from None
    if addr.version == 6 and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped
    if addr.version == 4:
        return V4_MAPPED + addr.packed
    return addr.packed[:8] + bytes(8)


def source_text(key: bytes) -> str:
    """How ``list`` shows a key: ``192.0.2.1`` or ``2001:db8:1:2::/64``."""
    if key[:12] == V4_MAPPED:
        return str(ipaddress.IPv4Address(key[12:]))
    return f"{ipaddress.IPv6Address(key[:8] + bytes(8))}/64"


def ban_hash(key: bytes) -> int:
    """The filter's hash of a key; the C program's ban_hash() computes the same."""
    w = struct.unpack("<4I", key)
    x = ((w[0] * 0x85EBCA6B) ^ (w[1] * 0xC2B2AE35) ^ (w[2] * 0x27D4EB2F) ^ w[3]) & 0xFFFFFFFF
    return ((x * 0x9E3779B1) & 0xFFFFFFFF) >> (32 - layout.BAN_FILTER_BITS)


@dataclass(frozen=True)
class BanRecord:
    """One ban as the table holds it."""

    key: bytes
    expires_ns: int
    """CLOCK_MONOTONIC deadline; 0: until deleted."""
    since_ns: int
    rule_slot: int
    """The counter slot of the limit rule that made it, or ``layout.BAN_BY_CLI``."""
    reason: str
    rule_hash: int = 0
    """That rule's :func:`rule_hash` (its slot may since have gone to another rule)."""

    def source(self, names: dict[int, str]) -> str:
        """``cli``, or the name of the limit rule that made it (``names``: slot -> rule
        name, as configured now), or ``slotN`` when that rule is gone."""
        if self.rule_slot == layout.BAN_BY_CLI:
            return "cli"
        name = names.get(self.rule_slot)
        return name if name is not None and rule_hash(name) == self.rule_hash else f"slot{self.rule_slot}"

    @property
    def address(self) -> str:
        return source_text(self.key)

    def active(self, now_ns: int) -> bool:
        return not self.expires_ns or now_ns < self.expires_ns

    def expires_unix(self, now_ns: int | None = None) -> float | None:
        """The deadline as UNIX seconds (None: until deleted)."""
        if not self.expires_ns:
            return None
        now_ns = time.monotonic_ns() if now_ns is None else now_ns
        return time.time() + (self.expires_ns - now_ns) / 1e9


@dataclass(frozen=True)
class SweepResult:
    expired: int
    """Expired entries deleted."""
    active: int
    """Entries left."""
    disarmed: bool
    """The table was empty: packets no longer look at it."""
    cleared_marks: int
    """Filter bytes of deleted entries cleared."""


class BanTable:
    """The pinned ban table of one ban directory, with the state map it arms.

    ``state`` is the program's (mmapable) state map, or None when no program
    is pinned: then nothing reads the table, and the next daemon's first bank
    switch arms it.
    """

    def __init__(self, ban_dir: str, state: bpfsys.Map | None) -> None:
        self.ban_dir = ban_dir
        self._bans = bpfsys.Map.open_pinned(os.path.join(ban_dir, "bans"), *layout.BAN_MAPS["bans"])
        self._filter_map = bpfsys.Map.open_pinned(os.path.join(ban_dir, "ban_filter"),
                                                  *layout.BAN_MAPS["ban_filter"])
        self._filter = self._filter_map.mmap()
        self._state = state.mmap() if state is not None else None
        self.capacity = self._bans.info().max_entries

    def close(self) -> None:
        self._filter.close()
        if self._state is not None:
            self._state.close()
        self._filter_map.close()
        self._bans.close()

    def __enter__(self) -> "BanTable":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- what the CLI and the daemon add and remove -----------------------------
    def add(self, key: bytes, seconds: float | None, reason: str = "",
            rule_slot: int = layout.BAN_BY_CLI) -> None:
        """Ban ``key`` for ``seconds`` (None: until deleted); replaces an existing ban of it."""
        now = time.monotonic_ns()
        self.put(BanRecord(key, now + round(seconds * 1e9) if seconds else 0, now, rule_slot, reason))

    def put(self, record: BanRecord) -> None:
        """Write ``record`` as it is: the entry, then its mark, then the arm."""
        value = layout.Ban(expires=record.expires_ns, since=record.since_ns, rule_slot=record.rule_slot,
                           rule_hash=record.rule_hash, reason=record.reason.encode()[:63])
        try:
            self._bans.update(layout.SrcKey.from_buffer_copy(record.key), value)
        except bpfsys.BpfError as e:
            if e.errno == errno.E2BIG:
                raise BanError(f"the ban table is full ({self.capacity:,} bans; "
                               "raise settings.max_bans and restart xdpd)") from None
            raise
        self._filter[ban_hash(record.key)] = 1
        self.arm()

    def delete(self, key: bytes) -> bool:
        """Lift the ban of ``key``; False if there was none.  Its filter mark
        stays until the next sweep (a mark alone bans nothing)."""
        return self._bans.delete(layout.SrcKey.from_buffer_copy(key))

    def get(self, key: bytes) -> BanRecord | None:
        v = self._bans.lookup(layout.SrcKey.from_buffer_copy(key))
        return None if v is None else _record(key, v)

    def records(self) -> list[BanRecord]:
        """Every entry, expired ones included (the program ignores those)."""
        return [_record(k, layout.Ban.from_buffer_copy(v)) for k, v in self._bans.items_batch()]

    def arm(self) -> None:
        if self._state is not None:
            struct.pack_into("<I", self._state, layout.STATE_BANS_ARMED_OFFSET, 1)

    def armed(self) -> bool:
        return self._state is not None and struct.unpack_from(
            "<I", self._state, layout.STATE_BANS_ARMED_OFFSET)[0] != 0

    def marked(self, key: bytes) -> bool:
        return self._filter[ban_hash(key)] != 0

    # -- housekeeping (the daemon) ------------------------------------------------
    def sweep(self) -> SweepResult:
        """Delete expired bans; clear the marks nobody needs; disarm when empty.

        Safe while the program and ``xdpd ban`` add bans: a mark is cleared
        only after a scan found no entry for it, and a second scan puts back
        the marks of entries added in between; disarming clears the marks
        while nothing reads them and re-arms if a ban appeared meanwhile.
        """
        now = time.monotonic_ns()
        records = self.records()
        expired = [r.key for r in records if not r.active(now)]
        for key in expired:
            self._bans.delete(layout.SrcKey.from_buffer_copy(key))
        live = {r.key for r in records if r.active(now)}
        if not live and self.armed():
            struct.pack_into("<I", self._state, layout.STATE_BANS_ARMED_OFFSET, 0)
            cleared = self._count_marks()
            self._filter[:] = bytes(len(self._filter))
            again = {r.key for r in self.records()}
            if again:
                for key in again:
                    self._filter[ban_hash(key)] = 1
                self.arm()
            return SweepResult(len(expired), len(again), not again, cleared)
        cleared = 0
        if self._count_marks() > 2 * len(live) + 1024:
            cleared = self._clear_stale_marks(live)
        return SweepResult(len(expired), len(live), False, cleared)

    def _count_marks(self) -> int:
        return len(self._filter) - self._filter[:].count(0)

    def _clear_stale_marks(self, live: set[bytes]) -> int:
        keep = {ban_hash(k) for k in live}
        cleared = 0
        pos = self._filter.find(b"\x01")
        while pos >= 0:
            if pos not in keep:
                self._filter[pos] = 0
                cleared += 1
            pos = self._filter.find(b"\x01", pos + 1)
        # A ban added since the scan may have lost its mark just now: mark again.
        for r in self.records():
            if r.key not in live:
                self._filter[ban_hash(r.key)] = 1
        return cleared


def _record(key: bytes, v: layout.Ban) -> BanRecord:
    return BanRecord(bytes(key), v.expires, v.since, v.rule_slot, v.reason.decode(errors="replace"), v.rule_hash)


def open_pinned(pin_dir: str) -> BanTable:
    """The ban table under ``pin_dir``, armed through the pinned program's
    state map if there is one (``xdpd ban`` works with or without a daemon)."""
    ban_dir = pins.current_ban_dir(pin_dir) if os.path.isdir(pin_dir) else None
    if ban_dir is None:
        raise BanError(f"no ban table pinned under {pin_dir} (xdpd creates it when it starts; "
                       "see --pin-dir)")
    maps_dir = pins.current_maps_dir(pin_dir)
    state = None
    if maps_dir is not None and os.path.exists(os.path.join(maps_dir, "state")):
        state = bpfsys.Map.open_pinned(os.path.join(maps_dir, "state"), ct.c_uint32, layout.State)
    try:
        return BanTable(ban_dir, state)
    finally:
        if state is not None:
            state.close()  # the mmap keeps what it needs


def migrate(pin_dir: str, keep_dir: str, state: bpfsys.Map | None) -> tuple[int, int]:
    """Move the bans of every other ban directory into ``keep_dir`` and unpin them.

    Runs when ``max_bans`` changed (or the ban format did), once the program
    using ``keep_dir`` is attached.  Returns (moved, left out): a smaller
    table keeps the bans that fit.
    """
    moved = left_out = 0
    with BanTable(keep_dir, state) as table:
        for d in pins.ban_dirs(pin_dir):
            if d == keep_dir:
                continue
            with BanTable(d, None) as old:
                for r in old.records():
                    if not r.active(time.monotonic_ns()):
                        continue
                    try:
                        table.put(r)
                        moved += 1
                    except BanError:
                        left_out += 1
            shutil.rmtree(d, ignore_errors=True)
    return moved, left_out
