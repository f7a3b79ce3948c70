"""Write bank images into the pinned maps, with no gap and no half state.

This module never decides *what* to enforce: it receives a
:class:`~xdpd.tables.BankImage` and makes one bank hold exactly that, then
switches the program to it with one map write (see ``struct state`` in
``bpf/xdpd.bpf.c``).  Writes are diffs against what the bank is known to
hold, so a one-line edit of a million-entry list writes one entry per bank.
"""

from __future__ import annotations

import array
import ctypes as ct
import time
from typing import Any, Callable

from . import bpfsys, heap, layout
from .bankread import BankReader, Candidates, enabled_ifaces, read_banks
from .filters import ExactFilter
from .imagediff import BankDiff, TableDiff, diff_array, diff_banks
from .maps import PinnedMaps
from .tables import ARRAY_MAPS, CFG_MASKS, CFG_SPANS, AddrTable, BankImage, block6_index, block_index

GRACE_SECONDS = 0.05
"""Wait after a bank switch before rewriting the old bank: far longer than
any XDP program run, so no packet still reads the old bank."""


def _pack_masks(values: list[int]) -> bytes:
    cache: dict[int, bytes] = {}
    out = []
    for m in values:
        b = cache.get(m)
        if b is None:
            b = cache[m] = bytes(layout.Mask.of(m))
        out.append(b)
    return b"".join(out)


def _pack_exact_keys(bank: int, keys: bytes | memoryview, width: int) -> bytearray:
    """Interleave the bank number with packed addresses: struct key4/key6."""
    n = len(keys) // width
    words = width // 4
    buf = bytearray(n * (4 + width))
    out = memoryview(buf).cast("I")
    src = memoryview(keys).cast("I")
    stride = words + 1
    out[0::stride] = array.array("I", [bank]) * n
    for w in range(words):
        out[1 + w::stride] = src[w::words]
    return buf


WRITE_CHUNK = 1 << 16
"""Exact entries packed and written at a time."""


def _chunks(keys: bytes, width: int) -> list[memoryview]:
    """``keys`` in pieces of at most :data:`WRITE_CHUNK` keys (no copies)."""
    view = memoryview(keys)
    step = WRITE_CHUNK * width
    return [view[i:i + step] for i in range(0, len(keys), step)]


def _span(span: tuple[int, int, int]) -> layout.Span:
    lo, hi, mask = span
    if hi < lo:  # empty: no value is inside
        return layout.Span(lo=1, hi=0)
    return layout.Span(lo=lo, hi=hi, m=layout.Mask.of(mask))


def _indexed(image: BankImage | None, direction: str, table: AddrTable | None) -> AddrTable | None:
    """What the bank's IPv4 /16 block index holds: ``table``'s index, or None (unknown).

    The bank's flags say whether the index was written for the table (the
    program reads it only then): a bank read back without the flag may hold
    anything there, and an unknown index is written whole.  (A change of the
    program's source gives new maps, so this is a safeguard, not an
    upgrade path.)
    """
    if image is None or table is None:
        return None
    kind = "small" if table.small else "blocks"
    if not table.small and not table.lpm:
        return table  # nothing to index: the index is empty, as written when the table had prefixes
    return table if image.flags & layout.ADDR_FLAGS[(direction, 4, kind)] else None


def _indexed6(image: BankImage | None, direction: str, table: AddrTable | None) -> AddrTable | None:
    """What the bank's IPv6 bucket index holds: ``table``'s index if the flags say it was written, else None."""
    if image is None or table is None or not image.flags & layout.ADDR_FLAGS[(direction, 6, "blocks")]:
        return None
    return table


def _lpm_key(keytype: type, bank: int, net: bytes, plen: int):
    """The trie key: 32 bits of bank number, then the prefix."""
    key = keytype(prefixlen=32 + plen, bank=bank)
    ct.memmove(key.addr, net, len(net))
    return key


class Datapath:
    """Bank writes into one set of pinned maps; remembers what each bank holds."""

    def __init__(self, maps: PinnedMaps, fresh: bool = False) -> None:
        self.maps = maps
        self.known: list[BankImage | None] = [None, None]
        """What each bank is known to hold (None: unknown, e.g. adopted)."""
        self.filters = {(d, f): ExactFilter(self.maps[layout.filter_map(d, f)], f)
                        for d in ("src", "dst") for f in (4, 6)}
        self.untouched = {0, 1} if fresh else set()
        """Banks of maps this process created and has not written: empty, nothing to clear."""
        self.pending: tuple[BankImage, BankDiff] | None = None
        """Enforced image not yet written into the inactive bank (see settle),
        with its address diff from what that bank holds."""
        self.switched_at = 0.0

    def active_image(self) -> BankImage | None:
        """What the active bank is known to hold (None: nothing enforced yet)."""
        return self.known[self.maps.active_bank()] if self.maps.is_initialised() else None

    # -- writing ---------------------------------------------------------
    def apply(self, image: BankImage, settle: bool = True, diff: BankDiff | None = None) -> None:
        """Make ``image`` the enforced rule set with no gap.

        Writes the inactive bank and switches to it with one map write.  Then
        (now, or later with :meth:`settle`) brings the other bank up to date
        so the next change is a small diff.  ``diff`` is the plan's address
        diff from the active bank's image (:func:`xdpd.imagediff.diff_banks`):
        the filters and both bank writes use it, so the change is diffed once;
        it is computed here if not given or from another image.
        """
        self.pending = None
        active = self.maps.active_bank()
        target = 1 - active
        base = self.known[active]
        if diff is None or diff.base is not base or diff.image is not image:
            diff = diff_banks(base, image)
        for key, table in image.addrs.items():
            self.filters[key].cover(table.in_maps(), diff.for_maps(key).exact)
        self.write_bank(target, image, diff)
        st = self.maps.state()
        st.bank, st.generation = target, st.generation + 1
        self.maps.write_state(st)
        self.switched_at = time.monotonic()
        self.pending = (image, diff)
        if settle:
            self.settle()

    def settle(self) -> None:
        """Write the enforced image into the inactive bank too (if not done yet)."""
        if self.pending is None:
            return
        image, diff = self.pending
        wait = self.switched_at + GRACE_SECONDS - time.monotonic()
        if wait > 0:
            time.sleep(wait)
        self.write_bank(1 - self.maps.active_bank(), image, diff)
        self.pending = None
        for key, table in image.addrs.items():
            self.filters[key].maybe_rebuild(table.in_maps())
        heap.release()  # the change is written: what it allocated goes back

    def adopt(self, candidates: Candidates | None = None, reader: BankReader | None = None) -> None:
        """Learn what both banks hold from the maps (a previous daemon's); writes nothing.

        ``candidates`` (:func:`xdpd.bankread.candidates_of` the config) are
        the address arrays the banks probably hold: a group found equal to
        one is known as that very array, so the first plan's diff against
        it costs nothing and a restart with an unchanged config writes no
        entry.  ``reader``: the same maps' read, started earlier in a thread.
        """
        if reader is not None:
            self.known = list(reader.result(candidates))
        elif self.maps.is_initialised():
            self.known = list(read_banks(self.maps, candidates))

    def write_bank(self, bank: int, image: BankImage, diff: BankDiff | None = None) -> None:
        """Make ``bank`` hold ``image``, writing what differs from what it holds.

        ``diff`` is used when it starts from the very image the bank is known
        to hold (the usual case: both banks hold one image object between
        changes); otherwise the bank's own diff is computed.
        """
        old = self.known[bank]
        if old is None and bank not in self.untouched:
            self._clear_addresses(bank)  # now it holds nothing: the diff from None
        if diff is None or diff.base is not old or diff.image is not image:
            diff = diff_banks(old, image)
        self.untouched.discard(bank)
        self.known[bank] = None  # unknown while half-written
        self._write_arrays(bank, image, old)
        for (direction, family), table in image.addrs.items():
            prev = old.addrs.get((direction, family)) if old else None
            if family == 4:
                self._write_blocks(bank, direction, _indexed(old, direction, prev), table)
            elif image.flags & layout.ADDR_FLAGS[(direction, 6, "blocks")]:
                self._write_blocks6(bank, direction, _indexed6(old, direction, prev), table)
            self._write_small(bank, direction, family, prev, table)
            entries = diff.for_maps((direction, family))
            self._write_exact(bank, direction, family, entries)
            self._write_lpm(bank, direction, family, entries)
        self._write_ifaces(bank, image, old)
        self._write_rules(bank, image)
        self.known[bank] = image

    def _write_arrays(self, bank: int, image: BankImage, old: BankImage | None) -> None:
        for name, field, size in ARRAY_MAPS:
            values = getattr(image, field)
            changed = diff_array(getattr(old, field) if old else None, values)
            if not changed:
                continue
            keys = array.array("I", (bank * size + i for i in changed)).tobytes()
            self.maps[name].update_batch(keys, _pack_masks([values[i] for i in changed]))

    def _write_exact(self, bank: int, direction: str, family: int, entries: TableDiff) -> None:
        width = 4 if family == 4 else 16
        diff = entries.exact
        m = self.maps[layout.exact_map(direction, family)]
        # A chunk at a time: a million keys at once would be about 24 MB of
        # packed keys and values for a moment (struct key4 and the masks).
        for mask, keys in diff.upserts:
            value = bytes(layout.Mask.of(mask))
            for chunk in _chunks(keys, width):
                m.update_batch(_pack_exact_keys(bank, chunk, width), value * (len(chunk) // width))
        for chunk in _chunks(diff.deletes, width):
            m.delete_batch(_pack_exact_keys(bank, chunk, width))

    def _write_small(self, bank: int, direction: str, family: int,
                     old: AddrTable | None, new: AddrTable) -> None:
        if old is not None and old.small == new.small and (not new.small or old == new):
            return
        m = self.maps[layout.small_map(direction, family)]
        value = m.value_type()
        if new.small:
            width = 4 if family == 4 else 16
            entries = new.small_entries(width)
            value.n = len(entries)
            for e, (net, plen, mask) in zip(value.e, entries):
                ct.memmove(e.net, net, width)
                netmask = ((1 << plen) - 1) << (width * 8 - plen) if plen else 0
                ct.memmove(e.netmask, netmask.to_bytes(width, "big"), width)
                e.m = layout.Mask.of(mask)
        m.update(ct.c_uint32(bank), value)

    def _write_blocks(self, bank: int, direction: str, old: AddrTable | None, new: AddrTable) -> None:
        """The /16 block index of an IPv4 table (all of it when what it holds, ``old``, is unknown)."""
        if old is not None and old.small == new.small and (old == new if new.small else old.lpm == new.lpm):
            return
        zero = bytes(ct.sizeof(layout.Block16))
        self._write_index(f"{direction}4_blocks", bank, layout.BLOCKS,
                          None if old is None else block_index(old), block_index(new),
                          lambda values: b"".join(zero if v is None else
                                                  bytes(layout.Mask.of(v[0])) + bytes(layout.Mask.of(v[1]))
                                                  for v in values))

    def _write_blocks6(self, bank: int, direction: str, old: AddrTable | None, new: AddrTable) -> None:
        """The IPv6 bucket index of ``new`` (all of it when what it holds, ``old``, is unknown)."""
        if old is not None and old.lpm == new.lpm:
            return
        self._write_index(f"{direction}6_blocks", bank, 1 << layout.BLOCK6_BITS,
                          None if old is None else block6_index(old), block6_index(new),
                          lambda values: _pack_masks([v or 0 for v in values]))

    def _write_index(self, name: str, bank: int, size: int, before: dict[int, Any] | None,
                     after: dict[int, Any], pack: Callable[[list[Any]], bytes]) -> None:
        """Write bank ``bank``'s part of index array ``name`` (``size`` entries a bank) to hold ``after``.

        Only the entries that differ from ``before``, or all of them when it
        is None (unknown); an entry absent from ``after`` is written as
        ``pack`` makes None.
        """
        entries = range(size) if before is None else \
            sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))
        if not entries:
            return
        keys = array.array("I", (bank * size + k for k in entries)).tobytes()
        self.maps[name].update_batch(keys, pack([after.get(k) for k in entries]))

    def _write_lpm(self, bank: int, direction: str, family: int, entries: TableDiff) -> None:
        m = self.maps[layout.lpm_map(direction, family)]
        # LPM tries have no batch operations; prefixes are few.
        for net, plen, mask in entries.lpm_upserts:
            m.update(_lpm_key(m.key_type, bank, net, plen), layout.Mask.of(mask))
        for net, plen in entries.lpm_deletes:
            m.delete(_lpm_key(m.key_type, bank, net, plen))

    def _write_ifaces(self, bank: int, image: BankImage, old: BankImage | None) -> None:
        m = self.maps["iface_cfg"]
        base = bank * layout.IFINDEX_MAX
        wanted = {e.ifindex: e for e in image.ifaces}
        previous = {e.ifindex for e in (old.ifaces if old else
                                        enabled_ifaces(self.maps["iface_cfg"].array_values(), bank))}
        for idx, e in wanted.items():
            m.update(ct.c_uint32(base + idx), layout.IfaceEnt(
                enabled=1, default_drop=int(e.default_drop), observe=int(e.observe), slot=e.slot,
                rules=layout.Mask.of(e.rules), untagged=layout.Mask.of(e.untagged)))
        for idx in previous - set(wanted):
            m.update(ct.c_uint32(base + idx), layout.IfaceEnt())

    def _write_rules(self, bank: int, image: BankImage) -> None:
        m = self.maps["rules"]
        ents = [layout.RuleEnt(action=r.action, slot=r.slot, cost=r.cost, tau=r.tau, ban_ns=r.ban_ns,
                               flags=r.flags, bucket=r.bucket, sample_cost=r.sample_cost,
                               sample_tau=r.sample_tau) for r in image.rules]
        ents += [layout.RuleEnt()] * (layout.MAX_RULES - len(ents))
        keys = array.array("I", range(bank * layout.MAX_RULES, (bank + 1) * layout.MAX_RULES)).tobytes()
        m.update_batch(keys, bpfsys.pack_array(ents))
        # Only cfg[bank] changes: a packet reading the active bank sees the same bytes.
        st = self.maps.state()
        st.cfg[bank] = layout.BankCfg(
            flags=image.flags, nrules=len(image.rules),
            **{c: layout.Mask.of(getattr(image, f)) for c, f in CFG_MASKS},
            **{f: _span(getattr(image, f)) for f in CFG_SPANS})
        self.maps.write_state(st)

    def _clear_addresses(self, bank: int) -> None:
        """Remove every address entry of ``bank`` (contents unknown)."""
        bank_bytes = bank.to_bytes(4, "little")
        for direction in ("src", "dst"):
            for family in (4, 6):
                m = self.maps[layout.exact_map(direction, family)]
                stale = b"".join(k for k, _ in m.items_batch() if k[:4] == bank_bytes)
                if stale:
                    m.delete_batch(stale)
                lpm = self.maps[layout.lpm_map(direction, family)]
                for k in [k for k in lpm.keys() if k.bank == bank]:
                    lpm.delete(k)
