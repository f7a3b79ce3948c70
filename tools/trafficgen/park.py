"""Keep the generator program in the kernel's XDP dispatcher, so a test run costs microseconds, not 24 ms.

BPF_PROG_TEST_RUN with ``repeat`` above 1 switches the XDP dispatcher to
the program before the run and back after it (``bpf_prog_change_xdp`` in
``bpf_prog_test_run_xdp``), and each switch waits for an RCU grace period:
about 24 ms of sleep per call on this 2-core VM, whatever the frame count
(measured: 64 frames 24 ms, 100,000 frames 44 ms).  A program attached to
some device is in the dispatcher already, and then the switch is only a
reference count.  So the program is attached in native mode to a veth
pair of its own that stays down: no frame ever reaches it there (measured
with it parked: 64 frames 0.02 ms, 100,000 frames 13 ms).

The pair is ``<prefix><4 hex>`` and the same with ``p`` (``xdpdt-tg1a2b``,
``xdpdt-tg1a2bp``), created inside the sender's network namespace and
deleted by :meth:`Parking.close`; if the process dies first, it goes when
that namespace is deleted.  Creating and deleting it costs about 50 ms.

Where live frames are refused, the same pair is the relay (:mod:`.relay`):
then it is up, and the peer (``...p``) is where frames are fed in.  It
sends nothing of its own: no IPv6 (no router solicitation, no MLD), no
ARP, no multicast, so every frame the program sees is one fed to it.
"""

from __future__ import annotations

import secrets
import subprocess

from tests.testbed import netns
from tests.testbed.netns import call_in_netns

PREFIX = "xdpdt-tg"


class Parking:
    """The program attached to a veth pair in ``ns``, down unless ``up`` (see the module docstring).

    ``ifname`` carries the program, ``peer`` is its other end.
    """

    def __init__(self, ns: str, prog_fd: int, up: bool = False) -> None:
        self.ns = ns
        self.ifname = f"{PREFIX}{secrets.token_hex(2)}"
        self.peer = self.ifname + "p"
        netns.ip(["-n", ns, "link", "add", self.ifname, "type", "veth", "peer", "name", self.peer])
        try:
            call_in_netns(ns, lambda: _attach(self.ifname, prog_fd), name=f"park-{self.ifname}")
            if up:
                self._quiet_up()
        except BaseException:
            self.close()
            raise

    def _quiet_up(self) -> None:
        """Both ends up, with nothing of their own to send (no IPv6, ARP or multicast)."""
        settings = [f"net.ipv6.conf.{name}.disable_ipv6=1" for name in (self.ifname, self.peer)]
        subprocess.run(netns.in_netns(self.ns, ["sysctl", "-q", "-w", *settings]), check=True,
                       capture_output=True, timeout=30)
        batch = "".join(f"link set {name} arp off multicast off up\n" for name in (self.ifname, self.peer))
        netns.ip(["-n", self.ns, "-batch", "-"], input=batch)

    def close(self) -> None:
        """Delete the pair (and with it the attachment); quiet if it is gone already."""
        netns.ip(["-n", self.ns, "link", "del", self.ifname], check=False)


def _attach(ifname: str, prog_fd: int) -> None:
    from pyroute2 import IPRoute

    from xdpd import links

    with IPRoute() as ipr:
        links.attach(ipr, links.observe(ipr, [ifname])[ifname], prog_fd, "native")
