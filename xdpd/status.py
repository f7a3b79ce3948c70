"""Read what is enforced straight from the pinned maps and netlink.

Works while the daemon is down (after a crash, or with
``detach_on_stop: false``), because everything it reports lives in the
kernel: the pinned program and maps, the interfaces' XDP attachments and the
pinned bpf_links holding them, and the daemon's repair counts
(:mod:`xdpd.repairstats`, as the last daemon left them).
"""

from __future__ import annotations

import ctypes as ct
import os
import time
from typing import Any

from pyroute2 import IPRoute

from . import bans, bpflinks, bpfsys, layout, links, repairstats
from .maps import PinnedMaps
from .pins import current_ban_dir, current_maps_dir, is_ours, links_dir
from .repairs import RepairCount


def read_status(pin_dir: str) -> dict[str, Any]:
    """The documented ``status --json`` shape.

    ``{"interfaces": {NAME: {"attached", "mode", "prog_id", "link_id", "fighting", ...}},
    "rules": {NAME: {"action", "packets", "bytes", ...}}}``
    """
    out: dict[str, Any] = {"pin_dir": pin_dir, "interfaces": {}, "rules": {}}
    maps_dir = current_maps_dir(pin_dir) if os.path.isdir(pin_dir) else None
    if maps_dir is None:
        out["error"] = f"nothing pinned under {pin_dir}"
        return out
    prog_path = os.path.join(pin_dir, "prog")
    prog_id = 0
    if os.path.exists(prog_path):
        fd = bpfsys.obj_get(prog_path)
        try:
            prog_id = bpfsys.prog_info(fd).id
        finally:
            os.close(fd)
    out["prog_id"] = prog_id
    maps = PinnedMaps(maps_dir)
    try:
        st = maps.state()
        bank = st.bank & 1
        out["generation"] = st.generation
        with IPRoute() as ipr:
            observed = bpflinks.with_link_ids(links.observe(ipr), bpflinks.PinnedLinks(links_dir(pin_dir)).read())
        repairs = repairstats.read(pin_dir)
        for slot, iface in sorted(maps.iface_slots().items(), key=lambda x: x[1].name):
            name, ifindex = iface.name, iface.ifindex
            link = observed.get(name)
            ent = maps["iface_cfg"].lookup(ct.c_uint32(bank * layout.IFINDEX_MAX + ifindex))
            counters = {}
            for v in layout.Verdict:
                p, b = maps.counter("iface_stats", slot * layout.NVERDICTS + v)
                counters[v.label] = {"packets": p, "bytes": b}
            out["interfaces"][name] = {
                "attached": bool(link and link.prog_id and is_ours(link.prog_id)),
                "mode": (link.mode if link and link.mode else "none"),
                "prog_id": link.prog_id if link else 0,
                "link_id": link.link_id if link else 0,
                "fighting": repairs.get(name, RepairCount()).fighting,
                "repairs": repairs.get(name, RepairCount()).repairs,
                "ifindex": link.ifindex if link else ifindex,
                "present": link is not None,
                "default": "drop" if ent is not None and ent.default_drop else "pass",
                "observe": bool(ent is not None and ent.observe),
                "counters": counters,
                "packets": sum(c["packets"] for c in counters.values()),
                "bytes": sum(c["bytes"] for c in counters.values()),
                "dropped": sum(c["packets"] for k, c in counters.items() if k.startswith("drop")),
                "would_drop": sum(c["packets"] for k, c in counters.items() if k.startswith("observe_drop")),
            }
        owners = maps.rule_slots()
        for pos, r in enumerate(maps.rule_order(bank)):
            name = owners[r.slot].name if r.slot in owners else f"slot{r.slot}"
            packets, nbytes = maps.counter("rule_stats", r.slot)
            out["rules"][name] = {"action": layout.ACTION_NAMES.get(r.action, str(r.action)),
                                  "position": pos + 1, "packets": packets, "bytes": nbytes}
            if r.action == layout.ACT_LIMIT:
                lp, lb = maps.counter("limit_stats", r.slot)
                out["rules"][name]["limited"] = {"packets": lp, "bytes": lb}
        out["bans"] = _bans(pin_dir, maps)
    finally:
        maps.close()
    return out


def _bans(pin_dir: str, maps: PinnedMaps) -> dict[str, Any]:
    """``{"active", "capacity", "banned_by_rules", "table_full"}`` of the ban table."""
    by_rule, full = maps.ban_stats()
    ban_dir = current_ban_dir(pin_dir)   # only read here: no state map to arm
    if ban_dir is None:
        return {"active": 0, "capacity": 0, "banned_by_rules": by_rule, "table_full": full}
    with bans.BanTable(ban_dir, None) as table:
        now = time.monotonic_ns()
        active = sum(1 for r in table.records() if r.active(now))
        return {"active": active, "capacity": table.capacity, "banned_by_rules": by_rule,
                "table_full": full}


def _human(n: int) -> str:
    for unit in ("", "K", "M", "G", "T"):
        if abs(n) < 1000:
            return f"{n}{unit}"
        n //= 1000
    return f"{n}P"


def format_status(st: dict[str, Any]) -> str:
    """A table a person reads at a glance."""
    if "error" in st:
        return f"xdpd: {st['error']} (is the daemon started? see --pin-dir)"
    lines = ["INTERFACE        ATTACHED  MODE     LINK    DEFAULT  PACKETS   DROPPED   MALFORMED  OBSERVE: WOULD DROP"]
    for name, i in st["interfaces"].items():
        attached = "yes" if i["attached"] else ("absent" if not i["present"] else "NO")
        link = str(i["link_id"]) if i["link_id"] else "-"
        lines.append(f"{name:<16} {attached:<9} {i['mode']:<8} {link:<7} {i['default']:<8} "
                     f"{_human(i['packets']):<9} {_human(i['dropped']):<9} "
                     f"{_human(i['counters']['drop_malformed']['packets']):<10} "
                     f"{_human(i['would_drop']) if i['observe'] else '-'}")
    if not st["interfaces"]:
        lines.append("(no interfaces configured)")
    for name, i in st["interfaces"].items():
        if i["fighting"]:
            lines.append(f"{name}: FIGHTING: another program keeps taking it; xdpd repaired it "
                         f"{i['repairs']} times and now waits between repairs")
    lines.append("")
    lines.append("#   RULE                             ACTION  PACKETS   BYTES     LIMITED")
    for name, r in st["rules"].items():
        limited = _human(r["limited"]["packets"]) if "limited" in r else "-"
        lines.append(f"{r['position']:<3} {name:<32} {r['action']:<7} "
                     f"{_human(r['packets']):<9} {_human(r['bytes']):<9} {limited}")
    if not st["rules"]:
        lines.append("(no rules)")
    b = st.get("bans")
    if b:
        lines.append("")
        lines.append(f"bans: {b['active']:,} active of {b['capacity']:,} "
                     f"({b['banned_by_rules']:,} made by limit rules, {b['table_full']:,} refused: table full)")
    return "\n".join(lines)
