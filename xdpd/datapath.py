"""The BPF side: compile the program, own its pinned maps, write banks.

This is one of the two modules that change kernel state (the other,
:mod:`xdpd.links`, attaches programs to interfaces).  It never decides *what*
to enforce; it receives a :class:`~xdpd.tables.BankImage` and makes one bank
hold exactly that.

Pin layout under the pin directory::

    prog                    the XDP program (what `status` reports)
    maps-<layout id>/NAME   the maps, one directory per binary layout

The layout id hashes the C source and the build parameters, so a daemon
built with different capacities or an upgraded program gets fresh maps
instead of misreading old ones, while a plain restart adopts the maps (and
counters) a previous daemon left pinned.
"""

from __future__ import annotations

import array
import ctypes as ct
import hashlib
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

from . import bpfsys, layout
from .tables import (AddrTable, BankImage, IfaceEntry, block_index, diff_array, diff_exact,
                     diff_lpm, set_filter_bits, table_keys)

BPF_SOURCE = Path(__file__).resolve().parent.parent / "bpf" / "xdpd.bpf.c"
"""Default location of the C source; the package installs it beside xdpd/."""

GRACE_SECONDS = 0.05
"""Wait after a bank switch before rewriting the old bank: far longer than
any XDP program run, so no packet still reads the old bank."""


def find_source() -> Path:
    for candidate in (os.environ.get("XDPD_BPF_SOURCE"), BPF_SOURCE,
                      "/usr/share/xdpd/bpf/xdpd.bpf.c"):
        if candidate and Path(candidate).is_file():
            return Path(candidate)
    raise FileNotFoundError("bpf/xdpd.bpf.c not found (set XDPD_BPF_SOURCE)")


@dataclass(frozen=True)
class BuildParams:
    """The -D parameters of the program (its capacities)."""

    max_exact: int = 4_000_000
    max_prefixes: int = 200_000
    ifindex_max: int = layout.IFINDEX_MAX

    def cflags(self) -> list[str]:
        return [f"-DMAX_EXACT={self.max_exact}", f"-DMAX_PREFIXES={self.max_prefixes}",
                f"-DIFINDEX_MAX={self.ifindex_max}"]


def layout_id(source: bytes, params: BuildParams) -> str:
    h = hashlib.sha256(source)
    h.update(" ".join(params.cflags()).encode())
    return h.hexdigest()[:12]


class CompileError(Exception):
    """bcc could not build or the verifier rejected the program."""


@dataclass
class Compiled:
    """A loaded program; holds bcc's module so the fds stay open."""

    bpf: object
    prog_fd: int
    pass_fd: int
    maps_dir: str
    fresh: bool = False
    """The maps were created by this compile (so they are empty)."""


def compile_program(pin_dir: str, params: BuildParams) -> Compiled:
    """Compile and load the program with its maps pinned under ``pin_dir``.

    Maps already pinned for the same layout are reused (bcc opens them), which
    is how counters and the enforced rule set survive a restart.
    """
    from bcc import BPF  # imported late: `xdpd check/status` work without it

    src = find_source()
    text = src.read_bytes()
    maps_dir = os.path.join(pin_dir, "maps-" + layout_id(text, params))
    fresh = not os.path.exists(os.path.join(maps_dir, "state"))
    os.makedirs(maps_dir, exist_ok=True)
    cflags = [f'-DPIN_DIR="{maps_dir}"', "-w", *params.cflags()]
    try:
        bpf = BPF(src_file=str(src).encode(), cflags=cflags)
        prog = bpf.load_func(b"xdpd_main", BPF.XDP)
        ref = bpf.load_func(b"xdpd_pass", BPF.XDP)
    except Exception as e:  # bcc raises bare Exception
        raise CompileError(f"building {src}: {e}") from e
    return Compiled(bpf, prog.fd, ref.fd, maps_dir, fresh)


def pin_program(prog_fd: int, pin_dir: str) -> None:
    """Pin (or atomically re-pin) the program at ``pin_dir/prog``."""
    tmp = os.path.join(pin_dir, "prog_new")  # bpffs forbids dots in names
    if os.path.exists(tmp):
        os.unlink(tmp)
    bpfsys.obj_pin(prog_fd, tmp)
    os.replace(tmp, os.path.join(pin_dir, "prog"))


def remove_stale_maps(pin_dir: str, keep: str) -> list[str]:
    """Unpin map directories of other layouts; returns what was removed."""
    removed = []
    for entry in sorted(Path(pin_dir).glob("maps-*")):
        if str(entry) != keep:
            shutil.rmtree(entry, ignore_errors=True)
            removed.append(str(entry))
    return removed


def current_maps_dir(pin_dir: str) -> str | None:
    """The maps directory the pinned program uses (None if nothing pinned)."""
    prog = os.path.join(pin_dir, "prog")
    dirs = sorted(Path(pin_dir).glob("maps-*"))
    if not os.path.exists(prog) or not dirs:
        return str(dirs[0]) if len(dirs) == 1 else None
    fd = bpfsys.obj_get(prog)
    try:
        ids = set(bpfsys.prog_info(fd).map_ids)
    finally:
        os.close(fd)
    for d in dirs:
        mfd = bpfsys.obj_get(str(d / "state"))
        try:
            if bpfsys.map_info(mfd).id in ids:
                return str(d)
        finally:
            os.close(mfd)
    return None


def _pack_masks(values: list[int]) -> bytes:
    cache: dict[int, bytes] = {}
    out = []
    for m in values:
        b = cache.get(m)
        if b is None:
            b = cache[m] = bytes(layout.Mask.of(m))
        out.append(b)
    return b"".join(out)


def _pack_exact_keys(bank: int, keys: bytes, width: int) -> bytes:
    """Interleave the bank number with packed addresses: struct key4/key6."""
    n = len(keys) // width
    words = width // 4
    buf = bytearray(n * (4 + width))
    out = memoryview(buf).cast("I")
    src = memoryview(keys).cast("I")
    stride = words + 1
    out[0::stride] = array.array("I", [bank]) * n
    for w in range(words):
        out[1 + w::stride] = src[w::words]
    return bytes(buf)


def _enabled_ifaces(iface_cfg: bytes, bank: int) -> list[IfaceEntry]:
    """The enabled entries of one bank of the ``iface_cfg`` array (its values, packed)."""
    # struct iface_ent is 4 bytes: enabled, default_drop, slot (u16).
    assert ct.sizeof(layout.IfaceEnt) == 4
    words = memoryview(iface_cfg).cast("I")[bank * layout.IFINDEX_MAX:(bank + 1) * layout.IFINDEX_MAX]
    out = []
    for i, w in enumerate(words):
        if w & 0xFF:
            ent = layout.IfaceEnt.from_buffer_copy(w.to_bytes(4, "little"))
            out.append(IfaceEntry(i, bool(ent.default_drop), ent.slot))
    return out


def _lpm_key(keytype: type, bank: int, net: bytes, plen: int):
    """The trie key: 32 bits of bank number, then the prefix."""
    key = keytype(prefixlen=32 + plen, bank=bank)
    ct.memmove(key.addr, net, len(net))
    return key


class ExactFilter:
    """One exact-key filter bitmap (see the C source) and its userspace mirror.

    The filter is shared by both banks, so it only ever gains bits while a
    new rule set goes in: it must cover the keys of the bank being read at
    every moment.  Bits of removed keys stay set ("stale": they only cost a
    hash lookup on a collision) until enough pile up to rebuild it from the
    rule set both banks hold.
    """

    def __init__(self, m: bpfsys.Map, family: int) -> None:
        self.map, self.family = m, family
        self.width = 4 if family == 4 else 16
        self.bits: bytearray | None = None
        self.stale = 0

    def cover(self, old: AddrTable | None, new: AddrTable) -> None:
        """Set the bits of ``new``'s keys that ``old`` (the active bank) lacks."""
        if self.bits is None:
            # Adopted or fresh maps: keep whatever the active bank needs.
            self.bits = bytearray(self.map.array_values())
            old = None
        if old is None:
            keys = table_keys(new)
        else:
            diff = diff_exact(old, new, self.width)
            keys = b"".join(k for _, k in diff.upserts)
            self.stale += len(diff.deletes) // self.width
        self._write(set_filter_bits(self.bits, keys, self.family))

    def maybe_rebuild(self, table: AddrTable) -> None:
        """Drop stale bits once they are many (both banks hold ``table``)."""
        live = table.exact_count() // self.width
        if self.bits is None or self.stale <= max(4096, live // 8):
            return
        bits = bytearray(len(self.bits))
        set_filter_bits(bits, table_keys(table), self.family)
        old = memoryview(self.bits).cast("Q")
        new = memoryview(bits).cast("Q")
        changed = [i for i in range(len(new)) if old[i] != new[i]]
        self.bits = bits
        self.stale = 0
        self._write(changed)

    def _write(self, words) -> None:
        """Write the given words of the mirror (None: all of them)."""
        if words is None:
            words = range(len(self.bits) // 8)
        if not words:
            return
        words = sorted(words)
        vals = memoryview(self.bits).cast("Q")
        self.map.update_batch(array.array("I", words).tobytes(),
                              array.array("Q", (vals[w] for w in words)).tobytes())


class Datapath:
    """The pinned maps of one layout, and bank writes into them."""

    def __init__(self, maps_dir: str, fresh: bool = False) -> None:
        self.maps_dir = maps_dir
        self.maps: dict[str, bpfsys.Map] = {
            name: bpfsys.Map.open_pinned(os.path.join(maps_dir, name), k, v,
                                         percpu=name in layout.PERCPU_MAPS)
            for name, (k, v) in layout.MAPS.items()
        }
        self.known: list[BankImage | None] = [None, None]
        """What each bank is known to hold (None: unknown, e.g. adopted)."""
        self.filters = {(d, f): ExactFilter(self.maps[layout.filter_map(d, f)], f)
                        for d in ("src", "dst") for f in (4, 6)}
        self.untouched = {0, 1} if fresh else set()
        """Banks of maps this process created and has not written: empty, nothing to clear."""
        self.pending: BankImage | None = None
        """Enforced image not yet written into the inactive bank (see settle)."""
        self.switched_at = 0.0

    def close(self) -> None:
        for m in self.maps.values():
            m.close()

    # -- state -----------------------------------------------------------
    def state(self) -> layout.State:
        return self.maps["state"].lookup(ct.c_uint32(0))

    def active_bank(self) -> int:
        return self.state().bank & 1

    def is_initialised(self) -> bool:
        """Has any daemon ever switched a bank in these maps?"""
        return self.state().generation > 0

    # -- writing ---------------------------------------------------------
    def apply(self, image: BankImage, settle: bool = True) -> None:
        """Make ``image`` the enforced rule set with no gap.

        Writes the inactive bank and switches to it with one map write.  Then
        (now, or later with :meth:`settle`) brings the other bank up to date
        so the next change is a small diff.
        """
        self.pending = None
        active = self.active_bank()
        target = 1 - active
        base = self.known[active]
        for key, table in image.addrs.items():
            old = base.addrs.get(key) if base else None
            self.filters[key].cover(old.in_maps() if old else None, table.in_maps())
        self.write_bank(target, image)
        st = self.state()
        st.bank, st.generation = target, st.generation + 1
        self.maps["state"].update(ct.c_uint32(0), st)
        self.switched_at = time.monotonic()
        self.pending = image
        if settle:
            self.settle()

    def settle(self) -> None:
        """Write the enforced image into the inactive bank too (if not done yet)."""
        image = self.pending
        if image is None:
            return
        wait = self.switched_at + GRACE_SECONDS - time.monotonic()
        if wait > 0:
            time.sleep(wait)
        self.write_bank(1 - self.active_bank(), image)
        self.pending = None
        for key, table in image.addrs.items():
            self.filters[key].maybe_rebuild(table.in_maps())

    def adopt(self) -> None:
        """Learn what both banks hold from the maps (a previous daemon's)."""
        if self.is_initialised():
            self.known = list(self.read_banks())

    def write_bank(self, bank: int, image: BankImage) -> None:
        old = self.known[bank]
        if old is None and bank not in self.untouched:
            self._clear_addresses(bank)
        self.untouched.discard(bank)
        self.known[bank] = None  # unknown while half-written
        self._write_arrays(bank, image, old)
        for (direction, family), table in image.addrs.items():
            prev = old.addrs.get((direction, family)) if old else None
            self._write_small(bank, direction, family, prev, table)
            prev = prev.in_maps() if prev else None
            self._write_exact(bank, direction, family, prev, table.in_maps())
            self._write_lpm(bank, direction, family, prev, table.in_maps())
        self._write_ifaces(bank, image, old)
        self._write_rules(bank, image)
        self.known[bank] = image

    def _write_arrays(self, bank: int, image: BankImage, old: BankImage | None) -> None:
        for name, field, size in (("proto_mask", "proto", 256),
                                  ("sport_mask", "sport", layout.PORT_SLOTS),
                                  ("dport_mask", "dport_l4", 2 * layout.PORT_SLOTS)):
            values = getattr(image, field)
            changed = diff_array(getattr(old, field) if old else None, values)
            if not changed:
                continue
            keys = array.array("I", (bank * size + i for i in changed)).tobytes()
            self.maps[name].update_batch(keys, _pack_masks([values[i] for i in changed]))

    def _write_exact(self, bank: int, direction: str, family: int,
                     old: AddrTable | None, new: AddrTable) -> None:
        width = 4 if family == 4 else 16
        diff = diff_exact(old, new, width)
        m = self.maps[layout.exact_map(direction, family)]
        for mask, keys in diff.upserts:
            n = len(keys) // width
            m.update_batch(_pack_exact_keys(bank, keys, width), bytes(layout.Mask.of(mask)) * n)
        if diff.deletes:
            m.delete_batch(_pack_exact_keys(bank, diff.deletes, width))

    def _write_small(self, bank: int, direction: str, family: int,
                     old: AddrTable | None, new: AddrTable) -> None:
        if old is not None and old.small == new.small and (not new.small or old == new):
            return
        if family == 4:
            self._write_blocks(bank, direction, old, new)
        m = self.maps[layout.small_map(direction, family)]
        value = m.value_type()
        if new.small:
            width = 4 if family == 4 else 16
            entries = new.small_entries(width)
            value.n = len(entries)
            for e, (net, plen, mask) in zip(value.e, entries):
                ct.memmove(e.net, net, width)
                netmask = ((1 << plen) - 1) << (width * 8 - plen) if plen else 0
                ct.memmove(e.netmask, netmask.to_bytes(width, "big"), width)
                e.m = layout.Mask.of(mask)
        m.update(ct.c_uint32(bank), value)

    def _write_blocks(self, bank: int, direction: str, old: AddrTable | None, new: AddrTable) -> None:
        """The /16 block index of a small IPv4 table (all of it when ``old`` is unknown)."""
        m = self.maps[f"{direction}4_blocks"]
        before, after = block_index(old), block_index(new)
        blocks = range(layout.BLOCKS) if old is None else \
            sorted(b for b in set(before) | set(after) if before.get(b) != after.get(b))
        if not blocks:
            return
        keys = array.array("I", (bank * layout.BLOCKS + b for b in blocks)).tobytes()
        zero = bytes(ct.sizeof(layout.Block16))
        values = b"".join(zero if b not in after else
                          bytes(layout.Mask.of(after[b][0])) + bytes(layout.Mask.of(after[b][1]))
                          for b in blocks)
        m.update_batch(keys, values)

    def _write_lpm(self, bank: int, direction: str, family: int,
                   old: AddrTable | None, new: AddrTable) -> None:
        upserts, deletes = diff_lpm(old, new)
        m = self.maps[layout.lpm_map(direction, family)]
        # LPM tries have no batch operations; prefixes are few.
        for net, plen, mask in upserts:
            m.update(_lpm_key(m.key_type, bank, net, plen), layout.Mask.of(mask))
        for net, plen in deletes:
            m.delete(_lpm_key(m.key_type, bank, net, plen))

    def _write_ifaces(self, bank: int, image: BankImage, old: BankImage | None) -> None:
        m = self.maps["iface_cfg"]
        base = bank * layout.IFINDEX_MAX
        wanted = {e.ifindex: e for e in image.ifaces}
        previous = {e.ifindex for e in (old.ifaces if old else
                                        _enabled_ifaces(self.maps["iface_cfg"].array_values(), bank))}
        for idx, e in wanted.items():
            m.update(ct.c_uint32(base + idx),
                     layout.IfaceEnt(enabled=1, default_drop=int(e.default_drop), slot=e.slot))
        for idx in previous - set(wanted):
            m.update(ct.c_uint32(base + idx), layout.IfaceEnt())

    def _write_rules(self, bank: int, image: BankImage) -> None:
        m = self.maps["rules"]
        ents = [layout.RuleEnt(action=a, slot=s) for a, s in image.rules]
        ents += [layout.RuleEnt()] * (layout.MAX_RULES - len(ents))
        keys = array.array("I", range(bank * layout.MAX_RULES, (bank + 1) * layout.MAX_RULES)).tobytes()
        m.update_batch(keys, bpfsys.pack_array(ents))
        # Only cfg[bank] changes: a packet reading the active bank sees the same bytes.
        st = self.state()
        st.cfg[bank] = layout.BankCfg(
            all=layout.Mask.of(image.all_rules), src_wild=layout.Mask.of(image.src_wild),
            dst_wild=layout.Mask.of(image.dst_wild), decisive=layout.Mask.of(image.decisive),
            proto_wild=layout.Mask.of(image.proto_wild), sport_wild=layout.Mask.of(image.sport_wild),
            dport_wild=layout.Mask.of(image.dport_wild),
            flags=image.flags, nrules=len(image.rules))
        self.maps["state"].update(ct.c_uint32(0), st)

    def _clear_addresses(self, bank: int) -> None:
        """Remove every address entry of ``bank`` (contents unknown)."""
        bank_bytes = bank.to_bytes(4, "little")
        for direction in ("src", "dst"):
            for family in (4, 6):
                m = self.maps[layout.exact_map(direction, family)]
                stale = b"".join(k for k, _ in m.items_batch() if k[:4] == bank_bytes)
                if stale:
                    m.delete_batch(stale)
                lpm = self.maps[layout.lpm_map(direction, family)]
                for k in [k for k in lpm.keys() if k.bank == bank]:
                    lpm.delete(k)

    # -- metadata and counters ---------------------------------------------
    def write_rule_names(self, names: Mapping[int, tuple], fresh: set[int]) -> None:
        """Record slot -> (name, action[, digest]) and zero the counters of ``fresh`` slots."""
        m = self.maps["rule_names"]
        for slot in range(layout.MAX_RULE_SLOTS):
            if slot in names:
                name, action, *digest = names[slot]
                m.update(ct.c_uint32(slot), layout.RuleMeta(name=name.encode()[:63], action=action, in_use=1,
                                                            digest=digest[0] if digest else 0))
            else:
                cur = m.lookup(ct.c_uint32(slot))
                if cur is not None and cur.in_use:
                    m.update(ct.c_uint32(slot), layout.RuleMeta())
        for slot in fresh:
            self._zero_percpu("rule_stats", slot)

    def write_iface_names(self, names: Mapping[int, tuple[str, int, str]], fresh: set[int]) -> None:
        """Record slot -> (name, ifindex, mode) and zero counters of ``fresh`` slots."""
        m = self.maps["iface_names"]
        for slot in range(layout.MAX_IFACES):
            if slot in names:
                name, ifindex, mode = names[slot]
                m.update(ct.c_uint32(slot), layout.IfaceMeta(
                    name=name.encode(), ifindex=ifindex, mode=layout.MODE_CODES[mode], in_use=1))
            else:
                cur = m.lookup(ct.c_uint32(slot))
                if cur is not None and cur.in_use:
                    m.update(ct.c_uint32(slot), layout.IfaceMeta())
        for slot in fresh:
            for v in range(layout.NVERDICTS):
                self._zero_percpu("iface_stats", slot * layout.NVERDICTS + v)

    def _zero_percpu(self, name: str, index: int) -> None:
        self.maps[name].update_percpu(ct.c_uint32(index),
                                      [layout.Counter()] * bpfsys.num_possible_cpus())

    def rule_entries(self) -> dict[int, tuple[str, int, int]]:
        """Counter slot -> (name, action, digest of the definition), as last written."""
        out = {}
        for slot in range(layout.MAX_RULE_SLOTS):
            v = self.maps["rule_names"].lookup(ct.c_uint32(slot))
            if v is not None and v.in_use:
                out[slot] = (v.name.decode(errors="replace"), v.action, v.digest)
        return out

    def rule_names(self) -> dict[int, tuple[str, int]]:
        """Counter slot -> (name, action)."""
        return {s: (n, a) for s, (n, a, _) in self.rule_entries().items()}

    def read_banks(self) -> tuple[BankImage, BankImage]:
        """What both banks hold, read back from the maps (to adopt them).

        One pass over each map serves both banks.  With a million addresses
        this takes a second or two; it runs when a daemon adopts maps a
        previous one left pinned, and for ``xdpd plan``.
        """
        st = self.state()
        arrays = {name: self.maps[name].array_values()
                  for name in ("proto_mask", "sport_mask", "dport_mask", "iface_cfg")}
        addrs: list[dict] = [{}, {}]
        for direction in ("src", "dst"):
            for family in (4, 6):
                width = 4 if family == 4 else 16
                exact = self._read_exact(direction, family, width)
                lpm = self._read_lpm(direction, family)
                for bank in (0, 1):
                    if st.cfg[bank].flags & layout.ADDR_FLAGS[(direction, family, "small")]:
                        table = self._read_small(bank, direction, family, width)
                    else:
                        table = AddrTable(exact[bank], tuple(sorted(lpm[bank])))
                    addrs[bank][(direction, family)] = table
        return tuple(self._image_of(bank, st.cfg[bank], arrays, addrs[bank]) for bank in (0, 1))

    def _image_of(self, bank: int, cfg, arrays: dict[str, bytes], addrs: dict) -> BankImage:
        def masks(data: bytes, start: int, count: int) -> tuple[int, ...]:
            return tuple(int.from_bytes(data[i * 16:(i + 1) * 16], "little")
                         for i in range(start, start + count))
        ifaces = _enabled_ifaces(arrays["iface_cfg"], bank)
        rules = tuple(self.rule_order(bank))
        return BankImage(
            rules=rules, all_rules=cfg.all.value(), src_wild=cfg.src_wild.value(),
            dst_wild=cfg.dst_wild.value(), decisive=cfg.decisive.value(), flags=cfg.flags,
            proto=masks(arrays["proto_mask"], bank * 256, 256),
            sport=masks(arrays["sport_mask"], bank * layout.PORT_SLOTS, layout.PORT_SLOTS),
            dport=(),
            dport_l4=masks(arrays["dport_mask"], bank * 2 * layout.PORT_SLOTS, 2 * layout.PORT_SLOTS),
            addrs=addrs, ifaces=tuple(ifaces),
            proto_wild=cfg.proto_wild.value(), sport_wild=cfg.sport_wild.value(),
            dport_wild=cfg.dport_wild.value())

    def _read_exact(self, direction: str, family: int, width: int) -> list[tuple]:
        """Per bank: the exact groups ``((mask, sorted packed keys), ...)``."""
        groups: list[dict[bytes, list[bytes]]] = [{}, {}]
        for k, v in self.maps[layout.exact_map(direction, family)].items_batch():
            bank = int.from_bytes(k[:4], "little")
            if bank in (0, 1):
                groups[bank].setdefault(v, []).append(k[4:4 + width])
        return [tuple(sorted((int.from_bytes(m, "little"), b"".join(sorted(keys)))
                             for m, keys in g.items())) for g in groups]

    def _read_lpm(self, direction: str, family: int) -> list[list[tuple[bytes, int, int]]]:
        m = self.maps[layout.lpm_map(direction, family)]
        out: list[list] = [[], []]
        for k in list(m.keys()):
            v = m.lookup(k)
            if v is not None and k.bank in (0, 1):
                out[k.bank].append((bytes(k.addr), k.prefixlen - 32, v.value()))
        return out

    def _read_small(self, bank: int, direction: str, family: int, width: int) -> AddrTable:
        t = self.maps[layout.small_map(direction, family)].lookup(ct.c_uint32(bank))
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

    def iface_names(self) -> dict[int, tuple[str, int, str]]:
        out = {}
        for slot in range(layout.MAX_IFACES):
            v = self.maps["iface_names"].lookup(ct.c_uint32(slot))
            if v is not None and v.in_use:
                out[slot] = (v.name.decode(errors="replace"), v.ifindex,
                             layout.MODE_NAMES.get(v.mode, "none"))
        return out

    def counter(self, name: str, index: int) -> tuple[int, int]:
        """(packets, bytes) summed over CPUs."""
        vals = self.maps[name].lookup_percpu(ct.c_uint32(index))
        return sum(v.packets for v in vals), sum(v.bytes for v in vals)

    def rule_order(self, bank: int | None = None) -> list[tuple[int, int]]:
        """(action, slot) of the rules of ``bank`` (default: active) in order."""
        bank = self.active_bank() if bank is None else bank
        cfg = self.state().cfg[bank]
        out = []
        for bit in range(cfg.nrules):
            r = self.maps["rules"].lookup(ct.c_uint32(bank * layout.MAX_RULES + bit))
            out.append((r.action, r.slot))
        return out
