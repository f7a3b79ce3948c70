"""Loading and validating the YAML config dir, as a user sees it.

Most tests assert the exact ``file:line:col: message`` lines a user gets;
paths are shown relative to the config dir to keep them readable.
"""

from __future__ import annotations

import os
import re
import socket
import tempfile
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from xdpd.config import MAX_RULES, ConfigError, ListCache, Problem, load_config, parse_config_text
from xdpd.model import (
    Action,
    AddrSet,
    Config,
    Default,
    Interface,
    Limit,
    LimitPer,
    LimitUnit,
    Mode,
    Origin,
    PortRange,
    Rule,
    Settings,
)

SHIPPED = Path(__file__).resolve().parents[2] / "etc" / "xdpd" / "rules.yaml"


def write(directory: Path, name: str, text: str) -> Path:
    path = directory / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def load(directory: Path, **files: str) -> Config:
    """Write ``files`` (name with '_' for '.', e.g. ``rules_yaml``) and load."""
    for name, text in files.items():
        write(directory, name.replace("_yaml", ".yaml"), text)
    return load_config(directory)


def problems(directory: Path, **files: str) -> list[str]:
    """What the user sees for an invalid config, with the dir prefix removed."""
    with pytest.raises(ConfigError) as exc:
        load(directory, **files)
    assert str(exc.value) == "\n".join(str(p) for p in exc.value.problems)
    return [line.replace(f"{directory}/", "") for line in str(exc.value).splitlines()]


def one_rule(directory: Path, text: str) -> Rule:
    config = load(directory, rules_yaml=text)
    assert len(config.rules) == 1
    return config.rules[0]


def v4(*addrs: str) -> bytes:
    return b"".join(socket.inet_pton(socket.AF_INET, a) for a in addrs)


def v6(*addrs: str) -> bytes:
    return b"".join(socket.inet_pton(socket.AF_INET6, a) for a in addrs)


# --------------------------------------------------------------------------
# The config dir


def test_full_example_loads(tmp_path: Path) -> None:
    write(tmp_path, "blocklist.txt", "203.0.113.5\n203.0.113.0/28 # net\n")
    config = load(
        tmp_path,
        rules_yaml="""\
        settings: {log_interval: 60, detach_on_stop: true, max_addresses: 2000000}
        interfaces:
          eth0: {mode: auto, default: pass}
          eth1: {}
          eth2:
          eth3: {mode: native, default: drop}
        rules:
          - name: drop-bad-net
            action: drop
            src: [192.0.2.0/24, "2001:db8:bad::/48", 198.51.100.7]
            src_file: blocklist.txt
            dst: 192.0.2.1
            proto: udp
            src_port: 53
            dst_port: [22, "8000-8080"]
        """,
    )
    assert config.settings == Settings(log_interval=60.0, detach_on_stop=True, max_addresses=2_000_000)
    assert config.interfaces == (
        Interface("eth0"),
        Interface("eth1"),
        Interface("eth2"),
        Interface("eth3", Mode.NATIVE, Default.DROP),
    )
    assert config.interfaces[3].origin == Origin(str(tmp_path / "rules.yaml"), 6, 3)
    blocklist = str(tmp_path / "blocklist.txt")
    assert config.rules == (
        Rule(
            name="drop-bad-net",
            action=Action.DROP,
            src=AddrSet(
                v4_exact=v4("198.51.100.7", "203.0.113.5"),
                v4_prefixes=((v4("192.0.2.0"), 24), (v4("203.0.113.0"), 28)),
                v6_prefixes=((v6("2001:db8:bad::"), 48),),
            ),
            dst=AddrSet(v4_exact=v4("192.0.2.1")),
            protos=frozenset({17}),
            src_ports=(PortRange(53, 53),),
            dst_ports=(PortRange(22, 22), PortRange(8000, 8080)),
            src_files=(blocklist,),
        ),
    )
    assert config.rules[0].origin == Origin(str(tmp_path / "rules.yaml"), 8, 5)
    assert config.files == (str(tmp_path / "rules.yaml"), blocklist)


def test_no_files_is_an_empty_config(tmp_path: Path) -> None:
    assert load_config(tmp_path) == Config()


def test_missing_dir_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as exc:
        load_config(tmp_path / "nope")
    assert str(exc.value) == f"{tmp_path}/nope: cannot read config directory: No such file or directory"


def test_empty_and_comment_only_files_are_valid(tmp_path: Path) -> None:
    config = load(tmp_path, a_yaml="", b_yaml="# nothing here\n\n# yet\n", c_yaml="---\n", d_yaml="rules:\n")
    assert config == Config(files=tuple(str(tmp_path / f"{n}.yaml") for n in "abcd"))


def test_only_yaml_files_are_read(tmp_path: Path) -> None:
    broken = "rules: [oops\n"
    for name in (".hidden.yaml", ".rules.yaml.swp", "rules.yaml~", "#rules.yaml#", "notes.txt", "x.yml", "a.yaml.bak"):
        write(tmp_path, name, broken)
    (tmp_path / "dir.yaml").mkdir()
    write(tmp_path / "dir.yaml", "rules.yaml", broken)
    config = load(tmp_path, rules_yaml="rules: [{name: r, action: pass}]\n")
    assert [r.name for r in config.rules] == ["r"]
    assert config.files == (str(tmp_path / "rules.yaml"),)


def test_relative_dir_gives_absolute_paths(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write(tmp_path, "rules.yaml", "rules: [{name: r, action: pass, src_file: l.txt}]\n")
    write(tmp_path, "l.txt", "192.0.2.1\n")
    monkeypatch.chdir(tmp_path.parent)
    config = load_config(tmp_path.name)
    assert config.files == (str(tmp_path / "rules.yaml"), str(tmp_path / "l.txt"))
    assert config.rules[0].src_files == (str(tmp_path / "l.txt"),)


def test_files_are_read_in_lexical_order(tmp_path: Path) -> None:
    config = load(
        tmp_path,
        b_yaml="rules: [{name: b1, action: pass}, {name: b2, action: pass}]\n",
        **{"10-x_yaml": "rules: [{name: ten, action: count}]\n"},
        a_yaml="rules: [{name: a1, action: drop}]\n",
        **{"02-y_yaml": "rules: [{name: two, action: count}]\n"},
    )
    assert [r.name for r in config.rules] == ["two", "ten", "a1", "b1", "b2"]
    assert [Path(f).name for f in config.files] == ["02-y.yaml", "10-x.yaml", "a.yaml", "b.yaml"]


def test_sections_merge_across_files(tmp_path: Path) -> None:
    config = load(
        tmp_path,
        a_yaml="""\
        settings: {log_interval: 2.5}
        interfaces: {eth0: {default: drop}}
        """,
        b_yaml="""\
        settings:
          detach_on_stop: false
        interfaces:
          eth1: {mode: generic}
        rules:
          - {name: r, action: pass}
        """,
    )
    assert config.settings == Settings(log_interval=2.5, detach_on_stop=False)
    assert config.interfaces == (Interface("eth0", default=Default.DROP), Interface("eth1", Mode.GENERIC))
    assert config.interface("eth1") == Interface("eth1", Mode.GENERIC)
    assert config.interface("eth9") is None


def test_same_setting_in_two_files(tmp_path: Path) -> None:
    assert problems(
        tmp_path,
        a_yaml="settings: {log_interval: 5}\n",
        b_yaml="settings:\n  max_addresses: 10\n  log_interval: 5\n",
    ) == ["b.yaml:3:3: setting 'log_interval' is also set at a.yaml:1:12"]


def test_same_interface_in_two_files(tmp_path: Path) -> None:
    assert problems(
        tmp_path,
        a_yaml="interfaces:\n  eth0: {}\n",
        b_yaml="interfaces:\n  eth1:\n  eth0: {default: drop}\n",
    ) == ["b.yaml:3:3: interface 'eth0' is also configured at a.yaml:2:3"]


def test_duplicate_rule_name_across_files(tmp_path: Path) -> None:
    assert problems(
        tmp_path,
        a_yaml="rules:\n  - name: web\n    action: pass\n",
        b_yaml="rules:\n  - {name: other, action: pass}\n  - {name: web, action: drop}\n",
    ) == ["b.yaml:3:12: duplicate rule name 'web' (first used at a.yaml:2:11)"]


def test_duplicate_rule_name_in_one_file(tmp_path: Path) -> None:
    assert problems(
        tmp_path,
        rules_yaml="""\
        rules:
          - name: web
            action: pass
          - name: web
            action: drop
        """,
    ) == ["rules.yaml:4:11: duplicate rule name 'web' (first used at rules.yaml:2:11)"]


def test_problems_from_all_files_are_collected(tmp_path: Path) -> None:
    assert problems(
        tmp_path,
        a_yaml="rulez: []\n",
        b_yaml="rules: [{name: x, action: dorp}]\n",
        c_yaml="rules: [oops\n",
        d_yaml="settings: {log_interval: 0}\n",
    ) == [
        "a.yaml:1:1: unknown key 'rulez'; did you mean 'rules'?",
        "b.yaml:1:27: unknown action 'dorp'; did you mean 'drop'?",
        "c.yaml:2:1: YAML syntax error: expected ',' or ']', but got '<stream end>' "
        "(while parsing a flow sequence at 1:8)",
        "d.yaml:1:26: log_interval must be a number of seconds > 0, got 0",
    ]


# --------------------------------------------------------------------------
# YAML-level problems


def test_yaml_syntax_error_position(tmp_path: Path) -> None:
    assert problems(
        tmp_path,
        rules_yaml="""\
        rules:
          - name: a
            action: pass
           bad: indent
        """,
    ) == [
        "rules.yaml:4:4: YAML syntax error: expected <block end>, but found '<block mapping start>' "
        "(while parsing a block collection at 2:3)"
    ]


def test_tab_indentation(tmp_path: Path) -> None:
    assert problems(tmp_path, rules_yaml="rules:\n\t- {name: a, action: pass}\n") == [
        "rules.yaml:2:1: YAML syntax error: found character '\\t' that cannot start any token "
        "(while scanning for the next token)"
    ]


def test_two_documents_in_one_file(tmp_path: Path) -> None:
    assert problems(tmp_path, rules_yaml="rules: []\n---\nrules: []\n") == [
        "rules.yaml:2:1: YAML syntax error: but found another document "
        "(expected a single document in the stream at 1:1)"
    ]


def test_control_character(tmp_path: Path) -> None:
    assert problems(tmp_path, rules_yaml="rules: []\n# bell \x07\n") == [
        "rules.yaml:2:8: YAML syntax error: character #x0007 is not allowed (special characters are not allowed)"
    ]


def test_yaml_not_utf8(tmp_path: Path) -> None:
    (tmp_path / "rules.yaml").write_bytes(b"rules: []\n# caf\xe9\n")
    assert problems(tmp_path) == ["rules.yaml:2:6: not valid UTF-8"]


def test_crlf_line_endings_keep_positions(tmp_path: Path) -> None:
    (tmp_path / "rules.yaml").write_bytes(b"rules:\r\n  - name: a\r\n    action: dorp\r\n")
    assert problems(tmp_path) == ["rules.yaml:3:13: unknown action 'dorp'; did you mean 'drop'?"]


def test_yaml_utf8_bom_is_fine(tmp_path: Path) -> None:
    (tmp_path / "rules.yaml").write_bytes(b"\xef\xbb\xbfrules: [{name: r, action: pass}]\n")
    assert [r.name for r in load_config(tmp_path).rules] == ["r"]


def test_unreadable_yaml_file(tmp_path: Path) -> None:
    (tmp_path / "rules.yaml").symlink_to(tmp_path / "gone.yaml")
    assert problems(tmp_path) == ["rules.yaml: cannot read file: No such file or directory"]


def test_duplicate_keys_name_both_places(tmp_path: Path) -> None:
    assert problems(
        tmp_path,
        rules_yaml="""\
        rules:
          - name: a
            action: pass
            src: 192.0.2.1
            action: drop
        rules: []
        """,
    ) == [
        "rules.yaml:5:5: duplicate key 'action' (first at rules.yaml:3:5)",
        "rules.yaml:6:1: duplicate key 'rules' (first at rules.yaml:1:1)",
    ]


def test_merge_keys_are_refused(tmp_path: Path) -> None:
    assert problems(
        tmp_path,
        rules_yaml="""\
        rules:
          - &base {name: a, action: drop}
          - <<: *base
            name: b
        """,
    ) == ["rules.yaml:3:5: YAML merge keys ('<<') are not supported", "rules.yaml:3:5: rule has no 'action'"]


def test_aliases_work(tmp_path: Path) -> None:
    config = load(
        tmp_path,
        rules_yaml="""\
        rules:
          - {name: a, action: count, src: &nets [192.0.2.0/24, 198.51.100.1]}
          - {name: b, action: drop, dst: *nets}
        """,
    )
    assert config.rules[0].src == config.rules[1].dst == AddrSet(
        v4_exact=v4("198.51.100.1"), v4_prefixes=((v4("192.0.2.0"), 24),)
    )


def test_bad_tagged_value_is_a_problem(tmp_path: Path) -> None:
    assert problems(tmp_path, rules_yaml="settings: {log_interval: !!int abc}\n") == [
        "rules.yaml:1:26: bad YAML value 'abc': invalid literal for int() with base 10: 'abc'"
    ]


# --------------------------------------------------------------------------
# Top level and settings


def test_unknown_top_level_key(tmp_path: Path) -> None:
    assert problems(tmp_path, rules_yaml="rulez: []\nfoo: 1\n") == [
        "rules.yaml:1:1: unknown key 'rulez'; did you mean 'rules'?",
        "rules.yaml:2:1: unknown key 'foo'; expected one of: settings, interfaces, rules",
    ]


def test_top_level_must_be_a_mapping(tmp_path: Path) -> None:
    assert problems(tmp_path, rules_yaml="- name: a\n  action: drop\n") == [
        "rules.yaml:1:1: top level must be a mapping, got a list"
    ]


def test_settings_defaults_and_null(tmp_path: Path) -> None:
    assert load(tmp_path, rules_yaml="settings:\ninterfaces:\nrules:\n").settings == Settings()
    assert Settings() == Settings(log_interval=60.0, check_interval=30.0, detach_on_stop=True, max_addresses=2_000_000)


def test_settings_values(tmp_path: Path) -> None:
    config = load(
        tmp_path,
        rules_yaml="settings: {log_interval: 0.5, check_interval: 5, detach_on_stop: no, max_addresses: 16777216}\n",
    )
    assert config.settings == Settings(
        log_interval=0.5, check_interval=5.0, detach_on_stop=False, max_addresses=16777216
    )
    assert isinstance(config.settings.log_interval, float)
    assert isinstance(config.settings.check_interval, float)


def test_bad_settings(tmp_path: Path) -> None:
    assert problems(
        tmp_path,
        rules_yaml="""\
        settings:
          log_interval: true
          detach_on_stop: "true"
          max_addresses: 16777217
          log_intervall: 5
          check_intervall: 5
          period: 5
        """,
    ) == [
        "rules.yaml:2:17: log_interval must be a number of seconds > 0, got a boolean",
        "rules.yaml:3:19: detach_on_stop must be true or false, got a string",
        "rules.yaml:4:18: max_addresses must be an integer 1-16777216, got 16777217",
        "rules.yaml:5:3: unknown key 'log_intervall'; did you mean 'log_interval'?",
        "rules.yaml:6:3: unknown key 'check_intervall'; did you mean 'check_interval'?",
        "rules.yaml:7:3: unknown key 'period'; expected one of: log_interval, check_interval, detach_on_stop, "
        "max_addresses, max_limit_sources, max_bans, metrics_listen, metrics_textfile, strict_permissions",
    ]


@pytest.mark.parametrize("key", ["log_interval", "check_interval"])
@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("0", "must be a number of seconds > 0, got 0"),
        ("-1.5", "must be a number of seconds > 0, got -1.5"),
        (".inf", "must be a number of seconds > 0, got .inf"),
        (".nan", "must be a number of seconds > 0, got .nan"),
        ("'60'", "must be a number of seconds > 0, got a string"),
        ("[60]", "must be a number of seconds > 0, got a list"),
        ("~", "must be a number of seconds > 0, got null"),
        ("true", "must be a number of seconds > 0, got a boolean"),
    ],
)
def test_bad_intervals(tmp_path: Path, key: str, value: str, message: str) -> None:
    col = len(f"  {key}: ") + 1
    assert problems(tmp_path, rules_yaml=f"settings:\n  {key}: {value}\n") == [f"rules.yaml:2:{col}: {key} {message}"]


def test_check_interval_set_in_two_files(tmp_path: Path) -> None:
    assert problems(
        tmp_path,
        a_yaml="settings: {check_interval: 10}\n",
        b_yaml="settings:\n  check_interval: 5\n",
    ) == ["b.yaml:2:3: setting 'check_interval' is also set at a.yaml:1:12"]


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("0", "max_addresses must be an integer 1-16777216, got 0"),
        ("1.5", "max_addresses must be an integer 1-16777216, got a number"),
        ("yes", "max_addresses must be an integer 1-16777216, got a boolean"),
    ],
)
def test_bad_max_addresses(tmp_path: Path, value: str, message: str) -> None:
    assert problems(tmp_path, rules_yaml=f"settings: {{max_addresses: {value}}}\n") == [f"rules.yaml:1:27: {message}"]


def test_settings_must_be_a_mapping(tmp_path: Path) -> None:
    assert problems(tmp_path, rules_yaml="settings: [log_interval]\n") == [
        "rules.yaml:1:11: 'settings' must be a mapping, got a list"
    ]


# --------------------------------------------------------------------------
# Interfaces


def test_bad_interface_options(tmp_path: Path) -> None:
    assert problems(
        tmp_path,
        rules_yaml="""\
        interfaces:
          eth0: {mode: nativ, default: reject}
          eth1: {mode: 1}
          eth2: {defualt: drop}
          eth3: [native]
        """,
    ) == [
        "rules.yaml:2:16: unknown mode 'nativ'; did you mean 'native'?",
        "rules.yaml:2:32: unknown default 'reject'; expected one of: pass, drop",
        "rules.yaml:3:16: mode must be a string, got an integer",
        "rules.yaml:4:10: unknown key 'defualt'; did you mean 'default'?",
        "rules.yaml:5:9: interface 'eth3' must be a mapping, got a list",
    ]


def test_enum_values_are_case_insensitive(tmp_path: Path) -> None:
    config = load(tmp_path, rules_yaml="interfaces: {eth0: {mode: Native, default: DROP}}\n")
    assert config.interfaces == (Interface("eth0", Mode.NATIVE, Default.DROP),)


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("a23456789012345x", "interface name 'a23456789012345x' is too long (at most 15 bytes)"),
        ("'.'", "'.' is not a valid interface name"),
        ("'..'", "'..' is not a valid interface name"),
        ("eth/0", "interface name 'eth/0' must not contain '/', ':' or whitespace"),
        ("'eth 0'", "interface name 'eth 0' must not contain '/', ':' or whitespace"),
        ("'eth0:1'", "interface name 'eth0:1' must not contain '/', ':' or whitespace"),
        ("''", "interface name is empty"),
        ("1", "interface name must be a string, got an integer (quote it: '1')"),
        ("[eth0]", "interface name must be a string, got a list"),
    ],
)
def test_bad_interface_names(tmp_path: Path, name: str, message: str) -> None:
    assert problems(tmp_path, rules_yaml=f"interfaces:\n  {name}: {{}}\n") == [f"rules.yaml:2:3: {message}"]


def test_good_interface_names(tmp_path: Path) -> None:
    config = load(tmp_path, rules_yaml="interfaces: {a23456789012345: , eth0.100: , 'veth-x_y': , '1': }\n")
    assert [i.name for i in config.interfaces] == ["a23456789012345", "eth0.100", "veth-x_y", "1"]


def test_interfaces_must_be_a_mapping(tmp_path: Path) -> None:
    assert problems(tmp_path, rules_yaml="interfaces: [eth0]\n") == [
        "rules.yaml:1:13: 'interfaces' must be a mapping, got a list"
    ]


# --------------------------------------------------------------------------
# Rules: structure, name, action


def test_rules_must_be_a_list(tmp_path: Path) -> None:
    assert problems(tmp_path, rules_yaml="rules:\n  web: {action: pass}\n") == [
        "rules.yaml:2:3: 'rules' must be a list, got a mapping (start each rule with '- ')"
    ]


def test_rule_must_be_a_mapping(tmp_path: Path) -> None:
    assert problems(tmp_path, rules_yaml="rules:\n  - drop-all\n  -\n  - {name: ok, action: pass}\n") == [
        "rules.yaml:2:5: rule must be a mapping, got a string",
        "rules.yaml:3:4: rule must be a mapping, got null",
    ]


def test_rule_missing_required_keys(tmp_path: Path) -> None:
    assert problems(tmp_path, rules_yaml="rules:\n  - src: 192.0.2.1\n  - {}\n") == [
        "rules.yaml:2:5: rule has no 'name'",
        "rules.yaml:2:5: rule has no 'action'",
        "rules.yaml:3:5: rule has no 'name'",
        "rules.yaml:3:5: rule has no 'action'",
    ]


def test_unknown_rule_key(tmp_path: Path) -> None:
    assert problems(
        tmp_path,
        rules_yaml="""\
        rules:
          - name: a
            action: drop
            srcport: 53
            comment: hi
        """,
    ) == [
        "rules.yaml:4:5: unknown key 'srcport'; did you mean 'src_port'?",
        "rules.yaml:5:5: unknown key 'comment'; expected one of: name, action, src, src_file, dst, dst_file, "
        "proto, src_port, dst_port, interfaces, tcp_flags, icmp_type, icmp_code, ttl, length, vlan, rate, burst, "
        "per, ban, sample",
    ]


def test_misspelt_required_key_is_reported_once(tmp_path: Path) -> None:
    assert problems(tmp_path, rules_yaml="rules:\n  - name: a\n    actoin: drop\n") == [
        "rules.yaml:3:5: unknown key 'actoin'; did you mean 'action'?"
    ]


def test_problem_reached_through_two_aliases_is_listed_once(tmp_path: Path) -> None:
    assert problems(
        tmp_path,
        rules_yaml="""\
        rules:
          - {name: a, action: drop, src: &nets [192.0.2.0/33]}
          - {name: b, action: drop, dst: *nets}
        """,
    ) == ["rules.yaml:2:41: bad address '192.0.2.0/33'"]


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("5", "action must be a string, got an integer"),
        ("dorp", "unknown action 'dorp'; did you mean 'drop'?"),
        ("reject", "unknown action 'reject'; expected one of: drop, pass, count, limit"),
        ("[drop]", "action must be a string, got a list"),
        ("", "action must be a string, got null"),
    ],
)
def test_bad_action(tmp_path: Path, value: str, message: str) -> None:
    assert problems(tmp_path, rules_yaml=f"rules:\n  - name: a\n    action: {value}\n") == [
        f"rules.yaml:3:{13 if value else 12}: {message}"
    ]


def test_actions(tmp_path: Path) -> None:
    config = load(
        tmp_path, rules_yaml="rules: [{name: a, action: drop}, {name: b, action: PASS}, {name: c, action: count}]\n"
    )
    assert [r.action for r in config.rules] == [Action.DROP, Action.PASS, Action.COUNT]
    assert all(r.src is r.dst is r.protos is r.src_ports is r.dst_ports is None for r in config.rules)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("'has space'", "bad rule name 'has space': use 1-63 characters A-Z a-z 0-9 _ . : -"),
        ("a" * 64, f"bad rule name '{'a' * 60}...': use 1-63 characters A-Z a-z 0-9 _ . : -"),
        ("''", "bad rule name '': use 1-63 characters A-Z a-z 0-9 _ . : -"),
        ("über", "bad rule name 'über': use 1-63 characters A-Z a-z 0-9 _ . : -"),
        ("42", "rule name must be a string, got an integer"),
    ],
)
def test_bad_rule_name(tmp_path: Path, value: str, message: str) -> None:
    assert problems(tmp_path, rules_yaml=f"rules:\n  - action: pass\n    name: {value}\n") == [
        f"rules.yaml:3:11: {message}"
    ]


def test_good_rule_names(tmp_path: Path) -> None:
    names = ["a" * 63, "A.b_c-d:e", "'42'"]
    text = "rules:\n" + "".join(f"  - {{name: {n}, action: count}}\n" for n in names)
    assert [r.name for r in load(tmp_path, rules_yaml=text).rules] == ["a" * 63, "A.b_c-d:e", "42"]


def test_128_rules_fit(tmp_path: Path) -> None:
    text = "rules:\n" + "".join(f"  - {{name: r{i}, action: count}}\n" for i in range(MAX_RULES))
    assert len(load(tmp_path, rules_yaml=text).rules) == 128


def test_rule_129_is_one_too_many(tmp_path: Path) -> None:
    write(tmp_path, "a.yaml", "rules:\n" + "".join(f"  - {{name: a{i}, action: count}}\n" for i in range(100)))
    write(tmp_path, "b.yaml", "rules:\n" + "".join(f"  - {{name: b{i}, action: count}}\n" for i in range(40)))
    assert problems(tmp_path) == [
        "b.yaml:30:5: too many rules: this is rule 129, at most 128 are supported "
        "(the XDP program uses a 128-bit rule mask)"
    ]


# --------------------------------------------------------------------------
# Rules: addresses


def test_single_address_string(tmp_path: Path) -> None:
    rule = one_rule(tmp_path, "rules: [{name: a, action: drop, src: '2001:db8::1', dst: 10.0.0.0/8}]\n")
    assert rule.src == AddrSet(v6_exact=v6("2001:db8::1"))
    assert rule.dst == AddrSet(v4_prefixes=((v4("10.0.0.0"), 8),))


def test_unquoted_ipv6_that_yaml_thinks_is_a_number(tmp_path: Path) -> None:
    # YAML 1.1 reads 1:2:3:4:5:6:7:8 as a base-60 integer.
    rule = one_rule(tmp_path, "rules:\n  - name: a\n    action: drop\n    src:\n      - 1:2:3:4:5:6:7:8\n")
    assert rule.src == AddrSet(v6_exact=v6("1:2:3:4:5:6:7:8"))


def test_bad_addresses_point_at_the_item(tmp_path: Path) -> None:
    assert problems(
        tmp_path,
        rules_yaml="""\
        rules:
          - name: a
            action: drop
            src: [192.0.2.0/24, 192.0.2.1/24, nonsense]
            dst:
              - 2001:db8::/32
              - 2001:db8::1/32
        """,
    ) == [
        "rules.yaml:4:25: bad address '192.0.2.1/24': host bits set; did you mean 192.0.2.0/24?",
        "rules.yaml:4:39: bad address 'nonsense'",
        "rules.yaml:7:9: bad address '2001:db8::1/32': host bits set; did you mean 2001:db8::/32?",
    ]


@pytest.mark.parametrize(
    ("value", "col", "message"),
    [
        ("[]", 10, "empty list would match nothing; remove the key to match anything"),
        ("", 9, "src has no value; remove the key to match anything"),
        ("{a: b}", 10, "src must be a list or a single value, got a mapping"),
        ("[[192.0.2.1]]", 11, "address must be a single value, got a list"),
        ("[~]", 11, "empty address"),
        ("true", 10, "bad address 'true'"),
    ],
)
def test_bad_src_shapes(tmp_path: Path, value: str, col: int, message: str) -> None:
    text = f"rules:\n  - name: a\n    action: drop\n    src: {value}\n"
    assert problems(tmp_path, rules_yaml=text) == [f"rules.yaml:4:{col}: {message}"]


def test_list_files_relative_absolute_and_union(tmp_path: Path) -> None:
    (tmp_path / "lists").mkdir()
    write(tmp_path, "lists/v4.txt", "# v4\n192.0.2.9\n192.0.2.1\n")
    absolute = write(tmp_path, "v6.txt", "2001:db8::1\r\n2001:db8:1::/48\r\n")
    config = load(
        tmp_path,
        rules_yaml=f"""\
        rules:
          - name: a
            action: drop
            src: 192.0.2.1
            src_file: [lists/v4.txt, {absolute}, ./lists/../lists/v4.txt]
          - name: b
            action: count
            dst_file: lists/v4.txt
        """,
    )
    a, b = config.rules
    assert a.src == AddrSet(
        v4_exact=v4("192.0.2.1", "192.0.2.9"),
        v6_exact=v6("2001:db8::1"),
        v6_prefixes=((v6("2001:db8:1::"), 48),),
    )
    assert a.src_files == (str(tmp_path / "lists/v4.txt"), str(absolute))
    assert b.dst == AddrSet(v4_exact=v4("192.0.2.1", "192.0.2.9"))
    assert b.dst_files == (str(tmp_path / "lists/v4.txt"),)
    assert b.src is None and b.src_files == ()
    assert config.files == (str(tmp_path / "rules.yaml"), str(tmp_path / "lists/v4.txt"), str(absolute))


def test_empty_list_file_matches_nothing_not_anything(tmp_path: Path) -> None:
    write(tmp_path, "empty.txt", "# filled in by cron\n")
    rule = one_rule(tmp_path, "rules: [{name: a, action: drop, src_file: empty.txt}]\n")
    assert rule.src == AddrSet()
    assert rule.src is not None


def test_missing_list_file(tmp_path: Path) -> None:
    assert problems(
        tmp_path,
        rules_yaml="""\
        rules:
          - {name: a, action: drop, src_file: nope.txt}
          - {name: b, action: drop, dst_file: [nope.txt]}
        """,
    ) == ["rules.yaml:2:39: cannot read list file nope.txt: No such file or directory"]


class _Unprivileged:
    """Drop the effective uid while root (the tests may run as root), so that
    file permissions apply; a no-op otherwise."""

    def __enter__(self) -> None:
        self.was_root = os.geteuid() == 0
        if self.was_root:
            os.seteuid(65534)

    def __exit__(self, *exc: object) -> None:
        if self.was_root:
            os.seteuid(0)


@pytest.fixture
def open_dir() -> Iterator[Path]:
    """A temporary directory others may enter (pytest's are private to root)."""
    with tempfile.TemporaryDirectory() as name:
        os.chmod(name, 0o755)
        yield Path(name)


def test_unreadable_list_files_name_the_src_file_key(open_dir: Path) -> None:
    """Whatever makes a list file unusable, the problem points at the YAML key naming it."""
    tmp_path = open_dir
    write(tmp_path, "secret.txt", "192.0.2.1\n").chmod(0)
    (tmp_path / "dir.txt").mkdir()
    (tmp_path / "bin.txt").write_bytes(b"\x7fELF\x02\x01\x01\x00" + bytes(range(256)))
    (tmp_path / "latin1.txt").write_bytes(b"192.0.2.1\n# caf\xe9\n")
    os.mkfifo(tmp_path / "fifo.txt")
    write(
        tmp_path,
        "rules.yaml",
        """\
        rules:
          - {name: a, action: drop, src_file: secret.txt}
          - {name: b, action: drop, src_file: [dir.txt]}
          - {name: c, action: drop, dst_file: bin.txt}
          - {name: d, action: drop, dst_file: latin1.txt}
          - {name: e, action: drop, src_file: fifo.txt}
          - {name: f, action: drop, src_file: /dev/null}
          - {name: g, action: drop, src_file: nope/nope.txt}
        """,
    )
    with _Unprivileged():
        got = problems(tmp_path)
    # The YAML file's problems in line order, then those inside list files.
    assert got == [
        "rules.yaml:2:39: cannot read list file secret.txt: Permission denied",
        "rules.yaml:3:40: list file dir.txt is not a regular file",
        "rules.yaml:6:39: list file fifo.txt is not a regular file",
        "rules.yaml:7:39: list file /dev/null is not a regular file",
        "rules.yaml:8:39: cannot read list file nope/nope.txt: No such file or directory",
        "bin.txt:1: NUL byte; a list file is UTF-8 text, not binary or UTF-16 "
        "(list file referenced at rules.yaml:4:39)",
        "latin1.txt:2: not valid UTF-8 (list file referenced at rules.yaml:5:39)",
    ]


def test_list_file_many_bad_lines_all_located(tmp_path: Path) -> None:
    write(tmp_path, "bad.txt", "192.0.2.1\n" + "junk\n" * 25)
    got = problems(tmp_path, rules_yaml="rules: [{name: a, action: drop, src_file: bad.txt}]\n")
    assert got[0] == "bad.txt:2: bad address 'junk'"
    assert got[-1] == "bad.txt:22: ... and 5 more bad lines from here on"


def test_load_through_a_cache_is_the_same(tmp_path: Path) -> None:
    write(tmp_path, "l.txt", "192.0.2.1\n2001:db8::/32\n")
    write(
        tmp_path,
        "rules.yaml",
        """\
        rules:
          - {name: a, action: drop, src: [198.51.100.1, 192.0.2.1], src_file: l.txt}
          - {name: b, action: drop, dst_file: [l.txt]}
        """,
    )
    cache = ListCache()
    assert load_config(tmp_path, cache=cache) == load_config(tmp_path)
    write(tmp_path, "l.txt", "192.0.2.1\n2001:db8::/32\n192.0.2.2\n")
    assert load_config(tmp_path, cache=cache) == load_config(tmp_path)
    write(tmp_path, "l.txt", "192.0.2.1\nbad\n")
    with pytest.raises(ConfigError) as cached_exc:
        load_config(tmp_path, cache=cache)
    with pytest.raises(ConfigError) as fresh_exc:
        load_config(tmp_path)
    assert cached_exc.value.problems == fresh_exc.value.problems


def test_bad_list_file_is_reported_once_at_file_line(tmp_path: Path) -> None:
    write(tmp_path, "bad.txt", "192.0.2.1\nnot-an-address\n")
    assert problems(
        tmp_path,
        rules_yaml="""\
        rules:
          - {name: a, action: drop, src_file: bad.txt}
          - {name: b, action: drop, dst_file: bad.txt}
        """,
    ) == ["bad.txt:2: bad address 'not-an-address'"]


def test_bad_src_file_values(tmp_path: Path) -> None:
    assert problems(
        tmp_path,
        rules_yaml="""\
        rules:
          - {name: a, action: drop, src_file: []}
          - {name: b, action: drop, src_file: [5]}
          - {name: c, action: drop, src_file: ''}
          - {name: d, action: drop, dst_file: }
        """,
    ) == [
        "rules.yaml:2:39: empty list would match nothing; remove the key to match anything",
        "rules.yaml:3:40: src_file entry must be a string, got an integer",
        "rules.yaml:4:39: src_file entry is an empty file name",
        "rules.yaml:5:38: dst_file has no value; remove the key to match anything",
    ]


# --------------------------------------------------------------------------
# Rules: proto and ports


def test_protocols(tmp_path: Path) -> None:
    config = load(
        tmp_path,
        rules_yaml="""\
        rules:
          - {name: a, action: drop, proto: UDP}
          - {name: b, action: drop, proto: [tcp, Icmp, icmpv6, 132, "47", 0, 255, tcp]}
        """,
    )
    assert [r.protos for r in config.rules] == [frozenset({17}), frozenset({6, 1, 58, 132, 47, 0, 255})]


@pytest.mark.parametrize(
    ("value", "col", "message"),
    [
        ("tpc", 12, "unknown protocol 'tpc'; did you mean 'tcp'? (or a number 0-255)"),
        ("sctp", 12, "unknown protocol 'sctp'; expected one of: icmp, tcp, udp, icmpv6 (or a number 0-255)"),
        ("256", 12, "protocol number 256 is out of range 0-255"),
        ("-1", 12, "unknown protocol '-1'; expected one of: icmp, tcp, udp, icmpv6 (or a number 0-255)"),
        ("[]", 12, "empty list would match nothing; remove the key to match anything"),
        ("[tcp, {x: 1}]", 18, "protocol must be a single value, got a mapping"),
    ],
)
def test_bad_proto(tmp_path: Path, value: str, col: int, message: str) -> None:
    text = f"rules:\n  - name: a\n    action: drop\n    proto: {value}\n"
    assert problems(tmp_path, rules_yaml=text) == [f"rules.yaml:4:{col}: {message}"]


def test_ports(tmp_path: Path) -> None:
    rule = one_rule(
        tmp_path,
        """\
        rules:
          - name: a
            action: pass
            src_port: "53"
            dst_port: [8081, 22, "8000-8080", 7000 - 7999, "0 -1", 65535, 23, 0-0, 100-200, 150-160]
        """,
    )
    assert rule.src_ports == (PortRange(53, 53),)
    assert rule.dst_ports == (
        PortRange(0, 1),
        PortRange(22, 23),
        PortRange(100, 200),
        PortRange(7000, 8081),
        PortRange(65535, 65535),
    )
    assert rule.protos is None


@pytest.mark.parametrize(
    ("value", "col", "message"),
    [
        ("65536", 15, "port 65536 is out of range 0-65535"),
        ("1-70000", 15, "port 70000 is out of range 0-65535"),
        ("2000-1000", 15, "port range '2000-1000' is reversed (write 1000-2000)"),
        ("ssh", 15, "bad port 'ssh'; expected a number 0-65535 or a range like '1000-2000'"),
        ("0x16", 15, "bad port '0x16'; expected a number 0-65535 or a range like '1000-2000'"),
        ("22.5", 15, "bad port '22.5'; expected a number 0-65535 or a range like '1000-2000'"),
        ("[22, -5]", 20, "bad port '-5'; expected a number 0-65535 or a range like '1000-2000'"),
        ("[]", 15, "empty list would match nothing; remove the key to match anything"),
        ("{22: 23}", 15, "dst_port must be a list or a single value, got a mapping"),
    ],
)
def test_bad_port(tmp_path: Path, value: str, col: int, message: str) -> None:
    text = f"rules:\n  - name: a\n    action: drop\n    dst_port: {value}\n"
    assert problems(tmp_path, rules_yaml=text) == [f"rules.yaml:4:{col}: {message}"]


def test_ports_need_tcp_or_udp(tmp_path: Path) -> None:
    assert problems(
        tmp_path,
        rules_yaml="""\
        rules:
          - name: a
            action: drop
            proto: [icmp, 47]
            src_port: 53
            dst_port: 53
          - {name: b, action: drop, proto: [icmp, tcp], dst_port: 53}
          - {name: c, action: drop, proto: tpc, dst_port: 53}
        """,
    ) == [
        "rules.yaml:5:5: src_port needs proto tcp or udp",
        "rules.yaml:6:5: dst_port needs proto tcp or udp",
        # A misspelt proto is reported once, without a follow-on port complaint.
        "rules.yaml:8:36: unknown protocol 'tpc'; did you mean 'tcp'? (or a number 0-255)",
    ]


# --------------------------------------------------------------------------
# parse_config_text and the Problem type


def test_parse_config_text(tmp_path: Path) -> None:
    path = str(tmp_path / "x.yaml")
    write(tmp_path, "l.txt", "192.0.2.1\n")
    config = parse_config_text("rules: [{name: a, action: drop, src_file: l.txt}]\n", path)
    assert config.files == (path, str(tmp_path / "l.txt"))
    with pytest.raises(ConfigError) as exc:
        parse_config_text("rules: 5\n", "some.yaml")
    assert exc.value.problems == [Problem(Origin("some.yaml", 1, 8), "'rules' must be a list, got an integer")]
    assert str(exc.value) == "some.yaml:1:8: 'rules' must be a list, got an integer"


# --------------------------------------------------------------------------
# The shipped default


def test_shipped_default_attaches_to_nothing(tmp_path: Path) -> None:
    # A copy: a checkout made with umask 002 (or by git archive) has a
    # group-writable etc/, which strict_permissions rightly refuses.
    (tmp_path / SHIPPED.name).write_bytes(SHIPPED.read_bytes())
    config = load_config(tmp_path)
    assert config.interfaces == ()
    assert config.rules == ()
    assert config.settings == Settings()


def test_shipped_examples_are_valid(tmp_path: Path) -> None:
    """Uncommenting the documented settings and examples must give a valid config."""
    text = SHIPPED.read_text(encoding="utf-8")
    text = re.sub(r"(?m)^  # (\w+: )", r"  \1", text)  # settings
    text = text.replace("interfaces: {}\n", "interfaces:\n").replace("rules: []\n", "rules:\n")
    text = re.sub(r"(?m)^#(  \S.*| {4}\S.*)$", r"\1", text)  # interface and rule examples
    (tmp_path / "rules.yaml").write_text(text, encoding="utf-8")
    for name in ("blocklist.txt", "lab-v4.txt"):
        write(tmp_path, name, "192.0.2.1\n")
    text = text.replace("/var/lib/xdpd/lab-v6.txt", str(write(tmp_path, "lab-v6.txt", "2001:db8::1\n")))
    (tmp_path / "rules.yaml").write_text(text, encoding="utf-8")
    config = load_config(tmp_path)
    assert [(i.name, i.observe) for i in config.interfaces] == [("eth0", False), ("eth1", True)]
    assert len(config.rules) == 11
    by_name = {r.name: r for r in config.rules}
    assert by_name["admin-ssh"].interfaces == ("eth1",)
    assert by_name["syn-flood-web"].tcp_flags is not None
    assert by_name["no-ping"].icmp_types == frozenset({(4, 8), (6, 128)})
    assert by_name["odd-frames"].vlans == (PortRange(20, 20), PortRange(100, 199))
    assert by_name["dns-flood"].limit == Limit(rate=1000.0, unit=LimitUnit.PACKETS, burst=2000, ban=60.0)
    assert by_name["backup-traffic"].limit == Limit(rate=25e6, unit=LimitUnit.BYTES, burst=25_000_000,
                                                    per=LimitPer.RULE)
    assert {r.action for r in config.rules} == set(Action)


def test_more_host_addresses_than_max_addresses_is_an_error(tmp_path):
    hosts = ", ".join(f"192.0.2.{i}" for i in range(1, 12))
    (tmp_path / "rules.yaml").write_text(
        "settings: {max_addresses: 10}\n"
        f"rules:\n  - {{name: many, action: drop, src: [{hosts}]}}\n"
        "  - {name: same, action: drop, src: [192.0.2.1]}\n")
    with pytest.raises(ConfigError) as e:
        load_config(str(tmp_path))
    assert [str(p) for p in e.value.problems] == [
        f"{tmp_path}/rules.yaml:3:5: 11 IPv4 src host addresses in all rules exceed settings.max_addresses (10)"]
    (tmp_path / "rules.yaml").write_text(
        "settings: {max_addresses: 11}\n"
        f"rules:\n  - {{name: many, action: drop, src: [{hosts}]}}\n"
        "  - {name: same, action: drop, src: [192.0.2.1]}\n")
    assert len(load_config(str(tmp_path)).rules) == 2     # duplicates across rules count once


def test_peek_settings_reads_max_addresses_leniently(tmp_path):
    from xdpd.config import peek_settings
    assert peek_settings(str(tmp_path)).max_addresses == 2_000_000
    (tmp_path / "a.yaml").write_text("settings: {max_addresses: 5000}\n")
    assert peek_settings(str(tmp_path)).max_addresses == 5000
    (tmp_path / "b.yaml").write_text("settings: {max_addresses: lots}\n")
    assert peek_settings(str(tmp_path)).max_addresses == 5000        # nonsense is ignored
    (tmp_path / "a.yaml").write_text("settings: [unclosed\n")
    assert peek_settings(str(tmp_path)).max_addresses == 2_000_000   # unreadable: defaults
