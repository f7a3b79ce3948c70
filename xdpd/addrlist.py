"""Address lists: inline YAML items and list files -> :class:`model.AddrSet`.

List files are the one part of the configuration that can be huge (a block
list of a million addresses is routine), so they are handled for speed and
memory: plain addresses go through :func:`socket.inet_pton` and straight into
a packed buffer, so no per-address Python object survives the parse.  Only
lines that are not plain addresses (CIDRs, comments, junk) take the slow
:mod:`ipaddress` path.

A list file is a sequence of lines, each ending in ``\\n`` (a ``\\r`` before it
is ignored, as is other surrounding whitespace); ``#`` starts a comment; a
UTF-8 byte order mark at the start is allowed.  It must be UTF-8 text: invalid
UTF-8 or a NUL byte makes the whole file invalid.

:class:`ListCache` keeps what the last load of each list file produced, so
that reloading after a small edit of a million-line file re-parses only the
edited lines (see its docstring).

:class:`Problem` and :class:`ConfigError` live here rather than in
:mod:`xdpd.config` because this module is the lower layer: config imports
addrlist, never the other way round.  :mod:`xdpd.config` re-exports both.
"""

from __future__ import annotations

import bisect
import ipaddress
import itertools
import operator
import os
import socket
import stat
import sys
from array import array
from collections import Counter
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from xdpd.model import AddrSet, Origin

MAX_BAD_LINES = 20
"""Bad lines reported per list file; a wrong file would otherwise flood."""

_SHOW_MAX = 60
"""Longest piece of user text quoted back in a message."""

_BLOCK = 1 << 20
"""Bytes of a list file decoded and split at a time, to bound the memory the
per-line strings of a huge file take while it is parsed."""

_BOM = b"\xef\xbb\xbf"
_NOT_UTF8 = "not valid UTF-8"
_NUL = "NUL byte; a list file is UTF-8 text, not binary or UTF-16"

_SMALL_UNION = 4096
"""Up to this many addresses, :func:`union` inserts them into the other,
sorted side one by one instead of sorting both sides again."""


def format_origin(origin: Origin) -> str:
    """Render an origin, leaving out a column of 0.

    List-file lines have no meaningful column, and ``FILE:LINE`` is what
    editors and ``grep -n`` users expect; :class:`model.Origin` itself always
    prints the column when there is a line.
    """
    if origin.line and not origin.col:
        return f"{origin.path}:{origin.line}"
    return str(origin)


@dataclass(frozen=True)
class Problem:
    """One thing wrong with the configuration, and where it is."""

    origin: Origin
    message: str

    def __str__(self) -> str:
        return f"{format_origin(self.origin)}: {self.message}"


class ConfigError(Exception):
    """The configuration is invalid; ``problems`` lists everything found.

    All problems are collected before raising so that a user fixing a config
    sees every mistake in one run instead of one per reload.
    """

    def __init__(self, problems: Iterable[Problem]) -> None:
        self.problems: list[Problem] = list(problems)
        super().__init__(self.problems)

    def __str__(self) -> str:
        return "\n".join(str(p) for p in self.problems)


class BadAddress(ValueError):
    """An item is not an address or prefix; ``str()`` is the user message."""


def show(text: str) -> str:
    """Quote user text for a message, cut short so one bad line stays one line.

    Unprintable characters are escaped as Python would (``\\r``, ``\\x00``),
    so a stray carriage return cannot garble the terminal or the log.
    """
    if len(text) > _SHOW_MAX:
        text = text[:_SHOW_MAX] + "..."
    if not text.isprintable():
        text = "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)
    return "'" + text + "'"


def parse_one(text: str) -> tuple[int, bytes, int]:
    """Parse one address or CIDR into ``(version, packed network, prefix len)``.

    Host bits beyond the prefix are an error rather than silently masked:
    ``192.0.2.1/24`` usually means the author meant a host, or a different
    network, and guessing wrong changes what is dropped.
    """
    if "%" in text:
        # ipaddress accepts IPv6 scope ids, which an XDP filter cannot match.
        raise BadAddress(f"bad address {show(text)}: scope ids are not supported")
    try:
        if "/" not in text:
            addr = ipaddress.ip_address(text)
            return addr.version, addr.packed, addr.max_prefixlen
        net = ipaddress.ip_network(text, strict=True)
    except ValueError:
        raise BadAddress(_bad_address_message(text)) from None
    return net.version, net.network_address.packed, net.prefixlen


def _bad_address_message(text: str) -> str:
    """Explain a rejected item, suggesting the network if only host bits are wrong."""
    if "/" in text:
        try:
            net = ipaddress.ip_network(text, strict=False)
        except ValueError:
            pass
        else:
            return f"bad address {show(text)}: host bits set; did you mean {net}?"
    return f"bad address {show(text)}"


class _Collector:
    """Accumulates parsed addresses, duplicates included, until they are sorted.

    Exact addresses stay packed; prefixes are few in practice and kept as the
    ``(packed, prefix len)`` tuples an :class:`AddrSet` holds.
    """

    def __init__(self) -> None:
        self.v4 = bytearray()
        self.v6 = bytearray()
        self.v4_prefixes: list[tuple[bytes, int]] = []
        self.v6_prefixes: list[tuple[bytes, int]] = []

    def add(self, version: int, packed: bytes, plen: int) -> None:
        if version == 4:
            if plen == 32:
                self.v4 += packed
            else:
                self.v4_prefixes.append((packed, plen))
        elif plen == 128:
            self.v6 += packed
        else:
            self.v6_prefixes.append((packed, plen))

    def build(self) -> AddrSet:
        return AddrSet(
            v4_exact=sorted_unique_v4(self.v4),
            v6_exact=sorted_unique(self.v6, 16),
            v4_prefixes=tuple(sorted(set(self.v4_prefixes))),
            v6_prefixes=tuple(sorted(set(self.v6_prefixes))),
        )


# --------------------------------------------------------------------------
# Sorted packed arrays


def sorted_unique_v4(packed: bytes | bytearray) -> bytes:
    """Sort and deduplicate concatenated 4-byte network-order addresses."""
    return _sorted_counted_v4(packed, want_extras=False)[0]


def sorted_unique(packed: bytes | bytearray, width: int) -> bytes:
    """Sort and deduplicate concatenated fixed-width items (bytewise order)."""
    return _sorted_counted(packed, width, want_extras=False)[0]


def _sorted_counted_v4(packed: bytes | bytearray, *, want_extras: bool = True) -> tuple[bytes, bytes]:
    """Sorted unique 4-byte items, and the sorted surplus copies of duplicates.

    Going through ``array('I')`` sorts small ints instead of bytes objects,
    which measured about twice as fast on a million addresses, and removes
    duplicates in one linear pass after sorting instead of building a set.
    The surplus (every copy after the first) is usually empty and then costs
    nothing; it is what lets :class:`ListCache` know whether a deleted line
    was the last copy of its address.
    """
    if len(packed) <= 4:
        return bytes(packed), b""
    arr = array("I")
    if arr.itemsize != 4:  # pragma: no cover - every Linux ABI has 4-byte int
        return _sorted_counted(packed, 4, want_extras=want_extras)
    arr.frombytes(packed)
    swap = sys.byteorder == "little"
    if swap:
        arr.byteswap()
    values = sorted(arr)
    del arr
    unique_values, extra_values = _dedupe(values)
    unique = array("I", unique_values)
    del values, unique_values
    extras = array("I", extra_values if want_extras else ())
    if swap:
        unique.byteswap()
        extras.byteswap()
    return unique.tobytes(), extras.tobytes()


def _sorted_counted(packed: bytes | bytearray, width: int, *, want_extras: bool = True) -> tuple[bytes, bytes]:
    """:func:`_sorted_counted_v4` for any width (bytewise order).

    Sorting first and dropping neighbours that repeat measured faster and
    smaller than building a set of a million 16-byte objects.
    """
    if len(packed) <= width:
        return bytes(packed), b""
    items = _split(packed, width)
    items.sort()
    unique, extras = _dedupe(items)
    del items
    return b"".join(unique), b"".join(extras) if want_extras else b""


def _sorted_counted_prefixes(prefixes: list[tuple[bytes, int]]) -> tuple[tuple[tuple[bytes, int], ...], bytes]:
    """Sorted unique prefixes, and the surplus copies packed as :func:`_prefix_key`."""
    unique, extras = _dedupe(sorted(prefixes))
    return tuple(unique), b"".join(map(_prefix_key, extras))


def _dedupe(values: list[Any]) -> tuple[Iterable[Any], list[Any]]:
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


_NOTHING = object()
"""Differs from every item, so the first item always starts a run."""


def _split(packed: bytes | bytearray, width: int) -> list[bytes]:
    data = bytes(packed)
    return [data[i : i + width] for i in range(0, len(data), width)]


def _prefix_key(prefix: tuple[bytes, int]) -> bytes:
    """A prefix as one fixed-width item that sorts like the tuple does."""
    return prefix[0] + bytes((prefix[1],))


class _Stale(Exception):
    """The cached state does not fit the old file; parse the new one in full.

    Never expected: raised by consistency checks so that a bug in the patch
    logic costs time, not correctness.
    """


class _Packed:
    """Operations on sorted concatenated fixed-width items (``v4_exact``...).

    Lookups bisect in Python, about 25 steps of a slice compare for a million
    items; :meth:`splice` copies the unchanged runs at C speed.
    """

    def __init__(self, width: int) -> None:
        self.width = width

    def bisect(self, data: bytes, item: bytes, *, right: bool = False) -> int:
        width = self.width
        lo, hi = 0, len(data) // width
        while lo < hi:
            mid = (lo + hi) // 2
            here = data[mid * width : mid * width + width]
            if here < item or (right and here == item):
                lo = mid + 1
            else:
                hi = mid
        return lo

    def contains(self, data: bytes, item: bytes) -> bool:
        at = self.bisect(data, item) * self.width
        return data[at : at + self.width] == item

    def count(self, data: bytes, item: bytes) -> int:
        if not data:
            return 0
        return self.bisect(data, item, right=True) - self.bisect(data, item)

    def splice(self, data: bytes, removals: Mapping[bytes, int], insertions: Mapping[bytes, int]) -> bytes:
        """Remove ``n`` copies of each removal, insert ``n`` copies of each insertion."""
        if not removals and not insertions:
            return data
        if removals.keys() & insertions.keys():
            raise _Stale("an item both removed and inserted")
        width = self.width
        events = []
        for item, n in removals.items():
            at = self.bisect(data, item)
            if data[at * width : (at + n) * width] != item * n:
                raise _Stale("removing an item that is not there")
            events.append((at, 1, item, n))
        events.extend((self.bisect(data, item), 0, item, n) for item, n in insertions.items())
        # At one position, insertions (kind 0) go before a removed run: an
        # item inserted there sorts before the removed one.
        events.sort()
        view = memoryview(data)
        parts: list[bytes | memoryview] = []
        done = 0
        for at, kind, item, n in events:
            parts.append(view[done * width : at * width])
            if kind:
                done = at + n
            else:
                done = at
                parts.append(item * n)
        parts.append(view[done * width :])
        return b"".join(parts)


class _Tuples:
    """:class:`_Packed`'s operations for the sorted prefix tuples of an AddrSet."""

    def contains(self, data: tuple[Any, ...], item: Any) -> bool:
        at = bisect.bisect_left(data, item)
        return at < len(data) and data[at] == item

    def splice(
        self, data: tuple[Any, ...], removals: Mapping[Any, int], insertions: Mapping[Any, int]
    ) -> tuple[Any, ...]:
        if not removals and not insertions:
            return data
        events = []
        for item in removals:
            at = bisect.bisect_left(data, item)
            if at >= len(data) or data[at] != item:
                raise _Stale("removing a prefix that is not there")
            events.append((at, 1, item))
        events.extend((bisect.bisect_left(data, item), 0, item) for item in insertions)
        events.sort()
        parts: list[tuple[Any, ...]] = []
        done = 0
        for at, kind, item in events:
            parts.append(data[done:at])
            if kind:
                done = at + 1
            else:
                done = at
                parts.append((item,))
        parts.append(data[done:])
        return tuple(itertools.chain.from_iterable(parts))


_V4, _V6, _V4P, _V6P = _Packed(4), _Packed(16), _Packed(5), _Packed(17)
_TUPLES = _Tuples()


def _identity(item: bytes) -> bytes:
    return item


# --------------------------------------------------------------------------
# Inline items and union


def parse_addr_items(items: list[tuple[str, Origin]]) -> AddrSet:
    """Parse inline YAML address items, reporting every bad one at its origin."""
    collector = _Collector()
    problems: list[Problem] = []
    for text, origin in items:
        try:
            collector.add(*parse_one(text.strip()))
        except BadAddress as exc:
            problems.append(Problem(origin, str(exc)))
    if problems:
        raise ConfigError(problems)
    return collector.build()


def union(a: AddrSet, b: AddrSet) -> AddrSet:
    """The set of addresses in either ``a`` or ``b``."""
    if not b:
        return a
    if not a:
        return b
    return AddrSet(
        v4_exact=_union_exact(a.v4_exact, b.v4_exact, _V4),
        v6_exact=_union_exact(a.v6_exact, b.v6_exact, _V6),
        v4_prefixes=tuple(sorted(set(a.v4_prefixes) | set(b.v4_prefixes))),
        v6_prefixes=tuple(sorted(set(a.v6_prefixes) | set(b.v6_prefixes))),
    )


def union_all(sets: Iterable[AddrSet]) -> AddrSet:
    """The union of any number of sets (empty for none)."""
    result = AddrSet()
    for addrs in sets:
        result = union(result, addrs)
    return result


def _union_exact(a: bytes, b: bytes, packed: _Packed) -> bytes:
    """Merge two sorted packed lists.

    The common case is a few inline addresses next to a huge list file, so a
    small side is inserted into the big one (O(small * log big) plus one
    copy) instead of sorting a million items again on every load.
    """
    if not a:
        return b
    if not b:
        return a
    small, big = (a, b) if len(a) <= len(b) else (b, a)
    width = packed.width
    if len(small) // width <= _SMALL_UNION:
        missing = {item: 1 for item in _split(small, width) if not packed.contains(big, item)}
        return packed.splice(big, {}, missing)
    if width == 4:
        return sorted_unique_v4(a + b)
    return sorted_unique(a + b, width)


# --------------------------------------------------------------------------
# List files: reading


def read_list_file(path: str, origin_of_reference: Origin) -> bytes:
    """The bytes of a list file; a :class:`ConfigError` at the reference if unreadable.

    Directories, FIFOs and devices are refused before they are opened (they
    would fail, block, or have side effects on open), and again on the open
    descriptor in case the path was swapped in between.
    """
    try:
        mode = os.stat(path).st_mode
    except (OSError, ValueError) as exc:
        raise ConfigError([_read_problem(path, origin_of_reference, exc)]) from None
    if not stat.S_ISREG(mode):
        raise ConfigError([_not_regular(path, origin_of_reference)])
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        with os.fdopen(fd, "rb") as stream:
            if not stat.S_ISREG(os.fstat(stream.fileno()).st_mode):
                raise ConfigError([_not_regular(path, origin_of_reference)])
            return stream.read()
    except OSError as exc:
        raise ConfigError([_read_problem(path, origin_of_reference, exc)]) from None


def _not_regular(path: str, origin: Origin) -> Problem:
    return Problem(origin, f"list file {path} is not a regular file")


def _read_problem(path: str, origin: Origin, exc: Exception) -> Problem:
    reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
    return Problem(origin, f"cannot read list file {path}: {reason}")


# --------------------------------------------------------------------------
# List files: parsing


class _NotText(Exception):
    """Invalid UTF-8 or a NUL byte at byte offset ``pos`` of the file."""

    def __init__(self, pos: int, message: str) -> None:
        super().__init__(pos, message)
        self.pos = pos
        self.message = message

    def problem(self, data: bytes, path: str, origin_of_reference: Origin) -> Problem:
        line = data.count(b"\n", 0, self.pos) + 1
        return Problem(
            Origin(path, line),
            f"{self.message} (list file referenced at {format_origin(origin_of_reference)})",
        )


class _Lines:
    """The parsed lines of one stretch of a list file, line 1 being its first."""

    def __init__(self) -> None:
        self.collector = _Collector()
        self.bad: list[tuple[int, str]] = []
        """The first :data:`MAX_BAD_LINES` bad lines, as (line, message)."""
        self.nbad = 0
        self.first_unlisted = 0
        """Line of the first bad line beyond those in ``bad``."""

    def problems(self, path: str, line_offset: int) -> list[Problem]:
        problems = [Problem(Origin(path, line + line_offset), message) for line, message in self.bad]
        if self.nbad > MAX_BAD_LINES:
            problems.append(
                Problem(
                    Origin(path, self.first_unlisted + line_offset),
                    f"... and {self.nbad - MAX_BAD_LINES} more bad lines from here on",
                )
            )
        return problems

    def parse(self, lines: list[str], first: int) -> None:
        """The hot loop: one ``inet_pton`` per plain address, nothing retained.

        IPv6 text always has a ':' and IPv4 text never, so each line gets one
        ``inet_pton`` call.  Everything that is not a plain address (comments,
        blanks, CIDRs, junk) fails it and goes through :meth:`_slow_line`.
        """
        v4, v6 = self.collector.v4, self.collector.v6
        pton = socket.inet_pton
        af_inet, af_inet6 = socket.AF_INET, socket.AF_INET6
        for lineno, line in enumerate(lines, first):
            line = line.strip()
            try:
                if ":" in line:
                    v6 += pton(af_inet6, line)
                else:
                    v4 += pton(af_inet, line)
                continue
            except (OSError, ValueError):  # ValueError: unencodable text
                pass
            self._slow_line(line, lineno)

    def _slow_line(self, line: str, lineno: int) -> None:
        if "#" in line:
            line = line.split("#", 1)[0].rstrip()
        if not line:
            return
        try:
            self.collector.add(*parse_one(line))
        except BadAddress as exc:
            self.nbad += 1
            if self.nbad <= MAX_BAD_LINES:
                self.bad.append((lineno, str(exc)))
            elif self.nbad == MAX_BAD_LINES + 1:
                self.first_unlisted = lineno


def _parse_range(data: bytes, start: int, end: int) -> _Lines:
    """Parse the whole lines ``data[start:end]``, a block at a time.

    Raises :class:`_NotText` at the first NUL byte or invalid UTF-8 sequence.
    ``start`` and ``end`` must be line boundaries (or the ends of ``data``),
    so every block starts on a character boundary.
    """
    lines = _Lines()
    if start == 0 and data.startswith(_BOM):
        start = min(len(_BOM), end)
    lineno = 1
    pos = start
    while pos < end:
        stop = end
        if end - pos > _BLOCK:
            newline = data.rfind(b"\n", pos, pos + _BLOCK)
            if newline < 0:
                newline = data.find(b"\n", pos + _BLOCK, end)
            if newline >= 0:
                stop = newline + 1
        block = data[pos:stop]
        nul = block.find(b"\0")
        try:
            text = block.decode("utf-8")
        except UnicodeDecodeError as exc:
            if 0 <= nul < exc.start:
                raise _NotText(pos + nul, _NUL) from None
            raise _NotText(pos + exc.start, _NOT_UTF8) from None
        if nul >= 0:
            raise _NotText(pos + nul, _NUL)
        del block
        split = text.split("\n")
        del text
        lines.parse(split, lineno)
        lineno += len(split) - 1
        pos = stop
    return lines


@dataclass(frozen=True)
class _Parsed:
    """A list file that parsed without problems: what :class:`ListCache` keeps.

    ``extras`` holds, per part of the AddrSet (v4, v6, v4 prefixes, v6
    prefixes), the surplus copies of addresses listed more than once, sorted
    and packed; with them the cache knows whether deleting a line removes
    its address from the set.  They are empty unless the file has duplicates.
    """

    data: bytes
    addrs: AddrSet
    extras: tuple[bytes, bytes, bytes, bytes]

    @classmethod
    def build(cls, data: bytes, collector: _Collector) -> _Parsed:
        v4, v4_extras = _sorted_counted_v4(collector.v4)
        v6, v6_extras = _sorted_counted(collector.v6, 16)
        v4p, v4p_extras = _sorted_counted_prefixes(collector.v4_prefixes)
        v6p, v6p_extras = _sorted_counted_prefixes(collector.v6_prefixes)
        addrs = AddrSet(v4_exact=v4, v6_exact=v6, v4_prefixes=v4p, v6_prefixes=v6p)
        return cls(data, addrs, (v4_extras, v6_extras, v4p_extras, v6p_extras))


def _parse_file(data: bytes, path: str, origin_of_reference: Origin) -> _Parsed:
    """Parse a whole list file; a :class:`ConfigError` lists its problems."""
    try:
        lines = _parse_range(data, 0, len(data))
    except _NotText as exc:
        raise ConfigError([exc.problem(data, path, origin_of_reference)]) from None
    if lines.nbad:
        raise ConfigError(lines.problems(path, 0))
    return _Parsed.build(data, lines.collector)


def load_addr_file(path: str, origin_of_reference: Origin) -> AddrSet:
    """Read a list file: one address or CIDR per line, ``#`` comments.

    Problems with the file as a whole (missing, unreadable, not a regular
    file) are reported at ``origin_of_reference`` (the YAML node naming the
    file) and name the file; bad lines are reported as ``FILE:LINE``, at most
    :data:`MAX_BAD_LINES` of them; a file that is not UTF-8 text is reported
    at the line of the first offending byte, naming the reference.
    """
    return _parse_file(read_list_file(path, origin_of_reference), path, origin_of_reference).addrs


# --------------------------------------------------------------------------
# Re-loading list files after a small edit


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
        self._entries: dict[str, _Parsed] = {}
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
        """:func:`load_addr_file`, re-using what is known about the file."""
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
        parsed = _parse_file(data, path, origin_of_reference)
        self._entries[path] = parsed
        self._changes.pop(path, None)
        self.last[path] = "parsed"
        return parsed.addrs

    def _patch(self, entry: _Parsed, new: bytes, path: str, origin: Origin) -> tuple[_Parsed, _Change | None] | None:
        """``entry`` updated to ``new``, or None when a full parse is the better way."""
        old = entry.data
        start, old_end, new_end = changed_lines(old, new)
        if (old_end - start) + (new_end - start) > self.max_patch_fraction * max(len(old), len(new)):
            return None
        try:
            gone = _parse_range(old, start, old_end)
        except _NotText:  # pragma: no cover - the old version parsed cleanly
            return None
        if gone.nbad:  # pragma: no cover - likewise
            return None
        try:
            came = _parse_range(new, start, new_end)
        except _NotText as exc:
            # The unchanged lines are text, so the first bad byte is here.
            raise ConfigError([exc.problem(new, path, origin)]) from None
        if came.nbad:
            # The unchanged lines parsed cleanly before, so all bad lines are here.
            raise ConfigError(came.problems(path, new.count(b"\n", 0, start)))
        try:
            return _apply(entry, new, gone.collector, came.collector, self.max_patch_items)
        except _Stale:  # pragma: no cover - a bug; the full parse is still right
            return None

    def union(self, sets: Iterable[AddrSet]) -> AddrSet:
        """:func:`union_all`, patching the last load's result where it can.

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
                except _Stale:  # pragma: no cover - a bug; computing afresh is still right
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
    if (old_end == 0) != (new_end == 0) and old.startswith(_BOM, old_end):
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
    entry: _Parsed, new: bytes, gone: _Collector, came: _Collector, max_items: int
) -> tuple[_Parsed, _Change | None] | None:
    """``entry`` with the addresses of the old lines ``gone`` replaced by ``came``'s.

    Returns the new entry and how its AddrSet changed (None if it did not,
    and the AddrSet object is kept), or None if there are too many changes.
    """
    deltas = [
        _net(_split(gone.v4, 4), _split(came.v4, 4)),
        _net(_split(gone.v6, 16), _split(came.v6, 16)),
        _net(gone.v4_prefixes, came.v4_prefixes),
        _net(gone.v6_prefixes, came.v6_prefixes),
    ]
    if sum(len(removed) + len(added) for removed, added in deltas) > max_items:
        return None
    if not any(removed or added for removed, added in deltas):
        return _Parsed(new, entry.addrs, entry.extras), None
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
    return _Parsed(new, result, (extras[0], extras[1], extras[2], extras[3])), change


_PART_OPS: tuple[tuple[Any, _Packed, Callable[[Any], bytes]], ...] = (
    (_V4, _V4, _identity),
    (_V6, _V6, _identity),
    (_TUPLES, _V4P, _prefix_key),
    (_TUPLES, _V6P, _prefix_key),
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
    extra_seq: _Packed,
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
                raise _Stale("more copies removed than the file had")
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
