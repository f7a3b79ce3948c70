"""Samples of matched packets, end to end: real frames through a daemon, ``sample`` events in its log.

The frames come from the live-frames generator (or its relay), paced at 10,000 pps; the
daemon logs to the console (its stderr), one ``sample key=value ...`` line
per sample, the same fields journald gets as ``XDPD_*``.
"""

from __future__ import annotations

import re
import time

import pytest

from tests.testbed import frames
from tests.testbed.daemon import config
from tests.testbed.netbed import NetBed
from tools.trafficgen import TrafficGen

pytestmark = pytest.mark.kernel

PPS, SECONDS, RATE = 10_000, 3, 5


def samples(log: str) -> list[dict[str, str]]:
    out = []
    for line in log.splitlines():
        m = re.search(r"(?:^|\s)sample (.*)$", line)
        if m:
            out.append(dict(kv.split("=", 1) for kv in m.group(1).split()))
    return out


def test_a_sampled_rule_logs_its_rate_of_packets_with_their_headers(netbed: NetBed, xdpd) -> None:
    d = xdpd(config(netbed.victim_if, f"""
        - {{name: no-flood, action: drop, proto: udp, dst_port: 9, sample: {RATE}/s}}
        - {{name: unsampled, action: drop, proto: udp, dst_port: 10}}
    """, mode="native"))
    sampled = frames.frame_v4("udp", "192.0.2.77", netbed.victim_v4, 1234, 9, payload=bytes(20),
                              eth_dst=netbed.victim_mac())
    other = frames.frame_v4("udp", "192.0.2.78", netbed.victim_v4, 1234, 10, payload=bytes(20),
                            eth_dst=netbed.victim_mac())
    with TrafficGen(netbed.sender_ns, netbed.sender_if) as gen:
        gen.flood(other, PPS, rate_pps=PPS)
        result = gen.flood(sampled, PPS * SECONDS, rate_pps=PPS)
    time.sleep(0.5)
    got = samples(d.stderr_since_start())
    # One second's burst, then the rate: 5 + 5 * 3 = 20 (the clock's tick of slack either way).
    want = RATE + RATE * result.seconds
    assert abs(len(got) - want) <= 2, (len(got), want, result)
    assert {s["rule"] for s in got} == {"no-flood"}
    assert got[0] == {"rule": "no-flood", "iface": netbed.victim_if, "verdict": "drop_rule", "src": "192.0.2.77",
                      "dst": netbed.victim_v4, "proto": "udp", "sport": "1234", "dport": "9",
                      "length": str(len(sampled) - 14)}
