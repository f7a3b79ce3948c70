"""More links between a bed's two namespaces: a second veth pair.

:class:`tests.testbed.netbed.NetBed` has one veth pair; a daemon with two
interfaces carrying different policies needs a second one.  The pair is
built inside the bed's namespaces only (it goes when the namespaces are
deleted), named ``<tag>-<suffix>``, both ends get addresses from a
documentation range, and both sides permanent neighbour entries, so no ARP
or ND crosses the link during a test.

(No VLAN subinterfaces: a kernel without CONFIG_VLAN_8021Q cannot make
them.  Tagged frames are injected with :meth:`NetBed.inject` instead; see
:func:`tests.testbed.traffic.inject_udp_exchange`.)

A :class:`Link` describes what was built: the device on each side and the
addresses to send from and to (``bed.send(proto, link.sender[4],
dst=link.victim[4])``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING

from tests.testbed import netns

if TYPE_CHECKING:
    from tests.testbed.netbed import NetBed


@dataclass(frozen=True)
class Link:
    sender_if: str
    victim_if: str
    sender: dict[int, str]
    """Sender's address per family (4, 6)."""
    victim: dict[int, str]
    """Victim's address per family."""


def _name(bed: NetBed, suffix: str) -> str:
    return bed._victim_device_name(suffix)  # same naming rules as the bed's own extra devices


def _mac(ns: str, dev: str) -> str:
    return str(json.loads(netns.ip(["-n", ns, "-j", "link", "show", "dev", dev]).stdout)[0]["address"])


def _address(ns: str, dev: str, addrs: dict[int, str], plen: dict[int, int]) -> None:
    lines = [f"addr add {addrs[4]}/{plen[4]} dev {dev}", f"addr add {addrs[6]}/{plen[6]} dev {dev} nodad",
             f"link set {dev} up"]
    netns.ip(["-n", ns, "-batch", "-"], input="\n".join(lines) + "\n")


def _neighbours(ns: str, dev: str, addrs: dict[int, str], mac: str) -> None:
    for addr in addrs.values():
        netns.ip(["-n", ns, "neigh", "replace", addr, "lladdr", mac, "dev", dev, "nud", "permanent"])


def _wire(bed: NetBed, link: Link, plen: dict[int, int]) -> Link:
    _address(bed.sender_ns, link.sender_if, link.sender, plen)
    _address(bed.victim_ns, link.victim_if, link.victim, plen)
    _neighbours(bed.sender_ns, link.sender_if, link.victim, _mac(bed.victim_ns, link.victim_if))
    _neighbours(bed.victim_ns, link.victim_if, link.sender, _mac(bed.sender_ns, link.sender_if))
    return link


def add_veth_pair(bed: NetBed, sender_suffix: str = "c", victim_suffix: str = "d") -> Link:
    """A second veth pair, sender ``<tag>-c`` to victim ``<tag>-d``, on 198.51.100.64/26 and 2001:db8:2::/64.

    Created from the sender namespace with its peer placed straight into the
    victim's, like the bed's own pair: no device ever appears in the host
    namespace.  Its victim end supports native XDP.
    """
    link = Link(_name(bed, sender_suffix), _name(bed, victim_suffix),
                {4: "198.51.100.65", 6: "2001:db8:2::1"}, {4: "198.51.100.66", 6: "2001:db8:2::2"})
    netns.ip(["-n", bed.sender_ns, "link", "add", link.sender_if, "type", "veth",
              "peer", "name", link.victim_if, "netns", bed.victim_ns])
    return _wire(bed, link, {4: 26, 6: 64})
