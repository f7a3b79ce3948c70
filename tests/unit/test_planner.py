"""The planner: desired vs observed -> operations, without a kernel."""

from __future__ import annotations

from xdpd import layout, tables
from xdpd.config import parse_config_text
from xdpd.links import LinkXdp
from xdpd.planner import plan

OURS, OLD_XDPD, FOREIGN = 10, 7, 99


def prepared(yaml_text: str, ifindexes: dict[str, int]):
    config = parse_config_text(yaml_text, "t.yaml")
    slots = tables.assign_slots([r.name for r in config.rules], {}, (), layout.MAX_RULE_SLOTS)
    ifslots = tables.assign_slots([i.name for i in config.interfaces], {}, (), layout.MAX_IFACES)
    image = tables.build_image(config, slots, tables.iface_entries(config, ifindexes, ifslots))
    names = {s: n for n, s in slots.items()}
    digests = {r.name: tables.rule_digest(r) for r in config.rules}
    return config, image, names, digests


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
    config, image, names, digests = prepared(BASE, {"eth1": 2, "eth2": 3})
    observed = links(eth1=("native", OURS), eth2=("generic", OURS))
    p = plan(config, image, image, (names, names), (digests, digests), observed, {"eth1", "eth2"}, OURS, set())
    assert not p and p.lines() == []


def test_fresh_start_attaches_everything_and_adds_every_rule():
    config, image, names, digests = prepared(BASE, {"eth1": 2})
    observed = links(eth1=(None, 0))
    p = plan(config, image, None, ({}, names), ({}, digests), observed, set(), OURS, set())
    assert [str(op) for op in p.links] == ["attach eth1 (auto): nothing attached"]
    assert p.missing == ("eth2",)
    assert p.rules.rules_added == ("bad", "dns")
    assert "interface eth2 is configured but does not exist: nothing to attach" in p.lines()


def test_changes_are_named():
    old_config, old, old_names, old_digests = prepared(BASE, {"eth1": 2, "eth2": 3})
    config, new, names, digests = prepared("""
interfaces: {eth1: {mode: native}}
rules:
  - {name: dns, action: drop, proto: udp, dst_port: 53}
  - {name: bad, action: drop, src: [192.0.2.1, 192.0.2.3, 192.0.2.4]}
  - {name: ntp, action: count, proto: udp, dst_port: 123}
""", {"eth1": 2})
    observed = links(eth1=("generic", OURS), eth2=("generic", OURS), eth3=("native", FOREIGN))
    p = plan(config, new, old, (old_names, names), (old_digests, digests), observed,
             {"eth1", "eth2"}, OURS, set())
    lines = p.lines()
    assert "attach eth1 (native): mode generic -> native" in lines
    assert "detach eth2: no longer in the config" in lines
    assert "add rule ntp" in lines and "change rule bad" in lines
    assert "move rule dns (position or action)" in lines
    assert "addresses: +2 -1" in lines
    assert not any("eth3" in line for line in lines)      # not ours, not configured: left alone


def test_foreign_and_older_programs_on_configured_interfaces_are_replaced():
    config, image, names, digests = prepared(BASE, {"eth1": 2, "eth2": 3})
    observed = links(eth1=("native", FOREIGN), eth2=("generic", OLD_XDPD))
    p = plan(config, image, image, (names, names), (digests, digests), observed, set(), OURS, {OLD_XDPD})
    assert [op.reason for op in p.links] == [f"replace foreign program {FOREIGN}",
                                             f"replace xdpd program {OLD_XDPD}"]
    assert not p.writes_rules


def test_detach_only_what_is_ours():
    config, image, names, digests = prepared("interfaces: {}\nrules: []\n", {})
    observed = links(eth1=("native", FOREIGN), eth2=("generic", OURS))
    p = plan(config, image, image, (names, names), (digests, digests), observed, {"eth1", "eth2"}, OURS, set())
    assert [str(op) for op in p.links] == ["detach eth2: no longer in the config"]
