"""What lives under the pin directory, and finding it again.

Pin layout::

    prog                    the XDP program (what ``status`` reports)
    prog_staged             a freshly compiled program, until the daemon owns it
    maps-<layout id>/NAME   the maps, one directory per binary layout
    bans-v1-<capacity>/     the ban table and its filter (bans, ban_filter)
    reloads-v1              reloads applied and rejected (:mod:`xdpd.reloadstats`)
    links/<ifindex>         the bpf_link holding the attachment to that interface
    repairs-v1              drift repairs and fights per interface (:mod:`xdpd.repairstats`)
    build-v1                what ``prog`` was built from, and its id (:mod:`xdpd.buildid`): a
                            restart reuses ``prog`` instead of compiling when nothing changed

The layout id (:func:`xdpd.compiler.layout_id`) hashes the C source and the
build parameters, so a daemon built with different capacities or an
upgraded program gets fresh maps instead of misreading old ones, while a
plain restart adopts the maps (and counters) a previous daemon left pinned.

Links are named by ifindex, not by interface name: bpffs refuses dots in
names (``eth0.100``), and a rename keeps the ifindex and the link.  The
pin is what keeps a link (and so the attachment) alive after the daemon
exits: removing it detaches.  A link whose interface was deleted stays
pinned, defunct, until the daemon removes it (see :mod:`xdpd.bpflinks`).

Bans are kept apart from the layout's maps: they must outlive upgrades that
change the program, and are only ever moved (:func:`xdpd.bans.migrate`)
when the ban table's own format or capacity changes.
"""

from __future__ import annotations

import ctypes as ct
import errno
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from . import bpfsys, layout

PROG = "prog"
LINKS = "links"
BANS_PREFIX = "bans-v1-"
"""Ban table directories: the format version, then the capacity."""


def links_dir(pin_dir: str) -> str:
    """Where the bpf_links of a daemon of ``pin_dir`` are pinned, one per interface."""
    return os.path.join(pin_dir, LINKS)


def bans_dir(pin_dir: str, capacity: int) -> str:
    return os.path.join(pin_dir, f"{BANS_PREFIX}{capacity}")


def ban_dirs(pin_dir: str) -> list[str]:
    """Every ban table directory under ``pin_dir`` (of any version or capacity)."""
    return sorted(str(p) for p in Path(pin_dir).glob("bans-*") if (p / "bans").exists())


def pin_program(prog_fd: int, pin_dir: str) -> None:
    """Pin (or atomically re-pin) the program at ``pin_dir/prog``."""
    pin_replacing(prog_fd, os.path.join(pin_dir, PROG))


def pin_replacing(fd: int, path: str) -> None:
    """Pin the object ``fd`` at ``path`` in one step, replacing what was pinned there."""
    tmp = path + "_new"  # bpffs forbids dots in names
    if os.path.lexists(tmp):
        os.unlink(tmp)
    bpfsys.obj_pin(fd, tmp)
    os.replace(tmp, path)


@dataclass(frozen=True)
class SmallMap:
    """The shape of one of the small maps the daemon pins beside the program's own
    (``reloads-v1``, ``repairs-v1``, ``build-v1``): bcc creates the program's
    maps from the C source, these the daemon creates itself."""

    map_type: int
    kernel_name: str
    key_type: type
    value_type: type
    max_entries: int

    def fits(self, m: bpfsys.Map) -> bool:
        info = m.info()
        return (info.type, info.key_size, info.value_size, info.max_entries) == \
            (self.map_type, ct.sizeof(self.key_type), ct.sizeof(self.value_type), self.max_entries)

    def open(self, path: str) -> bpfsys.Map | None:
        """The map pinned at ``path`` if it has this shape; None when nothing is
        pinned there or something of another shape (which only a hand-made pin
        or another version can be).  Other errors of the kernel raise OSError."""
        try:
            m = bpfsys.Map.open_pinned(path, self.key_type, self.value_type)
        except OSError as e:
            if e.errno == errno.ENOENT:
                return None
            raise
        if self.fits(m):
            return m
        m.close()
        return None

    def open_or_create(self, path: str) -> bpfsys.Map:
        """The map pinned at ``path``, or a new one pinned there in place of
        anything of another shape.  Raises OSError when the kernel refuses."""
        m = self.open(path)
        if m is not None:
            return m
        fd = bpfsys.map_create(self.map_type, self.kernel_name, ct.sizeof(self.key_type),
                               ct.sizeof(self.value_type), self.max_entries)
        m = bpfsys.Map(fd, self.key_type, self.value_type, os.path.basename(path))
        try:
            pin_replacing(fd, path)
        except OSError:
            m.close()
            raise
        return m


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
    dirs = sorted(str(p) for p in Path(pin_dir).glob("maps-*"))
    return _used_by_program(pin_dir, dirs, "state")


def current_ban_dir(pin_dir: str) -> str | None:
    """The ban table directory the pinned program uses, else the newest there is."""
    dirs = ban_dirs(pin_dir)
    return _used_by_program(pin_dir, dirs, "bans") or (dirs[-1] if dirs else None)


def _used_by_program(pin_dir: str, dirs: list[str], map_name: str) -> str | None:
    """Which of ``dirs`` holds the ``map_name`` the pinned program uses; with no
    program pinned, the only one there is (None when there are several)."""
    prog = os.path.join(pin_dir, PROG)
    if not os.path.exists(prog) or not dirs:
        return dirs[0] if len(dirs) == 1 else None
    fd = bpfsys.obj_get(prog)
    try:
        ids = set(bpfsys.prog_info(fd).map_ids)
    finally:
        os.close(fd)
    for d in dirs:
        mfd = bpfsys.obj_get(os.path.join(d, map_name))
        try:
            if bpfsys.map_info(mfd).id in ids:
                return d
        finally:
            os.close(mfd)
    return None


def pinned_program(pin_dir: str) -> int | None:
    """A new fd for the pinned xdpd program (caller closes), None when there is none.

    Raises ValueError when what is pinned there is not an xdpd program.
    """
    path = os.path.join(pin_dir, PROG)
    if not os.path.exists(path):
        return None
    fd = bpfsys.obj_get(path)
    if not _is_xdpd(fd):
        os.close(fd)
        raise ValueError(f"{path} is not an xdpd program")
    return fd


def is_ours(prog_id: int) -> bool:
    """Is the program with this id an xdpd program (ours or a predecessor's)?"""
    if not prog_id:
        return False
    try:
        fd = bpfsys.prog_fd_by_id(prog_id)
    except OSError:
        return False
    try:
        return _is_xdpd(fd)
    finally:
        os.close(fd)


def _is_xdpd(prog_fd: int) -> bool:
    """xdpd programs are told apart from foreign ones by the kernel's name for them."""
    return bpfsys.prog_info(prog_fd).name == layout.PROG_NAME
