"""Another tool's XDP program on a bed's interface, and an agent that fights xdpd for it.

:class:`Rival` loads a pass-all program that is not xdpd's (bcc, named
``rival``) and attaches it the way other tools do, by netlink, from a thread
inside the bed's namespace.  :meth:`Rival.fight` starts an agent that takes
the interface back whenever xdpd's program is there again: it breaks
xdpd's bpf_link by force (BPF_LINK_DETACH, as ``bpftool link detach``
does; nothing else gets past a link) and attaches its own program by
netlink, or, against a daemon attaching by netlink, simply replaces xdpd's
program.  It records when it took the interface, so a test can count the
rounds of the fight.  Everything happens in the bed's namespace; the
program goes with :meth:`Rival.close`.
"""

from __future__ import annotations

import os
import threading
import time

from tests.testbed.netns import call_in_netns, setns_current_thread
from tests.testbed.xdplink import xdp_link_id


class Rival:
    """A pass-all XDP program of another tool, for ``ifname`` in namespace ``ns``."""

    def __init__(self, ns: str, ifname: str) -> None:
        from bcc import BPF  # imported late: a test bed without bcc still imports this module

        from xdpd import bpfsys

        self.ns, self.ifname = ns, ifname
        self._bpf = BPF(text=b"int rival(struct xdp_md *ctx) { return XDP_PASS; }")
        self.fd = self._bpf.load_func(b"rival", BPF.XDP).fd
        self.prog_id = bpfsys.prog_info(self.fd).id
        self.takeovers: list[float] = []
        """``time.monotonic()`` of each time the agent displaced another program (xdpd's)."""
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def attach(self, mode: str = "native") -> None:
        """Attach (or replace whatever is there) by netlink; raises :class:`xdpd.links.AttachError` if refused."""
        call_in_netns(self.ns, lambda: self._attach(mode), name=f"rival-{self.ifname}")

    def _attach(self, mode: str) -> None:
        from pyroute2 import IPRoute

        from xdpd import links

        with IPRoute() as ipr:
            links.attach(ipr, links.observe(ipr, [self.ifname])[self.ifname], self.fd, mode)

    def fight(self, interval: float = 0.002) -> "Rival":
        """Start the agent: every ``interval`` s, take the interface if xdpd's program is back on it."""
        self._thread = threading.Thread(target=self._fight, args=(interval,), name="rival-agent", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)

    def _fight(self, interval: float) -> None:
        from pyroute2 import IPRoute

        from xdpd import bpfsys, links

        setns_current_thread(self.ns)
        with IPRoute() as ipr:
            while not self._stop.wait(interval):
                now = links.observe(ipr, [self.ifname]).get(self.ifname)
                if now is None or now.prog_id == self.prog_id:
                    continue
                displaced = now.prog_id
                try:
                    link_id = xdp_link_id(self.ns, self.ifname) if now.prog_id else 0
                    if link_id:
                        fd = bpfsys.link_fd_by_id(link_id)
                        try:
                            bpfsys.link_detach(fd)
                        finally:
                            os.close(fd)
                        now = links.observe(ipr, [self.ifname])[self.ifname]
                    links.attach(ipr, now, self.fd, "native")
                    if displaced:  # an empty interface (xdpd half way through a repair) is no takeover
                        self.takeovers.append(time.monotonic())
                except Exception as e:  # xdpd got there first: try again next round
                    self.errors.append(repr(e))

    def close(self) -> None:
        self.stop()
        self._bpf.cleanup()

    def __enter__(self) -> "Rival":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
