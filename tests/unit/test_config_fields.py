"""The keys of issue 9: a rule's interfaces, tcp_flags, icmp_type, icmp_code,
ttl, length, vlan; an interface's observe.

Each accepted form with the model value it gives, and each mistake with the
exact ``file:line:col: message`` a user gets.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.unit.test_config import load, one_rule, problems
from xdpd.model import PortRange, TcpFlags

IFACES = "interfaces: {eth0: {}, eth1: {}}\n"


def rule_with(tmp_path: Path, fields: str) -> object:
    """The one rule ``{name: a, action: drop, <fields>}`` on eth0/eth1."""
    return one_rule(tmp_path, IFACES + f"rules:\n  - {{name: a, action: drop, {fields}}}\n")


def rule_problems(tmp_path: Path, body: str) -> list[str]:
    """Problems of a block-style rule whose ``body`` starts on line 4 at column 5."""
    return problems(tmp_path, rules_yaml="rules:\n  - name: a\n    action: drop\n" + body + IFACES)


# --------------------------------------------------------------------------
# interfaces (on a rule)


@pytest.mark.parametrize(
    ("value", "expected"),
    [("eth0", ("eth0",)), ("[eth1, eth0, eth1]", ("eth0", "eth1")), ("[eth1]", ("eth1",))],
)
def test_rule_interfaces(tmp_path: Path, value: str, expected: tuple[str, ...]) -> None:
    assert rule_with(tmp_path, f"interfaces: {value}").interfaces == expected  # type: ignore[attr-defined]


def test_rule_without_interfaces_applies_everywhere(tmp_path: Path) -> None:
    assert rule_with(tmp_path, "proto: tcp").interfaces is None  # type: ignore[attr-defined]


def test_restricted_rule_keeps_its_place(tmp_path: Path) -> None:
    config = load(tmp_path, rules_yaml=IFACES + """\
rules:
  - {name: a, action: count}
  - {name: b, action: drop, interfaces: eth1}
  - {name: c, action: pass}
""")
    assert [(r.name, r.interfaces) for r in config.rules] == [("a", None), ("b", ("eth1",)), ("c", None)]


def test_rule_interface_configured_in_another_file(tmp_path: Path) -> None:
    config = load(
        tmp_path,
        a_yaml="rules:\n  - {name: a, action: drop, interfaces: [eth9]}\n",
        b_yaml="interfaces: {eth9: {default: drop}}\n",
    )
    assert config.rules[0].interfaces == ("eth9",)


@pytest.mark.parametrize(
    ("value", "lines"),
    [
        ("[eth0, eht1]", ["rules.yaml:4:24: interface 'eht1' is not configured under 'interfaces'; "
                          "did you mean 'eth1'?"]),
        ("wlan7", ["rules.yaml:4:17: interface 'wlan7' is not configured under 'interfaces'; "
                   "expected one of: eth0, eth1"]),
        ("[]", ["rules.yaml:4:17: empty list would match nothing; remove the key to match anything"]),
        ("{eth0: 1}", ["rules.yaml:4:17: interfaces must be a list or a single value, got a mapping"]),
        ("[[eth0]]", ["rules.yaml:4:18: interface name must be a single value, got a list"]),
        ("~", ["rules.yaml:4:17: interfaces has no value; remove the key to match anything"]),
    ],
)
def test_bad_rule_interfaces(tmp_path: Path, value: str, lines: list[str]) -> None:
    assert rule_problems(tmp_path, f"    interfaces: {value}\n") == lines


def test_rule_interface_with_none_configured(tmp_path: Path) -> None:
    assert problems(tmp_path, a_yaml="rules:\n  - {name: a, action: drop, interfaces: eth0}\n",
                    b_yaml="rules:\n  - {name: b, action: drop, interfaces: [eth0, eth1]}\n") == [
        "a.yaml:2:41: interface 'eth0' is not configured under 'interfaces'; no interface is configured",
        "b.yaml:2:42: interface 'eth0' is not configured under 'interfaces'; no interface is configured",
        "b.yaml:2:48: interface 'eth1' is not configured under 'interfaces'; no interface is configured",
    ]


def test_unknown_interface_is_reported_also_in_an_otherwise_bad_rule(tmp_path: Path) -> None:
    assert rule_problems(tmp_path, "    interfaces: eth5\n    ttl: 300\n") == [
        "rules.yaml:5:10: TTL 300 is out of range 0-255",
        "rules.yaml:4:17: interface 'eth5' is not configured under 'interfaces'; did you mean 'eth1'?",
    ]


# --------------------------------------------------------------------------
# tcp_flags


@pytest.mark.parametrize(
    ("value", "mask", "bits"),
    [
        ('"syn,!ack"', 0x12, 0x02),
        ("syn", 0x02, 0x02),
        ("'!syn'", 0x02, 0),
        ('" SYN , ! ack,fin,rst,psh,urg,ece,cwr "', 0xFF, 0xEF),
    ],
)
def test_tcp_flags(tmp_path: Path, value: str, mask: int, bits: int) -> None:
    rule = rule_with(tmp_path, f"proto: tcp, tcp_flags: {value}")
    assert rule.tcp_flags == TcpFlags(mask=mask, value=bits)  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("sny", "unknown TCP flag 'sny'; did you mean 'syn'?"),
        ('"syn,!xyz"', "unknown TCP flag 'xyz'; expected one of: fin, syn, rst, psh, ack, urg, ece, cwr"),
        ('""', "tcp_flags is empty; write flags like 'syn,!ack', or remove the key"),
        ('"syn,,ack"', "empty flag in tcp_flags 'syn,,ack'; expected names separated by ','"),
        ('"syn,!"', "empty flag in tcp_flags 'syn,!'; expected names separated by ','"),
        ('"syn,ack,syn"', "TCP flag 'syn' is named twice in tcp_flags 'syn,ack,syn'"),
        ('"syn,!syn"', "TCP flag 'syn' is both set and clear in tcp_flags 'syn,!syn'"),
        ("2", "tcp_flags must be a string, got an integer"),
        ("[syn, ack]", "tcp_flags must be a string, got a list"),
        ("!ack", "tcp_flags must be a string: quote it (YAML reads '!ack' as a tag)"),
    ],
)
def test_bad_tcp_flags(tmp_path: Path, value: str, message: str) -> None:
    assert rule_problems(tmp_path, f"    proto: tcp\n    tcp_flags: {value}\n") == [f"rules.yaml:5:16: {message}"]


def test_tcp_flags_problems_are_all_listed(tmp_path: Path) -> None:
    assert rule_problems(tmp_path, "    proto: tcp\n    tcp_flags: syn,sin,!syn\n") == [
        "rules.yaml:5:16: unknown TCP flag 'sin'; did you mean 'syn'?",
        "rules.yaml:5:16: TCP flag 'syn' is both set and clear in tcp_flags 'syn,sin,!syn'",
    ]


@pytest.mark.parametrize("proto", ["", "    proto: udp\n", "    proto: [tcp, udp]\n", "    proto: [tcp, icmp]\n"])
def test_tcp_flags_need_tcp_alone(tmp_path: Path, proto: str) -> None:
    line = 4 + proto.count("\n")
    assert rule_problems(tmp_path, proto + "    tcp_flags: syn\n") == [
        f"rules.yaml:{line}:5: tcp_flags needs proto: tcp (and no other protocol)"]


def test_tcp_flags_with_misspelt_proto_reports_the_proto_only(tmp_path: Path) -> None:
    assert rule_problems(tmp_path, "    proto: tpc\n    tcp_flags: syn\n") == [
        "rules.yaml:4:12: unknown protocol 'tpc'; did you mean 'tcp'? (or a number 0-255)"]


# --------------------------------------------------------------------------
# icmp_type and icmp_code


@pytest.mark.parametrize(
    ("proto", "value", "expected"),
    [
        ("icmp", "echo-request", {(4, 8)}),
        ("icmpv6", "echo-request", {(6, 128)}),
        ("[icmp, icmpv6]", "echo-request", {(4, 8), (6, 128)}),
        ("[icmp, icmpv6]", "[Echo-Reply, 3]", {(4, 0), (6, 129), (4, 3), (6, 3)}),
        ("[icmp, icmpv6]", "source-quench", {(4, 4)}),  # exists for icmp only: fine with both
        ("icmpv6", "[neighbor-solicitation, neighbour-advertisement, packet-too-big]",
         {(6, 135), (6, 136), (6, 2)}),
        ("1", "[0, 255]", {(4, 0), (4, 255)}),
        ("58", "timestamp-request", None),
    ],
)
def test_icmp_type(tmp_path: Path, proto: str, value: str, expected: set[tuple[int, int]] | None) -> None:
    if expected is None:
        assert rule_problems(tmp_path, f"    proto: {proto}\n    icmp_type: {value}\n") == [
            "rules.yaml:5:16: ICMP type 'timestamp-request' does not exist for icmpv6 (it is an icmp type)"]
        return
    rule = rule_with(tmp_path, f"proto: {proto}, icmp_type: {value}")
    assert rule.icmp_types == frozenset(expected)  # type: ignore[attr-defined]
    assert rule.icmp_codes is None  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("proto", "value", "col", "message"),
    [
        ("icmp", "echo-requst", 16,
         "unknown icmp type 'echo-requst'; did you mean 'echo-request'? (or a number 0-255)"),
        ("[icmp, icmpv6]", "ping", 16, "unknown icmp or icmpv6 type 'ping'; expected one of: echo-reply, "
         "destination-unreachable, source-quench, redirect, echo-request, router-advertisement, router-solicitation, "
         "time-exceeded, parameter-problem, timestamp-request, timestamp-reply, packet-too-big, "
         "neighbour-solicitation, neighbour-advertisement (or a number 0-255)"),
        ("icmp", "packet-too-big", 16, "ICMP type 'packet-too-big' does not exist for icmp (it is an icmpv6 type)"),
        ("icmp", "256", 16, "ICMP type 256 is out of range 0-255"),
        ("icmp", "[8, -1]", 20, "unknown icmp type '-1'; expected one of: echo-reply, destination-unreachable, "
         "source-quench, redirect, echo-request, router-advertisement, router-solicitation, time-exceeded, "
         "parameter-problem, timestamp-request, timestamp-reply (or a number 0-255)"),
        ("icmp", "[]", 16, "empty list would match nothing; remove the key to match anything"),
        ("icmp", "{echo: 8}", 16, "icmp_type must be a list or a single value, got a mapping"),
        ("icmp", "[[8]]", 17, "ICMP type must be a single value, got a list"),
    ],
)
def test_bad_icmp_type(tmp_path: Path, proto: str, value: str, col: int, message: str) -> None:
    body = f"    proto: {proto}\n    icmp_type: {value}\n"
    assert rule_problems(tmp_path, body) == [f"rules.yaml:5:{col}: {message}"]


@pytest.mark.parametrize("proto", ["", "    proto: tcp\n", "    proto: [icmp, udp]\n", "    proto: 47\n"])
def test_icmp_type_needs_icmp_alone(tmp_path: Path, proto: str) -> None:
    line = 4 + proto.count("\n")
    assert rule_problems(tmp_path, proto + "    icmp_type: 8\n    icmp_code: 0\n") == [
        f"rules.yaml:{line}:5: icmp_type needs proto: icmp, icmpv6 or both (and no other protocol)"]


def test_icmp_type_without_proto_still_checks_names(tmp_path: Path) -> None:
    assert rule_problems(tmp_path, "    icmp_type: echo-requets\n") == [
        "rules.yaml:4:5: icmp_type needs proto: icmp, icmpv6 or both (and no other protocol)",
        "rules.yaml:4:16: unknown icmp or icmpv6 type 'echo-requets'; did you mean 'echo-request'? (or a number 0-255)",
    ]


def test_icmp_code(tmp_path: Path) -> None:
    rule = rule_with(tmp_path, 'proto: icmp, icmp_type: destination-unreachable, icmp_code: [4, "0-3", 9, 255]')
    assert rule.icmp_types == frozenset({(4, 3)})  # type: ignore[attr-defined]
    assert rule.icmp_codes == (PortRange(0, 4), PortRange(9, 9), PortRange(255, 255))  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("value", "col", "message"),
    [
        ("256", 16, "ICMP code 256 is out of range 0-255"),
        ("4-1", 16, "ICMP code range '4-1' is reversed (write 1-4)"),
        ("frag", 16, "bad ICMP code 'frag'; expected a number 0-255 or a range like '0-3'"),
        ("[]", 16, "empty list would match nothing; remove the key to match anything"),
    ],
)
def test_bad_icmp_code(tmp_path: Path, value: str, col: int, message: str) -> None:
    body = f"    proto: icmp\n    icmp_type: 3\n    icmp_code: {value}\n"
    assert rule_problems(tmp_path, body) == [f"rules.yaml:6:{col}: {message}"]


def test_icmp_code_needs_icmp_type(tmp_path: Path) -> None:
    assert rule_problems(tmp_path, "    proto: icmp\n    icmp_code: 0\n") == [
        "rules.yaml:5:5: icmp_code needs icmp_type in the same rule"]


# --------------------------------------------------------------------------
# ttl, length, vlan: one range syntax, each its own bound


@pytest.mark.parametrize(
    ("key", "attr", "value", "expected"),
    [
        ("ttl", "ttl", '"0-2"', (PortRange(0, 2),)),
        ("ttl", "ttl", "[64, 255, 1-3, 2]", (PortRange(1, 3), PortRange(64, 64), PortRange(255, 255))),
        ("length", "length", '"1400-65535"', (PortRange(1400, 65535),)),
        ("length", "length", "[0-20, 21-40]", (PortRange(0, 40),)),
        ("vlan", "vlans", "[20]", (PortRange(20, 20),)),
        ("vlan", "vlans", '[4095, "0 - 1"]', (PortRange(0, 1), PortRange(4095, 4095))),
    ],
)
def test_range_fields(tmp_path: Path, key: str, attr: str, value: str, expected: tuple[PortRange, ...]) -> None:
    assert getattr(rule_with(tmp_path, f"{key}: {value}"), attr) == expected


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("ttl", "256", "TTL 256 is out of range 0-255"),
        ("ttl", "9-3", "TTL range '9-3' is reversed (write 3-9)"),
        ("ttl", "low", "bad TTL 'low'; expected a number 0-255 or a range like '0-2'"),
        ("ttl", "1.5", "bad TTL '1.5'; expected a number 0-255 or a range like '0-2'"),
        ("length", "65536", "length 65536 is out of range 0-65535"),
        ("length", "1500-100", "length range '1500-100' is reversed (write 100-1500)"),
        ("length", "0x10", "bad length '0x10'; expected a number 0-65535 or a range like '1400-65535'"),
        ("vlan", "4096", "VLAN id 4096 is out of range 0-4095"),
        ("vlan", "1-5000", "VLAN id 5000 is out of range 0-4095"),
        ("vlan", "30-20", "VLAN id range '30-20' is reversed (write 20-30)"),
        ("vlan", "-1", "bad VLAN id '-1'; expected a number 0-4095 or a range like '100-199'"),
        ("vlan", "[]", "empty list would match nothing; remove the key to match anything"),
        ("vlan", "{a: 1}", "vlan must be a list or a single value, got a mapping"),
        ("ttl", "~", "ttl has no value; remove the key to match anything"),
    ],
)
def test_bad_range_fields(tmp_path: Path, key: str, value: str, message: str) -> None:
    col = 5 + len(key) + 2
    assert rule_problems(tmp_path, f"    {key}: {value}\n") == [f"rules.yaml:4:{col}: {message}"]


def test_every_problem_of_one_rule_is_listed(tmp_path: Path) -> None:
    assert rule_problems(tmp_path, "    ttl: [300, 2-1]\n    length: x\n    vlan: 4096\n    icmp_code: 1\n") == [
        "rules.yaml:4:11: TTL 300 is out of range 0-255",
        "rules.yaml:4:16: TTL range '2-1' is reversed (write 1-2)",
        "rules.yaml:5:13: bad length 'x'; expected a number 0-65535 or a range like '1400-65535'",
        "rules.yaml:6:11: VLAN id 4096 is out of range 0-4095",
        "rules.yaml:7:5: icmp_code needs icmp_type in the same rule",
    ]


def test_new_keys_are_known_to_the_typo_check(tmp_path: Path) -> None:
    assert rule_problems(tmp_path, "    tcpflags: syn\n    icmptype: 8\n    vlans: 1\n") == [
        "rules.yaml:4:5: unknown key 'tcpflags'; did you mean 'tcp_flags'?",
        "rules.yaml:5:5: unknown key 'icmptype'; did you mean 'icmp_type'?",
        "rules.yaml:6:5: unknown key 'vlans'; did you mean 'vlan'?",
    ]


# --------------------------------------------------------------------------
# observe (on an interface)


@pytest.mark.parametrize(("value", "expected"), [("true", True), ("false", False), ("True", True)])
def test_observe(tmp_path: Path, value: str, expected: bool) -> None:
    config = load(tmp_path, rules_yaml=f"interfaces:\n  eth0: {{mode: native, observe: {value}}}\n  eth1: {{}}\n")
    assert [(i.name, i.observe) for i in config.interfaces] == [("eth0", expected), ("eth1", False)]


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("1", "observe must be true or false, got an integer"),
        ("'true'", "observe must be true or false, got a string"),
        ("maybe", "observe must be true or false, got a string"),
        ("[true]", "observe must be true or false, got a list"),
        ("!!bool x", "bad YAML value 'x': 'x'"),
    ],
)
def test_bad_observe(tmp_path: Path, value: str, message: str) -> None:
    assert problems(tmp_path, rules_yaml=f"interfaces:\n  eth0:\n    mode: auto\n    observe: {value}\n") == [
        f"rules.yaml:4:14: {message}"]


def test_observe_without_value(tmp_path: Path) -> None:
    assert problems(tmp_path, rules_yaml="interfaces:\n  eth0:\n    observe:\n") == [
        "rules.yaml:3:13: observe must be true or false, got null"]


def test_observe_typo(tmp_path: Path) -> None:
    assert problems(tmp_path, rules_yaml="interfaces:\n  eth0: {obsrve: true}\n") == [
        "rules.yaml:2:10: unknown key 'obsrve'; did you mean 'observe'?"]


def test_rule_naming_an_invalid_interface_gets_no_second_problem(tmp_path: Path) -> None:
    assert problems(tmp_path, rules_yaml="""\
interfaces:
  eth0: {mode: fast}
rules:
  - {name: a, action: drop, interfaces: eth0}
""") == ["rules.yaml:2:16: unknown mode 'fast'; expected one of: auto, native, generic, offload"]
