"""Robustness: whatever the text, the result is a Config or a located ConfigError.

A valid config is mutated the ways editors, scripts and half-finished writes
mutate files: lines deleted, duplicated, swapped; characters changed;
unknown keys inserted; values replaced by other types and out-of-range
values; the text cut short.  Every outcome must be a :class:`Config` that
keeps the model's promises, or a :class:`ConfigError` whose every problem
says where (``path:line:col``, or ``path:line`` in a list file).  Anything
else (a traceback) is a bug.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from xdpd.config import MAX_RULES, ConfigError, ListCache, parse_config_text
from xdpd.model import ICMP_PROTOS, Action, Config, Limit, LimitPer, LimitUnit
from xdpd.rulelimit import MIN_BYTE_BURST
from xdpd.units import MAX_DURATION, MAX_RATE

VALID = """\
settings: {log_interval: 60, check_interval: 30, detach_on_stop: true, max_addresses: 2000000,
           max_limit_sources: 1000000, max_bans: 1000000}
interfaces:
  eth0: {mode: auto, default: pass, observe: false}
  eth1: {}
rules:
  - name: drop-bad-net
    action: drop
    src: &nets [192.0.2.0/24, "2001:db8:bad::/48", 198.51.100.7]
    src_file: list.txt
    proto: [udp, tcp]
    src_port: 53
    dst_port: [22, "8000-8080"]
  - {name: count-all, action: count, dst_file: [list.txt], interfaces: [eth1]}
  - {name: b, action: pass, dst: *nets}
  - {name: syn, action: drop, proto: tcp, tcp_flags: "syn,!ack", ttl: "0-2", length: [60, "1400-65535"]}
  - {name: ping, action: drop, proto: [icmp, icmpv6], icmp_type: [echo-request, 3], icmp_code: "0-3", vlan: 20}
  - {name: dns, action: limit, proto: udp, dst_port: 53, rate: 1000/s, burst: 2000, per: source, ban: 60s}
  - {name: bulk, action: limit, rate: 10mbit/s, per: rule}
"""

_TOKENS = list(" \t\n-:#{}[],&*!|>'\"%@`?~.0123456789/abcxyz\\") + ["\x00", "é", "\r", "<<", "!!int ", "- "]
_INSERTION = st.lists(st.sampled_from(_TOKENS), min_size=1, max_size=8).map("".join)

_KEYS = [
    "settings", "interfaces", "rules", "log_interval", "check_interval", "detach_on_stop", "max_addresses",
    "mode", "default", "name", "action", "src", "dst", "src_file", "dst_file", "proto", "src_port",
    "dst_port", "interfaces", "tcp_flags", "icmp_type", "icmp_code", "ttl", "length", "vlan", "observe",
    "rate", "burst", "per", "ban", "max_limit_sources", "max_bans",
    "eth0", "actoin", "comment", "<<", "~", "1", "'quoted key'", "[a, b]", "{x: 1}", "? complex",
]  # fmt: skip
_VALUES = [
    "0", "-1", "1", "30", "65535", "65536", "0x16", "022", "1e3", ".inf", "-.nan", "1.5", "99999999999999999999",
    "true", "no", "~", "null", "''", '""', "x", "drop", "pass", "count", "DROP", "dorp", "native", "generic",
    "offload", "auto", "tcp", "icmpv6", "256", "[]", "{}", "[1, 2]", "{a: b}", "[tcp, sctp]", "1000-2000",
    "2000-1000", "'1-2-3'", "192.0.2.1", "192.0.2.1/24", "192.0.2.0/24", "'2001:db8::1'", "2001:db8::/129",
    "1:2:3:4:5:6:7:8", "fe80::1%eth0", "2024-01-01", "!!binary aGk=", "!!int x", "!!float y", "!!str 5",
    "!!python/object:os.system x", "!unknown z", "&a 5", "*nets", "*undefined", "|\n  block", ">-\n  folded",
    "list.txt", "bad.txt", "binary.txt", "missing.txt", ".", "/dev/null", "'a\\x00b'", '"\\0"', "a" * 70,
    "4095", "4096", "'syn,!ack'", "'!syn'", "!ack", "'syn,,ack'", "'syn,!syn'", "sny", "echo-request",
    "packet-too-big", "neighbor-solicitation", "eth1", "[eth0, eth9]", "'0-2'", "255-0",
    "limit", "source", "rule", "1000/s", "0/s", "-1/s", "50/m", "1/h", "0.5/h", "10mbit/s", "10mb/s", "500kB/s",
    "1KB/s", "1gbit/s", "1e3/s", "1000/sec", "1000pps", "1B/s", "1000GB/s", "2000GB/s", "60s", "10m", "1h",
    "2d", "366d", "0s", "1w", "1514", "1513", "16777216", "16777217",
    "[" * 5, "}", "- x", "'unterminated", '"also', "@reserved", "`tick", "%directive",
]  # fmt: skip
_SCALAR = re.compile(r"(?<=[:\[,] )[^\s,\[\]{}]+|(?<=- )[^\s:,\[\]{}]+")

_MUTATION = st.one_of(
    st.tuples(st.just("delete"), st.integers(0, len(VALID)), st.integers(1, 20)),
    st.tuples(st.just("insert"), st.integers(0, len(VALID)), _INSERTION),
    st.tuples(st.just("swap-lines"), st.integers(0, 20), st.integers(0, 20)),
    st.tuples(st.just("dup-line"), st.integers(0, 20), st.integers(0, 20)),
    st.tuples(st.just("del-lines"), st.integers(0, 20), st.integers(1, 3)),
    st.tuples(st.just("char"), st.integers(0, len(VALID)), st.sampled_from(_TOKENS)),
    st.tuples(
        st.just("key"),
        st.integers(0, 20),
        st.tuples(st.sampled_from(["", "  ", "    ", "  - ", "\t"]), st.sampled_from(_KEYS), st.sampled_from(_VALUES)),
    ),
    st.tuples(st.just("value"), st.integers(0, 200), st.sampled_from(_VALUES)),
    st.tuples(st.just("truncate"), st.integers(0, len(VALID)), st.just(None)),
)


def mutate(text: str, mutation: tuple[str, int, object]) -> str:
    kind, pos, arg = mutation
    if kind == "delete":
        return text[:pos] + text[pos + int(str(arg)) :]
    if kind == "insert":
        return text[:pos] + str(arg) + text[pos:]
    if kind == "char":
        return text[:pos] + str(arg) + text[pos + 1 :]
    if kind == "truncate":
        return text[:pos]
    if kind == "value":
        scalars = list(_SCALAR.finditer(text))
        if not scalars:
            return text
        match = scalars[pos % len(scalars)]
        return text[: match.start()] + str(arg) + text[match.end() :]
    lines = text.split("\n")
    i = pos % len(lines)
    if kind == "key":
        indent, key, value = arg  # type: ignore[misc]
        lines.insert(i, f"{indent}{key}: {value}")
    elif kind == "del-lines":
        del lines[i : i + int(str(arg))]
    else:
        j = int(str(arg)) % len(lines)
        if kind == "swap-lines":
            lines[i], lines[j] = lines[j], lines[i]
        else:
            lines.insert(j, lines[i])
    return "\n".join(lines)


@pytest.fixture(scope="module")
def fuzz_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("fuzz")
    (directory / "list.txt").write_text("192.0.2.1\n2001:db8::/32\n192.0.2.1/32\n")
    (directory / "bad.txt").write_text("192.0.2.1\n" + "junk\n" * 25)
    (directory / "binary.txt").write_bytes(b"\x7fELF\x02\x01\x01\x00\x00\n")
    return directory


def test_valid_seed_loads(fuzz_dir: Path) -> None:
    config = parse_config_text(VALID, str(fuzz_dir / "rules.yaml"))
    assert len(config.rules) == 7
    assert config.rules[5].limit == Limit(rate=1000.0, unit=LimitUnit.PACKETS, burst=2000, ban=60.0)
    assert config.rules[6].limit == Limit(rate=1.25e6, unit=LimitUnit.BYTES, burst=1_250_000, per=LimitPer.RULE)
    assert config.interface("eth0") is not None and config.interface("eth0").observe is False
    assert config.settings.check_interval == 30.0


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_MUTATION, min_size=1, max_size=4))
def test_mutations_load_or_raise_located_config_error(fuzz_dir: Path, mutations: list[tuple[str, int, object]]) -> None:
    text = VALID
    for mutation in mutations:
        text = mutate(text, mutation)
    path = str(fuzz_dir / "rules.yaml")
    try:
        config = parse_config_text(text, path)
    except ConfigError as exc:
        event("rejected")
        check_located(exc, path)
    else:
        event("accepted")
        check_promises(config)
    # A cache never changes the outcome.
    assert outcome(text, path, ListCache()) == outcome(text, path, None)


def test_truncated_at_every_offset_is_never_a_traceback(fuzz_dir: Path) -> None:
    """A half-written file (an editor or script caught mid-write)."""
    path = str(fuzz_dir / "rules.yaml")
    syntax_errors = 0
    for end in range(len(VALID) + 1):
        try:
            parse_config_text(VALID[:end], path)
        except ConfigError as exc:
            check_located(exc, path)
            syntax_errors += any("YAML syntax error" in p.message for p in exc.problems)
    assert syntax_errors > 50


def check_located(exc: ConfigError, yaml_path: str) -> None:
    """Every problem says where: path:line:col in YAML, path:line in a list file."""
    assert exc.problems
    for problem in exc.problems:
        origin = problem.origin
        assert origin.line >= 1, problem
        if origin.path == yaml_path:
            assert origin.col >= 1, problem
            assert str(problem).startswith(f"{yaml_path}:{origin.line}:{origin.col}: ")
        else:
            assert origin.col == 0, problem
            assert str(problem).startswith(f"{origin.path}:{origin.line}: ")
        assert "\n" not in str(problem)


def check_promises(config: Config) -> None:
    """What the rest of the daemon relies on in a Config that loaded."""
    assert isinstance(config, Config)
    assert len(config.rules) <= MAX_RULES
    assert len({r.name for r in config.rules}) == len(config.rules)
    assert len({i.name for i in config.interfaces}) == len(config.interfaces)
    for rule in config.rules:
        for ports in (rule.src_ports, rule.dst_ports):
            assert ports is None or all(0 <= p.lo <= p.hi <= 65535 for p in ports)
        assert rule.protos is None or (rule.protos and all(0 <= p <= 255 for p in rule.protos))
        for ranges, bound in ((rule.icmp_codes, 255), (rule.ttl, 255), (rule.length, 65535), (rule.vlans, 4095)):
            assert ranges is None or (ranges and all(0 <= r.lo <= r.hi <= bound for r in ranges))
        assert rule.interfaces is None or set(rule.interfaces) <= {i.name for i in config.interfaces}
        assert rule.tcp_flags is None or (rule.protos == {6} and rule.tcp_flags.value & ~rule.tcp_flags.mask == 0)
        assert rule.icmp_types is None or (rule.protos and rule.protos <= ICMP_PROTOS)
        assert rule.icmp_codes is None or rule.icmp_types is not None
        check_limit(rule.action, rule.limit)
    assert all(isinstance(i.observe, bool) for i in config.interfaces)
    settings = config.settings
    assert settings.log_interval > 0 and settings.check_interval > 0
    assert isinstance(settings.detach_on_stop, bool)
    assert 1 <= settings.max_addresses <= 1 << 24
    assert 1 <= settings.max_limit_sources <= 1 << 24 and 1 <= settings.max_bans <= 1 << 24


def check_limit(action: Action, limit: Limit | None) -> None:
    """A Limit exactly on limit rules, with a rate and burst the XDP program's arithmetic can take."""
    assert (limit is not None) == (action is Action.LIMIT)
    if limit is None:
        return
    assert 1 / 3600 <= limit.rate * (1 + 1e-9) and limit.rate <= MAX_RATE
    assert isinstance(limit.burst, int) and limit.burst >= 1
    assert limit.burst <= limit.rate * MAX_DURATION
    assert limit.unit is LimitUnit.PACKETS or limit.burst >= MIN_BYTE_BURST
    assert limit.ban is None or (limit.per is LimitPer.SOURCE and 0 < limit.ban <= MAX_DURATION)


def outcome(text: str, path: str, cache: ListCache | None) -> object:
    try:
        return parse_config_text(text, path, cache)
    except ConfigError as exc:
        return exc.problems
