"""The ``rules:`` list: each rule's keys, name and action, its fields assembled into a :class:`model.Rule`.

The fields have their own modules by concern (:mod:`xdpd.ruleaddrs`,
:mod:`xdpd.ruleproto`, :mod:`xdpd.rulematch`, :mod:`xdpd.rulelimit`); a new
field gets its parser there or in a module of its own, its key in
:data:`RULE_KEYS` and its place in :func:`_rule`.
Checks that span rules or files (duplicate names, how many, whether the
interfaces a rule names are configured) are :mod:`xdpd.config`'s.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterator
from dataclasses import dataclass

from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from xdpd.model import Action, Origin, Rule
from xdpd.problems import show
from xdpd.ruleaddrs import ListFiles, parse_addresses
from xdpd.rulelimit import LIMIT_KEYS, parse_limit
from xdpd.rulesample import SAMPLE_KEYS, parse_sample
from xdpd.rulematch import MATCH_KEYS, parse_match_fields
from xdpd.ruleproto import PORT_KEYS, check_port_protos, parse_ports, parse_protos
from xdpd.yamldoc import Doc, Fields, is_null, kind

RULE_KEYS = (
    "name",
    "action",
    "src",
    "src_file",
    "dst",
    "dst_file",
    "proto",
    "src_port",
    "dst_port",
    "interfaces",
    *MATCH_KEYS,
    *LIMIT_KEYS,
    *SAMPLE_KEYS,
)
_RULE_NAME_RE = re.compile(r"[A-Za-z0-9_.:-]{1,63}")


@dataclass
class RuleResult:
    """A parsed rule, or what is known of an invalid one for cross-checks."""

    origin: Origin
    rule: Rule | None = None
    name: str | None = None
    name_origin: Origin | None = None
    interfaces: tuple[tuple[str, Origin], ...] = ()
    """The interface names the rule is restricted to, each where it is written."""


def parse_rules(doc: Doc, node: Node, list_files: ListFiles) -> Iterator[RuleResult]:
    """Yield every rule of one file in order, also invalid ones (for the count and duplicate names)."""
    if is_null(node):
        return
    if not isinstance(node, SequenceNode):
        hint = " (start each rule with '- ')" if isinstance(node, MappingNode) else ""
        doc.error(node, f"'rules' must be a list, got {kind(node)}{hint}")
        return
    for rule_node in node.value:
        yield _rule(doc, rule_node, list_files)


def _rule(doc: Doc, node: Node, list_files: ListFiles) -> RuleResult:
    """Parse one rule; ``rule`` is None if anything in it was wrong."""
    result = RuleResult(origin=doc.origin(node))
    start = len(doc.problems)
    fields = doc.mapping(node, "rule", RULE_KEYS, allow_null=False)
    if fields is None:
        return result
    name = _rule_name(doc, node, fields)
    if name is not None:
        result.name, result.name_origin = name, doc.origin(fields["name"][1])
    action_node = _required(doc, node, fields, "action")
    action = doc.choice(action_node, "action", Action) if action_node else None
    if action is Action.LIMIT:
        _required(doc, node, fields, "rate", "action limit needs a rate, like 'rate: 1000/s'")
    src, src_files = parse_addresses(doc, fields, "src", list_files)
    dst, dst_files = parse_addresses(doc, fields, "dst", list_files)
    protos = parse_protos(doc, fields["proto"][1]) if "proto" in fields else None
    ports = {key: parse_ports(doc, fields[key][1], key) if key in fields else None for key in PORT_KEYS}
    check_port_protos(doc, fields, ports, protos)
    match = parse_match_fields(doc, fields, protos)
    limit = parse_limit(doc, fields, action)
    sample = parse_sample(doc, fields)
    if "interfaces" in fields:
        result.interfaces = _interfaces(doc, fields["interfaces"][1])
    if len(doc.problems) == start and name is not None and action is not None:
        result.rule = Rule(
            name=name,
            action=action,
            src=src,
            dst=dst,
            protos=protos,
            src_ports=ports["src_port"],
            dst_ports=ports["dst_port"],
            src_files=src_files,
            dst_files=dst_files,
            interfaces=tuple(sorted({name for name, _ in result.interfaces})) or None,
            **match,
            limit=limit,
            sample=sample,
            origin=result.origin,
        )
    return result


def _required(doc: Doc, node: Node, fields: Fields, key: str, missing: str | None = None) -> Node | None:
    """The value of a required key, or None after reporting it missing (with ``missing``, or
    "rule has no 'key'").

    A misspelt ``actoin:`` was already reported with "did you mean
    'action'?"; saying the rule also lacks an action would be noise.
    """
    if key in fields:
        return fields[key][1]
    assert isinstance(node, MappingNode)
    written = [str(k.value).lower() for k, _ in node.value if isinstance(k, ScalarNode)]
    unknown = [k for k in written if k not in RULE_KEYS]
    if not any(difflib.get_close_matches(k, RULE_KEYS, n=1, cutoff=0.6) == [key] for k in unknown):
        doc.error(node, missing or f"rule has no {show(key)}")
    return None


def _rule_name(doc: Doc, node: Node, fields: Fields) -> str | None:
    name_node = _required(doc, node, fields, "name")
    name = doc.string(name_node, "rule name") if name_node else None
    if name is None or name_node is None:
        return None
    if not _RULE_NAME_RE.fullmatch(name):
        doc.error(name_node, f"bad rule name {show(name)}: use 1-63 characters A-Z a-z 0-9 _ . : -")
        return None
    return name


def _interfaces(doc: Doc, node: Node) -> tuple[tuple[str, Origin], ...]:
    """The names of ``interfaces:`` with their origins; whether they are configured is checked
    across files by :mod:`xdpd.config`."""
    refs = []
    for item in doc.items(node, "interfaces") or ():
        name = doc.item_text(item, "interface name")
        if name is not None:
            refs.append((name, doc.origin(item)))
    return tuple(refs)
