"""The Prometheus metrics: what ``xdpd status --json`` shows, as metric families.

The names and labels are a contract (dashboards and alerts use them; add,
never rename).  Every family is listed in xdpd(8), METRICS.

Nothing is counted in Python: a scrape reads the kernel.  :class:`MetricsCollector`
calls :func:`xdpd.status.read_status` (the pinned maps opened afresh, so
it shares no file descriptor or state with the main loop that writes them,
plus netlink and the ban table) and the pinned reload counts
(:mod:`xdpd.reloadstats`), and :func:`families` turns both into metric
families.  The values are therefore the ones ``status --json`` shows, and
they keep the kernel counters' guarantees: per-CPU sums that survive
reloads and daemon restarts (the maps are pinned and adopted), and a rule's
or interface's counters set to 0 only when its slot is given to a new name
(:meth:`xdpd.maps.PinnedMaps.write_rule_slots`), so the counter of a given
rule or interface never goes down while it stays configured.  They start
again from 0 only with new maps (an upgrade that changes the program, a
change of a ``max_*`` setting), or after a reboot: Prometheus's ``rate()``
takes those as ordinary counter resets.

:func:`families` is pure, so the text format is tested without a kernel.
"""

from __future__ import annotations

import threading
from typing import Any, Callable, Iterable

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import generate_latest
from prometheus_client.registry import CollectorRegistry

from .reloadstats import ReloadCounts, ReloadStats

StatusReader = Callable[[str], dict[str, Any]]


def families(status: dict[str, Any], reloads: ReloadCounts) -> list[Metric]:
    """Metric families from a ``read_status`` result and the reload counts.

    With nothing pinned (``"error"`` in ``status``) the rule and interface
    families have no samples; the reload families always have theirs.
    """
    rule_packets = CounterMetricFamily(
        "xdpd_rule_packets_total",
        "Packets the rule matched (what a drop or pass rule decided; every match of a count or limit "
        "rule), summed over CPUs; kept across reloads and restarts, from 0 for a new rule.",
        labels=["rule", "action"])
    rule_bytes = CounterMetricFamily(
        "xdpd_rule_bytes_total", "Bytes (whole frames) of the packets in xdpd_rule_packets_total.",
        labels=["rule", "action"])
    limited = CounterMetricFamily(
        "xdpd_rule_limited_packets_total",
        "Packets a limit rule dropped because they were over its rate (limit rules only).",
        labels=["rule"])
    limited_bytes = CounterMetricFamily(
        "xdpd_rule_limited_bytes_total", "Bytes (whole frames) of the packets in xdpd_rule_limited_packets_total.",
        labels=["rule"])
    for name, r in status.get("rules", {}).items():
        rule_packets.add_metric([name, r["action"]], r["packets"])
        rule_bytes.add_metric([name, r["action"]], r["bytes"])
        if "limited" in r:
            limited.add_metric([name], r["limited"]["packets"])
            limited_bytes.add_metric([name], r["limited"]["bytes"])

    iface_packets = CounterMetricFamily(
        "xdpd_interface_packets_total",
        "Packets the program handled on the interface, by verdict (observe_drop_*: would have been "
        "dropped, passed in observe mode), summed over CPUs.",
        labels=["interface", "verdict"])
    iface_bytes = CounterMetricFamily(
        "xdpd_interface_bytes_total", "Bytes (whole frames) of the packets in xdpd_interface_packets_total.",
        labels=["interface", "verdict"])
    attached = GaugeMetricFamily(
        "xdpd_interface_attached",
        "1 when xdpd's program is attached to the interface, else 0; mode: the interface's XDP "
        "attachment (native, generic, offload; none when nothing is attached).",
        labels=["interface", "mode"])
    for name, i in status.get("interfaces", {}).items():
        for verdict, c in i["counters"].items():
            iface_packets.add_metric([name, verdict], c["packets"])
            iface_bytes.add_metric([name, verdict], c["bytes"])
        attached.add_metric([name, i["mode"]], 1 if i["attached"] else 0)

    out: list[Metric] = [rule_packets, rule_bytes, limited, limited_bytes, iface_packets, iface_bytes, attached]
    if "bans" in status:
        b = status["bans"]
        bans = GaugeMetricFamily("xdpd_bans", "Sources banned now (by xdpd ban and by limit rules).")
        bans.add_metric([], b["active"])
        capacity = GaugeMetricFamily("xdpd_ban_capacity", "Bans the ban table holds at most (settings.max_bans).")
        capacity.add_metric([], b["capacity"])
        by_rules = CounterMetricFamily(
            "xdpd_bans_by_rules_total", "Bans limit rules made (a source over the rate of a rule with ban:).")
        by_rules.add_metric([], b["banned_by_rules"])
        full = CounterMetricFamily(
            "xdpd_ban_table_full_total",
            "Bans limit rules could not make because the ban table was full (the source was still dropped "
            "over the rate; raise settings.max_bans).")
        full.add_metric([], b["table_full"])
        out += [bans, capacity, by_rules, full]

    total = CounterMetricFamily(
        "xdpd_reloads_total",
        "Reloads (SIGHUP, systemctl reload, a change of the config dir) applied, or rejected with the "
        "previous config left in force; kept across daemon restarts, until a reboot.",
        labels=["result"])
    total.add_metric(["applied"], reloads.applied)
    total.add_metric(["rejected"], reloads.rejected)
    last = GaugeMetricFamily(
        "xdpd_last_reload_success_timestamp_seconds",
        "UNIX time the enforced config was applied (by the daemon's start or a reload).")
    last.add_metric([], reloads.last_success)
    addresses = GaugeMetricFamily(
        "xdpd_config_addresses", "Addresses and prefixes in the rules of the enforced config.")
    addresses.add_metric([], reloads.addresses)
    return out + [total, last, addresses]


class MetricsCollector:
    """A prometheus_client collector that reads the pins at every scrape.

    One scrape at a time (a lock): scrapes come from the HTTP server's
    threads and the textfile writer, and each opens every map, so
    concurrent ones would only multiply the work.  Errors (maps replaced
    under it by an upgrade, ...) propagate: the caller turns them into an
    HTTP 500 or a skipped textfile write.
    """

    def __init__(self, pin_dir: str, reloads: ReloadStats, read_status: StatusReader | None = None) -> None:
        if read_status is None:
            from .status import read_status  # kernel side: pyroute2, libbpf
        self.pin_dir, self.reloads, self.read_status = pin_dir, reloads, read_status
        self._lock = threading.Lock()

    def collect(self) -> Iterable[Metric]:
        with self._lock:
            return families(self.read_status(self.pin_dir), self.reloads.read())


def registry(collector: MetricsCollector) -> CollectorRegistry:
    """A registry of its own holding only xdpd's families (not the client's
    default process and Python metrics, which would describe the scrape
    thread's process, not the filter)."""
    reg = CollectorRegistry(auto_describe=False)
    reg.register(collector)
    return reg


def render(reg: CollectorRegistry) -> bytes:
    """The text exposition format 0.0.4 (what node_exporter's textfile collector reads)."""
    return generate_latest(reg)
