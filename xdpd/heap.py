"""Give the memory a big change freed back to the kernel.

Loading a million-line list, diffing it and writing it into the maps
allocate tens of MB for moments.  glibc keeps much of what Python frees in
its heap for re-use (its threshold for serving large blocks from mmap, which
are unmapped when freed, rises to 32 MB after the first big free), so a
daemon that did one big change would go on holding that memory while idle.
:func:`map_big_blocks` fixes that threshold low, so a list file's bytes or
a packed array gets pages of its own that go back when it is freed, and
:func:`release` asks glibc to return the free parts of its heap
(``malloc_trim``); the daemon calls it once a change is fully written.
Both do nothing where the C library is not glibc.
"""

from __future__ import annotations

import ctypes
import ctypes.util

BIG_BLOCK = 1 << 20
"""Bytes from which a block is mapped on its own (M_MMAP_THRESHOLD)."""
_M_MMAP_THRESHOLD = -3

_trim = _mallopt = None
try:
    _libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    _trim, _mallopt = _libc.malloc_trim, _libc.mallopt
    _trim.argtypes, _trim.restype = [ctypes.c_size_t], ctypes.c_int
    _mallopt.argtypes, _mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
except (OSError, AttributeError):  # pragma: no cover - not glibc: nothing to tune
    pass


def map_big_blocks() -> None:
    """From now on, serve blocks of :data:`BIG_BLOCK` bytes and more from mmap
    (returned to the kernel as soon as they are freed), whatever was freed before."""
    if _mallopt is not None:
        _mallopt(_M_MMAP_THRESHOLD, BIG_BLOCK)


def release() -> None:
    """Return the free memory at the top and inside glibc's heap to the kernel
    (a few milliseconds; a no-op where the C library has no ``malloc_trim``)."""
    if _trim is not None:
        _trim(0)
