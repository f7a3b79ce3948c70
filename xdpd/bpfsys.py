"""Thin ctypes binding to libbpf's syscall wrappers.

bcc compiles and loads the program; everything after that (map reads and
writes, batch loads, pins, program info, BPF_PROG_TEST_RUN) goes through
these few calls on plain file descriptors.  That keeps ``xdpd status`` and the
tests independent of bcc's table objects and usable on maps a previous daemon
pinned.  libbpf1 is a dependency of Debian's bcc, so it is always present.
"""

from __future__ import annotations

import ctypes as ct
import errno
import mmap
import os
from dataclasses import dataclass
from typing import Callable, Iterator, Sequence

class _BatchOpts(ct.Structure):
    _fields_ = [("sz", ct.c_size_t), ("elem_flags", ct.c_uint64), ("flags", ct.c_uint64)]


class _TestRunOpts(ct.Structure):
    _fields_ = [
        ("sz", ct.c_size_t),
        ("data_in", ct.c_void_p),
        ("data_out", ct.c_void_p),
        ("data_size_in", ct.c_uint32),
        ("data_size_out", ct.c_uint32),
        ("ctx_in", ct.c_void_p),
        ("ctx_out", ct.c_void_p),
        ("ctx_size_in", ct.c_uint32),
        ("ctx_size_out", ct.c_uint32),
        ("retval", ct.c_uint32),
        ("repeat", ct.c_int),
        ("duration", ct.c_uint32),
        ("flags", ct.c_uint32),
        ("cpu", ct.c_uint32),
        ("batch_size", ct.c_uint32),
    ]


class _ProgInfo(ct.Structure):
    # The head of struct bpf_prog_info (the ABI only ever appends).
    _fields_ = [
        ("type", ct.c_uint32),
        ("id", ct.c_uint32),
        ("tag", ct.c_uint8 * 8),
        ("jited_prog_len", ct.c_uint32),
        ("xlated_prog_len", ct.c_uint32),
        ("jited_prog_insns", ct.c_uint64),
        ("xlated_prog_insns", ct.c_uint64),
        ("load_time", ct.c_uint64),
        ("created_by_uid", ct.c_uint32),
        ("nr_map_ids", ct.c_uint32),
        ("map_ids", ct.c_uint64),
        ("name", ct.c_char * 16),
    ]


class _MapInfo(ct.Structure):
    _fields_ = [
        ("type", ct.c_uint32),
        ("id", ct.c_uint32),
        ("key_size", ct.c_uint32),
        ("value_size", ct.c_uint32),
        ("max_entries", ct.c_uint32),
        ("map_flags", ct.c_uint32),
        ("name", ct.c_char * 16),
    ]


class _LinkCreateOpts(ct.Structure):
    # The head of struct bpf_link_create_opts: libbpf reads what ``sz`` covers
    # and takes zero for the rest (the per-type unions XDP does not use).
    _fields_ = [("sz", ct.c_size_t), ("flags", ct.c_uint32), ("_pad", ct.c_uint32)]


class _LinkInfo(ct.Structure):
    # struct bpf_link_info: type, id, prog_id, then a union whose first
    # member is 8-byte aligned; for XDP links it starts with the ifindex.
    _fields_ = [
        ("type", ct.c_uint32),
        ("id", ct.c_uint32),
        ("prog_id", ct.c_uint32),
        ("_pad", ct.c_uint32),
        ("ifindex", ct.c_uint32),
        ("_rest", ct.c_uint8 * 44),
    ]


_LIBBPF: ct.CDLL | None = None


def _libbpf() -> ct.CDLL:
    """libbpf, loaded on first use.

    Loading it at import would make every module that imports this one
    (and so ``xdpd check``) fail on a machine without libbpf.
    """
    global _LIBBPF
    if _LIBBPF is None:
        lib = ct.CDLL("libbpf.so.1", use_errno=True)
        lib.bpf_obj_get.argtypes = [ct.c_char_p]
        lib.bpf_obj_pin.argtypes = [ct.c_int, ct.c_char_p]
        lib.bpf_map_lookup_elem.argtypes = [ct.c_int, ct.c_void_p, ct.c_void_p]
        lib.bpf_map_update_elem.argtypes = [ct.c_int, ct.c_void_p, ct.c_void_p, ct.c_uint64]
        lib.bpf_map_delete_elem.argtypes = [ct.c_int, ct.c_void_p]
        lib.bpf_map_get_next_key.argtypes = [ct.c_int, ct.c_void_p, ct.c_void_p]
        lib.bpf_map_update_batch.argtypes = [
            ct.c_int, ct.c_void_p, ct.c_void_p, ct.POINTER(ct.c_uint32), ct.POINTER(_BatchOpts)]
        lib.bpf_map_delete_batch.argtypes = [
            ct.c_int, ct.c_void_p, ct.POINTER(ct.c_uint32), ct.POINTER(_BatchOpts)]
        lib.bpf_map_lookup_batch.argtypes = [
            ct.c_int, ct.c_void_p, ct.c_void_p, ct.c_void_p, ct.c_void_p,
            ct.POINTER(ct.c_uint32), ct.POINTER(_BatchOpts)]
        lib.bpf_obj_get_info_by_fd.argtypes = [ct.c_int, ct.c_void_p, ct.POINTER(ct.c_uint32)]
        lib.bpf_prog_get_fd_by_id.argtypes = [ct.c_uint32]
        lib.bpf_map_get_fd_by_id.argtypes = [ct.c_uint32]
        lib.bpf_map_create.argtypes = [ct.c_int, ct.c_char_p, ct.c_uint32, ct.c_uint32, ct.c_uint32, ct.c_void_p]
        lib.bpf_link_create.argtypes = [ct.c_int, ct.c_int, ct.c_int, ct.POINTER(_LinkCreateOpts)]
        lib.bpf_link_update.argtypes = [ct.c_int, ct.c_int, ct.c_void_p]
        lib.bpf_link_detach.argtypes = [ct.c_int]
        lib.bpf_link_get_fd_by_id.argtypes = [ct.c_uint32]
        lib.bpf_prog_test_run_opts.argtypes = [ct.c_int, ct.POINTER(_TestRunOpts)]
        lib.libbpf_num_possible_cpus.argtypes = []
        lib.ring_buffer__new.argtypes = [ct.c_int, _RINGBUF_CB, ct.c_void_p, ct.c_void_p]
        lib.ring_buffer__new.restype = ct.c_void_p
        lib.ring_buffer__poll.argtypes = [ct.c_void_p, ct.c_int]
        lib.ring_buffer__free.argtypes = [ct.c_void_p]
        _LIBBPF = lib
    return _LIBBPF


_RINGBUF_CB = ct.CFUNCTYPE(ct.c_int, ct.c_void_p, ct.c_void_p, ct.c_size_t)


class RingBuffer:
    """libbpf's consumer of a BPF ring buffer map: :meth:`poll` calls
    ``on_record(bytes)`` for each record the program submitted."""

    def __init__(self, map_fd: int, on_record: Callable[[bytes], None]) -> None:
        def callback(_ctx, data, size) -> int:
            on_record(ct.string_at(data, size))
            return 0
        self._callback = _RINGBUF_CB(callback)   # kept alive as long as libbpf may call it
        ptr = _libbpf().ring_buffer__new(map_fd, self._callback, None, None)
        if not ptr:
            code = ct.get_errno() or errno.EINVAL
            raise BpfError(code, f"opening ring buffer map fd {map_fd}: {os.strerror(code)}")
        self._rb = ptr

    def poll(self, timeout_ms: int) -> int:
        """Consume what is there (waiting up to ``timeout_ms``); returns the records handled."""
        n = _libbpf().ring_buffer__poll(self._rb, timeout_ms)
        if n < 0 and -n != errno.EINTR:
            _check(n, "polling a ring buffer")
        return max(n, 0)

    def close(self) -> None:
        if self._rb:
            _libbpf().ring_buffer__free(self._rb)
            self._rb = None


BATCH_CHUNK = 65536
"""Entries per batch syscall: large enough to amortise, small enough for the
kernel's temporary buffers."""


class BpfError(OSError):
    """A BPF syscall failed; ``str()`` names the operation and the object."""


def _check(ret: int, what: str) -> int:
    if ret < 0:
        code = -ret if ret < -1 else ct.get_errno() or errno.EIO
        raise BpfError(code, f"{what}: {os.strerror(code)}")
    return ret


def num_possible_cpus() -> int:
    return _check(_libbpf().libbpf_num_possible_cpus(), "counting possible CPUs")


def obj_get(path: str) -> int:
    """Open a pinned object; returns a new fd (caller closes)."""
    return _check(_libbpf().bpf_obj_get(path.encode()), f"opening pinned {path}")


def obj_pin(fd: int, path: str) -> None:
    _check(_libbpf().bpf_obj_pin(fd, path.encode()), f"pinning at {path}")


def prog_fd_by_id(prog_id: int) -> int:
    """A new fd for the program with this id (caller closes)."""
    return _check(_libbpf().bpf_prog_get_fd_by_id(prog_id), f"opening program id {prog_id}")


def map_fd_by_id(map_id: int) -> int:
    """A new fd for the map with this id (caller closes)."""
    return _check(_libbpf().bpf_map_get_fd_by_id(map_id), f"opening map id {map_id}")


BPF_MAP_TYPE_HASH = 1
BPF_MAP_TYPE_ARRAY = 2


def map_create(map_type: int, name: str, key_size: int, value_size: int, max_entries: int) -> int:
    """A new map, not pinned; returns its fd (caller closes).

    For the few maps xdpd keeps beside the program's own (which bcc creates
    from the C source), such as the reload counts of :mod:`xdpd.reloadstats`.
    """
    return _check(_libbpf().bpf_map_create(map_type, name.encode(), key_size, value_size, max_entries, None),
                  f"creating map {name}")


@dataclass(frozen=True)
class ProgInfo:
    id: int
    name: str
    map_ids: tuple[int, ...]


def prog_info(fd: int) -> ProgInfo:
    info = _ProgInfo()
    size = ct.c_uint32(ct.sizeof(info))
    _check(_libbpf().bpf_obj_get_info_by_fd(fd, ct.byref(info), ct.byref(size)), "reading program info")
    n = info.nr_map_ids
    ids = (ct.c_uint32 * max(n, 1))()
    info2 = _ProgInfo(nr_map_ids=n, map_ids=ct.addressof(ids))
    size = ct.c_uint32(ct.sizeof(info2))
    _check(_libbpf().bpf_obj_get_info_by_fd(fd, ct.byref(info2), ct.byref(size)), "reading program maps")
    return ProgInfo(info.id, info.name.decode(errors="replace"), tuple(ids[:n]))


@dataclass(frozen=True)
class MapInfo:
    id: int
    type: int
    key_size: int
    value_size: int
    max_entries: int
    flags: int
    name: str


def map_info(fd: int) -> MapInfo:
    info = _MapInfo()
    size = ct.c_uint32(ct.sizeof(info))
    _check(_libbpf().bpf_obj_get_info_by_fd(fd, ct.byref(info), ct.byref(size)), "reading map info")
    return MapInfo(info.id, info.type, info.key_size, info.value_size, info.max_entries,
                   info.map_flags, info.name.decode(errors="replace"))


class Map:
    """A BPF map by file descriptor, with typed keys and values.

    For per-CPU maps ``lookup_percpu`` returns one value per possible CPU; the
    kernel lays them out at 8-byte-aligned strides.
    """

    def __init__(self, fd: int, key_type: type, value_type: type, name: str = "map",
                 percpu: bool = False) -> None:
        self.fd = fd
        self.key_type = key_type
        self.value_type = value_type
        self.name = name
        self.percpu = percpu

    @classmethod
    def open_pinned(cls, path: str, key_type: type, value_type: type,
                    percpu: bool = False) -> "Map":
        return cls(obj_get(path), key_type, value_type, os.path.basename(path), percpu)

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def info(self) -> MapInfo:
        return map_info(self.fd)

    def mmap(self) -> mmap.mmap:
        """The values of a ``BPF_F_MMAPABLE`` array, shared with the program:
        single stores to it are seen by the next packet, with no
        read-modify-write of the rest of a value."""
        info = self.info()
        size = ((info.value_size + 7) & ~7) * info.max_entries
        size = -(-size // mmap.PAGESIZE) * mmap.PAGESIZE
        return mmap.mmap(self.fd, size, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)

    def lookup(self, key):
        value = self.value_type()
        ret = _libbpf().bpf_map_lookup_elem(self.fd, ct.byref(key), ct.byref(value))
        if ret < 0 and ct.get_errno() == errno.ENOENT:
            return None
        _check(ret, f"looking up in {self.name}")
        return value

    def lookup_percpu(self, key) -> list:
        ncpu = num_possible_cpus()
        stride = (ct.sizeof(self.value_type) + 7) & ~7
        buf = (ct.c_uint8 * (stride * ncpu))()
        _check(_libbpf().bpf_map_lookup_elem(self.fd, ct.byref(key), buf), f"looking up in {self.name}")
        return [self.value_type.from_buffer_copy(buf, i * stride) for i in range(ncpu)]

    def update(self, key, value) -> None:
        _check(_libbpf().bpf_map_update_elem(self.fd, ct.byref(key), ct.byref(value), 0),
               f"updating {self.name}")

    def delete(self, key) -> bool:
        ret = _libbpf().bpf_map_delete_elem(self.fd, ct.byref(key))
        if ret < 0 and ct.get_errno() == errno.ENOENT:
            return False
        _check(ret, f"deleting from {self.name}")
        return True

    def keys(self) -> Iterator:
        """Every key, by get_next_key (fine for small maps)."""
        prev = None
        while True:
            nxt = self.key_type()
            ret = _libbpf().bpf_map_get_next_key(self.fd, ct.byref(prev) if prev is not None else None,
                                            ct.byref(nxt))
            if ret < 0:
                if ct.get_errno() == errno.ENOENT:
                    return
                _check(ret, f"iterating {self.name}")
            yield nxt
            prev = nxt

    def update_percpu(self, key, values: Sequence) -> None:
        """Write one per-CPU entry: ``values`` holds one value per possible CPU."""
        ncpu = num_possible_cpus()
        if len(values) != ncpu:
            raise ValueError(f"{self.name}: {len(values)} values for {ncpu} CPUs")
        stride = (ct.sizeof(self.value_type) + 7) & ~7
        buf = (ct.c_uint8 * (stride * ncpu))()
        for i, v in enumerate(values):
            ct.memmove(ct.addressof(buf) + i * stride, ct.byref(v), ct.sizeof(v))
        _check(_libbpf().bpf_map_update_elem(self.fd, ct.byref(key), buf, 0), f"updating {self.name}")

    def update_batch(self, keys: bytes | bytearray | memoryview, values: bytes | bytearray | memoryview) -> int:
        """Write many entries: ``keys``/``values`` are packed arrays of the
        key and value structs.  Returns the number written."""
        ksz, vsz = ct.sizeof(self.key_type), ct.sizeof(self.value_type)
        n = len(keys) // ksz
        if len(values) // vsz != n:
            raise ValueError(f"{self.name}: {n} keys but {len(values) // vsz} values")
        opts = _BatchOpts(sz=ct.sizeof(_BatchOpts))
        done = 0
        kbuf, vbuf = memoryview(keys), memoryview(values)
        while done < n:
            chunk = min(BATCH_CHUNK, n - done)
            kc = (ct.c_uint8 * (chunk * ksz)).from_buffer_copy(kbuf[done * ksz:(done + chunk) * ksz])
            vc = (ct.c_uint8 * (chunk * vsz)).from_buffer_copy(vbuf[done * vsz:(done + chunk) * vsz])
            count = ct.c_uint32(chunk)
            _check(_libbpf().bpf_map_update_batch(self.fd, kc, vc, ct.byref(count), ct.byref(opts)),
                   f"batch update of {self.name} ({done + count.value} of {n} written)")
            done += chunk
        return n

    def delete_batch(self, keys: bytes | bytearray | memoryview) -> int:
        """Delete many keys (all must exist); returns the number deleted."""
        ksz = ct.sizeof(self.key_type)
        n = len(keys) // ksz
        opts = _BatchOpts(sz=ct.sizeof(_BatchOpts))
        done = 0
        kbuf = memoryview(keys)
        while done < n:
            chunk = min(BATCH_CHUNK, n - done)
            kc = (ct.c_uint8 * (chunk * ksz)).from_buffer_copy(kbuf[done * ksz:(done + chunk) * ksz])
            count = ct.c_uint32(chunk)
            _check(_libbpf().bpf_map_delete_batch(self.fd, kc, ct.byref(count), ct.byref(opts)),
                   f"batch delete from {self.name}")
            done += chunk
        return n

    def array_values(self) -> bytes:
        """Every value of an array map, packed in index order (batch lookups)."""
        ksz, vsz = ct.sizeof(self.key_type), ct.sizeof(self.value_type)
        opts = _BatchOpts(sz=ct.sizeof(_BatchOpts))
        chunk = 65536
        kbuf = (ct.c_uint8 * (chunk * ksz))()
        vbuf = (ct.c_uint8 * (chunk * vsz))()
        parts = []
        batch_in = None
        cursor = ct.c_uint64(0)  # arrays use a u32 index as the cursor
        while True:
            count = ct.c_uint32(chunk)
            ret = _libbpf().bpf_map_lookup_batch(self.fd, batch_in, ct.byref(cursor), kbuf, vbuf,
                                            ct.byref(count), ct.byref(opts))
            err = ct.get_errno() if ret < 0 else 0
            parts.append(bytes(vbuf)[:count.value * vsz])
            if ret < 0:
                if err == errno.ENOENT:
                    return b"".join(parts)
                _check(ret, f"batch lookup in {self.name}")
            batch_in = ct.byref(cursor)

    def items_batch(self) -> Iterator[tuple[bytes, bytes]]:
        """Every (packed key, packed value) pair, read with batch lookups.

        Hash maps only; used to find the entries of a bank whose contents a
        previous daemon wrote.  One pair of objects per entry: for a big map,
        :meth:`batches` keeps them packed.
        """
        ksz, vsz = ct.sizeof(self.key_type), ct.sizeof(self.value_type)
        for kb, vb in self.batches():
            for i in range(len(kb) // ksz):
                yield kb[i * ksz:(i + 1) * ksz], vb[i * vsz:(i + 1) * vsz]

    def batches(self, chunk: int = 8192) -> Iterator[tuple[bytes, bytes]]:
        """Every entry of a hash map, as (packed keys, packed values) of up to ``chunk`` entries each.

        The kernel's batch lookup fills the buffers directly, so a million
        entries never become a million Python objects.
        """
        ksz, vsz = ct.sizeof(self.key_type), ct.sizeof(self.value_type)
        opts = _BatchOpts(sz=ct.sizeof(_BatchOpts))
        kbuf = (ct.c_uint8 * (chunk * ksz))()
        vbuf = (ct.c_uint8 * (chunk * vsz))()
        batch_in = None
        # The kernel writes an opaque bucket cursor here; 8 bytes suffice for htab.
        cursor = ct.c_uint64(0)
        while True:
            count = ct.c_uint32(chunk)
            ret = _libbpf().bpf_map_lookup_batch(self.fd, batch_in, ct.byref(cursor), kbuf, vbuf,
                                            ct.byref(count), ct.byref(opts))
            err = ct.get_errno() if ret < 0 else 0
            if count.value:
                yield ct.string_at(kbuf, count.value * ksz), ct.string_at(vbuf, count.value * vsz)
            if ret < 0:
                if err == errno.ENOENT:
                    return
                _check(ret, f"batch lookup in {self.name}")
            batch_in = ct.byref(cursor)


BPF_XDP = 37
"""``enum bpf_attach_type``: an XDP program attached to a device through a bpf_link (kernel 5.9)."""
BPF_LINK_TYPE_XDP = 6


def link_create(prog_fd: int, ifindex: int, attach_type: int, flags: int = 0) -> int:
    """BPF_LINK_CREATE; returns the link's fd (caller closes; closing the
    last reference, fd or pin, detaches).  For ``BPF_XDP`` the target is an
    ifindex of the caller's network namespace and ``flags`` are XDP flags."""
    opts = _LinkCreateOpts(sz=ct.sizeof(_LinkCreateOpts), flags=flags)
    return _check(_libbpf().bpf_link_create(prog_fd, ifindex, attach_type, ct.byref(opts)),
                  f"creating a bpf_link for ifindex {ifindex}")


def link_update(link_fd: int, prog_fd: int) -> None:
    """BPF_LINK_UPDATE: swap the link's program in one step (no gap)."""
    _check(_libbpf().bpf_link_update(link_fd, prog_fd, None), "updating a bpf_link's program")


def link_detach(link_fd: int) -> None:
    """BPF_LINK_DETACH: detach now, whoever else holds the link (it stays, defunct)."""
    _check(_libbpf().bpf_link_detach(link_fd), "detaching a bpf_link")


def link_fd_by_id(link_id: int) -> int:
    """A new fd for the link with this id (caller closes)."""
    return _check(_libbpf().bpf_link_get_fd_by_id(link_id), f"opening bpf_link id {link_id}")


@dataclass(frozen=True)
class LinkInfo:
    id: int
    type: int
    prog_id: int
    ifindex: int
    """For an XDP link: the device it is attached to, 0 once it is defunct
    (the device was deleted, or someone detached the link)."""


def link_info(fd: int) -> LinkInfo:
    info = _LinkInfo()
    size = ct.c_uint32(ct.sizeof(info))
    _check(_libbpf().bpf_obj_get_info_by_fd(fd, ct.byref(info), ct.byref(size)), "reading bpf_link info")
    return LinkInfo(info.id, info.type, info.prog_id, info.ifindex if info.type == BPF_LINK_TYPE_XDP else 0)


def prog_test_run(prog_fd: int, frame: bytes, repeat: int = 1) -> tuple[int, int]:
    """Run a loaded XDP program on one frame (BPF_PROG_TEST_RUN).

    Returns ``(XDP action, mean ns per run)``.
    """
    data = ct.create_string_buffer(frame, len(frame))
    out = ct.create_string_buffer(len(frame) + 256)
    opts = _TestRunOpts(
        sz=ct.sizeof(_TestRunOpts),
        data_in=ct.addressof(data),
        data_size_in=len(frame),
        data_out=ct.addressof(out),
        data_size_out=len(out),
        repeat=repeat,
    )
    _check(_libbpf().bpf_prog_test_run_opts(prog_fd, ct.byref(opts)), "BPF_PROG_TEST_RUN")
    return opts.retval, opts.duration


def pack_array(structs: Sequence[ct.Structure]) -> bytes:
    """Concatenate ctypes structs into the packed form batch calls take."""
    return b"".join(bytes(s) for s in structs)
