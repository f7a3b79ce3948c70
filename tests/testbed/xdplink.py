"""XDP on a test bed's interfaces as the kernel reports it: which mode, which program, every change.

``ip -d -j link`` answers what is attached now; :func:`xdp_link_id` which
bpf_link holds it (xdpd attaches through pinned links); :class:`XdpMonitor`
records every attach, replace and detach, so a test can prove an interface
was never without its program.
"""

from __future__ import annotations

import json
import os
import select
import subprocess
import threading
import time
from typing import Any

from tests.testbed.netns import setns_current_thread

# ip link's names of the XDP attachment modes, by netlink number or as ``ip -j`` spells them.
_XDP_KINDS = {1: "xdp", 2: "xdpgeneric", 3: "xdpoffload", 4: "xdpmulti",
              "xdp": "xdp", "xdpgeneric": "xdpgeneric", "xdpoffload": "xdpoffload", "xdpmulti": "xdpmulti"}


def _link_xdp(ns: str, ifname: str) -> dict:
    """The ``xdp`` object of ``ip -d -j link show dev IFNAME`` in ``ns`` ({} if nothing is attached)."""
    out = subprocess.run(["ip", "-n", ns, "-d", "-j", "link", "show", "dev", ifname],
                         capture_output=True, text=True, check=True, timeout=30).stdout
    return json.loads(out)[0].get("xdp") or {}


def xdp_attachment(ns: str, ifname: str) -> str | None:
    """``"xdp"``, ``"xdpgeneric"``, ... as ``ip link`` reports for ``ifname`` in ``ns``, or None."""
    xdp = _link_xdp(ns, ifname)
    if not xdp:
        return None
    return _XDP_KINDS.get(xdp.get("mode"), str(xdp.get("mode")))


def xdp_prog_id(ns: str, ifname: str) -> int:
    """The id of the XDP program on ``ifname`` in ``ns`` (any mode; with several, the last listed), 0 if none."""
    xdp = _link_xdp(ns, ifname)
    prog_id = (xdp.get("prog") or {}).get("id") or xdp.get("prog_id")
    for att in () if prog_id else xdp.get("attached", []):
        prog_id = (att.get("prog") or {}).get("id", prog_id)
    return int(prog_id or 0)


def xdp_link_id(ns: str, ifname: str) -> int:
    """The id of the bpf_link holding ``ifname``'s XDP program in ``ns``, 0 when it is a netlink attachment or none.

    bpftool lists XDP links with their program but not their device, so the
    candidates (links of the program attached there) are told apart by the
    ifindex in each link's own info.  The program id makes that unambiguous
    across namespaces: it is the one attached to this device.
    """
    from xdpd import bpfsys

    prog_id = xdp_prog_id(ns, ifname)
    if not prog_id:
        return 0
    ifindex = int(json.loads(subprocess.run(["ip", "-n", ns, "-j", "link", "show", "dev", ifname],
                                            capture_output=True, text=True, check=True,
                                            timeout=30).stdout)[0]["ifindex"])
    links = json.loads(subprocess.run(["bpftool", "-j", "link", "show"], capture_output=True, text=True,
                                      check=True, timeout=30).stdout or "[]")
    for link in links:
        if link.get("type") != "xdp" or link.get("prog_id") != prog_id:
            continue
        try:
            fd = bpfsys.link_fd_by_id(link["id"])
        except OSError:
            continue  # released meanwhile
        try:
            if bpfsys.link_info(fd).ifindex == ifindex:
                return int(link["id"])
        finally:
            os.close(fd)
    return 0


def detach_xdp(ns: str, ifname: str) -> None:
    """Remove any XDP program from ``ifname`` in ``ns`` (both modes, netlink attachment or bpf_link; quiet if none).

    A bpf_link is detached by force (BPF_LINK_DETACH, what ``bpftool link
    detach`` does): the kernel refuses ``ip link set ... xdp off`` while one
    holds the interface.
    """
    for kind in ("xdp", "xdpgeneric"):
        subprocess.run(["ip", "-n", ns, "link", "set", "dev", ifname, kind, "off"],
                       capture_output=True, text=True, timeout=30)
    link_id = xdp_link_id(ns, ifname)
    if link_id:
        subprocess.run(["bpftool", "link", "detach", "id", str(link_id)], capture_output=True, text=True,
                       timeout=30)


class XdpMonitor:
    """Every XDP change of one interface, from a netlink listener and a fast poll.

    The kernel sends an RTM_NEWLINK notification for each *netlink* XDP
    attach, replace and detach (rtnetlink's setlink notifies after an
    IFLA_XDP change), so for those the listener misses no detach, however
    short.  Changes made through a bpf_link (create, update, forced detach:
    how xdpd attaches) are announced by no message, so the monitor also asks
    for the interface every ``poll`` seconds and records any difference:
    for links it sees every program hand-over, and a detach that lasts
    longer than the poll interval.  :attr:`events` holds
    ``(time.monotonic(), kind or None, prog_id)`` for each state seen; the
    first entry is the state when the monitor started.  Kinds are
    ``ip link``'s: ``xdp``, ``xdpgeneric``.

    The listener thread enters the namespace ``ns`` (setns is per thread)
    for its whole life; it is a thread of its own, no other thread moves.
    Use as a context manager, or call :meth:`stop`.
    """

    def __init__(self, ns: str, ifname: str, poll: float = 0.005) -> None:
        self.ns, self.ifname, self.poll = ns, ifname, poll
        self.events: list[tuple[float, str | None, int]] = []
        self.error: BaseException | None = None
        self._ready = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"xdp-monitor-{ifname}", daemon=True)

    def start(self) -> "XdpMonitor":
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("XDP monitor did not start")
        if self.error is not None:
            raise RuntimeError(f"XDP monitor failed: {self.error!r}")
        return self

    def _run(self) -> None:
        from pyroute2 import IPRoute

        try:
            setns_current_thread(self.ns)
            ipr = IPRoute()
            asker = IPRoute()
        except BaseException as exc:
            self.error = exc
            self._ready.set()
            return
        try:
            ipr.bind()
            # The state now, read after subscribing: a change from here on is
            # reported as an event, so nothing falls between the two.
            self.events.append((time.monotonic(), xdp_attachment(self.ns, self.ifname),
                                xdp_prog_id(self.ns, self.ifname)))
            self._ready.set()
            next_poll = time.monotonic() + self.poll
            while not self._stop.is_set():
                if select.select([ipr.fileno()], [], [], max(0.0, next_poll - time.monotonic()))[0]:
                    for msg in ipr.get():
                        if msg.get("event") == "RTM_NEWLINK" and msg.get_attr("IFLA_IFNAME") == self.ifname:
                            self.events.append((time.monotonic(), *_state(msg)))
                if time.monotonic() >= next_poll:
                    [msg] = asker.get_links(ifname=self.ifname)
                    if _state(msg) != self.events[-1][1:]:
                        self.events.append((time.monotonic(), *_state(msg)))
                    next_poll = time.monotonic() + self.poll
        except BaseException as exc:
            self.error = exc
            self._ready.set()
        finally:
            ipr.close()
            asker.close()

    def stop(self) -> "XdpMonitor":
        """Stop listening (raise in :meth:`gaps` if the listener failed)."""
        self._stop.set()
        self._thread.join(5)
        return self

    def __enter__(self) -> "XdpMonitor":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def gaps(self) -> list[tuple[float, str | None, int]]:
        """Events that left the interface without any XDP program (raises if the listener failed)."""
        if self.error is not None:
            raise RuntimeError(f"XDP monitor failed, its record is incomplete: {self.error!r}")
        return [e for e in self.events if e[1] is None or not e[2]]

    def prog_ids(self) -> list[int]:
        """The distinct program ids seen, in order."""
        out: list[int] = []
        for _t, _k, prog in self.events:
            if prog and (not out or out[-1] != prog):
                out.append(prog)
        return out


def _state(msg) -> tuple[str | None, int]:
    """(``ip link`` kind or None, program id or 0) of an RTM_NEWLINK message."""
    xdp = msg.get_attr("IFLA_XDP")
    if xdp is None:
        return None, 0
    return _XDP_KINDS.get(xdp.get_attr("IFLA_XDP_ATTACHED")), xdp.get_attr("IFLA_XDP_PROG_ID") or 0
