"""Benchmark xdpd's XDP program against a pass-only program (and xdp-filter).

Run as root from the repository root: ``make bench``
(``/usr/bin/python3 -m tools.bench.packet``).

Every number is the mean cost of one program run as reported by
``bpftool prog run ... repeat N`` (BPF_PROG_TEST_RUN: the kernel runs the
program N times on one frame and reports the average in whole nanoseconds).
Each scenario is measured side by side with the pass-only reference
(``xdpd_pass``, compiled from the same source): pass, scenario, pass,
scenario ... for several rounds, and the table shows medians and the best
round.  The ratio to pass is what the targets are about, since the absolute
numbers depend on the machine; the targets are judged on the best round's
ratio, because noise from other guests on the host only ever adds time.

One program is compiled once (with room for 4M exact addresses); each
scenario applies a different rule set image with ``Datapath.apply``.  Only
map entries are written: nothing is attached to any interface of this host.
xdp-filter (xdp-tools) has to be attached to get loaded, so it is attached
in skb mode to a veth inside a throwaway test bed (``xdpdt-`` namespaces),
which is deleted at the end.

Caveat: the test run feeds the same frame N times, so every map lookup hits
a warm cache; the numbers are the instruction cost of the lookups, not the
cache misses a million-entry table costs with real traffic.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time

from tools.bench import xdpfilter
from tools.bench.progrun import ProgramBench, Result
from tools.bench.report import PacketResults, packet_machine_line, packet_report
from tools.bench.rulesets import (
    BASE_DROP_SRC, NOMATCH6_DST, NOMATCH6_ELSEWHERE_SRC, NOMATCH6_SRC, NOMATCH_DST, NOMATCH_SRC, address_rules,
    base_rules, breakdown_steps, config_of, field_rules, field_rules_worst, frame4, frame6, image_of, ip_str,
    dns4, limit_rules, make_pool, port_rules,
)
from tools.bench.session import log, unwind_on_signals
from xdpd import layout
from xdpd.model import LimitPer


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=15,
                    help="rounds per scenario (median and best are reported)")
    ap.add_argument("--repeat", type=int, default=3_000_000, help="program runs per bpftool call")
    ap.add_argument("--no-xdp-filter", action="store_true", help="skip the xdp-filter comparison")
    ap.add_argument("--breakdown", action="store_true",
                    help="also measure the no-match path step by step (one lookup kind at a time)")
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("bench: needs root (BPF programs and maps)", file=sys.stderr)
        return 2
    if shutil.which("bpftool") is None:
        print("bench: bpftool not found (apt-get install bpftool)", file=sys.stderr)
        return 2
    unwind_on_signals()

    t_start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="xdpdt-bench-") as workdir:
        bench = ProgramBench(workdir, args)
        try:
            results = run(bench, args)
        finally:
            bench.teardown()
    packet_report(results, packet_machine_line(args.rounds, args.repeat), time.perf_counter() - t_start)
    return 0


def run(bench: ProgramBench, args: argparse.Namespace) -> PacketResults:
    """Every scenario, 1M addresses first (into empty maps: the load measurement), then the comparisons."""
    log("generating addresses (random.Random(42)) ...")
    t = time.perf_counter()
    pool_1m = make_pool(989_000, 5_000, 5_000, 1_000)
    pool_100k = pool_1m.subset(10)
    log(f"  {pool_1m.count():,} + {pool_100k.count():,} addresses in {time.perf_counter() - t:.1f} s")

    bench.setup()
    nomatch4 = frame4(NOMATCH_SRC, NOMATCH_DST)
    nomatch6 = frame6(NOMATCH6_SRC, NOMATCH6_DST)
    bench.frame_file("nomatch4", nomatch4)
    V = layout.Verdict

    log("64 rules + 1M addresses: building the image ...")
    rules_1m = base_rules() + port_rules() + address_rules(pool_1m)
    assert len(rules_1m) == 64, len(rules_1m)
    t = time.perf_counter()
    img_1m = image_of(config_of(rules_1m))
    t_build = time.perf_counter() - t
    n_1m = img_1m.address_count()
    log(f"  built in {t_build:.1f} s ({n_1m:,} map entries); writing ...")
    t = time.perf_counter()
    bench.dp.apply(img_1m)
    t_apply = time.perf_counter() - t
    log(f"  written in {t_apply:.1f} s")

    rows_1m = bench.run_xdpd("xdpd, 64 rules + 1M addresses", img_1m, [
        ("no match", nomatch4, V.PASS_DEFAULT),
        ("no match, IPv6", nomatch6, V.PASS_DEFAULT),
        ("no match, IPv6 from a /32 no prefix reaches", frame6(NOMATCH6_ELSEWHERE_SRC, NOMATCH6_DST),
         V.PASS_DEFAULT),
        ("dropped", frame4(ip_str(pool_1m.v4_hosts[0]), NOMATCH_DST), V.DROP_RULE),
    ])
    del img_1m
    rules_100k = base_rules() + port_rules() + address_rules(pool_100k)
    rows_100k = bench.run_xdpd("xdpd, 64 rules + 100k addresses", image_of(config_of(rules_100k)), [
        ("no match", nomatch4, V.PASS_DEFAULT),
        ("dropped", frame4(ip_str(pool_100k.v4_hosts[0]), NOMATCH_DST), V.DROP_RULE),
    ])
    rows_10 = bench.run_xdpd("xdpd, 10 rules", image_of(config_of(base_rules())), [
        ("no match", nomatch4, V.PASS_DEFAULT),
        ("dropped", frame4(BASE_DROP_SRC, NOMATCH_DST), V.DROP_RULE),
    ])
    rows_fields = bench.run_xdpd("xdpd, 10 rules with the new fields", image_of(config_of(field_rules())), [
        ("no match", nomatch4, V.PASS_DEFAULT),
        ("dropped (ttl 1)", frame4(NOMATCH_SRC, NOMATCH_DST, ttl=1), V.DROP_RULE),
    ])
    rows_fields += bench.run_xdpd("xdpd, 10 rules with the new fields, worst case",
                                  image_of(config_of(field_rules_worst())),
                                  [("no match", nomatch4, V.PASS_DEFAULT)])

    dns = dns4(NOMATCH_SRC, NOMATCH_DST)
    rows_limit = bench.run_xdpd("xdpd, 10 rules + a per-source limit", image_of(config_of(limit_rules(1e12, 10**12))), [
        ("no match", nomatch4, V.PASS_DEFAULT),
        ("limited packet, within the rate (then dropped by drop-dns)", dns, V.DROP_RULE),
    ])
    rows_limit += bench.run_xdpd("xdpd, 10 rules + a per-source limit (1/h)",
                                 image_of(config_of(limit_rules(1 / 3600, 1))),
                                 [("limited packet, over the rate", dns, V.DROP_LIMIT)], spend=dns)
    rows_limit += bench.run_xdpd("xdpd, 10 rules + a shared limit (per: rule, 1/h)",
                                 image_of(config_of(limit_rules(1 / 3600, 1, LimitPer.RULE))),
                                 [("limited packet, over the rate", dns, V.DROP_LIMIT)], spend=dns)

    breakdown_rows: list[Result] = []
    if args.breakdown:
        for i, (label, rules, verdict) in enumerate(breakdown_steps()):
            image = image_of(config_of(rules), enabled=verdict is not None)
            [row] = bench.run_xdpd(f"breakdown, {label}", image, [(f"step{i}", nomatch4, verdict)])
            row.label = f"breakdown, {label}"
            breakdown_rows.append(row)

    xf_rows: list[Result] = []
    if not args.no_xdp_filter:
        log("xdp-filter: loading into a test bed ...")
        start = len(bench.rows)
        try:
            xdpfilter.run(bench, pool_1m)
        except Exception as e:  # report, keep the xdpd results
            bench.notes.append(f"xdp-filter: not measured ({e})")
        xf_rows = bench.rows[start:]

    return PacketResults(rows=bench.rows, scenarios=rows_10 + rows_fields + rows_limit + rows_100k + rows_1m + xf_rows,
                         breakdown=breakdown_rows, notes=bench.notes, load_build=t_build,
                         load_apply=t_apply, load_entries=n_1m)


if __name__ == "__main__":
    sys.exit(main())
