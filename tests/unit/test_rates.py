"""``xdpd top``'s arithmetic: two readings of the counters -> rows of rates, busiest first.

No kernel: readings are built by hand.  ``tests/kernel/test_top.py`` runs
the command on a daemon's pins with real traffic.
"""

from __future__ import annotations

import pytest

from xdpd import layout
from xdpd.rates import (IfaceReading, Rate, RuleReading, Snapshot, ZERO, format_rates, human_rate,
                        rate_rows)
from tests.unit.test_pure_imports import KERNEL_SIDE, run_child

LABELS = [v.label for v in layout.Verdict]


def iface(name: str, slot: int = 0, **counts: tuple[int, int]) -> IfaceReading:
    return IfaceReading(name, slot, {label: counts.get(label, (0, 0)) for label in LABELS})


def rule(name: str, position: int, packets: int, nbytes: int, slot: int | None = None, action: str = "drop",
         limited: tuple[int, int] | None = None) -> RuleReading:
    return RuleReading(name, position if slot is None else slot, position, action, (packets, nbytes), limited)


def snap(at: float, interfaces=(), rules=()) -> Snapshot:
    return Snapshot(at, tuple(interfaces), tuple(rules))


def test_rates_are_the_differences_over_the_time_between_the_readings():
    before = snap(10.0, [iface("eth0", pass_rule=(100, 10_000), drop_ban=(50, 3_000))],
                  [rule("a", 1, 1_000, 64_000), rule("cap", 2, 500, 50_000, action="limit", limited=(20, 2_000))])
    after = snap(12.0, [iface("eth0", pass_rule=(300, 30_000), drop_ban=(1_050, 63_000))],
                 [rule("a", 1, 1_200, 76_800), rule("cap", 2, 900, 90_000, action="limit", limited=(220, 22_000))])
    t = rate_rows(before, after)
    assert t.seconds == 2.0
    [e] = t.interfaces
    assert (e.name, e.total, e.drops, e.note) == ("eth0", Rate(600.0, 40_000.0), 500.0, "")
    assert e.verdicts[:2] == (("drop_ban", Rate(500.0, 30_000.0)), ("pass_rule", Rate(100.0, 10_000.0)))
    assert all(r == ZERO for _l, r in e.verdicts[2:])
    assert [label for label, _r in e.verdicts[2:]] == [v for v in LABELS if v not in ("drop_ban", "pass_rule")]
    assert [(r.name, r.rate, r.limited, r.note) for r in t.rules] == [
        ("cap", Rate(200.0, 20_000.0), 100.0, ""), ("a", Rate(100.0, 6_400.0), None, "")]


def test_drops_are_every_drop_verdict_and_not_observe_modes_would_drops():
    before = snap(0.0, [iface("eth0")])
    after = snap(1.0, [iface("eth0", drop_rule=(1, 60), drop_default=(2, 60), drop_malformed=(4, 60),
                             drop_limit=(8, 60), drop_ban=(16, 60), observe_drop_rule=(32, 60),
                             pass_default=(64, 60))])
    [e] = rate_rows(before, after).interfaces
    assert e.drops == 31.0 and e.total.packets == 127.0


def test_interfaces_and_rules_are_sorted_busiest_first_ties_by_name_and_position():
    before = snap(0.0, [iface("a", 0), iface("b", 1), iface("c", 2)],
                  [rule("r1", 1, 0, 0), rule("r2", 2, 0, 0), rule("r3", 3, 0, 0), rule("r4", 4, 0, 0)])
    after = snap(1.0, [iface("a", 0, pass_rule=(5, 500)), iface("b", 1, pass_rule=(9, 90)), iface("c", 2)],
                 [rule("r1", 1, 5, 100), rule("r2", 2, 5, 900), rule("r3", 3, 0, 0), rule("r4", 4, 7, 70)])
    t = rate_rows(before, after)
    assert [i.name for i in t.interfaces] == ["b", "a", "c"]
    assert [r.name for r in t.rules] == ["r4", "r2", "r1", "r3"]  # equal packets: more bytes first
    assert [r.position for r in t.rules] == [4, 2, 1, 3]


def test_a_counter_that_went_down_shows_zero_and_reset_never_a_negative_rate():
    # A reload gave the slot to a rule of the same name after zeroing it, or a
    # restarted daemon with a new map layout counts from zero again.
    before = snap(0.0, [iface("eth0", pass_rule=(1_000, 100_000), drop_rule=(10, 600))],
                  [rule("a", 1, 1_000, 100_000), rule("cap", 2, 50, 5_000, action="limit", limited=(40, 4_000))])
    after = snap(1.0, [iface("eth0", pass_rule=(30, 3_000), drop_rule=(20, 1_200))],
                 [rule("a", 1, 30, 3_000), rule("cap", 2, 80, 8_000, action="limit", limited=(5, 500))])
    t = rate_rows(before, after)
    [e] = t.interfaces
    assert e.note == "reset"
    assert dict(e.verdicts)["pass_rule"] == ZERO and dict(e.verdicts)["drop_rule"] == Rate(10.0, 600.0)
    rows = {r.name: r for r in t.rules}
    assert (rows["a"].rate, rows["a"].note) == (ZERO, "reset")
    assert (rows["cap"].rate, rows["cap"].limited, rows["cap"].note) == (Rate(30.0, 3_000.0), 0.0, "reset")
    assert all(r.rate.packets >= 0 and r.rate.bytes >= 0 and (r.limited or 0) >= 0 for r in t.rules)
    assert all(x.packets >= 0 for i in t.interfaces for _l, x in i.verdicts)


def test_a_slot_reused_by_another_rule_is_new_and_counts_nothing_yet():
    before = snap(0.0, [], [rule("old", 1, 5_000, 300_000, slot=7)])
    after = snap(1.0, [], [rule("new", 1, 40, 2_400, slot=7)])
    [r] = rate_rows(before, after).rules
    assert (r.name, r.rate, r.note) == ("new", ZERO, "new")


def test_the_same_name_in_another_slot_is_not_compared_with_its_old_slot():
    before = snap(0.0, [iface("eth0", 3, pass_rule=(9, 9))], [rule("a", 1, 5_000, 300_000, slot=7)])
    after = snap(1.0, [iface("eth0", 4, pass_rule=(90_000, 9))], [rule("a", 1, 9_000, 500_000, slot=8)])
    t = rate_rows(before, after)
    assert (t.interfaces[0].total, t.interfaces[0].note) == (ZERO, "new")
    assert (t.rules[0].rate, t.rules[0].note) == (ZERO, "new")


def test_rows_that_appear_are_new_and_rows_that_disappear_are_gone():
    before = snap(0.0, [iface("gone", 0, pass_rule=(5, 5)), iface("kept", 1)],
                  [rule("retired", 1, 5, 5), rule("kept", 2, 0, 0)])
    after = snap(1.0, [iface("kept", 1, pass_rule=(3, 300)), iface("fresh", 2, pass_rule=(8, 8))],
                 [rule("kept", 1, 4, 40, slot=2), rule("added", 2, 6, 6, slot=3, action="limit",
                                                       limited=(1, 1))])
    t = rate_rows(before, after)
    assert [(i.name, i.note) for i in t.interfaces] == [("kept", ""), ("fresh", "new")]
    assert [(r.name, r.note, r.limited) for r in t.rules] == [("kept", "", None), ("added", "new", 0.0)]
    assert t.rules[0].position == 1 and t.rules[0].rate == Rate(4.0, 40.0)


def test_readings_out_of_order_are_refused():
    with pytest.raises(ValueError, match="later"):
        rate_rows(snap(2.0), snap(2.0))


@pytest.mark.parametrize("x, text", [(0, "0"), (-3, "0"), (0.04, "0.0"), (2.5, "2.5"), (9.96, "10"), (480.4, "480"),
                                     (999.6, "1.00k"), (1_234, "1.23k"), (45_600, "45.6k"), (999_400, "999k"),
                                     (999_600, "1.00M"), (12_345_678, "12.3M"), (3.2e9, "3.20G"),
                                     (5e15, "5000T")])
def test_human_rate(x, text):
    assert human_rate(x) == text


def test_the_table_shows_verdicts_with_traffic_under_their_interface_then_the_rules():
    before = snap(0.0, [iface("eth0"), iface("eth1", 1)],
                  [rule("allow-dns", 1, 0, 0, action="pass"),
                   rule("dns-flood", 2, 0, 0, action="limit", limited=(0, 0))])
    after = snap(1.0, [iface("eth0", pass_rule=(1_500, 150_000), drop_limit=(12_000, 720_000)), iface("eth1", 1)],
                 [rule("allow-dns", 1, 1_500, 150_000, action="pass"),
                  rule("dns-flood", 2, 13_000, 780_000, action="limit", limited=(12_000, 720_000))])
    lines = format_rates(rate_rows(before, after))
    assert [line.split() for line in lines] == [
        ["INTERFACE", "/", "VERDICT", "PKTS/S", "BYTES/S", "DROPS/S", "NOTE"],
        ["eth0", "13.5k", "870k", "12.0k"],
        ["drop_limit", "12.0k", "720k"],
        ["pass_rule", "1.50k", "150k"],
        ["eth1", "0", "0", "0"],
        [],
        ["#", "RULE", "ACTION", "PKTS/S", "BYTES/S", "LIMITED/S", "NOTE"],
        ["2", "dns-flood", "limit", "13.0k", "780k", "12.0k"],
        ["1", "allow-dns", "pass", "1.50k", "150k", "-"],
    ]
    # columns line up under their headings
    head = lines[0]
    assert lines[1].index("13.5k") + len("13.5k") == head.index("PKTS/S") + len("PKTS/S")
    assert len(format_rates(rate_rows(before, after), all_verdicts=True)) == len(lines) + 2 * len(LABELS) - 2


def test_the_table_of_nothing_says_so():
    assert format_rates(rate_rows(snap(0.0), snap(1.0))) == [
        "INTERFACE / VERDICT    PKTS/S   BYTES/S   DROPS/S  NOTE", "(no interfaces configured)", "",
        "#   RULE  ACTION    PKTS/S   BYTES/S  LIMITED/S  NOTE", "(no rules)"]


def test_rates_import_nothing_kernel_side():
    got = run_child("import xdpd.rates\nresult = None")
    assert "xdpd.rates" in got["modules"]
    assert not KERNEL_SIDE & set(got["modules"]), KERNEL_SIDE & set(got["modules"])
