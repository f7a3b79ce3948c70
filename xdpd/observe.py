"""Read everything a reconcile needs from the kernel, once, into an :class:`Observed`.

The first of the three steps (observe, :mod:`xdpd.plan`, :mod:`xdpd.execute`).
Read-only: every interface's XDP attachment (netlink, and the bpf_link of
ours holding it), the pins of links left defunct, what the active bank
holds (known to the bank writer, which read both banks back when it adopted
the maps), who owns each counter and interface slot, and which attached
programs are other xdpd programs.
"""

from __future__ import annotations

from .datapath import Datapath
from .links import XdpLinks
from .observed import Observed
from .pins import is_ours


def observe(datapath: Datapath, links: XdpLinks) -> Observed:
    attached = links.observe()
    return Observed(
        links=attached,
        prog_id=links.prog_id,
        active=datapath.active_image(),
        rule_slots=datapath.maps.rule_slots(),
        iface_slots=datapath.maps.iface_slots(),
        xdpd_programs=frozenset(link.prog_id for link in attached.values()
                                if link.prog_id and link.prog_id != links.prog_id and is_ours(link.prog_id)),
        defunct_links=links.defunct_links(),
    )
