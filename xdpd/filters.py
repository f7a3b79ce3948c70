"""The exact-key filters: a 2^24-bit bitmap in front of each exact hash map.

The program tests one bit, chosen by a multiplicative hash of the address,
before it looks the address up in the hash map: a source that is in no list
almost never pays the hash lookup (see ``hash4``/``hash6`` in
``bpf/xdpd.bpf.c``).  This module computes the same hash in Python and keeps
a userspace mirror of each bitmap so a change writes only the words it
touches.
"""

from __future__ import annotations

import array
from typing import TYPE_CHECKING

from . import layout
from .imagediff import ExactDiff
from .tables import AddrTable

if TYPE_CHECKING:
    from .bpfsys import Map

_GOLDEN = 0x9E3779B1
_K1, _K2, _K3 = 0x85EBCA6B, 0xC2B2AE35, 0x27D4EB2F
_M32 = 0xFFFFFFFF
_SHIFT = 32 - layout.FILTER_BITS


def filter_hashes(keys: bytes | memoryview, family: int) -> list[int]:
    """The filter bit of each packed key, as ``hash4``/``hash6`` in the C source.

    The C code reads the address bytes as native u32 words; ``memoryview.cast``
    reads them the same way, so both sides agree on any byte order.
    """
    if not keys:
        return []
    w = memoryview(keys).cast("I")
    if family == 4:
        return [((a * _GOLDEN) & _M32) >> _SHIFT for a in w]
    return [((((a * _K1) ^ (b * _K2) ^ (c * _K3) ^ d) & _M32) * _GOLDEN & _M32) >> _SHIFT
            for a, b, c, d in zip(w[0::4], w[1::4], w[2::4], w[3::4])]


HASH_CHUNK = 1 << 16
"""Keys hashed at a time: a million keys at once would be a list of a
million Python ints (about 36 MB) for a moment."""


def set_filter_bits(bits: bytearray, keys: bytes, family: int) -> set[int] | None:
    """Set the bits of ``keys`` in a filter bitmap; return the 64-bit words
    touched, or None when so many keys went in that writing all is cheaper.

    Bit ``h`` is bit ``h % 8`` of byte ``h // 8``, which is bit ``h % 64`` of
    little-endian u64 word ``h // 64``: what the program tests.
    """
    width = 4 if family == 4 else 16
    n = len(keys) // width
    words: set[int] | None = set() if n <= layout.FILTER_WORDS // 8 else None
    view = memoryview(keys)
    for start in range(0, n, HASH_CHUNK):
        hashes = filter_hashes(view[start * width:(start + HASH_CHUNK) * width], family)
        for h in hashes:
            bits[h >> 3] |= 1 << (h & 7)
        if words is not None:
            words.update(h >> 6 for h in hashes)
    return words


def table_keys(table: AddrTable) -> bytes:
    """Every exact key of a table, packed (groups concatenated)."""
    return b"".join(keys for _, keys in table.exact)


class ExactFilter:
    """One exact-key filter bitmap and its userspace mirror.

    The filter is shared by both banks, so it only ever gains bits while a
    new rule set goes in: it must cover the keys of the bank being read at
    every moment.  Bits of removed keys stay set ("stale": they only cost a
    hash lookup on a collision) until enough pile up to rebuild it from the
    rule set both banks hold.
    """

    def __init__(self, m: Map, family: int) -> None:
        self.map, self.family = m, family
        self.width = 4 if family == 4 else 16
        self.bits: bytearray | None = None
        self.stale = 0

    def cover(self, new: AddrTable, diff: ExactDiff) -> None:
        """Set the bits of the keys ``diff`` adds to the active bank's table to make ``new``.

        ``diff`` is the same one the bank writes use (computed once per change).
        """
        if self.bits is None:
            if not new.exact:
                return  # nothing to cover; no 2 MB mirror of a filter not in use
            # Adopted or fresh maps: keep whatever the active bank needs, and
            # cover all of new (the mirror's history is unknown).
            self.bits = bytearray(self.map.array_values())
            keys = table_keys(new)
        else:
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
