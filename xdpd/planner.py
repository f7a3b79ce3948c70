"""Desired state + observed state -> the operations that reconcile them.

Pure: no kernel, no netlink.  :mod:`xdpd.enforcer` gathers what is observed
(links, the pinned bank, rule digests), asks :func:`plan` what to do and
carries it out; ``xdpd plan`` prints the same :class:`Plan` without
carrying it out.  A plan computed right after its own execution is empty,
which is what makes reconciling on every trigger cheap and safe.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

from .links import LinkXdp
from .model import Config
from .tables import BankImage, ImageDiff, diff_images


@dataclass(frozen=True)
class LinkOp:
    """Attach (or atomically replace) our program on an interface, or detach it."""

    kind: str            # "attach" | "detach"
    iface: str
    mode: str            # configured mode for attach; current mode for detach
    reason: str

    def __str__(self) -> str:
        what = f"{self.kind} {self.iface}" + (f" ({self.mode})" if self.kind == "attach" else "")
        return f"{what}: {self.reason}"


@dataclass(frozen=True)
class Plan:
    """What a reconcile does: write the rule set (if it differs), then link operations."""

    rules: ImageDiff
    rules_changed: tuple[str, ...] = ()
    """Rules whose match definition changed (by digest), same name."""
    links: tuple[LinkOp, ...] = ()
    missing: tuple[str, ...] = ()
    """Configured interfaces that do not exist (nothing to do until they appear)."""

    @property
    def writes_rules(self) -> bool:
        return bool(self.rules) or bool(self.rules_changed)

    def __bool__(self) -> bool:
        return self.writes_rules or bool(self.links)

    def lines(self) -> list[str]:
        """The plan as an operator reads it, one change per line."""
        out = [str(op) for op in self.links]
        r = self.rules
        out += [f"add rule {n}" for n in r.rules_added]
        out += [f"remove rule {n}" for n in r.rules_removed]
        out += [f"change rule {n}" for n in self.rules_changed]
        out += [f"move rule {n} (position or action)" for n in r.rules_moved if n not in self.rules_changed]
        if r.addresses_added or r.addresses_removed:
            out.append(f"addresses: +{r.addresses_added:,} -{r.addresses_removed:,}")
        if r.other and not out:
            out.append("update interface settings or match tables")
        out += [f"interface {n} is configured but does not exist: nothing to attach" for n in self.missing]
        return out


def plan(config: Config, desired: BankImage, current: BankImage | None,
         names: tuple[Mapping[int, str], Mapping[int, str]],
         digests: tuple[Mapping[str, int], Mapping[str, int]],
         links: Mapping[str, LinkXdp], managed: set[str], prog_id: int,
         ours: set[int]) -> Plan:
    """Compare desired with observed.

    ``names``: (current, desired) counter slot -> rule name.  ``digests``:
    (current, desired) rule name -> digest of its definition.  ``links``:
    every interface's XDP attachment now.  ``managed``: interfaces a daemon
    of this pin dir attached before.  ``prog_id``: the program to attach.
    ``ours``: ids of xdpd programs (this one and older ones).
    """
    rules = diff_images(current, desired, names[0], names[1])
    now, want = digests
    changed = tuple(r.name for r in config.rules
                    if r.name in now and now[r.name] != want.get(r.name))

    ops: list[LinkOp] = []
    missing: list[str] = []
    for iface in config.interfaces:
        link = links.get(iface.name)
        if link is None:
            missing.append(iface.name)
            continue
        mode = iface.mode.value
        reason = _attach_reason(link, mode, prog_id, ours)
        if reason:
            ops.append(LinkOp("attach", iface.name, mode, reason))
    for name in sorted(managed):
        link = links.get(name)
        if config.interface(name) is None and link is not None and link.prog_id in ours | {prog_id}:
            ops.append(LinkOp("detach", name, link.mode or "none", "no longer in the config"))
    return Plan(rules, changed, tuple(ops), tuple(missing))


def _attach_reason(link: LinkXdp, mode: str, prog_id: int, ours: set[int]) -> str | None:
    """Why ``link`` needs an attach, or None when it runs our program in a fitting mode."""
    if link.prog_id == prog_id:
        if link.mode == mode or (mode == "auto" and link.mode in ("native", "generic")):
            return None
        return f"mode {link.mode} -> {mode}"
    if not link.prog_id:
        return "nothing attached"
    if link.prog_id in ours:
        return f"replace xdpd program {link.prog_id}"
    return f"replace foreign program {link.prog_id}"
