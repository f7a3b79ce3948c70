"""The pinned maps of one layout, opened by name, with their small typed reads.

Everything that reads or writes the program's maps goes through one
:class:`PinnedMaps`: the bank writer (:mod:`xdpd.datapath`), the read-back
(:mod:`xdpd.bankread`), ``status``, the count reporter and the reconcile's
observation.  Opening checks each map's key and value size against
:mod:`xdpd.layout`, so a Python layout that drifted from the C source fails
loudly here instead of corrupting a map.

Besides the banks, the maps hold the bookkeeping a restarted daemon, or
``xdpd status``, needs to make sense of them: which rule name owns each
counter slot (with a digest of its definition), which interface owns each
interface slot, and the per-CPU counters themselves.
"""

from __future__ import annotations

import ctypes as ct
import os
from typing import Callable, Mapping

from . import bpfsys, layout
from .observed import IfaceSlot, RuleSlot
from .tables import RuleEntry


class LayoutMismatch(Exception):
    """A pinned map's key or value size is not what :mod:`xdpd.layout` says."""


class PinnedMaps:
    """Every map of :data:`layout.MAPS`, opened from ``maps_dir``."""

    def __init__(self, maps_dir: str) -> None:
        self.maps_dir = maps_dir
        self._maps: dict[str, bpfsys.Map] = {}
        try:
            for name, (k, v) in layout.MAPS.items():
                m = bpfsys.Map.open_pinned(os.path.join(maps_dir, name), k, v,
                                           percpu=name in layout.PERCPU_MAPS)
                self._maps[name] = m
                check_sizes(m)
        except BaseException:
            self.close()
            raise

    def __getitem__(self, name: str) -> bpfsys.Map:
        return self._maps[name]

    def close(self) -> None:
        for m in self._maps.values():
            m.close()

    # -- the bank switch ---------------------------------------------------
    def state(self) -> layout.State:
        return self._maps["state"].lookup(ct.c_uint32(0))

    def write_state(self, st: layout.State) -> None:
        """Write the whole state value.

        ``bans_armed`` is always written as 1: the program or ``xdpd ban`` may
        have armed it since ``st`` was read, and writing back a 0 would hide
        their ban.  Only :meth:`xdpd.bans.BanTable.sweep` disarms, through
        the map's mmap, after checking the table is empty.
        """
        st.bans_armed = 1
        self._maps["state"].update(ct.c_uint32(0), st)

    def active_bank(self) -> int:
        return self.state().bank & 1

    def is_initialised(self) -> bool:
        """Has any daemon ever switched a bank in these maps?"""
        return self.state().generation > 0

    def rule_order(self, bank: int | None = None) -> list[RuleEntry]:
        """The rule entries of ``bank`` (default: active) in order."""
        bank = self.active_bank() if bank is None else bank
        cfg = self.state().cfg[bank]
        rules = self._maps["rules"]
        return [RuleEntry(r.action, r.slot, r.cost, r.tau, r.ban_ns, r.flags, r.bucket, r.sample_cost,
                          r.sample_tau) for r in
                (rules.lookup(ct.c_uint32(bank * layout.MAX_RULES + bit)) for bit in range(cfg.nrules))]

    # -- counters ------------------------------------------------------------
    def counter(self, name: str, index: int) -> tuple[int, int]:
        """(packets, bytes) of one per-CPU counter, summed over CPUs."""
        vals = self._maps[name].lookup_percpu(ct.c_uint32(index))
        return sum(v.packets for v in vals), sum(v.bytes for v in vals)

    def ban_stats(self) -> tuple[int, int]:
        """(bans made by limit rules, bans refused because the table was full), summed over CPUs."""
        m = self._maps["ban_stats"]
        return tuple(sum(v.value for v in m.lookup_percpu(ct.c_uint32(i))) for i in
                     (layout.BAN_STAT_BY_RULE, layout.BAN_STAT_FULL))  # type: ignore[return-value]

    def zero_counter(self, name: str, index: int) -> None:
        self._maps[name].update_percpu(ct.c_uint32(index),
                                       [layout.Counter()] * bpfsys.num_possible_cpus())

    # -- slot bookkeeping ----------------------------------------------------
    def rule_slots(self) -> dict[int, RuleSlot]:
        """Counter slot -> the rule that owns it, as last written."""
        return self._read_owners("rule_names", layout.MAX_RULE_SLOTS,
                                 lambda v: RuleSlot(v.name.decode(errors="replace"), v.action, v.digest))

    def iface_slots(self) -> dict[int, IfaceSlot]:
        """Interface slot -> the interface that owns it, as last written."""
        return self._read_owners("iface_names", layout.MAX_IFACES,
                                 lambda v: IfaceSlot(v.name.decode(errors="replace"), v.ifindex,
                                                     layout.MODE_NAMES.get(v.mode, "none")))

    def write_rule_slots(self, slots: Mapping[int, RuleSlot], fresh: frozenset[int] | set[int]) -> None:
        """Record exactly ``slots`` (others are cleared) and zero the counters of ``fresh`` ones."""
        self._write_owners("rule_names", layout.MAX_RULE_SLOTS, {
            slot: layout.RuleMeta(name=r.name.encode()[:63], action=r.action, in_use=1, digest=r.digest)
            for slot, r in slots.items()})
        for slot in fresh:
            # A slot a retired rule used: its counts and its shared bucket are not the new rule's.
            # (Per-source buckets of the slot are left to age: one of them can at most start a
            # burst short, and only for as long as the old rule's burst lasts.)
            self.zero_counter("rule_stats", slot)
            self.zero_counter("limit_stats", slot)
            self._maps["rule_buckets"].update(ct.c_uint32(slot), ct.c_uint64(0))
            self._maps["sample_buckets"].update(ct.c_uint32(slot), ct.c_uint64(0))

    def write_iface_slots(self, slots: Mapping[int, IfaceSlot], fresh: frozenset[int] | set[int]) -> None:
        """Record exactly ``slots`` (others are cleared) and zero the counters of ``fresh`` ones."""
        self._write_owners("iface_names", layout.MAX_IFACES, {
            slot: layout.IfaceMeta(name=i.name.encode(), ifindex=i.ifindex, mode=layout.MODE_CODES[i.mode],
                                   in_use=1)
            for slot, i in slots.items()})
        for slot in fresh:
            for v in range(layout.NVERDICTS):
                self.zero_counter("iface_stats", slot * layout.NVERDICTS + v)

    def _read_owners(self, name: str, capacity: int, decode: Callable) -> dict:
        m = self._maps[name]
        out = {}
        for slot in range(capacity):
            v = m.lookup(ct.c_uint32(slot))
            if v is not None and v.in_use:
                out[slot] = decode(v)
        return out

    def _write_owners(self, name: str, capacity: int, entries: Mapping[int, ct.Structure]) -> None:
        m = self._maps[name]
        for slot in range(capacity):
            if slot in entries:
                m.update(ct.c_uint32(slot), entries[slot])
            else:
                cur = m.lookup(ct.c_uint32(slot))
                if cur is not None and cur.in_use:
                    m.update(ct.c_uint32(slot), m.value_type())


def check_sizes(m: bpfsys.Map) -> None:
    """Compare the kernel's key and value size of ``m`` with its Python types.

    Per-CPU maps report the size of one CPU's value.  A mismatch means this
    Python code and the compiled program disagree on a struct: reading or
    writing would silently corrupt the map, so refuse.
    """
    info = m.info()
    want = (ct.sizeof(m.key_type), ct.sizeof(m.value_type))
    if (info.key_size, info.value_size) != want:
        raise LayoutMismatch(
            f"map {m.name}: the kernel says key {info.key_size} bytes, value {info.value_size} bytes; "
            f"xdpd/layout.py says key {want[0]}, value {want[1]}: the C source and the Python "
            "layout must change together")
