"""sd_notify that never stalls the daemon.

systemd's notify socket is an AF_UNIX datagram socket; its receive queue
holds ``net.unix.max_dgram_qlen`` datagrams (10 by default), and a plain
``sendto`` blocks once it is full.  The ``sdnotify`` package sends that
way, so a manager that stops reading (hung, or a test harness that only
reads when it waits for something) would freeze the main loop, and with it
drift repair and reloads: a filter must not depend on whether someone
reads its status.  :class:`Notifier` sends with ``MSG_DONTWAIT`` and drops
what does not fit:

* ``STATUS=`` and ``WATCHDOG=1`` are dropped (the next status replaces the
  old one anyway; a missed watchdog ping is sent again at the next wake);
* state changes (``READY=1``, ``RELOADING=1``, ``STOPPING=1``) are kept
  and sent again, in front of the next message, until one gets through,
  so systemd never misses that a start or reload finished.

Without ``$NOTIFY_SOCKET`` every call does nothing.
"""

from __future__ import annotations

import os
import socket

_STATES = ("READY=", "RELOADING=", "STOPPING=")


class Notifier:
    """Sends sd_notify datagrams to ``address`` without ever blocking."""

    def __init__(self, address: str | None) -> None:
        if address and address.startswith("@"):
            address = "\0" + address[1:]  # abstract namespace
        self.address = address or None
        self.dropped = 0
        """Datagrams that did not fit (status lines lost, state lines carried over)."""
        self._pending: dict[str, str] = {}  # state lines not delivered yet, by key
        self._sock: socket.socket | None = None
        if self.address:
            self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)

    @classmethod
    def from_env(cls) -> "Notifier":
        return cls(os.environ.get("NOTIFY_SOCKET"))

    def notify(self, message: str) -> bool:
        """Send ``message`` (lines ``KEY=value``); True if it (and any carried-over state) went out."""
        if self._sock is None:
            return False
        lines = message.splitlines()
        keys = {line.split("=", 1)[0] for line in lines}
        carried = [line for key, line in self._pending.items() if key not in keys]
        try:
            self._sock.sendto("\n".join(carried + lines).encode(), socket.MSG_DONTWAIT, self.address)
        except OSError:
            # Full (EAGAIN), nobody listening (ENOENT, ECONNREFUSED), or anything
            # else: a status is never worth stopping the filter's work for.
            self.dropped += 1
            self._pending = {line.split("=", 1)[0]: line for line in carried + lines if line.startswith(_STATES)}
            return False
        self._pending = {}
        return True

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
