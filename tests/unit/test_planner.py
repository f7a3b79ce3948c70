"""The planner: desired vs observed -> one Plan, without a kernel."""

from __future__ import annotations

import pytest

from xdpd import layout
from xdpd.config import parse_config_text
from xdpd.observed import IfaceSlot, LinkXdp, Observed, RuleSlot
from xdpd.plan import LinkAction, PlanError, plan

OURS, OLD_XDPD, FOREIGN = 10, 7, 99


def enforced(yaml_text: str, links: dict[str, LinkXdp], **extra) -> Observed:
    """What the kernel holds after a daemon enforced ``yaml_text`` on ``links``."""
    config = parse_config_text(yaml_text, "t.yaml")
    p = plan(config, Observed(links=links, prog_id=OURS, active=None))
    ifaces = {slot: IfaceSlot(i.name, i.ifindex, "none") for slot, i in p.iface_slots.items()}
    return Observed(links=links, prog_id=OURS, active=p.image, rule_slots=p.rule_slots,
                    iface_slots=ifaces, **extra)


BASE = """
interfaces: {eth1: {mode: auto}, eth2: {mode: generic}}
rules:
  - {name: bad, action: drop, src: [192.0.2.1, 192.0.2.2]}
  - {name: dns, action: drop, proto: udp, dst_port: 53}
"""


def links(**modes) -> dict[str, LinkXdp]:
    out = {}
    for i, (name, (mode, prog)) in enumerate(sorted(modes.items()), start=2):
        out[name] = LinkXdp(name, i, mode, prog)
    return out


def test_applied_state_plans_nothing():
    config = parse_config_text(BASE, "t.yaml")
    observed = enforced(BASE, links(eth1=("native", OURS), eth2=("generic", OURS)))
    p = plan(config, observed)
    assert not p and p.lines() == []
    assert not p.write


def test_fresh_start_attaches_everything_and_adds_every_rule():
    config = parse_config_text(BASE, "t.yaml")
    p = plan(config, Observed(links=links(eth1=(None, 0)), prog_id=OURS, active=None))
    assert [str(op) for op in p.links] == ["attach eth1 (auto): nothing attached"]
    assert p.links[0].action is LinkAction.ATTACH and not p.links[0].repair
    assert p.missing == ("eth2",)
    assert p.changes.rules_added == ("bad", "dns")
    assert p.write and p.fresh_rule_slots == frozenset(p.rule_slots)
    assert "interface eth2 is configured but does not exist: nothing to attach" in p.lines()


def test_changes_are_named():
    observed = enforced(BASE, links(eth1=("generic", OURS), eth2=("generic", OURS), eth3=("native", FOREIGN)))
    config = parse_config_text("""
interfaces: {eth1: {mode: native}}
rules:
  - {name: dns, action: drop, proto: udp, dst_port: 53}
  - {name: bad, action: drop, src: [192.0.2.1, 192.0.2.3, 192.0.2.4]}
  - {name: ntp, action: count, proto: udp, dst_port: 123}
""", "t.yaml")
    p = plan(config, observed)
    lines = p.lines()
    assert "attach eth1 (native): mode generic -> native" in lines
    assert "detach eth2: no longer in the config" in lines
    assert "add rule ntp" in lines and "change rule bad" in lines
    assert "move rule dns (position or action)" in lines
    assert "addresses: +2 -1" in lines
    assert not any("eth3" in line for line in lines)      # not ours, not configured: left alone
    assert [op.action for op in p.links] == [LinkAction.CHANGE_MODE, LinkAction.DETACH]


def test_foreign_and_older_programs_on_configured_interfaces_are_replaced():
    config = parse_config_text(BASE, "t.yaml")
    observed = enforced(BASE, links(eth1=("native", FOREIGN), eth2=("generic", OLD_XDPD)),
                        xdpd_programs=frozenset({OLD_XDPD}))
    p = plan(config, observed)
    assert [op.reason for op in p.links] == [f"replace foreign program {FOREIGN}",
                                             f"replace xdpd program {OLD_XDPD}"]
    assert all(op.repair for op in p.links)      # managed before: drift
    assert not p.write


def test_a_repair_on_a_recreated_interface_says_so():
    """Same name, another ifindex: the interface was deleted and created again, nobody fought
    over it (the daemon's repair rate limit leaves such repairs alone)."""
    config = parse_config_text(BASE, "t.yaml")
    observed = enforced(BASE, links(eth1=(None, 0), eth2=("generic", OURS)))
    moved = {**observed.links, "eth1": LinkXdp("eth1", 42, None, 0)}
    same = plan(config, observed).links
    again = plan(config, Observed(links=moved, prog_id=OURS, active=observed.active,
                                  rule_slots=observed.rule_slots, iface_slots=observed.iface_slots)).links
    assert [(op.reason, op.repair, op.recreated) for op in same] == [("nothing attached", True, False)]
    assert [(op.reason, op.repair, op.recreated) for op in again] == [("interface re-created", True, True)]


def test_defunct_links_are_unpinned_and_named():
    config = parse_config_text(BASE, "t.yaml")
    observed = enforced(BASE, links(eth1=("native", OURS), eth2=("generic", OURS)), defunct_links=("7",))
    p = plan(config, observed)
    assert p and p.unpin == ("7",) and not p.links and not p.write
    assert p.lines() == ["unpin defunct XDP link links/7 (its interface is gone or it was detached)"]


def test_detach_only_what_is_ours():
    observed = enforced(BASE, links(eth1=("native", FOREIGN), eth2=("generic", OURS)))
    config = parse_config_text("interfaces: {}\nrules: []\n", "t.yaml")
    p = plan(config, observed)
    assert [str(op) for op in p.links] == ["detach eth2: no longer in the config"]


def test_slots_are_stable_and_removed_rules_keep_theirs_until_the_other_bank_is_rewritten():
    observed = enforced(BASE, links(eth1=("native", OURS)))
    config = parse_config_text("""
interfaces: {eth1: {mode: auto}}
rules:
  - {name: new, action: drop, proto: tcp}
  - {name: dns, action: drop, proto: udp, dst_port: 53}
""", "t.yaml")
    p = plan(config, observed)
    old = {s.name: slot for slot, s in observed.rule_slots.items()}
    new = {s.name: slot for slot, s in p.rule_slots.items()}
    assert new["dns"] == old["dns"]
    assert new["new"] != old["bad"]                    # still read by the active bank
    assert p.fresh_rule_slots == frozenset({new["new"]})
    assert {s.name for s in p.rule_slots_during.values()} == {"bad", "dns", "new"}
    assert p.rule_slots[new["new"]] == RuleSlot("new", layout.ACT_DROP, p.rule_slots[new["new"]].digest)


def test_an_interface_beyond_the_programs_ifindex_range_is_refused_before_anything_is_done():
    config = parse_config_text(BASE, "t.yaml")
    big = {"eth1": LinkXdp("eth1", layout.IFINDEX_MAX, None, 0)}
    with pytest.raises(PlanError, match="eth1: ifindex"):
        plan(config, Observed(links=big, prog_id=OURS, active=None))


def test_the_plan_holds_one_address_diff_that_counts_and_writes_the_change():
    # The one diff of a change: the planner's counts come from it, and it
    # holds exactly the entries a bank that holds the active image needs.
    big = ", ".join(f"198.51.100.{i}" for i in range(1, 101))
    before = f"rules: [{{name: bad, action: drop, src: [{big}, 203.0.113.0/24]}}]"
    after = before.replace("198.51.100.7,", "192.0.2.9,").replace("203.0.113.0/24", "203.0.113.0/25")
    observed = enforced(before, {})
    p = plan(parse_config_text(after, "t.yaml"), observed)
    assert p.addrs.base is observed.active and p.addrs.image is p.image
    entries = p.addrs.for_maps(("src", 4))
    assert entries.exact.upserts == ((1, bytes([192, 0, 2, 9])),)
    assert entries.exact.deletes == bytes([198, 51, 100, 7])
    assert entries.lpm_upserts == ((bytes([203, 0, 113, 0]), 25, 1),)
    assert entries.lpm_deletes == ((bytes([203, 0, 113, 0]), 24),)
    assert "addresses: +2 -2" in p.lines()
    # Unchanged: an empty diff, and no write.
    p = plan(parse_config_text(before, "t.yaml"), observed)
    assert not any(p.addrs.tables.values()) and not p.write


def test_a_small_table_is_not_in_the_maps_so_its_map_entries_differ_from_its_diff():
    small = "rules: [{name: bad, action: drop, src: [192.0.2.1]}]"
    many = ", ".join(f"198.51.100.{i}" for i in range(1, layout.SMALL_MAX + 2))
    p = plan(parse_config_text(f"rules: [{{name: bad, action: drop, src: [192.0.2.1, {many}]}}]", "t.yaml"),
             enforced(small, {}))
    assert len(p.addrs.tables[("src", 4)].exact.upserts[0][1]) == 4 * (layout.SMALL_MAX + 1)
    # The hash map held nothing (the one address was in the small table): all go in.
    assert len(p.addrs.for_maps(("src", 4)).exact.upserts[0][1]) == 4 * (layout.SMALL_MAX + 2)


def test_an_address_edit_reuses_the_header_tables_and_builds_what_a_fresh_build_does():
    from xdpd.plan import ImageCache
    from xdpd.tables import build_image
    cache = ImageCache()
    slots = {"bad": 0, "dns": 1}

    def built(text: str):
        config = parse_config_text(text, "t.yaml")
        image, _ = cache.build(config, slots, [])
        assert image == build_image(config, slots, [])
        return image

    first = built(BASE)
    edited = built(BASE.replace("192.0.2.2", "192.0.2.3"))
    assert edited.addrs != first.addrs and edited.dport_l4 is first.dport_l4
    ports = built(BASE.replace("dst_port: 53", "dst_port: 54"))
    assert ports.dport_l4 != edited.dport_l4
