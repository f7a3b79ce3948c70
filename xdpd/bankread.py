"""Read what both banks hold back from the maps, as :class:`~xdpd.tables.BankImage`.

A daemon that starts on maps a previous one left pinned (a restart, a
crash, a package upgrade) learns from this what is enforced, so that it
writes only the difference (nothing, when the config did not change);
``xdpd plan`` compares the config with it.

A million-address list is in the exact hash maps twice (once per bank).
Those are read with batch lookups into packed buffers and split by bank
and mask at C speed (strided memoryviews, :func:`itertools.compress`), so
no Python object is made per entry.  What comes out of a hash map is in
hash order; sorting a million addresses again would cost about 0.4 s per
bank, so the caller may name ``candidates``: sorted packed key arrays the
banks probably hold (the config's lists).  A group of the same length
whose order-independent fingerprint (the sum of each key's keyed hash)
equals a candidate's is that candidate, shared rather than copied; any
other group is sorted.  Two different sets of keys agree on the
fingerprint with a probability of about 2^-64.

The daemon starts the reading (:class:`BankReader`) in a thread before it
parses the config: most of it is the kernel's batch lookups, which then
overlap the parse.
"""

from __future__ import annotations

import ctypes as ct
import itertools
import operator
import struct
import threading
from array import array
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from . import layout
from .maps import PinnedMaps
from .model import Rule
from .packed import sorted_unique, sorted_unique_v4
from .tables import ARRAY_MAPS, CFG_MASKS, CFG_SPANS, AddrTable, BankImage, IfaceEntry

Candidates = Mapping[tuple[str, int], Sequence[bytes]]
"""(direction, family) -> sorted packed key arrays a bank's exact groups may equal."""

BATCH = 1 << 16
"""Entries per batch lookup of an exact map (1.5 MB of IPv4 keys and values)."""

_FLIP = bytes([1, 0]) + bytes(254)
"""``bytes.translate`` table: a bank-1 selector from a bank-0 one and back."""


def read_banks(maps: PinnedMaps, candidates: Candidates | None = None) -> tuple[BankImage, BankImage]:
    """What banks 0 and 1 hold (see the module docstring for ``candidates``)."""
    return _assemble(_read_raw(maps), _matchers(candidates or {}))


class BankReader:
    """:func:`read_banks` with the kernel's part in threads, started before the config is read.

    Batch lookups spend most of their time in the kernel (about 0.3 µs an
    entry: two million entries for a million addresses in both banks, and
    half a million more in the port and length arrays), and ctypes releases
    the GIL for the call, so they overlap the parse of a big list.  Two
    threads (the exact hash maps; everything else) keep both CPUs busy once
    the parse is done.  The split into per-bank arrays happens in the
    threads too; matching them with the config's
    lists (fingerprints included) waits for :meth:`result`, so the threads
    do little besides waiting for the kernel.
    """

    def __init__(self, maps: PinnedMaps) -> None:
        self.maps = maps
        self._exact: dict[tuple[str, int], list[dict[bytes, _Group]]] | None = None
        self._rest: _Raw | None = None
        self._errors: list[BaseException] = []
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, args=(self._read_exact,), name="bank-read-exact",
                                          daemon=True),
                         threading.Thread(target=self._run, args=(self._read_rest,), name="bank-read",
                                          daemon=True)]

    def start(self) -> "BankReader":
        for t in self._threads:
            t.start()
        return self

    def _run(self, read: Callable[[], None]) -> None:
        try:
            read()
        except BaseException as e:  # handed to the caller of result()
            self._errors.append(e)

    def _read_exact(self) -> None:
        self._exact = _read_exact_maps(self.maps, self._stop)

    def _read_rest(self) -> None:
        self._rest = _read_rest(self.maps)

    def result(self, candidates: Candidates | None = None) -> tuple[BankImage, BankImage]:
        """What banks 0 and 1 hold, once the threads are done; raises what a read raised.

        The candidates' fingerprints are taken first, while the threads
        still wait for the kernel.
        """
        matchers = _matchers(candidates or {})
        for m in matchers.values():
            m.fingerprint_all()
        for t in self._threads:
            t.join()
        if self._errors:
            raise self._errors[0]
        assert self._rest is not None and self._exact is not None
        self._rest.exact = self._exact
        return _assemble(self._rest, matchers)

    def cancel(self) -> None:
        """Stop reading (at the next batch) and wait for the threads."""
        self._stop.set()
        for t in self._threads:
            t.join()


class _Cancelled(Exception):
    pass


@dataclass
class _Group:
    """The addresses of one bank with one mask, in hash order."""

    data: bytearray = field(default_factory=bytearray)


@dataclass
class _Raw:
    """Both banks as the kernel holds them, read but not matched with the candidates yet."""

    state: layout.State
    rules: list
    tables: list[dict[str, tuple[int, ...]]]
    """Per bank: the array tables (ports, lengths, ...) as the image's fields."""
    ifaces: list[list[IfaceEntry]]
    lpm: dict[tuple[str, int], list[list[tuple[bytes, int, int]]]]
    small: dict[tuple[str, int, int], AddrTable]
    exact: dict[tuple[str, int], list[dict[bytes, _Group]]] = field(default_factory=dict)


def _read_raw(maps: PinnedMaps) -> _Raw:
    raw = _read_rest(maps)
    raw.exact = _read_exact_maps(maps)
    return raw


def _read_rest(maps: PinnedMaps) -> _Raw:
    """Everything but the exact hash maps."""
    st = maps.state()
    ints = _Masks()

    def masks(data: bytes, start: int, count: int) -> tuple[int, ...]:
        raws = struct.iter_unpack("16s", memoryview(data)[start * 16:(start + count) * 16])
        return tuple(map(ints.__getitem__, map(operator.itemgetter(0), raws)))
    arrays = {name: maps[name].array_values() for name, _, _ in ARRAY_MAPS}
    iface_cfg = maps["iface_cfg"].array_values()
    raw = _Raw(st, [maps.rule_order(bank) for bank in (0, 1)],
               [{f: masks(arrays[name], bank * size, size) for name, f, size in ARRAY_MAPS} for bank in (0, 1)],
               [enabled_ifaces(iface_cfg, bank) for bank in (0, 1)], {}, {})
    del arrays, iface_cfg
    for direction in ("src", "dst"):
        for family in (4, 6):
            width = 4 if family == 4 else 16
            raw.lpm[(direction, family)] = _read_lpm(maps, direction, family)
            for bank in (0, 1):
                if st.cfg[bank].flags & layout.ADDR_FLAGS[(direction, family, "small")]:
                    raw.small[(direction, family, bank)] = _read_small(maps, bank, direction, family, width)
    return raw


def _read_exact_maps(maps: PinnedMaps, stop: threading.Event | None = None
                     ) -> dict[tuple[str, int], list[dict[bytes, _Group]]]:
    out = {}
    for direction in ("src", "dst"):
        for family in (4, 6):
            groups: list[dict[bytes, _Group]] = [{}, {}]
            # Big batches: each one hands the GIL back and forth once, and a thread that
            # wants it back while the parse runs waits up to the switch interval (5 ms).
            for keys, values in maps[layout.exact_map(direction, family)].batches(BATCH):
                if stop is not None and stop.is_set():
                    raise _Cancelled()
                _split(keys, values, 4 if family == 4 else 16, groups)
            out[(direction, family)] = groups
    return out


def _matchers(candidates: Candidates) -> dict[tuple[str, int], "_Matcher"]:
    return {(d, f): _Matcher(candidates.get((d, f), ()), 4 if f == 4 else 16) for d in ("src", "dst") for f in (4, 6)}


def _assemble(raw: _Raw, matchers: dict[tuple[str, int], "_Matcher"]) -> tuple[BankImage, BankImage]:
    addrs: list[dict] = [{}, {}]
    for (direction, family), groups in raw.exact.items():
        match = matchers[(direction, family)]
        lpm = raw.lpm[(direction, family)]
        for bank in (0, 1):
            small = raw.small.get((direction, family, bank))
            if small is not None:
                addrs[bank][(direction, family)] = small
                continue
            exact = tuple(sorted((int.from_bytes(m, "little"), match.sorted_keys(g))
                                 for m, g in groups[bank].items()))
            addrs[bank][(direction, family)] = AddrTable(exact, tuple(sorted(lpm[bank])))
    return tuple(_image_of(raw, bank, addrs[bank]) for bank in (0, 1))  # type: ignore[return-value]


def enabled_ifaces(iface_cfg: bytes, bank: int) -> list[IfaceEntry]:
    """The enabled entries of one bank of the ``iface_cfg`` array (its values, packed)."""
    size = ct.sizeof(layout.IfaceEnt)
    data = memoryview(iface_cfg)[bank * layout.IFINDEX_MAX * size:(bank + 1) * layout.IFINDEX_MAX * size]
    # Most entries are disabled: find the enabled ones by their first byte, at C speed.
    enabled = bytes(data[0::size])
    out = []
    at = enabled.find(1)
    while at >= 0:
        ent = layout.IfaceEnt.from_buffer_copy(data[at * size:(at + 1) * size])
        out.append(IfaceEntry(at, bool(ent.default_drop), ent.slot, bool(ent.observe), ent.rules.value(),
                              ent.untagged.value()))
        at = enabled.find(1, at + 1)
    return out


class _Masks(dict):
    """Packed 16-byte mask -> its int, made once: port and length tables repeat a few masks."""

    def __missing__(self, raw: bytes) -> int:
        value = self[raw] = int.from_bytes(raw, "little")
        return value


def _image_of(raw: _Raw, bank: int, addrs: dict) -> BankImage:
    cfg = raw.state.cfg[bank]
    return BankImage(
        rules=tuple(raw.rules[bank]), flags=cfg.flags, dport=(), addrs=addrs,
        ifaces=tuple(raw.ifaces[bank]), **raw.tables[bank],
        **{f: getattr(cfg, c).value() for c, f in CFG_MASKS},
        **{f: _span(getattr(cfg, f)) for f in CFG_SPANS})


def _span(span: layout.Span) -> tuple[int, int, int]:
    return (0, -1, 0) if span.hi < span.lo else (span.lo, span.hi, span.m.value())


def _split(keys: bytes, values: bytes, width: int, groups: list[dict[bytes, _Group]]) -> None:
    """Add the addresses of one batch to ``groups[bank][mask]`` (packed, in hash order).

    The usual batch has one mask (one list rule) and banks 0 and 1 only:
    split by bank with strided memoryviews and :func:`itertools.compress`.
    Anything else goes entry by entry (entries of other banks are ignored).
    """
    ksz = 4 + width
    n = len(keys) // ksz
    banks = keys[0::ksz]
    if values == values[:16] * n and all(keys[i::ksz].count(0) == n for i in (1, 2, 3)) \
            and banks.count(0) + banks.count(1) == n:
        words = memoryview(keys).cast("I")
        stride = ksz // 4
        for bank, select in ((0, banks.translate(_FLIP)), (1, banks)):
            count = n - banks.count(1 - bank)
            if not count:
                continue
            buf = bytearray(count * width)
            out = memoryview(buf).cast("I")
            for w in range(width // 4):
                column = words[1 + w::stride]
                out[w::width // 4] = column if count == n else array("I", itertools.compress(column, select))
            _add(groups[bank], values[:16], bytes(buf), width)
        return
    for i in range(n):
        bank = int.from_bytes(keys[i * ksz:i * ksz + 4], "little")
        if bank in (0, 1):
            _add(groups[bank], values[i * 16:(i + 1) * 16], keys[i * ksz + 4:(i + 1) * ksz], width)


def _add(groups: dict[bytes, _Group], mask: bytes, addrs: bytes, width: int) -> None:
    g = groups.get(mask)
    if g is None:
        g = groups[mask] = _Group()
    g.data += addrs


def _fingerprint(keys: bytes | bytearray, width: int) -> int:
    """Order-independent: the sum of every key's hash (siphash, keyed per process)."""
    return sum(map(hash, struct.iter_unpack(f"{width}s", keys)))


class _Matcher:
    """Finds a group among the candidates, or sorts it (module docstring)."""

    def __init__(self, candidates: Sequence[bytes], width: int) -> None:
        self.width = width
        self.candidates = [c for c in candidates if c]
        self.prints: dict[int, int] = {}

    def fingerprint_all(self) -> None:
        for c in self.candidates:
            self._print(c)

    def _print(self, c: bytes) -> int:
        if id(c) not in self.prints:
            self.prints[id(c)] = _fingerprint(c, self.width)
        return self.prints[id(c)]

    def sorted_keys(self, group: _Group) -> bytes:
        same_length = [c for c in self.candidates if len(c) == len(group.data)]
        if same_length:
            mine = _fingerprint(group.data, self.width)
            for c in same_length:
                if self._print(c) == mine:
                    return c
        keys = bytes(group.data)
        return sorted_unique_v4(keys) if self.width == 4 else sorted_unique(keys, self.width)


def candidates_of(rules: Iterable[Rule]) -> dict[tuple[str, int], list[bytes]]:
    """Candidates for :func:`read_banks`: every rule's host addresses per direction and family.

    When the config did not change while no daemon ran, each bank's groups
    are these arrays (one list rule), or built from them (overlapping lists,
    which are then sorted again).
    """
    out: dict[tuple[str, int], list[bytes]] = {}
    for r in rules:
        for direction, aset in (("src", r.src), ("dst", r.dst)):
            if aset is None:
                continue
            for family, keys in ((4, aset.v4_exact), (6, aset.v6_exact)):
                if keys:
                    out.setdefault((direction, family), []).append(keys)
    return out


def _read_lpm(maps: PinnedMaps, direction: str, family: int) -> list[list[tuple[bytes, int, int]]]:
    m = maps[layout.lpm_map(direction, family)]
    out: list[list] = [[], []]
    for k in list(m.keys()):
        v = m.lookup(k)
        if v is not None and k.bank in (0, 1):
            out[k.bank].append((bytes(k.addr), k.prefixlen - 32, v.value()))
    return out


def _read_small(maps: PinnedMaps, bank: int, direction: str, family: int, width: int) -> AddrTable:
    t = maps[layout.small_map(direction, family)].lookup(ct.c_uint32(bank))
    hosts: dict[int, list[bytes]] = {}
    lpm = []
    for e in list(t.e)[:t.n]:
        plen = bin(int.from_bytes(bytes(e.netmask), "big")).count("1")
        if plen == width * 8:
            hosts.setdefault(e.m.value(), []).append(bytes(e.net))
        else:
            lpm.append((bytes(e.net), plen, e.m.value()))
    exact = tuple(sorted((m, b"".join(sorted(keys))) for m, keys in hosts.items()))
    return AddrTable(exact, tuple(sorted(lpm)), small=True)
