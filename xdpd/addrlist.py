"""Address lists: inline YAML items and list files -> :class:`model.AddrSet`.

List files are the one part of the configuration that can be huge (a block
list of a million addresses is routine), so they are handled for speed and
memory: plain addresses go through :func:`socket.inet_pton` and straight into
a packed buffer, so no per-address Python object survives the parse.  Only
lines that are not plain addresses (CIDRs, comments, junk) take the slow
:mod:`ipaddress` path.  The packed arrays themselves are :mod:`xdpd.packed`'s.

A list file is a sequence of lines, each ending in ``\\n`` (a ``\\r`` before it
is ignored, as is other surrounding whitespace); ``#`` starts a comment; a
UTF-8 byte order mark at the start is allowed.  It must be UTF-8 text: invalid
UTF-8 or a NUL byte makes the whole file invalid.

:func:`parse_lines` parses any stretch of whole lines, so that
:class:`xdpd.listcache.ListCache` can re-parse only the lines an edit touched.
"""

from __future__ import annotations

import ipaddress
import os
import socket
import stat
from collections.abc import Iterable
from dataclasses import dataclass

from xdpd import packed
from xdpd.model import AddrSet, Origin
from xdpd.problems import ConfigError, Problem, format_origin, show

MAX_BAD_LINES = 20
"""Bad lines reported per list file; a wrong file would otherwise flood."""

_BLOCK = 1 << 20
"""Bytes of a list file decoded and split at a time, to bound the memory the
per-line strings of a huge file take while it is parsed."""

BOM = b"\xef\xbb\xbf"
"""The UTF-8 byte order mark, allowed at the start of a list file."""
_NOT_UTF8 = "not valid UTF-8"
_NUL = "NUL byte; a list file is UTF-8 text, not binary or UTF-16"


class BadAddress(ValueError):
    """An item is not an address or prefix; ``str()`` is the user message."""



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


class Collector:
    """Accumulates parsed addresses, duplicates included, until they are sorted.

    Exact addresses stay packed; prefixes are few in practice and kept as the
    ``(packed, prefix len)`` tuples an :class:`AddrSet` holds.
    """

    def __init__(self) -> None:
        self.v4 = bytearray()
        self.v6 = bytearray()
        self.v4_prefixes: list[tuple[bytes, int]] = []
        self.v6_prefixes: list[tuple[bytes, int]] = []

    def add(self, version: int, network: bytes, plen: int) -> None:
        if version == 4:
            if plen == 32:
                self.v4 += network
            else:
                self.v4_prefixes.append((network, plen))
        elif plen == 128:
            self.v6 += network
        else:
            self.v6_prefixes.append((network, plen))

    def build(self) -> AddrSet:
        return AddrSet(
            v4_exact=packed.sorted_unique_v4(self.v4),
            v6_exact=packed.sorted_unique(self.v6, 16),
            v4_prefixes=tuple(sorted(set(self.v4_prefixes))),
            v6_prefixes=tuple(sorted(set(self.v6_prefixes))),
        )


# --------------------------------------------------------------------------
# Inline items and union


def parse_addr_items(items: list[tuple[str, Origin]]) -> AddrSet:
    """Parse inline YAML address items, reporting every bad one at its origin."""
    collector = Collector()
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
        v4_exact=packed.union(a.v4_exact, b.v4_exact, 4),
        v6_exact=packed.union(a.v6_exact, b.v6_exact, 16),
        v4_prefixes=tuple(sorted(set(a.v4_prefixes) | set(b.v4_prefixes))),
        v6_prefixes=tuple(sorted(set(a.v6_prefixes) | set(b.v6_prefixes))),
    )


def union_all(sets: Iterable[AddrSet]) -> AddrSet:
    """The union of any number of sets (empty for none)."""
    result = AddrSet()
    for addrs in sets:
        result = union(result, addrs)
    return result


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


class NotText(Exception):
    """Invalid UTF-8 or a NUL byte at byte offset ``pos`` of the file ``data``."""

    def __init__(self, pos: int, message: str, data: bytes = b"") -> None:
        super().__init__(pos, message)
        self.pos = pos
        self.message = message
        self.data = data

    def problem(self, data: bytes, path: str, origin_of_reference: Origin) -> Problem:
        line = data.count(b"\n", 0, self.pos) + 1
        return Problem(
            Origin(path, line),
            f"{self.message} (list file referenced at {format_origin(origin_of_reference)})",
        )


class ParsedLines:
    """The parsed lines of one stretch of a list file, line 1 being its first."""

    def __init__(self) -> None:
        self.collector = Collector()
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


def parse_lines(data: bytes, start: int, end: int, into: ParsedLines | None = None,
                first_line: int = 1) -> ParsedLines:
    """Parse the whole lines ``data[start:end]``, a block at a time.

    Raises :class:`NotText` at the first NUL byte or invalid UTF-8 sequence.
    ``start`` and ``end`` must be line boundaries (or the ends of ``data``),
    so every block starts on a character boundary.  The lines are numbered
    from ``first_line``; with ``into``, they are added to what it holds, so
    several stretches of one file are reported as one parse of them in order.
    """
    lines = ParsedLines() if into is None else into
    if start == 0 and data.startswith(BOM):
        start = min(len(BOM), end)
    lineno = first_line
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
                raise NotText(pos + nul, _NUL, data) from None
            raise NotText(pos + exc.start, _NOT_UTF8, data) from None
        if nul >= 0:
            raise NotText(pos + nul, _NUL, data)
        del block
        split = text.split("\n")
        del text
        lines.parse(split, lineno)
        lineno += len(split) - 1
        pos = stop
    return lines


@dataclass(frozen=True)
class ParsedList:
    """A list file that parsed without problems: what :class:`xdpd.listcache.ListCache` keeps.

    ``extras`` holds, per part of the AddrSet (v4, v6, v4 prefixes, v6
    prefixes), the surplus copies of addresses listed more than once, sorted
    and packed; with them the cache knows whether deleting a line removes
    its address from the set.  They are empty unless the file has duplicates.
    """

    data: bytes
    addrs: AddrSet
    extras: tuple[bytes, bytes, bytes, bytes]

    @classmethod
    def build(cls, data: bytes, collector: Collector) -> ParsedList:
        v4, v4_extras = packed.sorted_counted_v4(collector.v4)
        v6, v6_extras = packed.sorted_counted(collector.v6, 16)
        v4p, v4p_extras = _sorted_counted_prefixes(collector.v4_prefixes)
        v6p, v6p_extras = _sorted_counted_prefixes(collector.v6_prefixes)
        addrs = AddrSet(v4_exact=v4, v6_exact=v6, v4_prefixes=v4p, v6_prefixes=v6p)
        return cls(data, addrs, (v4_extras, v6_extras, v4p_extras, v6p_extras))


def prefix_key(prefix: tuple[bytes, int]) -> bytes:
    """A prefix as one fixed-width item that sorts like the tuple does.

    Surplus prefixes are kept packed this way, 5 or 17 bytes each, so that
    all the ``extras`` of a :class:`ParsedList` are :class:`packed.PackedKeys`.
    """
    return prefix[0] + bytes((prefix[1],))


def _sorted_counted_prefixes(prefixes: list[tuple[bytes, int]]) -> tuple[tuple[tuple[bytes, int], ...], bytes]:
    """Sorted unique prefixes, and the surplus copies packed as :func:`prefix_key`."""
    unique, extras = packed.dedupe(sorted(prefixes))
    return tuple(unique), b"".join(map(prefix_key, extras))


def parse_list(data: bytes, path: str, origin_of_reference: Origin) -> ParsedList:
    """Parse a whole list file; a :class:`ConfigError` lists its problems."""
    try:
        lines = parse_lines(data, 0, len(data))
    except NotText as exc:
        raise ConfigError([exc.problem(data, path, origin_of_reference)]) from None
    if lines.nbad:
        raise ConfigError(lines.problems(path, 0))
    return ParsedList.build(data, lines.collector)


def load_addr_file(path: str, origin_of_reference: Origin) -> AddrSet:
    """Read a list file: one address or CIDR per line, ``#`` comments.

    Problems with the file as a whole (missing, unreadable, not a regular
    file) are reported at ``origin_of_reference`` (the YAML node naming the
    file) and name the file; bad lines are reported as ``FILE:LINE``, at most
    :data:`MAX_BAD_LINES` of them; a file that is not UTF-8 text is reported
    at the line of the first offending byte, naming the reference.
    """
    return parse_list(read_list_file(path, origin_of_reference), path, origin_of_reference).addrs
