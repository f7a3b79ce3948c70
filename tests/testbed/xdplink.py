"""XDP on a test bed's interfaces as the kernel reports it: which mode, which program, every change.

``ip -d -j link`` answers what is attached now; :class:`XdpMonitor` listens
to rtnetlink and records every attach, replace and detach, so a test can
prove an interface was never without its program.
"""

from __future__ import annotations

import json
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


def detach_xdp(ns: str, ifname: str) -> None:
    """Remove any XDP program from ``ifname`` in ``ns`` (both modes; quiet if none)."""
    for kind in ("xdp", "xdpgeneric"):
        subprocess.run(["ip", "-n", ns, "link", "set", "dev", ifname, kind, "off"],
                       capture_output=True, text=True, timeout=30)


class XdpMonitor:
    """Every XDP change of one interface, as the kernel announces it, from a netlink listener.

    The kernel sends an RTM_NEWLINK notification for each XDP attach,
    replace and detach (rtnetlink's setlink notifies after an IFLA_XDP
    change), so unlike polling ``ip link`` this misses no detach, however
    short.  :attr:`events` holds ``(time.monotonic(), kind or None,
    prog_id)`` for the state after each notification about ``ifname``; the
    first entry is the state when the monitor started.  Kinds are
    ``ip link``'s: ``xdp``, ``xdpgeneric``.

    The listener thread enters the namespace ``ns`` (setns is per thread)
    for its whole life; it is a thread of its own, no other thread moves.
    Use as a context manager, or call :meth:`stop`.
    """

    def __init__(self, ns: str, ifname: str) -> None:
        self.ns, self.ifname = ns, ifname
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
            while not self._stop.is_set():
                if not select.select([ipr.fileno()], [], [], 0.05)[0]:
                    continue
                for msg in ipr.get():
                    if msg.get("event") != "RTM_NEWLINK" or msg.get_attr("IFLA_IFNAME") != self.ifname:
                        continue
                    xdp = msg.get_attr("IFLA_XDP")
                    kind, prog = None, 0
                    if xdp is not None:
                        kind = _XDP_KINDS.get(xdp.get_attr("IFLA_XDP_ATTACHED"))
                        prog = xdp.get_attr("IFLA_XDP_PROG_ID") or 0
                    self.events.append((time.monotonic(), kind, prog))
        except BaseException as exc:
            self.error = exc
            self._ready.set()
        finally:
            ipr.close()

    def stop(self) -> "XdpMonitor":
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
