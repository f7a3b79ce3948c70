"""A benchmark rule set as the daemon reads it: ``rules.yaml`` plus one list file per big address field.

The line-rate benchmark runs the real daemon (``xdpd run``) on the same
rules the per-packet benchmark writes straight into the maps
(:mod:`tools.bench.rulesets`), so the YAML is rendered from those
:class:`xdpd.model.Rule` objects (:mod:`tools.bench.ruleparts`, the same
parts nftables and iptables are given).  An address field of more than
:data:`INLINE` entries goes to a list file (``src_file``), as an operator's
blocklist would.
"""

from __future__ import annotations

import json

from tools.bench.ruleparts import FAMILIES, check, cidrs, port_items, proto_name
from xdpd.model import Rule

INLINE = 16
SETTINGS = "{log_interval: 3600, check_interval: 3600, max_addresses: 2000000, max_limit_sources: 1024}"
"""No periodic work during a flood; room for the million addresses (the default is 2M too, said
here because the line rate depends on it); the per-source bucket table small, since no rule limits."""


def _port_list(ranges: tuple) -> str:
    return "[" + ", ".join(p if p.isdigit() else json.dumps(p) for p in port_items(ranges)) + "]"


def config(rules: list[Rule], iface: str) -> tuple[str, dict[str, str]]:
    """``(rules.yaml text, {list file name: text})`` for ``rules`` on ``iface`` (native mode, default pass)."""
    files: dict[str, str] = {}
    lines = []
    for rule in rules:
        check(rule)
        fields = [f"name: {rule.name}", f"action: {rule.action.value}"]
        for key, addrs in (("src", rule.src), ("dst", rule.dst)):
            if addrs is None:
                continue
            items = [a for fam in FAMILIES for a in cidrs(addrs, fam)]
            if len(items) <= INLINE:
                fields.append(f"{key}: [{', '.join(json.dumps(a) for a in items)}]")
            else:
                name = f"{rule.name}.{key}.txt"
                files[name] = "\n".join(items) + "\n"
                fields.append(f"{key}_file: {name}")
        if rule.protos:
            fields.append(f"proto: [{', '.join(proto_name(p) for p in sorted(rule.protos))}]")
        if rule.src_ports:
            fields.append(f"src_port: {_port_list(rule.src_ports)}")
        if rule.dst_ports:
            fields.append(f"dst_port: {_port_list(rule.dst_ports)}")
        lines.append("  - {" + ", ".join(fields) + "}")
    text = (f"settings: {SETTINGS}\ninterfaces:\n  {iface}: {{mode: native, default: pass}}\n"
            "rules:\n" + "\n".join(lines) + "\n")
    return text, files
