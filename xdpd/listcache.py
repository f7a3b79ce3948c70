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
    * otherwise the common prefix and suffix of the old and new bytes are
      found with C-speed compares, widened to whole lines, and only the lines
      in between, old and new, are parsed.  Their addresses are removed from
      and inserted into the sorted packed arrays (a removed address stays if
      another copy is left in the file), and bad lines are reported with
      their line numbers in the new file;
    * when the changed stretch is more than ``max_patch_fraction`` of the
      file, or changes more than ``max_patch_items`` addresses, the file is
      parsed in full: patching is then no faster.

    A version with problems is never kept, so after a bad edit the next load
    compares against the last good version, which is close to the fixed one.

    :meth:`union` does the same for a rule's union of several sets: it
    patches the previous load's result with what changed in its inputs,
    rather than sorting a million addresses again.
    """

    def __init__(self, *, max_patch_fraction: float = 1 / 16, max_patch_items: int = 20_000) -> None:
        self.max_patch_fraction = max_patch_fraction
        self.max_patch_items = max_patch_items
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
        start, old_end, new_end = changed_lines(old, new)
        if (old_end - start) + (new_end - start) > self.max_patch_fraction * max(len(old), len(new)):
            return None
        try:
            gone = parse_lines(old, start, old_end)
        except NotText:  # pragma: no cover - the old version parsed cleanly
            return None
        if gone.nbad:  # pragma: no cover - likewise
            return None
        try:
            came = parse_lines(new, start, new_end)
        except NotText as exc:
            # The unchanged lines are text, so the first bad byte is here.
            raise ConfigError([exc.problem(new, path, origin)]) from None
        if came.nbad:
            # The unchanged lines parsed cleanly before, so all bad lines are here.
            raise ConfigError(came.problems(path, new.count(b"\n", 0, start)))
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


def changed_lines(old: bytes, new: bytes) -> tuple[int, int, int]:
    """The stretch of whole lines where ``old`` and ``new`` differ.

    Returns ``(start, old_end, new_end)``: ``old[:start] == new[:start]``,
    ``old[old_end:] == new[new_end:]``, and all three are line boundaries
    (just after a ``\\n``, or an end of the data).  Each unchanged line
    means the same in both versions: a line that starts with a byte order
    mark counts as changed if it moves to or from the start of the data.
    """
    prefix = _common_prefix(old, new)
    suffix = _common_suffix(old, new, min(len(old), len(new)) - prefix)
    start = old.rfind(b"\n", 0, prefix) + 1
    old_end, new_end = len(old) - suffix, len(new) - suffix
    if not (_line_start(old, old_end) and _line_start(new, new_end)):
        # The first newline inside the common suffix ends the stretch.
        old_end = _line_end(old, old_end)
        new_end = old_end + len(new) - len(old)
    if (old_end == 0) != (new_end == 0) and old.startswith(BOM, old_end):
        old_end = _line_end(old, old_end)
        new_end = old_end + len(new) - len(old)
    return start, old_end, new_end


def _line_end(data: bytes, pos: int) -> int:
    """Just after the first newline at or after ``pos``, or the end of ``data``."""
    newline = data.find(b"\n", pos)
    return newline + 1 if newline >= 0 else len(data)


def _line_start(data: bytes, pos: int) -> bool:
    return pos == 0 or data[pos - 1] == 0x0A


def _common_prefix(a: bytes, b: bytes) -> int:
    """Length of the common prefix, by halving: about len(a) bytes of memcmp."""
    view = memoryview(b)
    lo, hi = 0, min(len(a), len(b))  # a[:lo] == b[:lo]; the answer is <= hi
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if a.startswith(view[lo:mid], lo):
            lo = mid
        else:
            hi = mid - 1
    return lo


def _common_suffix(a: bytes, b: bytes, limit: int) -> int:
    """Length of the common suffix, at most ``limit``."""
    view = memoryview(b)
    la, lb = len(a), len(b)
    lo, hi = 0, limit
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if a.endswith(view[lb - mid : lb - lo], 0, la - lo):
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
