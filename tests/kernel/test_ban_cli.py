"""``xdpd ban`` on real pins, with real traffic through a test bed.

The command runs as an operator (or fail2ban) runs it: ``python3 -m xdpd
ban ...`` in a process of its own, with ``--pin-dir`` of the test's daemon.
The daemon is ``xdpd run`` in the bed's victim namespace
(:mod:`tests.testbed.daemon`); traffic comes from the sender namespace.

What is checked: a ban drops everything from its source (UDP, TCP, ICMP;
an IPv6 ban its whole /64) and nothing else; ``del`` lets it through again;
a full table refuses a new source and still replaces a ban it holds;
``--for`` ends on time; ``list --json`` has the documented shape; the table
works with no daemon at all and keeps its bans across a reload, a ``kill -9``
and a restart; a limit rule's ``ban:`` shows up with the rule's name and
ends on time.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import time

import pytest

from tests.kernel.test_traffic import dropped, passes, verdicts
from tests.testbed.daemon import PYTHON, REPO_ROOT, XdpdProcess, config, pythonpath
from tests.testbed.netbed import NetBed
from tests.testbed.xdplink import detach_xdp

pytestmark = pytest.mark.kernel

SRC = "198.51.100.5"
NEIGHBOUR = "198.51.100.6"
"""Next to SRC: must never be caught by SRC's ban."""
SRC6 = "2001:db8:bad::3"
SAME_64 = "2001:db8:bad::7"
OTHER_64 = "2001:db8:900d::1"

TOLERANCE = 1.0
"""How far from its deadline a ban may end, in seconds (the issue's ±1 s)."""


def ban(d: XdpdProcess, *args: str, user: int | None = None) -> subprocess.CompletedProcess:
    """``xdpd ban ARGS --pin-dir <the daemon's>``, running or not."""
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1", "PYTHONPATH": pythonpath()}
    return subprocess.run([PYTHON, "-m", "xdpd", "ban", *args, "--pin-dir", d.pin_dir], cwd=REPO_ROOT, env=env,
                          capture_output=True, text=True, timeout=60, user=user)


def ok(d: XdpdProcess, *args: str) -> str:
    r = ban(d, *args)
    assert r.returncode == 0, f"xdpd ban {' '.join(args)}: exit {r.returncode}\n{r.stderr}"
    assert r.stderr == ""
    return r.stdout


def listed(d: XdpdProcess) -> list[dict]:
    return json.loads(ok(d, "list", "--json"))


def all_dropped(bed: NetBed, src: str) -> None:
    for proto in ("udp", "tcp", "icmpv6" if ":" in src else "icmp"):
        dropped(bed, proto, src)


def all_pass(bed: NetBed, src: str) -> None:
    for proto in ("udp", "tcp", "icmpv6" if ":" in src else "icmp"):
        passes(bed, proto, src)


def monotonic_of(unix: float) -> float:
    return unix - time.time() + time.monotonic()


def resumed_at(arrivals: list[float], after: float) -> float:
    """When a stream came back: the first arrival after ``after`` (which lies inside the gap)."""
    later = [t for t in arrivals if t > after]
    assert later, "the stream never came back"
    return later[0]


# --------------------------------------------------------------------------- with the daemon


def test_add_drops_every_protocol_of_the_source_and_del_lets_it_through(netbed, xdpd):
    d = xdpd(config(netbed.victim_if, mode="native", settings="max_bans: 2"))
    all_pass(netbed, SRC)

    assert ok(d, "add", SRC, "--reason", "kernel test") == f"banned {SRC} until deleted\n"
    all_dropped(netbed, SRC)
    passes(netbed, "udp", NEIGHBOUR, 5)
    passes(netbed, "icmp", NEIGHBOUR)
    assert verdicts(d)["drop_ban"] >= 9  # 3 each of UDP, TCP SYNs and echo requests

    # IPv6: the /64 of the address given.
    out = ok(d, "add", SRC6, "--for", "1h")
    assert out.startswith("banned 2001:db8:bad::/64 for 1h, until ")
    t_unix = time.time()
    all_dropped(netbed, SRC6)
    dropped(netbed, "udp", SAME_64)
    all_pass(netbed, OTHER_64)

    rows = listed(d)
    assert [set(r) for r in rows] == [{"address", "expires", "reason", "source"}] * 2
    assert rows[0] == {"address": SRC, "expires": None, "reason": "kernel test", "source": "cli"}
    assert rows[1]["address"] == "2001:db8:bad::/64" and rows[1]["source"] == "cli" and rows[1]["reason"] == ""
    assert abs(rows[1]["expires"] - (t_unix + 3600)) < 2
    st = d.status()["bans"]
    assert st["active"] == 2 and st["capacity"] == 2

    # Full: a third source is refused (and says what to do), nothing changes; bans already there can change.
    r = ban(d, "add", "198.51.100.9")
    assert (r.returncode, r.stdout) == (75, "")
    assert r.stderr == "xdpd ban add: the ban table is full (2 bans; raise settings.max_bans and restart xdpd)\n"
    passes(netbed, "udp", "198.51.100.9")
    assert listed(d) == rows

    table = ok(d, "list").splitlines()
    assert table[0].split() == ["ADDRESS", "EXPIRES", "SOURCE", "REASON"]
    assert table[1].startswith(SRC) and "until deleted" in table[1]
    assert table[1].split()[-3:] == ["cli", "kernel", "test"]
    # An hour from the add, rounded up to a second: "1h" until a second has passed.
    assert table[2].startswith("2001:db8:bad::/64") and re.search(r"\(in (1h|59m \d+s)\)", table[2]), table[2]

    # Adding again replaces, and says what it replaced.
    out = ok(d, "add", SRC, "--for", "10m", "--reason", "second")
    assert out.startswith(f"banned {SRC} for 10m, until ")
    assert "(replaces its ban until deleted, source cli, reason 'kernel test')" in out
    assert [r["reason"] for r in listed(d)] == ["second", ""]

    assert ok(d, "del", SRC).startswith(f"lifted the ban of {SRC} (until ")
    all_pass(netbed, SRC)
    r = ban(d, "del", SRC)
    assert (r.returncode, r.stdout, r.stderr) == (1, "", f"xdpd ban del: {SRC} is not banned (see xdpd ban list)\n")
    ok(d, "del", SAME_64)  # the /64's ban, by another of its addresses
    all_pass(netbed, SRC6)
    assert listed(d) == [] and ok(d, "list") == "no active bans\n"

    # The pins are root's: anyone else is told so.
    r = ban(d, "list", user=65534)
    assert r.returncode == 77 and r.stderr.endswith("(run as root)\n"), r.stderr


def test_for_ends_the_ban_on_time(netbed, xdpd):
    d = xdpd(config(netbed.victim_if, mode="native"))
    probe = netbed.probe([SRC, NEIGHBOUR], interval=0.01)
    assert probe.wait_received(SRC, 10)

    before_unix, before = time.time(), time.monotonic()
    ok(d, "add", SRC, "--for", "2s")
    after = time.monotonic()
    [row] = listed(d)
    assert before_unix + 2 - 0.05 <= row["expires"] <= before_unix + (after - before) + 2 + 0.05
    deadline = monotonic_of(row["expires"])

    time.sleep(deadline - time.monotonic() + 2 * TOLERANCE)
    probe.stop()
    resumed = resumed_at(probe.arrival_times(SRC), after + 0.2)
    assert abs(resumed - deadline) <= TOLERANCE, f"resumed {resumed - deadline:+.2f} s from the deadline"
    assert resumed - after >= 2 - TOLERANCE
    assert probe.lost(NEIGHBOUR) == 0, probe.summary()
    assert listed(d) == []
    all_pass(netbed, SRC)


# --------------------------------------------------------------------------- without a daemon, across restarts


def test_the_table_without_a_daemon_and_across_reload_kill_and_restart(netbed, xdpd):
    d = xdpd(config(netbed.victim_if, mode="native", settings="detach_on_stop: false"), start=False)
    try:
        _without_a_daemon_and_across_restarts(netbed, d)
    finally:
        if d.proc is not None and d.proc.poll() is None:
            d.stop()
        detach_xdp(netbed.victim_ns, netbed.victim_if)  # detach_on_stop: false left it


def _without_a_daemon_and_across_restarts(bed: NetBed, d: XdpdProcess) -> None:
    # Never started: nothing to write to, and nothing gets created.
    for args in (("add", SRC), ("list",), ("del", SRC)):
        r = ban(d, *args)
        assert r.returncode == 69, r.stderr
        assert r.stderr == (f"xdpd ban {args[0]}: no ban table pinned under {d.pin_dir} "
                            "(xdpd creates it when it starts; see --pin-dir)\n")
    assert not os.path.exists(d.pin_dir)

    d.start()
    d.kill()  # no ban yet: the table is empty (and may be disarmed) when the daemon dies
    all_pass(bed, SRC)
    ok(d, "add", SRC, "--reason", "added while down")
    all_dropped(bed, SRC)  # the attached program sees it without any daemon

    d.restart()
    all_dropped(bed, SRC)
    ok(d, "add", NEIGHBOUR, "--for", "1h")
    dropped(bed, "udp", NEIGHBOUR)
    d.reload(config(bed.victim_if, mode="native", settings="detach_on_stop: false",
                    rules="- {name: drop-v6-bad, action: drop, src: \"2001:db8:bad::/64\"}"))
    all_dropped(bed, SRC)
    dropped(bed, "udp", NEIGHBOUR)
    passes(bed, "udp", "198.51.100.7")
    before = listed(d)
    assert [r["address"] for r in before] == [SRC, NEIGHBOUR]

    d.kill()
    all_dropped(bed, SRC)
    dropped(bed, "udp", NEIGHBOUR)
    assert listed(d) == before

    d.restart()
    all_dropped(bed, SRC)
    dropped(bed, "udp", NEIGHBOUR)
    after = listed(d)
    assert after[0] == before[0] == {"address": SRC, "expires": None, "reason": "added while down",
                                     "source": "cli"}
    assert abs(after[1]["expires"] - before[1]["expires"]) < 0.1  # the deadline survived the restart

    assert d.stop() == 0  # detach_on_stop: false, the filter stays
    ok(d, "del", NEIGHBOUR)
    passes(bed, "udp", NEIGHBOUR)
    all_dropped(bed, SRC)
    assert [r["address"] for r in listed(d)] == [SRC]


# --------------------------------------------------------------------------- a limit rule's ban


def test_a_limit_rules_ban_is_listed_with_the_rule_and_ends_on_time(netbed, xdpd):
    d = xdpd(config(netbed.victim_if, mode="native", rules="""
        - {name: udp-flood, action: limit, proto: udp, dst_port: 5353, rate: 10/s, burst: 5, ban: 3s}
    """))
    # The probe's port is not the rule's: it shows the ban (every port) without feeding the limit.
    probe = netbed.probe([SRC, NEIGHBOUR], interval=0.01)
    assert probe.wait_received(SRC, 10)

    passes(netbed, "udp", SRC, 3, dport=5353)  # within the burst
    start = time.monotonic()
    got = netbed.send("udp", SRC, dport=5353, count=30)
    sent = time.monotonic()
    assert got < 30

    [row] = listed(d)
    assert set(row) == {"address", "expires", "reason", "source"}
    assert row["address"] == SRC and row["source"] == "udp-flood"
    deadline = monotonic_of(row["expires"])
    assert start + 3 - 0.05 <= deadline <= sent + 3 + 0.05
    table = ok(d, "list")
    assert "udp-flood" in table and SRC in table
    all_dropped(netbed, SRC)  # every protocol, not only what the rule matches
    assert time.monotonic() < deadline, "the checks took longer than the ban: make the ban longer"
    st = d.status()
    assert st["bans"]["banned_by_rules"] == 1 and st["bans"]["active"] == 1
    assert st["rules"]["udp-flood"]["limited"]["packets"] >= 1

    time.sleep(max(0.0, deadline - time.monotonic()) + 2 * TOLERANCE)
    probe.stop()
    resumed = resumed_at(probe.arrival_times(SRC), sent + 0.2)
    assert abs(resumed - deadline) <= TOLERANCE, f"resumed {resumed - deadline:+.2f} s from the deadline"
    assert probe.lost(NEIGHBOUR) == 0, probe.summary()
    assert listed(d) == []
    all_pass(netbed, SRC)
