"""Issue 12, start and restart: a restart reuses the pinned program when it is a build of the same inputs.

What an operator sees: the log says ``program_reused`` (or ``program_compiled``
and why), ``xdpd status`` reports the same program id and link id as
before, and the traffic says the rules still hold.  Anything that changes
the build compiles a new program, which replaces the old one in place while
a probe streams through the restart (no blocked datagram through, no
allowed one lost), as an upgrade must.
"""

from __future__ import annotations

import os
import re
import shutil

import pytest

from tests.testbed.daemon import XdpdProcess, config
from tests.testbed.netbed import NetBed
from tests.testbed.xdplink import XdpMonitor, detach_xdp
from xdpd import buildid
from xdpd.compiler import find_source

pytestmark = pytest.mark.kernel

BAD_V4, BAD_V6, GOOD_V4 = "192.0.2.1", "2001:db8:bad::1", "198.51.100.1"
RULES = f"[{{name: bad, action: drop, src: [{BAD_V4}, '{BAD_V6}']}}]"


def _config(bed: NetBed, settings: str = "detach_on_stop: false") -> str:
    return config(bed.victim_if, RULES, mode="native", settings=settings)


def _program_event(d: XdpdProcess) -> tuple[str, int, str]:
    """(``program_reused`` or ``program_compiled``, its prog_id, its reason) from the last start's log."""
    for line in d.stderr_since_start().splitlines():
        m = re.search(r"(program_reused|program_compiled)\b.*", line)
        if m:
            prog = re.search(r"prog_id=(\d+)", line)
            reason = re.search(r"reason=(.*)", line)
            return m.group(1), int(prog.group(1)) if prog else 0, reason.group(1) if reason else ""
    raise AssertionError(f"no program_reused/program_compiled event:\n{d.stderr_since_start()}")


def _attachment(d: XdpdProcess) -> tuple[int, int]:
    """(prog_id, link_id) of the victim interface, from ``xdpd status``; checks it is the pinned program."""
    st = d.status()
    i = st["interfaces"][d.bed.victim_if]
    assert i["attached"] and i["prog_id"] == st["prog_id"] > 0, (i, st["prog_id"])
    return i["prog_id"], i["link_id"]


def _blocked(bed: NetBed) -> None:
    assert bed.send("udp", BAD_V4, count=2) == 0
    assert bed.send("udp", BAD_V6, count=2) == 0
    assert bed.send("udp", GOOD_V4, count=2) == 2


def test_a_restart_reuses_the_program_and_a_stop_that_detached_attaches_it_again(netbed: NetBed, xdpd) -> None:
    """First start compiles; kill -9 and restart: the same program (and link) is adopted, nothing
    compiled, rules and counters as before; a SIGTERM that detaches, then a start: the pinned
    program is attached again, still without a compile."""
    d = xdpd(_config(netbed))
    event, prog, _ = _program_event(d)
    assert event == "program_compiled"
    assert _attachment(d)[0] == prog
    prog, link = _attachment(d)
    _blocked(netbed)

    assert d.kill() == -9
    d.restart()
    event, reused, reason = _program_event(d)
    assert (event, reused) == ("program_reused", prog), d.stderr_since_start()
    assert "same inputs" in reason
    assert _attachment(d) == (prog, link)
    _blocked(netbed)
    assert d.rule_packets()["bad"] == 8  # both starts' drops, in the same counter

    d.reload(_config(netbed, settings="detach_on_stop: true"))
    assert d.stop() == 0 and "detached" in d.stderr_since_start()
    d.restart()
    event, reused, _ = _program_event(d)
    assert (event, reused) == ("program_reused", prog), d.stderr_since_start()
    assert _attachment(d)[0] == prog
    _blocked(netbed)
    assert d.stop() == 0


def test_a_pin_dir_without_a_build_record_compiles_then_records(netbed: NetBed, xdpd) -> None:
    """A program pinned by an older xdpd has no build record: the next start compiles (and says so),
    the one after reuses what that start recorded.  A record naming another program compiles too."""
    d = xdpd(_config(netbed))
    first, _ = _attachment(d)
    assert d.kill() == -9
    os.unlink(os.path.join(d.pin_dir, buildid.PIN_NAME))  # what an older xdpd leaves
    d.restart()
    event, second, reason = _program_event(d)
    assert event == "program_compiled" and "no build identity recorded" in reason, reason
    assert second != first and _attachment(d)[0] == second
    _blocked(netbed)

    assert d.kill() == -9
    d.restart()
    assert _program_event(d)[:2] == ("program_reused", second)

    assert d.kill() == -9
    _, identity = buildid.read_record(d.pin_dir)
    buildid.write_record(d.pin_dir, first, identity)  # a record left for a program no longer pinned
    d.restart()
    event, third, reason = _program_event(d)
    assert event == "program_compiled" and f"is for program {first}" in reason, reason
    assert third != second
    _blocked(netbed)
    assert d.stop() == 0
    detach_xdp(netbed.victim_ns, netbed.victim_if)


@pytest.mark.parametrize("change", ["source", "capacity"])
def test_a_changed_build_compiles_and_the_old_program_filters_until_replaced(netbed: NetBed, xdpd, tmp_path,
                                                                           change: str) -> None:
    """An upgrade that changes the program (its C source) or a capacity (a -D parameter): the restart
    compiles a new program, says why, and swaps it in on the same link while a probe streams: no
    blocked datagram arrives, no allowed one is lost, the interface never goes without XDP."""
    d = xdpd(_config(netbed))
    old_prog, link = _attachment(d)
    assert d.kill() == -9
    if change == "source":
        src = tmp_path / "xdpd.bpf.c"
        shutil.copy(find_source(), src)
        with open(src, "a") as f:
            f.write("\n/* an upgraded program */\n")
        d.env["XDPD_BPF_SOURCE"] = str(src)
    else:
        d.write_config(config(netbed.victim_if, RULES, mode="native",
                              settings="detach_on_stop: false, max_limit_sources: 4096"))
    sources = [BAD_V4, GOOD_V4]
    with XdpMonitor(netbed.victim_ns, netbed.victim_if) as monitor:
        probe = netbed.probe(sources, dport=4244, interval=0.002)
        try:
            assert probe.wait_received(GOOD_V4, 20), probe.summary()
            d.restart()
            assert probe.wait_received(GOOD_V4, 50), probe.summary()
        finally:
            probe.stop()
    event, new_prog, reason = _program_event(d)
    assert event == "program_compiled" and "layout" in reason, reason
    assert new_prog != old_prog and _attachment(d) == (new_prog, link)
    summary = probe.summary()
    assert probe.received(BAD_V4) == 0, summary
    assert probe.lost(GOOD_V4) == 0, summary
    assert not monitor.gaps(), monitor.events
    assert "unpinned_stale_maps" in d.stderr_since_start()
    _blocked(netbed)

    assert d.kill() == -9
    d.restart()  # the new build is reused from now on
    assert _program_event(d)[:2] == ("program_reused", new_prog)
    assert d.stop() == 0
    detach_xdp(netbed.victim_ns, netbed.victim_if)
