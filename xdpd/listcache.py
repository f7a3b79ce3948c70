"""Re-loading list files after a small edit, in time that grows with the edit.

A daemon re-reads its config on every change, and the list files in it can
hold a million addresses; parsing such a file again takes most of a second.
:class:`ListCache` remembers what the last load of each file produced and,
after an edit, re-parses only the lines that changed (found by
:func:`changed_lines`) and splices their addresses into the sorted packed
arrays (:mod:`xdpd.packed`); parsing itself is :mod:`xdpd.addrlist`'s.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass
from typing import Any

from xdpd.addrlist import (
    BOM,
    Collector,
    NotText,
    ParsedLines,
    ParsedList,
    parse_lines,
    parse_list,
    prefix_key,
    read_list_file,
    union_all,
)
from xdpd.model import AddrSet, Origin
from xdpd.packed import PackedOps, SpliceError, TupleOps, split
from xdpd.problems import ConfigError


SPLIT_ABOVE = 4096
"""Bytes (old + new) of a changed stretch above which :func:`changed_regions`
looks for unchanged lines inside it; below, parsing the stretch is cheaper."""

_ANCHOR_MIN = 32
"""Bytes at least of an anchor (whole lines), so that it is likely unique."""

_ANCHOR_TRIES = 4
"""Anchors tried per stretch before it is taken as changed throughout."""

_NEAR = 16384
"""Bytes either side of an anchor's expected place in the new version searched first."""


class ListCache:
    """List files as last loaded, so that a small edit is re-parsed in milliseconds.

    Keep one for the life of the daemon and pass it to every
    :func:`xdpd.config.load_config`, which calls :meth:`begin` and, when the
    config is valid, :meth:`commit`.  The result of a load through the cache
    is always equal to that of a fresh load.  One load at a time.

    For each list file the cache keeps the bytes of the last version that
    parsed without problems and its :class:`AddrSet` (the very object the
    Config holds, so it costs nothing extra), plus the surplus copies of
    duplicated addresses, packed (usually none).  Memory is therefore about
    the size of the files, with no Python object per address.

    On the next load of a file:

    * the same bytes give the same AddrSet object;
    * otherwise the stretches of lines that differ are found with C-speed
      compares and searches (:func:`changed_regions`: however many there
      are and however far apart), and only those lines, old and new, are
      parsed.  Their addresses are removed from and inserted into the sorted
      packed arrays (a removed address stays if another copy is left in the
      file), and bad lines are reported with their line numbers in the new
      file;
    * when the changed stretches add up to more than ``max_patch_fraction``
      of the file, or change more than ``max_patch_items`` addresses, the
      file is parsed in full: patching is then no faster.

    A version with problems is never kept, so after a bad edit the next load
    compares against the last good version, which is close to the fixed one.

    :meth:`union` does the same for a rule's union of several sets: it
    patches the previous load's result with what changed in its inputs,
    rather than sorting a million addresses again.
    """

    def __init__(self, *, max_patch_fraction: float = 1 / 16, max_patch_items: int = 20_000,
                 split_above: int = SPLIT_ABOVE) -> None:
        self.max_patch_fraction = max_patch_fraction
        self.max_patch_items = max_patch_items
        self.split_above = split_above
        """A changed stretch longer than this (bytes, old + new) is searched
        for unchanged lines inside it (see :func:`changed_regions`)."""
        self._entries: dict[str, ParsedList] = {}
        self._changes: dict[str, _Change] = {}
        """Per file patched since the last commit: its AddrSet before and after."""
        self._unions: list[tuple[tuple[AddrSet, ...], AddrSet]] = []
        """The unions of the last committed load: inputs and result."""
        self._new_unions: list[tuple[tuple[AddrSet, ...], AddrSet]] = []
        self.last: dict[str, str] = {}
        """How each file was last loaded: 'unchanged', 'patched' or 'parsed'
        (or 'rejected' if it had problems).  For tests and benchmarks."""

    def __contains__(self, path: object) -> bool:
        return path in self._entries

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def nbytes(self) -> int:
        """Bytes held beyond the AddrSets (which the Config holds anyway)."""
        return sum(len(e.data) + sum(map(len, e.extras)) for e in self._entries.values())

    def begin(self) -> None:
        """Start a config load (forgets the unions of a load that failed)."""
        self._new_unions = []

    def commit(self, paths: Iterable[str]) -> None:
        """End a successful load that used the files ``paths``.

        Files no longer used are forgotten, and this load's unions become
        the ones the next load patches.
        """
        keep = set(paths)
        for path in [p for p in self._entries if p not in keep]:
            del self._entries[path]
            self.last.pop(path, None)
        self._unions, self._new_unions = self._new_unions, []
        self._changes.clear()

    def load(self, path: str, origin_of_reference: Origin) -> AddrSet:
        """:func:`xdpd.addrlist.load_addr_file`, re-using what is known about the file."""
        self.last[path] = "rejected"
        data = read_list_file(path, origin_of_reference)
        entry = self._entries.get(path)
        if entry is not None:
            if entry.data == data:
                self.last[path] = "unchanged"
                return entry.addrs
            patched = self._patch(entry, data, path, origin_of_reference)
            if patched is not None:
                self._entries[path], change = patched
                if change is not None:
                    self._changes[path] = change
                self.last[path] = "patched"
                return self._entries[path].addrs
        parsed = parse_list(data, path, origin_of_reference)
        self._entries[path] = parsed
        self._changes.pop(path, None)
        self.last[path] = "parsed"
        return parsed.addrs

    def _patch(
        self, entry: ParsedList, new: bytes, path: str, origin: Origin
    ) -> tuple[ParsedList, _Change | None] | None:
        """``entry`` updated to ``new``, or None when a full parse is the better way."""
        old = entry.data
        budget = self.max_patch_fraction * max(len(old), len(new))
        regions = changed_regions(old, new, split_above=self.split_above, budget=budget)
        if regions is None:
            return None
        gone, came = ParsedLines(), ParsedLines()
        try:
            for old_start, old_end, new_start, new_end in regions:
                parse_lines(old, old_start, old_end, gone)
                parse_lines(new, new_start, new_end, came)
        except NotText as exc:
            if exc.data is old:  # pragma: no cover - the old version parsed cleanly
                return None
            # The unchanged lines are text, so the first bad byte is in a changed one.
            raise ConfigError([exc.problem(new, path, origin)]) from None
        if gone.nbad:  # pragma: no cover - likewise
            return None
        if came.nbad:
            # The unchanged lines parsed cleanly before, so all bad lines are here.
            raise ConfigError(_numbered(new, regions).problems(path, 0))
        try:
            return _apply(entry, new, gone.collector, came.collector, self.max_patch_items)
        except SpliceError:  # pragma: no cover - the cache out of step with the file
            # is a bug; let it cost time, not correctness: the full parse is still right.
            return None

    def union(self, sets: Iterable[AddrSet]) -> AddrSet:
        """:func:`xdpd.addrlist.union_all`, patching the last load's result where it can.

        A union of the last committed load whose inputs are the same, or
        equal, or files patched since, is updated with the changes: an
        address a file dropped leaves the union unless another input still
        has it; an address a file gained is inserted.
        """
        inputs = tuple(sets)
        if len(inputs) < 2:
            return inputs[0] if inputs else AddrSet()
        result = None
        for old_inputs, old_result in self._unions:
            plan = self._union_plan(old_inputs, inputs)
            if plan is not None:
                try:
                    result = _patch_union(old_inputs, old_result, plan)
                except SpliceError:  # pragma: no cover - a bug, as in _patch;
                    # computing afresh is still right.
                    continue
                break
        if result is None:
            result = union_all(inputs)
        self._new_unions.append((inputs, result))
        return result

    def _union_plan(self, old: tuple[AddrSet, ...], new: tuple[AddrSet, ...]) -> list[tuple[int, _Change]] | None:
        """Which inputs changed from ``old`` to ``new`` and how; None if unknown."""
        if len(old) != len(new):
            return None
        plan = []
        for i, (before, after) in enumerate(zip(old, new)):
            if after is before:
                continue
            for change in self._changes.values():
                if change.before is before and change.after is after:
                    plan.append((i, change))
                    break
            else:
                if after != before:
                    return None
        return plan


@dataclass(frozen=True)
class _Change:
    """How a patched list file's AddrSet differs from its previous one.

    ``removed`` and ``added`` hold, per part (v4, v6, v4 prefixes, v6
    prefixes), the items that left or joined the set.
    """

    before: AddrSet
    after: AddrSet
    removed: tuple[Collection[Any], ...]
    added: tuple[Collection[Any], ...]


def _parts(addrs: AddrSet) -> list[Any]:
    return [addrs.v4_exact, addrs.v6_exact, addrs.v4_prefixes, addrs.v6_prefixes]


def _patch_union(inputs: tuple[AddrSet, ...], result: AddrSet, plan: list[tuple[int, _Change]]) -> AddrSet:
    """``result`` (the union of ``inputs``) after the changes in ``plan``.

    Changes are applied one input at a time, so at each step ``current`` is
    exactly the inputs that ``parts`` is the union of.
    """
    parts = _parts(result)
    current = [_parts(addrs) for addrs in inputs]
    for i, change in plan:
        current[i] = _parts(change.after)
        others = current[:i] + current[i + 1 :]
        for k, seq in enumerate(_PART_SEQS):
            out = {x: 1 for x in change.removed[k] if not any(seq.contains(o[k], x) for o in others)}
            into = {x: 1 for x in change.added[k] if not seq.contains(parts[k], x)}
            parts[k] = seq.splice(parts[k], out, into)
    return AddrSet(v4_exact=parts[0], v6_exact=parts[1], v4_prefixes=parts[2], v6_prefixes=parts[3])


def changed_regions(
    old: bytes, new: bytes, *, split_above: int = SPLIT_ABOVE, budget: float = float("inf")
) -> list[tuple[int, int, int, int]] | None:
    """The stretches of whole lines where ``old`` and ``new`` differ, in order.

    Returns ``(old_start, old_end, new_start, new_end)`` per stretch: between
    and around them, ``old`` and ``new`` hold the same bytes (so the same
    lines, meaning the same: see :func:`changed_lines`), and every position
    is a line boundary.  Or None as soon as the stretches add up to more
    than ``budget`` bytes (old + new): the caller then parses the whole file.

    How: the common prefix and suffix bound one changed stretch
    (:func:`changed_lines`).  If it is longer than ``split_above``, a few
    whole lines from its middle in ``old`` are looked for in ``new``'s
    stretch (``bytes.find``); where they are, the stretch splits into the
    part before them and the part after, each narrowed the same way.  So
    100 lines changed across a million cost a few passes of memcmp and find
    over the file, not a parse of it.  Any match gives a correct answer (the
    lines outside the stretches are equal, whatever they are lined up
    with); a wrong one, say a duplicated line, only makes stretches longer.
    """
    out: list[tuple[int, int, int, int]] = []
    total = 0
    todo = [(0, len(old), 0, len(new))]
    while todo:
        region = _narrow(old, new, *todo.pop())
        o0, o1, n0, n1 = region
        size = (o1 - o0) + (n1 - n0)
        if not size:
            continue
        if size > split_above:
            anchor = _anchor(old, new, region)
            if anchor is not None:
                old_at, new_at, length = anchor
                # Right part pushed first: the left one is done first, so out stays in order.
                todo.append((old_at + length, o1, new_at + length, n1))
                todo.append((o0, old_at, n0, new_at))
                continue
        total += size
        if total > budget:
            return None
        out.append(region)
    return out


def _numbered(data: bytes, regions: list[tuple[int, int, int, int]]) -> ParsedLines:
    """The new side of ``regions`` parsed again, numbered as lines of ``data``:
    the same first bad lines, and the same cap, as a full parse reports.

    Counting lines costs a pass over the file, so it is done only when there
    is something to report.
    """
    lines = ParsedLines()
    line, counted = 1, 0
    for _, _, start, end in regions:
        line += data.count(b"\n", counted, start)
        counted = start
        parse_lines(data, start, end, lines, first_line=line)
    return lines


def changed_lines(old: bytes, new: bytes) -> tuple[int, int, int]:
    """The one stretch of whole lines that spans every difference of ``old`` and ``new``.

    Returns ``(start, old_end, new_end)``: ``old[:start] == new[:start]``,
    ``old[old_end:] == new[new_end:]``, and all three are line boundaries
    (just after a ``\\n``, or an end of the data).  Each unchanged line
    means the same in both versions: a line that starts with a byte order
    mark counts as changed if it moves to or from the start of the data.
    """
    start, old_end, _, new_end = _narrow(old, new, 0, len(old), 0, len(new))
    return start, old_end, new_end


def _narrow(old: bytes, new: bytes, o0: int, o1: int, n0: int, n1: int) -> tuple[int, int, int, int]:
    """``old[o0:o1]`` and ``new[n0:n1]`` (line boundaries) without their common
    leading and trailing lines."""
    limit = min(o1 - o0, n1 - n0)
    prefix = _common_prefix(old, o0, new, n0, limit)
    if prefix == o1 - o0 == n1 - n0:
        return o1, o1, n1, n1
    suffix = _common_suffix(old, o1, new, n1, limit - prefix)
    newline = old.rfind(b"\n", o0, o0 + prefix)
    skip = newline + 1 - o0 if newline >= 0 else 0
    old_end, new_end = o1 - suffix, n1 - suffix
    if not (_line_start(old, old_end) and _line_start(new, new_end)):
        # The first newline inside the common suffix ends the stretch.
        old_end = _line_end(old, old_end)
        new_end = old_end + n1 - o1
    if (old_end == 0) != (new_end == 0) and old.startswith(BOM, old_end):
        old_end = _line_end(old, old_end)
        new_end = old_end + n1 - o1
    return o0 + skip, old_end, n0 + skip, new_end


def _anchor(old: bytes, new: bytes, region: tuple[int, int, int, int]) -> tuple[int, int, int] | None:
    """Whole lines inside both stretches of ``region`` that are equal:
    ``(old position, new position, length)``, or None if none was found.

    Candidates start at the first line after the middle of ``old``'s
    stretch; each is searched with its leading newline, so a match in
    ``new`` starts a line too.
    """
    o0, o1, n0, n1 = region
    newline = old.find(b"\n", (o0 + o1) // 2, o1)
    for _ in range(_ANCHOR_TRIES):
        if newline < 0:
            return None
        end = old.find(b"\n", newline + _ANCHOR_MIN, o1) + 1
        if end <= 0:
            return None
        anchor = old[newline:end]
        # Where it is if the edits before it kept their length, give or take
        # a few lines: look there first, then in all of new's stretch.
        near = n0 + newline - o0
        found = new.find(anchor, max(n0, near - _NEAR), min(n1, near + _NEAR + len(anchor)))
        if found < 0:
            found = new.find(anchor, n0, n1)
        if found >= 0:
            return newline + 1, found + 1, end - newline - 1
        newline = end - 1
    return None


def _line_end(data: bytes, pos: int) -> int:
    """Just after the first newline at or after ``pos``, or the end of ``data``."""
    newline = data.find(b"\n", pos)
    return newline + 1 if newline >= 0 else len(data)


def _line_start(data: bytes, pos: int) -> bool:
    return pos == 0 or data[pos - 1] == 0x0A


def _common_prefix(a: bytes, a0: int, b: bytes, b0: int, limit: int) -> int:
    """Length of the common prefix of ``a[a0:]`` and ``b[b0:]``, at most ``limit``,
    by halving: about ``limit`` bytes of memcmp."""
    view = memoryview(b)
    lo, hi = 0, limit  # a[a0:a0+lo] == b[b0:b0+lo]; the answer is <= hi
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if a.startswith(view[b0 + lo : b0 + mid], a0 + lo):
            lo = mid
        else:
            hi = mid - 1
    return lo


def _common_suffix(a: bytes, a1: int, b: bytes, b1: int, limit: int) -> int:
    """Length of the common suffix of ``a[:a1]`` and ``b[:b1]``, at most ``limit``."""
    view = memoryview(b)
    lo, hi = 0, limit
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if a.endswith(view[b1 - mid : b1 - lo], 0, a1 - lo):
            lo = mid
        else:
            hi = mid - 1
    return lo


def _apply(
    entry: ParsedList, new: bytes, gone: Collector, came: Collector, max_items: int
) -> tuple[ParsedList, _Change | None] | None:
    """``entry`` with the addresses of the old lines ``gone`` replaced by ``came``'s.

    Returns the new entry and how its AddrSet changed (None if it did not,
    and the AddrSet object is kept), or None if there are too many changes.
    """
    deltas = [
        _net(split(gone.v4, 4), split(came.v4, 4)),
        _net(split(gone.v6, 16), split(came.v6, 16)),
        _net(gone.v4_prefixes, came.v4_prefixes),
        _net(gone.v6_prefixes, came.v6_prefixes),
    ]
    if sum(len(removed) + len(added) for removed, added in deltas) > max_items:
        return None
    if not any(removed or added for removed, added in deltas):
        return ParsedList(new, entry.addrs, entry.extras), None
    uniques = _parts(entry.addrs)
    extras = list(entry.extras)
    out: list[Collection[Any]] = []
    into: list[Collection[Any]] = []
    for k, (seq, extra_seq, key) in enumerate(_PART_OPS):
        removed, added = deltas[k]
        unique_out, unique_in, extras_out, extras_in = _set_changes(
            seq, uniques[k], extra_seq, extras[k], key, removed, added
        )
        uniques[k] = seq.splice(uniques[k], unique_out, unique_in)
        extras[k] = extra_seq.splice(extras[k], extras_out, extras_in)
        out.append(unique_out.keys())
        into.append(unique_in.keys())
    result = AddrSet(v4_exact=uniques[0], v6_exact=uniques[1], v4_prefixes=uniques[2], v6_prefixes=uniques[3])
    change = _Change(entry.addrs, result, tuple(out), tuple(into))
    return ParsedList(new, result, (extras[0], extras[1], extras[2], extras[3])), change


def _identity(item: bytes) -> bytes:
    return item


_V4, _V6, _V4P, _V6P = PackedOps(4), PackedOps(16), PackedOps(5), PackedOps(17)
_TUPLES: TupleOps[tuple[bytes, int]] = TupleOps()

_PART_OPS: tuple[tuple[Any, PackedOps, Callable[[Any], bytes]], ...] = (
    (_V4, _V4, _identity),
    (_V6, _V6, _identity),
    (_TUPLES, _V4P, prefix_key),
    (_TUPLES, _V6P, prefix_key),
)
"""Per part of an AddrSet: the operations on its unique items, those on its
surplus copies (packed), and how an item becomes a surplus item."""
_PART_SEQS = tuple(seq for seq, _, _ in _PART_OPS)


def _net(old_items: Iterable[Any], new_items: Iterable[Any]) -> tuple[Counter[Any], Counter[Any]]:
    """(removed, added) as multisets, lines that only moved cancelling out."""
    old, new = Counter(old_items), Counter(new_items)
    return old - new, new - old


def _set_changes(
    seq: Any,
    unique: Any,
    extra_seq: PackedOps,
    extras: bytes,
    key: Callable[[Any], bytes],
    removed: Counter[Any],
    added: Counter[Any],
) -> tuple[dict[Any, int], dict[Any, int], dict[bytes, int], dict[bytes, int]]:
    """How removed/added copies change a set kept as unique items plus surplus copies.

    Invariant: an item occurs ``n`` times in the file exactly when it is in
    ``unique`` and ``n - 1`` times in ``extras``.  Removing ``n`` copies takes
    them from the surplus first and the item itself only with its last copy;
    adding inserts the item if it is new and the rest as surplus.  Returns
    the removals and insertions for ``unique``, then for ``extras``.
    """
    unique_out: dict[Any, int] = {}
    unique_in: dict[Any, int] = {}
    extras_out: dict[bytes, int] = {}
    extras_in: dict[bytes, int] = {}
    for item, n in removed.items():
        surplus = extra_seq.count(extras, key(item))
        if n > surplus:
            if n > surplus + 1 or not seq.contains(unique, item):
                raise SpliceError("more copies removed than the file had")
            unique_out[item] = 1
            n = surplus
        if n:
            extras_out[key(item)] = n
    for item, n in added.items():
        if not seq.contains(unique, item):
            unique_in[item] = 1
            n -= 1
        if n:
            extras_in[key(item)] = n
    return unique_out, unique_in, extras_out, extras_in
