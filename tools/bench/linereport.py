"""The line-rate benchmark's rows and the table ``make bench`` prints for them (the README quotes it).

A row holds, per round, three rates over the same flood: what the receiving
veth took in (``received``), what the filter's own counter says it handled
(``handled``), and what the drop-only ceiling handled in the flood just
before it, on a second veth pair (``ceiling``).  The ratio to the ceiling
is the median of the per-round ratios, so a slow moment of the shared
machine moves both sides of a ratio, not one.
"""

from __future__ import annotations

import os
import platform
import statistics
from dataclasses import dataclass, field

from tools.bench.session import cpu_model

CEILING_TARGET = 0.90
"""xdpd, 64 rules + 1M addresses, a listed source: at least this share of the ceiling."""
NFT_TARGET = 5.0
"""... and at least this many times what nftables handles with the same rules and set."""
XDPD_LISTED = "xdpd, 64 rules + 1M addresses, listed source (dropped)"
NFT_LISTED = "nftables, 64 rules + 1M addresses as sets, listed source (dropped)"


@dataclass
class Row:
    label: str
    counted_as: str
    """Which counter ``handled`` comes from (XDP verdict counter, nft or iptables rule counter, UDP NoPorts)."""
    received: list[float] = field(default_factory=list)
    handled: list[float] = field(default_factory=list)
    ceiling: list[float] = field(default_factory=list)
    note: str = ""
    delivered: int = 0
    counted: int = 0
    sent: int = 0
    prog_ns: float | None = None
    """ns per run of the victim's XDP program, from the kernel's BPF statistics (``--program-time``)."""

    def add(self, seconds: float, sent: int, delivered: int, counted: int, ceiling: float) -> None:
        """One round: a flood of ``seconds``, frames sent, taken in by the veth, seen by the counter; the ceiling's Mpps."""
        self.received.append(delivered / seconds / 1e6)
        self.handled.append(counted / seconds / 1e6)
        self.ceiling.append(ceiling)
        self.delivered += delivered
        self.counted += counted
        self.sent += sent

    @property
    def mpps(self) -> float:
        return statistics.median(self.handled)

    @property
    def ratio(self) -> float:
        """Median of the per-round ratios of handled to the ceiling flood beside it."""
        return statistics.median(h / c for h, c in zip(self.handled, self.ceiling))


@dataclass
class LineResults:
    frames: int
    rounds: int
    ceiling: Row
    rows: list[Row]
    notes: list[str]
    load: list[str]
    """Load average at start and end: what else competed for the two CPUs."""
    generator: str = "live-frames generator"
    """How the frames were sent (:mod:`tools.trafficgen`: live frames, or its relay)."""


def _target_lines(r: LineResults) -> list[str]:
    by_label = {row.label: row for row in r.rows}
    xdpd, nft = by_label.get(XDPD_LISTED), by_label.get(NFT_LISTED)
    out = []
    if xdpd:
        ok = "ok" if xdpd.ratio >= CEILING_TARGET else "MISSED"
        out.append(f"64 rules + 1M addresses, listed source: {xdpd.ratio:.2f}× the drop-only ceiling "
                   f"(target ≥ {CEILING_TARGET:.2f}×) {ok}")
    if xdpd and nft:
        times = statistics.median(x / n for x, n in zip(xdpd.handled, nft.handled))
        ok = "ok" if times >= NFT_TARGET else "MISSED"
        out.append(f"64 rules + 1M addresses, listed source: {times:.1f}× nftables with the same rules and set "
                   f"(target ≥ {NFT_TARGET:g}×) {ok}")
    return out


def line_report(r: LineResults, elapsed: float) -> None:
    """The table, the targets and the notes."""
    print()
    print(f"xdpd line rate: kernel {platform.release()}, {cpu_model()} ({os.cpu_count()} CPUs), "
          f"load average {' → '.join(r.load)} (start → end); two veth pairs, {r.generator} "
          f"(60-byte UDP frames), {r.frames:,} frames per flood, median of {r.rounds} rounds, each flood "
          "right after a flood into the drop-only ceiling")
    print()
    print("| scenario | Mpps received | Mpps handled | × ceiling | counted as |")
    print("| --- | ---: | ---: | ---: | --- |")
    c = r.ceiling
    print(f"| {c.label} | {statistics.median(c.received):.2f} | {c.mpps:.2f} | 1.00× | {c.counted_as} |")
    for row in r.rows:
        note = f" ({row.note})" if row.note else ""
        if abs(row.counted - row.delivered) > row.delivered * 0.001:
            note += f" (counted {row.counted:,} of {row.delivered:,} received)"
        if row.sent - row.delivered > row.sent * 0.01:
            note += f" ({(row.sent - row.delivered) / row.sent:.0%} of the frames sent found the ring full)"
        print(f"| {row.label}{note} | {statistics.median(row.received):.2f} | {row.mpps:.2f} | "
              f"{row.ratio:.2f}× | {row.counted_as} |")
    print()
    timed = [row for row in [r.ceiling, *r.rows] if row.prog_ns is not None]
    if timed:
        print("Time in the XDP program per frame, from the kernel's BPF run-time statistics (one more flood per "
              "scenario with them on: their clock reads slow every run, so those floods are not in the table above):")
        print()
        print("| scenario | ns per frame in the program | over the drop-only program |")
        print("| --- | ---: | ---: |")
        base = r.ceiling.prog_ns
        for row in timed:
            over = f"{row.prog_ns - base:+.0f}" if base is not None else "–"
            print(f"| {row.label} | {row.prog_ns:.0f} | {over} |")
        print()
    for line in _target_lines(r):
        print(line)
    for note in r.notes:
        print(note)
    print(f"(Mpps received: frames the receiving veth took into its ring per second of flood (the sender's "
          f"tx_packets); frames that found the ring full are not counted. Mpps handled: what the named counter "
          f"counted per second of the same flood. × ceiling: median of the per-round ratios to the drop-only "
          f"flood beside it. Whole run: {elapsed:.0f} s.)")
