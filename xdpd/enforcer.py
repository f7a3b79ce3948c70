"""Make the kernel enforce a Config: maps first, then attachments.

Order matters for "no gap": the rule set is switched in the maps (one write,
see :meth:`Datapath.apply`) before any interface is attached, so an interface
never runs the program with an empty or half-written bank; and a program
already attached is replaced in place, never detached first.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from pyroute2 import IPRoute

from . import bpfsys, layout, links, tables
from .datapath import Datapath
from .model import Config

PROG_NAME = "xdpd_main"
"""The kernel's name for our program: how a foreign program is told apart."""


@dataclass
class ApplyResult:
    attached: dict[str, str] = field(default_factory=dict)     # name -> mode used
    detached: list[str] = field(default_factory=list)
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


class Enforcer:
    """Applies configs through one Datapath and one netlink socket."""

    def __init__(self, dp: Datapath, prog_fd: int, ipr: IPRoute) -> None:
        self.dp = dp
        self.prog_fd = prog_fd
        self.prog_id = bpfsys.prog_info(prog_fd).id
        self.ipr = ipr

    def apply(self, config: Config) -> ApplyResult:
        result = ApplyResult()
        observed = links.observe(self.ipr)
        wanted = [i for i in config.interfaces]
        present = {i.name: observed[i.name].ifindex for i in wanted if i.name in observed}
        result.missing = [i.name for i in wanted if i.name not in observed]
        for name, idx in present.items():
            if idx >= layout.IFINDEX_MAX:
                raise links.AttachError(f"{name}: ifindex {idx} exceeds the program's limit "
                                        f"{layout.IFINDEX_MAX}")

        rule_slots, fresh_rules, old_rule_names = self._rule_slots(config)
        iface_slots, fresh_ifaces, old_iface_names = self._iface_slots(config)
        # Names for old and new slots while both banks may be read.
        new_rule_names = {rule_slots[r.name]: (r.name, tables.ACTION_CODES[r.action])
                          for r in config.rules}
        self.dp.write_rule_names({**old_rule_names, **new_rule_names}, fresh_rules)
        self.dp.write_iface_names(old_iface_names, fresh_ifaces)

        image = tables.build_image(config, rule_slots,
                                   tables.iface_entries(config, present, iface_slots))
        self.dp.apply(image)
        result.addresses = image.address_count()

        modes: dict[int, tuple[str, int, str]] = {}
        for iface in wanted:
            if iface.name not in present:
                continue
            link = observed[iface.name]
            mode = iface.mode.value
            if link.prog_id == self.prog_id and (mode == "auto" and link.mode in ("native", "generic")
                                                  or link.mode == mode):
                used = link.mode
            else:
                used, warning = links.attach(self.ipr, link, self.prog_fd, mode)
                result.attached[iface.name] = used
                if warning:
                    result.warnings.append(warning)
            modes[iface_slots[iface.name]] = (iface.name, link.ifindex, used)

        for slot, (name, _, _) in old_iface_names.items():
            if config.interface(name) is None and name in observed and is_ours(observed[name].prog_id):
                links.detach(self.ipr, observed[name])
                result.detached.append(name)

        self.dp.write_rule_names(new_rule_names, set())
        self.dp.write_iface_names(modes, set())
        return result

    def _rule_slots(self, config: Config):
        names = self.dp.rule_names()
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
