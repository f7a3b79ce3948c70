"""The XDP program itself, on crafted frames (BPF_PROG_TEST_RUN).

Parsing (VLANs, IPv4 options, IPv6 extension chains, fragments), the
malformed-frame verdict at every truncation offset, and rule semantics (first
match, count rules, default drop with ARP/ND exempt, exact counters).
"""

from __future__ import annotations

import array
import ctypes

import pytest

from tests.testbed.frames import eth, frame_arp_request, frame_v4, frame_v6, icmpv6, ipv4, ipv6
from xdpd import layout
from xdpd.bankread import read_banks
from xdpd.compiler import BuildParams, compile_program
from xdpd.datapath import Datapath
from xdpd.layout import Verdict

pytestmark = pytest.mark.kernel

V4_DST, V6_DST = "203.0.113.9", "2001:db8:ffff::9"
QINQ = [(0x88A8, 100), (0x8100, 200)]

# Frames without payload: every byte is a header the program needs, so any
# truncation must be classified malformed.
BASE_FRAMES = {
    "v4-udp": frame_v4("udp", "198.51.100.1", V4_DST, 1000, 53),
    "v4-tcp": frame_v4("tcp", "198.51.100.1", V4_DST, 1000, 22),
    "v4-tcp-options": frame_v4("tcp", "198.51.100.1", V4_DST, 1000, 22, options=b"\x01" * 12),
    "v4-icmp": frame_v4("icmp", "198.51.100.1", V4_DST),
    "v4-vlan-udp": frame_v4("udp", "198.51.100.1", V4_DST, 1000, 53, vlans=[(0x8100, 7)]),
    "v4-qinq-udp": frame_v4("udp", "198.51.100.1", V4_DST, 1000, 53, vlans=QINQ),
    "v4-nonfirst-fragment": eth() + ipv4("198.51.100.1", V4_DST, 17, b"", frag_offset=10),
    "v6-tcp": frame_v6("tcp", "2001:db8:900d::1", V6_DST, 1000, 22),
    "v6-icmpv6": frame_v6("icmpv6", "2001:db8:900d::1", V6_DST),
    "v6-ext-chain-udp": frame_v6("udp", "2001:db8:900d::1", V6_DST, 1000, 53,
                                 exts=[0, 43, 60, (44, {"frag_offset": 0, "more_fragments": True})]),
    "v6-qinq-udp": frame_v6("udp", "2001:db8:900d::1", V6_DST, 1000, 53, vlans=QINQ),
}


def test_verifier_accepts_every_specialisation(tmp_path):
    """Each build parameter set compiles and passes the verifier."""
    for i, params in enumerate([BuildParams(max_exact=1024, max_prefixes=64, ifindex_max=256),
                                BuildParams(max_exact=8_000_000, max_prefixes=1_000_000)]):
        pin = f"/sys/fs/bpf/xdpdt-spec-{i}-{tmp_path.name[-8:]}"
        try:
            c = compile_program(pin, params)
            assert c.prog_fd > 0
        finally:
            import shutil
            shutil.rmtree(pin, ignore_errors=True)


# Rule sets none of BASE_FRAMES matches: one port rule, and one rule per field
# of issue 9 (the program then reads the TTL, length, VLAN, TCP flags and ICMP
# type and code of every frame).
TRUNCATION_RULES = {
    "port": "rules: [{name: other, action: drop, dst_port: 9999}]",
    "issue-9-fields": """
        rules:
          - {name: flags, action: drop, proto: tcp, tcp_flags: "fin,rst"}
          - {name: icmp, action: drop, proto: [icmp, icmpv6], icmp_type: 3, icmp_code: 1}
          - {name: ttl, action: drop, ttl: 1}
          - {name: length, action: drop, length: 9000}
          - {name: vlan, action: drop, vlan: 999}
          - {name: all, action: drop, proto: udp, ttl: "60-70", length: "0-8999", vlan: "0-4095", src: 192.0.2.1}
    """,
}


@pytest.mark.parametrize("rules", sorted(TRUNCATION_RULES))
@pytest.mark.parametrize("name", sorted(BASE_FRAMES))
def test_truncated_at_every_offset_is_malformed(prog, name, rules):
    prog.load(TRUNCATION_RULES[rules])
    frame = BASE_FRAMES[name]
    before = prog.verdict_count(Verdict.DROP_MALFORMED)
    for cut in range(14, len(frame)):
        assert prog.run(frame[:cut]) == "drop", f"{name} cut at {cut} of {len(frame)}"
    assert prog.verdict_count(Verdict.DROP_MALFORMED) - before == len(frame) - 14
    assert prog.run(frame) == "pass"
    assert prog.run(frame + b"payload") == "pass"


@pytest.mark.parametrize("frame,why", [
    (eth() + ipv4("198.51.100.1", V4_DST, 17, b"\0" * 8, ihl=4), "IPv4 header length below 5"),
    (eth() + ipv4("198.51.100.1", V4_DST, 17, b"\0" * 8, version=6), "IPv4 ethertype, version 6"),
    (frame_v4("tcp", "198.51.100.1", V4_DST)[:46] + b"\x10" + frame_v4("tcp", "198.51.100.1", V4_DST)[47:],
     "TCP data offset below 5"),
    (frame_v6("udp", "2001:db8::1", V6_DST, exts=[60] * 9), "IPv6 chain deeper than 8"),
])
def test_malformed_headers_are_dropped(prog, frame, why):
    prog.load("rules: []")
    assert prog.run(frame) == "drop", why


def test_vlan_and_qinq_frames_are_filtered_like_untagged(prog):
    prog.load("rules: [{name: bad, action: drop, src: [192.0.2.0/24, '2001:db8:bad::/48']}]")
    for vlans in ([], [(0x8100, 5)], [(0x88A8, 5)], QINQ):
        assert prog.run(frame_v4("udp", "192.0.2.7", V4_DST, vlans=vlans)) == "drop", vlans
        assert prog.run(frame_v4("udp", "198.51.100.7", V4_DST, vlans=vlans)) == "pass", vlans
        assert prog.run(frame_v6("udp", "2001:db8:bad::7", V6_DST, vlans=vlans)) == "drop", vlans


def test_ipv4_options_do_not_hide_ports(prog):
    prog.load("rules: [{name: ssh, action: drop, proto: tcp, dst_port: 22}]")
    for opt_len in (0, 4, 20, 40):
        f = frame_v4("tcp", "198.51.100.1", V4_DST, 5555, 22, options=b"\x01" * opt_len)
        assert prog.run(f) == "drop", opt_len
        f = frame_v4("tcp", "198.51.100.1", V4_DST, 5555, 23, options=b"\x01" * opt_len)
        assert prog.run(f) == "pass", opt_len


@pytest.mark.parametrize("exts", [[], [0], [43], [60], [0, 60], [0, 43, 60, 60],
                                  [(44, {"frag_offset": 0, "more_fragments": True})],
                                  [0, 43, 60, 60, 60, 60, 60, 60]])
def test_ipv6_extension_chains_reach_the_ports(prog, exts):
    prog.load("rules: [{name: dns, action: drop, proto: udp, dst_port: 53}]")
    assert prog.run(frame_v6("udp", "2001:db8::1", V6_DST, 1000, 53, exts=exts)) == "drop"
    assert prog.run(frame_v6("udp", "2001:db8::1", V6_DST, 1000, 54, exts=exts)) == "pass"


def test_non_first_fragments_match_rules_without_ports_only(prog):
    prog.load("""
        rules:
          - {name: dns, action: drop, proto: udp, dst_port: 53}
          - {name: bad, action: drop, src: [192.0.2.0/24, '2001:db8:bad::/48']}
          - {name: count-udp, action: count, proto: udp}
    """)
    frag4 = frame_v4(17, "198.51.100.1", V4_DST, frag_offset=100, payload=b"\0" * 16)
    frag6 = frame_v6(17, "2001:db8::1", V6_DST, exts=[(44, {"frag_offset": 100})], payload=b"\0" * 16)
    before = prog.rule("count-udp")[0]
    assert prog.run(frag4) == "pass"      # port rule cannot match: no ports
    assert prog.run(frag6) == "pass"
    assert prog.rule("count-udp")[0] - before == 2  # proto rule does match
    assert prog.run(frame_v4(17, "192.0.2.1", V4_DST, frag_offset=100, payload=b"\0" * 16)) == "drop"
    assert prog.run(frame_v6(17, "2001:db8:bad::1", V6_DST, exts=[(44, {"frag_offset": 9})])) == "drop"
    # The first fragment carries the ports.
    first = frame_v4("udp", "198.51.100.1", V4_DST, 1000, 53, more_fragments=True)
    assert prog.run(first) == "drop"


def test_first_match_decides(prog):
    prog.load("""
        rules:
          - {name: admin, action: pass, src: [192.0.2.10]}
          - {name: net, action: drop, src: [192.0.2.0/24]}
          - {name: never, action: pass, src: [192.0.2.0/25]}
    """)
    assert prog.run(frame_v4("udp", "192.0.2.10", V4_DST)) == "pass"
    assert prog.run(frame_v4("udp", "192.0.2.11", V4_DST)) == "drop"
    assert prog.rule("admin")[0] == 1
    assert prog.rule("net")[0] == 1
    assert prog.rule("never")[0] == 0


def test_count_rules_count_and_continue_and_stop_at_the_decision(prog):
    prog.load("""
        rules:
          - {name: c1, action: count}
          - {name: c-udp, action: count, proto: udp}
          - {name: drop-dns, action: drop, proto: udp, dst_port: 53}
          - {name: c-after, action: count}
    """)
    f_dns = frame_v4("udp", "198.51.100.1", V4_DST, 1000, 53)
    f_web = frame_v4("tcp", "198.51.100.1", V4_DST, 1000, 443)
    before = {n: prog.rule(n) for n in ("c1", "c-udp", "drop-dns", "c-after")}
    assert prog.run(f_dns) == "drop"
    assert prog.run(f_web) == "pass"
    delta = {n: prog.rule(n)[0] - before[n][0] for n in before}
    assert delta == {"c1": 2, "c-udp": 1, "drop-dns": 1, "c-after": 1}
    assert prog.rule("drop-dns")[1] - before["drop-dns"][1] == len(f_dns)


def test_count_rules_beyond_the_first_word_are_counted(prog):
    """Rules 64..127 live in the mask's second word."""
    rules = "".join(f"  - {{name: c{i}, action: count}}\n" for i in range(100))
    prog.load("rules:\n" + rules + "  - {name: last, action: drop, proto: udp}\n")
    before = [prog.rule(f"c{i}")[0] for i in range(100)]
    assert prog.run(frame_v4("udp", "198.51.100.1", V4_DST)) == "drop"
    assert [prog.rule(f"c{i}")[0] - before[i] for i in range(100)] == [1] * 100
    assert prog.rule("last")[0] == 1


def test_default_drop_exempts_arp_and_neighbour_discovery(prog):
    prog.load("rules: [{name: allow-ssh, action: pass, proto: tcp, dst_port: 22}]", default="drop")
    exempt = prog.verdict_count(Verdict.PASS_EXEMPT)
    assert prog.run(frame_v4("tcp", "198.51.100.1", V4_DST, 999, 22)) == "pass"
    assert prog.run(frame_v4("tcp", "198.51.100.1", V4_DST, 999, 80)) == "drop"
    assert prog.run(frame_arp_request("203.0.113.1", "203.0.113.2")) == "pass"
    ns = eth(ethertype=0x86DD) + ipv6("fe80::1", "ff02::1:ff00:2", 58, icmpv6(135, 0, b"\0" * 20), hop_limit=255)
    assert prog.run(ns) == "pass"
    assert prog.run(frame_v6("icmpv6", "2001:db8::1", V6_DST)) == "drop"  # echo: not ND
    assert prog.run(eth(ethertype=0x88CC) + b"\0" * 46) == "drop"        # LLDP: default applies
    assert prog.verdict_count(Verdict.PASS_EXEMPT) - exempt == 2


def test_exact_counters_per_rule_and_interface(prog):
    prog.load("rules: [{name: bad, action: drop, src: [192.0.2.0/24]}]")
    f = frame_v4("udp", "192.0.2.99", V4_DST, payload=b"x" * 100)
    before_rule = prog.rule("bad")
    before_if = prog.maps.counter("iface_stats", Verdict.DROP_RULE)
    for _ in range(37):
        assert prog.run(f) == "drop"
    assert prog.rule("bad") == (before_rule[0] + 37, before_rule[1] + 37 * len(f))
    after_if = prog.maps.counter("iface_stats", Verdict.DROP_RULE)
    assert after_if == (before_if[0] + 37, before_if[1] + 37 * len(f))


def test_prefixes_exact_entries_and_covering_prefixes_combine(prog):
    """Exact /32 and /128 entries live in hashes, shorter prefixes in tries;
    a packet matching both kinds in different rules sees both."""
    prog.load("""
        rules:
          - {name: count-host, action: count, src: [192.0.2.5, '2001:db8:bad::5']}
          - {name: count-zero-octets, action: count, src: [10.0.0.0/8]}
          - {name: drop-net, action: drop, src: [192.0.2.0/24, '2001:db8:bad::/48']}
    """)
    before = prog.rule("count-host")[0]
    assert prog.run(frame_v4("udp", "192.0.2.5", V4_DST)) == "drop"
    assert prog.run(frame_v6("udp", "2001:db8:bad::5", V6_DST)) == "drop"
    assert prog.rule("count-host")[0] - before == 2
    assert prog.run(frame_v4("udp", "192.0.3.5", V4_DST)) == "pass"
    z = prog.rule("count-zero-octets")[0]
    assert prog.run(frame_v4("udp", "10.0.0.1", V4_DST)) == "pass"
    assert prog.rule("count-zero-octets")[0] - z == 1


def test_dst_proto_and_port_fields(prog):
    prog.load("""
        rules:
          - {name: dst, action: drop, dst: [203.0.113.64/26]}
          - {name: ports, action: drop, proto: [tcp, udp], dst_port: [25, "6000-6010"]}
          - {name: sports, action: drop, proto: udp, src_port: 19}
          - {name: icmp6, action: drop, proto: icmpv6}
          - {name: gre, action: drop, proto: 47}
    """)
    assert prog.run(frame_v4("udp", "198.51.100.1", "203.0.113.65")) == "drop"
    assert prog.run(frame_v4("udp", "198.51.100.1", "203.0.113.63")) == "pass"
    for port, verdict in ((25, "drop"), (5999, "pass"), (6000, "drop"), (6010, "drop"), (6011, "pass")):
        assert prog.run(frame_v4("tcp", "198.51.100.1", V4_DST, 1000, port)) == verdict, port
        assert prog.run(frame_v6("udp", "2001:db8::1", V6_DST, 1000, port)) == verdict, port
    assert prog.run(frame_v4("udp", "198.51.100.1", V4_DST, 19, 80)) == "drop"
    assert prog.run(frame_v4("tcp", "198.51.100.1", V4_DST, 19, 80)) == "pass"
    assert prog.run(frame_v6("icmpv6", "2001:db8::1", V6_DST)) == "drop"
    assert prog.run(frame_v4(47, "198.51.100.1", V4_DST, payload=b"\0" * 8)) == "drop"


def test_rule_set_switch_is_complete(prog):
    """After a reload only the new rule set applies, in both banks."""
    prog.load("rules: [{name: a, action: drop, src: [192.0.2.1]}]")
    prog.load("rules: [{name: b, action: drop, src: [192.0.2.2]}]")
    assert prog.run(frame_v4("udp", "192.0.2.1", V4_DST)) == "pass"
    assert prog.run(frame_v4("udp", "192.0.2.2", V4_DST)) == "drop"
    prog.load("rules: [{name: b, action: drop, src: [192.0.2.2]}]")
    assert prog.run(frame_v4("udp", "192.0.2.2", V4_DST)) == "drop"
    assert prog.dp.known[0] == prog.dp.known[1]
    assert layout.MAX_RULES == 128


@pytest.mark.parametrize("position", [31, 32, 63, 64, 96, 127])
def test_address_rules_at_any_position_check_the_address(prog, position):
    """A rule's position in the mask must not decide whether its address is
    looked up (regression: a 64-bit test truncated to 32 bits)."""
    fillers = "".join(f"  - {{name: f{i}, action: count, dst_port: 9}}\n" for i in range(position))
    prog.load("rules:\n" + fillers + "  - {name: target, action: drop, src: [192.0.2.1]}\n")
    assert prog.run(frame_v4("udp", "192.0.2.1", V4_DST)) == "drop"
    assert prog.run(frame_v4("udp", "192.0.2.2", V4_DST)) == "pass"
    assert prog.run(frame_v6("udp", "2001:db8::2", V6_DST)) == "pass"


def _fillers(n: int, v6: bool) -> str:
    """``n`` host addresses nobody sends from: they push a list past the small table."""
    if v6:
        return "".join(f", '2001:db8:f111::{i:x}'" for i in range(1, n + 1))
    return "".join(f", 198.51.100.{i}" for i in range(100, 100 + n))


@pytest.mark.parametrize("size", ["small", "hashed"])
@pytest.mark.parametrize("field", ["src", "dst"])
def test_address_storage_small_table_and_hash_plus_trie_agree(prog, size, field):
    """Up to SMALL_MAX entries live in the small table, more in the hash map
    (behind its filter) and the trie: the verdicts must not depend on which."""
    n = 0 if size == "small" else 3 * layout.SMALL_MAX
    prog.load(f"""
        rules:
          - {{name: wide, action: count, {field}: [192.0.0.0/16]}}
          - {{name: hosts, action: drop, {field}: [192.0.2.5, '2001:db8:bad::5'{_fillers(n, False)}{_fillers(n, True)}]}}
          - {{name: nets, action: drop, {field}: [203.0.113.128/25, '2001:db8:beef::/48']}}
    """)
    flags = prog.dp.known[0].flags
    small = layout.F_SRC4_SMALL if field == "src" else layout.F_DST4_SMALL
    assert bool(flags & small) == (size == "small")

    def run(v6: bool, addr: str) -> str:
        other = V6_DST if v6 else V4_DST
        src, dst = (addr, other) if field == "src" else (("2001:db8::77" if v6 else "198.51.100.77"), addr)
        return prog.run((frame_v6 if v6 else frame_v4)("udp", src, dst, 1000, 53))

    wide = prog.rule("wide")[0]
    assert run(False, "192.0.2.5") == "drop"
    assert run(False, "192.0.2.6") == "pass"
    assert prog.rule("wide")[0] - wide == 2          # both inside 192.0.0.0/16
    assert run(False, "203.0.113.200") == "drop"
    assert run(False, "203.0.113.127") == "pass"
    assert run(True, "2001:db8:bad::5") == "drop"
    assert run(True, "2001:db8:bad::6") == "pass"
    assert run(True, "2001:db8:beef:1::1") == "drop"
    assert run(True, "2001:db8:bee0::1") == "pass"
    if n:
        assert run(False, "198.51.100.105") == "drop"
        assert run(True, "2001:db8:f111::7") == "drop"


def test_moving_between_small_table_and_hash_leaves_nothing_behind(prog):
    """Growing a list past the small table and shrinking it back: removed
    addresses stop matching in every step (each storage is cleared)."""
    big = "".join(f", 198.51.100.{i}" for i in range(1, 40))
    prog.load("rules: [{name: l, action: drop, src: [192.0.2.1, 192.0.2.0/28]}]")
    assert prog.run(frame_v4("udp", "192.0.2.1", V4_DST)) == "drop"
    prog.load(f"rules: [{{name: l, action: drop, src: [192.0.2.2{big}]}}]")
    assert prog.run(frame_v4("udp", "192.0.2.1", V4_DST)) == "pass"
    assert prog.run(frame_v4("udp", "192.0.2.2", V4_DST)) == "drop"
    assert prog.run(frame_v4("udp", "198.51.100.39", V4_DST)) == "drop"
    prog.load("rules: [{name: l, action: drop, src: [192.0.2.3]}]")
    for gone in ("192.0.2.2", "198.51.100.39", "192.0.2.1"):
        assert prog.run(frame_v4("udp", gone, V4_DST)) == "pass", gone
    assert prog.run(frame_v4("udp", "192.0.2.3", V4_DST)) == "drop"


def test_large_random_sets_match_members_only(prog):
    """Thousands of random hosts, v4 and v6: every probed member is dropped and
    every probed non-member passes (the filter's hash agrees with the kernel's)."""
    import ipaddress
    import random
    rng = random.Random(7)
    v4 = sorted({ipaddress.IPv4Address(rng.getrandbits(32)) for _ in range(3000)})
    v6 = sorted({ipaddress.IPv6Address((0x20010DB8 << 96) | rng.getrandbits(96)) for _ in range(1000)})
    members = [str(a) for a in v4] + [str(a) for a in v6]
    prog.load("rules: [{name: many, action: drop, src: [" + ", ".join(f"'{a}'" for a in members) + "]}]")
    for a in rng.sample(v4, 60):
        assert prog.run(frame_v4("udp", str(a), V4_DST)) == "drop", a
        assert prog.run(frame_v4("udp", str(a + 1), V4_DST)) == ("drop" if a + 1 in v4 else "pass"), a + 1
    for a in rng.sample(v6, 60):
        assert prog.run(frame_v6("udp", str(a), V6_DST)) == "drop", a
        assert prog.run(frame_v6("udp", str(a + 1), V6_DST)) == ("drop" if a + 1 in v6 else "pass"), a + 1
    # Remove most of them: the filter keeps stale bits, the verdicts must not.
    keep = members[:50]
    prog.load("rules: [{name: many, action: drop, src: [" + ", ".join(f"'{a}'" for a in keep) + "]}]")
    for a in members[50:110] + members[-60:]:
        frame = (frame_v6 if ":" in a else frame_v4)("udp", a, V6_DST if ":" in a else V4_DST)
        assert prog.run(frame) == "pass", a
    assert prog.run(frame_v4("udp", keep[0], V4_DST)) == "drop"


def test_banks_read_back_equal_what_was_written(prog):
    """A restarted daemon adopts the pinned maps by reading both banks back:
    every table, small or hashed, must come back as written."""
    hosts = ", ".join(f"198.51.100.{i}" for i in range(1, 60))
    prog.load(f"""
        rules:
          - {{name: a, action: drop, src: [192.0.2.1, 192.0.2.0/28, '2001:db8::/32'], proto: tcp,
              dst_port: [22, 80]}}
          - {{name: b, action: count, dst: [{hosts}, 203.0.113.0/24, '2001:db8:bad::1']}}
          - {{name: c, action: pass, src_port: 53, proto: udp}}
    """, default="drop")
    assert read_banks(prog.maps) == tuple(prog.dp.known)


def test_banks_read_back_packed_with_and_without_candidates(prog):
    """Thousands of hosts in two overlapping lists (several mask groups, hash batches mixing
    banks): read back equal to what was written, whether the config's lists are given as
    candidates (a group equal to one is that very array), wrong ones are, or none."""
    import ipaddress
    from xdpd.bankread import candidates_of
    from xdpd.config import parse_config_text

    a = [str(ipaddress.IPv4Address("198.18.0.0") + 3 * i) for i in range(12000)]
    b = a[:1000] + [str(ipaddress.IPv4Address("198.19.0.0") + i) for i in range(3000)]
    v6 = [str(ipaddress.IPv6Address("2001:db8:1::") + 7 * i) for i in range(300)]
    def items(addrs: list[str]) -> str:
        return ", ".join(f"'{x}'" for x in addrs)
    text = ("rules:\n"
            f"  - {{name: a, action: drop, src: [{items(a + v6)}], dst: [{items(b[-2000:])}]}}\n"
            f"  - {{name: b, action: count, src: [{items(b)}], dst: [{items(v6)}]}}\n")
    prog.load(text)
    rules = parse_config_text(text, "test.yaml").rules
    known = tuple(prog.dp.known)
    assert known[0] == known[1]
    assert read_banks(prog.maps) == known
    found = read_banks(prog.maps, candidates_of(rules))
    assert found == known
    lists = candidates_of(rules)
    for bank in found:  # single-group tables are the config's own arrays, not sorted copies
        assert bank.addrs[("src", 6)].exact[0][1] is lists[("src", 6)][0]
        assert bank.addrs[("dst", 6)].exact[0][1] is lists[("dst", 6)][0]
        assert bank.addrs[("dst", 4)].exact[0][1] is lists[("dst", 4)][0]
    # Candidates of the right length but other addresses are not taken for the groups.
    wrong = {key: [bytes(reversed(keys)) for keys in arrays] for key, arrays in lists.items()}
    assert read_banks(prog.maps, wrong) == known


@pytest.mark.parametrize("field", ["src", "dst"])
def test_block_index_answers_for_covered_and_empty_blocks(prog, field):
    """A small IPv4 table is fronted by a /16 block index: a block covered by
    a short prefix matches without the scan, an empty block misses."""
    prog.load(f"""
        rules:
          - {{name: wide, action: drop, {field}: [10.0.0.0/8, 192.0.2.1]}}
          - {{name: narrow, action: count, {field}: [198.51.100.0/28]}}
    """)

    def run(addr: str) -> str:
        src, dst = (addr, V4_DST) if field == "src" else ("198.51.100.200", addr)
        return prog.run(frame_v4("udp", src, dst, 1000, 53))

    assert run("10.200.1.1") == "drop"        # block 10.200: sure, no scan
    assert run("10.0.0.0") == "drop"
    assert run("192.0.2.1") == "drop"         # block 192.0: maybe -> scan
    assert run("192.0.2.2") == "pass"
    assert run("11.0.0.1") == "pass"          # empty block
    n = prog.rule("narrow")[0]
    assert run("198.51.100.15") == "pass" and prog.rule("narrow")[0] == n + 1
    assert run("198.51.100.16") == "pass" and prog.rule("narrow")[0] == n + 1


BIG_HOSTS = ", ".join(f"198.18.{i}.1" for i in range(layout.SMALL_MAX + 1))


@pytest.mark.parametrize("field", ["src", "dst"])
def test_a_big_table_asks_the_trie_only_where_a_longer_prefix_lies(prog, field):
    """Hosts in the hash, prefixes in the trie, and the /16 block index in front of
    the trie: a block only short prefixes cover answers from the index, a block with
    a longer prefix inside asks the trie, an empty block matches nothing."""
    prog.load(f"""
        rules:
          - {{name: wide, action: count, {field}: [10.0.0.0/8]}}
          - {{name: big, action: drop, {field}: [{BIG_HOSTS}, 10.1.2.0/24, 100.64.0.0/10]}}
    """)
    assert prog.maps.state().cfg[prog.maps.active_bank()].flags & layout.ADDR_FLAGS[(field, 4, "blocks")]

    def run(addr: str) -> tuple[str, int]:
        src, dst = (addr, V4_DST) if field == "src" else ("198.51.100.200", addr)
        n = prog.rule("wide")[0]
        return prog.run(frame_v4("udp", src, dst, 1000, 53)), prog.rule("wide")[0] - n

    assert run("100.100.1.1") == ("drop", 0)   # block 100.100: the /10 covers it, no trie
    assert run("100.63.1.1") == ("pass", 0)    # just outside the /10
    assert run("10.1.2.5") == ("drop", 1)      # block 10.1: the /24 inside, the trie
    assert run("10.1.3.5") == ("pass", 1)      # ... outside the /24: the trie gives the /8
    assert run("10.200.0.1") == ("pass", 1)    # block 10.200: the /8 alone, no trie
    assert run("198.18.3.1") == ("drop", 0)    # a host: the hash
    assert run("11.0.0.1") == ("pass", 0)      # nothing anywhere


BIG_HOSTS6 = ", ".join(f'"2001:db8:ff::{i}"' for i in range(1, layout.SMALL_MAX + 2))


@pytest.mark.parametrize("field", ["src", "dst"])
@pytest.mark.parametrize("short", [False, True], ids=["indexed", "a-short-prefix"])
def test_a_big_ipv6_table_asks_the_trie_only_for_a_32_a_prefix_reaches(prog, field, short):
    """Hosts in the hash, prefixes in the trie, and a bucket index of /32s in front of
    the trie: a prefix's addresses match, through a /28 too, others do not; with a
    prefix shorter than /28 the table has no index and matches the same."""
    extra = ', "3000::/16"' if short else ""
    prog.load(f"""
        rules:
          - {{name: big, action: drop, {field}: [{BIG_HOSTS6}, "2001:db8:1::/48", "2001:dd0::/28"{extra}]}}
    """)
    flags = prog.maps.state().cfg[prog.maps.active_bank()].flags
    assert bool(flags & layout.ADDR_FLAGS[(field, 6, "blocks")]) is not short

    def run(addr: str) -> str:
        src, dst = (addr, "2001:db8:ffff::1") if field == "src" else ("2001:db8:eeee::1", addr)
        return prog.run(frame_v6("udp", src, dst, 1000, 53))

    assert run("2001:db8:1::7") == "drop"      # the /48
    assert run("2001:db8:2::7") == "pass"      # its /32, outside the /48: the trie says no
    assert run("2001:dd3:7::1") == "drop"      # in the /28, another /32 of it
    assert run("2001:de0::1") == "pass"        # just past the /28
    assert run("2001:db8:ff::3") == "drop"     # a host: the hash
    assert run("3fff::1") == "pass"            # nothing anywhere
    assert run("3000:7::1") == ("drop" if short else "pass")  # inside 3000::/16 only


def test_a_bank_read_back_without_its_block_index_gets_it_written_before_the_program_uses_it(prog):
    """A bank with prefixes in the trie but no block index (no F_*4_BLOCKS) is known
    as such when adopted, and its index is written whole before the flag."""
    text = f"rules: [{{name: big, action: drop, src: [{BIG_HOSTS}, 100.64.0.0/10]}}]"
    prog.load(text)
    image = prog.dp.known[prog.maps.active_bank()]
    blocks = prog.maps["src4_blocks"]
    keys = array.array("I", range(2 * layout.BLOCKS)).tobytes()
    blocks.update_batch(keys, bytes(ctypes.sizeof(layout.Block16)) * (2 * layout.BLOCKS))
    st = prog.maps.state()
    for cfg in st.cfg:
        cfg.flags &= ~layout.F_SRC4_BLOCKS
    prog.maps.write_state(st)
    frame = frame_v4("udp", "100.100.1.1", V4_DST, 1000, 53)
    assert prog.run(frame) == "drop"           # the trie, as the bank has it

    dp = Datapath(prog.maps)
    dp.adopt()
    assert all(k is not None and not k.flags & layout.F_SRC4_BLOCKS for k in dp.known)
    dp.apply(image)
    assert prog.maps.state().cfg[prog.maps.active_bank()].flags & layout.F_SRC4_BLOCKS
    assert prog.run(frame) == "drop"           # the index, written before the flag
    assert prog.run(frame_v4("udp", "100.128.1.1", V4_DST, 1000, 53)) == "pass"
