"""XDP attachments through rtnetlink (pyroute2).

The netlink half of the kernel side (the maps are the other): observing
every interface's XDP attachment, attaching, replacing and detaching.  It
works in the network namespace the process runs in; to filter inside
another namespace, run the daemon in it with ``nsenter --net=/run/netns/NAME``
(not ``ip netns exec``, which remounts ``/sys`` and hides ``/sys/fs/bpf``).

Attachments are plain netlink XDP attachments, not bpf_links: they stay in
place when the daemon exits, which is what lets filtering outlive a crash or
a restart.  Replacing a program in the same mode is atomic in the kernel; a
mode change (native <-> generic) needs a detach first, because the kernel
refuses two modes at once.
"""

from __future__ import annotations

import errno
import os

from pyroute2 import IPRoute
from pyroute2.netlink import NLM_F_ACK, NLM_F_REQUEST, nla
from pyroute2.netlink.exceptions import NetlinkError
from pyroute2.netlink.rtnl import RTM_SETLINK
from pyroute2.netlink.rtnl.ifinfmsg import ifinfmsg

from . import bpfsys
from .observed import LinkXdp

XDP_FLAGS_SKB_MODE = 1 << 1
XDP_FLAGS_DRV_MODE = 1 << 2
XDP_FLAGS_HW_MODE = 1 << 3

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
    """XDP state of every interface (or of ``names``) by interface name."""
    out = {}
    for link in ipr.get_links():
        name = link.get_attr("IFLA_IFNAME")
        if names is not None and name not in names:
            continue
        xdp = link.get_attr("IFLA_XDP")
        mode, prog = None, 0
        if xdp is not None:
            mode = _ATTACHED_NAMES.get(xdp.get_attr("IFLA_XDP_ATTACHED"))
            prog = xdp.get_attr("IFLA_XDP_PROG_ID") or 0
        out[name] = LinkXdp(name, link["index"], mode, prog)
    return out


def _set_xdp(ipr: IPRoute, ifindex: int, fd: int, flags: int) -> None:
    msg = _XdpMsg()
    msg["index"] = ifindex
    msg["family"] = 0
    msg["attrs"] = [("IFLA_XDP", {"attrs": [("IFLA_XDP_FD", fd), ("IFLA_XDP_FLAGS", flags)]})]
    ipr.nlm_request(msg, msg_type=RTM_SETLINK, msg_flags=NLM_F_REQUEST | NLM_F_ACK)


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
        if e.code != errno.ENODEV:
            raise AttachError(f"detaching XDP from {link.name}: {e.args[-1]}") from e


class XdpLinks:
    """Attachments of one program through one netlink socket (what :mod:`xdpd.execute` uses)."""

    def __init__(self, ipr: IPRoute, prog_fd: int) -> None:
        self.ipr, self.prog_fd = ipr, prog_fd
        self.prog_id = bpfsys.prog_info(prog_fd).id

    def observe(self, names: list[str] | None = None) -> dict[str, LinkXdp]:
        return observe(self.ipr, names)

    def attach(self, link: LinkXdp, mode: str) -> tuple[str, str | None]:
        return attach(self.ipr, link, self.prog_fd, mode)

    def detach(self, link: LinkXdp) -> None:
        detach(self.ipr, link)

    def restore(self, before: LinkXdp) -> None:
        """Put back what ``before`` had attached (nothing, or a program by id, in its mode)."""
        now = observe(self.ipr, [before.name]).get(before.name)
        if now is None:
            return
        if not before.prog_id:
            detach(self.ipr, now)
            return
        fd = bpfsys.prog_fd_by_id(before.prog_id)
        try:
            attach(self.ipr, now, fd, before.mode or "auto")
        finally:
            os.close(fd)
