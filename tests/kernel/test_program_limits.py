"""Limit rules and the ban table in the XDP program (BPF_PROG_TEST_RUN, crafted frames).

Frames are run one program run at a time, back to back: a few hundred runs
take milliseconds, so at the rates used here (10/s and the like) the
buckets refill by a small fraction of a packet during a burst, and what
passes is exactly the burst.  Refill is checked with sleeps of a known
length, with one packet of slack for the clock.

The ban table is shared by every test of the session's program (it is not
banked): the ``bans`` fixture empties it after each test.
"""

from __future__ import annotations

import time
from typing import Iterator

import pytest

from tests.testbed.frames import frame_v4, frame_v6
from tests.testbed.program import LoadedProgram
from xdpd import layout
from xdpd.bans import BanTable, parse_source
from xdpd.layout import Verdict

pytestmark = pytest.mark.kernel

SRC_A, SRC_B, DST = "198.51.100.1", "198.51.100.2", "203.0.113.9"
DNS_A = frame_v4("udp", SRC_A, DST, 999, 53)
DNS_B = frame_v4("udp", SRC_B, DST, 999, 53)
WEB_A = frame_v4("tcp", SRC_A, DST, 999, 443)


@pytest.fixture
def bans(prog: LoadedProgram) -> Iterator[BanTable]:
    table = prog.ban_table()
    try:
        yield table
    finally:
        for r in table.records():
            table.delete(r.key)
        table.sweep()
        table.close()


def counts(prog: LoadedProgram) -> dict[str, int]:
    return {v.label: prog.verdict_count(v) for v in Verdict}


def delta(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    return {k: after[k] - before[k] for k in after if after[k] != before[k]}


def test_a_shared_limit_passes_its_burst_then_drops(prog, bans):
    prog.load("""
        rules:
          - {name: dns-cap, action: limit, proto: udp, dst_port: 53, rate: 10/s, burst: 5, per: rule}
    """)
    before = counts(prog)
    got = prog.runs(DNS_A, 20) + prog.runs(DNS_B, 10)
    assert got == ["pass"] * 5 + ["drop"] * 25         # one bucket for every source
    assert delta(before, counts(prog)) == {"pass_default": 5, "drop_limit": 25}
    assert prog.rule("dns-cap")[0] == 30                 # matches: within and over the rate
    assert prog.limited("dns-cap") == (25, 25 * len(DNS_A))
    assert prog.run(WEB_A) == "pass"                     # not matched: never limited
    # 10/s: five packets' worth, and more than the coarse clock's tick (4 ms at
    # HZ=250), which it may read late: 0.5 s alone once gave four.
    time.sleep(0.55)
    assert prog.runs(DNS_A, 10).count("pass") in (5, 6)


def test_a_packet_within_the_rate_goes_on_to_later_rules(prog, bans):
    prog.load("""
        rules:
          - {name: count-all, action: count}
          - {name: cap, action: limit, proto: udp, rate: 1/h, burst: 3, per: rule}
          - {name: count-after, action: count}
          - {name: no-dns, action: drop, proto: udp, dst_port: 53}
    """, default="drop")
    before = counts(prog)
    ntp = frame_v4("udp", SRC_A, DST, 999, 123)
    assert prog.runs(ntp, 2) + prog.runs(DNS_A, 3) == ["drop", "drop", "drop", "drop", "drop"]
    # 3 within the rate: 2 NTP reach the default (drop), 1 DNS the no-dns rule; 2 over the rate.
    assert delta(before, counts(prog)) == {"drop_default": 2, "drop_rule": 1, "drop_limit": 2}
    assert prog.rule("count-all")[0] == 5                # before the limit: everything
    assert prog.rule("count-after")[0] == 3              # after it: what the limit let through
    assert prog.rule("no-dns")[0] == 1
    assert prog.limited("cap")[0] == 2


def test_per_source_buckets_and_ipv6_sources_by_64(prog, bans):
    prog.load("""
        rules:
          - {name: per-src, action: limit, proto: udp, rate: 1/h, burst: 2}
    """)
    v6 = lambda a: frame_v6("udp", a, "2001:db8:ffff::9", 999, 53)  # noqa: E731
    assert prog.runs(DNS_A, 4) == ["pass", "pass", "drop", "drop"]
    assert prog.runs(DNS_B, 3) == ["pass", "pass", "drop"]        # another source, another bucket
    assert prog.runs(v6("2001:db8:1:2::1"), 1) + prog.runs(v6("2001:db8:1:2:ffff::7"), 2) == \
        ["pass", "pass", "drop"]                                  # one /64: one bucket
    assert prog.runs(v6("2001:db8:1:3::1"), 3) == ["pass", "pass", "drop"]


def test_a_byte_rate_counts_frame_bytes(prog, bans):
    prog.load("""
        rules:
          - {name: bytes, action: limit, proto: udp, rate: 1kB/h, burst: 3000, per: rule}
    """)
    big = frame_v4("udp", SRC_A, DST, 999, 53, payload=bytes(958))    # 1000-byte frame
    small = frame_v4("udp", SRC_A, DST, 999, 53, payload=bytes(58))   # 100 bytes
    assert len(big) == 1000 and len(small) == 100
    assert prog.runs(big, 5) == ["pass"] * 3 + ["drop"] * 2
    prog.load("""
        rules:
          - {name: bytes2, action: limit, proto: udp, rate: 1kB/h, burst: 3000, per: rule}
    """)
    got = prog.runs(small, 40)
    assert got == ["pass"] * 30 + ["drop"] * 10
    assert prog.limited("bytes2") == (10, 1000)


def test_going_over_with_a_ban_bans_the_source_for_every_protocol(prog, bans):
    prog.load("""
        rules:
          - {name: ping-flood, action: limit, proto: udp, dst_port: 53, rate: 1/h, burst: 2, ban: 2s}
          - {name: web, action: pass, proto: tcp, dst_port: 443}
    """)
    before = counts(prog)
    assert prog.runs(DNS_A, 3) == ["pass", "pass", "drop"]
    rec = bans.get(parse_source(SRC_A))
    assert rec is not None and rec.rule_slot == prog.slots["ping-flood"] and rec.reason == ""
    assert 1.5e9 < rec.expires_ns - time.monotonic_ns() <= 2e9
    assert bans.armed() and bans.marked(parse_source(SRC_A))
    # Banned: dropped before any rule, whatever it sends; other sources are untouched.
    assert prog.runs(WEB_A, 2) + prog.runs(DNS_A, 1) == ["drop"] * 3
    assert prog.runs(DNS_B, 1) == ["pass"]
    assert delta(before, counts(prog)) == {"pass_default": 3, "drop_limit": 1, "drop_ban": 3}
    assert prog.rule("web")[0] == 0
    assert layout.Verdict.DROP_BAN.label == "drop_ban"
    # The deadline is the program's to check: no sweep needed.
    time.sleep(max(0.0, (rec.expires_ns - time.monotonic_ns()) / 1e9) + 0.05)
    assert prog.run(WEB_A) == "pass"


def test_observe_mode_counts_what_a_limit_would_drop_and_bans_nobody(prog, bans):
    prog.load("""
        interfaces:
          eth0: {observe: true}
        rules:
          - {name: cap, action: limit, proto: udp, rate: 1/h, burst: 1, ban: 1h}
    """, iface="eth0")
    before = counts(prog)
    assert prog.runs(DNS_A, 4) == ["pass"] * 4
    assert delta(before, counts(prog)) == {"pass_default": 1, "observe_drop_limit": 3}
    assert bans.records() == []


def test_cli_bans_drop_until_deleted_or_expired(prog, bans):
    prog.load("""
        rules:
          - {name: allow-a, action: pass, src: [198.51.100.1]}
    """)
    key = parse_source(SRC_A)
    bans.add(key, None, "test")
    before = counts(prog)
    assert prog.run(WEB_A) == "drop"                     # before any rule, even a pass rule
    assert prog.run(frame_v4("icmp", SRC_A, DST)) == "drop"
    assert prog.run(DNS_B) == "pass"
    assert delta(before, counts(prog)) == {"drop_ban": 2, "pass_default": 1}
    assert bans.delete(key)
    assert prog.run(WEB_A) == "pass"
    bans.add(key, 0.5, "short")
    assert prog.run(WEB_A) == "drop"
    time.sleep(0.6)
    assert prog.run(WEB_A) == "pass"
    six = parse_source("2001:db8:7:7::1")                 # a /64
    bans.add(six, None)
    assert prog.run(frame_v6("tcp", "2001:db8:7:7:abcd::9", "2001:db8:ffff::9", 999, 443)) == "drop"
    assert prog.run(frame_v6("tcp", "2001:db8:7:8::9", "2001:db8:ffff::9", 999, 443)) == "pass"


def test_the_sweep_disarms_an_empty_table_and_a_new_ban_arms_it_again(prog, bans):
    prog.load("rules: []")
    key = parse_source(SRC_A)
    bans.add(key, 0.2)
    assert bans.armed()
    time.sleep(0.3)
    r = bans.sweep()
    assert (r.expired, r.active, r.disarmed) == (1, 0, True)
    assert not bans.armed() and not bans.marked(key)
    assert prog.run(WEB_A) == "pass"
    bans.add(key, None)                                  # `xdpd ban add` while disarmed
    assert bans.armed() and prog.run(WEB_A) == "drop"
    assert bans.sweep().disarmed is False                # not empty: stays armed


def test_a_full_ban_table_refuses_and_counts_but_still_limits():
    """A program built with room for 4 bans: the fifth ban a rule makes is refused
    and counted, filtering goes on, and only sources over the rate are dropped."""
    from xdpd.compiler import BuildParams
    lp = LoadedProgram(f"/sys/fs/bpf/xdpdt-small-{time.monotonic_ns()}",
                       params=BuildParams(max_exact=1024, max_bans=4, max_limit_sources=64))
    try:
        lp.load("""
            rules:
              - {name: cap, action: limit, proto: udp, rate: 1/h, burst: 1, ban: 1h}
        """)
        for i in range(6):
            src = f"198.51.100.{10 + i}"
            assert lp.runs(frame_v4("udp", src, DST, 999, 53), 2) == ["pass", "drop"], src
        by_rule, full = lp.maps.ban_stats()
        assert (by_rule, full) == (4, 2)
        with lp.ban_table() as t:
            assert len(t.records()) == 4 and t.capacity == 4
        # Banned (first four) are dropped for anything; the refused two only over the rate.
        assert lp.run(frame_v4("tcp", "198.51.100.10", DST, 999, 443)) == "drop"
        assert lp.run(frame_v4("tcp", "198.51.100.15", DST, 999, 443)) == "pass"
        assert lp.run(frame_v4("tcp", "198.51.100.99", DST, 999, 443)) == "pass"
    finally:
        lp.close()


def test_a_new_rule_in_a_retired_rules_slot_starts_with_full_buckets(prog, bans):
    prog.load("rules: [{name: old-cap, action: limit, proto: udp, rate: 1/h, burst: 1}]")
    assert prog.runs(DNS_A, 2) == ["pass", "drop"]      # spent for an hour
    old_slot = prog.slots["old-cap"]
    prog.load("rules: [{name: new-cap, action: limit, proto: udp, rate: 1/h, burst: 1}]")
    prog.load("rules: [{name: new-cap, action: limit, proto: udp, rate: 1/h, burst: 1},"
              " {name: newer-cap, action: limit, proto: udp, rate: 1/h, burst: 1}]")
    assert old_slot in (prog.slots["new-cap"], prog.slots["newer-cap"])
    assert prog.runs(DNS_A, 2) == ["pass", "drop"]      # new-cap's own bucket; newer-cap's then
    prog.load("rules: [{name: new-cap, action: limit, proto: udp, rate: 1/h, burst: 1}]")
    assert prog.runs(DNS_A, 1) == ["drop"]              # the same rule keeps its bucket


def test_bans_move_to_a_table_of_another_capacity_and_the_old_one_goes():
    """max_bans changed: the next program gets a ban table of the new size, and
    migrate() carries the active bans over (deadlines, reasons and sources kept)."""
    from xdpd import bans as bans_mod, pins
    from xdpd.compiler import BuildParams
    pin_dir = f"/sys/fs/bpf/xdpdt-migrate-{time.monotonic_ns()}"
    old = LoadedProgram(pin_dir, params=BuildParams(max_exact=1024, max_bans=4, max_limit_sources=64))
    new = None
    try:
        with old.ban_table() as t:
            t.add(parse_source(SRC_A), 600, "kept")
            t.add(parse_source("2001:db8:7:7::1"), None, "forever")
            t.add(parse_source(SRC_B), 0.01, "expired")
        time.sleep(0.05)
        new = LoadedProgram(pin_dir, params=BuildParams(max_exact=1024, max_bans=8, max_limit_sources=64))
        new.load("rules: []")
        new_dir = pins.bans_dir(pin_dir, 8)
        assert bans_mod.migrate(pin_dir, new_dir, new.maps["state"]) == (2, 0)
        assert pins.ban_dirs(pin_dir) == [new_dir]
        with new.ban_table() as t:
            got = {r.address: (r.reason, r.expires_ns) for r in t.records()}
        assert set(got) == {SRC_A, "2001:db8:7:7::/64"}
        assert got["2001:db8:7:7::/64"] == ("forever", 0)
        assert got[SRC_A][0] == "kept" and 590e9 < got[SRC_A][1] - time.monotonic_ns() < 600e9
        assert new.run(WEB_A) == "drop" and new.run(DNS_B) == "pass"
    finally:
        old.close()
        if new is not None:
            new.close()


def test_samples_reach_the_ring_buffer_at_their_rate_with_the_verdict(prog, bans):
    """sample: 5/s holds one second of samples: of 20 back-to-back packets the first
    5 are sampled, with their headers and final verdict; a rule without sample
    (and a count rule before the deciding one, walked) adds none."""
    from xdpd import bpfsys
    from xdpd.samples import describe, find_ring
    prog.load("""
        rules:
          - {name: counted, action: count, proto: tcp}
          - {name: no-ssh, action: drop, proto: tcp, dst_port: 22, sample: 5/s}
          - {name: quiet, action: drop, proto: udp}
    """)
    got: list[bytes] = []
    fd = find_ring(prog.compiled.prog_fd)
    ring = bpfsys.RingBuffer(fd, got.append)
    try:
        ring.poll(0)
        got.clear()                                     # whatever earlier tests left
        ssh = frame_v4("tcp", SRC_A, DST, 40000, 22, tcp_flags="S")
        assert prog.runs(ssh, 20) == ["drop"] * 20
        assert prog.runs(DNS_A, 5) == ["drop"] * 5      # no sample on 'quiet'
        ring.poll(0)
    finally:
        ring.close()
        import os
        os.close(fd)
    assert len(got) == 5
    import ctypes as ct
    s = layout.Sample.from_buffer_copy(got[0].ljust(ct.sizeof(layout.Sample), b"\0"))
    fields = describe(s, "r", "i")
    assert (s.rule_slot, s.ifindex) == (prog.slots["no-ssh"], 1)
    assert {k: fields[k] for k in ("verdict", "src", "dst", "proto", "sport", "dport", "tcp_flags")} == {
        "verdict": "drop_rule", "src": SRC_A, "dst": DST, "proto": "tcp", "sport": 40000, "dport": 22,
        "tcp_flags": "syn"}
