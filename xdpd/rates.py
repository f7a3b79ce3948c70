"""Rates from two readings of the counters: what ``xdpd top`` shows (pure).

The program's counters only ever grow, except when a slot changes hands: a
reload zeroes the counters of a slot a new rule (or interface) takes, and a
daemon started with a new map layout starts from zero.  So a rate is the
difference of two readings over the time between them, with these rules a
caller may rely on:

* a row is identified by its name *and* its counter slot; one whose pair was
  not in the first reading is ``new`` and shows 0 (there is nothing to
  subtract), one that is gone from the second reading is not shown (it is no
  longer enforced);
* a counter lower in the second reading than in the first was zeroed in
  between: its row is marked ``reset`` and the counter counts 0 for this
  interval, never a negative rate.

Rows come sorted busiest first (packets per second, then bytes per second),
ties in the order the program sees them (rule position, interface name).
:mod:`xdpd.snapshot` takes the readings from the pinned maps.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

Count = tuple[int, int]
"""(packets, bytes) of one counter, summed over CPUs."""


@dataclass(frozen=True)
class IfaceReading:
    name: str
    slot: int
    verdicts: Mapping[str, Count]
    """Every verdict's counter by label (``pass_rule``, ``drop_ban``, ...)."""


@dataclass(frozen=True)
class RuleReading:
    name: str
    slot: int
    position: int
    """1-based, in the active rule set."""
    action: str
    counter: Count
    limited: Count | None = None
    """A limit rule's drops over its rate; None for other actions."""


@dataclass(frozen=True)
class Snapshot:
    """One reading of every counter; ``at`` is ``time.monotonic()`` when they were read."""

    at: float
    interfaces: tuple[IfaceReading, ...] = ()
    rules: tuple[RuleReading, ...] = ()


@dataclass(frozen=True)
class Rate:
    packets: float
    """Per second."""
    bytes: float
    """Per second."""


ZERO = Rate(0.0, 0.0)


@dataclass(frozen=True)
class IfaceRow:
    name: str
    total: Rate
    drops: float
    """Packets per second of every ``drop_*`` verdict (observe mode's would-drops pass)."""
    verdicts: tuple[tuple[str, Rate], ...]
    """Every verdict, busiest first."""
    note: str = ""
    """``new``, ``reset`` or empty (see the module's docstring)."""


@dataclass(frozen=True)
class RuleRow:
    position: int
    name: str
    action: str
    rate: Rate
    limited: float | None
    """Packets per second over a limit rule's rate; None for other actions."""
    note: str = ""


@dataclass(frozen=True)
class RateTable:
    seconds: float
    """How far apart the two readings were."""
    interfaces: tuple[IfaceRow, ...]
    rules: tuple[RuleRow, ...]


def _delta(before: Count, after: Count) -> tuple[int, int, bool]:
    """(packets, bytes, reset): a counter that went down counts 0."""
    if after[0] < before[0] or after[1] < before[1]:
        return 0, 0, True
    return after[0] - before[0], after[1] - before[1], False


def _note(new: bool, reset: bool) -> str:
    return "new" if new else ("reset" if reset else "")


def _iface_row(before: IfaceReading | None, after: IfaceReading, seconds: float) -> IfaceRow:
    verdicts, reset = [], False
    for label, count in after.verdicts.items():
        if before is None:
            verdicts.append((label, ZERO))
            continue
        p, b, went_down = _delta(before.verdicts.get(label, (0, 0)), count)
        reset |= went_down
        verdicts.append((label, Rate(p / seconds, b / seconds)))
    order = {label: i for i, (label, _r) in enumerate(verdicts)}
    verdicts.sort(key=lambda v: (-v[1].packets, -v[1].bytes, order[v[0]]))
    total = Rate(sum(r.packets for _l, r in verdicts), sum(r.bytes for _l, r in verdicts))
    drops = sum(r.packets for label, r in verdicts if label.startswith("drop"))
    return IfaceRow(after.name, total, drops, tuple(verdicts), _note(before is None, reset))


def _rule_row(before: RuleReading | None, after: RuleReading, seconds: float) -> RuleRow:
    if before is None:
        return RuleRow(after.position, after.name, after.action, ZERO,
                       None if after.limited is None else 0.0, "new")
    p, b, reset = _delta(before.counter, after.counter)
    limited = None
    if after.limited is not None:
        lp, _lb, limited_reset = _delta(before.limited or (0, 0), after.limited)
        reset |= limited_reset
        limited = lp / seconds
    return RuleRow(after.position, after.name, after.action, Rate(p / seconds, b / seconds), limited,
                   _note(False, reset))


def rate_rows(before: Snapshot, after: Snapshot) -> RateTable:
    """The rates between two readings, busiest first (see the module's docstring)."""
    seconds = after.at - before.at
    if seconds <= 0:
        raise ValueError(f"the second reading must be later than the first ({seconds:+.3f} s)")
    old_ifaces = {(i.name, i.slot): i for i in before.interfaces}
    old_rules = {(r.name, r.slot): r for r in before.rules}
    ifaces = [_iface_row(old_ifaces.get((i.name, i.slot)), i, seconds) for i in after.interfaces]
    rules = [_rule_row(old_rules.get((r.name, r.slot)), r, seconds) for r in after.rules]
    ifaces.sort(key=lambda r: (-r.total.packets, -r.total.bytes, r.name))
    rules.sort(key=lambda r: (-r.rate.packets, -r.rate.bytes, r.position))
    return RateTable(seconds, tuple(ifaces), tuple(rules))


# -- the text table -----------------------------------------------------------


def human_rate(x: float) -> str:
    """Three significant digits with an SI prefix: ``0``, ``2.5``, ``480``, ``1.23k``, ``45.6M``."""
    if x <= 0:
        return "0"
    if x < 9.95:
        return f"{x:.1f}"
    if round(x) < 1000:
        return f"{x:.0f}"
    for unit in ("k", "M", "G", "T"):
        x /= 1000
        if round(x, 2) < 9.995:
            return f"{x:.2f}{unit}"
        if round(x, 1) < 99.95:
            return f"{x:.1f}{unit}"
        if round(x) < 1000 or unit == "T":
            return f"{x:.0f}{unit}"
    raise AssertionError("unreachable")


def format_rates(table: RateTable, all_verdicts: bool = False) -> list[str]:
    """The table as lines: interfaces with their verdicts (those with traffic,
    unless ``all_verdicts``) indented below, then the rules."""
    width = max([len(i.name) for i in table.interfaces] + [len(f"  {v}") for i in table.interfaces
                                                           for v, _r in i.verdicts] + [19])
    lines = [f"{'INTERFACE / VERDICT':<{width}}  {'PKTS/S':>8}  {'BYTES/S':>8}  {'DROPS/S':>8}  NOTE"]
    for i in table.interfaces:
        lines.append(f"{i.name:<{width}}  {human_rate(i.total.packets):>8}  {human_rate(i.total.bytes):>8}  "
                     f"{human_rate(i.drops):>8}  {i.note}".rstrip())
        for label, r in i.verdicts:
            if all_verdicts or r.packets or r.bytes:
                lines.append(f"{'  ' + label:<{width}}  {human_rate(r.packets):>8}  {human_rate(r.bytes):>8}")
    if not table.interfaces:
        lines.append("(no interfaces configured)")
    lines.append("")
    width = max([len(r.name) for r in table.rules] + [4])
    lines.append(f"{'#':<3} {'RULE':<{width}}  {'ACTION':<6}  {'PKTS/S':>8}  {'BYTES/S':>8}  {'LIMITED/S':>9}  NOTE")
    for r in table.rules:
        limited = "-" if r.limited is None else human_rate(r.limited)
        lines.append(f"{r.position:<3} {r.name:<{width}}  {r.action:<6}  {human_rate(r.rate.packets):>8}  "
                     f"{human_rate(r.rate.bytes):>8}  {limited:>9}  {r.note}".rstrip())
    if not table.rules:
        lines.append("(no rules)")
    return lines
