"""``sample`` in a rule (parsing) and how a sample from the ring buffer is logged."""

from __future__ import annotations

import ctypes as ct
import socket
from pathlib import Path

import pytest

from tests.unit.test_config import load, problems
from xdpd import layout, tables
from xdpd.samples import describe


def test_sample_rates_parse_for_any_action(tmp_path: Path) -> None:
    rules = load(tmp_path, rules_yaml="""
rules:
  - {name: a, action: drop, src: [192.0.2.1], sample: 10/s}
  - {name: b, action: count, sample: 30/m}
  - {name: c, action: limit, rate: 100/s, sample: "1/s"}
  - {name: d, action: pass}
""").rules
    assert [r.sample for r in rules] == [10.0, 0.5, 1.0, None]


@pytest.mark.parametrize("value, message", [
    ("10", "sample '10' has no period; write '10/s'"),
    ("1mbit/s", "sample counts packets, not bytes"),
    ("5000/s", "more than 1000 per second"),
    ("[1]", "sample must be a rate like '10/s', got a list"),
    ("0/s", "sample must be more than 0"),
])
def test_bad_sample_rates(tmp_path: Path, value: str, message: str) -> None:
    [line] = problems(tmp_path, rules_yaml=f"rules: [{{name: a, action: drop, sample: {value}}}]\n")
    assert line.startswith("rules.yaml:1:") and message in line, line


def test_the_sample_bucket_holds_one_second_of_samples() -> None:
    from xdpd.model import Action, Rule
    e = tables.rule_entry(Rule("a", Action.DROP, sample=5.0), 3)
    assert e.sample_cost == layout.TIME_SCALE * 10**9 // 5 and e.sample_tau == 5 * e.sample_cost
    assert tables.rule_entry(Rule("b", Action.DROP), 3).sample_cost == 0


def sample(**kw) -> layout.Sample:
    s = layout.Sample(verdict=layout.Verdict.DROP_RULE, family=4, proto=6, sport=40000, dport=22, length=60,
                      l4=1, tcp_flags=0x12, vlan=4096, **kw)
    ct.memmove(s.src, socket.inet_pton(socket.AF_INET, "192.0.2.7"), 4)
    ct.memmove(s.dst, socket.inet_pton(socket.AF_INET, "198.51.100.1"), 4)
    return s


def test_a_tcp_sample_is_logged_with_its_flags() -> None:
    assert describe(sample(), "no-ssh", "eth0") == {
        "rule": "no-ssh", "iface": "eth0", "verdict": "drop_rule", "src": "192.0.2.7", "dst": "198.51.100.1",
        "proto": "tcp", "sport": 40000, "dport": 22, "length": 60, "tcp_flags": "syn,ack"}


def test_an_icmpv6_sample_without_ports() -> None:
    s = layout.Sample(verdict=layout.Verdict.PASS_DEFAULT, family=6, proto=58, sport=layout.NO_PORT,
                      dport=layout.NO_PORT, length=104, l4=1, icmp_type=128, icmp_code=0, vlan=20)
    ct.memmove(s.src, socket.inet_pton(socket.AF_INET6, "2001:db8::1"), 16)
    ct.memmove(s.dst, socket.inet_pton(socket.AF_INET6, "2001:db8::2"), 16)
    assert describe(s, "pings", "eth1") == {
        "rule": "pings", "iface": "eth1", "verdict": "pass_default", "src": "2001:db8::1", "dst": "2001:db8::2",
        "proto": "icmpv6", "length": 104, "icmp_type": 128, "icmp_code": 0, "vlan": 20}
