"""Rules scoped to interfaces, and observe mode, in the XDP program (BPF_PROG_TEST_RUN).

BPF_PROG_TEST_RUN always reports ingress ifindex 1: ``prog.load(yaml,
iface=NAME)`` makes ifindex 1 play the configured interface NAME (its entry
built by the daemon's own ``tables.iface_entries``), so loading the same
YAML as ``pub`` and then as ``priv`` shows what each interface would do.
"""

from __future__ import annotations

import pytest

from tests.kernel.test_program import BASE_FRAMES
from tests.testbed.frames import ETH_P_8021Q, frame_arp_request, frame_v4, frame_v6
from xdpd.layout import Verdict

pytestmark = pytest.mark.kernel

DST4, DST6 = "203.0.113.9", "2001:db8:ffff::9"
TWO_IFACES = """
    interfaces:
      pub: {default: drop}
      priv: {}
    rules:
      - {name: admin-ssh, action: pass, interfaces: [priv], proto: tcp, dst_port: 22}
      - {name: no-ssh, action: drop, proto: tcp, dst_port: 22}
      - {name: web, action: pass, interfaces: [pub], proto: tcp, dst_port: [80, 443]}
      - {name: count-priv, action: count, interfaces: [priv]}
      - {name: no-dns-priv, action: drop, interfaces: [priv], proto: udp, dst_port: 53}
      - {name: blocklist, action: drop, src: [192.0.2.0/24, "2001:db8:bad::/48"]}
      - {name: both-ttl, action: drop, interfaces: [pub, priv], ttl: 1}
"""


def test_a_rule_scoped_to_another_interface_does_not_match(prog):
    """One rule list, two interfaces: each sees the unscoped rules and its own, in config order."""
    frames = {
        "ssh v4": frame_v4("tcp", "198.51.100.1", DST4, 999, 22),
        "ssh v6": frame_v6("tcp", "2001:db8:900d::1", DST6, 999, 22),
        "web": frame_v4("tcp", "198.51.100.1", DST4, 999, 443),
        "dns": frame_v4("udp", "198.51.100.1", DST4, 999, 53),
        "dns v6 vlan": frame_v6("udp", "2001:db8:900d::1", DST6, 999, 53, vlans=[(ETH_P_8021Q, 3)]),
        "blocked web": frame_v4("tcp", "192.0.2.7", DST4, 999, 443),
        "blocked ntp": frame_v6("udp", "2001:db8:bad::7", DST6, 999, 123),
        "ntp": frame_v4("udp", "198.51.100.1", DST4, 999, 123),
        "ttl 1": frame_v4("udp", "198.51.100.1", DST4, 999, 123, ttl=1),
    }
    expected = {
        # pub: no admin-ssh, web passes first, default drop
        "pub": {"ssh v4": "drop", "ssh v6": "drop", "web": "pass", "dns": "drop", "dns v6 vlan": "drop",
                "blocked web": "pass", "blocked ntp": "drop", "ntp": "drop", "ttl 1": "drop"},
        # priv: admin-ssh first, no web rule (blocklist decides), default pass
        "priv": {"ssh v4": "pass", "ssh v6": "pass", "web": "pass", "dns": "drop", "dns v6 vlan": "drop",
                 "blocked web": "drop", "blocked ntp": "drop", "ntp": "pass", "ttl 1": "drop"},
    }
    for iface in ("pub", "priv", "pub"):
        prog.load(TWO_IFACES, iface=iface)
        counted = prog.rule("count-priv")[0]
        prog.check([(f"{iface}: {what}", f, expected[iface][what]) for what, f in frames.items()])
        # count-priv counts on priv only, every frame that reaches it (all but ssh)
        assert prog.rule("count-priv")[0] - counted == (7 if iface == "priv" else 0), iface


def test_rules_scoped_elsewhere_only_leave_the_default(prog):
    """An interface none of whose rules apply gets its default for every IP packet."""
    yaml = """
        interfaces:
          a: {default: drop}
          b: {}
        rules:
          - {name: b-pass, action: pass, interfaces: [b]}
    """
    prog.load(yaml, iface="a")
    prog.check([("a: udp", frame_v4("udp", "198.51.100.1", DST4), "drop"),
                 ("a: arp", frame_arp_request("203.0.113.1", "203.0.113.2"), "pass")])
    prog.load(yaml.replace("a: {default: drop}", "a: {}").replace("b: {}", "b: {default: drop}"), iface="b")
    prog.check([("b: udp", frame_v4("udp", "198.51.100.1", DST4), "pass")])


def verdict_deltas(prog, before: dict[Verdict, int]) -> dict[str, int]:
    return {v.name.lower(): n for v in Verdict if (n := prog.verdict_count(v) - before[v])}


def run_traffic(prog, yaml: str) -> tuple[list[str], dict[str, int], dict[str, int]]:
    """Load ``yaml`` as ``pub``, run a fixed mix of frames; return verdicts and counter deltas."""
    prog.load(yaml, iface="pub")
    mix = [frame_v4("tcp", "198.51.100.1", DST4, 999, 22),           # no-ssh: drop_rule
           frame_v6("tcp", "2001:db8:900d::1", DST6, 999, 443),     # web: pass_rule
           frame_v4("tcp", "192.0.2.7", DST4, 999, 25),             # blocklist: drop_rule
           frame_v4("udp", "198.51.100.1", DST4, 999, 123),         # default drop
           frame_v6("udp", "2001:db8:900d::1", DST6, 999, 123),     # default drop
           frame_arp_request("203.0.113.1", "203.0.113.2"),         # exempt
           BASE_FRAMES["v4-tcp"][:40], BASE_FRAMES["v6-qinq-udp"][:60]]  # malformed
    before = {v: prog.verdict_count(v) for v in Verdict}
    rules_before = {n: prog.rule(n)[0] for n in ("no-ssh", "web", "blocklist")}
    verdicts = [prog.run(f) for f in mix]
    rules = {n: prog.rule(n)[0] - c for n, c in rules_before.items()}
    return verdicts, verdict_deltas(prog, before), rules


def test_observe_passes_what_it_would_drop_and_counts_it_apart(prog):
    """Observe mode classifies and counts exactly as enforcing does, but every
    drop becomes observe_drop_* and the frame passes."""
    enforcing = TWO_IFACES
    observing = TWO_IFACES.replace("pub: {default: drop}", "pub: {default: drop, observe: true}")
    verdicts, counters, rules = run_traffic(prog, enforcing)
    assert verdicts == ["drop", "pass", "drop", "drop", "drop", "pass", "drop", "drop"]
    assert counters == {"drop_rule": 2, "pass_rule": 1, "drop_default": 2, "pass_exempt": 1, "drop_malformed": 2}

    o_verdicts, o_counters, o_rules = run_traffic(prog, observing)
    assert o_verdicts == ["pass"] * len(verdicts)
    assert o_counters == {"observe_drop_rule": 2, "pass_rule": 1, "observe_drop_default": 2, "pass_exempt": 1,
                          "observe_drop_malformed": 2}
    assert o_rules == rules == {"no-ssh": 1, "web": 1, "blocklist": 1}

    # And back: observe off is enforcing again.
    assert run_traffic(prog, enforcing)[:2] == (verdicts, counters)


def test_observe_on_a_default_pass_interface_changes_only_the_drops(prog):
    """The other interface of the same config is not in observe mode and keeps enforcing."""
    yaml = TWO_IFACES.replace("priv: {}", "priv: {observe: true}")
    prog.load(yaml, iface="priv")
    prog.check([("priv observe: dns", frame_v4("udp", "198.51.100.1", DST4, 999, 53), "pass"),
                 ("priv observe: ntp", frame_v4("udp", "198.51.100.1", DST4, 999, 123), "pass")])
    prog.load(yaml, iface="pub")
    prog.check([("pub enforcing: ntp", frame_v4("udp", "198.51.100.1", DST4, 999, 123), "drop")])
