"""An in-memory stand-in for the kernel side of a reconcile (banks, slots, links).

It implements what :class:`xdpd.execute.Executor` needs (``apply``,
``write_rule_slots``, ``write_iface_slots``, ``attach``, ``detach``,
``restore``, ``unpin``) and can :meth:`observe` itself like
:func:`xdpd.observe.observe` does the real kernel, so unit tests run
observe -> plan -> execute without root.  ``fail_at = N`` makes the N-th
operation raise ``OSError``, to drive the executor through a failure at
every step.

Attachments are made as :class:`xdpd.links.XdpLinks` makes them: through a
pinned bpf_link (a new link id per attach, kept by a swap in the same
mode), or with ``bpf_links = False`` as netlink attachments (link id 0).
``defunct`` holds the pins of links whose interface went away.
"""

from __future__ import annotations

import errno
from dataclasses import dataclass, field

from xdpd.observed import IfaceSlot, LinkXdp, Observed, RuleSlot
from xdpd.tables import BankImage

PROG_ID = 10
"""The id of "our" program in the fake."""


@dataclass
class FakeKernel:
    links: dict[str, LinkXdp]
    active: BankImage | None = None
    rule_slots: dict[int, RuleSlot] = field(default_factory=dict)
    iface_slots: dict[int, IfaceSlot] = field(default_factory=dict)
    native: set[str] = field(default_factory=set)
    """Interfaces whose driver supports native XDP (auto falls back to generic elsewhere)."""
    fail_at: int | None = None
    calls: list[str] = field(default_factory=list)
    zeroed: set[tuple[str, int]] = field(default_factory=set)
    bpf_links: bool = True
    defunct: list[str] = field(default_factory=list)
    next_link_id: int = 100

    def observe(self) -> Observed:
        return Observed(links=dict(self.links), prog_id=PROG_ID, active=self.active,
                        rule_slots=dict(self.rule_slots), iface_slots=dict(self.iface_slots),
                        defunct_links=tuple(self.defunct))

    def _step(self, what: str) -> None:
        self.calls.append(what)
        if self.fail_at == len(self.calls):
            raise OSError(errno.EIO, f"injected failure at step {len(self.calls)} ({what})")

    # -- banks -----------------------------------------------------------------
    def apply(self, image: BankImage, settle: bool = True, diff=None) -> None:
        self._step("apply")
        self.active = image

    # -- slots -----------------------------------------------------------------
    def write_rule_slots(self, slots, fresh) -> None:
        self._step("write_rule_slots")
        self.rule_slots = dict(slots)
        self.zeroed |= {("rule", s) for s in fresh}

    def write_iface_slots(self, slots, fresh) -> None:
        self._step("write_iface_slots")
        self.iface_slots = dict(slots)
        self.zeroed |= {("iface", s) for s in fresh}

    # -- links -----------------------------------------------------------------
    def attach(self, link: LinkXdp, mode: str) -> tuple[str, str | None]:
        self._step(f"attach {link.name}")
        warning = None
        if mode == "auto":
            mode = "native" if link.name in self.native else "generic"
            if mode == "generic":
                warning = f"native XDP unavailable on {link.name}; using generic mode"
        now = self.links[link.name]
        link_id = 0
        if self.bpf_links:
            # A swap in the same mode keeps the link; anything else is a new one.
            link_id = now.link_id if now.link_id and now.mode == mode else self._new_link_id()
        self.links[link.name] = LinkXdp(now.name, now.ifindex, mode, PROG_ID, link_id)
        return mode, warning

    def _new_link_id(self) -> int:
        self.next_link_id += 1
        return self.next_link_id

    def detach(self, link: LinkXdp) -> None:
        self._step(f"detach {link.name}")
        now = self.links[link.name]
        self.links[link.name] = LinkXdp(now.name, now.ifindex, None, 0)

    def restore(self, before: LinkXdp) -> None:
        self._step(f"restore {before.name}")
        self.links[before.name] = before

    def unpin(self, pin: str) -> None:
        self._step(f"unpin {pin}")
        self.defunct.remove(pin)
