"""Interfaces appearing and disappearing, and their XDP program changing, as seen by rtnetlink.

The daemon attaches XDP by interface name, but an interface can come and go
while it runs (a veth re-created by a container runtime, a USB NIC plugged
in, a VLAN brought up by ifupdown), and another tool can detach or replace
a netlink XDP attachment.  :class:`LinkMonitor` turns the kernel's
RTNLGRP_LINK broadcasts into three kinds of :class:`LinkEvent`, which is
all the daemon acts on:

* ``new``: a link exists under a (name, ifindex) the monitor did not know:
  it was created, moved into this namespace, or renamed to this name.
  Re-attach if the name is configured.
* ``del``: a link the monitor knew is gone (deleted, moved to another
  namespace) or was renamed away from this name.  Forget it.
* ``xdp``: a known link's XDP attachment (IFLA_XDP: mode and program id,
  carried by the event) differs from the last one seen.  Rtnetlink's
  setlink announces every netlink attach, replace and detach this way, the
  daemon's own included, so the daemon ignores events that show its own
  program.  The kernel announces them only while the interface is up; a
  change made while it is down is reported when it comes up (that message
  carries the new state).  Changes made through a bpf_link (create,
  update, a forced detach) are *not* announced at all;
  :mod:`xdpd.linkwatch` covers those.

The kernel also sends RTM_NEWLINK for every flag, state or MTU change of an
existing link (and for a veth's peer when XDP changes its features); those
are suppressed.  A rename is reported as ``del`` of the old name followed by
``new`` of the new one, both with the same ifindex: for the daemon a
renamed interface is a different interface.

The stream is consistent: every ``del`` is for a link that existed when
:meth:`LinkMonitor.start` returned or was reported by an earlier ``new``.
Links present when :meth:`~LinkMonitor.start` returns are not reported, so
start the monitor *before* the daemon's first reconcile: anything that
happens after that reconcile observed the links is then reported.

The monitor works in the network namespace of the thread that calls
:meth:`~LinkMonitor.start` (the netlink socket is created there), which for
the daemon is the namespace it was started in.
"""

from __future__ import annotations

import errno
import os
import select
import threading
from dataclasses import dataclass
from typing import Any, Callable, Literal

import structlog
from pyroute2 import IPRoute, IPRSocket
from pyroute2.netlink.rtnl import RTM_DELLINK, RTM_NEWLINK, RTMGRP_LINK

from .links import xdp_state

# Bridge port events (RTM_NEWLINK/RTM_DELLINK with family AF_BRIDGE) share
# the link group; a port leaving a bridge sends an AF_BRIDGE RTM_DELLINK
# while the link itself stays.  Only AF_UNSPEC messages describe links.
_AF_UNSPEC = 0

# Receive buffer asked for (the kernel caps it at net.core.rmem_max), so a
# burst of link churn (a container runtime creating many veths) usually
# fits; when it does not, the kernel reports ENOBUFS and the monitor
# re-reads the link table instead (see _resync).
_DEFAULT_RCVBUF = 4 * 1024 * 1024
# Reads spent emptying the socket after an overflow before the link table
# is read anyway (link churn that never pauses must not stall the monitor).
_DRAIN_MAX = 10_000


@dataclass(frozen=True)
class LinkEvent:
    """An interface appeared (``new``), went away (``del``) or had its XDP program changed (``xdp``)."""

    kind: Literal["new", "del", "xdp"]
    name: str
    ifindex: int
    mode: str | None = None
    """For ``xdp``: the XDP mode attached now (None: nothing)."""
    prog_id: int = 0
    """For ``xdp``: the program attached now (0: nothing)."""


class LinkMonitor:
    """Reports interfaces appearing and going away, from its own thread.

    ``on_event`` is called on the monitor's thread, one event at a time and
    in kernel order.  It should only record the event and wake the daemon's
    loop: while it runs, netlink messages queue up in the socket.  An
    exception it raises is logged (``link_monitor_error``) and the monitor
    goes on.  If the kernel drops messages because the socket overflowed,
    the monitor re-reads the link table and reports the difference
    (logged as ``link_events_overflow``), so no appearance is lost.

    :meth:`start` subscribes, reads the current link table and starts the
    thread; :meth:`stop` wakes the thread at once (it blocks in ``select``
    on the socket and a wake-up pipe, never in a bare ``recv``), joins it
    and closes the socket.  Both are idempotent; a stopped monitor cannot
    be started again.  After :meth:`stop` returns, ``on_event`` is not
    called again (unless :meth:`stop` was called from ``on_event`` itself).
    """

    def __init__(self, on_event: Callable[[LinkEvent], None], rcvbuf: int = _DEFAULT_RCVBUF) -> None:
        self._on_event = on_event
        self._rcvbuf = rcvbuf
        self._log = structlog.get_logger("xdpd")
        self._lock = threading.Lock()
        self._started = False
        self._stopped = False
        self._thread: threading.Thread | None = None
        self._sock: IPRSocket | None = None
        self._wake_r = self._wake_w = -1
        self._close_on_exit = False
        self._known: dict[int, str] = {}  # ifindex -> name; only the monitor thread touches it after start
        self._xdp: dict[int, tuple[str | None, int]] = {}  # ifindex -> (mode, prog id) last seen

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        """Subscribe to link events in the caller's namespace and start the thread.

        The socket is bound before the link table is read, so a link that
        appears in between is either in the table (known, not reported) or
        reported afterwards: nothing falls in a gap.
        """
        with self._lock:
            if self._stopped:
                raise RuntimeError("LinkMonitor cannot be restarted after stop()")
            if self._started:
                return
            sock = IPRSocket(rcvbuf=self._rcvbuf)
            try:
                sock.bind(groups=RTMGRP_LINK)
                self._known, self._xdp = _link_table()
                self._wake_r, self._wake_w = os.pipe()
            except BaseException:
                sock.close()
                raise
            self._sock = sock
            self._thread = threading.Thread(target=self._run, name="xdpd-linkmonitor", daemon=True)
            self._started = True
            self._thread.start()

    def stop(self) -> None:
        """Stop the thread (promptly, whatever it waits for) and release the socket."""
        with self._lock:
            if self._stopped:
                return
            self._stopped = True
            if not self._started:
                return
            thread = self._thread
            on_own_thread = thread is threading.current_thread()
            self._close_on_exit = on_own_thread
            os.write(self._wake_w, b"x")
        if on_own_thread:
            return  # called from on_event: the thread closes up when it unwinds
        assert thread is not None
        thread.join()
        self._close()

    def __enter__(self) -> "LinkMonitor":
        self.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def _close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
        for fd in (self._wake_r, self._wake_w):
            if fd >= 0:
                os.close(fd)
        self._wake_r = self._wake_w = -1

    # ------------------------------------------------------------------ the thread

    def _run(self) -> None:
        assert self._sock is not None
        sock_fd = self._sock.fileno()
        failures = 0
        try:
            while True:
                readable, _, _ = select.select([sock_fd, self._wake_r], [], [])
                if self._wake_r in readable:
                    return
                try:
                    messages = self._sock.get()
                    failures = 0
                except Exception as e:
                    if isinstance(e, OSError) and e.errno == errno.ENOBUFS:
                        # The socket overflowed and the kernel dropped
                        # messages: the link table is the only truth left.
                        self._log.warning("link_events_overflow", hint="re-reading the link table")
                        self._resync()
                        continue
                    # Each get() consumes a datagram, so one bad message
                    # costs one log line; a socket that keeps failing
                    # without consuming anything must not spin.
                    self._log.error("link_monitor_error", detail=f"netlink receive: {e!r}")
                    failures += 1
                    if failures > 1:
                        self._pause()
                    continue
                for msg in messages:
                    try:
                        self._handle(msg)
                    except Exception as e:
                        self._log.error("link_monitor_error", detail=f"netlink message: {e!r}")
        finally:
            if self._close_on_exit:
                self._close()

    def _pause(self) -> None:
        """Wait briefly (or until stop) so a persistent socket error does not spin."""
        select.select([self._wake_r], [], [], 0.5)

    def _handle(self, msg: Any) -> None:
        """Turn one netlink message into zero, one or two events."""
        kind = msg["header"]["type"]
        if kind not in (RTM_NEWLINK, RTM_DELLINK) or msg["family"] != _AF_UNSPEC:
            return
        ifindex = int(msg["index"])
        name = msg.get_attr("IFLA_IFNAME")
        if kind == RTM_DELLINK:
            old = self._known.pop(ifindex, None)
            self._xdp.pop(ifindex, None)
            if old is not None:
                self._emit(LinkEvent("del", old, ifindex))
            return
        if name is None:
            return
        if self._known.get(ifindex) != name:
            self._appeared(ifindex, name)
        self._xdp_seen(ifindex, name, xdp_state(msg))

    def _xdp_seen(self, ifindex: int, name: str, state: tuple[str | None, int] | None) -> None:
        """Report an XDP attachment that differs from the last one seen on this link."""
        if state is None:
            return  # the message does not say
        before = self._xdp.get(ifindex)
        self._xdp[ifindex] = state
        if before is not None and before != state:
            self._emit(LinkEvent("xdp", name, ifindex, *state))

    def _appeared(self, ifindex: int, name: str) -> None:
        old = self._known.get(ifindex)
        if old is not None:  # renamed
            self._emit(LinkEvent("del", old, ifindex))
        for other, other_name in list(self._known.items()):
            if other_name == name:  # we missed its deletion; names are unique
                del self._known[other]
                self._xdp.pop(other, None)
                self._emit(LinkEvent("del", name, other))
        self._known[ifindex] = name
        self._emit(LinkEvent("new", name, ifindex))

    def _resync(self) -> None:
        """After an overflow: report the difference between what we knew and the link table now.

        The queue is drained first.  While it is non-empty after an
        overflow the kernel drops further messages *without* reporting
        ENOBUFS again (the socket stays "congested" until its queue is
        empty), so a table read before draining could miss a link whose
        message was dropped silently afterwards.  Once drained, the table
        read covers everything up to now and any later drop is reported.
        """
        self._drain()
        try:
            current, xdp = _link_table()
        except Exception as e:
            self._log.error("link_monitor_error", detail=f"reading the link table: {e!r}")
            return
        for ifindex, name in list(self._known.items()):
            if current.get(ifindex) != name:
                del self._known[ifindex]
                self._xdp.pop(ifindex, None)
                self._emit(LinkEvent("del", name, ifindex))
        for ifindex, name in current.items():
            if self._known.get(ifindex) != name:
                self._appeared(ifindex, name)
            self._xdp_seen(ifindex, name, xdp.get(ifindex))

    def _drain(self) -> None:
        """Read and discard what is queued on the socket (bounded, never blocks)."""
        assert self._sock is not None
        fd = self._sock.fileno()
        for _ in range(_DRAIN_MAX):
            if not select.select([fd], [], [], 0)[0]:
                return
            try:
                self._sock.get()
            except OSError as e:
                if e.errno != errno.ENOBUFS:
                    return
            except Exception:
                pass  # an unparsable message: discarded like the rest

    def _emit(self, event: LinkEvent) -> None:
        if self._stopped:
            return
        try:
            self._on_event(event)
        except Exception as e:
            self._log.error("link_monitor_error", detail=f"on_event({event}) raised {e!r}")


def _link_table() -> tuple[dict[int, str], dict[int, tuple[str | None, int]]]:
    """ifindex -> name, and ifindex -> XDP (mode, prog id), of every link in the current namespace."""
    with IPRoute() as ipr:
        links = ipr.get_links()
    names = {link["index"]: link.get_attr("IFLA_IFNAME") for link in links}
    xdp = {link["index"]: state for link in links if (state := xdp_state(link)) is not None}
    return names, xdp
