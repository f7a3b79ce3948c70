"""XDP attachments: observed through rtnetlink (pyroute2), made through pinned bpf_links.

The attachment half of the kernel side (the maps are the other): observing
every interface's XDP attachment, attaching, replacing and detaching.  It
works in the network namespace the process runs in (an XDP link's ifindex
is resolved there too); to filter inside another namespace, run the daemon
in it with ``nsenter --net=/run/netns/NAME`` (not ``ip netns exec``, which
remounts ``/sys`` and hides ``/sys/fs/bpf``).

:class:`XdpLinks` attaches through bpf_links pinned under the pin dir
(:mod:`xdpd.bpflinks`): they stay in place when the daemon exits, which is
what lets filtering outlive a crash or a restart, and no other tool can
detach or replace them by netlink.  The module-level functions are the
netlink mechanism, used where the kernel has no XDP links (before 5.9), to
take over another tool's netlink attachment, and by the tools.  Replacing a
program in the same mode is atomic either way; a mode change (native <->
generic) needs a detach first, because the kernel refuses two modes at once.
"""

from __future__ import annotations

import errno
import os
from dataclasses import replace
from typing import Callable

from pyroute2 import IPRoute
from pyroute2.netlink import NLM_F_ACK, NLM_F_REQUEST, nla
from pyroute2.netlink.exceptions import NetlinkError
from pyroute2.netlink.rtnl import RTM_SETLINK
from pyroute2.netlink.rtnl.ifinfmsg import ifinfmsg

from . import bpfsys, pins
from .bpflinks import (LINK_MODE_FLAGS, XDP_FLAGS_DRV_MODE, XDP_FLAGS_HW_MODE, XDP_FLAGS_SKB_MODE, PinnedLinks,
                       defunct, with_link_ids)
from .observed import LinkXdp

MODE_FLAGS = {"generic": XDP_FLAGS_SKB_MODE, "native": XDP_FLAGS_DRV_MODE,
              "offload": XDP_FLAGS_HW_MODE}
_ATTACHED_NAMES = {"xdp": "native", "xdpgeneric": "generic", "xdpoffload": "offload"}


class _XdpMsg(ifinfmsg):
    """ifinfmsg whose IFLA_XDP_FLAGS is a native u32.

    pyroute2 0.7 encodes the flags as a big-endian u16, which the kernel
    rejects (ERANGE).  pyroute2 caches each class's compiled attribute map, so
    the subclasses must reset that cache to see the override.
    """

    _nlmsg_base__compiled_nla = False

    class xdp(ifinfmsg.xdp):
        _nlmsg_base__compiled_nla = False

        class xdp_flags(nla):
            fields = [("value", "I")]


class AttachError(OSError):
    """The kernel refused an attachment; the message names interface and mode."""


def observe(ipr: IPRoute, names: list[str] | None = None) -> dict[str, LinkXdp]:
    """XDP state of every interface (or of ``names``) by interface name (netlink's view: no link ids)."""
    out = {}
    for link in ipr.get_links():
        name = link.get_attr("IFLA_IFNAME")
        if names is not None and name not in names:
            continue
        mode, prog = xdp_state(link) or (None, 0)
        out[name] = LinkXdp(name, link["index"], mode, prog)
    return out


def xdp_state(msg) -> tuple[str | None, int] | None:
    """(mode or None, program id or 0) from an RTM_NEWLINK message; None if it carries no IFLA_XDP."""
    xdp = msg.get_attr("IFLA_XDP")
    if xdp is None:
        return None
    return _ATTACHED_NAMES.get(xdp.get_attr("IFLA_XDP_ATTACHED")), xdp.get_attr("IFLA_XDP_PROG_ID") or 0


def _set_xdp(ipr: IPRoute, ifindex: int, fd: int, flags: int) -> None:
    msg = _XdpMsg()
    msg["index"] = ifindex
    msg["family"] = 0
    msg["attrs"] = [("IFLA_XDP", {"attrs": [("IFLA_XDP_FD", fd), ("IFLA_XDP_FLAGS", flags)]})]
    msg["header"]["type"] = RTM_SETLINK
    msg["header"]["flags"] = NLM_F_REQUEST | NLM_F_ACK
    # Not nlm_request: pyroute2 retries EBUSY there 30 times, 0.3 s apart,
    # and EBUSY is the kernel's final answer when a bpf_link holds the
    # interface.  The batch call sends once and raises the error.
    ipr.nlm_request_batch([msg])


def attach(ipr: IPRoute, link: LinkXdp, prog_fd: int, mode: str) -> tuple[str, str | None]:
    """Attach (or atomically replace) ``prog_fd`` on ``link`` in ``mode``.

    ``mode`` is native, generic, offload or auto (native, falling back to
    generic).  Returns ``(mode used, warning or None)``.
    """
    if mode == "auto" and link.mode in ("native", "generic"):
        # Replace in the mode already in use: switching would need a detach.
        return attach(ipr, link, prog_fd, link.mode)
    if mode == "auto":
        try:
            used, _ = attach(ipr, link, prog_fd, "native")
            return used, None
        except AttachError as e:
            used, _ = attach(ipr, link, prog_fd, "generic")
            return used, f"native XDP unavailable on {link.name} ({e.__cause__}); using generic mode"
    if link.mode is not None and link.mode != mode:
        # The kernel holds one mode at a time: this is the only gap, and only
        # on an explicit mode change.
        detach(ipr, link)
    try:
        _set_xdp(ipr, link.ifindex, prog_fd, MODE_FLAGS[mode])
    except NetlinkError as e:
        raise AttachError(f"attaching XDP to {link.name} in {mode} mode: "
                          f"{errno.errorcode.get(e.code, e.code)} {e.args[-1]}") from e
    return mode, None


def detach(ipr: IPRoute, link: LinkXdp) -> None:
    """Remove whatever XDP program is attached to ``link`` in its mode."""
    if link.mode is None:
        return
    try:
        _set_xdp(ipr, link.ifindex, -1, MODE_FLAGS[link.mode])
    except NetlinkError as e:
        if e.code == errno.EBUSY:
            raise AttachError(f"detaching XDP from {link.name}: EBUSY: another program holds it through a "
                              "bpf_link (bpftool link show)") from e
        if e.code != errno.ENODEV:
            raise AttachError(f"detaching XDP from {link.name}: {e.args[-1]}") from e


class XdpLinks:
    """Attachments of one program (what :mod:`xdpd.execute` uses): the mechanism is decided here.

    With a pin dir, each attachment is a bpf_link pinned under it
    (:mod:`xdpd.bpflinks`), which other tools cannot remove or replace;
    a program swap is an atomic link update.  Where the kernel refuses XDP
    links (EINVAL or EOPNOTSUPP from link_create, and a netlink attachment
    works), or ``bpf_links`` is false, attachments are netlink ones, as
    before kernel 5.9; ``on_fallback`` is told once.  Whatever it holds, it
    adopts: a link pinned by an earlier daemon is updated in place, a
    netlink attachment (another tool's, or an older xdpd's) is detached and
    replaced by a link, the one step with a gap of a few microseconds.
    """

    def __init__(self, ipr: IPRoute, prog_fd: int, pin_dir: str | None = None, bpf_links: bool = True,
                 on_fallback: Callable[[str], None] | None = None) -> None:
        self.ipr, self.prog_fd = ipr, prog_fd
        self.prog_id = bpfsys.prog_info(prog_fd).id
        self.pinned = PinnedLinks(pins.links_dir(pin_dir)) if pin_dir else None
        self.bpf_links = bool(bpf_links and self.pinned)
        """Attach through bpf_links (False: netlink, by choice or because the kernel has none)."""
        self._links_work = False  # a link was created: the kernel has them, errors are real
        self._on_fallback = on_fallback

    def observe(self, names: list[str] | None = None) -> dict[str, LinkXdp]:
        """Every interface's attachment, with the id of the link of ours that holds it."""
        attached = observe(self.ipr, names)
        return with_link_ids(attached, self.pinned.read()) if self.pinned else attached

    def defunct_links(self) -> tuple[str, ...]:
        """Pins whose links hold no attachment any more."""
        return defunct(self.pinned.read()) if self.pinned else ()

    def attach(self, link: LinkXdp, mode: str) -> tuple[str, str | None]:
        """Attach (or swap in) our program on ``link`` in ``mode``; see :func:`attach` for ``auto``."""
        if mode == "auto" and link.mode in ("native", "generic"):
            return self.attach(link, link.mode)  # switching modes would need a detach
        if mode == "auto":
            try:
                used, _ = self.attach(link, "native")
                return used, None
            except AttachError as e:
                used, _ = self.attach(link, "generic")
                return used, f"native XDP unavailable on {link.name} ({e.__cause__}); using generic mode"
        return self._put(link, self.prog_fd, mode, self.bpf_links)

    def detach(self, link: LinkXdp) -> None:
        if link.link_id:
            assert self.pinned is not None
            self.pinned.release(link.link_id)
        else:
            detach(self.ipr, link)

    def restore(self, before: LinkXdp) -> None:
        """Put back what ``before`` had attached (nothing, or a program by id, in its mode, the same way)."""
        now = self.observe([before.name]).get(before.name)
        if now is None or (now.prog_id, now.mode) == (before.prog_id, before.mode):
            return
        if not before.prog_id:
            self.detach(now)
            return
        fd = bpfsys.prog_fd_by_id(before.prog_id)
        try:
            self._put(now, fd, before.mode or "auto", via_link=bool(before.link_id))
        finally:
            os.close(fd)

    def unpin(self, pin: str) -> None:
        if self.pinned is not None:
            self.pinned.unpin(pin)

    def _put(self, link: LinkXdp, fd: int, mode: str, via_link: bool) -> tuple[str, str | None]:
        """Make ``fd`` the program on ``link`` in ``mode``, through a link of ours or netlink."""
        if link.link_id:
            assert self.pinned is not None
            if via_link and link.mode == mode:
                self.pinned.update(link.link_id, fd)
                return mode, None
            # A mode change (the kernel holds one mode at a time), or back to netlink: the one gap.
            self.pinned.release(link.link_id)
            link = replace(link, mode=None, prog_id=0, link_id=0)
        if not via_link or mode not in LINK_MODE_FLAGS:
            return attach(self.ipr, link, fd, mode)
        assert self.pinned is not None
        if link.mode is not None:
            # A netlink attachment: the kernel creates no link beside one (EBUSY).
            detach(self.ipr, link)
            link = replace(link, mode=None, prog_id=0)
        try:
            self.pinned.create(link.ifindex, fd, mode)
        except bpfsys.BpfError as e:
            if not self._links_work and e.errno in (errno.EINVAL, errno.EOPNOTSUPP):
                return self._fall_back(link, fd, mode, e)
            hint = _LINK_HINTS.get(e.errno, e.strerror)
            raise AttachError(f"attaching XDP to {link.name} in {mode} mode: "
                              f"{errno.errorcode.get(e.errno, e.errno)} {hint}") from e
        self._links_work = True
        return mode, None

    def _fall_back(self, link: LinkXdp, fd: int, mode: str, refused: OSError) -> tuple[str, str | None]:
        """link_create said EINVAL/EOPNOTSUPP: if netlink takes the same attachment, the kernel has no XDP links."""
        used = attach(self.ipr, link, fd, mode)  # raises (netlink's wording) when the refusal was real
        self.bpf_links = False
        if self._on_fallback is not None:
            self._on_fallback(f"the kernel refused an XDP bpf_link ({refused.strerror}) but took a netlink "
                              "attachment: using netlink attachments, which other tools can remove or "
                              "replace (xdpd puts them back)")
        return used


_LINK_HINTS = {
    errno.EBUSY: "another program is attached there (by netlink just now, or through a bpf_link of its own: "
                 "bpftool net show; bpftool link show)",
    errno.EEXIST: "a program is attached in the other XDP mode",
}
