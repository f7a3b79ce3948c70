"""What the kernel holds, as plain data: the planner's view of the world.

:func:`xdpd.observe.observe` fills an :class:`Observed` from the pinned
maps and netlink; tests build one by hand.  Nothing here touches the kernel,
so :mod:`xdpd.plan` can import it and stay pure.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping

from .tables import BankImage


@dataclass(frozen=True)
class LinkXdp:
    """What is attached to one interface right now."""

    name: str
    ifindex: int
    mode: str | None          # native / generic / offload, None when nothing
    prog_id: int
    link_id: int = 0
    """The bpf_link pinned by a daemon of this pin dir that holds the
    attachment (see :mod:`xdpd.bpflinks`); 0 for a netlink attachment or nothing."""


@dataclass(frozen=True)
class RuleSlot:
    """What the ``rule_names`` map records for one counter slot."""

    name: str
    action: int
    digest: int = 0
    """Digest of the rule's definition (see :func:`xdpd.tables.rule_digest`)."""


@dataclass(frozen=True)
class IfaceSlot:
    """What the ``iface_names`` map records for one interface slot."""

    name: str
    ifindex: int
    mode: str
    """The XDP mode the program was attached in ("none" when not attached)."""


@dataclass(frozen=True)
class Observed:
    """Everything a reconcile needs to know about the kernel, read once."""

    links: Mapping[str, LinkXdp]
    """Every interface's XDP attachment, by name."""
    prog_id: int
    """The program this daemon attaches."""
    active: BankImage | None
    """What the active bank holds; None when no daemon ever switched a bank."""
    rule_slots: Mapping[int, RuleSlot] = field(default_factory=dict)
    iface_slots: Mapping[int, IfaceSlot] = field(default_factory=dict)
    xdpd_programs: frozenset[int] = frozenset()
    """Ids of other xdpd programs (older daemons') attached somewhere."""
    defunct_links: tuple[str, ...] = ()
    """Pins of bpf_links that hold no attachment any more (the interface was
    deleted, or someone detached the link): only their pins are left to remove."""

    @property
    def managed(self) -> frozenset[str]:
        """Interfaces a daemon of this pin dir attached before."""
        return frozenset(s.name for s in self.iface_slots.values())
