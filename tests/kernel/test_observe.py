"""Observe mode with the real daemon: try a policy on live traffic without dropping anything.

A ``default: drop`` interface in observe mode delivers every packet, and its
``observe_drop_*`` counters in ``xdpd status --json`` say what the same
config without observe drops for the same traffic.  Switching observe on and
off is a reload like any other: the attached program stays (same id, no
detach), an allowed stream loses nothing, and a blocked source is dropped
exactly up to the switch to observe and again from the switch back.
"""

from __future__ import annotations

import pytest

from tests.kernel.test_traffic import expect, iface_status, verdicts
from tests.kernel.test_reconcile import assert_accepted
from tests.testbed.netbed import NetBed
from tests.testbed.xdplink import XdpMonitor

pytestmark = pytest.mark.kernel

ALLOWED_V4, ALLOWED_V6 = "198.51.100.1", "2001:db8:900d::1"
BLOCKED_V4, BLOCKED_V6 = "192.0.2.1", "2001:db8:bad::1"
OBSERVED = ("observe_drop_rule", "observe_drop_default", "observe_drop_malformed")


def cfg(iface: str, observe: bool) -> str:
    return f"""
        settings: {{log_interval: 60, max_addresses: 1024}}
        interfaces:
          {iface}: {{mode: native, default: drop, observe: {str(observe).lower()}}}
        rules:
          - {{name: blocklist, action: drop, src: [192.0.2.0/24, "2001:db8:bad::/48"]}}
          - {{name: app, action: pass, proto: udp, dst_port: 7000}}
          - {{name: ping, action: pass, proto: [icmp, icmpv6], icmp_type: echo-request}}
    """


# (proto, source, dport, count, verdict without observe)
TRAFFIC = [
    ("udp", ALLOWED_V4, 7000, 3, "pass"), ("udp", ALLOWED_V6, 7000, 3, "pass"),
    ("udp", BLOCKED_V4, 7000, 4, "drop"), ("udp", BLOCKED_V6, 7000, 2, "drop"),
    ("udp", ALLOWED_V4, 7001, 5, "drop"), ("udp", ALLOWED_V6, 7002, 2, "drop"),
    ("icmp", ALLOWED_V4, 0, 2, "pass"), ("icmpv6", ALLOWED_V6, 0, 2, "pass"),
    ("icmp", BLOCKED_V4, 0, 2, "drop"),
]


def send_all(bed: NetBed, observe: bool) -> None:
    for proto, src, dport, count, verdict in TRAFFIC:
        kw = {"dport": dport} if proto == "udp" else {}
        expect(bed, proto, src, count, count if observe or verdict == "pass" else 0, **kw)


def deltas(after: dict[str, int], before: dict[str, int]) -> dict[str, int]:
    return {k: n - before.get(k, 0) for k, n in after.items() if n != before.get(k, 0)}


def test_observe_delivers_everything_and_counts_what_enforcing_drops(netbed: NetBed, xdpd) -> None:
    v = netbed.victim_if
    d = xdpd(cfg(v, observe=True))
    st = d.status()
    assert iface_status(d, st)["observe"] is True
    prog_id = iface_status(d, st)["prog_id"]
    before_rules, before = d.rule_packets(), verdicts(d, st)
    send_all(netbed, observe=True)
    observed, observed_rules = deltas(verdicts(d), before), deltas(d.rule_packets(), before_rules)
    assert observed.get("drop_rule", 0) == observed.get("drop_default", 0) == 0, observed
    assert observed["observe_drop_rule"] == 8 and observed["observe_drop_default"] == 7, observed

    assert_accepted(d, d.reload(cfg(v, observe=False)))
    st = d.status()
    assert iface_status(d, st)["observe"] is False and iface_status(d, st)["prog_id"] == prog_id
    before_rules, before = d.rule_packets(), verdicts(d, st)
    send_all(netbed, observe=False)
    enforced, enforced_rules = deltas(verdicts(d), before), deltas(d.rule_packets(), before_rules)
    # The same traffic: what observe counted is exactly what enforcing drops, rule by rule too.
    assert enforced["drop_rule"] == observed["observe_drop_rule"]
    assert enforced["drop_default"] == observed["observe_drop_default"]
    assert not any(k in enforced for k in OBSERVED), enforced
    assert enforced_rules == observed_rules == {"blocklist": 8, "app": 6, "ping": 4}


def test_switching_observe_is_a_reload_without_gap(netbed: NetBed, xdpd) -> None:
    v = netbed.victim_if
    d = xdpd(cfg(v, observe=False))
    prog_id = iface_status(d)["prog_id"]
    with XdpMonitor(netbed.victim_ns, v) as monitor:
        probe = netbed.probe([ALLOWED_V4, BLOCKED_V4, BLOCKED_V6], dport=7000, interval=0.002)
        try:
            assert probe.wait_received(ALLOWED_V4, 20), probe.summary()
            # sent[] before a SIGHUP: sent under the old rules; at READY=1: the new ones apply.
            sent_before_on = dict(probe.sent)
            assert_accepted(d, d.reload(cfg(v, observe=True)))
            on = dict(probe.sent)
            assert probe.wait_received(BLOCKED_V4, 50), probe.summary()
            sent_before_off = dict(probe.sent)
            assert_accepted(d, d.reload(cfg(v, observe=False)))
            off = dict(probe.sent)
            probe.wait_sent(BLOCKED_V4, 200)
        finally:
            probe.stop()
    assert monitor.gaps() == [] and monitor.prog_ids() == [prog_id], monitor.events
    assert iface_status(d)["prog_id"] == prog_id
    assert probe.lost(ALLOWED_V4) == 0, probe.summary()
    for src in (BLOCKED_V4, BLOCKED_V6):
        seqs = {seq for seq, _t in probe.arrivals[src]}
        assert not {s for s in seqs if s < sent_before_on[src]}, f"{src}: got through before observe was on"
        assert not {s for s in seqs if s >= off[src]}, f"{src}: got through after observe was off"
        missing = set(range(on[src], sent_before_off[src])) - seqs
        assert not missing, f"{src}: {len(missing)} lost while observing"
    st = d.status()
    assert iface_status(d, st)["observe"] is False
    assert verdicts(d, st)["observe_drop_rule"] >= sent_before_off[BLOCKED_V4] - on[BLOCKED_V4]
