"""The sending interface as the kernel sees it (index, state, counters), and GRO on a receiver.

On a veth, the sender's counters tell what became of XDP_TX frames: the
transmit side reports its peer's receive side (``veth_get_stats64``).
``tx_packets`` grows by each frame the peer took in and ran through its
XDP program or stack, ``tx_dropped`` by each frame that found the peer's
256-frame ring full.  Frames sent to a peer with neither a native XDP
program nor GRO are refused before any counter (the peer has no NAPI ring
to put them in), and so are frames longer than the peer's MTU allows:
they vanish, and only these counters staying still show it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from tests.testbed.netns import call_in_netns

IFF_UP = 0x1


class LinkError(OSError):
    """The namespace or the interface to send on is missing, or the interface is down."""


@dataclass(frozen=True)
class LinkState:
    ifindex: int
    up: bool
    tx_packets: int
    tx_dropped: int


def read_link(ifname: str) -> LinkState:
    """``ifname`` in the calling thread's network namespace (netlink sockets take the thread's)."""
    from pyroute2 import IPRoute
    from pyroute2.netlink.exceptions import NetlinkError

    with IPRoute() as ipr:
        try:
            link = ipr.link("get", ifname=ifname)[0]
        except NetlinkError as e:
            raise LinkError(f"interface {ifname}: {os.strerror(e.code)}") from None
    stats = link.get_attr("IFLA_STATS64")
    up = bool(link["flags"] & IFF_UP) and link.get_attr("IFLA_OPERSTATE") in ("UP", "UNKNOWN")
    return LinkState(link["index"], up, int(stats["tx_packets"]), int(stats["tx_dropped"]))


def set_gro(netns: str, ifname: str, on: bool = True) -> None:
    """Switch GRO on (or off) on ``ifname`` in ``netns`` (``ethtool -K IFNAME gro on``, without ethtool).

    A veth with GRO on has a NAPI ring even without an XDP program, so it
    can take XDP_TX frames from its peer into its stack (at well under a
    million per second: use it to check frames with sockets, not for rate).
    """
    def switch() -> None:
        from pyroute2.ethtool import Ethtool

        et = Ethtool()
        try:
            features = et.get_features(ifname)
            features.features["rx-gro"].enable = on
            et.set_features(ifname, features)
            if et.get_features(ifname).features["rx-gro"].enable != on:
                raise LinkError(f"{ifname} in {netns}: GRO stays {'off' if on else 'on'}")
        finally:
            et.close()

    call_in_netns(netns, switch, name=f"gro-{ifname}")
