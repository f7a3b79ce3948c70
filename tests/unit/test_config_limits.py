"""Issue 10's rate limits and bans as configured: ``action: limit`` with
``rate``, ``burst``, ``per`` and ``ban``; the settings ``max_limit_sources``
and ``max_bans``; and the units they are written in (:mod:`xdpd.units`).

Each accepted form with the value it gives, and each mistake with the exact
message (and, in the config, the ``file:line:col``) a user gets.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.unit.test_config import load, one_rule, problems
from xdpd.config import peek_settings
from xdpd.model import Action, Limit, LimitPer, LimitUnit, Settings
from xdpd.units import parse_duration, parse_rate

P, B = LimitUnit.PACKETS, LimitUnit.BYTES

# --------------------------------------------------------------------------
# units.parse_rate


@pytest.mark.parametrize(
    ("text", "rate", "unit"),
    [
        ("1000/s", 1000.0, P),
        ("1/s", 1.0, P),
        ("0.5/s", 0.5, P),
        ("60/m", 1.0, P),
        ("50/m", 50 / 60, P),
        ("1/h", 1 / 3600, P),
        ("7200/h", 2.0, P),
        (" 1000 / s ", 1000.0, P),
        ("1000000000000/s", 1e12, P),
        ("1B/s", 1.0, B),
        ("500kB/s", 500e3, B),
        ("2MB/s", 2e6, B),
        ("1.5GB/m", 1.5e9 / 60, B),
        ("8bit/s", 1.0, B),
        ("64kbit/s", 8e3, B),
        ("10mbit/s", 1.25e6, B),
        ("10Mbit/s", 1.25e6, B),
        ("1gbit/s", 125e6, B),
        ("1Gbit/h", 125e6 / 3600, B),
        ("2.5 kbit/s", 312.5, B),
        ("1B/h", 1 / 3600, B),
        ("8bit/h", 1 / 3600, B),
        ("1000GB/s", 1e12, B),
    ],
)
def test_rates(text: str, rate: float, unit: LimitUnit) -> None:
    got_rate, got_unit = parse_rate(text)
    assert got_rate == pytest.approx(rate, rel=1e-12)
    assert got_unit is unit


_FORMS = "like '1000/s', '50/m', '10mbit/s' or '500kB/s'"
_UNITS = "none (packets), B, kB, MB, GB (bytes) or bit, kbit, mbit, gbit (bits)"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", f"rate is empty; write a number per second, minute or hour, {_FORMS}"),
        ("fast", f"bad rate 'fast'; expected a number, an optional unit and /s, /m or /h, {_FORMS}"),
        ("1e3/s", f"bad rate '1e3/s'; expected a number, an optional unit and /s, /m or /h, {_FORMS}"),
        ("inf/s", f"bad rate 'inf/s'; expected a number, an optional unit and /s, /m or /h, {_FORMS}"),
        ("1/s/s", f"bad rate '1/s/s'; expected a number, an optional unit and /s, /m or /h, {_FORMS}"),
        ("0/s", "rate must be more than 0, got '0/s'"),
        ("0.0/m", "rate must be more than 0, got '0.0/m'"),
        ("-5/s", "rate must be more than 0, got '-5/s'"),
        ("1000", "rate '1000' has no period; write '1000/s' (per second), or /m or /h (per minute, per hour)"),
        ("10mbit", "rate '10mbit' has no period; write '10mbit/s' (per second), or /m or /h (per minute, per hour)"),
        ("1000/sec", "rate '1000/sec' must end in /s, /m or /h (per second, minute or hour)"),
        ("1000/d", "rate '1000/d' must end in /s, /m or /h (per second, minute or hour)"),
        ("1000/S", "rate '1000/S' must end in /s, /m or /h (per second, minute or hour)"),
        ("1000/", "rate '1000/' must end in /s, /m or /h (per second, minute or hour)"),
        ("10mb/s", "unit 'mb' in rate '10mb/s' is ambiguous: write 'mbit' for bits or 'MB' for bytes"),
        ("10Kb/s", "unit 'Kb' in rate '10Kb/s' is ambiguous: write 'kbit' for bits or 'kB' for bytes"),
        ("10b/s", "unit 'b' in rate '10b/s' is ambiguous: write 'bit' for bits or 'B' for bytes"),
        ("5KB/s", "unit 'KB' in rate '5KB/s': write 'kB' (1000 bytes; units are decimal)"),
        ("5mB/s", "unit 'mB' in rate '5mB/s': write 'MB' (1000000 bytes; units are decimal)"),
        ("5gB/s", "unit 'gB' in rate '5gB/s': write 'GB' (1000000000 bytes; units are decimal)"),
        ("5KiB/s", f"unknown unit 'KiB' in rate '5KiB/s'; expected {_UNITS}"),
        ("5TB/s", f"unknown unit 'TB' in rate '5TB/s'; expected {_UNITS}"),
        ("5MBIT/s", f"unknown unit 'MBIT' in rate '5MBIT/s'; expected {_UNITS}"),
        ("5pps/s", f"unknown unit 'pps' in rate '5pps/s'; expected {_UNITS}"),
        ("1000pps", "unknown unit 'pps' in rate '1000pps'; did you mean '1000/s'?"),
        ("10Mbps", "unknown unit 'Mbps' in rate '10Mbps'; did you mean '10mbit/s'?"),
        ("10 gbps", "unknown unit 'gbps' in rate '10 gbps'; did you mean '10gbit/s'?"),
        ("5KBps", "unknown unit 'KBps' in rate '5KBps'; did you mean '5kB/s'?"),
        ("5Bps", "unknown unit 'Bps' in rate '5Bps'; did you mean '5B/s'?"),
        ("0.5/h", "rate '0.5/h' is less than 1 packet per hour"),
        ("1bit/h", "rate '1bit/h' is less than 1 byte per hour"),
        ("1000000000001/s", "rate '1000000000001/s' is more than 10^12 packets per second"),
        ("1001GB/s", "rate '1001GB/s' is more than 10^12 bytes per second"),
        ("9" * 400 + "/s", "rate '" + "9" * 60 + "...' is more than 10^12 packets per second"),
    ],
)
def test_bad_rates(text: str, message: str) -> None:
    with pytest.raises(ValueError) as exc:
        parse_rate(text)
    assert str(exc.value) == message


def test_rate_message_names_what_the_caller_says() -> None:
    with pytest.raises(ValueError, match=r"^--rate must be more than 0, got '0/s'$"):
        parse_rate("0/s", what="--rate")


# --------------------------------------------------------------------------
# units.parse_duration


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("30s", 30.0), ("10m", 600.0), ("1h", 3600.0), ("2d", 172800.0), ("1.5h", 5400.0), ("0.5s", 0.5),
     (" 60 s ", 60.0), ("365d", 365 * 86400.0), ("8760h", 365 * 86400.0)],
)
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


_DURATIONS = "like '30s', '10m', '1h' or '2d'"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", f"duration is empty; write a number and s, m, h or d, {_DURATIONS}"),
        ("soon", f"bad duration 'soon'; expected a number and s, m, h or d, {_DURATIONS}"),
        ("1h30m", f"bad duration '1h30m'; expected a number and s, m, h or d, {_DURATIONS}"),
        ("60", "duration '60' has no unit; write '60s' (or m, h, d for minutes, hours, days)"),
        ("1.5", "duration '1.5' has no unit; write '1.5s' (or m, h, d for minutes, hours, days)"),
        ("0s", "duration must be more than 0, got '0s'"),
        ("-1m", "duration must be more than 0, got '-1m'"),
        ("1w", f"unknown unit 'w' in duration '1w'; expected s, m, h or d, {_DURATIONS}"),
        ("60sec", f"unknown unit 'sec' in duration '60sec'; expected s, m, h or d, {_DURATIONS}"),
        ("1H", f"unknown unit 'H' in duration '1H'; expected s, m, h or d, {_DURATIONS}"),
        ("366d", "duration '366d' is more than 365 days"),
        ("9" * 400 + "s", "duration '" + "9" * 60 + "...' is more than 365 days"),
    ],
)
def test_bad_durations(text: str, message: str) -> None:
    with pytest.raises(ValueError) as exc:
        parse_duration(text)
    assert str(exc.value) == message


# --------------------------------------------------------------------------
# A limit rule in the config


def limit_rule(tmp_path: Path, fields: str) -> Limit | None:
    """The Limit of the one rule ``{name: a, action: limit, <fields>}``."""
    rule = one_rule(tmp_path, f"rules:\n  - {{name: a, action: limit, {fields}}}\n")
    assert rule.action is Action.LIMIT
    return rule.limit


def limit_problems(tmp_path: Path, body: str, action: str = "limit") -> list[str]:
    """Problems of a block-style rule whose ``body`` starts on line 4 at column 5."""
    return problems(tmp_path, rules_yaml=f"rules:\n  - name: a\n    action: {action}\n" + body)


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ("rate: 1000/s", Limit(1000.0, P, burst=1000)),
        ("rate: 1000/s, burst: 2000", Limit(1000.0, P, burst=2000)),
        ("rate: 1000/s, burst: 1", Limit(1000.0, P, burst=1)),
        ("rate: 60/m", Limit(1.0, P, burst=1)),
        ("rate: 1/h", Limit(1 / 3600, P, burst=1)),  # at least one packet
        ("rate: 0.5/s, burst: 10", Limit(0.5, P, burst=10)),
        ("rate: 2.4/s", Limit(2.4, P, burst=2)),
        ("rate: 10mbit/s", Limit(1.25e6, B, burst=1_250_000)),
        ("rate: 500kB/s, burst: 1514", Limit(500e3, B, burst=1514)),
        ("rate: 1kB/s", Limit(1000.0, B, burst=1514)),  # at least one full-size frame
        ("rate: 8bit/h", Limit(1 / 3600, B, burst=1514)),
        ("rate: 1gbit/s, burst: 0x10000", Limit(125e6, B, burst=65536)),
        ("rate: 100/s, per: source", Limit(100.0, P, burst=100, per=LimitPer.SOURCE)),
        ("rate: 100/s, per: rule", Limit(100.0, P, burst=100, per=LimitPer.RULE)),
        ("rate: 100/s, per: Rule", Limit(100.0, P, burst=100, per=LimitPer.RULE)),
        ("rate: 100/s, ban: 60s", Limit(100.0, P, burst=100, ban=60.0)),
        ("rate: 100/s, per: source, ban: 1.5h", Limit(100.0, P, burst=100, ban=5400.0)),
        ("rate: 100/s, ban: 365d", Limit(100.0, P, burst=100, ban=365 * 86400.0)),
        ("rate: !!str 100/s", Limit(100.0, P, burst=100)),
    ],
)
def test_limit_rules(tmp_path: Path, fields: str, expected: Limit) -> None:
    got = limit_rule(tmp_path, fields)
    assert got is not None
    assert (got.rate, got.unit, got.burst, got.per, got.ban) == (
        pytest.approx(expected.rate, rel=1e-12), expected.unit, expected.burst, expected.per, expected.ban)
    assert isinstance(got.burst, int)


def test_the_issue_example(tmp_path: Path) -> None:
    rule = one_rule(tmp_path, """\
rules:
  - name: dns-flood
    action: limit
    proto: udp
    dst_port: 53
    rate: 1000/s
    burst: 2000
    per: source
    ban: 60s
""")
    assert rule.limit == Limit(rate=1000.0, unit=LimitUnit.PACKETS, burst=2000, per=LimitPer.SOURCE, ban=60.0)
    assert rule.protos == {17}


def test_other_actions_have_no_limit(tmp_path: Path) -> None:
    config = load(tmp_path, rules_yaml="""\
rules:
  - {name: a, action: drop}
  - {name: b, action: limit, rate: 5/s}
  - {name: c, action: count}
  - {name: d, action: pass}
""")
    assert [(r.action, r.limit is None) for r in config.rules] == [
        (Action.DROP, True), (Action.LIMIT, False), (Action.COUNT, True), (Action.PASS, True)]


_RATE_KIND = "rate must be a string like '1000/s' or '10mbit/s', got"
_BURST = "burst must be a positive integer (packets, or bytes for a byte rate)"
_BAN_KIND = "ban must be a duration like '60s', '10m' or '1h', got"


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("1000", "rate '1000' has no period; write '1000/s' (per second), or /m or /h (per minute, per hour)"),
        ("2.5", "rate '2.5' has no period; write '2.5/s' (per second), or /m or /h (per minute, per hour)"),
        ("0", "rate must be more than 0, got '0'"),
        ("-1/s", "rate must be more than 0, got '-1/s'"),
        ("0/s", "rate must be more than 0, got '0/s'"),
        ("10 pps", "unknown unit 'pps' in rate '10 pps'; did you mean '10/s'?"),
        ("5zB/s", f"unknown unit 'zB' in rate '5zB/s'; expected {_UNITS}"),
        ("10mb/s", "unit 'mb' in rate '10mb/s' is ambiguous: write 'mbit' for bits or 'MB' for bytes"),
        ("1000/min", "rate '1000/min' must end in /s, /m or /h (per second, minute or hour)"),
        ("0.1/h", "rate '0.1/h' is less than 1 packet per hour"),
        ("2000000000000/s", "rate '2000000000000/s' is more than 10^12 packets per second"),
        (".inf", f"bad rate '.inf'; expected a number, an optional unit and /s, /m or /h, {_FORMS}"),
        ("true", f"{_RATE_KIND} a boolean"),
        ("[1000/s]", f"{_RATE_KIND} a list"),
        ("{n: 1}", f"{_RATE_KIND} a mapping"),
        ("", f"{_RATE_KIND} null"),
        ("2024-01-01", f"{_RATE_KIND} a date"),
    ],
)
def test_bad_rate(tmp_path: Path, value: str, message: str) -> None:
    col = 11 if value else 10
    assert limit_problems(tmp_path, f"    rate: {value}\n") == [f"rules.yaml:4:{col}: {message}"]


@pytest.mark.parametrize(
    ("rate", "value", "message"),
    [
        ("100/s", "0", f"{_BURST}, got 0"),
        ("100/s", "-5", f"{_BURST}, got -5"),
        ("100/s", "1.5", f"{_BURST}, got a number"),
        ("100/s", "'2000'", f"{_BURST}, got a string"),
        ("100/s", "2kB", f"{_BURST}, got a string"),
        ("100/s", "true", f"{_BURST}, got a boolean"),
        ("100/s", "[1]", f"{_BURST}, got a list"),
        ("100/s", "!!int x", "bad YAML value 'x': invalid literal for int() with base 10: 'x'"),
        ("10mbit/s", "1000", "burst 1000 bytes is less than one full-size Ethernet frame (1514 bytes): "
                             "no such frame could ever pass; use at least 1514"),
        ("1B/s", "1513", "burst 1513 bytes is less than one full-size Ethernet frame (1514 bytes): "
                         "no such frame could ever pass; use at least 1514"),
        ("1/h", "8761", "burst takes more than 365 days to refill at this rate; use a smaller burst"),
        ("1000000000000/s", "1" + "0" * 40,
         "burst takes more than 365 days to refill at this rate; use a smaller burst"),
    ],
)
def test_bad_burst(tmp_path: Path, rate: str, value: str, message: str) -> None:
    assert limit_problems(tmp_path, f"    rate: {rate}\n    burst: {value}\n") == [f"rules.yaml:5:12: {message}"]


def test_burst_of_a_year_is_fine(tmp_path: Path) -> None:
    assert limit_rule(tmp_path, "rate: 1/h, burst: 8760") == Limit(1 / 3600, P, burst=8760)


def test_burst_problem_beside_a_bad_rate_checks_only_the_integer(tmp_path: Path) -> None:
    assert limit_problems(tmp_path, "    rate: 10mb/s\n    burst: 100\n") == [
        "rules.yaml:4:11: unit 'mb' in rate '10mb/s' is ambiguous: write 'mbit' for bits or 'MB' for bytes"]
    assert limit_problems(tmp_path, "    rate: fast\n    burst: 0\n") == [
        f"rules.yaml:4:11: bad rate 'fast'; expected a number, an optional unit and /s, /m or /h, {_FORMS}",
        f"rules.yaml:5:12: {_BURST}, got 0"]


@pytest.mark.parametrize(
    ("value", "col", "message"),
    [
        ("all", 10, "unknown per 'all'; expected one of: source, rule"),
        ("sources", 10, "unknown per 'sources'; did you mean 'source'?"),
        ("1", 10, "per must be a string, got an integer"),
        ("[source]", 10, "per must be a string, got a list"),
        ("", 9, "per must be a string, got null"),
    ],
)
def test_bad_per(tmp_path: Path, value: str, col: int, message: str) -> None:
    assert limit_problems(tmp_path, f"    rate: 1/s\n    per: {value}\n") == [f"rules.yaml:5:{col}: {message}"]


@pytest.mark.parametrize(
    ("value", "col", "message"),
    [
        ("60", 10, "ban '60' has no unit; write '60s' (or m, h, d for minutes, hours, days)"),
        ("1.5", 10, "ban '1.5' has no unit; write '1.5s' (or m, h, d for minutes, hours, days)"),
        ("'60'", 10, "ban '60' has no unit; write '60s' (or m, h, d for minutes, hours, days)"),
        ("0s", 10, "ban must be more than 0, got '0s'"),
        ("-10m", 10, "ban must be more than 0, got '-10m'"),
        ("1w", 10, f"unknown unit 'w' in ban '1w'; expected s, m, h or d, {_DURATIONS}"),
        ("forever", 10, f"bad ban 'forever'; expected a number and s, m, h or d, {_DURATIONS}"),
        ("400d", 10, "ban '400d' is more than 365 days"),
        ("''", 10, f"ban is empty; write a number and s, m, h or d, {_DURATIONS}"),
        ("true", 10, f"{_BAN_KIND} a boolean"),
        ("[60s]", 10, f"{_BAN_KIND} a list"),
        ("", 9, f"{_BAN_KIND} null"),
    ],
)
def test_bad_ban(tmp_path: Path, value: str, col: int, message: str) -> None:
    assert limit_problems(tmp_path, f"    rate: 1/s\n    ban: {value}\n") == [f"rules.yaml:5:{col}: {message}"]


_BAN_PER_RULE = ("ban needs per: source (with per: rule everything the rule matches shares one bucket, "
                 "and banning whichever source tipped it over would ban innocents)")


def test_ban_needs_per_source(tmp_path: Path) -> None:
    assert limit_problems(tmp_path, "    rate: 1/s\n    per: rule\n    ban: 60s\n") == [
        f"rules.yaml:6:5: {_BAN_PER_RULE}"]
    assert limit_problems(tmp_path, "    rate: 1/s\n    ban: 60\n    per: RULE\n") == [
        f"rules.yaml:5:5: {_BAN_PER_RULE}",
        "rules.yaml:5:10: ban '60' has no unit; write '60s' (or m, h, d for minutes, hours, days)"]


def test_limit_needs_a_rate(tmp_path: Path) -> None:
    assert limit_problems(tmp_path, "    burst: 10\n    ban: 1m\n") == [
        "rules.yaml:2:5: action limit needs a rate, like 'rate: 1000/s'"]
    assert problems(tmp_path, rules_yaml="rules:\n  - {name: a, action: LIMIT}\n") == [
        "rules.yaml:2:5: action limit needs a rate, like 'rate: 1000/s'"]


def test_misspelt_rate_is_reported_once(tmp_path: Path) -> None:
    assert limit_problems(tmp_path, "    rat: 1000/s\n    brust: 5\n") == [
        "rules.yaml:4:5: unknown key 'rat'; did you mean 'rate'?",
        "rules.yaml:5:5: unknown key 'brust'; did you mean 'burst'?"]


@pytest.mark.parametrize("action", ["drop", "pass", "count"])
def test_limit_keys_need_action_limit(tmp_path: Path, action: str) -> None:
    assert limit_problems(tmp_path, "    rate: 1000/s\n    burst: 10\n    per: rule\n    ban: 60s\n", action) == [
        "rules.yaml:4:5: rate needs action: limit",
        "rules.yaml:5:5: burst needs action: limit",
        "rules.yaml:6:5: per needs action: limit",
        "rules.yaml:7:5: ban needs action: limit",
        f"rules.yaml:7:5: {_BAN_PER_RULE}",
    ]


def test_limit_key_on_another_action_still_gets_its_value_checked(tmp_path: Path) -> None:
    assert limit_problems(tmp_path, "    rate: 1000\n", "drop") == [
        "rules.yaml:4:5: rate needs action: limit",
        "rules.yaml:4:11: rate '1000' has no period; write '1000/s' (per second), or /m or /h (per minute, per hour)"]


def test_wrong_or_missing_action_says_nothing_of_the_limit_keys(tmp_path: Path) -> None:
    assert limit_problems(tmp_path, "    rate: 1000/s\n", "limt") == [
        "rules.yaml:3:13: unknown action 'limt'; did you mean 'limit'?"]
    assert problems(tmp_path, rules_yaml="rules:\n  - {name: a, rate: 5/s}\n") == [
        "rules.yaml:2:5: rule has no 'action'"]


def test_limit_rule_problems_with_others_in_line_order(tmp_path: Path) -> None:
    assert problems(tmp_path, rules_yaml="""\
rules:
  - {name: a, action: limit, rate: 5/s, per: each}
  - {name: b, action: drop, ban: 5m}
  - {name: c, action: limit, rate: 5/s, ttl: 300}
""") == [
        "rules.yaml:2:46: unknown per 'each'; expected one of: source, rule",
        "rules.yaml:3:29: ban needs action: limit",
        "rules.yaml:4:46: TTL 300 is out of range 0-255",
    ]


# --------------------------------------------------------------------------
# settings: max_limit_sources and max_bans


def test_limit_settings_defaults_and_values(tmp_path: Path) -> None:
    assert Settings().max_limit_sources == 1_000_000 and Settings().max_bans == 1_000_000
    config = load(tmp_path, a_yaml="settings: {max_limit_sources: 16777216}\n", b_yaml="settings:\n  max_bans: 1\n")
    assert (config.settings.max_limit_sources, config.settings.max_bans) == (16_777_216, 1)
    assert config.settings.max_addresses == 2_000_000


@pytest.mark.parametrize("key", ["max_limit_sources", "max_bans"])
@pytest.mark.parametrize(
    ("value", "got"),
    [("0", "0"), ("-1", "-1"), ("16777217", "16777217"), ("1.5", "a number"), ("'1000'", "a string"),
     ("yes", "a boolean"), ("~", "null"), ("[1]", "a list")],
)
def test_bad_limit_settings(tmp_path: Path, key: str, value: str, got: str) -> None:
    assert problems(tmp_path, rules_yaml=f"settings:\n  {key}: {value}\n") == [
        f"rules.yaml:2:{len(key) + 5}: {key} must be an integer 1-16777216, got {got}"]


def test_limit_setting_in_two_files(tmp_path: Path) -> None:
    assert problems(tmp_path, a_yaml="settings: {max_bans: 10}\n", b_yaml="settings:\n  max_bans: 10\n") == [
        "b.yaml:2:3: setting 'max_bans' is also set at a.yaml:1:12"]


def test_limit_setting_typo(tmp_path: Path) -> None:
    assert problems(tmp_path, rules_yaml="settings: {max_ban: 10}\n") == [
        "rules.yaml:1:12: unknown key 'max_ban'; did you mean 'max_bans'?"]


def test_peek_settings_reads_the_capacities(tmp_path: Path) -> None:
    """The program is built with them before the config is fully read."""
    (tmp_path / "a.yaml").write_text("settings: {max_limit_sources: 5000, max_addresses: 7}\n")
    (tmp_path / "b.yaml").write_text("settings: {max_bans: 300}\n")
    got = peek_settings(str(tmp_path))
    assert (got.max_limit_sources, got.max_bans, got.max_addresses) == (5000, 300, 7)
    (tmp_path / "b.yaml").write_text("settings: {max_bans: 16777217, max_limit_sources: true}\n")
    got = peek_settings(str(tmp_path))
    assert (got.max_limit_sources, got.max_bans) == (5000, 1_000_000)  # nonsense is ignored
