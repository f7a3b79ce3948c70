"""Command line: ``python3 -m tools.trafficgen --netns NS --dev DEV --count N [--src-random PREFIX] ...``

Builds one UDP (or TCP/ICMP) frame with :mod:`tests.testbed.frames`,
floods it with :func:`tools.trafficgen.flood` and prints what was sent,
how fast, and what the sender's counters say became of it.  Run as root
from the repository root.
"""

from __future__ import annotations

import argparse
import ipaddress
import sys

from tests.testbed import frames
from tools.trafficgen.flood import FloodDeadline, FloodResult, flood
from tools.trafficgen.plan import DEFAULT_BATCH, MAX_BATCH, MAX_COUNT, MAX_SECONDS, Sources
from tools.trafficgen.program import SOURCE


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python3 -m tools.trafficgen",
                                 description="Flood a veth from inside its network namespace (XDP live frames).")
    ap.add_argument("--netns", required=True, help="network namespace of the sending interface (/run/netns/NAME)")
    ap.add_argument("--dev", required=True, help="sending veth; its peer needs native XDP or GRO on")
    ap.add_argument("--count", type=int, required=True, help=f"frames to send (at most {MAX_COUNT:,})")
    ap.add_argument("--rate", type=int, metavar="PPS", help="frames per second (default: as fast as possible)")
    ap.add_argument("--seconds-max", type=float, default=10.0,
                    help=f"time limit (default 10, at most {MAX_SECONDS:g})")
    ap.add_argument("--batch", type=int, default=DEFAULT_BATCH,
                    help=f"frames per kernel batch (default {DEFAULT_BATCH}, at most {MAX_BATCH})")
    spoof = ap.add_mutually_exclusive_group()
    spoof.add_argument("--src-counter", metavar="PREFIX", help="source of frame n: host n of PREFIX")
    spoof.add_argument("--src-random", metavar="PREFIX", help="random sources within PREFIX")
    frame = ap.add_argument_group("the frame")
    frame.add_argument("--src", help="source address (default 192.0.2.1, or 2001:db8::1 for an IPv6 --dst)")
    frame.add_argument("--dst", default="203.0.113.2", help="destination address (default 203.0.113.2)")
    frame.add_argument("--proto", default="udp", choices=("udp", "tcp", "icmp"))
    frame.add_argument("--sport", type=int, default=1234)
    frame.add_argument("--dport", type=int, default=9)
    frame.add_argument("--dst-mac", default="02:02:02:02:02:02",
                       help="the receiver's MAC, if its stack is to take the frames")
    frame.add_argument("--size", type=int, default=60, help="frame length in bytes, without FCS (default 60)")
    ap.add_argument("--ebpf", action="store_true", help="print the generator's C source and exit")
    return ap


def build_frame(args: argparse.Namespace) -> bytes:
    """The frame the options describe, padded with payload to ``--size``."""
    v6 = ipaddress.ip_address(args.dst).version == 6
    src = args.src or ("2001:db8::1" if v6 else "192.0.2.1")
    proto = "icmpv6" if v6 and args.proto == "icmp" else args.proto
    build = frames.frame_v6 if v6 else frames.frame_v4
    bare = build(proto, src, args.dst, args.sport, args.dport, eth_dst=args.dst_mac)
    return build(proto, src, args.dst, args.sport, args.dport, eth_dst=args.dst_mac,
                 payload=bytes(max(0, args.size - len(bare))))


def report(result: FloodResult) -> str:
    lines = [f"sent {result.sent:,} frames in {result.seconds:.3f} s: {result.pps / 1e6:.2f} Mpps",
             f"sender counters: {result.delivered:,} taken by the peer, {result.dropped:,} dropped (peer's ring full)"]
    if result.vanished:
        lines.append(f"warning: {result.vanished:,} frames in neither counter: the peer has neither a native XDP "
                     "program nor GRO on, or the frames exceed its MTU")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.ebpf:
        sys.stdout.write(SOURCE.read_text())
        return 0
    src_mode, prefix = ("counter", args.src_counter) if args.src_counter else ("random", args.src_random)
    try:
        sources = Sources(src_mode, prefix) if prefix else None  # type: ignore[arg-type]
        frame = build_frame(args)
        result = flood(args.netns, args.dev, frame, args.count, sources=sources, batch_size=args.batch,
                       rate_pps=args.rate, seconds_max=args.seconds_max)
    except FloodDeadline as e:
        print(report(e.result))
        print(f"trafficgen: {e}", file=sys.stderr)
        return 1
    except ValueError as e:  # FloodRefused, FrameError, an address or MAC that does not parse
        print(f"trafficgen: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # LinkError, a missing namespace, a failed test run
        print(f"trafficgen: {e}", file=sys.stderr)
        return 1
    print(report(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
