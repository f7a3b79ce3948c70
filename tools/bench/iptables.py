"""The benchmark's rule set in iptables: raw PREROUTING rules, addresses in ipsets (``hash:net``).

What an operator of iptables writes for the same rules
(:mod:`tools.bench.ruleparts`): one ``-A PREROUTING`` per xdpd rule and
address family (IPv4 rules through ``iptables``, IPv6 through
``ip6tables``), in the same order, in the ``raw`` table (the earliest
iptables hook, before connection tracking), each with the rule's name as its
comment (every rule has packet counters); a rule with more than one address
matches an ipset of its own (``-m set --match-set``), a ``hash:net`` sized
for its addresses; the last rule counts what no rule decided.

The backend is a parameter: Debian's ``iptables`` is ``iptables-nft``
(xtables matches run through nftables' compat layer), ``iptables-legacy``
is the classic xtables path.  The ipsets are the same for both.  Everything
runs in the bed's victim namespace (``ip netns exec``); :func:`remove`
flushes the rules and destroys the sets.
"""

from __future__ import annotations

import re
import subprocess
import tempfile
import time
from dataclasses import dataclass

from tests.testbed.netbed import NetBed
from tools.bench.ruleparts import Unsupported, address_fields, check, families, port_items, proto_name
from xdpd.model import Action, Rule

DEFAULT = "default"
"""The comment of the last rule, which counts what no rule decided."""
_TARGET = {Action.DROP: " -j DROP", Action.PASS: " -j ACCEPT", Action.COUNT: ""}
_PROTO = {58: "ipv6-icmp"}
_COUNTED = re.compile(r"^\[(\d+):\d+\] -A PREROUTING .*--comment (\S+)")


@dataclass(frozen=True)
class Scripts:
    """``ipset restore`` input and ``iptables-restore`` input per family."""

    ipset: str
    rules: dict[int, str]
    addresses: int


def scripts(rules: list[Rule]) -> Scripts:
    """The ipsets and the raw table's PREROUTING rules for ``rules``."""
    sets: list[str] = []
    lines: dict[int, list[str]] = {4: [], 6: []}
    addresses = 0
    for i, rule in enumerate(rules):
        check(rule)
        for fam in families(rule):
            opts = []
            for direction, items, name in address_fields(rule, i, fam):
                if name is None:
                    opts.append(f"{'-s' if direction == 'src' else '-d'} {items[0]}")
                    continue
                size = max(1024, 1 << (len(items) - 1).bit_length())
                sets.append(f"create {name} hash:net family inet{'6' if fam == 6 else ''} "
                            f"hashsize {size} maxelem {max(65536, size)}")
                sets.extend(f"add {name} {a}" for a in items)
                addresses += len(items)
                opts.append(f"-m set --match-set {name} {direction}")
            if rule.protos:
                if len(rule.protos) != 1:
                    raise Unsupported(f"rule {rule.name}: iptables takes one protocol per rule")
                [p] = rule.protos
                opts.append(f"-p {_PROTO.get(p, proto_name(p))}")
            for flag, ranges in (("sport", rule.src_ports), ("dport", rule.dst_ports)):
                items = port_items(ranges, sep=":")
                if len(items) == 1:
                    opts.append(f"--{flag} {items[0]}")
                elif items:
                    opts.append(f"-m multiport --{flag}s {','.join(items)}")
            line = f"-A PREROUTING {' '.join(opts)} -m comment --comment {rule.name}{_TARGET[rule.action]}"
            for f in ([4, 6] if fam is None else [fam]):
                lines[f].append(line)
    text = {fam: "*raw\n:PREROUTING ACCEPT [0:0]\n" + "\n".join(
        ls + [f"-A PREROUTING -m comment --comment {DEFAULT}"]) + "\nCOMMIT\n" for fam, ls in lines.items()}
    return Scripts("\n".join(sets) + "\n", text, addresses)


def _tool(backend: str, family: int, what: str = "") -> str:
    """``iptables-nft-restore``, ``ip6tables-legacy-save``, ..."""
    return f"ip{'6' if family == 6 else ''}tables-{backend}{'-' + what if what else ''}"


def _run(bed: NetBed, argv: list[str], text: str | None = None) -> float:
    """Run ``argv`` in the victim's namespace (``text`` on stdin); return how long it took."""
    t = time.perf_counter()
    proc = bed.run("victim", argv, input=text, timeout=600)
    seconds = time.perf_counter() - t
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed: {proc.stderr.strip()[:2000]}")
    return seconds


def load_sets(bed: NetBed, s: Scripts) -> float:
    """``ipset restore`` of every set; return how long it took (seconds)."""
    with tempfile.NamedTemporaryFile("w", prefix="xdpdt-ipset-") as f:
        f.write(s.ipset)
        f.flush()
        return _run(bed, ["ipset", "restore", "-file", f.name])


def load_rules(bed: NetBed, s: Scripts, backend: str) -> float:
    """``iptables-restore`` and ``ip6tables-restore`` of the raw table; return how long both took."""
    return sum(_run(bed, [_tool(backend, fam, "restore")], s.rules[fam]) for fam in (4, 6))


def counters(bed: NetBed, backend: str) -> dict[str, int]:
    """Packets counted per rule comment, both families summed."""
    out: dict[str, int] = {}
    for fam in (4, 6):
        proc = bed.run("victim", [_tool(backend, fam, "save"), "-c", "-t", "raw"])
        if proc.returncode != 0:
            raise RuntimeError(f"{_tool(backend, fam, 'save')} failed: {proc.stderr.strip()}")
        for line in proc.stdout.splitlines():
            m = _COUNTED.match(line)
            if m:
                out[m.group(2)] = out.get(m.group(2), 0) + int(m.group(1))
    return out


def version(backend: str) -> str:
    """``iptables v1.8.9 (nf_tables)``: what the table's rows were measured with."""
    return subprocess.run([_tool(backend, 4), "-V"], capture_output=True, text=True).stdout.strip()


def remove_rules(bed: NetBed, backend: str) -> None:
    """Flush the raw table's rules of both families (the sets stay, for another backend).

    iptables-nft's tables are deleted too, so their empty base chains cost
    the next scenario nothing; iptables-legacy's stay registered until the
    namespace goes (run it last).
    """
    for fam in (4, 6):
        bed.run("victim", [_tool(backend, fam), "-t", "raw", "-F"])
        if backend == "nft":
            bed.run("victim", ["nft", "delete", "table", f"ip{'6' if fam == 6 else ''}", "raw"])


def remove_sets(bed: NetBed) -> None:
    """Destroy every ipset of the victim's namespace (only ours live there)."""
    bed.run("victim", ["ipset", "destroy"])
