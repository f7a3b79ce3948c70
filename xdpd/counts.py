"""The periodic count lines in the journal: what changed since the last report.

One ``count`` line per rule (its matches) and per interface verdict whose
packet count moved, a ``limited`` line per limit rule whose drops over the
rate moved, and a ``bans`` line when limit rules banned sources or found
the ban table full.
"""

from __future__ import annotations

from . import layout
from .maps import PinnedMaps


class CountReporter:
    """Logs per-rule and per-interface counts that changed since last time."""

    def __init__(self, maps: PinnedMaps, log) -> None:
        self.maps, self.log = maps, log
        self.last: dict[tuple[str, int], tuple[int, int]] = {}

    def report(self) -> None:
        owners = self.maps.rule_slots()
        for r in self.maps.rule_order():
            name = owners[r.slot].name if r.slot in owners else str(r.slot)
            action = layout.ACTION_NAMES.get(r.action, str(r.action))
            self._one("count", "rule_stats", r.slot, rule=name, action=action)
            if r.action == layout.ACT_LIMIT:
                self._one("limited", "limit_stats", r.slot, rule=name)
        for slot, iface in self.maps.iface_slots().items():
            for v in layout.Verdict:
                self._one("count", "iface_stats", slot * layout.NVERDICTS + v, iface=iface.name, verdict=v.label)
        by_rule, full = self.maps.ban_stats()
        prev = self.last.get(("ban_stats", 0), (0, 0))
        self.last[("ban_stats", 0)] = (by_rule, full)
        if (by_rule, full) != prev:
            self.log.info("bans", banned_by_rules=by_rule, delta_banned=by_rule - prev[0],
                          table_full=full, delta_table_full=full - prev[1])
            if full > prev[1]:
                self.log.warning("ban_table_full", refused=full - prev[1],
                                 hint="limit rules could not ban every source over their rate "
                                      "(still limited); raise settings.max_bans")

    def _one(self, event: str, table: str, index: int, **fields) -> None:
        packets, nbytes = self.maps.counter(table, index)
        prev = self.last.get((table, index), (0, 0))
        self.last[(table, index)] = (packets, nbytes)
        if packets != prev[0]:
            self.log.info(event, **fields, packets=packets, bytes=nbytes,
                          delta_packets=packets - prev[0], delta_bytes=nbytes - prev[1])
