"""The .deb on a fresh Debian 12 and a fresh Debian 13 under a real systemd, as an operator uses it.

One container per release for the module (the ``machine`` fixture is
parametrized by release, so every test runs on each: ``test_x[bookworm]``,
then ``test_x[trixie]``); the tests are the steps of one story and run
in file order: install (by apt, resolving the package's dependencies), boot
(the unit is enabled and starts with the shipped config, which attaches
nothing), configure and start, traffic, journal fields, edit the config
(applied without a restart), ``systemctl reload`` (and its failure on an
invalid config, which leaves the old rules in force), metrics scraped with
curl and written for node_exporter, samples of a rule's packets as
journal entries with their headers as fields (and none from a rule without
``sample``), ``xdpd top --once`` showing a steady stream's rate for the
interface and the rule, ``xdpd ban`` by hand,
Debian's fail2ban banning and unbanning through the shipped action, stop
(detaches), and purge (no pins left).
"""

from __future__ import annotations

import json
import os
import re
import time

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.e2e.fail2ban import BANTIME, JAIL, PERMANENT_JAIL, Fail2ban
from tests.e2e.scenario import BLOCKED, HOST_PIN_DIR, IFACE, OTHER, TARGET
from tests.testbed.toptable import near, parse

pytestmark = pytest.mark.e2e

RULE = "drop-blocked-sender"

CONFIG_BLOCK = f"""\
    settings: {{log_interval: 1}}
    interfaces:
      {IFACE}: {{mode: auto}}
    rules:
      - name: {RULE}
        action: drop
        src: [{BLOCKED}]
"""

CONFIG_BLOCK_BOTH = CONFIG_BLOCK + f"""\
      - {{name: drop-other-sender, action: drop, src: {OTHER}}}
"""

CONFIG_BLOCK_OTHER = f"""\
    settings: {{log_interval: 1}}
    interfaces:
      {IFACE}: {{mode: auto}}
    rules:
      - {{name: drop-other-sender, action: drop, src: {OTHER}}}
"""

CONFIG_NO_RULES = f"""\
    settings: {{log_interval: 1}}
    interfaces:
      {IFACE}: {{mode: auto}}
    rules: []
"""

CONFIG_INVALID = f"""\
    settings: {{log_interval: 1}}
    interfaces:
      {IFACE}: {{mode: auto}}
    rules:
      - {{name: drop-other-sender, action: dorp, src: {OTHER}}}
"""

METRICS_PORT = 9436
TEXTFILE = "/var/lib/prometheus/node-exporter/xdpd.prom"
CONFIG_METRICS = CONFIG_BLOCK_OTHER.replace(
    "settings: {log_interval: 1}",
    f'settings: {{log_interval: 1, metrics_listen: "127.0.0.1:{METRICS_PORT}", metrics_textfile: {TEXTFILE}}}')

SAMPLED, UNSAMPLED = "sample-blocked-sender", "drop-other-unsampled"
CONFIG_SAMPLES = f"""\
    settings: {{log_interval: 1}}
    interfaces:
      {IFACE}: {{mode: auto}}
    rules:
      - {{name: {SAMPLED}, action: count, src: [{BLOCKED}], sample: 100/s}}
      - {{name: {UNSAMPLED}, action: drop, src: [{OTHER}]}}
"""
UDP_SPORT, UDP_DPORT, UDP_SIZE, UDP_COUNT, PING_COUNT = 40404, 9, 100, 5, 2
PING_LENGTH = 20 + 8 + 56
"""IPv4 + ICMP headers and ping's default 56 bytes of data."""
STREAM_RATE, STREAM_SECONDS, TOP_INTERVAL = 200, 4, 2

APPLY_TIMEOUT = 10.0
"""A config change must be enforced within this many seconds (compiling is not needed)."""


def test_package_installs_its_files(machine):
    files = machine.run("dpkg -L xdpd").stdout.split()
    for path in ("/usr/sbin/xdpd", "/usr/share/xdpd/bpf/xdpd.bpf.c", "/lib/systemd/system/xdpd.service",
                 "/etc/xdpd/rules.yaml", "/usr/share/man/man8/xdpd.8.gz", "/usr/share/man/man5/xdpd.yaml.5.gz",
                 "/etc/fail2ban/action.d/xdpd.conf"):
        assert path in files
    conffiles = machine.run("dpkg-query -W -f='${Conffiles}' xdpd").stdout
    assert "/etc/xdpd/rules.yaml" in conffiles and "/etc/fail2ban/action.d/xdpd.conf" in conffiles
    assert "fail2ban" in machine.run("dpkg-query -W -f='${Suggests}' xdpd").stdout
    assert machine.run("xdpd --version").stdout.strip() == "xdpd " + \
        machine.run("dpkg-query -W -f='${Version}' xdpd").stdout.strip()
    assert "OK (0 interfaces, 0 rules" in machine.run("xdpd check").stdout


def test_enabled_and_started_at_boot_with_a_config_that_attaches_nothing(machine, sc):
    assert sc.systemctl("is-enabled", "xdpd").stdout.strip() == "enabled"
    assert sc.is_active() == "active", sc.journal_text()
    links = machine.run("ip -j -d link show").stdout
    assert '"xdp"' not in links  # nothing attached anywhere
    ready = sc.journal("XDPD_EVENT=ready")
    assert ready and ready[-1]["XDPD_PIN_DIR"] == "/sys/fs/bpf/xdpd"


def test_unit_is_valid_and_hardened(machine):
    verify = machine.run("systemd-analyze verify --man=no xdpd.service", check=False)
    assert verify.returncode == 0 and "xdpd" not in verify.stderr, verify.stderr
    cycles = machine.run("journalctl -b --no-pager -g 'ordering cycle'", check=False).stdout
    assert "xdpd" not in cycles, cycles
    out = machine.run("systemd-analyze security --no-pager xdpd.service", check=False).stdout
    m = re.search(r"Overall exposure level for xdpd\.service: (\d+\.\d+)", out)
    assert m, out
    # 2.1 when this was written (systemd 252), 2.4 since the metrics listener needs AF_INET/AF_INET6
    # and IPAddressAllow=localhost: a regression in the unit shows here.
    assert float(m.group(1)) <= 2.5, out


def test_start_with_a_rule_drops_the_blocked_source(machine, sc):
    sc.systemctl("stop", "xdpd")
    sc.make_veth()
    sc.write_config(CONFIG_BLOCK)
    sc.systemctl("start", "xdpd")
    assert sc.is_active() == "active"
    assert sc.xdp_prog_id() is not None, machine.run(f"ip -d link show {IFACE}").stdout
    assert sc.ping(OTHER), "traffic from an allowed source must pass"
    assert not sc.ping(BLOCKED), "traffic from the blocked source must be dropped"
    assert sc.udp(OTHER) and not sc.udp(BLOCKED), "UDP too"


def test_journal_has_the_rule_count_as_fields(sc):
    assert not sc.ping(BLOCKED, count=3)

    def counted() -> bool:
        entries = sc.journal("XDPD_EVENT=count", f"XDPD_RULE={RULE}")
        return bool(entries) and int(entries[-1]["PACKETS"]) >= 3

    sc.wait_until(counted, 10, f"no count of rule {RULE} with at least 3 packets in the journal")
    # What an operator types: every line is about this rule.
    text = sc.m.run(f"journalctl --no-pager -o cat -u xdpd XDPD_RULE={RULE}").stdout.splitlines()
    assert text and all(line.startswith(f"count rule={RULE} action=drop packets=") for line in text), text
    entry = sc.journal("XDPD_EVENT=count", f"XDPD_RULE={RULE}")[-1]
    assert entry["XDPD_ACTION"] == "drop" and entry["PRIORITY"] == "6"
    assert {"BYTES", "DELTA_PACKETS", "DELTA_BYTES"} <= entry.keys()
    iface = sc.journal("XDPD_EVENT=count", f"XDPD_IFACE={IFACE}", "XDPD_VERDICT=drop_rule")
    assert iface, "per-interface verdict counts are journal fields too"


def test_edited_config_is_enforced_without_restart(sc):
    pid = sc.main_pid()
    assert sc.ping(OTHER)
    sc.write_config(CONFIG_BLOCK_BOTH)
    took = sc.wait_ping(OTHER, passes=False, timeout=APPLY_TIMEOUT,
                        what="rules.yaml edited to drop a second source, no reload")
    assert sc.main_pid() == pid, "the daemon was restarted instead of applying the change"
    assert not sc.ping(BLOCKED)
    assert took < APPLY_TIMEOUT


def test_systemctl_reload_applies_the_config(sc):
    pid = sc.main_pid()
    sc.write_config(CONFIG_BLOCK_OTHER)
    r = sc.systemctl("reload", "xdpd", check=False)
    assert r.returncode == 0, r.stderr + sc.journal_text()
    # systemctl reload returns after ExecReload (xdpd reload) saw the outcome.
    assert sc.ping(BLOCKED), "the rule removed by the reload still drops"
    assert not sc.ping(OTHER)
    assert sc.main_pid() == pid and sc.is_active() == "active"


def test_systemctl_reload_fails_on_invalid_config_and_old_rules_stay(sc):
    pid = sc.main_pid()
    cursor = sc.cursor()
    sc.write_config(CONFIG_INVALID)
    r = sc.systemctl("reload", "xdpd", check=False)
    assert r.returncode != 0, "systemctl reload must fail for a rejected config"
    assert sc.is_active() == "active" and sc.main_pid() == pid
    assert not sc.ping(OTHER), "the previous config must stay enforced"
    assert sc.ping(BLOCKED)
    rejected = sc.journal("XDPD_EVENT=reload_rejected", since_cursor=cursor)
    assert rejected, sc.journal_text()
    assert re.search(r"rules\.yaml:\d+:\d+: .*dorp", rejected[-1]["XDPD_PROBLEM"]), rejected[-1]
    # ExecReload's own output: the problem, where an operator sees it.
    assert "dorp" in "".join(e.get("MESSAGE", "") for e in sc.journal(since_cursor=cursor))


def samples(text: str) -> dict[tuple[str, frozenset], float]:
    return {(s.name, frozenset(s.labels.items())): s.value
            for f in text_string_to_metric_families(text) for s in f.samples}


def scrape(machine) -> dict[tuple[str, frozenset], float]:
    """``curl http://127.0.0.1:PORT/metrics`` in the container: through the unit's IP allow-list."""
    return samples(machine.run(f"curl -sSf --max-time 10 http://127.0.0.1:{METRICS_PORT}/metrics").stdout)


def test_metrics_over_http_and_in_the_textfile(machine, sc):
    """metrics_listen taken up by a reload and scraped with curl; the counters equal status --json;
    the textfile in node_exporter's directory (which the unit lets xdpd write once it exists when
    xdpd starts); reload counts and rule counters unchanged by systemctl restart."""
    rule = ("xdpd_rule_packets_total", frozenset({"rule": "drop-other-sender", "action": "drop"}.items()))
    applied = ("xdpd_reloads_total", frozenset({"result": "applied"}.items()))
    rejected = ("xdpd_reloads_total", frozenset({"result": "rejected"}.items()))
    sc.write_config(CONFIG_METRICS)
    r = sc.systemctl("reload", "xdpd", check=False)
    assert r.returncode == 0, r.stderr + sc.journal_text()
    assert not sc.ping(OTHER)
    before = scrape(machine)
    status = json.loads(machine.run("xdpd status --json").stdout)
    assert before[rule] == status["rules"]["drop-other-sender"]["packets"] >= 2
    assert before[applied] >= 1 and before[rejected] >= 1  # the reloads of the steps before
    assert [v for (name, labels), v in before.items()
            if name == "xdpd_interface_attached" and dict(labels)["interface"] == IFACE] == [1]
    assert sc.journal("XDPD_EVENT=metrics_textfile_failed"), "no node_exporter directory yet"

    machine.run(f"mkdir -p {os.path.dirname(TEXTFILE)}")  # as Debian's prometheus-node-exporter has it
    sc.systemctl("restart", "xdpd")
    after = scrape(machine)
    assert after[applied] == before[applied] and after[rejected] == before[rejected]
    assert after[rule] == before[rule]
    assert after[("xdpd_last_reload_success_timestamp_seconds", frozenset())] > \
        before[("xdpd_last_reload_success_timestamp_seconds", frozenset())]
    assert machine.run(f"stat -c '%a %U' {TEXTFILE}").stdout.split() == ["644", "root"]
    with open(machine.root.path + TEXTFILE) as f:
        written = samples(f.read())
    assert written[applied] == after[applied] and written[rule] == after[rule]


def test_samples_of_a_rule_in_the_journal(machine, sc):
    """A rule with ``sample: 100/s`` logs each of the few packets it matched as an XDPD_EVENT=sample
    entry with their headers as fields; a rule without ``sample`` logs none of its own."""
    sc.write_config(CONFIG_SAMPLES)
    r = sc.systemctl("reload", "xdpd", check=False)
    assert r.returncode == 0, r.stderr + sc.journal_text()
    cursor = sc.cursor()
    sc.send_udp(BLOCKED, UDP_SPORT, UDP_DPORT, UDP_COUNT, size=UDP_SIZE)
    assert sc.ping(BLOCKED, count=PING_COUNT), "a count rule passes"
    sc.send_udp(OTHER, UDP_SPORT, UDP_DPORT, UDP_COUNT, size=UDP_SIZE)
    assert not sc.ping(OTHER, count=PING_COUNT)
    sent = UDP_COUNT + PING_COUNT  # from each source, all within the sample rule's first second's burst

    sc.wait_until(lambda: len(sc.journal("XDPD_EVENT=sample", since_cursor=cursor)) >= sent, 10,
                  f"fewer than {sent} sample entries in the journal")
    time.sleep(0.5)  # a sample too many would be logged by now (the daemon polls the ring every 0.2 s)
    entries = sc.journal("XDPD_EVENT=sample", since_cursor=cursor)
    assert len(entries) == sent, [e["MESSAGE"] for e in entries]
    status = json.loads(machine.run("xdpd status --json").stdout)
    assert status["rules"][UNSAMPLED]["packets"] == sent, "the unsampled rule matched (and logged nothing)"

    common = {"XDPD_RULE": SAMPLED, "XDPD_IFACE": IFACE, "XDPD_VERDICT": "pass_default",  # the final verdict
              "XDPD_SRC": BLOCKED, "XDPD_DST": TARGET, "PRIORITY": "6"}
    udp = [e for e in entries if e.get("XDPD_PROTO") == "udp"]
    icmp = [e for e in entries if e.get("XDPD_PROTO") == "icmp"]
    assert (len(udp), len(icmp)) == (UDP_COUNT, PING_COUNT), [e["MESSAGE"] for e in entries]
    for e in udp:
        want = {**common, "XDPD_PROTO": "udp", "XDPD_SPORT": str(UDP_SPORT), "XDPD_DPORT": str(UDP_DPORT),
                "XDPD_LENGTH": str(20 + 8 + UDP_SIZE)}
        assert {k: e.get(k) for k in want} == want, e
        assert "XDPD_ICMP_TYPE" not in e and "XDPD_TCP_FLAGS" not in e, e
    for e in icmp:
        want = {**common, "XDPD_PROTO": "icmp", "XDPD_ICMP_TYPE": "8", "XDPD_ICMP_CODE": "0",
                "XDPD_LENGTH": str(PING_LENGTH)}
        assert {k: e.get(k) for k in want} == want, e
        assert "XDPD_SPORT" not in e and "XDPD_DPORT" not in e, e
    # What an operator reads (journalctl's MESSAGE): one line per packet, what it is about first.
    assert {e["MESSAGE"] for e in udp} == {
        f"sample iface={IFACE} rule={SAMPLED} verdict=pass_default src={BLOCKED} dst={TARGET} proto=udp "
        f"sport={UDP_SPORT} dport={UDP_DPORT} length={20 + 8 + UDP_SIZE}"}, udp


def test_top_once_shows_the_rates_of_a_stream(sc):
    """``xdpd top --once`` while the unsampled rule drops a steady stream: the interface, its drop_rule
    verdict and the rule at the stream's rate, busiest first; and not one sample of the stream."""
    cursor = sc.cursor()
    run = sc.top_once_while_sending(OTHER, UDP_DPORT, STREAM_RATE * STREAM_SECONDS, 1 / STREAM_RATE,
                                    TOP_INTERVAL)
    assert (run.returncode, run.stderr) == (0, ""), run
    assert run.stream_outlasted_top, "the stream ended before top's second reading: make it longer"
    head, *table = run.stdout.splitlines()
    assert re.fullmatch(rf"xdpd top: {HOST_PIN_DIR}, rates over {TOP_INTERVAL}\.\d\d s", head), head
    ifaces, rules, order = parse(table)
    shown = f"sent {run.rate:.0f}/s\n{run.stdout}"
    assert order == [UNSAMPLED, SAMPLED], shown  # busiest first
    assert rules[UNSAMPLED]["action"] == "drop" and near(rules[UNSAMPLED]["pps"], run.rate, 0.2), shown
    assert rules[SAMPLED]["pps"] == 0, shown
    iface = ifaces[IFACE]
    assert near(iface["pps"], run.rate, 0.2) and near(iface["drops"], run.rate, 0.2), shown
    assert near(iface["verdicts"]["drop_rule"][0], run.rate, 0.2), shown
    assert sc.journal("XDPD_EVENT=sample", since_cursor=cursor) == [], "a rule without sample was sampled"


def test_xdpd_ban_by_hand(machine, sc):
    sc.write_config(CONFIG_NO_RULES)
    r = sc.systemctl("reload", "xdpd", check=False)
    assert r.returncode == 0, r.stderr + sc.journal_text()
    assert sc.ping(BLOCKED) and sc.ping(OTHER)
    out = machine.run(f"xdpd ban add {BLOCKED} --for 1h --reason e2e").stdout
    assert out.startswith(f"banned {BLOCKED} for 1h, until "), out
    assert not sc.ping(BLOCKED) and sc.ping(OTHER)
    [row] = sc.bans()
    assert row["address"] == BLOCKED and row["reason"] == "e2e" and row["source"] == "cli"
    machine.run(f"xdpd ban del {BLOCKED}")
    assert sc.ping(BLOCKED) and sc.bans() == []


def test_fail2ban_bans_and_unbans_through_xdpd(machine, sc):
    """Two jails with ``action = xdpd``: a 5 s ban ends by itself, a permanent one when fail2ban stops."""
    f2b = Fail2ban(machine)
    f2b.configure()
    f2b.start()
    failed_at = time.monotonic()
    f2b.fail(JAIL, BLOCKED)
    f2b.fail(PERMANENT_JAIL, OTHER)
    sc.wait_until(lambda: {r["address"] for r in sc.bans()} == {BLOCKED, OTHER}, 15,
                  f"fail2ban's bans of {BLOCKED} and {OTHER} not in xdpd ban list\n{f2b.log()}")
    rows = {r["address"]: r for r in sc.bans()}
    assert rows[BLOCKED]["reason"] == f"f2b-{JAIL}" and rows[BLOCKED]["source"] == "cli", rows
    assert 0 < rows[BLOCKED]["expires"] - time.time() <= BANTIME, rows  # --for <bantime>s
    assert rows[OTHER] == {"address": OTHER, "expires": None, "reason": f"f2b-{PERMANENT_JAIL}",
                           "source": "cli"}  # bantime = -1: until fail2ban unbans
    assert not sc.udp(BLOCKED)
    assert not sc.ping(BLOCKED, count=1)
    assert time.time() < rows[BLOCKED]["expires"], "the checks outlasted the ban: make BANTIME longer"

    # The bantime is over: the ban is gone, and fail2ban's unban of it is no error.
    sc.wait_until(lambda: [r["address"] for r in sc.bans()] == [OTHER], BANTIME + 5,
                  f"the {BANTIME} s ban of {BLOCKED} did not end\n{f2b.log()}")
    lasted = time.monotonic() - failed_at
    assert BANTIME - 1 <= lasted <= BANTIME + 4, lasted
    assert sc.ping(BLOCKED) and sc.udp(BLOCKED)
    sc.wait_until(lambda: f2b.logged(f"[{JAIL}] Unban {BLOCKED}"), 10, f"fail2ban did not unban\n{f2b.log()}")
    assert not sc.ping(OTHER, count=1)

    # Stopping fail2ban lifts its bans one by one (actionunban), the permanent one too.
    f2b.stop()
    assert sc.bans() == []
    assert sc.ping(OTHER)
    assert f2b.logged(f"[{JAIL}] Ban {BLOCKED}") and f2b.logged(f"[{PERMANENT_JAIL}] Ban {OTHER}")
    assert f2b.errors() == [], f2b.log()


def test_stop_detaches(machine, sc):
    assert sc.xdp_prog_id() is not None
    sc.systemctl("stop", "xdpd")
    assert sc.is_active() == "inactive"
    assert sc.systemctl("show", "--value", "--property=Result", "xdpd").stdout.strip() == "success"
    assert sc.xdp_prog_id() is None, machine.run(f"ip -d link show {IFACE}").stdout
    assert sc.ping(OTHER), "nothing filters once xdpd is stopped"
    assert [e["XDPD_IFACE"] for e in sc.journal("XDPD_EVENT=detached")][-1:] == [IFACE]


def test_purge_leaves_no_pins(machine):
    assert os.path.isdir(HOST_PIN_DIR), "the daemon should have pinned its program"
    machine.run("apt-get purge -y -q xdpd")
    assert not os.path.lexists(HOST_PIN_DIR), os.listdir(HOST_PIN_DIR)
    left = machine.run("ls -d /etc/xdpd /run/xdpd /lib/systemd/system/xdpd.service "
                       "/etc/systemd/system/multi-user.target.wants/xdpd.service "
                       "/etc/fail2ban/action.d/xdpd.conf 2>/dev/null",
                       check=False).stdout.split()
    assert left == []
