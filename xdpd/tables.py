"""Compile a :class:`~xdpd.model.Config` into the contents of one map bank.

Pure functions only: the result, a :class:`BankImage`, is plain data that
:mod:`xdpd.datapath` writes into the kernel and that tests can inspect
without root.  The encoding is the bit-vector scheme described at the top of
``bpf/xdpd.bpf.c``: rule ``i`` (in config order) owns bit ``i``; each field's
table maps a packet value to the mask of rules that accept it.

Exact host addresses stay packed (see :class:`~xdpd.model.AddrSet`) all the
way to the batch write, so a million-entry list never becomes a million
Python objects.
"""

from __future__ import annotations

import hashlib
import zlib
from dataclasses import dataclass, field, replace
from typing import Iterable, Mapping, NamedTuple, Sequence

from . import layout
from .model import Action, AddrSet, Config, Default, Limit, LimitPer, LimitUnit, Rule
from .fieldtables import (bits, icmp_type_table, longest_run, port_table, proto_table, range_table,
                          restricted, tcp_flags_table, wild)
from .packed import PackedKeys, remove_keys

ARRAY_MAPS: tuple[tuple[str, str, int], ...] = (
    ("proto_mask", "proto", 256),
    ("sport_mask", "sport", layout.PORT_SLOTS),
    ("dport_mask", "dport_l4", 2 * layout.PORT_SLOTS),
    ("ttl_mask", "ttl", 256),
    ("len_mask", "length", layout.LEN_SLOTS),
    ("vlan_mask", "vlan", layout.VLAN_IDS),
    ("tcpf_mask", "tcp_flags", 256),
    ("icmpt_mask", "icmp_type", 2 * 256),
    ("icmpc_mask", "icmp_code", 256),
)
"""(array map, :class:`BankImage` field, entries per bank) of every per-field table."""

CFG_MASKS: tuple[tuple[str, str], ...] = (
    ("l4_wild", "l4_wild"), ("src_wild", "src_wild"), ("dst_wild", "dst_wild"), ("decisive", "decisive"),
    ("proto_wild", "proto_wild"), ("sport_wild", "sport_wild"), ("dport_wild", "dport_wild"),
    ("ttl_wild", "ttl_wild"), ("len_wild", "len_wild"), ("vlan_wild", "vlan_wild"),
    ("tcpf_wild", "tcpf_wild"), ("icmpt_wild", "icmpt_wild"), ("icmpc_wild", "icmpc_wild"),
)
"""(``struct bank_cfg`` field, :class:`BankImage` field) of every mask in a bank's settings."""

CFG_SPANS: tuple[str, ...] = ("ttl_common", "len_common")
"""``struct span`` fields of a bank's settings, named as in :class:`BankImage`."""

DIRECTIONS = ("src", "dst")
FAMILIES = (4, 6)


@dataclass(frozen=True)
class AddrTable:
    """Entries of one direction and family.

    ``exact``: groups of host addresses sharing one mask, each a sorted
    packed ``bytes`` (keys of distinct groups are disjoint).
    ``lpm``: ``(packed network, prefix length, mask)`` where the mask already
    includes the bits of every covering shorter prefix, because the trie
    returns only the longest match.
    """

    exact: tuple[tuple[int, bytes], ...] = ()
    lpm: tuple[tuple[bytes, int, int], ...] = ()
    small: bool = False
    """Few enough entries for the program's small table (no hash, no trie)."""

    def exact_count(self) -> int:
        """Bytes of exact keys (divide by the key width for a count)."""
        return sum(len(keys) for _, keys in self.exact)

    def in_maps(self) -> "AddrTable":
        """What the hash map and the trie hold for this table."""
        return EMPTY_TABLE if self.small else self

    def small_entries(self, width: int) -> list[tuple[bytes, int, int]]:
        """(network, prefix length, mask) of every entry; hosts as full-length prefixes."""
        hosts = [(k, width * 8, m) for m, keys in self.exact for k in PackedKeys(keys, width).chunks()]
        return hosts + list(self.lpm)


EMPTY_TABLE = AddrTable()


def block_index(table: AddrTable | None) -> dict[int, tuple[int, int]]:
    """/16 block -> (sure, maybe) masks of an IPv4 table (see struct block16).

    ``sure``: rules with a prefix of length <= 16 covering the whole block;
    ``maybe``: rules with a longer entry inside it.  A small table indexes
    all its entries (the program scans it only for a block with ``maybe``);
    another only its prefixes (the program consults the trie only then,
    and takes ``sure`` as its answer otherwise: a trie entry's mask holds
    its covering prefixes' bits, so the longest covering prefix's mask is
    their OR).  Hosts of a table that is not small are in the hash.
    """
    out: dict[int, tuple[int, int]] = {}
    if table is None:
        return out
    for net, plen, mask in table.small_entries(4) if table.small else table.lpm:
        first = int.from_bytes(net[:2], "big")
        if plen <= 16:
            for block in range(first, first + (1 << (16 - plen))):
                sure, maybe = out.get(block, (0, 0))
                out[block] = (sure | mask, maybe)
        else:
            sure, maybe = out.get(first, (0, 0))
            out[first] = (sure, maybe | mask)
    return out


def block6(net: bytes) -> int:
    """The IPv6 bucket index's bucket of an address or prefix: its /32, hashed (the program's block6())."""
    return ((int.from_bytes(net[:4], "little") * 0x9E3779B1) & 0xFFFFFFFF) >> (32 - layout.BLOCK6_BITS)


def block6_indexable(table: AddrTable) -> bool:
    """Whether an IPv6 table gets a bucket index: prefixes (not small), none shorter than BLOCK6_MIN_PLEN."""
    return not table.small and bool(table.lpm) and all(plen >= layout.BLOCK6_MIN_PLEN for _, plen, _ in table.lpm)


def block6_index(table: AddrTable) -> dict[int, int]:
    """Bucket -> the rules with a prefix reaching an address whose /32 falls in it (see struct mask).

    A bucket without rules proves that the trie holds nothing for the
    address; one with rules (another /32 may share it) sends the program to
    the trie.  Only for a table :func:`block6_indexable` allows.
    """
    out: dict[int, int] = {}
    for net, plen, mask in table.lpm:
        first = int.from_bytes(net[:4], "big")
        for top in range(first, first + (1 << max(0, 32 - plen))):
            b = block6(top.to_bytes(4, "big"))
            out[b] = out.get(b, 0) | mask
    return out


class RuleEntry(NamedTuple):
    """One rule's ``rules`` array entry: its action and counter slot, and for a
    limit rule its bucket's parameters (:func:`limit_params`)."""

    action: int
    slot: int
    cost: int = 0
    tau: int = 0
    ban_ns: int = 0
    flags: int = 0
    bucket: int = 0
    """Names a limit rule's per-source buckets (see :func:`rule_entry`)."""
    sample_cost: int = 0
    sample_tau: int = 0
    """A rule's sample bucket (0: no samples), in the units of :func:`limit_params`."""


def time_cost(rate: float) -> int:
    """What one unit (a packet, a byte, a sample) of a ``rate`` per second costs a
    GCRA bucket, in the program's 1/``TIME_SCALE`` ns (at least 1)."""
    return max(1, round(layout.TIME_SCALE * 1e9 / rate))


def limit_params(limit: Limit) -> tuple[int, int, int, int]:
    """(cost, tau, ban_ns, flags) of a limit, in the program's units.

    cost is the time one packet (or byte) uses up, tau the burst, both in
    1/``TIME_SCALE`` ns: the program's GCRA compares them with the clock.
    """
    cost = time_cost(limit.rate)
    flags = (layout.LIM_BYTES if limit.unit is LimitUnit.BYTES else 0) | \
            (layout.LIM_PER_SOURCE if limit.per is LimitPer.SOURCE else 0) | \
            (layout.LIM_FINE_CLOCK if limit.burst < limit.rate * layout.COARSE_CLOCK_SLACK else 0)
    ban_ns = round(limit.ban * 1e9) if limit.ban else 0
    return cost, cost * limit.burst, ban_ns, flags


def rule_hash(name: str) -> int:
    """A limit rule's per-source buckets are keyed by this (beside its slot), and
    the bans it makes carry it: both must not pass to another rule with the slot."""
    return zlib.crc32(name.encode())


def rule_entry(rule: Rule, slot: int) -> RuleEntry:
    """The entry of ``rule`` in counter slot ``slot``.

    A limit rule's per-source buckets are keyed by its slot and a hash of its
    name: a slot is handed to a new rule once its rule is gone, and the new
    rule must not inherit the old one's buckets (a 1/h rule's bucket stays
    spent for hours).  The same rule keeps its buckets across reloads.
    """
    action = layout.ACTION_CODES[rule.action.value]
    sampling = {}
    if rule.sample:
        # A burst of one second of samples: a quiet rule's first packets are all shown.
        cost = time_cost(rule.sample)
        sampling = {"sample_cost": cost, "sample_tau": cost * max(1, round(rule.sample))}
    if rule.limit is None:
        return RuleEntry(action, slot, **sampling)
    return RuleEntry(action, slot, *limit_params(rule.limit), bucket=rule_hash(rule.name), **sampling)


@dataclass(frozen=True)
class IfaceEntry:
    ifindex: int
    default_drop: bool
    slot: int
    observe: bool = False
    rules: int = layout.ALL_RULES
    """The rules that apply on this interface (rules scoped to others are left out)."""
    untagged: int = 0
    """The rules that apply to an untagged frame here (``rules`` without those naming
    a vlan): the program starts from it, so untagged frames pay nothing for vlan
    rules.  :func:`build_image` computes it, and clips both masks to the bank's rules."""


@dataclass(frozen=True)
class BankImage:
    """Everything one bank holds; equal images mean equal kernel contents."""

    rules: tuple[RuleEntry, ...]                # by bit
    l4_wild: int                                # rules naming neither protocol nor dst port
    src_wild: int
    dst_wild: int
    decisive: int
    flags: int
    proto: tuple[int, ...]                      # 256 masks
    sport: tuple[int, ...]                      # PORT_SLOTS masks
    dport: tuple[int, ...] = field(compare=False)  # kept for readers; the kernel holds dport_l4
    addrs: Mapping[tuple[str, int], AddrTable] = field(default_factory=dict)
    ifaces: tuple[IfaceEntry, ...] = ()
    dport_l4: tuple[int, ...] = ()              # dport & proto, for TCP then UDP
    proto_wild: int = 0                         # rules naming no protocol
    sport_wild: int = 0                         # ... no source port
    dport_wild: int = 0                         # ... no destination port
    ttl: tuple[int, ...] = ()                   # 256 masks
    length: tuple[int, ...] = ()                # LEN_SLOTS masks
    vlan: tuple[int, ...] = ()                  # VLAN_IDS masks (untagged frames: vlan_wild)
    tcp_flags: tuple[int, ...] = ()             # 256 masks
    icmp_type: tuple[int, ...] = ()             # 2 x 256 masks: ICMP, then ICMPv6
    icmp_code: tuple[int, ...] = ()             # 256 masks
    ttl_common: tuple[int, int, int] = (0, -1, 0)  # (lo, hi, mask): see fieldtables.longest_run
    len_common: tuple[int, int, int] = (0, -1, 0)
    ttl_wild: int = 0
    len_wild: int = 0
    vlan_wild: int = 0
    tcpf_wild: int = 0
    icmpt_wild: int = 0
    icmpc_wild: int = 0

    @property
    def all_rules(self) -> int:
        return (1 << len(self.rules)) - 1

    def address_count(self) -> int:
        return sum(t.exact_count() // (4 if fam == 4 else 16) + len(t.lpm)
                   for (_, fam), t in self.addrs.items())


def build_image(config: Config, rule_slots: Mapping[str, int],
                ifaces: Iterable[IfaceEntry], headers: Mapping[str, object] | None = None) -> BankImage:
    """The bank contents for ``config``.

    ``rule_slots`` gives each rule's counter slot (stable across reloads, see
    :func:`xdpd.plan.assign_slots`); ``ifaces`` are the interfaces to enable, already
    resolved to ifindexes by the caller (that is observed state).  ``headers``
    is :func:`header_tables` of these rules, if the caller kept it from a
    build with the same rules but for their addresses.
    """
    rules = config.rules
    if len(rules) > layout.MAX_RULES:
        raise ValueError(f"{len(rules)} rules; the XDP program holds at most {layout.MAX_RULES}")
    all_rules = (1 << len(rules)) - 1
    if headers is None:
        headers = header_tables(rules)

    addrs: dict[tuple[str, int], AddrTable] = {}
    flags = 0
    for direction in DIRECTIONS:
        for family in FAMILIES:
            table = _addr_table(rules, direction, family)
            width = 4 if family == 4 else 16
            if table.exact or table.lpm:
                if table.exact_count() // width + len(table.lpm) <= layout.SMALL_MAX:
                    table = AddrTable(table.exact, table.lpm, small=True)
                    flags |= layout.ADDR_FLAGS[(direction, family, "small")]
                else:
                    if table.exact:
                        flags |= layout.ADDR_FLAGS[(direction, family, "exact")]
                    if table.lpm:
                        flags |= layout.ADDR_FLAGS[(direction, family, "lpm")]
                        if family == 4 or block6_indexable(table):
                            flags |= layout.ADDR_FLAGS[(direction, family, "blocks")]
            addrs[(direction, family)] = table
    for name, flag in layout.HDR_FLAGS.items():
        if headers[name] != all_rules:
            flags |= flag

    return BankImage(
        rules=tuple(rule_entry(r, rule_slots[r.name]) for r in rules),
        src_wild=wild(rules, lambda r: r.src),
        dst_wild=wild(rules, lambda r: r.dst),
        flags=flags,
        addrs=addrs,
        ifaces=tuple(sorted((replace(e, rules=e.rules & all_rules,
                                     untagged=e.rules & all_rules & headers["vlan_wild"])
                             for e in ifaces), key=lambda e: e.ifindex)),
        **headers,  # type: ignore[arg-type]
    )


def header_tables(rules: Sequence[Rule]) -> dict[str, object]:
    """The :class:`BankImage` fields that depend on the rules but not on their addresses.

    Tens of milliseconds (the port tables have 65,536 slots): a reload that
    changed only addresses, such as a list edit, re-uses them
    (:class:`xdpd.plan.ImageCache`), which also keeps them the same objects,
    so the bank writer's compare of them is one identity test.
    """
    return {
        "l4_wild": wild(rules, lambda r: r.protos) & wild(rules, lambda r: r.dst_ports),
        "decisive": bits(i for i, r in enumerate(rules) if r.action not in (Action.COUNT, Action.LIMIT)),
        "proto": (proto := proto_table(rules)),
        "sport": port_table(rules, lambda r: r.src_ports),
        "dport": (dport := port_table(rules, lambda r: r.dst_ports)),
        "dport_l4": restricted(dport, proto[6]) + restricted(dport, proto[17]),
        "proto_wild": wild(rules, lambda r: r.protos),
        "sport_wild": wild(rules, lambda r: r.src_ports),
        "dport_wild": wild(rules, lambda r: r.dst_ports),
        "ttl": (ttl := range_table(rules, lambda r: r.ttl, 256)),
        "length": (length := range_table(rules, lambda r: r.length, layout.LEN_SLOTS)),
        "ttl_common": longest_run(ttl),
        "len_common": longest_run(length),
        "vlan": range_table(rules, lambda r: r.vlans, layout.VLAN_IDS),
        "tcp_flags": tcp_flags_table(rules),
        "icmp_type": icmp_type_table(rules),
        "icmp_code": range_table(rules, lambda r: r.icmp_codes, 256),
        "ttl_wild": wild(rules, lambda r: r.ttl), "len_wild": wild(rules, lambda r: r.length),
        "vlan_wild": wild(rules, lambda r: r.vlans), "tcpf_wild": wild(rules, lambda r: r.tcp_flags),
        "icmpt_wild": wild(rules, lambda r: r.icmp_types), "icmpc_wild": wild(rules, lambda r: r.icmp_codes),
    }


def without_addresses(rules: Sequence[Rule]) -> tuple[Rule, ...]:
    """The rules with their addresses left out: equal for two configs exactly
    when their :func:`header_tables` are equal."""
    return tuple(replace(r, src=None, dst=None, src_files=(), dst_files=()) for r in rules)


def iface_entries(config: Config, ifindexes: Mapping[str, int],
                  iface_slots: Mapping[str, int]) -> list[IfaceEntry]:
    """Interfaces of ``config`` that exist (have an ifindex) as entries."""
    return [IfaceEntry(ifindexes[i.name], i.default is Default.DROP, iface_slots[i.name], i.observe,
                       layout.ALL_RULES & ~bits(n for n, r in enumerate(config.rules)
                                                if r.interfaces is not None and i.name not in r.interfaces))
            for i in config.interfaces if i.name in ifindexes]


def _addr_table(rules: Sequence[Rule], direction: str, family: int) -> AddrTable:
    width = 4 if family == 4 else 16
    exact_by_rule: list[tuple[int, bytes]] = []
    prefixes: dict[tuple[bytes, int], int] = {}
    for i, r in enumerate(rules):
        aset: AddrSet | None = getattr(r, direction)
        if aset is None:
            continue
        keys = aset.v4_exact if family == 4 else aset.v6_exact
        if keys:
            exact_by_rule.append((1 << i, keys))
        for net, plen in (aset.v4_prefixes if family == 4 else aset.v6_prefixes):
            prefixes[(net, plen)] = prefixes.get((net, plen), 0) | (1 << i)
    return AddrTable(exact=merge_exact(exact_by_rule, width), lpm=_inherit(prefixes, width))


def merge_exact(by_rule: Sequence[tuple[int, bytes]], width: int) -> tuple[tuple[int, bytes], ...]:
    """Partition the host addresses of several rules into groups by mask.

    The common shape is one huge list and a few small ones: the small lists
    go through a dict and are checked against the big one by binary search,
    so the big one is never expanded into Python objects.
    """
    if not by_rule:
        return ()
    if len(by_rule) == 1:
        return (by_rule[0],)
    ordered = sorted(by_rule, key=lambda mk: len(mk[1]), reverse=True)
    big_bit, big = ordered[0]
    big_keys = PackedKeys(big, width)
    small: dict[bytes, int] = {}
    for bit, keys in ordered[1:]:
        for k in PackedKeys(keys, width).chunks():
            small[k] = small.get(k, 0) | bit
    overlap = [k for k in small if k in big_keys]
    for k in overlap:
        small[k] |= big_bit
    if overlap:
        big = remove_keys(big, sorted(overlap), width)
    groups: dict[int, list[bytes]] = {}
    for k, m in small.items():
        groups.setdefault(m, []).append(k)
    out = [(big_bit, big)] if big else []
    # Keys with only big_bit are in `big`, so no group here has mask big_bit.
    for m, keys in groups.items():
        out.append((m, b"".join(sorted(keys))))
    return tuple(sorted(out))  # canonical: by mask (masks are distinct)


def _inherit(prefixes: Mapping[tuple[bytes, int], int], width: int) -> tuple[tuple[bytes, int, int], ...]:
    """Give each prefix the bits of every shorter prefix that covers it."""
    if not prefixes:
        return ()
    bits = width * 8
    by_len: dict[int, dict[int, int]] = {}
    for (net, plen), m in prefixes.items():
        by_len.setdefault(plen, {})[int.from_bytes(net, "big")] = m
    lengths = sorted(by_len)
    out = []
    for (net, plen), m in sorted(prefixes.items()):
        n = int.from_bytes(net, "big")
        for shorter in lengths:
            if shorter >= plen:
                break
            covering = n >> (bits - shorter) << (bits - shorter) if shorter else 0
            m |= by_len[shorter].get(covering, 0)
        out.append((net, plen, m))
    return tuple(out)


def rule_digest(rule: Rule) -> int:
    """A 64-bit digest of what a rule matches and does (not of its name).

    Stored beside the rule's name in the pinned maps, so ``plan`` can tell a
    changed rule from an unchanged one without keeping the old config.
    """
    h = hashlib.blake2b(digest_size=8)
    h.update(rule.action.value.encode())
    h.update(repr((sorted(rule.protos) if rule.protos is not None else None,
                   rule.src_ports, rule.dst_ports)).encode())
    headers = (rule.interfaces, rule.tcp_flags,
               sorted(rule.icmp_types) if rule.icmp_types is not None else None,
               rule.icmp_codes, rule.ttl, rule.length, rule.vlans)
    if any(f is not None for f in headers):  # rules without them keep the digests they had
        h.update(repr(headers).encode())
    for aset in (rule.src, rule.dst):
        if aset is None:
            h.update(b"\x00any")
            continue
        for part in (aset.v4_exact, aset.v6_exact):
            h.update(len(part).to_bytes(8, "little"))
            h.update(part)
        h.update(repr((aset.v4_prefixes, aset.v6_prefixes)).encode())
    return int.from_bytes(h.digest(), "little")
