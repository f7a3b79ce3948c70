"""Carry out a :class:`~xdpd.plan.Plan`, exactly, and undo it all on failure.

Order matters for "no gap": the rule set is switched in the maps (one write,
see :meth:`xdpd.datapath.Datapath.apply`) before any interface is attached,
so an interface never runs the program with an empty or half-written bank;
and a program already attached is replaced in place, never detached first.

If a step fails half way, everything done so far is undone: attachments go
back to the program and mode they had (foreign programs included, re-opened
by id) and the previous rule set is switched back in.  The bookkeeping
beside the maps (which rule and interface own which slot) is written for
good only once the kernel said yes to everything.

The kernel side comes in as three small collaborators (:class:`Banks`,
:class:`Slots`, :class:`Links`), so unit tests drive this module through a
failure at every step with a fake kernel.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Mapping, Protocol

from .observed import IfaceSlot, LinkXdp, RuleSlot
from .imagediff import BankDiff
from .plan import LinkAction, LinkOp, Plan
from .tables import BankImage


class Banks(Protocol):
    """Writes bank images (:class:`xdpd.datapath.Datapath`).

    ``diff`` is the plan's address diff from the active bank's image to
    ``image``, for the writer to use rather than compute again.
    """

    def apply(self, image: BankImage, settle: bool = True, diff: BankDiff | None = None) -> None: ...


class Slots(Protocol):
    """Records who owns each counter and interface slot (:class:`xdpd.maps.PinnedMaps`)."""

    def write_rule_slots(self, slots: Mapping[int, RuleSlot], fresh: frozenset[int]) -> None: ...

    def write_iface_slots(self, slots: Mapping[int, IfaceSlot], fresh: frozenset[int]) -> None: ...


class Links(Protocol):
    """XDP attachments of our program (:class:`xdpd.links.XdpLinks`).

    How an attachment is made (a pinned bpf_link, or netlink where the
    kernel has no XDP links) is theirs to decide; the plan only says what.
    """

    def attach(self, link: LinkXdp, mode: str) -> tuple[str, str | None]: ...

    def detach(self, link: LinkXdp) -> None: ...

    def restore(self, before: LinkXdp) -> None: ...

    def unpin(self, pin: str) -> None: ...


class ExecuteFailed(Exception):
    """Executing failed and was rolled back; the message says what failed."""


@dataclass
class Outcome:
    """What executing a plan did."""

    plan: Plan
    attached: dict[str, str] = field(default_factory=dict)
    """Interface -> the mode our program was attached in."""
    detached: list[str] = field(default_factory=list)
    repaired: dict[str, str] = field(default_factory=dict)
    """Interface -> why it needed an attach although a daemon had attached it before."""
    warnings: list[str] = field(default_factory=list)
    unpinned: list[str] = field(default_factory=list)
    """Pins of defunct links removed."""
    unpin_failed: list[str] = field(default_factory=list)
    """Why a defunct pin could not be removed (it stays; the next pass tries again)."""


class Executor:
    """The one place a reconcile changes the kernel."""

    def __init__(self, banks: Banks, slots: Slots, links: Links) -> None:
        self.banks, self.slots, self.links = banks, slots, links

    def execute(self, plan: Plan, settle: bool = True) -> Outcome:
        """Carry out ``plan``; raise :class:`ExecuteFailed` after undoing everything.

        With ``settle=False`` the second bank is left for the bank writer's
        ``settle`` (so a daemon can report READY before writing it).
        """
        outcome = Outcome(plan)
        done: list[LinkOp] = []
        wrote = False
        try:
            if plan.write:
                self.slots.write_rule_slots(plan.rule_slots_during, plan.fresh_rule_slots)
                self.slots.write_iface_slots(plan.iface_slots_during, plan.fresh_iface_slots)
                wrote = True
                self.banks.apply(plan.image, settle=settle, diff=plan.addrs)
            for op in plan.links:
                done.append(op)
                self._do(op, outcome)
            if plan.write or plan.update_rule_slots:
                self.slots.write_rule_slots(plan.rule_slots, frozenset())
            self.slots.write_iface_slots({slot: replace(i, mode=outcome.attached.get(i.name, i.mode))
                                          for slot, i in plan.iface_slots.items()}, frozenset())
        except OSError as e:  # BpfError and AttachError are OSErrors
            undo_errors = self._undo(done, plan.previous if wrote else None)
            raise ExecuteFailed(f"{e}; rolled back" + (f" (undo incomplete: {'; '.join(undo_errors)})"
                                                       if undo_errors else "")) from e
        outcome.unpinned, outcome.unpin_failed = self._unpin(plan.unpin)
        return outcome

    def detach(self, ops: tuple[LinkOp, ...], unpin: tuple[str, ...] = ()) -> list[str]:
        """Carry out detach operations (see :func:`xdpd.plan.detach_ops`) and remove
        defunct pins; no rollback on stop."""
        for op in ops:
            self.links.detach(op.link)
        self._unpin(unpin)
        return [op.iface for op in ops]

    def _unpin(self, pins: tuple[str, ...]) -> tuple[list[str], list[str]]:
        """Tidying, after the kernel said yes to everything: a pin that cannot go is
        reported, not a reason to roll back.  Returns (unpinned, problems)."""
        done, problems = [], []
        for pin in pins:
            try:
                self.links.unpin(pin)
                done.append(pin)
            except OSError as e:
                problems.append(f"unpinning defunct link {pin}: {e}")
        return done, problems

    def _do(self, op: LinkOp, outcome: Outcome) -> None:
        if op.action is LinkAction.DETACH:
            self.links.detach(op.link)
            outcome.detached.append(op.iface)
            return
        used, warning = self.links.attach(op.link, op.mode)
        outcome.attached[op.iface] = used
        if warning:
            outcome.warnings.append(warning)
        if op.repair:
            outcome.repaired[op.iface] = op.reason

    def _undo(self, done: list[LinkOp], previous: BankImage | None) -> list[str]:
        errors = []
        for op in reversed(done):
            try:
                self.links.restore(op.link)
            except OSError as e:
                errors.append(f"{op.iface}: {e}")
        if previous is not None:
            try:
                self.banks.apply(previous)
            except OSError as e:
                errors.append(f"rule set: {e}")
        return errors
