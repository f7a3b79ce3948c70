"""The table compiler: config -> bank contents, and diffs between banks."""

from __future__ import annotations

import socket

import pytest

from xdpd import layout, tables
from xdpd.config import parse_config_text
from xdpd.filters import filter_hashes, set_filter_bits
from xdpd.imagediff import diff_exact
from xdpd.model import Action, AddrSet, Config, Rule
from xdpd.packed import PackedKeys, diff_sorted
from xdpd.plan import assign_slots


def image(yaml_text: str) -> tables.BankImage:
    config = parse_config_text(yaml_text, "t.yaml")
    slots = assign_slots([r.name for r in config.rules], {}, (), layout.MAX_RULE_SLOTS)
    return tables.build_image(config, slots, [])


def v4(s: str) -> bytes:
    return socket.inet_pton(socket.AF_INET, s)


def test_masks_follow_config_order():
    img = image("""
rules:
  - {name: a, action: count}
  - {name: b, action: drop, src: [192.0.2.0/24]}
  - {name: c, action: pass, dst: [198.51.100.1]}
""")
    assert img.all_rules == 0b111
    assert img.decisive == 0b110
    assert img.src_wild == 0b101
    assert img.dst_wild == 0b011
    assert img.flags == layout.F_SRC4_SMALL | layout.F_DST4_SMALL   # few entries: small tables
    assert img.proto_wild == img.sport_wild == img.dport_wild == 0b111
    assert img.rules[1] == tables.RuleEntry(layout.ACT_DROP, 1)


def test_port_table_covers_ranges_lists_and_the_no_port_slot():
    img = image("""
rules:
  - {name: web, action: drop, dst_port: [80, "8000-8002"]}
  - {name: any, action: count}
""")
    assert img.dport[80] == 0b11 and img.dport[81] == 0b10
    assert [img.dport[p] for p in (7999, 8000, 8002, 8003)] == [0b10, 0b11, 0b11, 0b10]
    assert img.dport[layout.NO_PORT] == 0b10     # packets without ports
    assert img.sport[layout.NO_PORT] == 0b11     # no rule names a source port
    assert len(img.dport) == layout.PORT_SLOTS


def test_proto_table():
    img = image("rules: [{name: u, action: drop, proto: [udp, 47]}, {name: x, action: count}]")
    assert img.proto[17] == 0b11 and img.proto[47] == 0b11 and img.proto[6] == 0b10


def test_shorter_prefixes_pass_their_bits_to_longer_ones():
    img = image("""
rules:
  - {name: wide, action: count, src: [10.0.0.0/8]}
  - {name: narrow, action: drop, src: [10.1.0.0/16, 10.1.2.0/24]}
""")
    lpm = {(net, plen): m for net, plen, m in img.addrs[("src", 4)].lpm}
    assert lpm[(v4("10.0.0.0"), 8)] == 0b01
    assert lpm[(v4("10.1.0.0"), 16)] == 0b11
    assert lpm[(v4("10.1.2.0"), 24)] == 0b11


def test_exact_addresses_in_several_rules_are_grouped_by_mask():
    big = b"".join(v4(f"192.0.2.{i}") for i in range(1, 200))
    rules = (Rule("big", Action.DROP, src=AddrSet(v4_exact=big)),
             Rule("small", Action.COUNT, src=AddrSet(v4_exact=v4("192.0.2.5") + v4("198.51.100.1"))))
    img = tables.build_image(Config(rules=rules), {"big": 0, "small": 1}, [])
    groups = dict(img.addrs[("src", 4)].exact)
    assert groups[0b11] == v4("192.0.2.5")
    assert groups[0b10] == v4("198.51.100.1")
    assert len(groups[0b01]) == 4 * 198 and v4("192.0.2.5") not in PackedKeys(groups[0b01], 4)


def test_diff_sorted_finds_a_single_change_in_a_large_array():
    keys = [i.to_bytes(4, "big") for i in range(0, 300_000, 3)]
    old = b"".join(keys)
    new_keys = keys[:5000] + [(15001).to_bytes(4, "big")] + keys[5001:]
    added, removed = diff_sorted(old, b"".join(new_keys), 4)
    assert added == (15001).to_bytes(4, "big")
    assert removed == keys[5000]


def test_diff_exact_rewrites_keys_that_change_group_instead_of_deleting_them():
    a, b = v4("192.0.2.1"), v4("192.0.2.2")
    old = tables.AddrTable(exact=((0b01, a + b),))
    new = tables.AddrTable(exact=((0b01, a), (0b11, b)))
    diff = diff_exact(old, new, 4)
    assert diff.upserts == ((0b11, b),)
    assert diff.deletes == b""


def test_assign_slots_is_stable_and_avoids_reserved():
    slots = assign_slots(["a", "b", "c"], {"b": 0}, {1}, 8)
    assert slots == {"b": 0, "a": 2, "c": 3}
    with pytest.raises(ValueError, match="no free counter slot"):
        assign_slots(["x", "y"], {}, {0}, 2)


def test_empty_list_matches_nothing_not_everything():
    rules = (Rule("empty", Action.DROP, src=AddrSet()),)
    img = tables.build_image(Config(rules=rules), {"empty": 0}, [])
    assert img.src_wild == 0 and not img.addrs[("src", 4)].exact and not img.addrs[("src", 4)].lpm


def test_more_entries_than_the_small_table_go_to_the_hash_and_the_trie():
    hosts = ", ".join(f"192.0.2.{i}" for i in range(1, layout.SMALL_MAX + 1))
    img = image(f"rules: [{{name: h, action: drop, src: [{hosts}, 198.51.100.0/24]}}]")
    assert img.flags == layout.F_SRC4_EXACT | layout.F_SRC4_LPM | layout.F_SRC4_BLOCKS
    assert not img.addrs[("src", 4)].small
    img = image(f"rules: [{{name: h, action: drop, src: [{hosts}]}}]")
    assert img.flags == layout.F_SRC4_SMALL
    assert img.addrs[("src", 4)].in_maps() == tables.EMPTY_TABLE


def test_wildcard_masks_name_the_rules_without_that_field():
    img = image("""
rules:
  - {name: p, action: drop, proto: udp}
  - {name: d, action: drop, proto: tcp, dst_port: 22}
  - {name: s, action: drop, proto: udp, src_port: 19}
  - {name: a, action: count}
""")
    assert img.proto_wild == 0b1000
    assert img.dport_wild == 0b1101
    assert img.sport_wild == 0b1011
    assert img.l4_wild == 0b1000        # neither protocol nor destination port: skip that lookup


def test_interface_entries_hold_their_rules_and_those_for_untagged_frames():
    config = parse_config_text("""
interfaces: {xdpdt-a: {}, xdpdt-b: {}}
rules:
  - {name: v, action: drop, vlan: 20}
  - {name: only-b, action: drop, interfaces: [xdpdt-b], proto: udp}
  - {name: any, action: count}
""", "t.yaml")
    slots = assign_slots([r.name for r in config.rules], {}, (), layout.MAX_RULE_SLOTS)
    entries = tables.iface_entries(config, {"xdpdt-a": 7, "xdpdt-b": 9}, {"xdpdt-a": 0, "xdpdt-b": 1})
    img = tables.build_image(config, slots, entries)
    a, b = img.ifaces
    assert (a.ifindex, a.rules, a.untagged) == (7, 0b101, 0b100)   # clipped to the bank's 3 rules
    assert (b.ifindex, b.rules, b.untagged) == (9, 0b111, 0b110)   # an untagged frame skips rule v


def test_filter_hashes_are_in_range_and_spread():
    keys = b"".join(socket.inet_pton(socket.AF_INET, f"10.0.{i // 256}.{i % 256}") for i in range(4096))
    hs = filter_hashes(keys, 4)
    assert len(hs) == 4096 and all(0 <= h < 1 << layout.FILTER_BITS for h in hs)
    assert len(set(hs)) > 4000           # consecutive addresses do not collide in bulk
    bits = bytearray(layout.FILTER_WORDS * 8)
    words = set_filter_bits(bits, keys, 4)
    assert words == {h >> 6 for h in hs}
    assert sum(bin(b).count("1") for b in bits) == len(set(hs))


@pytest.mark.parametrize("family", [4, 6])
def test_filter_bits_of_more_keys_than_one_hashing_chunk_are_all_set(family):
    import random
    from xdpd import filters
    width = 4 if family == 4 else 16
    n = filters.HASH_CHUNK + 1000
    keys = random.Random(family).randbytes(n * width)
    bits = bytearray(layout.FILTER_WORDS * 8)
    assert set_filter_bits(bits, keys, family) is None  # so many: write the whole bitmap
    hs = filter_hashes(keys, family)
    assert all(bits[h >> 3] >> (h & 7) & 1 for h in hs)
    assert sum(bin(b).count("1") for b in bits) == len(set(hs))


def test_tcp_and_udp_port_tables_include_the_protocol():
    img = image("""
rules:
  - {name: dns, action: drop, proto: udp, dst_port: 53}
  - {name: web, action: drop, proto: tcp, dst_port: 80}
  - {name: any-53, action: count, dst_port: 53}
  - {name: all, action: count}
""")
    tcp, udp = img.dport_l4[:layout.PORT_SLOTS], img.dport_l4[layout.PORT_SLOTS:]
    assert len(img.dport_l4) == 2 * layout.PORT_SLOTS
    assert tcp[53] == 0b1100 and udp[53] == 0b1101
    assert tcp[80] == 0b1010 and udp[80] == 0b1000
    assert tcp[layout.NO_PORT] == udp[layout.NO_PORT] == 0b1000


def _packed(ints: list[int]) -> bytes:
    return b"".join(i.to_bytes(4, "big") for i in sorted(set(ints)))


@pytest.mark.parametrize("seed", range(40))
def test_diff_sorted_finds_exactly_the_changes(seed):
    import random
    rng = random.Random(seed)
    old = [rng.getrandbits(32) for _ in range(rng.choice([0, 1, 5, 100, 3000]))]
    new = list(old)
    for _ in range(rng.choice([0, 1, 2, 10, 500])):
        if new and rng.random() < 0.5:
            new.pop(rng.randrange(len(new)))
        else:
            new.append(rng.getrandbits(32))
    a, b = _packed(old), _packed(new)
    added, removed = diff_sorted(a, b, 4)
    sa, sb = set(old), set(new)
    assert added == _packed(list(sb - sa)) and removed == _packed(list(sa - sb))


def test_diff_sorted_of_far_apart_edits_in_a_big_list():
    keys = list(range(0, 4_000_000, 4))
    a = _packed(keys)
    b = _packed(keys[1:500_000] + [2_000_001] + keys[500_001:] + [4_000_001])
    added, removed = diff_sorted(a, b, 4)
    assert added == _packed([2_000_001, 4_000_001])
    assert removed == _packed([0, 2_000_000])


def test_block_index_of_a_small_ipv4_table():
    img = image("""
rules:
  - {name: wide, action: count, src: [10.0.0.0/15]}
  - {name: host, action: drop, src: [10.1.2.3, 192.0.2.0/24]}
""")
    idx = tables.block_index(img.addrs[("src", 4)])
    assert idx[(10 << 8) + 0] == (0b01, 0)          # 10.0/16: covered by the /15
    assert idx[(10 << 8) + 1] == (0b01, 0b10)       # 10.1/16: covered, and a host inside
    assert idx[(192 << 8) + 0] == (0, 0b10)         # 192.0/16: a /24 inside
    assert len(idx) == 3
    assert tables.block_index(img.addrs[("dst", 4)]) == {}
    assert img.flags & layout.F_SRC4_SMALL and not img.flags & layout.F_SRC4_BLOCKS


def test_block_index_of_a_big_ipv4_table_holds_its_prefixes_not_its_hosts():
    """Beyond SMALL_MAX entries the hosts go to the hash; the index tells the program
    which blocks need the trie (a prefix longer than /16 inside) and what covers the rest."""
    hosts = ", ".join(f"198.18.{i}.1" for i in range(layout.SMALL_MAX + 1))
    img = image(f"""
rules:
  - {{name: wide, action: count, src: [10.0.0.0/15]}}
  - {{name: big, action: drop, src: [{hosts}, 10.1.2.0/24, 100.64.0.0/10]}}
  - {{name: dst-only, action: drop, dst: [{hosts}]}}
""")
    table = img.addrs[("src", 4)]
    assert not table.small and table.exact and table.lpm
    assert img.flags & layout.F_SRC4_BLOCKS and not img.flags & layout.F_SRC4_SMALL
    idx = tables.block_index(table)
    assert idx[(10 << 8) + 0] == (0b01, 0)            # covered by the /15
    assert idx[(10 << 8) + 1] == (0b01, 0b011)        # and the /24 inside (its mask holds the /15's bit)
    assert all(idx[(100 << 8) + b] == (0b10, 0) for b in range(64, 128))  # the /10: 64 blocks
    assert (198 << 8) + 18 not in idx                 # hosts: in the hash, not the index
    assert len(idx) == 2 + 64
    dst = img.addrs[("dst", 4)]
    assert not dst.small and not dst.lpm and tables.block_index(dst) == {}
    assert not img.flags & layout.F_DST4_BLOCKS       # no prefix: no trie to spare


def test_an_ipv6_bucket_index_marks_every_32_a_prefix_reaches():
    hosts = ", ".join(f"2001:db8:ff::{i}" for i in range(1, layout.SMALL_MAX + 2))
    img = image(f"""
rules:
  - {{name: a, action: drop, src: [{hosts}, "2001:db8:1::/48"]}}
  - {{name: b, action: drop, src: ["2001:db0::/28"]}}
""")
    table = img.addrs[("src", 6)]
    assert img.flags & layout.F_SRC6_BLOCKS and tables.block6_indexable(table)
    idx = tables.block6_index(table)
    a32 = tables.block6(bytes.fromhex("20010db8"))
    assert idx[a32] & 0b01                            # the /48's /32
    b32s = {tables.block6((0x20010db0 + i).to_bytes(4, "big")) for i in range(16)}
    assert all(idx[b] & 0b10 for b in b32s)            # the /28: sixteen /32s
    assert set(idx) == b32s | {a32}                    # the hosts are in the hash
    assert not img.flags & layout.F_DST6_BLOCKS        # no IPv6 destination prefix


def test_an_ipv6_prefix_shorter_than_28_leaves_the_table_without_a_bucket_index():
    hosts = ", ".join(f"2001:db8:ff::{i}" for i in range(1, layout.SMALL_MAX + 2))
    img = image(f"""rules: [{{name: a, action: drop, src: [{hosts}, "2001:0::/20", "2001:db8:1::/48"]}}]""")
    assert img.flags & layout.F_SRC6_LPM and not img.flags & layout.F_SRC6_BLOCKS
    assert not tables.block6_indexable(img.addrs[("src", 6)])
