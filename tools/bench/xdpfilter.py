"""xdp-filter (xdp-tools) as the comparison: loaded in a throwaway test bed, its map filled, measured.

xdp-filter has to be attached to get loaded, so it is attached in skb mode
to the victim's veth end of a :class:`tests.testbed.netbed.NetBed` (``xdpdt-``
namespaces, removed at the end; a crashed run's are swept by the next test
run).  ``ip netns exec`` mounts a fresh /sys without bpffs, so xdp-filter
gets a private bpffs mounted in that command's own mount namespace: its
pins never touch the host's /sys/fs/bpf (where a real xdp-filter would keep
its shared maps).  The program stays alive because it is attached;
deleting the namespace deletes the veth and with it the program.
"""

from __future__ import annotations

import contextlib
import ctypes as ct
import os
import re
import shutil
import subprocess
import time
from typing import Iterator

from tests.testbed.netbed import NetBed
from tests.testbed.xdplink import xdp_prog_id
from tools.bench.progrun import XDP_DROP, XDP_PASS, ProgramBench, Variant, measure
from tools.bench.rulesets import NOMATCH_DST, Pool, frame4, ip_str, pack_be
from tools.bench.session import log
from xdpd import bpfsys


def version() -> str:
    """``v1.2.3`` of the installed xdp-filter, or "" if it does not say."""
    r = subprocess.run(["xdp-filter", "load", "--version"], capture_output=True, text=True)
    m = re.search(r"v?(\d+\.\d+\.\d+)", r.stdout + r.stderr)
    return f"v{m.group(1)}" if m else ""


@contextlib.contextmanager
def loaded() -> Iterator[int]:
    """xdp-filter loaded on a test bed's veth, dropping dst ports udp/53 and tcp/23; yields its program id."""
    with NetBed.create() as bed:
        script = (f"mount -t bpf bpf /sys/fs/bpf && xdp-filter load {bed.victim_if} --mode skb && "
                  "xdp-filter port 53 --proto udp && xdp-filter port 23 --proto tcp")
        r = bed.run("victim", ["sh", "-c", script])
        if r.returncode != 0:
            raise RuntimeError(f"loading xdp-filter: {(r.stdout + r.stderr).strip()}")
        prog_id = xdp_prog_id(bed.victim_ns, bed.victim_if)
        if not prog_id:
            raise RuntimeError(f"no XDP program on {bed.victim_if} after xdp-filter load")
        yield prog_id


@contextlib.contextmanager
def _maps_of(prog_id: int) -> Iterator[dict[str, int]]:
    """Fds of the program's maps by name, closed at the end."""
    pfd = bpfsys.prog_fd_by_id(prog_id)
    try:
        map_ids = bpfsys.prog_info(pfd).map_ids
    finally:
        os.close(pfd)
    maps: dict[str, int] = {}
    try:
        for mid in map_ids:
            fd = bpfsys.map_fd_by_id(mid)
            maps[bpfsys.map_info(fd).name] = fd
        yield maps
    finally:
        for fd in maps.values():
            os.close(fd)


def run(bench: ProgramBench, pool: Pool) -> None:
    """Fill xdp-filter's ``filter_ipv4`` from the 1M scenario's /32s (as many as fit) and measure it."""
    if shutil.which("xdp-filter") is None:
        bench.notes.append("xdp-filter: not measured (xdp-filter not installed: apt-get install xdp-tools)")
        return
    with loaded() as prog_id, _maps_of(prog_id) as maps:
        if "filter_ipv4" not in maps:
            raise RuntimeError(f"xdp-filter program {prog_id} has no filter_ipv4 map: {sorted(maps)}")
        info = bpfsys.map_info(maps["filter_ipv4"])
        cap = info.max_entries
        hosts = pool.v4_hosts
        drop_src = hosts[0]
        n = min(cap, len(hosts))
        # A spread sample; hosts[0] (the dropped packet's source) is its first element.
        chosen = hosts[::max(1, len(hosts) // n)][:n]
        assert chosen[0] == drop_src
        ncpu = bpfsys.num_possible_cpus()
        val_t = ct.c_uint64 * ncpu
        m = bpfsys.Map(maps["filter_ipv4"], ct.c_uint32, val_t, "filter_ipv4")
        # Key: IPv4 address in network order; value (per CPU):
        # flags in the low bits, MAP_FLAG_SRC = 1 (as `xdp-filter ip -m src` writes).
        t = time.perf_counter()
        m.update_batch(pack_be(chosen), bytes(val_t(*([1] * ncpu))) * len(chosen))
        log(f"  wrote {len(chosen):,} addresses into xdp-filter's filter_ipv4 "
            f"(max_entries {cap:,}) in {time.perf_counter() - t:.2f} s")
        label = f"xdp-filter, {len(chosen):,} /32 (its map capacity: {cap:,})"
        if cap >= len(hosts):
            label = f"xdp-filter, all {len(chosen):,} /32"
        variants = [
            Variant(f"{label}, no match", ["id", str(prog_id)], bench.frames["nomatch4"], XDP_PASS),
            Variant(f"{label}, dropped", ["id", str(prog_id)],
                    bench.frame_file("xf_drop", frame4(ip_str(drop_src), NOMATCH_DST)), XDP_DROP),
        ]
        bench.rows.extend(measure(variants, bench.pass_target, bench.args.rounds, bench.args.repeat))
        bench.notes.append(
            f"xdp-filter {version()} (mode skb, features all, policy allow) is "
            f"exact-match only and its filter_ipv4 map holds {cap:,} entries, so it was given "
            f"{len(chosen):,} of the 1M scenario's /32 addresses (src) plus dst ports udp/53 and tcp/23; "
            "no CIDRs or IPv6 prefixes.")
