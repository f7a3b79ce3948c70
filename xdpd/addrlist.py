"""Address lists: inline YAML items and list files -> :class:`model.AddrSet`.

List files are the one part of the configuration that can be huge (a block
list of a million addresses is routine), so :func:`load_addr_file` is written
for speed and memory: plain addresses go through :func:`socket.inet_pton` and
straight into a packed buffer, so no per-address Python object survives the
parse.  Only lines that are not plain addresses (CIDRs, comments, junk) take
the slow :mod:`ipaddress` path.

:class:`Problem` and :class:`ConfigError` live here rather than in
:mod:`xdpd.config` because this module is the lower layer: config imports
addrlist, never the other way round.  :mod:`xdpd.config` re-exports both.
"""

from __future__ import annotations

import ipaddress
import itertools
import operator
import os
import socket
import stat
import sys
from array import array
from collections.abc import Iterable
from dataclasses import dataclass

from xdpd.model import AddrSet, Origin

MAX_BAD_LINES = 20
"""Bad lines reported per list file; a wrong file would otherwise flood."""

_SHOW_MAX = 60
"""Longest piece of user text quoted back in a message."""


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
    """Quote user text for a message, cut short so one bad line stays one line."""
    if len(text) > _SHOW_MAX:
        text = text[:_SHOW_MAX] + "..."
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
    """Accumulates parsed addresses in packed form until :meth:`build`."""

    def __init__(self) -> None:
        self.v4 = bytearray()
        self.v6 = bytearray()
        self.v4_prefixes: set[tuple[bytes, int]] = set()
        self.v6_prefixes: set[tuple[bytes, int]] = set()

    def add(self, version: int, packed: bytes, plen: int) -> None:
        if version == 4:
            if plen == 32:
                self.v4 += packed
            else:
                self.v4_prefixes.add((packed, plen))
        elif plen == 128:
            self.v6 += packed
        else:
            self.v6_prefixes.add((packed, plen))

    def build(self) -> AddrSet:
        return AddrSet(
            v4_exact=sorted_unique_v4(self.v4),
            v6_exact=sorted_unique(self.v6, 16),
            v4_prefixes=tuple(sorted(self.v4_prefixes)),
            v6_prefixes=tuple(sorted(self.v6_prefixes)),
        )


def sorted_unique_v4(packed: bytes | bytearray) -> bytes:
    """Sort and deduplicate concatenated 4-byte network-order addresses.

    Going through ``array('I')`` sorts small ints instead of bytes objects,
    which measured about twice as fast on a million addresses, and removes
    duplicates in one linear pass after sorting instead of building a set.
    """
    if len(packed) <= 4:
        return bytes(packed)
    arr = array("I")
    if arr.itemsize != 4:  # pragma: no cover - every Linux ABI has 4-byte int
        return sorted_unique(packed, 4)
    arr.frombytes(packed)
    swap = sys.byteorder == "little"
    if swap:
        arr.byteswap()
    values = sorted(arr)
    # Keep each value that differs from its predecessor; all C-level iteration.
    firsts = map(operator.ne, values, itertools.chain((-1,), values))
    arr = array("I", itertools.compress(values, firsts))
    del values
    if swap:
        arr.byteswap()
    return arr.tobytes()


def sorted_unique(packed: bytes | bytearray, width: int) -> bytes:
    """Sort and deduplicate concatenated fixed-width items (bytewise order).

    Sorting first and dropping neighbours that repeat measured faster and
    smaller than building a set of a million 16-byte objects.
    """
    if len(packed) <= width:
        return bytes(packed)
    data = bytes(packed)
    items = [data[i : i + width] for i in range(0, len(data), width)]
    del data
    items.sort()
    firsts = map(operator.ne, items, itertools.chain((None,), items))
    return b"".join(itertools.compress(items, firsts))


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
        v4_exact=_union_exact(a.v4_exact, b.v4_exact, 4),
        v6_exact=_union_exact(a.v6_exact, b.v6_exact, 16),
        v4_prefixes=tuple(sorted(set(a.v4_prefixes) | set(b.v4_prefixes))),
        v6_prefixes=tuple(sorted(set(a.v6_prefixes) | set(b.v6_prefixes))),
    )


def _union_exact(a: bytes, b: bytes, width: int) -> bytes:
    """Merge two sorted packed lists; sorting two sorted runs is near-linear."""
    if not a:
        return b
    if not b:
        return a
    if width == 4:
        return sorted_unique_v4(a + b)
    return sorted_unique(a + b, width)


def load_addr_file(path: str, origin_of_reference: Origin) -> AddrSet:
    """Read a list file: one address or CIDR per line, ``#`` comments.

    Problems with the file as a whole are reported at ``origin_of_reference``
    (the YAML node naming the file) and name the file; bad lines are reported
    as ``FILE:LINE``, at most :data:`MAX_BAD_LINES` of them.
    """
    _check_regular_file(path, origin_of_reference)
    try:
        with open(path, encoding="utf-8-sig") as stream:
            return _parse_lines(stream, path)
    except UnicodeDecodeError:
        raise ConfigError([_utf8_problem(path, origin_of_reference)]) from None
    except OSError as exc:
        raise ConfigError([_read_problem(path, origin_of_reference, exc)]) from None


def _check_regular_file(path: str, origin_of_reference: Origin) -> None:
    """Refuse directories, FIFOs and devices, which would fail or block on read."""
    try:
        mode = os.stat(path).st_mode
    except (OSError, ValueError) as exc:
        raise ConfigError([_read_problem(path, origin_of_reference, exc)]) from None
    if not stat.S_ISREG(mode):
        raise ConfigError(
            [Problem(origin_of_reference, f"list file {path} is not a regular file")]
        )


def _read_problem(path: str, origin: Origin, exc: Exception) -> Problem:
    reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
    return Problem(origin, f"cannot read list file {path}: {reason}")


def _utf8_problem(path: str, origin_of_reference: Origin) -> Problem:
    """Locate the first invalid byte; the streaming decoder only knows its chunk."""
    try:
        with open(path, "rb") as stream:
            data = stream.read()
        data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        return Problem(
            Origin(path, line),
            f"not valid UTF-8 (list file referenced at {format_origin(origin_of_reference)})",
        )
    except OSError as exc:
        return _read_problem(path, origin_of_reference, exc)
    return Problem(origin_of_reference, f"list file {path} is not valid UTF-8")


def _parse_lines(lines: Iterable[str], path: str) -> AddrSet:
    """The hot loop: one ``inet_pton`` per plain address, nothing retained.

    Everything that is not a plain address (comments, blanks, CIDRs, junk)
    fails both ``inet_pton`` calls and goes through :func:`_slow_line`.
    """
    collector = _Collector()
    v4, v6 = collector.v4, collector.v6
    pton = socket.inet_pton
    af_inet, af_inet6 = socket.AF_INET, socket.AF_INET6
    bad: list[Problem] = []
    nbad = 0
    for lineno, line in enumerate(lines, 1):
        line = line.strip()
        try:
            v4 += pton(af_inet, line)
            continue
        except (OSError, ValueError):  # ValueError: NUL or unencodable text
            pass
        try:
            v6 += pton(af_inet6, line)
        except (OSError, ValueError):
            error = _slow_line(line, collector)
            if error:
                nbad += 1
                if nbad <= MAX_BAD_LINES:
                    bad.append(Problem(Origin(path, lineno), error))
    if nbad:
        if nbad > MAX_BAD_LINES:
            bad.append(Problem(Origin(path), f"... and {nbad - MAX_BAD_LINES} more bad lines"))
        raise ConfigError(bad)
    return collector.build()


def _slow_line(line: str, collector: _Collector) -> str | None:
    """Handle a line the fast path rejected; return the message if it is bad."""
    if "#" in line:
        line = line.split("#", 1)[0].rstrip()
    if not line:
        return None
    try:
        collector.add(*parse_one(line))
    except BadAddress as exc:
        return str(exc)
    return None
