"""Sorted arrays of fixed-width keys, kept packed in one ``bytes``.

A million-address list is one ``bytes`` of sorted network-order addresses
(``AddrSet.v4_exact``...), never a million Python objects, from the parse
(:mod:`xdpd.addrlist`) through the incremental re-load (:mod:`xdpd.listcache`)
to the bank image and its diff (:mod:`xdpd.tables`).  This module is the one
implementation of what they all do with such arrays: sort and deduplicate,
look up by bisection, splice runs in and out, merge, and diff.

Keys compare bytewise, which for network-order addresses is numeric order.
"""

from __future__ import annotations

import bisect
import itertools
import operator
import sys
from array import array
from collections.abc import Iterable, Iterator, Mapping
from typing import Any, Generic, TypeVar

_SMALL_UNION = 4096
"""Up to this many keys, :func:`union` inserts them into the other, sorted
side one by one instead of sorting both sides again."""

_SMALL_DIFF = 32
"""Below this many keys a side, a set difference beats splitting."""

_NOTHING = object()
"""Differs from every item, so the first item always starts a run."""

T = TypeVar("T")
D = TypeVar("D")


class SpliceError(ValueError):
    """A splice was asked to remove items that are not there (or to remove and
    insert the same item): the caller's idea of the array is out of date."""


def split(data: bytes | bytearray, width: int) -> list[bytes]:
    """The items of concatenated fixed-width ``data``, in order."""
    data = bytes(data)
    return [data[i : i + width] for i in range(0, len(data), width)]


# --------------------------------------------------------------------------
# Sorting and deduplicating


def sorted_unique_v4(packed: bytes | bytearray) -> bytes:
    """Sort and deduplicate concatenated 4-byte network-order addresses."""
    return sorted_counted_v4(packed, want_extras=False)[0]


def sorted_unique(packed: bytes | bytearray, width: int) -> bytes:
    """Sort and deduplicate concatenated fixed-width items (bytewise order)."""
    return sorted_counted(packed, width, want_extras=False)[0]


_SORT_BUCKET_BITS = 4
""":func:`sorted_counted_v4` sorts in 2^this buckets, by the top bits."""


def sorted_counted_v4(packed: bytes | bytearray, *, want_extras: bool = True) -> tuple[bytes, bytes]:
    """Sorted unique 4-byte items, and the sorted surplus copies of duplicates.

    Going through ``array('I')`` sorts small ints instead of bytes objects,
    which measured about twice as fast on a million addresses, and removes
    duplicates in one linear pass after sorting instead of building a set.
    The surplus (every copy after the first) is usually empty and then costs
    nothing; it is what lets :class:`xdpd.listcache.ListCache` know whether a
    deleted line was the last copy of its address.

    The items are first dealt into 16 arrays by their top 4 bits, and each
    is sorted on its own: the Python ints a sort needs then exist for one
    sixteenth of the items at a time (a million at once are about 40 MB for
    a moment), and the smaller sorts measured faster overall (0.26 s instead
    of 0.56 s for a million random addresses).
    """
    if len(packed) <= 4:
        return bytes(packed), b""
    arr = array("I")
    if arr.itemsize != 4:  # pragma: no cover - every Linux ABI has 4-byte int
        return sorted_counted(packed, 4, want_extras=want_extras)
    arr.frombytes(packed)
    swap = sys.byteorder == "little"
    if swap:
        arr.byteswap()
    shift = 32 - _SORT_BUCKET_BITS
    buckets = [array("I") for _ in range(1 << _SORT_BUCKET_BITS)]
    deal = [b.append for b in buckets]
    for v in arr:
        deal[v >> shift](v)
    del arr, deal
    unique = array("I")
    extras = array("I")
    buckets.reverse()
    while buckets:  # each bucket freed once sorted
        values = sorted(buckets.pop())
        unique_values, extra_values = dedupe(values)
        unique.extend(unique_values)
        if want_extras:
            extras.extend(extra_values)
        del values, unique_values, extra_values
    if swap:
        unique.byteswap()
        extras.byteswap()
    return unique.tobytes(), extras.tobytes()


def sorted_counted(packed: bytes | bytearray, width: int, *, want_extras: bool = True) -> tuple[bytes, bytes]:
    """:func:`sorted_counted_v4` for any width (bytewise order).

    Sorting first and dropping neighbours that repeat measured faster and
    smaller than building a set of a million 16-byte objects.
    """
    if len(packed) <= width:
        return bytes(packed), b""
    items = split(packed, width)
    items.sort()
    unique, extras = dedupe(items)
    del items
    return b"".join(unique), b"".join(extras) if want_extras else b""


def dedupe(values: list[T]) -> tuple[Iterable[T], list[T]]:
    """Split a sorted list into its unique items and the surplus copies.

    One C-level pass marks the first of each run of equal items, in a
    bytearray (1 byte per item, not 8 as in a list); duplicates are rare,
    so they are then found with ``bytearray.find`` (memchr) rather than with
    a second pass over every item.  ``values`` itself stands for the unique
    items when there are no duplicates.
    """
    firsts = bytearray(map(operator.ne, values, itertools.chain((_NOTHING,), values)))
    if 0 not in firsts:
        return values, []
    extras = []
    at = firsts.find(0)
    while at >= 0:
        extras.append(values[at])
        at = firsts.find(0, at + 1)
    return itertools.compress(values, firsts), extras


# --------------------------------------------------------------------------
# Lookups and splicing


class PackedKeys:
    """A sorted packed key array viewed as items, for :mod:`bisect`.

    Not a full :class:`~collections.abc.Sequence`: indexing does not check
    bounds (it is bisect's hot path, where the index is always in range).
    """

    __slots__ = ("data", "width")

    def __init__(self, data: bytes, width: int) -> None:
        self.data, self.width = data, width

    def __len__(self) -> int:
        return len(self.data) // self.width

    def __getitem__(self, i: int) -> bytes:
        w = self.width
        return self.data[i * w : (i + 1) * w]

    def __iter__(self) -> Iterator[bytes]:
        return iter(self.chunks())

    def __contains__(self, key: object) -> bool:
        return _contains(self, key)

    def chunks(self) -> list[bytes]:
        """Every key, in order."""
        return split(self.data, self.width)


def _contains(items: Any, item: Any) -> bool:
    """Whether the sorted ``items`` hold ``item``: one bisection."""
    at = bisect.bisect_left(items, item)
    return at < len(items) and items[at] == item


class _SortedOps(Generic[T, D]):
    """Lookups and splicing on sorted data of type ``D`` holding items ``T``.

    The data is passed to every call rather than held, so that one instance
    serves every array of its kind (every ``v4_exact``, say).  A subclass says
    how to view the data for :mod:`bisect`, cut a stretch of it and join
    stretches back together.
    """

    def _view(self, data: D) -> Any:
        """``data`` as a sequence of items for :mod:`bisect`."""
        raise NotImplementedError

    def _cut(self, data: D, start: int, stop: int) -> Any:
        """Items ``start`` to ``stop``, in a form :meth:`_join` takes (no copy)."""
        raise NotImplementedError

    def _repeat(self, item: T, n: int) -> Any:
        """``n`` copies of ``item``, in a form :meth:`_join` takes."""
        raise NotImplementedError

    def _join(self, parts: list[Any]) -> D:
        raise NotImplementedError

    def contains(self, data: D, item: T) -> bool:
        return _contains(self._view(data), item)

    def count(self, data: D, item: T) -> int:
        """Copies of ``item`` (a sorted array may hold several)."""
        view = self._view(data)
        return bisect.bisect_right(view, item) - bisect.bisect_left(view, item)

    def splice(self, data: D, removals: Mapping[T, int], insertions: Mapping[T, int]) -> D:
        """``data`` with ``n`` copies of each removal gone and ``n`` copies of
        each insertion added, still sorted.

        Each change is found by bisection and the unchanged runs between them
        are copied at C speed, so the cost is one copy of the data plus
        ``log(len)`` per change.  Raises :class:`SpliceError` if a removal
        has fewer than ``n`` copies, or an item is both removed and inserted.
        """
        if not removals and not insertions:
            return data
        if removals.keys() & insertions.keys():
            raise SpliceError("an item both removed and inserted")
        view = self._view(data)
        events = []
        for item, n in removals.items():
            at = bisect.bisect_left(view, item)
            # Sorted, so the n items from ``at`` on are all copies of ``item``
            # exactly when the last of them is.
            if at + n > len(view) or view[at + n - 1] != item:
                raise SpliceError("removing an item that is not there")
            events.append((at, 1, item, n))
        events.extend((bisect.bisect_left(view, item), 0, item, n) for item, n in insertions.items())
        # At one position, insertions (kind 0) go before a removed run: an
        # item inserted there sorts before the removed one.
        events.sort()
        parts = []
        done = 0
        for at, kind, item, n in events:
            parts.append(self._cut(data, done, at))
            if kind:
                done = at + n
            else:
                done = at
                parts.append(self._repeat(item, n))
        parts.append(self._cut(data, done, len(view)))
        return self._join(parts)


class PackedOps(_SortedOps[bytes, bytes]):
    """Operations on sorted concatenated ``width``-byte keys (``v4_exact``...)."""

    def __init__(self, width: int) -> None:
        self.width = width

    def _view(self, data: bytes) -> PackedKeys:
        return PackedKeys(data, self.width)

    def _cut(self, data: bytes, start: int, stop: int) -> memoryview:
        return memoryview(data)[start * self.width : stop * self.width]

    def _repeat(self, item: bytes, n: int) -> bytes:
        return item * n

    def _join(self, parts: list[bytes | memoryview]) -> bytes:
        return b"".join(parts)


class TupleOps(_SortedOps[T, tuple[T, ...]]):
    """:class:`PackedOps`'s operations for a sorted tuple (the prefixes of an AddrSet)."""

    def _view(self, data: tuple[T, ...]) -> tuple[T, ...]:
        return data

    def _cut(self, data: tuple[T, ...], start: int, stop: int) -> tuple[T, ...]:
        return data[start:stop]

    def _repeat(self, item: T, n: int) -> tuple[T, ...]:
        return (item,) * n

    def _join(self, parts: list[tuple[T, ...]]) -> tuple[T, ...]:
        return tuple(itertools.chain.from_iterable(parts))


def remove_keys(data: bytes, keys: Iterable[bytes], width: int) -> bytes:
    """``data`` without ``keys``; :class:`SpliceError` if one is not in ``data``."""
    return PackedOps(width).splice(data, dict.fromkeys(keys, 1), {})


# --------------------------------------------------------------------------
# Merging and diffing


def union(a: bytes, b: bytes, width: int) -> bytes:
    """Merge two sorted packed arrays of unique keys.

    The common case is a few inline addresses next to a huge list file, so a
    small side is inserted into the big one (O(small * log big) plus one
    copy) instead of sorting a million items again on every load.
    """
    if not a:
        return b
    if not b:
        return a
    small, big = (a, b) if len(a) <= len(b) else (b, a)
    if len(small) // width <= _SMALL_UNION:
        keys = PackedKeys(big, width)
        return PackedOps(width).splice(big, {}, {item: 1 for item in split(small, width) if item not in keys})
    if width == 4:
        return sorted_unique_v4(a + b)
    return sorted_unique(a + b, width)


def diff_sorted(old: bytes, new: bytes, width: int) -> tuple[bytes, bytes]:
    """(added, removed) between two sorted packed key arrays.

    Work grows with the number of changes, not with the size of the arrays
    or the distance between changes: equal stretches are recognised by a
    memcmp (``bytes.startswith`` on a memoryview, no copy), and the rest is
    split around its middle key, found in the other array by bisection.
    One changed line of a million-line list costs about log2(n) splits.
    """
    added: list[bytes] = []
    removed: list[bytes] = []
    if old != new:
        _diff_range(old, 0, len(old) // width, new, 0, len(new) // width, width, added, removed)
    return b"".join(added), b"".join(removed)


def _diff_range(
    old: bytes, o0: int, o1: int, new: bytes, n0: int, n1: int, width: int, added: list[bytes], removed: list[bytes]
) -> None:
    """Diff old[o0:o1] against new[n0:n1] (key indexes), appending in sorted order."""
    while True:
        if o1 - o0 == n1 - n0 and old.startswith(memoryview(new)[n0 * width : n1 * width], o0 * width):
            return
        if o0 == o1:
            added.append(new[n0 * width : n1 * width])
            return
        if n0 == n1:
            removed.append(old[o0 * width : o1 * width])
            return
        if o1 - o0 <= _SMALL_DIFF and n1 - n0 <= _SMALL_DIFF:
            a = set(split(old[o0 * width : o1 * width], width))
            b = set(split(new[n0 * width : n1 * width], width))
            added.extend(sorted(b - a))
            removed.extend(sorted(a - b))
            return
        m = (o0 + o1) // 2
        key = old[m * width : (m + 1) * width]
        j = bisect.bisect_left(PackedKeys(new, width), key, n0, n1)
        _diff_range(old, o0, m, new, n0, j, width, added, removed)
        if j < n1 and new[j * width : (j + 1) * width] == key:
            o0, n0 = m + 1, j + 1
        else:
            removed.append(key)
            o0, n0 = m + 1, j
