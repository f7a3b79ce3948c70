"""How two bank images differ: the entries to write, and the changes to report.

Pure.  The address part is diffed once per change (:func:`diff_banks`,
a :class:`BankDiff`): :mod:`xdpd.plan` computes it, reports it in the terms
an operator reads (:class:`ImageDiff`) and hands it on in the plan;
:mod:`xdpd.datapath` sets the filter bits of its added keys and writes it
into both banks.  A million-entry table is never compared twice for one
change.  Array slots are diffed where they are written (:func:`diff_array`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

from .packed import PackedKeys, diff_sorted
from .tables import ARRAY_MAPS, CFG_MASKS, EMPTY_TABLE, AddrTable, BankImage


@dataclass(frozen=True)
class ExactDiff:
    """What to write to turn one exact table into another."""

    upserts: tuple[tuple[int, bytes], ...]     # (mask, packed keys)
    deletes: bytes                             # packed keys
    moved: int = 0
    """Upserted keys that were already present with another mask."""

    def __bool__(self) -> bool:
        return bool(self.upserts or self.deletes)


def diff_exact(old: AddrTable | None, new: AddrTable, width: int) -> ExactDiff:
    """Entries to upsert and delete to go from ``old`` to ``new``."""
    old_groups = dict(old.exact) if old else {}
    new_groups = dict(new.exact)
    upserts: list[tuple[int, bytes]] = []
    removed: list[bytes] = []
    for m in sorted(set(old_groups) | set(new_groups)):
        added, gone = diff_sorted(old_groups.get(m, b""), new_groups.get(m, b""), width)
        if added:
            upserts.append((m, added))
        if gone:
            removed.append(gone)
    deletes = b"".join(removed)
    moved = 0
    if deletes and upserts:
        # A key that moved between groups is re-written, not deleted.
        rewritten = {k for _, keys in upserts for k in PackedKeys(keys, width).chunks()}
        kept = [k for k in PackedKeys(deletes, width).chunks() if k not in rewritten]
        moved = len(deletes) // width - len(kept)
        deletes = b"".join(kept)
    return ExactDiff(tuple(upserts), deletes, moved)


def diff_lpm(old: AddrTable | None, new: AddrTable) -> tuple[list[tuple[bytes, int, int]], list[tuple[bytes, int]]]:
    """(upserts, deletes) for the LPM entries."""
    if old is not None and old.lpm is new.lpm:
        return [], []
    old_map = {(n, p): m for n, p, m in (old.lpm if old else ())}
    new_map = {(n, p): m for n, p, m in new.lpm}
    upserts = [(n, p, m) for (n, p), m in new_map.items() if old_map.get((n, p)) != m]
    deletes = [k for k in old_map if k not in new_map]
    return upserts, deletes


@dataclass(frozen=True)
class TableDiff:
    """What to write to turn one direction and family's table into another."""

    exact: ExactDiff
    lpm_upserts: tuple[tuple[bytes, int, int], ...]
    lpm_deletes: tuple[tuple[bytes, int], ...]

    def __bool__(self) -> bool:
        return bool(self.exact or self.lpm_upserts or self.lpm_deletes)


def diff_table(old: AddrTable | None, new: AddrTable, width: int) -> TableDiff:
    """The exact and LPM entries to write to go from ``old`` (None: empty) to ``new``."""
    upserts, deletes = diff_lpm(old, new)
    return TableDiff(diff_exact(old, new, width), tuple(upserts), tuple(deletes))


@dataclass(frozen=True, eq=False)
class BankDiff:
    """Every address change from ``base`` (None: an empty bank) to ``image``.

    Computed once per change and used for everything that needs it: the
    plan's counts, the exact filters' new bits, and the writes of both
    banks, each of which holds ``base`` before (the writer checks that by
    identity, and diffs again only for a bank that holds something else).
    """

    base: BankImage | None
    image: BankImage
    tables: Mapping[tuple[str, int], TableDiff]
    """Per (direction, family) of ``image``: the diff of the whole tables."""

    def for_maps(self, key: tuple[str, int]) -> TableDiff:
        """What the hash map and trie of ``key`` need written.

        The table diff, unless a side is a small table, which the program
        keeps elsewhere (:meth:`AddrTable.in_maps`): then the maps go from
        or to empty, a diff of its own (and a cheap one: a small side is
        empty in the maps).
        """
        old = _table(self.base, key)
        new = _table(self.image, key)
        if not old.small and not new.small:
            return self.tables[key]
        return diff_table(old.in_maps(), new.in_maps(), _width(key))


def diff_banks(old: BankImage | None, new: BankImage) -> BankDiff:
    """The address changes from ``old`` (None: an empty bank) to ``new``.

    Cost grows with the changes, not the size of the tables
    (:func:`xdpd.packed.diff_sorted`); tables that are the same objects cost
    nothing.
    """
    return BankDiff(old, new, {key: diff_table(_table(old, key), table, _width(key))
                               for key, table in new.addrs.items()})


def _table(image: BankImage | None, key: tuple[str, int]) -> AddrTable:
    return image.addrs.get(key, EMPTY_TABLE) if image is not None else EMPTY_TABLE


def _width(key: tuple[str, int]) -> int:
    return 4 if key[1] == 4 else 16


def diff_array(old: Sequence[int] | None, new: Sequence[int]) -> list[int]:
    """Indexes whose value differs (all of them when ``old`` is unknown)."""
    if old is None:
        return list(range(len(new)))
    if old == new:  # the usual case (an address edit): one C-speed compare, not 65,536 in Python
        return []
    return [i for i, (a, b) in enumerate(zip(old, new)) if a != b]


@dataclass(frozen=True)
class ImageDiff:
    """How two bank images differ, in the terms an operator reads in a plan."""

    rules_added: tuple[str, ...] = ()
    rules_removed: tuple[str, ...] = ()
    rules_moved: tuple[str, ...] = ()
    """Kept their name but changed position or action."""
    addresses_added: int = 0
    addresses_removed: int = 0
    other: bool = False
    """Something else differs (interfaces enabled, defaults, tables)."""

    def __bool__(self) -> bool:
        return bool(self.rules_added or self.rules_removed or self.rules_moved
                    or self.addresses_added or self.addresses_removed or self.other)


def diff_images(old: BankImage | None, new: BankImage,
                old_names: Mapping[int, str], new_names: Mapping[int, str],
                addrs: BankDiff | None = None) -> ImageDiff:
    """Compare two images; ``*_names`` map counter slots to rule names.

    Rules are matched by name; what a rule matches is compared by the
    planner (from rule digests), since bits move when rules are reordered.
    Address counts are entries of the hash maps, tries and small tables,
    taken from ``addrs`` (:func:`diff_banks` of the two images, computed
    here if not given).
    """
    if old is None:
        return ImageDiff(rules_added=tuple(new_names[r.slot] for r in new.rules),
                         addresses_added=new.address_count(), other=True)
    if addrs is None or addrs.base is not old or addrs.image is not new:
        addrs = diff_banks(old, new)
    old_rules = {old_names.get(r.slot, f"slot {r.slot}"): (i, r.action) for i, r in enumerate(old.rules)}
    new_rules = {new_names.get(r.slot, f"slot {r.slot}"): (i, r.action) for i, r in enumerate(new.rules)}
    added = tuple(n for n in new_rules if n not in old_rules)
    removed = tuple(n for n in old_rules if n not in new_rules)
    plus = minus = 0
    for key in set(old.addrs) | set(new.addrs):
        width = _width(key)
        d = addrs.tables.get(key)
        if d is None:  # a table the new image lacks: all of it goes
            d = diff_table(old.addrs[key], EMPTY_TABLE, width)
        plus += sum(len(k) for _, k in d.exact.upserts) // width - d.exact.moved
        minus += len(d.exact.deletes) // width
        old_prefixes = {(n, p) for n, p, _ in _table(old, key).lpm}
        plus += sum(1 for n, p, _ in d.lpm_upserts if (n, p) not in old_prefixes)
        minus += len(d.lpm_deletes)
    moved = tuple(n for n, v in new_rules.items() if n in old_rules and old_rules[n] != v)
    other = old.ifaces != new.ifaces or not _same_tables(old, new, addrs)
    return ImageDiff(added, removed, moved, plus, minus, other)


def _same_tables(a: BankImage, b: BankImage, addrs: BankDiff) -> bool:
    """Same match tables, ignoring the order of entries (the addresses from their diff)."""
    if a.flags != b.flags or any(getattr(a, f) != getattr(b, f) for _, f, _ in ARRAY_MAPS) \
            or any(getattr(a, f) != getattr(b, f) for _, f in CFG_MASKS):
        return False
    return not any(addrs.tables.values()) and all(
        not table.exact and not table.lpm for key, table in a.addrs.items() if key not in b.addrs)
