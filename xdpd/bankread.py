"""Read what both banks hold back from the maps, as :class:`~xdpd.tables.BankImage`.

A daemon that starts on maps a previous one left pinned (a restart, a
crash, a package upgrade) learns from this what is enforced, so that it
writes only the difference; ``xdpd plan`` compares the config with it.
One pass over each map serves both banks: with a million addresses this
takes a second or two.
"""

from __future__ import annotations

import ctypes as ct

from . import layout
from .maps import PinnedMaps
from .tables import ARRAY_MAPS, CFG_MASKS, CFG_SPANS, AddrTable, BankImage, IfaceEntry


def read_banks(maps: PinnedMaps) -> tuple[BankImage, BankImage]:
    """What banks 0 and 1 hold."""
    st = maps.state()
    arrays = {name: maps[name].array_values() for name in [m for m, _, _ in ARRAY_MAPS] + ["iface_cfg"]}
    addrs: list[dict] = [{}, {}]
    for direction in ("src", "dst"):
        for family in (4, 6):
            width = 4 if family == 4 else 16
            exact = _read_exact(maps, direction, family, width)
            lpm = _read_lpm(maps, direction, family)
            for bank in (0, 1):
                if st.cfg[bank].flags & layout.ADDR_FLAGS[(direction, family, "small")]:
                    table = _read_small(maps, bank, direction, family, width)
                else:
                    table = AddrTable(exact[bank], tuple(sorted(lpm[bank])))
                addrs[bank][(direction, family)] = table
    return tuple(_image_of(maps, bank, st.cfg[bank], arrays, addrs[bank]) for bank in (0, 1))


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


def _image_of(maps: PinnedMaps, bank: int, cfg, arrays: dict[str, bytes], addrs: dict) -> BankImage:
    def masks(data: bytes, start: int, count: int) -> tuple[int, ...]:
        return tuple(int.from_bytes(data[i * 16:(i + 1) * 16], "little")
                     for i in range(start, start + count))
    return BankImage(
        rules=tuple(maps.rule_order(bank)), flags=cfg.flags, dport=(), addrs=addrs,
        ifaces=tuple(enabled_ifaces(arrays["iface_cfg"], bank)),
        **{f: masks(arrays[name], bank * size, size) for name, f, size in ARRAY_MAPS},
        **{f: getattr(cfg, c).value() for c, f in CFG_MASKS},
        **{f: _span(getattr(cfg, f)) for f in CFG_SPANS})


def _span(span: layout.Span) -> tuple[int, int, int]:
    return (0, -1, 0) if span.hi < span.lo else (span.lo, span.hi, span.m.value())


def _read_exact(maps: PinnedMaps, direction: str, family: int, width: int) -> list[tuple]:
    """Per bank: the exact groups ``((mask, sorted packed keys), ...)``."""
    groups: list[dict[bytes, list[bytes]]] = [{}, {}]
    for k, v in maps[layout.exact_map(direction, family)].items_batch():
        bank = int.from_bytes(k[:4], "little")
        if bank in (0, 1):
            groups[bank].setdefault(v, []).append(k[4:4 + width])
    return [tuple(sorted((int.from_bytes(m, "little"), b"".join(sorted(keys)))
                         for m, keys in g.items())) for g in groups]


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
