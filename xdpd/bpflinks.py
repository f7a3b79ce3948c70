"""XDP attachments held by pinned bpf_links: the ones others cannot silently remove.

A netlink XDP attachment belongs to nobody: ``ip link set dev X xdp off``
or another tool's attach replaces it without a word.  A bpf_link
(``BPF_LINK_CREATE`` with ``BPF_XDP``, kernel 5.9) is owned by whoever
holds a reference to it, and while it is attached the kernel refuses both
(EBUSY, "Can't replace active BPF XDP link"), in either mode.  xdpd holds
each link by a pin, ``<pin dir>/links/<ifindex>`` (see :mod:`xdpd.pins`),
not by an open fd, so:

* the link outlives the daemon (``kill -9`` included), as the netlink
  attachment did, and the next daemon adopts it from the pin;
* a program swap is ``BPF_LINK_UPDATE``, atomic like a netlink replace;
* removing the pin is releasing the attachment: nothing else keeps it.

The kernel announces none of this on rtnetlink (no RTM_NEWLINK for a link's
create, update or detach), which is why :mod:`xdpd.linkwatch` polls the
pins.  A link can still be forced off (``bpftool link detach``, BPF_LINK_DETACH)
and it goes *defunct* when its interface is deleted: the link and its pin
stay, attached to nothing (ifindex 0), holding the old program in memory
until the pin is removed.

The pin is named after the ifindex, not the interface: interface names may
hold dots, which bpffs refuses, and a rename keeps the ifindex (and the
link).  The ifindex in the link's own info is what counts, not the pin's
name, so a defunct pin whose number a new device reuses is still seen as
defunct.
"""

from __future__ import annotations

import errno
import os
from dataclasses import dataclass, replace
from typing import Mapping

from . import bpfsys
from .observed import LinkXdp

# The XDP flags of <linux/if_link.h>, for netlink and link_create alike.
XDP_FLAGS_SKB_MODE = 1 << 1
XDP_FLAGS_DRV_MODE = 1 << 2
XDP_FLAGS_HW_MODE = 1 << 3
LINK_MODE_FLAGS = {"generic": XDP_FLAGS_SKB_MODE, "native": XDP_FLAGS_DRV_MODE}
"""Modes a bpf_link can hold (offload needs a device-bound program)."""


@dataclass(frozen=True)
class PinnedLink:
    """One pin under ``<pin dir>/links/`` and what the kernel says of its link."""

    pin: str
    """The pin's file name."""
    link_id: int
    prog_id: int
    ifindex: int
    """0: defunct (its interface was deleted, or someone detached it)."""


class PinnedLinks:
    """The bpf_links a daemon of one pin dir holds, one pin per interface."""

    def __init__(self, directory: str) -> None:
        self.directory = directory

    def read(self) -> list[PinnedLink]:
        """Every pin and its link; a pin that is not an XDP link reads as defunct (and gets unpinned)."""
        out = []
        try:
            names = sorted(os.listdir(self.directory))
        except FileNotFoundError:
            return out
        for name in names:
            try:
                fd = bpfsys.obj_get(os.path.join(self.directory, name))
            except OSError as e:
                if e.errno == errno.ENOENT:
                    continue  # unpinned while we listed
                out.append(PinnedLink(name, 0, 0, 0))
                continue
            try:
                info = bpfsys.link_info(fd)
            except OSError:
                info = bpfsys.LinkInfo(0, 0, 0, 0)
            finally:
                os.close(fd)
            out.append(PinnedLink(name, info.id, info.prog_id, info.ifindex))
        return out

    def create(self, ifindex: int, prog_fd: int, mode: str) -> int:
        """Attach ``prog_fd`` to ``ifindex`` (of this namespace) through a new link, pin it; return its id.

        Raises :class:`bpfsys.BpfError` as the kernel does: EBUSY when
        something is attached in that mode already, EEXIST in the other
        mode, EOPNOTSUPP for native mode on a driver without it, EINVAL on a
        kernel without XDP links.
        """
        os.makedirs(self.directory, exist_ok=True)
        fd = bpfsys.link_create(prog_fd, ifindex, bpfsys.BPF_XDP, LINK_MODE_FLAGS[mode])
        try:
            link_id = bpfsys.link_info(fd).id
            self._pin(fd, str(ifindex))
        except BaseException:
            bpfsys.link_detach(fd)  # a link nobody can find again must not stay attached
            raise
        finally:
            os.close(fd)
        return link_id

    def update(self, link_id: int, prog_fd: int) -> None:
        """Swap the program of a link we hold (atomic: no packet sees nothing)."""
        fd = bpfsys.link_fd_by_id(link_id)
        try:
            bpfsys.link_update(fd, prog_fd)
        finally:
            os.close(fd)

    def release(self, link_id: int) -> None:
        """Detach the link now (even if someone else holds an fd to it) and remove its pins."""
        try:
            fd = bpfsys.link_fd_by_id(link_id)
        except OSError as e:
            if e.errno != errno.ENOENT:
                raise
        else:
            try:
                bpfsys.link_detach(fd)
            finally:
                os.close(fd)
        for p in self.read():
            if p.link_id == link_id:
                self.unpin(p.pin)

    def unpin(self, pin: str) -> None:
        """Remove ``pin`` if its link is (still) defunct.

        A repair pins its new link under the same name (the ifindex) as the
        defunct one it replaces, so a plan made before the repair must not
        remove what is there now: a defunct link never comes back to life,
        so a live one under that name is the new one.
        """
        path = os.path.join(self.directory, pin)
        try:
            fd = bpfsys.obj_get(path)
        except OSError as e:
            if e.errno == errno.ENOENT:
                return
            fd = -1  # not a BPF object we can open: not a link of ours
        if fd >= 0:
            try:
                if bpfsys.link_info(fd).ifindex:
                    return
            except OSError:
                pass  # not a link: nothing of ours
            finally:
                os.close(fd)
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass

    def _pin(self, fd: int, name: str) -> None:
        """Pin atomically: a defunct link under the same name is replaced, never left half way."""
        tmp = os.path.join(self.directory, f"{name}_new")  # bpffs forbids dots in names
        if os.path.lexists(tmp):
            os.unlink(tmp)
        bpfsys.obj_pin(fd, tmp)
        os.replace(tmp, os.path.join(self.directory, name))


def with_link_ids(attached: Mapping[str, LinkXdp], pinned: list[PinnedLink]) -> dict[str, LinkXdp]:
    """``attached`` (netlink's view) with the id of the pinned link that holds each attachment.

    A link holds an interface's attachment when it is attached to that
    ifindex with the program netlink reports there.
    """
    by_ifindex = {(p.ifindex, p.prog_id): p.link_id for p in pinned if p.ifindex}
    return {name: replace(link, link_id=by_ifindex.get((link.ifindex, link.prog_id), 0))
            if link.prog_id else link for name, link in attached.items()}


def defunct(pinned: list[PinnedLink]) -> tuple[str, ...]:
    """Pins whose link holds no attachment any more: to be removed."""
    return tuple(p.pin for p in pinned if not p.ifindex)
