"""Line rate: how many packets per second xdpd handles on a veth, beside a drop-only program.

Run as root from the repository root: ``make bench``
(``/usr/bin/python3 -m tools.bench.linerate``).

:mod:`tools.bench.packet` measures the program one test run at a time; this
sends real frames.  The live-frames generator (:mod:`tools.trafficgen`)
floods the sender's veth of a throwaway :class:`tests.testbed.netbed.NetBed`
flat out, and the victim's veth carries, in turn:

1. a two-instruction ``XDP_DROP`` program in native mode: the ceiling of
   this veth pair on this machine;
2. the daemon (``xdpd run``, native mode) with a DNS flood limit per source
   in front of the 10 base rules, flooded from one source over its rate
   (every frame is counted, looked up in its bucket and dropped as
   ``drop_limit``);
3. the same with a shared (``per: rule``) limit;
4. the same rule set, flooded from a source its ``drop-testnet`` rule drops
   (no limit involved: the plain classifier).

Handled is what the victim's XDP program took in per second: the sender
veth's ``tx_packets`` over the flood (frames that found the victim's
256-frame ring full are the sender's ``tx_dropped`` and are not counted).
Each scenario's verdict counters are checked against the frames handled.
Both CPUs of this VM take part (the generator on one, the victim's NAPI
wherever the kernel runs it), so the numbers are this machine's, not the
program's alone; the ratio to the drop-only ceiling is the comparable figure.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from dataclasses import dataclass

from tests.testbed import frames
from tests.testbed.daemon import XdpdProcess, config
from tests.testbed.netbed import NetBed
from tests.testbed.netns import call_in_netns
from tools.bench.session import log, unwind_on_signals
from tools.trafficgen import TrafficGen

FLOOD_FRAMES = 8_000_000
DROP_ONLY = "int drop_all(struct xdp_md *ctx) { return XDP_DROP; }"
BASE_RULES = """
  - {name: dns-flood, action: limit, proto: udp, dst_port: 53, rate: 1000/s, per: PER}
  - {name: drop-testnet, action: drop, src: [192.0.2.0/24]}
  - {name: drop-cgnat, action: drop, src: [100.64.0.0/10]}
  - {name: drop-hosts, action: drop, src: [198.18.0.5, 198.18.7.9, 198.18.200.1, "2001:db8:bad::1"]}
  - {name: drop-telnet, action: drop, proto: tcp, dst_port: 23}
  - {name: drop-x11, action: drop, proto: tcp, dst_port: "6000-6063"}
  - {name: drop-bad-v6, action: drop, src: ["2001:db8:bad::/48"]}
  - {name: drop-db-ssh, action: drop, dst: [198.51.100.99], proto: tcp, dst_port: 22}
  - {name: count-web, action: count, proto: tcp, dst_port: [80, 443]}
  - {name: drop-smb, action: drop, proto: tcp, dst_port: 445}
  - {name: drop-ntp-amp, action: drop, proto: udp, src_port: 123}
"""


@dataclass
class Row:
    label: str
    mpps: list[float]
    verdict: str
    counted: int
    handled: int

    @property
    def median(self) -> float:
        return statistics.median(self.mpps)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--frames", type=int, default=FLOOD_FRAMES, help="frames per flood")
    ap.add_argument("--rounds", type=int, default=3, help="floods per scenario (the median is reported)")
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("bench: needs root (BPF programs, network namespaces)", file=sys.stderr)
        return 2
    unwind_on_signals()
    bed = NetBed.create()
    try:
        rows = run(bed, args)
    finally:
        bed.destroy()
    report(rows, args)
    return 0


def run(bed: NetBed, args: argparse.Namespace) -> list[Row]:
    dns = frames.frame_v4("udp", "198.51.100.7", bed.victim_v4, 40000, 53, payload=bytes(18),
                          eth_dst=bed.victim_mac())
    blocked = frames.frame_v4("udp", "192.0.2.7", bed.victim_v4, 40000, 9, payload=bytes(18),
                              eth_dst=bed.victim_mac())
    rows = []
    with TrafficGen(bed.sender_ns, bed.sender_if) as gen:
        log("drop-only XDP program ...")
        rows.append(drop_only(bed, gen, dns, args))
        for label, per, frame, verdict in (
                ("xdpd, 10 rules + a per-source limit, one source over the rate", "source", dns, "drop_limit"),
                ("xdpd, 10 rules + a shared limit (per: rule), over the rate", "rule", dns, "drop_limit"),
                ("xdpd, 10 rules, a source a drop rule drops", "source", blocked, "drop_rule")):
            log(f"{label} ...")
            with XdpdProcess(bed, config(bed.victim_if, BASE_RULES.replace("PER", per), mode="native")) as d:
                d.start()
                rows.append(through_xdpd(d, gen, label, frame, verdict, args))
    return rows


def drop_only(bed: NetBed, gen: TrafficGen, frame: bytes, args: argparse.Namespace) -> Row:
    from bcc import BPF

    bpf = BPF(text=DROP_ONLY)
    fn = bpf.load_func(b"drop_all", BPF.XDP)
    call_in_netns(bed.victim_ns, lambda: BPF.attach_xdp(bed.victim_if.encode(), fn, BPF.XDP_FLAGS_DRV_MODE))
    try:
        mpps, handled = floods(gen, frame, args)
    finally:
        call_in_netns(bed.victim_ns, lambda: BPF.remove_xdp(bed.victim_if.encode(), BPF.XDP_FLAGS_DRV_MODE))
    return Row("drop-only XDP program (the veth pair's ceiling)", mpps, "XDP_DROP", handled, handled)


def through_xdpd(d: XdpdProcess, gen: TrafficGen, label: str, frame: bytes, verdict: str,
                 args: argparse.Namespace) -> Row:
    before = counters(d)[verdict]
    mpps, handled = floods(gen, frame, args)
    return Row(label, mpps, verdict, counters(d)[verdict] - before, handled)


def floods(gen: TrafficGen, frame: bytes, args: argparse.Namespace) -> tuple[list[float], int]:
    mpps, handled = [], 0
    for _ in range(args.rounds):
        r = gen.flood(frame, args.frames, seconds_max=30.0)
        mpps.append(r.delivered / r.seconds / 1e6)
        handled += r.delivered
        time.sleep(0.2)
    return mpps, handled


def counters(d: XdpdProcess) -> dict[str, int]:
    return {v: c["packets"] for v, c in d.status()["interfaces"][d.bed.victim_if]["counters"].items()}


def report(rows: list[Row], args: argparse.Namespace) -> None:
    ceiling = rows[0].median
    print()
    print(f"xdpd line rate: veth pair, live-frames generator, {args.frames:,} frames per flood, "
          f"median of {args.rounds}")
    print()
    print("| scenario | Mpps handled | × drop-only | counted as |")
    print("| --- | ---: | ---: | --- |")
    for r in rows:
        check = "" if r.counted >= r.handled * 0.999 else f" (only {r.counted:,} of {r.handled:,})"
        print(f"| {r.label} | {r.median:.2f} | {r.median / ceiling:.2f}× | {r.verdict}{check} |")
    print()
    print("(Mpps handled: frames the victim's XDP program took in per second of flood; "
          "frames the victim's ring had no room for are not counted.)")


if __name__ == "__main__":
    sys.exit(main())
