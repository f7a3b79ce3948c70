"""sd_notify that never stalls the daemon.

systemd's notify socket is an AF_UNIX datagram socket; its receive queue
holds ``net.unix.max_dgram_qlen`` datagrams (10 by default), and a plain
``sendto`` blocks once it is full.  ``sdnotify`` sends that way on the
socket it opens, so a manager that stops reading (hung, or a test harness
that only reads when it waits for something) would freeze the main loop,
and with it drift repair and reloads: a filter must not depend on whether
someone reads its status.  :class:`Notifier` makes that socket
non-blocking and drops what does not fit:

* ``STATUS=`` and ``WATCHDOG=1`` are dropped (the next status replaces the
  old one anyway; a missed watchdog ping is sent again at the next wake);
* state changes (``READY=1``, ``RELOADING=1``, ``STOPPING=1``) are kept
  and sent again, in front of the next message, until one gets through,
  so systemd never misses that a start or reload finished.

The datagrams go through the ``sdnotify`` package's notifier, which finds
``$NOTIFY_SOCKET`` (abstract names included) and connects to it; its socket
is made non-blocking here, and ``debug=True`` makes it report a datagram
it could not send instead of swallowing it, so that a dropped state change
is known and sent again.  Without ``$NOTIFY_SOCKET`` (or when it cannot be
reached) every call does nothing and counts as dropped.
"""

from __future__ import annotations

import os

import sdnotify

_STATES = ("READY=", "RELOADING=", "STOPPING=")


class Notifier:
    """Sends sd_notify datagrams to ``$NOTIFY_SOCKET`` without ever blocking."""

    def __init__(self, notifier: sdnotify.SystemdNotifier | None, address: str | None) -> None:
        self._sd = notifier
        self.address = address
        """Where the datagrams go (abstract names with a leading NUL), None without $NOTIFY_SOCKET."""
        self.dropped = 0
        """Datagrams that did not fit (status lines lost, state lines carried over)."""
        self._pending: dict[str, str] = {}  # state lines not delivered yet, by key

    @classmethod
    def from_env(cls) -> "Notifier":
        address = os.environ.get("NOTIFY_SOCKET") or None
        if address is None:
            return cls(None, None)
        if address.startswith("@"):
            address = "\0" + address[1:]
        try:
            sd = sdnotify.SystemdNotifier(debug=True)  # raises instead of hiding a failed connect
        except OSError:
            return cls(None, address)  # nobody listening: every message counts as dropped
        sd.socket.setblocking(False)
        return cls(sd, address)

    def notify(self, message: str) -> bool:
        """Send ``message`` (lines ``KEY=value``); True if it (and any carried-over state) went out."""
        if self.address is None:
            return False
        lines = message.splitlines()
        keys = {line.split("=", 1)[0] for line in lines}
        carried = [line for key, line in self._pending.items() if key not in keys]
        try:
            if self._sd is None:
                raise ConnectionRefusedError(self.address)
            self._sd.notify("\n".join(carried + lines))
        except OSError:
            # Full (EAGAIN), nobody listening (ENOENT, ECONNREFUSED), or anything
            # else: a status is never worth stopping the filter's work for.
            self.dropped += 1
            self._pending = {line.split("=", 1)[0]: line for line in carried + lines if line.startswith(_STATES)}
            return False
        self._pending = {}
        return True

    def close(self) -> None:
        if self._sd is not None and self._sd.socket is not None:
            self._sd.socket.close()
            self._sd = None
