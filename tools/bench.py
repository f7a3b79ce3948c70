#!/usr/bin/python3
"""Benchmark xdpd's XDP program against a pass-only program (and xdp-filter).

Run as root: ``make bench`` (``/usr/bin/python3 tools/bench.py``).

Every number is the mean cost of one program run as reported by
``bpftool prog run ... repeat N`` (BPF_PROG_TEST_RUN: the kernel runs the
program N times on one frame and reports the average in whole nanoseconds).
Each scenario is measured side by side with the pass-only reference
(``xdpd_pass``, compiled from the same source): pass, scenario, pass,
scenario ... for several rounds, and the table shows medians.  The ratio to
pass is what the targets are about, since the absolute numbers depend on the
machine.

One program is compiled once (with room for 4M exact addresses); each
scenario applies a different rule set image with ``Datapath.apply``.  Only
map entries are written: nothing is attached to any interface of this host.
xdp-filter (xdp-tools) has to be attached to get loaded, so it is attached
in skb mode to one end of a veth pair inside a throwaway network namespace
(``xdpdt-bench``), which is deleted at the end.

Caveat: the test run feeds the same frame N times, so every map lookup hits
a warm cache; the numbers are the instruction cost of the lookups, not the
cache misses a million-entry table costs with real traffic.
"""

from __future__ import annotations

import argparse
import array
import contextlib
import ctypes as ct
import json
import os
import platform
import random
import re
import shutil
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from xdpd import bpfsys, datapath, layout, tables  # noqa: E402
from xdpd.model import (  # noqa: E402
    Action, AddrSet, Config, Interface, PortRange, Rule,
)

NETNS = "xdpdt-bench"
VETH_A, VETH_B = "xdpdt-bA", "xdpdt-bB"
# tests/netbed.py sweeps `xdpdt-*` namespaces whose owner file (named after
# the name minus its last "-part") names no live process.  Claim ours the
# same way so a test run in parallel does not delete it under us.
OWNER_DIR = "/run/xdpdt"
OWNER_FILE = os.path.join(OWNER_DIR, NETNS.rsplit("-", 1)[0] + ".owner")

XDP_DROP, XDP_PASS = 1, 2
XDP_NAMES = {0: "XDP_ABORTED", 1: "XDP_DROP", 2: "XDP_PASS", 3: "XDP_TX", 4: "XDP_REDIRECT"}
TEST_IFINDEX = 1  # BPF_PROG_TEST_RUN reports ingress_ifindex 1 (lo)
IFACE_SLOT = 0

TARGETS = {"10 rules, no match": 2.0, "64 rules + 1M addresses, no match": 3.0}


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# --------------------------------------------------------------- frames

def _csum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def _tcp_syn(sport: int, dport: int) -> bytes:
    return struct.pack("!HHIIBBHHH", sport, dport, 1, 0, 5 << 4, 0x02, 64240, 0, 0)


ETH_SRC, ETH_DST = bytes.fromhex("020000000002"), bytes.fromhex("020000000001")


def frame4(src: str, dst: str, sport: int = 40000, dport: int = 443) -> bytes:
    """Ethernet + IPv4 + TCP SYN, padded to the 60-byte minimum."""
    tcp = _tcp_syn(sport, dport)
    hdr = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(tcp), 0x1234, 0x4000, 64, 6, 0,
                      socket.inet_pton(socket.AF_INET, src), socket.inet_pton(socket.AF_INET, dst))
    hdr = hdr[:10] + struct.pack("!H", _csum(hdr)) + hdr[12:]
    f = ETH_DST + ETH_SRC + b"\x08\x00" + hdr + tcp
    return f + b"\0" * (60 - len(f))


def frame6(src: str, dst: str, sport: int = 40000, dport: int = 443) -> bytes:
    """Ethernet + IPv6 + TCP SYN."""
    tcp = _tcp_syn(sport, dport)
    hdr = struct.pack("!IHBB16s16s", 6 << 28, len(tcp), 6, 64,
                      socket.inet_pton(socket.AF_INET6, src), socket.inet_pton(socket.AF_INET6, dst))
    return ETH_DST + ETH_SRC + b"\x86\xdd" + hdr + tcp


NOMATCH_SRC, NOMATCH_DST = "203.0.113.7", "198.51.100.1"
NOMATCH6_SRC, NOMATCH6_DST = "2001:db8:ffff::7", "2001:db8:ffff::1"


# --------------------------------------------------------------- addresses

# Random addresses come only from these first octets: never 10/8 (the admin
# nets of the rule sets), 127/8, or anything at or above 190 (so never the
# no-match packet's 203.0.113.7 or 198.51.100.1, nor 198.18/15 and 192.0.2/24
# of the 10-rule set).
_V4_OCTETS = bytes(o for o in range(1, 190) if o not in (10, 100, 127))
_V4_OCTET_MAP = bytes(_V4_OCTETS[i % len(_V4_OCTETS)] for i in range(256))


def _be_ints(data: bytes) -> list[int]:
    a = array.array("I", data)
    if sys.byteorder == "little":
        a.byteswap()
    return a.tolist()


def _pack_be(ints: list[int]) -> bytes:
    a = array.array("I", ints)
    if sys.byteorder == "little":
        a.byteswap()
    return a.tobytes()


def _rand_v4(rng: random.Random, n: int) -> list[int]:
    """``n`` distinct random IPv4 addresses (ints) from the allowed octets, in generation order."""
    out: dict[int, None] = {}
    while len(out) < n:
        need = n - len(out)
        raw = bytearray(rng.randbytes(4 * (need + need // 50 + 16)))
        raw[0::4] = bytes(raw[0::4]).translate(_V4_OCTET_MAP)
        for a in _be_ints(bytes(raw)):
            out[a] = None
            if len(out) == n:
                break
    return list(out)


@dataclass
class Pool:
    """Sorted, unique address material for one scenario."""

    v4_hosts: list[int]                    # /32s as ints
    v4_nets: list[int]                     # /24 networks as ints
    v6_nets: list[tuple[int, int]]         # (network int, plen)
    v6_hosts: list[int]                    # /128s as ints

    def count(self) -> int:
        return len(self.v4_hosts) + len(self.v4_nets) + len(self.v6_nets) + len(self.v6_hosts)

    def subset(self, step: int) -> "Pool":
        return Pool(self.v4_hosts[::step], self.v4_nets[::step], self.v6_nets[::step], self.v6_hosts[::step])


def make_pool(n_v4_hosts: int, n_v4_nets: int, n_v6_nets: int, n_v6_hosts: int) -> Pool:
    rng = random.Random(42)
    hosts = sorted(_rand_v4(rng, n_v4_hosts))
    nets = sorted({a & 0xFFFFFF00 for a in _rand_v4(rng, n_v4_nets * 2)})
    rng.shuffle(nets)
    nets = sorted(nets[:n_v4_nets])
    v6_nets: dict[tuple[int, int], None] = {}
    while len(v6_nets) < n_v6_nets:
        plen = rng.randint(48, 64)
        # Under 2a00::/12: never 2001:db8::/32 (the IPv6 packets and the 10-rule set).
        a = (0x2A0 << 116) | rng.getrandbits(116)
        v6_nets[(a >> (128 - plen) << (128 - plen), plen)] = None
    v6_hosts = {(0x2A0 << 116) | rng.getrandbits(116) for _ in range(n_v6_hosts)}
    return Pool(hosts, nets, sorted(v6_nets), sorted(v6_hosts))


def aset(v4_hosts=(), v4_nets=(), v6_nets=(), v6_hosts=(), v4_plen: int = 24) -> AddrSet:
    """An AddrSet from int addresses (each list sorted and unique)."""
    return AddrSet(
        v4_exact=_pack_be(list(v4_hosts)),
        v6_exact=b"".join(a.to_bytes(16, "big") for a in v6_hosts),
        v4_prefixes=tuple((n.to_bytes(4, "big"), v4_plen) for n in v4_nets),
        v6_prefixes=tuple((n.to_bytes(16, "big"), p) for n, p in v6_nets),
    )


def v4(s: str) -> bytes:
    return socket.inet_pton(socket.AF_INET, s)


def v6(s: str) -> bytes:
    return socket.inet_pton(socket.AF_INET6, s)


# --------------------------------------------------------------- rule sets

def base_rules() -> list[Rule]:
    """The realistic 10-rule set."""
    tcp, udp, icmp = frozenset({6}), frozenset({17}), frozenset({1})
    return [
        Rule("admin-pass", Action.PASS, src=AddrSet(v4_prefixes=((v4("10.99.0.0"), 24),))),
        Rule("count-icmp", Action.COUNT, protos=icmp),
        Rule("drop-testnet", Action.DROP, src=AddrSet(v4_prefixes=((v4("192.0.2.0"), 24),))),
        Rule("drop-cgnat", Action.DROP, src=AddrSet(v4_prefixes=((v4("100.64.0.0"), 10),))),
        Rule("drop-hosts", Action.DROP, src=AddrSet(
            v4_exact=b"".join(sorted(v4(a) for a in ("198.18.0.5", "198.18.7.9", "198.18.200.1"))),
            v6_exact=v6("2001:db8:bad::1"))),
        Rule("drop-dns", Action.DROP, protos=udp, dst_ports=(PortRange(53, 53),)),
        Rule("drop-telnet", Action.DROP, protos=tcp, dst_ports=(PortRange(23, 23),)),
        Rule("drop-x11", Action.DROP, protos=tcp, dst_ports=(PortRange(6000, 6063),)),
        Rule("drop-bad-v6", Action.DROP, src=AddrSet(v6_prefixes=((v6("2001:db8:bad::"), 48),))),
        Rule("drop-db-ssh", Action.DROP, dst=AddrSet(v4_exact=v4("198.51.100.99")),
             protos=tcp, dst_ports=(PortRange(22, 22),)),
    ]


BASE_DROP_SRC = "198.18.7.9"


def port_rules() -> list[Rule]:
    """43 protocol/port rules (none matches TCP 40000 -> 443)."""
    tcp, udp = frozenset({6}), frozenset({17})
    out: list[Rule] = []
    for p in (19, 17, 111, 123, 137, 161, 389, 520, 1434, 1900, 3702, 5353, 11211, 27015):
        out.append(Rule(f"drop-reflect-{p}", Action.DROP, protos=udp, src_ports=(PortRange(p, p),)))
    for lo, hi in ((135, 135), (137, 139), (445, 445), (1433, 1433), (1521, 1521), (2375, 2376),
                   (3306, 3306), (3389, 3389), (5432, 5432), (5900, 5910), (6379, 6379),
                   (9200, 9300), (27017, 27019), (11211, 11211)):
        out.append(Rule(f"drop-tcp-{lo}", Action.DROP, protos=tcp, dst_ports=(PortRange(lo, hi),)))
    for k in range(5):
        out.append(Rule(f"ssh-mgmt-{k}", Action.PASS, protos=tcp, dst_ports=(PortRange(22, 22),),
                        src=AddrSet(v4_prefixes=((bytes((10, k + 1, 0, 0)), 16),))))
    counts = [("count-http", tcp, 80), ("count-smtp", tcp, 25), ("count-imaps", tcp, 993),
              ("count-ike", udp, 500), ("count-ipsec-nat", udp, 4500), ("count-ntp", udp, 123),
              ("count-syslog", udp, 514), ("count-dns-tcp", tcp, 53), ("count-bgp", tcp, 179),
              ("count-wireguard", udp, 51820)]
    for name, proto, p in counts:
        out.append(Rule(name, Action.COUNT, protos=proto, dst_ports=(PortRange(p, p),)))
    return out


def address_rules(pool: Pool) -> list[Rule]:
    """11 rules holding the pool: one big source blocklist, six smaller
    source feeds and four destination lists.  ``pool.v4_hosts[0]`` lands in
    the big list (the dropped packet's source)."""
    main: list[int] = []
    feeds: list[list[int]] = [[] for _ in range(6)]
    dsts: list[list[int]] = [[] for _ in range(4)]
    for i, a in enumerate(pool.v4_hosts):
        r = i % 20
        if r < 16:
            main.append(a)
        elif r < 18:
            feeds[(i // 20) % 6].append(a)
        else:
            dsts[(i // 20) % 4].append(a)
    nets: list[list[int]] = [[] for _ in range(7)]
    for j, n in enumerate(pool.v4_nets):
        nets[j % 7].append(n)
    v6n: list[list[tuple[int, int]]] = [[] for _ in range(7)]
    for j, n in enumerate(pool.v6_nets):
        v6n[j % 7].append(n)
    rules = [Rule("blocklist-src", Action.DROP,
                  src=aset(main, nets[0], v6n[0], pool.v6_hosts))]
    for k in range(6):
        rules.append(Rule(f"feed-src-{k}", Action.DROP, src=aset(feeds[k], nets[k + 1], v6n[k + 1])))
    for k in range(4):
        rules.append(Rule(f"blocklist-dst-{k}", Action.DROP, dst=aset(dsts[k])))
    return rules


def config_of(rules: list[Rule]) -> Config:
    return Config(rules=tuple(rules), interfaces=(Interface("lo"),))


def image_of(cfg: Config) -> tables.BankImage:
    slots = tables.assign_slots([r.name for r in cfg.rules], {}, [], layout.MAX_RULE_SLOTS)
    return tables.build_image(cfg, slots, [tables.IfaceEntry(TEST_IFINDEX, False, IFACE_SLOT)])


def ip_str(a: int) -> str:
    return socket.inet_ntop(socket.AF_INET, a.to_bytes(4, "big"))


# --------------------------------------------------------------- measuring

_RUN_RE = re.compile(r"Return value:\s*(\d+),\s*duration \(average\):\s*(\d+)\s*ns")


def bpftool_run(target: list[str], frame_file: str, repeat: int) -> tuple[int, int]:
    """(XDP return value, average ns) of ``bpftool prog run``."""
    cmd = ["bpftool", "prog", "run", *target, "data_in", frame_file, "repeat", str(repeat)]
    r = subprocess.run(cmd, capture_output=True, text=True)
    m = _RUN_RE.search(r.stdout + r.stderr)
    if r.returncode != 0 or not m:
        raise RuntimeError(f"{' '.join(cmd)} failed ({r.returncode}): {(r.stdout + r.stderr).strip()}")
    return int(m.group(1)), int(m.group(2))


@dataclass
class Variant:
    label: str
    target: list[str]          # bpftool program spec: ["pinned", path] or ["id", N]
    frame_file: str
    expect: int                # expected XDP return value
    note: str = ""


@dataclass
class Result:
    label: str
    ns: list[int] = field(default_factory=list)
    pass_ns: list[int] = field(default_factory=list)
    retval: int = -1
    expect: int = -1
    note: str = ""

    @property
    def median(self) -> float:
        return statistics.median(self.ns)

    @property
    def ratio(self) -> float:
        """Median of the per-round ratios to the pass run next to it: a
        slow moment (another process on the CPU) hits both sides of a pair."""
        return statistics.median(v / p for v, p in zip(self.ns, self.pass_ns))

    @property
    def over_pass(self) -> float:
        """Median of the per-round differences to the pass run next to it (ns)."""
        return statistics.median(v - p for v, p in zip(self.ns, self.pass_ns))


def measure(variants: list[Variant], pass_target: list[str], rounds: int, repeat: int) -> list[Result]:
    """Interleave each variant with the pass program, ``rounds`` times.

    Odd rounds run the variant before its pass partner, so neither side
    always profits from the other warming up the CPU.
    """
    results = [Result(v.label, expect=v.expect, note=v.note) for v in variants]
    for v in variants:  # warm-up, discarded
        bpftool_run(pass_target, v.frame_file, repeat // 4)
        bpftool_run(v.target, v.frame_file, repeat // 4)
    for rnd in range(rounds):
        for v, res in zip(variants, results):
            order = [(pass_target, True), (v.target, False)]
            if rnd % 2:
                order.reverse()
            for target, is_pass in order:
                ret, ns = bpftool_run(target, v.frame_file, repeat)
                if is_pass:
                    res.pass_ns.append(ns)
                else:
                    res.ns.append(ns)
                    res.retval = ret
    return results


# --------------------------------------------------------------- xdpd

class Bench:
    def __init__(self, workdir: str, args: argparse.Namespace) -> None:
        self.workdir = workdir
        self.args = args
        self.pin_dir = f"/sys/fs/bpf/xdpdt-bench-{os.getpid()}"
        self.frames: dict[str, str] = {}
        self.rows: list[Result] = []
        self.pass_all: list[int] = []
        self.notes: list[str] = []
        self.compiled: datapath.Compiled | None = None
        self.dp: datapath.Datapath | None = None

    def frame_file(self, name: str, frame: bytes) -> str:
        path = os.path.join(self.workdir, name + ".bin")
        Path(path).write_bytes(frame)
        self.frames[name] = path
        return path

    @property
    def pass_target(self) -> list[str]:
        return ["pinned", os.path.join(self.pin_dir, "pass")]

    @property
    def main_target(self) -> list[str]:
        return ["pinned", os.path.join(self.pin_dir, "main")]

    def setup(self) -> None:
        os.makedirs(self.pin_dir)
        log("compiling the XDP program (bcc) ...")
        t = time.perf_counter()
        self.compiled = datapath.compile_program(
            self.pin_dir, datapath.BuildParams(max_exact=4_000_000, max_prefixes=200_000))
        log(f"  compiled in {time.perf_counter() - t:.1f} s")
        bpfsys.obj_pin(self.compiled.prog_fd, os.path.join(self.pin_dir, "main"))
        bpfsys.obj_pin(self.compiled.pass_fd, os.path.join(self.pin_dir, "pass"))
        self.dp = datapath.Datapath(self.compiled.maps_dir)

    def teardown(self) -> None:
        if self.dp is not None:
            with contextlib.suppress(Exception):
                self.dp.close()
        shutil.rmtree(self.pin_dir, ignore_errors=True)

    def verdict_count(self, verdict: int) -> int:
        return self.dp.counter("iface_stats", IFACE_SLOT * layout.NVERDICTS + verdict)[0]

    def check(self, label: str, frame: bytes, verdict: int | None) -> str:
        """Run the frame once; "" if the expected verdict counter moved, else what happened."""
        if verdict is None:
            return ""
        before = [self.verdict_count(v) for v in layout.Verdict]
        bpfsys.prog_test_run(self.compiled.prog_fd, frame)
        moved = [v.label for v, b in zip(layout.Verdict, before) if self.verdict_count(v) != b]
        if moved == [layout.Verdict(verdict).label]:
            return ""
        got = ", ".join(moved) or "none counted"
        self.notes.append(f"WRONG VERDICT: {label}: got {got}, expected {layout.Verdict(verdict).label}")
        return f"WRONG VERDICT: {got}"

    def run_xdpd(self, label: str, image: tables.BankImage,
                 packets: list[tuple[str, bytes, int | None]]) -> None:
        """Apply ``image`` and measure each (suffix, frame, expected verdict)."""
        t = time.perf_counter()
        self.dp.apply(image)
        log(f"  applied {label} in {time.perf_counter() - t:.1f} s; measuring ...")
        variants = []
        for suffix, frame, verdict in packets:
            name = f"{label}, {suffix}"
            wrong = self.check(name, frame, verdict)
            drops = (layout.Verdict.DROP_RULE, layout.Verdict.DROP_DEFAULT, layout.Verdict.DROP_MALFORMED)
            expect = XDP_DROP if verdict in drops else XDP_PASS
            variants.append(Variant(name, self.main_target,
                                    self.frame_file(re.sub(r"\W+", "_", name), frame), expect,
                                    wrong))
        results = measure(variants, self.pass_target, self.args.rounds, self.args.repeat)
        self.rows.extend(results)

    # ----------------------------------------------------------- xdp-filter

    def run_xdp_filter(self, pool: Pool) -> None:
        if shutil.which("xdp-filter") is None:
            self.notes.append("xdp-filter: not measured (xdp-filter not installed: apt-get install xdp-tools)")
            return
        with xdp_filter_netns() as prog_id:
            maps = {}
            pfd = _prog_fd_by_id(prog_id)
            try:
                map_ids = bpfsys.prog_info(pfd).map_ids
            finally:
                os.close(pfd)
            try:
                for mid in map_ids:
                    fd = _map_fd_by_id(mid)
                    maps[bpfsys.map_info(fd).name] = fd
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
                m.update_batch(_pack_be(chosen), bytes(val_t(*([1] * ncpu))) * len(chosen))
                log(f"  wrote {len(chosen):,} addresses into xdp-filter's filter_ipv4 "
                    f"(max_entries {cap:,}) in {time.perf_counter() - t:.2f} s")
                label = f"xdp-filter, {len(chosen):,} /32 (its map capacity: {cap:,})"
                if cap >= len(hosts):
                    label = f"xdp-filter, all {len(chosen):,} /32"
                variants = [
                    Variant(f"{label}, no match", ["id", str(prog_id)], self.frames["nomatch4"], XDP_PASS),
                    Variant(f"{label}, dropped", ["id", str(prog_id)],
                            self.frame_file("xf_drop", frame4(ip_str(drop_src), NOMATCH_DST)), XDP_DROP),
                ]
                self.rows.extend(measure(variants, self.pass_target, self.args.rounds, self.args.repeat))
                self.notes.append(
                    f"xdp-filter {_xdp_filter_version()} (mode skb, features all, policy allow) is "
                    f"exact-match only and its filter_ipv4 map holds {cap:,} entries, so it was given "
                    f"{len(chosen):,} of the 1M scenario's /32 addresses (src) plus dst ports udp/53 and tcp/23; "
                    "no CIDRs or IPv6 prefixes.")
            finally:
                for fd in maps.values():
                    os.close(fd)


def _prog_fd_by_id(prog_id: int) -> int:
    return bpfsys.prog_fd_by_id(prog_id)


def _map_fd_by_id(map_id: int) -> int:
    # bpfsys declares the libbpf call but has no wrapper for it.
    return bpfsys._check(bpfsys._lib.bpf_map_get_fd_by_id(map_id), f"opening map id {map_id}")


def _xdp_filter_version() -> str:
    r = subprocess.run(["xdp-filter", "load", "--version"], capture_output=True, text=True)
    m = re.search(r"v?(\d+\.\d+\.\d+)", r.stdout + r.stderr)
    return f"v{m.group(1)}" if m else ""


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    r = subprocess.run(["ip", *args], capture_output=True, text=True)
    if check and r.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {r.stderr.strip()}")
    return r


def _proc_start(pid: int) -> str | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return None


def _claim_owner() -> None:
    os.makedirs(OWNER_DIR, exist_ok=True)
    try:
        pid, start = Path(OWNER_FILE).read_text().split()
        if _proc_start(int(pid)) == start and int(pid) != os.getpid():
            raise RuntimeError(f"namespace {NETNS} is in use by process {pid} (another bench?)")
    except (FileNotFoundError, ValueError):
        pass
    Path(OWNER_FILE).write_text(f"{os.getpid()} {_proc_start(os.getpid())}\n")


def _release_owner() -> None:
    with contextlib.suppress(FileNotFoundError, ValueError):
        pid, _ = Path(OWNER_FILE).read_text().split()
        if int(pid) == os.getpid():
            os.unlink(OWNER_FILE)


@contextlib.contextmanager
def xdp_filter_netns():
    """xdp-filter loaded on a veth inside namespace NETNS; yields its program id.

    `ip netns exec` mounts a fresh /sys without bpffs, so xdp-filter gets a
    private bpffs mounted in that command's own mount namespace: its pins
    never touch the host's /sys/fs/bpf (where a real xdp-filter would keep
    its shared maps).  The program stays alive because it is attached;
    deleting the namespace deletes the veth and with it the program.
    """
    _claim_owner()
    try:
        if NETNS in _ip("netns", "list").stdout.split():
            _ip("netns", "del", NETNS, check=False)  # stale, from a crashed run of ours
        _ip("netns", "add", NETNS)
        _ip("-n", NETNS, "link", "add", VETH_A, "type", "veth", "peer", "name", VETH_B)
        _ip("-n", NETNS, "link", "set", VETH_A, "up")
        _ip("-n", NETNS, "link", "set", VETH_B, "up")
        script = (f"mount -t bpf bpf /sys/fs/bpf && xdp-filter load {VETH_A} --mode skb && "
                  "xdp-filter port 53 --proto udp && xdp-filter port 23 --proto tcp")
        r = subprocess.run(["ip", "netns", "exec", NETNS, "sh", "-c", script],
                           capture_output=True, text=True)
        if r.returncode != 0:
            raise RuntimeError(f"loading xdp-filter: {(r.stdout + r.stderr).strip()}")
        links = json.loads(_ip("-n", NETNS, "-j", "-d", "link", "show", "dev", VETH_A).stdout)
        xdp = links[0].get("xdp") or {}
        prog_id = (xdp.get("prog") or {}).get("id")
        if prog_id is None:
            for att in xdp.get("attached", []):
                prog_id = (att.get("prog") or {}).get("id", prog_id)
        if prog_id is None:
            raise RuntimeError(f"no XDP program on {VETH_A} after xdp-filter load: {xdp}")
        yield int(prog_id)
    finally:
        _ip("netns", "del", NETNS, check=False)
        _release_owner()


def run_breakdown(bench: Bench, frame: bytes) -> None:
    """The no-match packet against rule sets that add one kind of lookup at a time."""
    V = layout.Verdict
    host = aset([0x01020304])
    net = aset(v4_nets=[0x05060700])
    both = aset([0x01020304], [0x05060700])
    steps = [
        ("interface not enabled: state + iface_cfg, then XDP_PASS", [], None),
        ("0 rules: + parse, bank, proto/sport/dport masks, verdict counter", [], V.PASS_DEFAULT),
        ("1 rule, src /32: + exact hash lookup", [Rule("h", Action.DROP, src=host)], V.PASS_DEFAULT),
        ("1 rule, src /24: + LPM trie lookup", [Rule("n", Action.DROP, src=net)], V.PASS_DEFAULT),
        ("1 rule, src /32 and /24: hash + trie", [Rule("b", Action.DROP, src=both)], V.PASS_DEFAULT),
        ("2 rules, src and dst /32 and /24: 2 hashes + 2 tries",
         [Rule("s", Action.DROP, src=both), Rule("d", Action.DROP, dst=both)], V.PASS_DEFAULT),
    ]
    for i, (label, rules, verdict) in enumerate(steps):
        cfg = config_of(rules)
        slots = tables.assign_slots([r.name for r in rules], {}, [], layout.MAX_RULE_SLOTS)
        ifaces = [] if verdict is None else [tables.IfaceEntry(TEST_IFINDEX, False, IFACE_SLOT)]
        image = tables.build_image(cfg, slots, ifaces)
        bench.run_xdpd(f"breakdown, {label}", image, [(f"step{i}", frame, verdict)])
        bench.rows[-1].label = f"breakdown, {label}"


# --------------------------------------------------------------- main

def machine_line(args: argparse.Namespace) -> str:
    cpu = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    bt = subprocess.run(["bpftool", "version"], capture_output=True, text=True).stdout.split("\n")[0]
    return (f"kernel {platform.release()}, {cpu or platform.machine()} ({os.cpu_count()} CPUs), {bt}; "
            f"`bpftool prog run ... repeat {args.repeat:,}`, median of {args.rounds} rounds, "
            "each interleaved with the pass-only program")


def fmt_ratio(x: float) -> str:
    return f"{x:.2f}×"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=9, help="rounds per scenario (median is reported)")
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

    # SIGTERM/SIGHUP unwind through the finally blocks like Ctrl-C does.
    def _stop(signum, _frame):
        raise SystemExit(128 + signum)
    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGHUP, _stop)

    t_start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="xdpdt-bench-") as workdir:
        bench = Bench(workdir, args)
        try:
            return run(bench, args, t_start)
        finally:
            bench.teardown()


def run(bench: Bench, args: argparse.Namespace, t_start: float) -> int:
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

    # 1M first, into empty maps: that is the "load 1M addresses" measurement.
    log("64 rules + 1M addresses: building the image ...")
    rules_1m = base_rules() + port_rules() + address_rules(pool_1m)
    assert len(rules_1m) == 64, len(rules_1m)
    cfg = config_of(rules_1m)
    t = time.perf_counter()
    img_1m = image_of(cfg)
    t_build = time.perf_counter() - t
    n_1m = img_1m.address_count()
    log(f"  built in {t_build:.1f} s ({n_1m:,} map entries); writing ...")
    t = time.perf_counter()
    bench.dp.apply(img_1m)
    t_apply = time.perf_counter() - t
    log(f"  written in {t_apply:.1f} s")
    drop_1m = frame4(ip_str(pool_1m.v4_hosts[0]), NOMATCH_DST)
    results_by_scenario: dict[str, list[Result]] = {}

    def scenario(key: str, label: str, image, packets) -> None:
        start = len(bench.rows)
        bench.run_xdpd(label, image, packets)
        results_by_scenario[key] = bench.rows[start:]

    scenario("1m", "xdpd, 64 rules + 1M addresses", img_1m, [
        ("no match", nomatch4, V.PASS_DEFAULT),
        ("no match, IPv6", nomatch6, V.PASS_DEFAULT),
        ("dropped", drop_1m, V.DROP_RULE),
    ])
    rules_100k = base_rules() + port_rules() + address_rules(pool_100k)
    scenario("100k", "xdpd, 64 rules + 100k addresses", image_of(config_of(rules_100k)), [
        ("no match", nomatch4, V.PASS_DEFAULT),
        ("dropped", frame4(ip_str(pool_100k.v4_hosts[0]), NOMATCH_DST), V.DROP_RULE),
    ])
    scenario("10", "xdpd, 10 rules", image_of(config_of(base_rules())), [
        ("no match", nomatch4, V.PASS_DEFAULT),
        ("dropped", frame4(BASE_DROP_SRC, NOMATCH_DST), V.DROP_RULE),
    ])
    del img_1m

    breakdown_rows: list[Result] = []
    if args.breakdown:
        start = len(bench.rows)
        run_breakdown(bench, nomatch4)
        breakdown_rows = bench.rows[start:]

    xf_rows: list[Result] = []
    if not args.no_xdp_filter:
        log("xdp-filter: loading into namespace " + NETNS + " ...")
        start = len(bench.rows)
        try:
            bench.run_xdp_filter(pool_1m)
        except Exception as e:  # report, keep the xdpd results
            bench.notes.append(f"xdp-filter: not measured ({e})")
        xf_rows = bench.rows[start:]

    # ----------------------------------------------------------- report
    all_pass = [ns for r in bench.rows for ns in r.pass_ns]
    order = results_by_scenario.get("10", []) + results_by_scenario.get("100k", []) + \
        results_by_scenario.get("1m", []) + xf_rows
    print()
    print(f"xdpd benchmark: {machine_line(args)}")
    print()
    print("| scenario | ns/pkt | × pass |")
    print("| --- | ---: | ---: |")
    print(f"| pass-only reference (xdpd_pass) | {statistics.median(all_pass):.0f} | {fmt_ratio(1.0)} |")
    for r in order:
        flag = ""
        if r.retval != r.expect:
            flag = f" (returned {XDP_NAMES.get(r.retval, r.retval)}, expected {XDP_NAMES[r.expect]})"
        if r.note:
            flag += f" ({r.note})"
        print(f"| {r.label}{flag} | {r.median:.0f} | {fmt_ratio(r.ratio)} |")
    print()
    print(f"load 1M addresses: {t_build + t_apply:.1f} s (build image, tables.build_image: {t_build:.1f} s; "
          f"write, Datapath.apply into empty maps, both banks: {t_apply:.1f} s; "
          f"{n_1m:,} map entries, 64 rules)")
    print()
    by_label = {r.label: r for r in bench.rows}
    for name, key in (("10 rules, no match", "xdpd, 10 rules, no match"),
                      ("64 rules + 1M addresses, no match", "xdpd, 64 rules + 1M addresses, no match")):
        r = by_label.get(key)
        if r:
            verdict = "ok" if r.ratio <= TARGETS[name] else "OVER TARGET"
            print(f"{name}: {r.ratio:.1f}× pass (target ≤ {TARGETS[name]:g}×) {verdict}")
    if breakdown_rows:
        print()
        print("No-match path, one step at a time (IPv4 TCP SYN 203.0.113.7:40000 -> 198.51.100.1:443):")
        print()
        print("| rule set | ns/pkt | × pass | ns over pass |")
        print("| --- | ---: | ---: | ---: |")
        for r in breakdown_rows:
            print(f"| {r.label.removeprefix('breakdown, ')} | {r.median:.0f} | {fmt_ratio(r.ratio)} "
                  f"| {r.over_pass:.0f} |")
        print()
    for note in bench.notes:
        print(note)
    print(f"(ns/pkt: median, in whole nanoseconds as bpftool reports them; × pass: median of the "
          f"per-round ratios to the pass run interleaved with it; warm-cache numbers, see tools/bench.py. "
          f"Whole run: {time.perf_counter() - t_start:.0f} s.)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
