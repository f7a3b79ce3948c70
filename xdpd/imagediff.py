"""How two bank images differ: the entries to write, and the changes to report.

Pure.  :mod:`xdpd.datapath` writes the entry-level diffs (exact keys,
prefixes, array slots) into a bank; :mod:`xdpd.plan` reports the
image-level diff (:class:`ImageDiff`) in the terms an operator reads.
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
    old_map = {(n, p): m for n, p, m in (old.lpm if old else ())}
    new_map = {(n, p): m for n, p, m in new.lpm}
    upserts = [(n, p, m) for (n, p), m in new_map.items() if old_map.get((n, p)) != m]
    deletes = [k for k in old_map if k not in new_map]
    return upserts, deletes


def diff_array(old: Sequence[int] | None, new: Sequence[int]) -> list[int]:
    """Indexes whose value differs (all of them when ``old`` is unknown)."""
    if old is None:
        return list(range(len(new)))
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
                old_names: Mapping[int, str], new_names: Mapping[int, str]) -> ImageDiff:
    """Compare two images; ``*_names`` map counter slots to rule names.

    Rules are matched by name; what a rule matches is compared by the
    planner (from rule digests), since bits move when rules are reordered.
    Address counts are entries of the hash maps, tries and small tables.
    """
    if old is None:
        return ImageDiff(rules_added=tuple(new_names[r.slot] for r in new.rules),
                         addresses_added=new.address_count(), other=True)
    old_rules = {old_names.get(r.slot, f"slot {r.slot}"): (i, r.action) for i, r in enumerate(old.rules)}
    new_rules = {new_names.get(r.slot, f"slot {r.slot}"): (i, r.action) for i, r in enumerate(new.rules)}
    added = tuple(n for n in new_rules if n not in old_rules)
    removed = tuple(n for n in old_rules if n not in new_rules)
    plus = minus = 0
    for key in set(old.addrs) | set(new.addrs):
        width = 4 if key[1] == 4 else 16
        a, b = old.addrs.get(key, EMPTY_TABLE), new.addrs.get(key, EMPTY_TABLE)
        d = diff_exact(a, b, width)
        plus += sum(len(k) for _, k in d.upserts) // width - d.moved
        minus += len(d.deletes) // width
        ups, dels = diff_lpm(a, b)
        old_prefixes = {(n, p) for n, p, _ in a.lpm}
        plus += sum(1 for n, p, _ in ups if (n, p) not in old_prefixes)
        minus += len(dels)
    moved = tuple(n for n, v in new_rules.items() if n in old_rules and old_rules[n] != v)
    other = old.ifaces != new.ifaces or not _same_tables(old, new)
    return ImageDiff(added, removed, moved, plus, minus, other)


def _same_tables(a: BankImage, b: BankImage) -> bool:
    """Same match tables, ignoring the order of entries."""
    if a.flags != b.flags or any(getattr(a, f) != getattr(b, f) for _, f, _ in ARRAY_MAPS) \
            or any(getattr(a, f) != getattr(b, f) for _, f in CFG_MASKS):
        return False
    for key in set(a.addrs) | set(b.addrs):
        x, y = a.addrs.get(key, EMPTY_TABLE), b.addrs.get(key, EMPTY_TABLE)
        if dict(x.exact) != dict(y.exact) or set(x.lpm) != set(y.lpm):
            return False
    return True
