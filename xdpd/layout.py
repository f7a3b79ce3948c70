"""The binary layout shared with ``bpf/xdpd.bpf.c``.

Every struct and constant here mirrors the C source; the two must change
together.  :func:`xdpd.maps.check_sizes` compares each map's key and value
size as the kernel reports it with these types whenever the maps are opened
(and ``tests/kernel/test_layout.py`` checks every map of a fresh compile),
so a drift fails loudly instead of corrupting a map.

This module is also the one home of the names the C source and the Python
side share: program names, action codes and names, verdict names.
"""

from __future__ import annotations

import ctypes as ct
import enum

PROG_NAME = "xdpd_main"
"""The kernel's name for our program: how an xdpd program is told apart from a foreign one."""
PASS_PROG_NAME = "xdpd_pass"
"""The pass-only reference program compiled from the same source (tests, benchmarks)."""

MAX_RULES = 128
"""Rules per bank: the program's rule mask has 128 bits."""
MAX_RULE_SLOTS = 256
MAX_IFACES = 256
IFINDEX_MAX = 65536
NO_PORT = 65536
PORT_SLOTS = 65537
MASK_WORDS = 2
FILTER_BITS = 24
FILTER_WORDS = 1 << (FILTER_BITS - 6)
VLAN_IDS = 4096
LEN_SLOTS = 65536

ACT_PASS = 0
ACT_DROP = 1
ACT_COUNT = 2
ACT_LIMIT = 3
ACTION_NAMES = {ACT_PASS: "pass", ACT_DROP: "drop", ACT_COUNT: "count", ACT_LIMIT: "limit"}
"""Action code -> the name a config uses for it (:class:`xdpd.model.Action` values)."""
ACTION_CODES = {name: code for code, name in ACTION_NAMES.items()}


class Verdict(enum.IntEnum):
    """Per-interface outcome counters, indexed as in the C program."""

    PASS_RULE = 0
    DROP_RULE = 1
    PASS_DEFAULT = 2
    DROP_DEFAULT = 3
    DROP_MALFORMED = 4
    PASS_EXEMPT = 5
    OBSERVE_DROP_RULE = 6
    """Observe mode: would have been dropped by a rule, passed."""
    OBSERVE_DROP_DEFAULT = 7
    OBSERVE_DROP_MALFORMED = 8
    DROP_LIMIT = 9
    """Over a limit rule's rate."""
    DROP_BAN = 10
    """The source is in the ban table."""
    OBSERVE_DROP_LIMIT = 11
    OBSERVE_DROP_BAN = 12

    @property
    def label(self) -> str:
        return self.name.lower()


NVERDICTS = len(Verdict)

LIM_BYTES = 1
"""rule_ent.flags: the limit's rate counts bytes (its cost is per byte)."""
LIM_PER_SOURCE = 2
"""rule_ent.flags: one bucket per source (else one for the rule)."""
LIM_FINE_CLOCK = 4
"""rule_ent.flags: read the precise clock (the burst is under two ticks of the rate)."""
COARSE_CLOCK_SLACK = 0.02
"""Seconds: two ticks of the coarse clock at HZ=100 (the slowest Debian kernel
tick).  A bucket whose burst holds this much of its rate can use the coarse
clock: time advancing a tick at once never empties it."""
TIME_SCALE = 64
"""Limit arithmetic runs in 1/TIME_SCALE ns (costs and bursts in rule_ent)."""
BAN_FILTER_BITS = 22
BAN_FILTER_BYTES = 1 << BAN_FILTER_BITS
"""The ban filter: one byte per hash value, in u64 array elements."""
BAN_FILTER_WORDS = BAN_FILTER_BYTES // 8
BAN_BY_CLI = 0xFFFFFFFF
"""ban.rule_slot of a ban made by ``xdpd ban``."""
BAN_STAT_BY_RULE = 0
BAN_STAT_FULL = 1
BAN_STATS = 2

# bank_cfg.flags: which address maps hold entries for a bank.
F_SRC4_EXACT = 1 << 0
F_SRC4_LPM = 1 << 1
F_SRC6_EXACT = 1 << 2
F_SRC6_LPM = 1 << 3
F_DST4_EXACT = 1 << 4
F_DST4_LPM = 1 << 5
F_DST6_EXACT = 1 << 6
F_DST6_LPM = 1 << 7

F_SRC4_SMALL = 1 << 8
F_SRC6_SMALL = 1 << 9
F_DST4_SMALL = 1 << 10
F_DST6_SMALL = 1 << 11
SMALL_MAX = 8
F_SRC4_BLOCKS = 1 << 12
"""The bank's /16 block index (``src4_blocks``) holds its IPv4 source prefixes: the
program consults the trie only for an address in a block a longer prefix reaches."""
F_DST4_BLOCKS = 1 << 13
F_SRC6_BLOCKS = 1 << 20
"""The bank's IPv6 bucket index (``src6_blocks``) holds its source prefixes: the program
consults the trie only for an address whose /32's bucket a prefix reaches."""
F_DST6_BLOCKS = 1 << 21
BLOCK6_BITS = 16
"""Buckets per bank in the ``*6_blocks`` maps: 2^16, by a hash of an address's /32."""
BLOCK6_MIN_PLEN = 28
"""A table with a shorter IPv6 prefix gets no bucket index (a prefix fills 2^(32 - len) buckets)."""
HDR_FLAGS = {"ttl_wild": 1 << 14, "len_wild": 1 << 15, "vlan_wild": 1 << 16,
             "tcpf_wild": 1 << 17, "icmpt_wild": 1 << 18, "icmpc_wild": 1 << 19}
"""bank_cfg.flags: some rule names this header field (by its wild mask's name)."""

ADDR_FLAGS = {
    ("src", 4, "exact"): F_SRC4_EXACT,
    ("src", 4, "lpm"): F_SRC4_LPM,
    ("src", 6, "exact"): F_SRC6_EXACT,
    ("src", 6, "lpm"): F_SRC6_LPM,
    ("dst", 4, "exact"): F_DST4_EXACT,
    ("dst", 4, "lpm"): F_DST4_LPM,
    ("dst", 6, "exact"): F_DST6_EXACT,
    ("dst", 6, "lpm"): F_DST6_LPM,
    ("src", 4, "small"): F_SRC4_SMALL,
    ("src", 6, "small"): F_SRC6_SMALL,
    ("dst", 4, "small"): F_DST4_SMALL,
    ("dst", 6, "small"): F_DST6_SMALL,
    ("src", 4, "blocks"): F_SRC4_BLOCKS,
    ("dst", 4, "blocks"): F_DST4_BLOCKS,
    ("src", 6, "blocks"): F_SRC6_BLOCKS,
    ("dst", 6, "blocks"): F_DST6_BLOCKS,
}


class Mask(ct.Structure):
    _fields_ = [("w", ct.c_uint64 * MASK_WORDS)]

    @classmethod
    def of(cls, bits: int) -> "Mask":
        return cls((ct.c_uint64 * 2)(bits & 0xFFFFFFFFFFFFFFFF, bits >> 64))

    def value(self) -> int:
        return self.w[0] | (self.w[1] << 64)


class Span(ct.Structure):
    """The longest run of equal entries of a range-built table, kept in the bank's settings."""

    _fields_ = [("lo", ct.c_uint32), ("hi", ct.c_uint32), ("m", Mask)]


class BankCfg(ct.Structure):
    _fields_ = [
        ("l4_wild", Mask),
        ("src_wild", Mask),
        ("dst_wild", Mask),
        ("decisive", Mask),
        ("proto_wild", Mask),
        ("sport_wild", Mask),
        ("dport_wild", Mask),
        ("ttl_wild", Mask),
        ("len_wild", Mask),
        ("vlan_wild", Mask),
        ("tcpf_wild", Mask),
        ("icmpt_wild", Mask),
        ("icmpc_wild", Mask),
        ("ttl_common", Span),
        ("len_common", Span),
        ("flags", ct.c_uint32),
        ("nrules", ct.c_uint32),
    ]


class State(ct.Structure):
    """The bank switch, with both banks' settings (see the C source)."""

    _fields_ = [("bank", ct.c_uint32), ("bans_armed", ct.c_uint32), ("generation", ct.c_uint64),
                ("cfg", BankCfg * 2)]


STATE_BANS_ARMED_OFFSET = State.bans_armed.offset
"""Where ``bans_armed`` sits in the mmapable state map: set with one u32 store."""


class RuleEnt(ct.Structure):
    _fields_ = [("action", ct.c_uint32), ("slot", ct.c_uint32),
                ("cost", ct.c_uint64), ("tau", ct.c_uint64), ("ban_ns", ct.c_uint64),
                ("flags", ct.c_uint32), ("bucket", ct.c_uint32),
                ("sample_cost", ct.c_uint64), ("sample_tau", ct.c_uint64)]


class Sample(ct.Structure):
    """One sampled packet from the program's ring buffer (``struct sample``)."""

    _fields_ = [("rule_slot", ct.c_uint32), ("ifindex", ct.c_uint32), ("verdict", ct.c_uint32),
                ("family", ct.c_uint32), ("proto", ct.c_uint32), ("sport", ct.c_uint32),
                ("dport", ct.c_uint32), ("length", ct.c_uint32), ("frame_len", ct.c_uint32),
                ("icmp_type", ct.c_uint32), ("icmp_code", ct.c_uint32), ("tcp_flags", ct.c_uint32),
                ("l4", ct.c_uint32), ("vlan", ct.c_uint32), ("src", ct.c_uint8 * 16),
                ("dst", ct.c_uint8 * 16)]


SAMPLES_MAP = "samples"
"""The program's ring buffer of samples (not pinned: found among the program's maps)."""


class SrcKey(ct.Structure):
    """A source as the ban table knows it: IPv4 as ::ffff:a.b.c.d, IPv6 as its /64."""

    _fields_ = [("addr", ct.c_uint8 * 16)]


class Ban(ct.Structure):
    _fields_ = [("expires", ct.c_uint64), ("since", ct.c_uint64), ("rule_slot", ct.c_uint32),
                ("rule_hash", ct.c_uint32), ("reason", ct.c_char * 64)]


class BucketKey(ct.Structure):
    _fields_ = [("slot", ct.c_uint32), ("bucket", ct.c_uint32), ("src", SrcKey)]


ALL_RULES = (1 << 128) - 1
"""A mask with every rule's bit."""


class IfaceEnt(ct.Structure):
    _fields_ = [("enabled", ct.c_uint8), ("default_drop", ct.c_uint8), ("observe", ct.c_uint8),
                ("pad", ct.c_uint8), ("slot", ct.c_uint16), ("pad2", ct.c_uint16), ("rules", Mask),
                ("untagged", Mask)]


class Counter(ct.Structure):
    _fields_ = [("packets", ct.c_uint64), ("bytes", ct.c_uint64)]


class Key4(ct.Structure):
    _fields_ = [("bank", ct.c_uint32), ("addr", ct.c_uint8 * 4)]


class Key6(ct.Structure):
    _fields_ = [("bank", ct.c_uint32), ("addr", ct.c_uint8 * 16)]


class Lpm4(ct.Structure):
    _fields_ = [("prefixlen", ct.c_uint32), ("bank", ct.c_uint32), ("addr", ct.c_uint8 * 4)]


class Lpm6(ct.Structure):
    _fields_ = [("prefixlen", ct.c_uint32), ("bank", ct.c_uint32), ("addr", ct.c_uint8 * 16)]


class Small4Ent(ct.Structure):
    _fields_ = [("net", ct.c_uint8 * 4), ("netmask", ct.c_uint8 * 4), ("m", Mask)]


class Small4(ct.Structure):
    _fields_ = [("n", ct.c_uint32), ("pad", ct.c_uint32), ("e", Small4Ent * SMALL_MAX)]


class Block16(ct.Structure):
    _fields_ = [("sure", Mask), ("maybe", Mask)]


BLOCKS = 65536
"""IPv4 /16 blocks per bank in the ``*4_blocks`` maps."""


class Small6Ent(ct.Structure):
    _fields_ = [("net", ct.c_uint8 * 16), ("netmask", ct.c_uint8 * 16), ("m", Mask)]


class Small6(ct.Structure):
    _fields_ = [("n", ct.c_uint32), ("pad", ct.c_uint32), ("e", Small6Ent * SMALL_MAX)]


class RuleMeta(ct.Structure):
    _fields_ = [
        ("name", ct.c_char * 64),
        ("action", ct.c_uint32),
        ("in_use", ct.c_uint32),
        ("digest", ct.c_uint64),
    ]


class IfaceMeta(ct.Structure):
    _fields_ = [
        ("name", ct.c_char * 16),
        ("ifindex", ct.c_uint32),
        ("mode", ct.c_uint32),
        ("in_use", ct.c_uint32),
        ("pad", ct.c_uint32),
    ]


MODE_CODES = {"none": 0, "native": 1, "generic": 2, "offload": 3}
MODE_NAMES = {v: k for k, v in MODE_CODES.items()}

# Map name -> (key type, value type); what the loader opens from the pin dir.
MAPS: dict[str, tuple[type, type]] = {
    "state": (ct.c_uint32, State),
    "rules": (ct.c_uint32, RuleEnt),
    "proto_mask": (ct.c_uint32, Mask),
    "sport_mask": (ct.c_uint32, Mask),
    "dport_mask": (ct.c_uint32, Mask),
    "src4_exact": (Key4, Mask),
    "dst4_exact": (Key4, Mask),
    "src6_exact": (Key6, Mask),
    "dst6_exact": (Key6, Mask),
    "src4_lpm": (Lpm4, Mask),
    "dst4_lpm": (Lpm4, Mask),
    "src6_lpm": (Lpm6, Mask),
    "dst6_lpm": (Lpm6, Mask),
    "src4_small": (ct.c_uint32, Small4),
    "dst4_small": (ct.c_uint32, Small4),
    "src6_small": (ct.c_uint32, Small6),
    "dst6_small": (ct.c_uint32, Small6),
    "src4_blocks": (ct.c_uint32, Block16),
    "dst4_blocks": (ct.c_uint32, Block16),
    "src6_blocks": (ct.c_uint32, Mask),
    "dst6_blocks": (ct.c_uint32, Mask),
    "src4_filter": (ct.c_uint32, ct.c_uint64),
    "dst4_filter": (ct.c_uint32, ct.c_uint64),
    "src6_filter": (ct.c_uint32, ct.c_uint64),
    "dst6_filter": (ct.c_uint32, ct.c_uint64),
    "ttl_mask": (ct.c_uint32, Mask),
    "len_mask": (ct.c_uint32, Mask),
    "vlan_mask": (ct.c_uint32, Mask),
    "tcpf_mask": (ct.c_uint32, Mask),
    "icmpt_mask": (ct.c_uint32, Mask),
    "icmpc_mask": (ct.c_uint32, Mask),
    "iface_cfg": (ct.c_uint32, IfaceEnt),
    "iface_stats": (ct.c_uint32, Counter),
    "rule_stats": (ct.c_uint32, Counter),
    "rule_names": (ct.c_uint32, RuleMeta),
    "iface_names": (ct.c_uint32, IfaceMeta),
    "rule_buckets": (ct.c_uint32, ct.c_uint64),
    "sample_buckets": (ct.c_uint32, ct.c_uint64),
    "src_buckets": (BucketKey, ct.c_uint64),
    "limit_stats": (ct.c_uint32, Counter),
    "ban_stats": (ct.c_uint32, ct.c_uint64),
}

PERCPU_MAPS = frozenset({"iface_stats", "rule_stats", "limit_stats", "ban_stats"})

BAN_MAPS: dict[str, tuple[type, type]] = {
    "bans": (SrcKey, Ban),
    "ban_filter": (ct.c_uint32, ct.c_uint64),
}
"""The ban table and its filter, pinned apart from :data:`MAPS` (see :mod:`xdpd.bans`)."""


def exact_map(direction: str, family: int) -> str:
    return f"{direction}{family}_exact"


def lpm_map(direction: str, family: int) -> str:
    return f"{direction}{family}_lpm"


def small_map(direction: str, family: int) -> str:
    return f"{direction}{family}_small"


def filter_map(direction: str, family: int) -> str:
    return f"{direction}{family}_filter"
