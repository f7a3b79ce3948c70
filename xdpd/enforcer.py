"""Make the kernel enforce a Config: observe, plan, carry the plan out.

Order matters for "no gap": the rule set is switched in the maps (one write,
see :meth:`Datapath.apply`) before any interface is attached, so an interface
never runs the program with an empty or half-written bank; and a program
already attached is replaced in place, never detached first.

If a step fails half way, everything done so far is undone: attachments go
back to the program and mode they had (foreign programs included, re-opened
by id) and the previous rule set is switched back in.  The caller logs the
failure; the kernel is left as it was.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from pyroute2 import IPRoute

from . import bpfsys, layout, links, tables
from .datapath import Datapath
from .model import Config
from .planner import LinkOp, Plan, plan

PROG_NAME = "xdpd_main"
"""The kernel's name for our program: how a foreign program is told apart."""


class ApplyFailed(Exception):
    """Applying failed and was rolled back; the message says what failed."""


@dataclass
class ApplyResult:
    plan: Plan | None = None
    attached: dict[str, str] = field(default_factory=dict)     # name -> mode used
    detached: list[str] = field(default_factory=list)
    repaired: dict[str, str] = field(default_factory=dict)     # name -> why it needed an attach
    missing: list[str] = field(default_factory=list)           # configured, not present
    warnings: list[str] = field(default_factory=list)
    addresses: int = 0


def is_ours(prog_id: int) -> bool:
    """Is the program with this id an xdpd program (ours or a predecessor's)?"""
    if not prog_id:
        return False
    try:
        fd = bpfsys.prog_fd_by_id(prog_id)
    except OSError:
        return False
    try:
        return bpfsys.prog_info(fd).name == PROG_NAME
    finally:
        os.close(fd)


@dataclass
class Prepared:
    """Everything observed and derived for one config: the planner's inputs."""

    config: Config
    image: tables.BankImage
    plan: Plan
    observed: dict[str, links.LinkXdp]
    rule_slots: dict[str, int]
    iface_slots: dict[str, int]
    fresh_rules: set[int]
    fresh_ifaces: set[int]
    old_rule_names: dict[int, tuple[str, int]]
    old_iface_names: dict[int, tuple[str, int, str]]
    digests: dict[str, int]


class Enforcer:
    """Applies configs through one Datapath and one netlink socket."""

    def __init__(self, dp: Datapath, prog_fd: int, ipr: IPRoute) -> None:
        self.dp = dp
        self.prog_fd = prog_fd
        self.prog_id = bpfsys.prog_info(prog_fd).id
        self.ipr = ipr
        self._built: tuple | None = None
        """(inputs, image, digests) of the last build: drift checks re-use it."""

    # -- planning ------------------------------------------------------------
    def prepare(self, config: Config) -> Prepared:
        """Observe the kernel and plan ``config`` against it (changes nothing)."""
        observed = links.observe(self.ipr)
        present = {i.name: observed[i.name].ifindex for i in config.interfaces if i.name in observed}
        for name, idx in present.items():
            if idx >= layout.IFINDEX_MAX:
                raise ApplyFailed(f"{name}: ifindex {idx} exceeds the program's limit {layout.IFINDEX_MAX}")
        entries = self.dp.rule_entries()
        rule_slots, fresh_rules, old_rule_names = self._rule_slots(config, entries)
        iface_slots, fresh_ifaces, old_iface_names = self._iface_slots(config)
        image, digests = self._build(config, rule_slots, tables.iface_entries(config, present, iface_slots))
        current = self.dp.known[self.dp.active_bank()] if self.dp.is_initialised() else None
        ours = {link.prog_id for link in observed.values()
                if link.prog_id and link.prog_id != self.prog_id and is_ours(link.prog_id)}
        p = plan(config, image, current,
                 ({s: n for s, (n, _) in old_rule_names.items()}, {s: n for n, s in rule_slots.items()}),
                 ({n: d for n, _, d in entries.values()}, digests),
                 observed, {n for n, _, _ in old_iface_names.values()}, self.prog_id, ours)
        return Prepared(config, image, p, observed, rule_slots, iface_slots, fresh_rules, fresh_ifaces,
                        old_rule_names, old_iface_names, digests)

    def _build(self, config: Config, rule_slots: dict[str, int], ifaces: list[tables.IfaceEntry]):
        """The image and rule digests, re-used while config, slots and interfaces stay the same.

        A periodic drift check with a million addresses would otherwise
        rebuild the same image every time.
        """
        inputs = (config, sorted(rule_slots.items()), ifaces)
        if self._built is not None and self._built[0][0] is config and self._built[0][1:] == inputs[1:]:
            return self._built[1], self._built[2]
        image = tables.build_image(config, rule_slots, ifaces)
        digests = {r.name: tables.rule_digest(r) for r in config.rules}
        self._built = (inputs, image, digests)
        return image, digests

    # -- applying ------------------------------------------------------------
    def apply(self, config: Config, settle: bool = True) -> ApplyResult:
        """Reconcile the kernel with ``config``; undo everything on failure.

        With ``settle=False`` the second bank is left for :meth:`settle`
        (so a daemon can report READY before writing it).
        """
        prep = self.prepare(config)
        result = ApplyResult(plan=prep.plan, missing=list(prep.plan.missing))
        result.addresses = prep.image.address_count()
        previous = self.dp.known[self.dp.active_bank()]
        wrote_rules = False
        done: list[tuple[LinkOp, links.LinkXdp]] = []
        managed = {n for n, _, _ in prep.old_iface_names.values()}
        new_names = {prep.rule_slots[r.name]: (r.name, tables.ACTION_CODES[r.action], prep.digests[r.name])
                     for r in config.rules}
        try:
            # The plan describes the change; what decides a write is whether
            # the active bank already holds this image.
            if previous != prep.image:
                # Names for old and new slots while both banks may be read.
                self.dp.write_rule_names({**prep.old_rule_names, **new_names}, prep.fresh_rules)
                self.dp.write_iface_names(prep.old_iface_names, prep.fresh_ifaces)
                wrote_rules = True
                self.dp.apply(prep.image, settle=settle)
            for op in prep.plan.links:
                link = prep.observed[op.iface]
                done.append((op, link))
                if op.kind == "attach":
                    used, warning = links.attach(self.ipr, link, self.prog_fd, op.mode)
                    result.attached[op.iface] = used
                    if warning:
                        result.warnings.append(warning)
                    if op.iface in managed and not op.reason.startswith("mode"):
                        result.repaired[op.iface] = op.reason
                else:
                    links.detach(self.ipr, link)
                    result.detached.append(op.iface)
        except (links.AttachError, bpfsys.BpfError, OSError) as e:
            undo_errors = self._undo(done, previous if wrote_rules else None)
            raise ApplyFailed(f"{e}; rolled back" + (f" (undo incomplete: {'; '.join(undo_errors)})"
                                                     if undo_errors else "")) from e

        self.dp.write_rule_names(new_names, set())
        self.dp.write_iface_names(self._modes(prep), set())
        return result

    def settle(self) -> None:
        """Bring the inactive bank up to date (see :meth:`Datapath.settle`)."""
        self.dp.settle()

    def _modes(self, prep: Prepared) -> dict[int, tuple[str, int, str]]:
        now = links.observe(self.ipr, [i.name for i in prep.config.interfaces])
        out = {}
        for iface in prep.config.interfaces:
            link = now.get(iface.name)
            if link is not None:
                out[prep.iface_slots[iface.name]] = (iface.name, link.ifindex, link.mode or "none")
        return out

    def _undo(self, done: list[tuple[LinkOp, links.LinkXdp]], previous: tables.BankImage | None) -> list[str]:
        errors = []
        for op, before in reversed(done):
            try:
                self._restore_link(before)
            except (links.AttachError, OSError) as e:
                errors.append(f"{op.iface}: {e}")
        if previous is not None:
            try:
                self.dp.apply(previous)
            except (bpfsys.BpfError, OSError) as e:
                errors.append(f"rule set: {e}")
        return errors

    def _restore_link(self, before: links.LinkXdp) -> None:
        now = links.observe(self.ipr, [before.name]).get(before.name)
        if now is None:
            return
        if not before.prog_id:
            links.detach(self.ipr, now)
            return
        fd = bpfsys.prog_fd_by_id(before.prog_id)
        try:
            links.attach(self.ipr, now, fd, before.mode or "auto")
        finally:
            os.close(fd)

    def _rule_slots(self, config: Config, entries: dict[int, tuple[str, int, int]]):
        names = {s: (n, a) for s, (n, a, _) in entries.items()}
        current = {n: s for s, (n, _) in names.items()}
        active = {s for _, s in self.dp.rule_order()} if self.dp.is_initialised() else set()
        keep = {r.name for r in config.rules}
        reserved = {s for s in active if names.get(s, ("",))[0] not in keep}
        slots = tables.assign_slots([r.name for r in config.rules], current, reserved,
                                    layout.MAX_RULE_SLOTS)
        fresh = {s for n, s in slots.items() if n not in current}
        return slots, fresh, names

    def _iface_slots(self, config: Config):
        names = self.dp.iface_names()
        current = {n: s for s, (n, _, _) in names.items()}
        slots = tables.assign_slots([i.name for i in config.interfaces], current, set(),
                                    layout.MAX_IFACES)
        fresh = {s for n, s in slots.items() if n not in current}
        return slots, fresh, names

    def detach_all(self) -> list[str]:
        """Detach our program from every interface we manage."""
        observed = links.observe(self.ipr)
        out = []
        for _, (name, _, _) in self.dp.iface_names().items():
            link = observed.get(name)
            if link is not None and is_ours(link.prog_id):
                links.detach(self.ipr, link)
                out.append(name)
        return out
