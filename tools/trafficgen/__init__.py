"""A line-rate traffic generator for veth test beds: XDP live frames (BPF_PROG_TEST_RUN), or a relay.

Tests and benchmarks flood the victim of a test bed from its sender::

    from tools.trafficgen import Sources, TrafficGen, flood

    with TrafficGen(bed.sender_ns, bed.sender_if) as gen:
        result = gen.flood(frame, 5_000_000, sources=Sources("random", "2001:db8:1::/96"))
    result.sent, result.seconds, result.pps, result.delivered, result.dropped

    flood(bed.sender_ns, bed.sender_if, frame, 1000, rate_pps=10_000)   # one flood

or from the command line (root, repository root)::

    python3 -m tools.trafficgen --netns NS --dev DEV --count N [--src-random PREFIX] [--rate PPS] ...

The caller builds the frame (:mod:`tests.testbed.frames`).  A tiny XDP
program (``trafficgen.bpf.c``) returning XDP_TX is run by
BPF_PROG_TEST_RUN in live-frames mode with ``ingress_ifindex`` naming the
sending veth, so each run transmits the frame out of it, to its peer.  The
program can rewrite the source address of each frame, within a prefix of
the documentation ranges, by a counter (n frames, n distinct sources) or
bpf_get_prandom_u32(), keeping the IPv4 header checksum and the TCP, UDP
or ICMPv6 checksum valid (RFC 1624 incremental updates; a zero UDP
checksum over IPv4 stays zero).

Where the kernel refuses live frames (EPERM for any program: this
project's VMs from kernel 6.18.44-fc-v1300 on), the same program is
attached to a veth pair of the generator's own and frames are fed into it
by an AF_PACKET socket; the program redirects each one out of the sending
veth (:mod:`.relay`).  The receiver sees the same XDP frames through the
same ring either way; the relay is slower, and sends a frame that is not
rewritten 16 times per frame fed in (a broadcast redirect) to make up.
``TrafficGen(..., relay=True)`` uses it where live frames work too.

Requirements (found on kernel 6.18, Debian 12's bcc 0.26):

- Kernel >= 5.18 (live frames; the relay's broadcast needs 5.15), root,
  and the sender must be a veth (or another driver with ``ndo_xdp_xmit``).
- The test run must be made from the sender's network namespace: the
  ifindex is looked up in the calling thread's namespace, so a thread of
  its own enters it (:func:`tests.testbed.netns.call_in_netns`).
- The peer (receiver) needs a native-mode XDP program, or GRO on
  (:func:`.link.set_gro`; ``ethtool -K DEV gro on``).  Either gives it the
  NAPI ring XDP_TX frames are put in.  Without both, every frame is refused
  silently: no counter moves, no error comes back
  (:attr:`FloodResult.vanished`).  Nothing is needed on the sender's side
  (GRO there changes nothing).  A generic-mode XDP program on the peer does
  not count.
- The generator program is parked on a down veth pair in the sender's
  namespace while a :class:`TrafficGen` is open (:mod:`.park`): without it
  every test run sleeps about 24 ms (two XDP dispatcher updates), which
  cut 65,536-frame runs to a third of the rate and made fine pacing
  impossible.
- Pages are recycled without being rewritten (bpf_prog_run.rst), so the
  program writes each address from the prefix base, never by incrementing
  what the packet holds, and takes the checksum delta from what the packet
  holds (whichever version a page has, it is self-consistent).

Limits: at most :data:`MAX_COUNT` (50 million) frames and
:data:`MAX_SECONDS` (60 s) per flood (default limit 10 s); a paced flood
that cannot end in its limit is refused, an unpaced one that hits it raises
:class:`FloodDeadline`.  Source prefixes must lie in 192.0.2.0/24,
198.51.100.0/24, 203.0.113.0/24 or 2001:db8::/32.

Measured on this 2-core VM (60-byte UDP frames, 5 M frames, median of 5;
the sender and the receiver's NAPI share one CPU), into a native XDP drop
program on the peer:

    batch 64 (default)   keep 7.6 Mpps (IPv4) 7.6 (IPv6), counter 7.3 / 7.2, random 6.6 / 6.6
    batch 256            up to 4% faster, but 20-30 frames per million found
                         the peer's 256-frame ring full (``dropped``)

    relay (kernel 6.18.44-fc-v1300, live frames refused):
                         keep 2.5 Mpps (16 copies per fed frame), with
                         rewritten sources about 0.5 Mpps (no copies)

With batch 64 no frame was lost into an XDP program (60 million in a row);
into a counting, checksum-verifying receiver
(:mod:`tests.testbed.sourcecount`) about 6 Mpps.  Into the peer's stack
(GRO on, no XDP) 0.7 Mpps without loss at batch 64, while batch 256 lost
88% to the ring.  Paced floods hold their rate to 0.5% (1 kpps to 3 Mpps,
over 0.5 s).
"""

from tools.trafficgen.flood import FloodDeadline, FloodResult, TrafficGen, flood
from tools.trafficgen.plan import MAX_COUNT, MAX_SECONDS, FloodRefused, Sources

__all__ = ["flood", "TrafficGen", "FloodResult", "FloodDeadline", "FloodRefused", "Sources", "MAX_COUNT",
           "MAX_SECONDS"]
