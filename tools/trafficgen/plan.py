"""A flood checked and planned before anything touches the kernel (pure).

:func:`plan_flood` turns the caller's arguments into a :class:`FloodPlan`,
refusing what the generator must not do: more than :data:`MAX_COUNT`
frames, a time limit above :data:`MAX_SECONDS`, a paced flood that cannot
end within its time limit, or source addresses outside the documentation
ranges (RFC 5737, RFC 3849), so spoofed floods never carry an address that
could belong to someone.  The plan holds the values the XDP program is
configured with (:class:`ProgramConfig`); :func:`next_chunk` says how many
frames the next BPF_PROG_TEST_RUN call sends and how long to wait before it.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Literal

from tools.trafficgen.fields import FrameFields, locate

MAX_COUNT = 50_000_000
"""Frames one flood may send: about 7 s at the rates a veth pair reaches here."""
MAX_SECONDS = 60.0
"""The longest time limit a flood may ask for."""
MAX_BATCH = 256
"""The kernel's limit on ``batch_size`` in live-frames mode (TEST_XDP_MAX_BATCH)."""
DEFAULT_BATCH = 64
"""The kernel's default (NAPI's budget): a larger batch can overflow a veth peer's 256-frame ring."""
MIN_FRAME, MAX_FRAME = 14, 3_000
"""An Ethernet header at least; the kernel wants the frame, its headroom and
tailroom within one page in live mode (about 3.5 KiB on x86-64)."""

SOURCE_RANGES = tuple(ipaddress.ip_network(n) for n in
                      ("192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24", "2001:db8::/32"))
"""Where rewritten source addresses may come from: the documentation ranges."""

PACED_CHUNK_SECONDS = 0.002
"""A paced flood sends its frames in chunks of this much time at the asked rate:
the rate holds on average over 2 ms, while within a chunk frames go back to back.
(A test run costs about 20 us with the program parked, see :mod:`.park`.)"""
FIRST_CHUNK = 65_536
"""Frames in the first call of an unpaced flood (about 10 ms), to measure the rate."""
UNPACED_CHUNK_SECONDS = 0.05
"""Later unpaced calls last about this long: the time limit is checked between calls."""
MAX_CHUNK = 4_194_304

MODE_KEEP, MODE_COUNTER, MODE_RANDOM = 0, 1, 2
L4_UDP, L4_ZERO_NONE = 1, 2
SourceMode = Literal["counter", "random"]
_MODES = {"counter": MODE_COUNTER, "random": MODE_RANDOM}


class FloodRefused(ValueError):
    """The flood asked for is not allowed or not possible; the message says which argument and why."""


@dataclass(frozen=True)
class Sources:
    """Rewrite each frame's source address within ``prefix``.

    ``counter``: frame n of the flood gets host number n (mod the prefix
    size), so n frames carry n distinct sources while n fits the prefix.
    ``random``: the host number comes from bpf_get_prandom_u32().  Only
    32 bits vary: the low 32 (an IPv6 prefix shorter than /96 gives 2^32
    sources, with the bits between its length and /96 those of the prefix
    address), or with ``per_64`` (IPv6) bits 32-63, so that every source is
    in a /64 of its own (xdpd counts an IPv6 source by its /64): a /32
    prefix then gives 2^32 /64s.
    """

    mode: SourceMode
    prefix: ipaddress.IPv4Network | ipaddress.IPv6Network
    """Given as text (``"2001:db8:1::/96"``) or a network; host bits must be zero."""
    per_64: bool = False

    def __post_init__(self) -> None:
        if self.mode not in _MODES:
            raise FloodRefused(f"source mode {self.mode!r}: use 'counter' or 'random'")
        try:
            object.__setattr__(self, "prefix", ipaddress.ip_network(self.prefix))
        except ValueError as e:
            raise FloodRefused(f"source prefix {self.prefix!r}: {e}") from None
        if self.per_64 and (self.prefix.version != 6 or self.prefix.prefixlen > 64):
            raise FloodRefused(f"per_64 needs an IPv6 prefix of /64 or shorter, not {self.prefix}")

    @property
    def host_bits(self) -> int:
        width = 64 if self.per_64 else self.prefix.max_prefixlen
        return max(0, min(32, width - self.prefix.prefixlen))

    @property
    def vary_word(self) -> int:
        """The 16-bit word of the address where the 32 varying bits start."""
        return 0 if self.prefix.version == 4 else (2 if self.per_64 else 6)


@dataclass(frozen=True)
class ProgramConfig:
    """What the generator's XDP program is told about a flood (``struct gen_config``)."""

    mode: int = MODE_KEEP
    src_off: int = 0
    src_words: int = 0
    ip_csum_off: int = 0
    l4_csum_off: int = 0
    l4_flags: int = 0
    host_mask: int = 0
    vary_word: int = 0
    base: bytes = bytes(16)
    """The prefix address, right-aligned in 16 bytes (an IPv4 address in the last 4)."""


@dataclass(frozen=True)
class FloodPlan:
    frame: bytes
    count: int
    batch_size: int
    rate_pps: int | None
    seconds_max: float
    program: ProgramConfig


def plan_flood(frame: bytes, count: int, *, batch_size: int = DEFAULT_BATCH, sources: Sources | None = None,
               rate_pps: int | None = None, seconds_max: float = 10.0) -> FloodPlan:
    """Check every argument and plan the flood; raise :class:`FloodRefused` naming what is wrong."""
    if not MIN_FRAME <= len(frame) <= MAX_FRAME:
        raise FloodRefused(f"frame of {len(frame)} bytes: must be {MIN_FRAME} to {MAX_FRAME}")
    if not 1 <= count <= MAX_COUNT:
        raise FloodRefused(f"count {count}: must be 1 to {MAX_COUNT:,}")
    if not 1 <= batch_size <= MAX_BATCH:
        raise FloodRefused(f"batch size {batch_size}: must be 1 to {MAX_BATCH}")
    if not 0 < seconds_max <= MAX_SECONDS:
        raise FloodRefused(f"time limit {seconds_max} s: must be above 0 and at most {MAX_SECONDS:g}")
    if rate_pps is not None:
        if rate_pps < 1:
            raise FloodRefused(f"rate {rate_pps} pps: must be at least 1 (or no rate: as fast as possible)")
        if count / rate_pps > seconds_max:
            raise FloodRefused(f"{count:,} frames at {rate_pps:,} pps take {count / rate_pps:g} s, "
                               f"above the time limit of {seconds_max:g} s")
    program = ProgramConfig() if sources is None else program_config(locate(frame), sources)
    return FloodPlan(frame, count, batch_size, rate_pps, seconds_max, program)


def program_config(fields: FrameFields, sources: Sources) -> ProgramConfig:
    """The program's configuration for rewriting the source located by ``fields`` within ``sources``."""
    prefix = sources.prefix
    if prefix.version != fields.version:
        raise FloodRefused(f"source prefix {prefix} is IPv{prefix.version}, the frame IPv{fields.version}")
    if not any(prefix.version == r.version and prefix.subnet_of(r) for r in SOURCE_RANGES):  # type: ignore[arg-type]
        raise FloodRefused(f"source prefix {prefix} is outside the documentation ranges "
                           f"({', '.join(map(str, SOURCE_RANGES))})")
    flags = 0
    if fields.l4_proto == 17:
        flags = L4_UDP | (L4_ZERO_NONE if fields.version == 4 else 0)
    return ProgramConfig(
        mode=_MODES[sources.mode], src_off=fields.src_off, src_words=2 if fields.version == 4 else 8,
        ip_csum_off=fields.ip_csum_off, l4_csum_off=fields.l4_csum_off, l4_flags=flags,
        host_mask=(1 << sources.host_bits) - 1, vary_word=sources.vary_word,
        base=prefix.network_address.packed.rjust(16, b"\0"))


def next_chunk(plan: FloodPlan, sent: int, elapsed: float, pps_seen: float | None) -> tuple[int, float]:
    """``(frames, seconds to wait first)`` for the next call, ``sent`` frames and ``elapsed`` s into the flood.

    Paced floods follow a schedule (frame i is due at i / rate) in chunks
    of :data:`PACED_CHUNK_SECONDS`; unpaced ones size each call from the
    rate seen so far (``pps_seen``, None before the first call), so the time
    limit is checked every :data:`UNPACED_CHUNK_SECONDS` or so, and no call
    is planned to run past it.
    """
    left = plan.count - sent
    if plan.rate_pps is not None:
        size = max(1, int(plan.rate_pps * PACED_CHUNK_SECONDS))
        return min(left, size), max(0.0, sent / plan.rate_pps - elapsed)
    if pps_seen is None:
        return min(left, FIRST_CHUNK), 0.0
    size = pps_seen * min(UNPACED_CHUNK_SECONDS, max(0.0, plan.seconds_max - elapsed))
    return min(left, MAX_CHUNK, max(plan.batch_size, int(size))), 0.0
