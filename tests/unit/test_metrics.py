"""Metrics without a kernel: the families from a status dict, the text format,
the HTTP listener following the settings, and the textfile written atomically.

The collector is fed a ``read_status`` stand-in (the shape of
``xdpd status --json``) and fixed reload counts; the kernel test
(tests/kernel/test_metrics.py) scrapes a real daemon.  The listener binds
only on 127.0.0.1 (and, without sending anything, on a documentation
address that is on no interface).
"""

from __future__ import annotations

import dataclasses
import http.client
import os
import shutil
import socket
import subprocess
import threading
import time

import pytest
from prometheus_client.parser import text_string_to_metric_families

from xdpd import layout
from xdpd.metrics import MetricsCollector, families, registry, render
from xdpd.metricsexport import MetricsExport, write_atomically
from xdpd.model import Settings
from xdpd.reloadstats import ReloadCounts

PROMTOOL = "/var/cache/xdpd-test/promtool"
"""Where ``make setup`` puts promtool (see the Makefile)."""

FAMILIES = {
    "xdpd_rule_packets": ("counter", {"rule", "action"}),
    "xdpd_rule_bytes": ("counter", {"rule", "action"}),
    "xdpd_rule_limited_packets": ("counter", {"rule"}),
    "xdpd_rule_limited_bytes": ("counter", {"rule"}),
    "xdpd_interface_packets": ("counter", {"interface", "verdict"}),
    "xdpd_interface_bytes": ("counter", {"interface", "verdict"}),
    "xdpd_interface_attached": ("gauge", {"interface", "mode"}),
    "xdpd_bans": ("gauge", set()),
    "xdpd_ban_capacity": ("gauge", set()),
    "xdpd_bans_by_rules": ("counter", set()),
    "xdpd_ban_table_full": ("counter", set()),
    "xdpd_reloads": ("counter", {"result"}),
    "xdpd_last_reload_success_timestamp_seconds": ("gauge", set()),
    "xdpd_config_addresses": ("gauge", set()),
}
"""The contract: family name (as the parser names counters: without _total), type, labels."""


def counters(base: int) -> dict:
    return {v.label: {"packets": base + v, "bytes": 100 * (base + v)} for v in layout.Verdict}


STATUS = {
    "pin_dir": "/sys/fs/bpf/xdpd",
    "interfaces": {
        "eth0": {"attached": True, "mode": "native", "counters": counters(10)},
        "eth1": {"attached": False, "mode": "none", "counters": counters(1000)},
    },
    "rules": {
        "drop-bad-net": {"action": "drop", "position": 1, "packets": 7, "bytes": 700},
        "dns-flood": {"action": "limit", "position": 2, "packets": 50, "bytes": 5000,
                      "limited": {"packets": 30, "bytes": 3000}},
        'odd "name"\\x': {"action": "count", "position": 3, "packets": 2 ** 62, "bytes": 0},
    },
    "bans": {"active": 3, "capacity": 100, "banned_by_rules": 5, "table_full": 2},
}
RELOADS = ReloadCounts(applied=4, rejected=2, last_success=1_700_000_000.25, addresses=1234)


def scrape_text(status=STATUS, reloads=RELOADS) -> str:
    return render(registry(MetricsCollector("/pins", _Reloads(reloads), lambda _pin: status))).decode()


def parsed(text: str) -> dict:
    return {f.name: f for f in text_string_to_metric_families(text)}


class _Reloads:
    def __init__(self, counts: ReloadCounts = RELOADS) -> None:
        self.counts = counts

    def read(self) -> ReloadCounts:
        return self.counts


class Log:
    """Records ``(level, event, fields)``."""

    def __init__(self) -> None:
        self.events: list[tuple[str, str, dict]] = []

    def __getattr__(self, level: str):
        return lambda event, **fields: self.events.append((level, event, fields))

    def named(self, event: str) -> list[dict]:
        return [f for _level, e, f in self.events if e == event]


# --------------------------------------------------------------------------- the families


def test_every_family_has_its_type_and_labels() -> None:
    fams = parsed(scrape_text())
    assert set(fams) == set(FAMILIES)
    for name, (kind, labels) in FAMILIES.items():
        assert fams[name].type == kind, name
        for s in fams[name].samples:
            assert set(s.labels) == labels, (name, s)


def test_values_are_the_status_values() -> None:
    fams = parsed(scrape_text())

    def value(family: str, sample: str | None = None, **labels) -> float:
        [v] = [s.value for s in fams[family].samples
               if s.labels == labels and (sample is None or s.name == sample)]
        return v

    assert value("xdpd_rule_packets", rule="drop-bad-net", action="drop") == 7
    assert value("xdpd_rule_bytes", rule="dns-flood", action="limit") == 5000
    assert value("xdpd_rule_packets", rule='odd "name"\\x', action="count") == 2 ** 62  # escaped, exact
    assert value("xdpd_rule_limited_packets", rule="dns-flood") == 30
    assert [s.labels["rule"] for s in fams["xdpd_rule_limited_packets"].samples] == ["dns-flood"]
    for v in layout.Verdict:
        assert value("xdpd_interface_packets", interface="eth0", verdict=v.label) == 10 + v
        assert value("xdpd_interface_bytes", interface="eth1", verdict=v.label) == 100 * (1000 + v)
    assert value("xdpd_interface_attached", interface="eth0", mode="native") == 1
    assert value("xdpd_interface_attached", interface="eth1", mode="none") == 0
    assert value("xdpd_rule_limited_bytes", rule="dns-flood") == 3000
    assert value("xdpd_bans") == 3
    assert value("xdpd_ban_capacity") == 100
    assert value("xdpd_bans_by_rules") == 5
    assert value("xdpd_ban_table_full") == 2
    assert value("xdpd_reloads", result="applied") == 4
    assert value("xdpd_reloads", result="rejected") == 2
    assert value("xdpd_last_reload_success_timestamp_seconds") == 1_700_000_000.25
    assert value("xdpd_config_addresses") == 1234


def test_text_format_names_help_and_type_lines() -> None:
    text = scrape_text()
    lines = text.splitlines()
    for name, (kind, _labels) in FAMILIES.items():
        full = name + "_total" if kind == "counter" else name
        assert f"# TYPE {full} {kind}" in lines, full
        assert any(line.startswith(f"# HELP {full} ") for line in lines), full
    assert 'xdpd_rule_packets_total{action="drop",rule="drop-bad-net"} 7.0' in lines
    assert 'xdpd_reloads_total{result="applied"} 4.0' in lines
    assert "_created" not in text  # no per-process creation time: these outlive the process


def test_nothing_pinned_still_gives_the_reload_families() -> None:
    fams = parsed(scrape_text({"pin_dir": "/x", "interfaces": {}, "rules": {}, "error": "nothing pinned"},
                              ReloadCounts()))
    assert [s.value for s in fams["xdpd_reloads"].samples] == [0, 0]
    assert fams["xdpd_rule_packets"].samples == [] and "xdpd_bans" not in fams
    assert "xdpd_bans_by_rules" not in fams and "xdpd_ban_table_full" not in fams


@pytest.mark.skipif(not os.access(PROMTOOL, os.X_OK) and shutil.which("promtool") is None,
                    reason="promtool comes with make setup")
def test_promtool_accepts_the_text() -> None:
    tool = shutil.which("promtool") or PROMTOOL
    r = subprocess.run([tool, "check", "metrics"], input=scrape_text(), capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr


def test_one_scrape_at_a_time() -> None:
    inside, most = [0], [0]
    lock = threading.Lock()

    def slow_status(_pin: str) -> dict:
        with lock:
            inside[0] += 1
            most[0] = max(most[0], inside[0])
        time.sleep(0.02)
        with lock:
            inside[0] -= 1
        return STATUS

    reg = registry(MetricsCollector("/pins", _Reloads(), slow_status))
    threads = [threading.Thread(target=render, args=(reg,)) for _ in range(5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert most[0] == 1


# --------------------------------------------------------------------------- the listener


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(port: int, path: str = "/metrics", host: str = "127.0.0.1", accept: str | None = None):
    conn = http.client.HTTPConnection(host, port, timeout=10)
    try:
        conn.request("GET", path, headers={"Accept": accept} if accept else {})
        r = conn.getresponse()
        return r.status, r.getheader("Content-Type"), r.read().decode()
    finally:
        conn.close()


def refused(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    except ConnectionRefusedError:
        return True
    return False


@pytest.fixture
def export():
    status = {"value": STATUS}
    log = Log()
    ex = MetricsExport(registry(MetricsCollector("/pins", _Reloads(), lambda _pin: status["value"])), log)
    ex.status, ex.test_log = status, log  # what the tests change and read
    yield ex
    ex.close()


def test_listener_serves_metrics_and_follows_the_settings(export) -> None:
    port, other = free_port(), free_port()
    export.apply(Settings(metrics_listen=("127.0.0.1", port)))
    status, ctype, body = get(port)
    assert status == 200 and ctype.startswith("text/plain; version=0.0.4")
    assert body == scrape_text()
    assert get(port, "/")[0] == 404 and get(port, "/metrics/x")[0] == 404
    status, ctype, body = get(port, accept="application/openmetrics-text; version=0.0.1")
    assert status == 200 and ctype.startswith("application/openmetrics-text") and body.endswith("# EOF\n")
    assert export.test_log.named("metrics_listening") == [{"address": f"http://127.0.0.1:{port}/metrics"}]

    export.apply(Settings(metrics_listen=("127.0.0.1", port)))  # unchanged: the same server
    assert len(export.test_log.named("metrics_listening")) == 1
    export.apply(Settings(metrics_listen=("127.0.0.1", other)))  # moved
    assert get(other)[0] == 200 and refused(port)
    export.apply(Settings())  # off
    assert refused(other)
    assert [f["address"] for f in export.test_log.named("metrics_listen_stopped")] == [
        f"http://127.0.0.1:{port}/metrics", f"http://127.0.0.1:{other}/metrics"]


def test_a_port_in_use_is_logged_and_retried_at_the_next_apply(export) -> None:
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    port = taken.getsockname()[1]
    export.apply(Settings(metrics_listen=("127.0.0.1", port)))
    [failed] = export.test_log.named("metrics_listen_failed")
    assert failed["address"] == f"http://127.0.0.1:{port}/metrics" and "Address already in use" in failed["detail"]
    taken.close()
    export.apply(Settings(metrics_listen=("127.0.0.1", port)))  # the next reload: same setting, tried again
    assert get(port)[0] == 200


def test_an_address_on_no_interface_is_bound_anyway_and_said(export) -> None:
    port = free_port()
    export.apply(Settings(metrics_listen=("192.0.2.254", port)))  # documentation address, nothing is sent
    [absent] = export.test_log.named("metrics_address_absent")
    assert "192.0.2.254 is on no interface" in absent["hint"]
    [listening] = export.test_log.named("metrics_listening")
    assert "IPAddressAllow" in listening["hint"]  # not loopback: the unit needs a drop-in


def test_ipv6_loopback(export) -> None:
    if not socket.has_ipv6:
        pytest.skip("no IPv6")
    port = free_port()
    export.apply(Settings(metrics_listen=("::1", port)))
    assert get(port, host="::1")[0] == 200
    assert export.test_log.named("metrics_listening") == [{"address": f"http://[::1]:{port}/metrics"}]


def test_a_failing_scrape_is_a_500_logged_once(export) -> None:
    port = free_port()
    export.apply(Settings(metrics_listen=("127.0.0.1", port)))
    export.status["value"] = None  # families() cannot read it
    assert get(port)[0] == 500 and get(port)[0] == 500
    assert len(export.test_log.named("metrics_scrape_failed")) == 1
    export.status["value"] = STATUS
    assert get(port)[0] == 200
    assert len(export.test_log.named("metrics_scrape_ok")) == 1


# --------------------------------------------------------------------------- the textfile


def test_textfile_written_at_once_then_each_tick_and_removed_when_it_changes(export, tmp_path) -> None:
    first, second = tmp_path / "xdpd.prom", tmp_path / "other.prom"
    old = os.umask(0o077)  # the unit's UMask
    try:
        export.apply(Settings(metrics_textfile=str(first)))
    finally:
        os.umask(old)
    assert first.read_text() == scrape_text()
    assert first.stat().st_mode & 0o777 == 0o644
    export.status["value"] = {**STATUS, "rules": {}}
    export.write_textfile()
    assert first.read_text() == scrape_text({**STATUS, "rules": {}})
    export.apply(Settings(metrics_textfile=str(second)))
    assert not first.exists() and second.exists()
    export.apply(Settings())
    assert os.listdir(tmp_path) == []
    assert [f["path"] for f in export.test_log.named("metrics_textfile_removed")] == [str(first), str(second)]


def test_textfile_errors_are_logged_once_and_the_recovery_too(export, tmp_path) -> None:
    path = tmp_path / "missing-dir" / "xdpd.prom"
    export.apply(Settings(metrics_textfile=str(path)))
    export.write_textfile()
    [failed] = export.test_log.named("metrics_textfile_failed")
    assert failed["path"] == str(path) and "ReadWritePaths" in failed["hint"]
    path.parent.mkdir()
    export.write_textfile()
    assert path.exists() and export.test_log.named("metrics_textfile_written") == [{"path": str(path)}]


def test_write_atomically_never_shows_a_partial_file(tmp_path) -> None:
    path = str(tmp_path / "x.prom")
    texts = [(f"# {i}\n" + "x" * (i * 5000) + "\nend\n").encode() for i in range(1, 20)]
    write_atomically(path, texts[0])
    seen, stop = set(), threading.Event()

    def reader() -> None:
        while not stop.is_set():
            with open(path, "rb") as f:
                seen.add(f.read())

    t = threading.Thread(target=reader)
    t.start()
    try:
        for _ in range(20):
            for text in texts:
                write_atomically(path, text)
    finally:
        stop.set()
        t.join()
    assert seen <= set(texts) and len(seen) > 1
    assert os.listdir(tmp_path) == ["x.prom"]  # no temporary file left


def test_write_atomically_leaves_nothing_on_failure(tmp_path, monkeypatch) -> None:
    path = tmp_path / "x.prom"
    path.write_text("old\n")

    def fail(*_a):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", fail)
    with pytest.raises(OSError):
        write_atomically(str(path), b"new\n")
    assert path.read_text() == "old\n" and os.listdir(tmp_path) == ["x.prom"]


def test_settings_default_to_neither() -> None:
    fields = {f.name: f.default for f in dataclasses.fields(Settings)}
    assert fields["metrics_listen"] is None and fields["metrics_textfile"] is None
