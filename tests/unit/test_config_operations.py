"""Settings for operating xdpd (issue 11): metrics_listen, metrics_textfile, strict_permissions."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.unit.test_config import load, problems
from xdpd.settingsparse import parse_listen


def test_defaults_serve_nothing_and_check_permissions(tmp_path: Path) -> None:
    s = load(tmp_path, rules_yaml="rules: []").settings
    assert (s.metrics_listen, s.metrics_textfile, s.strict_permissions) == (None, None, True)


def test_valid_values(tmp_path: Path) -> None:
    s = load(tmp_path, rules_yaml="""
settings:
  metrics_listen: "[::1]:9436"
  metrics_textfile: /var/lib/prometheus/node-exporter/xdpd.prom
  strict_permissions: false
""").settings
    assert s.metrics_listen == ("::1", 9436)
    assert s.metrics_textfile == "/var/lib/prometheus/node-exporter/xdpd.prom"
    assert s.strict_permissions is False
    assert parse_listen("127.0.0.1:9436") == ("127.0.0.1", 9436)


@pytest.mark.parametrize("value, message", [
    ("localhost:9436", "the host must be an IP address"),
    ("127.0.0.1", "is not HOST:PORT"),
    ("127.0.0.1:0", "port must be 1-65535"),
    ("127.0.0.1:99999", "port must be 1-65535"),
    ("::1:9436", "write an IPv6 address in brackets"),
    ("[127.0.0.1]:9436", "brackets are for IPv6 addresses"),
    ("127.0.0.1:http", "is not HOST:PORT"),
])
def test_bad_listen_addresses(tmp_path: Path, value: str, message: str) -> None:
    [line] = problems(tmp_path, rules_yaml=f'settings: {{metrics_listen: "{value}"}}\n')
    assert line.startswith("rules.yaml:1:28: metrics_listen: ") and message in line, line


@pytest.mark.parametrize("value, where", [("xdpd.prom", 30), ("/tmp/xdpd.txt", 30), ("9436", 30)])
def test_bad_textfiles(tmp_path: Path, value: str, where: int) -> None:
    [line] = problems(tmp_path, rules_yaml=f'settings: {{metrics_textfile: "{value}"}}\n')
    assert line == (f"rules.yaml:1:{where}: metrics_textfile must be an absolute path ending in .prom "
                    f"(node_exporter reads only those), got {value!r}")


def test_strict_permissions_is_a_boolean(tmp_path: Path) -> None:
    [line] = problems(tmp_path, rules_yaml="settings: {strict_permissions: 0}\n")
    assert line == "rules.yaml:1:32: strict_permissions must be true or false, got an integer"
