"""Desired state + observed state -> one :class:`Plan`: everything a reconcile does.

Pure: no kernel, no netlink, no ctypes bindings.  :func:`xdpd.observe.observe`
reads what the kernel holds into an :class:`~xdpd.observed.Observed`,
:func:`plan` decides, and :mod:`xdpd.execute` carries out exactly the plan
(``xdpd plan`` prints the same value without carrying it out).  The plan
holds every decision: the bank image to write (or none), the counter and
interface slots, what to record beside them, and the link operations as
typed values.  A plan computed right after its own execution is empty,
which is what makes reconciling on every trigger cheap and safe.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Iterable, Mapping, Sequence

from . import layout
from .imagediff import BankDiff, ImageDiff, diff_banks, diff_images
from .model import Config, Rule
from .observed import IfaceSlot, LinkXdp, Observed, RuleSlot
from .tables import (BankImage, IfaceEntry, build_image, header_tables, iface_entries, rule_digest,
                     without_addresses)


class PlanError(ValueError):
    """The config cannot be enforced on this kernel as it stands (nothing was touched)."""


class LinkAction(enum.Enum):
    """What to do to one interface's XDP attachment."""

    ATTACH = "attach"
    """Nothing is attached: attach our program."""
    REPLACE = "replace"
    """Another program (a foreign one or an older xdpd's) is attached: replace it atomically."""
    CHANGE_MODE = "change mode"
    """Ours runs in another mode than configured: detach, then attach (the one gap)."""
    DETACH = "detach"
    """The interface left the config: detach our program."""


@dataclass(frozen=True)
class LinkOp:
    """One link operation, with the observed attachment it starts from."""

    action: LinkAction
    link: LinkXdp
    mode: str
    """The configured mode to attach in; for a detach, the mode attached now."""
    foreign: bool = False
    """For a replace: the program attached now is not an xdpd program."""
    repair: bool = False
    """A daemon of this pin dir attached here before: someone detached or replaced it."""
    recreated: bool = False
    """For a repair: the interface is another device than the one attached
    before (deleted and created again), so nobody fought over it."""

    @property
    def iface(self) -> str:
        return self.link.name

    @property
    def reason(self) -> str:
        """Why, as an operator reads it."""
        if self.action is LinkAction.ATTACH:
            return "interface re-created" if self.recreated else "nothing attached"
        if self.action is LinkAction.REPLACE:
            kind = "foreign" if self.foreign else "xdpd"
            return f"replace {kind} program {self.link.prog_id}"
        if self.action is LinkAction.CHANGE_MODE:
            return f"mode {self.link.mode} -> {self.mode}"
        return "no longer in the config"

    def __str__(self) -> str:
        if self.action is LinkAction.DETACH:
            return f"detach {self.iface}: {self.reason}"
        return f"attach {self.iface} ({self.mode}): {self.reason}"


@dataclass(frozen=True)
class Plan:
    """What a reconcile does, in the order :mod:`xdpd.execute` does it.

    1. When ``write`` is set: record ``rule_slots_during`` (old and new
       names while both banks may be read) and ``iface_slots_during``, zero
       the counters of the fresh slots, write ``image`` into the inactive
       bank (the entries of ``addrs``) and switch to it.
    2. Carry out ``links`` in order.
    3. Record ``rule_slots``, and each configured interface's slot with the
       mode it runs in.
    4. Remove the pins of defunct links in ``unpin`` (nothing to roll back:
       they hold no attachment).
    """

    image: BankImage
    """The desired bank contents."""
    write: bool
    """The active bank does not hold ``image`` yet."""
    previous: BankImage | None
    """What the active bank holds now: the rule set a failure switches back to."""
    changes: ImageDiff
    addrs: BankDiff
    """The address entries that differ from ``previous`` to ``image``: what
    ``changes`` counts, and what the bank writer writes (computed once)."""
    rules_changed: tuple[str, ...]
    """Rules whose definition changed (by digest) under the same name."""
    rule_slots: Mapping[int, RuleSlot]
    rule_slots_during: Mapping[int, RuleSlot]
    fresh_rule_slots: frozenset[int]
    iface_slots: Mapping[int, IfaceSlot]
    """Slot -> each configured interface that exists, with the mode it runs in
    now (the executor records the mode an attach chose)."""
    iface_slots_during: Mapping[int, IfaceSlot]
    """What is recorded now, kept while the rule set is switched."""
    fresh_iface_slots: frozenset[int]
    links: tuple[LinkOp, ...] = ()
    missing: tuple[str, ...] = ()
    """Configured interfaces that do not exist (nothing to do until they appear)."""
    update_rule_slots: bool = False
    """What the maps record beside the rules differs from ``rule_slots``."""
    unpin: tuple[str, ...] = ()
    """Pins of defunct bpf_links (:attr:`Observed.defunct_links`) to remove
    once everything else succeeded; each still holds an old program in memory."""

    @property
    def addresses(self) -> int:
        return self.image.address_count()

    def __bool__(self) -> bool:
        return self.write or bool(self.links) or self.update_rule_slots or bool(self.unpin)

    def lines(self) -> list[str]:
        """The plan as an operator reads it, one change per line."""
        out = [str(op) for op in self.links]
        r = self.changes
        out += [f"add rule {n}" for n in r.rules_added]
        out += [f"remove rule {n}" for n in r.rules_removed]
        out += [f"change rule {n}" for n in self.rules_changed]
        out += [f"move rule {n} (position or action)" for n in r.rules_moved if n not in self.rules_changed]
        if r.addresses_added or r.addresses_removed:
            out.append(f"addresses: +{r.addresses_added:,} -{r.addresses_removed:,}")
        if self.write and not out:
            out.append("update interface settings or match tables")
        out += [f"unpin defunct XDP link links/{pin} (its interface is gone or it was detached)"
                for pin in self.unpin]
        out += [f"interface {n} is configured but does not exist: nothing to attach" for n in self.missing]
        return out


class ImageCache:
    """The last image built and its rule digests, re-used while the inputs stay the same.

    A periodic drift check with a million addresses would otherwise rebuild
    the same image every time.  The config is compared by identity (a
    reload makes a new one), slots and interfaces by value.  A reload whose
    rules differ only in their addresses (a list edit) re-uses the header
    tables (:func:`xdpd.tables.header_tables`) of the last build.
    """

    def __init__(self) -> None:
        self._inputs: tuple | None = None
        self._built: tuple[BankImage, dict[str, int]] | None = None
        self._headers: tuple[tuple[Rule, ...], dict[str, object]] | None = None

    def build(self, config: Config, rule_slots: Mapping[str, int],
              ifaces: Sequence[IfaceEntry]) -> tuple[BankImage, dict[str, int]]:
        inputs = (sorted(rule_slots.items()), list(ifaces))
        if self._built is not None and self._inputs is not None \
                and self._inputs[0] is config and self._inputs[1:] == inputs:
            return self._built
        shape = without_addresses(config.rules)
        if self._headers is None or self._headers[0] != shape:
            self._headers = (shape, header_tables(config.rules))
        self._built = (build_image(config, rule_slots, ifaces, self._headers[1]),
                       {r.name: rule_digest(r) for r in config.rules})
        self._inputs = (config, *inputs)
        return self._built


def plan(config: Config, observed: Observed, cache: ImageCache | None = None) -> Plan:
    """Everything to do to make the kernel enforce ``config``."""
    present = {i.name: observed.links[i.name].ifindex for i in config.interfaces if i.name in observed.links}
    for name, idx in present.items():
        if idx >= layout.IFINDEX_MAX:
            raise PlanError(f"{name}: ifindex {idx} exceeds the program's limit {layout.IFINDEX_MAX}")

    # Counter slots: a rule keeps its slot; the active bank's slots of rules
    # that go away stay reserved until that bank is rewritten.
    owners = {s.name: slot for slot, s in observed.rule_slots.items()}
    wanted = {r.name for r in config.rules}
    in_use = {r.slot for r in observed.active.rules} if observed.active else set()
    reserved = {s for s in in_use if s not in observed.rule_slots or observed.rule_slots[s].name not in wanted}
    rule_slot = assign_slots([r.name for r in config.rules], owners, reserved, layout.MAX_RULE_SLOTS)
    fresh_rules = frozenset(s for n, s in rule_slot.items() if n not in owners)

    iface_owners = {s.name: slot for slot, s in observed.iface_slots.items()}
    iface_slot = assign_slots([i.name for i in config.interfaces], iface_owners, (), layout.MAX_IFACES)
    fresh_ifaces = frozenset(s for n, s in iface_slot.items() if n not in iface_owners)

    ifaces = iface_entries(config, present, iface_slot)
    image, digests = (cache or ImageCache()).build(config, rule_slot, ifaces)

    rule_slots = {rule_slot[r.name]: RuleSlot(r.name, layout.ACTION_CODES[r.action.value], digests[r.name])
                  for r in config.rules}
    before = {s.name: s.digest for s in observed.rule_slots.values()}
    changed = tuple(r.name for r in config.rules if r.name in before and before[r.name] != digests[r.name])
    addrs = diff_banks(observed.active, image)
    changes = diff_images(observed.active, image,
                          {slot: s.name for slot, s in observed.rule_slots.items()},
                          {slot: s.name for slot, s in rule_slots.items()}, addrs)
    return Plan(
        image=image,
        write=observed.active != image,
        previous=observed.active,
        changes=changes,
        addrs=addrs,
        rules_changed=changed,
        rule_slots=rule_slots,
        rule_slots_during={**observed.rule_slots, **rule_slots},
        fresh_rule_slots=fresh_rules,
        iface_slots={iface_slot[n]: IfaceSlot(n, idx, observed.links[n].mode or "none")
                     for n, idx in present.items()},
        iface_slots_during=dict(observed.iface_slots),
        fresh_iface_slots=fresh_ifaces,
        links=_link_ops(config, observed),
        missing=tuple(i.name for i in config.interfaces if i.name not in present),
        update_rule_slots=dict(observed.rule_slots) != rule_slots,
        unpin=observed.defunct_links,
    )


def _link_ops(config: Config, observed: Observed) -> tuple[LinkOp, ...]:
    ours = observed.xdpd_programs | {observed.prog_id}
    managed = observed.managed
    was = {s.name: s.ifindex for s in observed.iface_slots.values()}
    ops: list[LinkOp] = []
    for iface in config.interfaces:
        link = observed.links.get(iface.name)
        if link is None:
            continue
        mode = iface.mode.value
        if link.prog_id == observed.prog_id:
            if link.mode == mode or (mode == "auto" and link.mode in ("native", "generic")):
                continue
            ops.append(LinkOp(LinkAction.CHANGE_MODE, link, mode))
            continue
        repair = iface.name in managed
        recreated = repair and was[iface.name] != link.ifindex
        if not link.prog_id:
            ops.append(LinkOp(LinkAction.ATTACH, link, mode, repair=repair, recreated=recreated))
        else:
            ops.append(LinkOp(LinkAction.REPLACE, link, mode, foreign=link.prog_id not in ours,
                              repair=repair, recreated=recreated))
    for name in sorted(managed):
        link = observed.links.get(name)
        if config.interface(name) is None and link is not None and link.prog_id in ours:
            ops.append(LinkOp(LinkAction.DETACH, link, link.mode or "none"))
    return tuple(ops)


def detach_ops(observed: Observed) -> tuple[LinkOp, ...]:
    """Detach an xdpd program from every interface a daemon of this pin dir manages (on stop)."""
    ours = observed.xdpd_programs | {observed.prog_id}
    return tuple(LinkOp(LinkAction.DETACH, link, link.mode or "none")
                 for name in sorted(observed.managed)
                 if (link := observed.links.get(name)) is not None and link.prog_id in ours)


def assign_slots(names: Sequence[str], current: Mapping[str, int], reserved: Iterable[int],
                 capacity: int) -> dict[str, int]:
    """Stable slots: a name keeps its slot; new names take free ones.

    ``reserved`` are slots still referenced by the other bank, which must not
    be reused until that bank is rewritten.
    """
    out = {n: current[n] for n in names if n in current}
    taken = set(out.values()) | set(reserved)
    free = (s for s in range(capacity) if s not in taken)
    for n in names:
        if n not in out:
            try:
                out[n] = next(free)
            except StopIteration:
                raise PlanError(f"no free counter slot for {n!r} (capacity {capacity})") from None
    return out
