"""Line rate: packets per second xdpd, nftables, iptables and the bare stack handle on a veth, beside a drop-only ceiling.

Run as root from the repository root: ``make bench``
(``/usr/bin/python3 -m tools.bench.linerate``).

:mod:`tools.bench.packet` measures the program one test run at a time; this
sends real frames.  The live-frames generator (:mod:`tools.trafficgen`;
its relay where the kernel refuses live frames) floods the victim's veth
of a throwaway :class:`tests.testbed.netbed.NetBed` flat out (60-byte UDP
frames to the victim's address, port 9, where nothing listens).  A second bed carries a two-instruction ``XDP_DROP`` program in
native mode for the whole run: before every flood of a scenario, one flood
goes there, and the scenario's ratio to that ceiling is the median of the
per-round ratios.  The victim of the first bed carries, in turn:

1. ``xdpd run`` (native mode) with one drop rule, flooded from a source it drops;
2. the daemon with the per-packet benchmark's 64 rules and 1M addresses
   (:mod:`tools.bench.rulesets`, list files from :mod:`tools.bench.ruleyaml`)
   plus 198.51.100.7 in the big source blocklist: flooded from that listed
   source (dropped by the exact hash behind the bitmap filter) and from
   198.51.100.8, listed nowhere (passed on to the stack);
3. the daemon with a DNS flood limit in front of 10 rules, per source and
   shared, flooded over the rate, and from a source a drop rule drops;
4. nothing: the kernel stack with GRO on (UDP's ``NoPorts`` counter);
5. nftables, a netdev ingress chain with the same 64 rules and the 1M
   addresses as sets (:mod:`tools.bench.nftables`), timed ``nft -f``;
6. iptables raw PREROUTING with the addresses in ipsets ``hash:net``
   (:mod:`tools.bench.iptables`), timed ``ipset restore``; Debian's default
   backend (iptables-nft), and with ``--legacy`` iptables-legacy too.

``--program-time`` adds, for every row with an XDP program, one flood with
the kernel's BPF run-time statistics on (:mod:`tools.bench.progtime`): ns
per frame inside the program; and two rows that split a listed source's
cost (the big list as the only rule, with and without its prefixes).

Received is what the victim's veth took in (the sender's ``tx_packets``;
frames that found its 256-frame ring full are ``tx_dropped`` and are not
counted); handled is what the filter's own counter counted over the same
flood (xdpd's verdict counter, the nft or iptables rule's counter, the
stack's NoPorts).  GRO is on on both victims (without a native XDP program
a veth refuses XDP_TX frames otherwise; with one, it changes nothing for
dropped frames).  Both CPUs of this VM take part (the generator on one, the
victim's NAPI wherever the kernel runs it), so the numbers are this
machine's; the ratio to the ceiling is the comparable figure.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import os
import sys
import time
from typing import Callable, Iterator

from tests.testbed import frames
from tests.testbed.daemon import XdpdProcess, config
from tests.testbed.netbed import NetBed
from tests.testbed.netns import call_in_netns
from tests.testbed.xdplink import xdp_prog_id
from tools.bench import iptables, nftables, ruleyaml
from tools.bench.daemonrun import wait_quiet
from tools.bench.linereport import NFT_LISTED, XDPD_LISTED, LineResults, Row, line_report
from tools.bench.progtime import run_stats, run_time_stats
from tools.bench.ruleparts import with_host
from tools.bench.rulesets import address_rules, base_rules, make_pool, port_rules
from tools.bench.session import load_average, log, unwind_on_signals
from tools.trafficgen import TrafficGen
from tools.trafficgen.link import set_gro
from tools.trafficgen.relay import COPIES
from xdpd.model import AddrSet, Rule

FLOOD_FRAMES = 3_000_000
DROP_ONLY = "int drop_all(struct xdp_md *ctx) { return XDP_DROP; }"
LISTED_SRC, UNLISTED_SRC, TESTNET_SRC = "198.51.100.7", "198.51.100.8", "192.0.2.7"
DPORT = 9
ONE_RULE = "- {name: drop-testnet, action: drop, src: [192.0.2.0/24]}"
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


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--frames", type=int, default=FLOOD_FRAMES, help="frames per flood")
    ap.add_argument("--rounds", type=int, default=3, help="floods per scenario (the median is reported)")
    ap.add_argument("--legacy", action="store_true", help="also measure iptables-legacy (about 40 s more)")
    ap.add_argument("--program-time", action="store_true",
                    help="also time the XDP program per frame (kernel BPF statistics, one more flood per XDP row)")
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("bench: needs root (BPF programs, network namespaces)", file=sys.stderr)
        return 2
    unwind_on_signals()
    t_start, load = time.perf_counter(), [load_average()]
    log("64 rules + 1M addresses (random.Random(42)), 198.51.100.7 added to blocklist-src ...")
    rules = big_rules()
    beds: list[NetBed] = []
    try:
        beds.append(NetBed.create())
        beds.append(NetBed.create())
        results = LineRate(beds[0], beds[1], args).run(rules)
    finally:
        for bed in beds:
            bed.destroy()
    load.append(load_average())
    results.load = load
    line_report(results, time.perf_counter() - t_start)
    return 0


def big_rules() -> list[Rule]:
    """The per-packet benchmark's 64 rules and 1M addresses, with :data:`LISTED_SRC` in its big source list."""
    pool = make_pool(989_000, 5_000, 5_000, 1_000)
    rules = base_rules() + port_rules() + address_rules(pool)
    i = [r.name for r in rules].index("blocklist-src")
    rules[i] = with_host(rules[i], LISTED_SRC)
    return rules


class LineRate:
    """The two beds: ``ceiling`` keeps the drop-only program, ``bed`` gets each scenario in turn."""

    def __init__(self, ceiling: NetBed, bed: NetBed, args: argparse.Namespace) -> None:
        self.ceiling_bed, self.bed, self.args = ceiling, bed, args
        self.ceiling = Row("drop-only XDP program (the veth pair's ceiling)",
                           "veth rx (the program counts nothing)")
        self.rows: list[Row] = []
        self.notes: list[str] = []

    def frame(self, src: str, dport: int = DPORT, bed: NetBed | None = None) -> bytes:
        bed = bed or self.bed
        return frames.frame_v4("udp", src, bed.victim_v4, 40000, dport, payload=bytes(18),
                               eth_dst=bed.victim_mac())

    def run(self, rules: list[Rule]) -> LineResults:
        for bed in (self.ceiling_bed, self.bed):
            set_gro(bed.victim_ns, bed.victim_if)
        with drop_only(self.ceiling_bed), \
                TrafficGen(self.ceiling_bed.sender_ns, self.ceiling_bed.sender_if) as self.gen_ceiling, \
                TrafficGen(self.bed.sender_ns, self.bed.sender_if) as self.gen:
            self.ceiling_frame = self.frame(LISTED_SRC, bed=self.ceiling_bed)
            if self.args.program_time:
                self.ceiling.prog_ns = self.program_time(self.ceiling_bed, self.gen_ceiling, self.ceiling_frame)
            self.xdpd_rows(rules)
            self.stack_rows(rules)
            generator = "live-frames generator" if self.gen.live else (
                f"relayed generator (this kernel refuses live frames; {COPIES} frames out per frame fed in)")
        return LineResults(self.args.frames, self.args.rounds, self.ceiling, self.rows, self.notes, [], generator)

    def measure(self, label: str, counted_as: str, frame: bytes, count: Callable[[], int], note: str = "") -> Row:
        """``rounds`` floods of ``frame``, each right after one into the ceiling; ``count()`` reads the counter."""
        log(f"{label} ...")
        row = Row(label, counted_as, note=note)
        for _ in range(self.args.rounds):
            c = self.gen_ceiling.flood(self.ceiling_frame, self.args.frames, seconds_max=30.0)
            self.ceiling.add(c.seconds, c.sent, c.delivered, c.delivered, c.delivered / c.seconds / 1e6)
            time.sleep(0.1)
            before = count()
            r = self.gen.flood(frame, self.args.frames, seconds_max=30.0)
            row.add(r.seconds, r.sent, r.delivered, count() - before, self.ceiling.received[-1])
            time.sleep(0.1)
        if self.args.program_time:
            row.prog_ns = self.program_time(self.bed, self.gen, frame)
        self.rows.append(row)
        return row

    def program_time(self, bed: NetBed, gen: TrafficGen, frame: bytes) -> float | None:
        """ns per run of the XDP program on ``bed``'s victim over one flood of ``frame`` (None: no program)."""
        prog_id = xdp_prog_id(bed.victim_ns, bed.victim_if)
        if not prog_id:
            return None
        with run_time_stats():
            runs, ns = run_stats(prog_id)
            gen.flood(frame, self.args.frames, seconds_max=30.0)
            runs_after, ns_after = run_stats(prog_id)
        return (ns_after - ns) / max(1, runs_after - runs)

    # ------------------------------------------------------------ xdpd

    def xdpd_rows(self, rules: list[Rule]) -> None:
        bed = self.bed
        with self.daemon(config(bed.victim_if, ONE_RULE, mode="native")) as d:
            self.measure("xdpd, 1 rule, a source it drops", "XDP drop_rule", self.frame(TESTNET_SRC),
                         verdict(d, "drop_rule"))
        log("xdpd with 64 rules + 1M addresses: starting ...")
        text, files = ruleyaml.config(rules, bed.victim_if)
        t = time.perf_counter()
        with self.daemon(text, files) as d:
            started = f"daemon ready in {time.perf_counter() - t:.1f} s"
            self.measure(XDPD_LISTED, "XDP drop_rule", self.frame(LISTED_SRC), verdict(d, "drop_rule"),
                         note=started)
            self.measure("xdpd, 64 rules + 1M addresses, unlisted source (passed to the stack)",
                         "XDP pass_default", self.frame(UNLISTED_SRC), verdict(d, "pass_default"))
        if self.args.program_time:
            self.hash_rows(rules)
        dns = self.frame(LISTED_SRC, dport=53)
        with self.daemon(config(bed.victim_if, BASE_RULES.replace("PER", "source"), mode="native")) as d:
            self.measure("xdpd, 10 rules + a per-source limit, one source over the rate", "XDP drop_limit",
                         dns, verdict(d, "drop_limit"))
            self.measure("xdpd, 10 rules, a source a drop rule drops", "XDP drop_rule", self.frame(TESTNET_SRC),
                         verdict(d, "drop_rule"))
        with self.daemon(config(bed.victim_if, BASE_RULES.replace("PER", "rule"), mode="native")) as d:
            self.measure("xdpd, 10 rules + a shared limit (per: rule), over the rate", "XDP drop_limit",
                         dns, verdict(d, "drop_limit"))

    def hash_rows(self, rules: list[Rule]) -> None:
        """Where a listed source's time goes: the big source list alone as one rule, with and without its prefixes.

        With its /24s and IPv6 prefixes the rule needs the exact hash and
        the LPM trie; with its /32s alone, only the hash (behind the bitmap
        filter).  Against the 64-rule row: what the other 63 rules add.
        """
        [big] = [r for r in rules if r.name == "blocklist-src"]
        hosts = dataclasses.replace(big, src=AddrSet(v4_exact=big.src.v4_exact))
        for label, rule in (("xdpd, 1 rule: blocklist-src (hosts and prefixes, ~790k), listed source", big),
                            ("xdpd, 1 rule: blocklist-src's IPv4 hosts only (hash), listed source", hosts)):
            text, files = ruleyaml.config([rule], self.bed.victim_if)
            with self.daemon(text, files) as d:
                self.measure(label, "XDP drop_rule", self.frame(LISTED_SRC), verdict(d, "drop_rule"))

    @contextlib.contextmanager
    def daemon(self, text: str, files: dict[str, str] | None = None) -> Iterator[XdpdProcess]:
        """A started daemon on the bed's victim, once its CPU use has settled (the second bank written)."""
        with XdpdProcess(self.bed, text) as d:
            for name, content in (files or {}).items():
                d.write_file(name, content)
            d.start()
            with contextlib.suppress(RuntimeError):  # still busy after 20 s: measure anyway
                wait_quiet(d.proc.pid, timeout=20.0)
            yield d
            d.stop()

    # ------------------------------------------------------------ the stack, nftables, iptables

    def stack_rows(self, rules: list[Rule]) -> None:
        bed, listed, unlisted = self.bed, self.frame(LISTED_SRC), self.frame(UNLISTED_SRC)
        self.measure("kernel stack, no filter", "UDP NoPorts", unlisted, lambda: udp_noports(bed))

        log("nftables: loading 64 rules + 1M addresses (nft -f) ...")
        seconds = nftables.load(bed, nftables.script(rules, bed.victim_if))
        try:
            nft = lambda name: lambda: nftables.counters(bed)[name]  # noqa: E731
            self.measure(NFT_LISTED, "nft rule counter", listed, nft("blocklist-src"), note=f"nft -f: {seconds:.1f} s")
            self.measure("nftables, 64 rules + 1M addresses as sets, unlisted source (passed to the stack)",
                         "nft counter, last rule", unlisted, nft(nftables.DEFAULT))
        finally:
            nftables.remove(bed)

        log("ipset restore of 1M addresses ...")
        scripts = iptables.scripts(rules)
        set_seconds = iptables.load_sets(bed, scripts)
        try:
            for backend in ("nft", "legacy") if self.args.legacy else ("nft",):
                rule_seconds = iptables.load_rules(bed, scripts, backend)
                try:
                    ipt = lambda name: lambda: iptables.counters(bed, backend)[name]  # noqa: E731
                    name = f"iptables-{backend} raw PREROUTING + ipset hash:net, 64 rules + 1M addresses"
                    self.measure(f"{name}, listed source (dropped)", "iptables rule counter", listed,
                                 ipt("blocklist-src"), note=f"ipset restore: {set_seconds:.1f} s, "
                                 f"iptables-restore: {rule_seconds:.2f} s")
                    self.measure(f"{name}, unlisted source (passed to the stack)", "iptables counter, last rule",
                                 unlisted, ipt(iptables.DEFAULT))
                    self.notes.append(f"iptables-{backend}: {iptables.version(backend)}")
                finally:
                    iptables.remove_rules(bed, backend)
        finally:
            iptables.remove_sets(bed)


def verdict(d: XdpdProcess, name: str) -> Callable[[], int]:
    """A reader of the daemon's verdict counter ``name`` on the bed's victim (``xdpd status --json``)."""
    return lambda: d.status()["interfaces"][d.bed.victim_if]["counters"][name]["packets"]


def udp_noports(bed: NetBed) -> int:
    """The victim namespace's UDP ``NoPorts``: datagrams the stack took all the way to a port nobody listens on."""
    lines = [line.split() for line in bed.run("victim", ["cat", "/proc/net/snmp"]).stdout.splitlines()
             if line.startswith("Udp:")]
    return int(dict(zip(lines[0][1:], lines[1][1:]))["NoPorts"])


@contextlib.contextmanager
def drop_only(bed: NetBed) -> Iterator[None]:
    """The two-instruction XDP_DROP program in native mode on ``bed``'s victim, for the whole block."""
    from bcc import BPF

    bpf = BPF(text=DROP_ONLY)
    fn = bpf.load_func(b"drop_all", BPF.XDP)
    call_in_netns(bed.victim_ns, lambda: BPF.attach_xdp(bed.victim_if.encode(), fn, BPF.XDP_FLAGS_DRV_MODE))
    try:
        yield
    finally:
        call_in_netns(bed.victim_ns, lambda: BPF.remove_xdp(bed.victim_if.encode(), BPF.XDP_FLAGS_DRV_MODE))


if __name__ == "__main__":
    sys.exit(main())
