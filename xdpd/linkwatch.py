"""Notice, within a tenth of a second, a pinned bpf_link of ours that stops holding its attachment.

The kernel announces a bpf_link's attach, update and detach on no channel:
``bpftool link detach`` (BPF_LINK_DETACH) or removing the pin leaves the
interface without our program, and rtnetlink says nothing (it announces
netlink attachments only, see :mod:`xdpd.linkevents`).  A link has no
file descriptor to poll for it either (XDP links implement no ``poll``).
So :class:`LinkWatch` reads the pins every ``interval`` seconds (for each:
open, BPF_OBJ_GET_INFO_BY_FD, close; microseconds) and reports a link that
was attached at the last look and is now defunct (ifindex 0) or gone.
Each loss is reported once; the daemon reconciles, which re-attaches and
unpins the defunct link.

The daemon's own detaches are reported too (harmless: a reconcile then
finds nothing to do), as is a link whose interface was deleted (the
reconcile unpins it).
"""

from __future__ import annotations

import threading
from typing import Callable

import structlog

from .bpflinks import PinnedLinks

INTERVAL = 0.1
"""Seconds between looks: the repair time this adds at most."""


class LinkWatch:
    """Calls ``on_lost(ifindex, link_id)`` from its own thread for each link that stopped holding its attachment.

    ``on_lost`` should only record the loss and wake the daemon's loop.
    :meth:`start` takes the first look (links already defunct then are not
    reported: the first reconcile unpins them); :meth:`stop` wakes and joins
    the thread.  An error while reading is logged (``link_watch_error``)
    and the next look tries again.
    """

    def __init__(self, pinned: PinnedLinks, on_lost: Callable[[int, int], None],
                 interval: float = INTERVAL) -> None:
        self._pinned, self._on_lost, self._interval = pinned, on_lost, interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._attached: dict[int, int] = {}  # link id -> ifindex, at the last look
        self._log = structlog.get_logger("xdpd")

    def start(self) -> "LinkWatch":
        self._attached = self._look()
        self._thread = threading.Thread(target=self._run, name="xdpd-linkwatch", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join()

    def __enter__(self) -> "LinkWatch":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def _look(self) -> dict[int, int]:
        return {p.link_id: p.ifindex for p in self._pinned.read() if p.ifindex}

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            try:
                now = self._look()
            except Exception as e:
                self._log.error("link_watch_error", detail=f"reading {self._pinned.directory}: {e!r}")
                continue
            for link_id, ifindex in self._attached.items():
                if link_id not in now:
                    try:
                        self._on_lost(ifindex, link_id)
                    except Exception as e:
                        self._log.error("link_watch_error", detail=f"on_lost({ifindex}, {link_id}) raised {e!r}")
            self._attached = now
