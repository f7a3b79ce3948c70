"""Metrics of a real daemon: ``xdpd run`` in a test bed's victim namespace with
``metrics_listen`` on that namespace's loopback and a ``metrics_textfile``.

The scrape is an HTTP GET from a thread that entered the victim namespace
(:func:`tests.testbed.netns.call_in_netns`); the traffic is real packets from
the sender namespace.  Checked: ``promtool check metrics`` accepts the text,
the values equal ``xdpd status --json``, no counter goes down across
reloads (applied and rejected), a ``kill -9`` and a restart, the reload
counts survive the restart, a reload moves the listener and the textfile,
and a reader polling the textfile only ever sees whole files with mode 0644.
"""

from __future__ import annotations

import http.client
import os
import shutil
import socket
import subprocess
import threading
import time

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.testbed.daemon import XdpdProcess, config
from tests.testbed.netbed import NetBed
from tests.testbed.netns import call_in_netns
from xdpd.reloadstats import PIN_NAME, ReloadStats

pytestmark = pytest.mark.kernel

PROMTOOL = "/var/cache/xdpd-test/promtool"
"""Where ``make setup`` puts promtool (taken out of Debian's prometheus package)."""
PORT, OTHER_PORT = 9436, 9437

DROPPED_SRC = "192.0.2.1"      # drop-doc-net
COUNTED_SRC = "198.51.100.1"   # count-udp only
LIMITED_SRC = "198.51.100.2"   # over udp-limit: limited, then banned

RULES = """
    - {name: drop-doc-net, action: drop, src: 192.0.2.0/24}
    - {name: udp-limit, action: limit, proto: udp, dst_port: 7001, rate: 1/h, burst: 2, ban: 60s}
    - {name: count-udp, action: count, proto: udp}
"""
RULES_MORE = RULES + "    - {name: drop-nothing, action: drop, src: 198.51.100.99}\n"

Samples = dict[tuple[str, frozenset], float]


def promtool() -> str:
    tool = shutil.which("promtool") or PROMTOOL
    if not os.access(tool, os.X_OK):
        pytest.fail(f"no promtool at {PROMTOOL}: run make setup", pytrace=False)
    return tool


def settings(textfile: str, port: int = PORT, interval: float = 0.2) -> str:
    return f'metrics_listen: "127.0.0.1:{port}", metrics_textfile: {textfile}, log_interval: {interval}'


def daemon_config(bed: NetBed, textfile: str, rules: str = RULES, **kw) -> str:
    # config() puts its own log_interval first; a later one in the same mapping would be a duplicate key.
    return config(bed.victim_if, rules=rules, mode="native", settings=settings(textfile, **kw)).replace(
        "log_interval: 60, ", "")


def get(bed: NetBed, port: int = PORT) -> tuple[int, str]:
    """GET /metrics from inside the victim namespace: (status, body)."""
    def fetch() -> tuple[int, str]:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        try:
            conn.request("GET", "/metrics")
            r = conn.getresponse()
            return r.status, r.read().decode()
        finally:
            conn.close()
    return call_in_netns(bed.victim_ns, fetch)


def scrape(bed: NetBed, port: int = PORT) -> str:
    status, body = get(bed, port)
    assert status == 200, body
    return body


def refused(bed: NetBed, port: int) -> bool:
    def connect() -> bool:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=2).close()
        except ConnectionRefusedError:
            return True
        return False
    return call_in_netns(bed.victim_ns, connect)


def samples(text: str) -> Samples:
    return {(s.name, frozenset(s.labels.items())): s.value
            for f in text_string_to_metric_families(text) for s in f.samples}


def key(name: str, **labels: str) -> tuple[str, frozenset]:
    return name, frozenset(labels.items())


def from_status(st: dict) -> Samples:
    """What the metrics must say, computed from ``status --json``."""
    out: Samples = {}
    for name, r in st["rules"].items():
        out[key("xdpd_rule_packets_total", rule=name, action=r["action"])] = r["packets"]
        out[key("xdpd_rule_bytes_total", rule=name, action=r["action"])] = r["bytes"]
        if "limited" in r:
            out[key("xdpd_rule_limited_packets_total", rule=name)] = r["limited"]["packets"]
            out[key("xdpd_rule_limited_bytes_total", rule=name)] = r["limited"]["bytes"]
    for name, i in st["interfaces"].items():
        for verdict, c in i["counters"].items():
            out[key("xdpd_interface_packets_total", interface=name, verdict=verdict)] = c["packets"]
            out[key("xdpd_interface_bytes_total", interface=name, verdict=verdict)] = c["bytes"]
        out[key("xdpd_interface_attached", interface=name, mode=i["mode"])] = 1 if i["attached"] else 0
    out[key("xdpd_bans")] = st["bans"]["active"]
    out[key("xdpd_ban_capacity")] = st["bans"]["capacity"]
    out[key("xdpd_bans_by_rules_total")] = st["bans"]["banned_by_rules"]
    out[key("xdpd_ban_table_full_total")] = st["bans"]["table_full"]
    return out


def scrape_equal_to_status(d: XdpdProcess) -> Samples:
    """Scrape between two identical ``status --json`` readings (a stray neighbour
    probe between them moves an interface counter: then read again)."""
    for _ in range(5):
        before = d.status()
        got = samples(scrape(d.bed))
        if d.status() == before:
            want = from_status(before)
            assert {k: got.get(k) for k in want} == want
            return got
    raise AssertionError("the counters kept moving between two status readings")


def no_counter_went_down(before: Samples, after: Samples, what: str) -> None:
    for k, v in before.items():
        if k[0].endswith("_total") and k in after:
            assert after[k] >= v, f"{what}: {k} went from {v} to {after[k]}"


def check_promtool(text: str) -> None:
    r = subprocess.run([promtool(), "check", "metrics"], input=text, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, f"promtool check metrics:\n{r.stdout}{r.stderr}\n--- text ---\n{text}"


def edit(d: XdpdProcess, config_yaml: str) -> str:
    """Rewrite the config and wait for the one reload that change makes; its sd_notify message."""
    d.drain_messages()
    d.write_config(config_yaml)
    return d.wait_message(r"(^|\n)READY=1($|\n)")


def send_traffic(bed: NetBed, banned: bool = False) -> None:
    assert bed.send("udp", DROPPED_SRC, count=5) == 0
    assert bed.send("udp", COUNTED_SRC, count=4) == 4
    # Burst 2, then limited and banned for 60 s: everything it sends is dropped from then on.
    assert bed.send("udp", LIMITED_SRC, dport=7001, count=5) == (0 if banned else 2)


def test_scraped_metrics_equal_status_and_never_go_down(netbed: NetBed, xdpd, tmp_path) -> None:
    textfile = str(tmp_path / "xdpd.prom")
    d = xdpd(daemon_config(netbed, textfile))
    check_promtool(scrape(netbed))  # right after READY=1: listening, families with zero counts
    send_traffic(netbed)
    text = scrape(netbed)
    check_promtool(text)
    first = scrape_equal_to_status(d)
    assert first[key("xdpd_rule_packets_total", rule="drop-doc-net", action="drop")] == 5
    assert first[key("xdpd_rule_limited_packets_total", rule="udp-limit")] >= 1
    assert first[key("xdpd_interface_attached", interface=netbed.victim_if, mode="native")] == 1
    assert first[key("xdpd_rule_limited_bytes_total", rule="udp-limit")] >= 42  # a frame at least
    assert first[key("xdpd_bans")] == 1
    assert first[key("xdpd_bans_by_rules_total")] == 1 and first[key("xdpd_ban_table_full_total")] == 0
    assert first[key("xdpd_reloads_total", result="applied")] == 0
    assert first[key("xdpd_config_addresses")] == 1  # 192.0.2.0/24
    started = first[key("xdpd_last_reload_success_timestamp_seconds")]
    assert abs(started - time.time()) < 60
    assert os.stat(textfile).st_mode & 0o777 == 0o644
    with open(textfile) as f:
        check_promtool(f.read())

    # A reload applied, then one rejected: the counts move, no counter goes down.
    # (Each by a file change alone: XdpdProcess.reload's SIGHUP after its write
    # would make the one or two reloads, as the debounce falls.)
    edit(d, daemon_config(netbed, textfile, RULES_MORE))
    send_traffic(netbed, banned=True)
    applied = scrape_equal_to_status(d)
    no_counter_went_down(first, applied, "reload")
    assert applied[key("xdpd_reloads_total", result="applied")] == 1
    assert applied[key("xdpd_rule_packets_total", rule="drop-nothing", action="drop")] == 0
    assert applied[key("xdpd_config_addresses")] == 2
    assert applied[key("xdpd_last_reload_success_timestamp_seconds")] >= started
    assert "rejected" in edit(d, "rules: [{name: broken, action: dorp}]\n")
    rejected = scrape_equal_to_status(d)
    assert rejected[key("xdpd_reloads_total", result="rejected")] == 1
    assert rejected[key("xdpd_reloads_total", result="applied")] == 1
    no_counter_went_down(applied, rejected, "rejected reload")

    # A crash and a new daemon: the kernel counters and the reload counts are the pinned ones.
    d.kill()
    d.write_config(daemon_config(netbed, textfile, RULES_MORE))
    d.restart()
    restarted = scrape_equal_to_status(d)
    no_counter_went_down(rejected, restarted, "kill -9 and restart")
    for result in ("applied", "rejected"):
        assert restarted[key("xdpd_reloads_total", result=result)] == rejected[key("xdpd_reloads_total",
                                                                                    result=result)]
    send_traffic(netbed, banned=True)
    check_promtool(scrape(netbed))
    no_counter_went_down(restarted, scrape_equal_to_status(d), "traffic after the restart")


def test_reload_moves_the_listener_and_the_textfile(netbed: NetBed, xdpd, tmp_path) -> None:
    first, second = str(tmp_path / "a.prom"), str(tmp_path / "b.prom")
    d = xdpd(daemon_config(netbed, first))
    assert get(netbed)[0] == 200 and os.path.exists(first)
    d.reload(daemon_config(netbed, second, port=OTHER_PORT))
    assert refused(netbed, PORT) and get(netbed, OTHER_PORT)[0] == 200
    assert not os.path.exists(first) and os.path.exists(second)
    d.reload(config(netbed.victim_if, rules=RULES, mode="native"))  # neither
    assert refused(netbed, OTHER_PORT) and os.listdir(tmp_path) == []
    log = d.stderr()
    assert "metrics_listen_stopped" in log and "metrics_textfile_removed" in log


def test_a_port_in_use_is_an_error_not_a_failure(netbed: NetBed, xdpd, tmp_path) -> None:
    """Another process holds the port: xdpd says so and filters all the same."""
    holder = call_in_netns(netbed.victim_ns, lambda: socket.create_server(("127.0.0.1", PORT)))
    try:
        d = xdpd(daemon_config(netbed, str(tmp_path / "x.prom")))
        assert "metrics_listen_failed" in d.stderr() and "Address already in use" in d.stderr()
        assert netbed.send("udp", DROPPED_SRC, count=2) == 0
    finally:
        holder.close()
    d.reload(daemon_config(netbed, str(tmp_path / "x.prom"), RULES_MORE))  # tried again
    assert get(netbed)[0] == 200


def test_textfile_is_always_whole(netbed: NetBed, xdpd, tmp_path) -> None:
    """A reader polling the file while the daemon rewrites it every 50 ms sees only complete texts."""
    textfile = str(tmp_path / "xdpd.prom")
    d = xdpd(daemon_config(netbed, textfile, interval=0.05))
    reads, versions, problems = [0], set(), []
    stop = threading.Event()

    def poll() -> None:
        while not stop.is_set():
            try:
                with open(textfile) as f:
                    st = os.fstat(f.fileno())
                    text = f.read()
            except FileNotFoundError:
                problems.append("missing")
                continue
            reads[0] += 1
            versions.add((st.st_ino, st.st_mtime_ns))
            if st.st_mode & 0o777 != 0o644:
                problems.append(f"mode {st.st_mode & 0o777:o}")
            try:
                names = {f.name for f in text_string_to_metric_families(text)}
            except Exception as e:  # a partial line
                problems.append(f"{e}: {text[-200:]!r}")
                continue
            if not text.endswith("\n") or not {"xdpd_config_addresses", "xdpd_rule_packets"} <= names:
                problems.append(text[-200:])

    t = threading.Thread(target=poll)
    t.start()
    try:
        deadline = time.monotonic() + 3.0
        while time.monotonic() < deadline:
            assert netbed.send("udp", COUNTED_SRC, count=3) == 3
    finally:
        stop.set()
        t.join()
    assert problems == [] and reads[0] > 100, (problems[:3], reads[0])
    assert len(versions) > 10, "the daemon should have replaced the file many times"
    assert d.stop() == 0
    assert os.listdir(tmp_path) == ["xdpd.prom"]  # no temporary file left beside it


def test_reload_counts_pinned_map() -> None:
    """Created on the first open, the same numbers on the next; a map of another shape is replaced."""
    pin_dir = f"/sys/fs/bpf/xdpdt-reloads-{os.getpid()}"
    os.mkdir(pin_dir)
    try:
        with ReloadStats(pin_dir) as r:
            assert r.read().applied == 0
            r.count(applied=True)
            r.count(applied=False)
            r.count(applied=True)
            r.enforced(12, now=1_700_000_000.5)
        with ReloadStats(pin_dir) as r:
            c = r.read()
            assert (c.applied, c.rejected, c.addresses, c.last_success) == (2, 1, 12, 1_700_000_000.5)
        os.unlink(os.path.join(pin_dir, PIN_NAME))
        from xdpd import bpfsys
        fd = bpfsys.map_create(bpfsys.BPF_MAP_TYPE_ARRAY, "other", 4, 4, 2)
        bpfsys.obj_pin(fd, os.path.join(pin_dir, PIN_NAME))
        os.close(fd)
        with ReloadStats(pin_dir) as r:
            assert r.read().applied == 0
        assert os.listdir(pin_dir) == [PIN_NAME]
    finally:
        shutil.rmtree(pin_dir, ignore_errors=True)
