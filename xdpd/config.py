"""The YAML config directory -> :class:`model.Config`, with validation.

The YAML is composed into nodes by :mod:`xdpd.yamldoc`, so that every
problem can point at the exact ``file:line:col`` it concerns.  Validation
is strict on purpose: this is a packet filter, and a misspelt key that is
ignored silently disables a rule.

All problems from all files are collected before :class:`ConfigError` is
raised, so one run shows the user everything to fix.
"""

from __future__ import annotations

import difflib
import math
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from xdpd.addrlist import load_addr_file, parse_addr_items, union_all
from xdpd.layout import MAX_RULES
from xdpd.listcache import ListCache
from xdpd.model import (
    PORT_PROTOS,
    PROTO_NAMES,
    Action,
    AddrSet,
    Config,
    Default,
    Interface,
    Mode,
    Origin,
    PortRange,
    Rule,
    Settings,
)
from xdpd.problems import ConfigError, Problem, format_origin, show
from xdpd.yamldoc import INVALID, TAG, Doc, Fields, compose, is_null, kind, suggest

__all__ = [
    "MAX_RULES",
    "ConfigError",
    "ListCache",
    "Problem",
    "load_config",
    "parse_config_text",
]

MAX_ADDRESSES_LIMIT = 1 << 24
IFNAMSIZ = 16
"""Linux interface names are at most IFNAMSIZ - 1 bytes."""

TOP_KEYS = ("settings", "interfaces", "rules")
SETTINGS_KEYS = ("log_interval", "check_interval", "detach_on_stop", "max_addresses")
INTERFACE_KEYS = ("mode", "default")
PORT_KEYS = ("src_port", "dst_port")
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
)

_RULE_NAME_RE = re.compile(r"[A-Za-z0-9_.:-]{1,63}")
_PORT_RE = re.compile(r"([0-9]+)(?:\s*-\s*([0-9]+))?", re.ASCII)
_NUMBER_RE = re.compile(r"[0-9]+", re.ASCII)


# --------------------------------------------------------------------------
# Public API


def load_config(config_dir: str | os.PathLike[str], cache: ListCache | None = None) -> Config:
    """Load every ``*.yaml`` file directly in ``config_dir``, in lexical order.

    Hidden files and anything not ending in ``.yaml`` (editor backups and
    swap files) are ignored.  A directory with no YAML files is a valid, empty
    config: whether that is acceptable is the daemon's decision.

    A long-running caller passes the same :class:`ListCache` to every load:
    list files are then re-parsed only where they changed since the last
    load, with a result equal to a fresh load.  After a successful load the
    cache forgets list files the config no longer uses; after a failed one it
    keeps everything, since the next attempt will likely want it.
    """
    builder = _Builder(cache=cache)
    for path in _yaml_files(os.path.abspath(config_dir)):
        text = _read_yaml_file(path, builder.problems)
        builder.files.setdefault(path)
        if text is not None:
            builder.add_text(text, path)
    return builder.finish()


def parse_config_text(text: str, path: str, cache: ListCache | None = None) -> Config:
    """Validate one YAML text as if it were the only file of the config dir.

    ``path`` is used for messages and to resolve relative list-file paths.
    Raises :class:`ConfigError`.
    """
    builder = _Builder(cache=cache)
    builder.files.setdefault(path)
    builder.add_text(text, path)
    return builder.finish()


# --------------------------------------------------------------------------
# Files


def peek_settings(config_dir: str) -> Settings:
    """The settings as the config dir states them, read quickly and leniently.

    Only a guess for starting work early (the daemon starts compiling while
    list files are parsed): anything unreadable gives the defaults, and
    :func:`load_config` remains the judge.
    """
    values: dict = {}
    try:
        for path in _yaml_files(config_dir):
            with open(path, encoding="utf-8") as f:
                doc = yaml.safe_load(f)
            if isinstance(doc, dict) and isinstance(doc.get("settings"), dict):
                v = doc["settings"].get("max_addresses")
                if isinstance(v, int) and not isinstance(v, bool) and 1 <= v <= MAX_ADDRESSES_LIMIT:
                    values["max_addresses"] = v
    except (ConfigError, OSError, UnicodeDecodeError, yaml.YAMLError):
        pass
    return Settings(**values)


def _yaml_files(config_dir: str) -> list[str]:
    """The config files of ``config_dir`` in lexical (code point) order."""
    try:
        names = os.listdir(config_dir)
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise ConfigError([Problem(Origin(config_dir), f"cannot read config directory: {reason}")]) from None
    paths = []
    for name in sorted(names):
        if name.startswith(".") or not name.endswith(".yaml"):
            continue
        path = os.path.join(config_dir, name)
        if not os.path.isdir(path):
            paths.append(path)
    return paths


def _read_yaml_file(path: str, problems: list[Problem]) -> str | None:
    """Read a YAML file as UTF-8 (a BOM is allowed), or record why not."""
    try:
        with open(path, "rb") as stream:
            data = stream.read()
    except OSError as exc:
        problems.append(Problem(Origin(path), f"cannot read file: {exc.strerror or exc}"))
        return None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        col = exc.start - (data.rfind(b"\n", 0, exc.start) + 1) + 1
        problems.append(Problem(Origin(path, line, col), "not valid UTF-8"))
        return None


class _ListFiles:
    """Loads each list file once per config load, however many rules use it.

    Besides saving time on big lists, this reports a bad file once instead
    of once per referencing rule.  With a :class:`ListCache`, files are
    loaded through it.
    """

    def __init__(self, problems: list[Problem], files: dict[str, None], cache: ListCache | None) -> None:
        self._problems = problems
        self._files = files
        self._load = cache.load if cache is not None else load_addr_file
        self.union = cache.union if cache is not None else union_all
        self._cache: dict[str, AddrSet | None] = {}

    def load(self, path: str, origin: Origin) -> AddrSet | None:
        if path not in self._cache:
            self._files.setdefault(path)
            try:
                self._cache[path] = self._load(path, origin)
            except ConfigError as exc:
                self._problems.extend(exc.problems)
                self._cache[path] = None
        return self._cache[path]


# --------------------------------------------------------------------------
# Merging files


@dataclass
class _RuleResult:
    """A parsed rule, or what is known of an invalid one for cross-checks."""

    origin: Origin
    rule: Rule | None = None
    name: str | None = None
    name_origin: Origin | None = None


@dataclass
class _Builder:
    """Merges the files of a config dir and checks what spans files."""

    problems: list[Problem] = field(default_factory=list)
    files: dict[str, None] = field(default_factory=dict)
    settings: dict[str, tuple[Any, Origin]] = field(default_factory=dict)
    interfaces: dict[str, tuple[Origin, Interface | None]] = field(default_factory=dict)
    rules: list[Rule] = field(default_factory=list)
    rule_names: dict[str, Origin] = field(default_factory=dict)
    rule_count: int = 0
    cache: ListCache | None = None

    def __post_init__(self) -> None:
        self.list_files = _ListFiles(self.problems, self.files, self.cache)
        if self.cache is not None:
            self.cache.begin()

    def add_text(self, text: str, path: str) -> None:
        """Add one YAML file; its problems are listed in line order.

        A node reached through several aliases is validated once per alias;
        its problem is listed once.
        """
        start = len(self.problems)
        self._add_text(text, path)
        found = dict.fromkeys(self.problems[start:])
        self.problems[start:] = sorted(found, key=lambda p: _line_order(p, path))

    def _add_text(self, text: str, path: str) -> None:
        root = compose(text, path, self.problems)
        if root is None:
            return
        doc = Doc(path, self.problems)
        top = doc.mapping(root, "top level", TOP_KEYS)
        if top is None:
            return
        if "settings" in top:
            self._add_settings(_settings(doc, top["settings"][1]))
        if "interfaces" in top:
            for name, origin, iface in _interfaces(doc, top["interfaces"][1]):
                self._add_interface(name, origin, iface)
        if "rules" in top:
            for result in _rules(doc, top["rules"][1], self.list_files):
                self._add_rule(result)

    def _add_settings(self, settings: dict[str, tuple[Any, Origin]]) -> None:
        for key, (value, origin) in settings.items():
            first = self.settings.get(key)
            if first is not None:
                self._error(origin, f"setting {show(key)} is also set at {format_origin(first[1])}")
            else:
                self.settings[key] = (value, origin)

    def _add_interface(self, name: str, origin: Origin, iface: Interface | None) -> None:
        first = self.interfaces.get(name)
        if first is not None:
            self._error(origin, f"interface {show(name)} is also configured at {format_origin(first[0])}")
        else:
            self.interfaces[name] = (origin, iface)

    def _add_rule(self, result: _RuleResult) -> None:
        self.rule_count += 1
        if self.rule_count == MAX_RULES + 1:
            self._error(
                result.origin,
                f"too many rules: this is rule {self.rule_count}, at most {MAX_RULES} are "
                f"supported (the XDP program uses a {MAX_RULES}-bit rule mask)",
            )
        if result.name is not None and result.name_origin is not None:
            first = self.rule_names.get(result.name)
            if first is not None:
                self._error(
                    result.name_origin,
                    f"duplicate rule name {show(result.name)} (first used at {format_origin(first)})",
                )
            else:
                self.rule_names[result.name] = result.name_origin
        if result.rule is not None:
            self.rules.append(result.rule)

    def _error(self, origin: Origin, message: str) -> None:
        self.problems.append(Problem(origin, message))

    def finish(self) -> Config:
        settings = Settings(**{key: value for key, (value, _) in self.settings.items()})
        if not self.problems:
            self._check_capacity(settings)
        if self.problems:
            raise ConfigError(self.problems)
        if self.cache is not None:
            self.cache.commit(self.files)
        interfaces = tuple(iface for _, iface in self.interfaces.values() if iface is not None)
        return Config(
            settings=settings,
            interfaces=interfaces,
            rules=tuple(self.rules),
            files=tuple(self.files),
        )


    def _check_capacity(self, settings: Settings) -> None:
        """Host addresses per direction and family must fit the exact-address maps."""
        for direction in ("src", "dst"):
            for attr, width, label in (("v4_exact", 4, "IPv4"), ("v6_exact", 16, "IPv6")):
                sets = [(r, getattr(getattr(r, direction), attr)) for r in self.rules
                        if getattr(r, direction) is not None]
                if sum(len(b) for _, b in sets) // width <= settings.max_addresses:
                    continue
                unique = len({b[i:i + width] for _, b in sets for i in range(0, len(b), width)})
                if unique > settings.max_addresses:
                    biggest = max(sets, key=lambda rb: len(rb[1]))[0]
                    self._error(biggest.origin, f"{unique:,} {label} {direction} host addresses in all rules "
                                f"exceed settings.max_addresses ({settings.max_addresses:,})")


def _line_order(problem: Problem, path: str) -> tuple[int, int, int]:
    """Sort key: this file's problems by position; list-file ones after, as found."""
    if problem.origin.path == path:
        return (0, problem.origin.line, problem.origin.col)
    return (1, 0, 0)


# --------------------------------------------------------------------------
# Sections


def _settings(doc: Doc, node: Node) -> dict[str, tuple[Any, Origin]]:
    fields = doc.mapping(node, "'settings'", SETTINGS_KEYS) or {}
    parsers = {
        "log_interval": _seconds,
        "check_interval": _seconds,
        "detach_on_stop": _detach_on_stop,
        "max_addresses": _max_addresses,
    }
    out: dict[str, tuple[Any, Origin]] = {}
    for key, (key_node, value_node) in fields.items():
        value = parsers[key](doc, value_node, key)
        if value is not INVALID:
            out[key] = (value, doc.origin(key_node))
    return out


def _seconds(doc: Doc, node: Node, key: str) -> Any:
    """A finite number of seconds > 0, as a float (log_interval, check_interval)."""
    if isinstance(node, ScalarNode) and node.tag in (TAG + "int", TAG + "float"):
        value = doc.construct(node)
        if value is INVALID:
            return value
        if math.isfinite(value) and value > 0:
            return float(value)
        doc.error(node, f"{key} must be a number of seconds > 0, got {node.value}")
        return INVALID
    doc.error(node, f"{key} must be a number of seconds > 0, got {kind(node)}")
    return INVALID


def _detach_on_stop(doc: Doc, node: Node, _key: str) -> Any:
    if isinstance(node, ScalarNode) and node.tag == TAG + "bool":
        return doc.construct(node)
    doc.error(node, f"detach_on_stop must be true or false, got {kind(node)}")
    return INVALID


def _max_addresses(doc: Doc, node: Node, _key: str) -> Any:
    expected = f"max_addresses must be an integer 1-{MAX_ADDRESSES_LIMIT}"
    if not (isinstance(node, ScalarNode) and node.tag == TAG + "int"):
        doc.error(node, f"{expected}, got {kind(node)}")
        return INVALID
    value = doc.construct(node)
    if value is not INVALID and not 1 <= value <= MAX_ADDRESSES_LIMIT:
        doc.error(node, f"{expected}, got {value}")
        return INVALID
    return value


def _interfaces(doc: Doc, node: Node) -> Iterator[tuple[str, Origin, Interface | None]]:
    """Yield every named interface, also invalid ones (for duplicate checks)."""
    fields = doc.mapping(node, "'interfaces'", None, key_what="interface name")
    for name, (key_node, value_node) in (fields or {}).items():
        origin = doc.origin(key_node)
        start = len(doc.problems)
        problem = _ifname_problem(name)
        if problem:
            doc.error(key_node, problem)
        options = doc.mapping(value_node, f"interface {show(name)}", INTERFACE_KEYS)
        mode, default = Mode.AUTO, Default.PASS
        if options and "mode" in options:
            mode = doc.choice(options["mode"][1], "mode", Mode) or mode
        if options and "default" in options:
            default = doc.choice(options["default"][1], "default", Default) or default
        ok = len(doc.problems) == start
        yield name, origin, Interface(name, mode, default, origin) if ok else None


def _ifname_problem(name: str) -> str | None:
    """Why the kernel would refuse ``name`` as an interface name (dev_valid_name)."""
    if not name:
        return "interface name is empty"
    if len(name.encode()) >= IFNAMSIZ:
        return f"interface name {show(name)} is too long (at most {IFNAMSIZ - 1} bytes)"
    if name in (".", ".."):
        return f"{show(name)} is not a valid interface name"
    if any(c in "/:\0" or c.isspace() for c in name):
        return f"interface name {show(name)} must not contain '/', ':' or whitespace"
    return None


def _rules(doc: Doc, node: Node, list_files: _ListFiles) -> Iterator[_RuleResult]:
    if is_null(node):
        return
    if not isinstance(node, SequenceNode):
        hint = " (start each rule with '- ')" if isinstance(node, MappingNode) else ""
        doc.error(node, f"'rules' must be a list, got {kind(node)}{hint}")
        return
    for rule_node in node.value:
        yield _rule(doc, rule_node, list_files)


def _rule(doc: Doc, node: Node, list_files: _ListFiles) -> _RuleResult:
    """Parse one rule; ``rule`` is None if anything in it was wrong."""
    result = _RuleResult(origin=doc.origin(node))
    start = len(doc.problems)
    fields = doc.mapping(node, "rule", RULE_KEYS, allow_null=False)
    if fields is None:
        return result
    name = _rule_name(doc, node, fields)
    if name is not None:
        result.name, result.name_origin = name, doc.origin(fields["name"][1])
    action_node = _required(doc, node, fields, "action")
    action = doc.choice(action_node, "action", Action) if action_node else None
    src, src_files = _addresses(doc, fields, "src", list_files)
    dst, dst_files = _addresses(doc, fields, "dst", list_files)
    protos = _protos(doc, fields["proto"][1]) if "proto" in fields else None
    ports = {key: _ports(doc, fields[key][1], key) if key in fields else None for key in PORT_KEYS}
    _check_port_protos(doc, fields, ports, protos)
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
            origin=result.origin,
        )
    return result


def _required(doc: Doc, node: Node, fields: Fields, key: str) -> Node | None:
    """The value of a required key, or None after reporting it missing.

    A misspelt ``actoin:`` was already reported with "did you mean
    'action'?"; saying the rule also lacks an action would be noise.
    """
    if key in fields:
        return fields[key][1]
    assert isinstance(node, MappingNode)
    written = [str(k.value).lower() for k, _ in node.value if isinstance(k, ScalarNode)]
    unknown = [k for k in written if k not in RULE_KEYS]
    if not any(difflib.get_close_matches(k, RULE_KEYS, n=1, cutoff=0.6) == [key] for k in unknown):
        doc.error(node, f"rule has no {show(key)}")
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


def _addresses(
    doc: Doc, fields: Fields, key: str, list_files: _ListFiles
) -> tuple[AddrSet | None, tuple[str, ...]]:
    """``src`` plus ``src_file`` (or dst): inline items and list files, united."""
    sets: list[AddrSet] = []
    if key in fields:
        inline = _inline_addresses(doc, fields[key][1], key)
        if inline is not None:
            sets.append(inline)
    files: dict[str, None] = {}
    file_key = key + "_file"
    if file_key in fields:
        for path, origin in _list_file_paths(doc, fields[file_key][1], file_key):
            files.setdefault(path)
            loaded = list_files.load(path, origin)
            if loaded is not None:
                sets.append(loaded)
    if key not in fields and file_key not in fields:
        return None, ()
    return list_files.union(sets), tuple(files)


def _inline_addresses(doc: Doc, node: Node, key: str) -> AddrSet | None:
    items = []
    for item in doc.items(node, key) or ():
        text = doc.item_text(item, "address")
        if text is not None:
            items.append((text, doc.origin(item)))
    if not items:
        return None
    try:
        return parse_addr_items(items)
    except ConfigError as exc:
        doc.problems.extend(exc.problems)
        return None


def _list_file_paths(doc: Doc, node: Node, key: str) -> Iterator[tuple[str, Origin]]:
    """Absolute list-file paths; relative ones are relative to the YAML file."""
    for item in doc.items(node, key) or ():
        path = doc.string(item, f"{key} entry")
        if path is None:
            continue
        if not path.strip():
            doc.error(item, f"{key} entry is an empty file name")
            continue
        yield os.path.normpath(os.path.join(doc.dir, path)), doc.origin(item)


def _protos(doc: Doc, node: Node) -> frozenset[int] | None:
    protos: set[int] = set()
    ok = True
    for item in doc.items(node, "proto") or ():
        proto = _proto(doc, item)
        ok = ok and proto is not None
        if proto is not None:
            protos.add(proto)
    return frozenset(protos) if ok and protos else None


def _proto(doc: Doc, node: Node) -> int | None:
    text = doc.item_text(node, "protocol")
    if text is None:
        return None
    if _NUMBER_RE.fullmatch(text):
        if int(text) <= 255:
            return int(text)
        doc.error(node, f"protocol number {text} is out of range 0-255")
        return None
    number = PROTO_NAMES.get(text.lower())
    if number is None:
        names = list(PROTO_NAMES)
        doc.error(node, f"unknown protocol {show(text)}" + suggest(text, names) + " (or a number 0-255)")
    return number


def _ports(doc: Doc, node: Node, key: str) -> tuple[PortRange, ...] | None:
    """Ports and ranges, sorted with overlapping and adjacent ranges merged."""
    ranges: list[PortRange] = []
    ok = True
    for item in doc.items(node, key) or ():
        port_range = _port_range(doc, item)
        ok = ok and port_range is not None
        if port_range is not None:
            ranges.append(port_range)
    if not ok or not ranges:
        return None
    return _merge_ranges(ranges)


def _port_range(doc: Doc, node: Node) -> PortRange | None:
    text = doc.item_text(node, "port")
    if text is None:
        return None
    match = _PORT_RE.fullmatch(text)
    if not match:
        doc.error(node, f"bad port {show(text)}; expected a number 0-65535 or a range like '1000-2000'")
        return None
    lo = int(match.group(1))
    hi = int(match.group(2)) if match.group(2) is not None else lo
    for port in (lo, hi):
        if port > 65535:
            doc.error(node, f"port {port} is out of range 0-65535")
            return None
    if lo > hi:
        doc.error(node, f"port range {show(text)} is reversed (write {hi}-{lo})")
        return None
    return PortRange(lo, hi)


def _merge_ranges(ranges: list[PortRange]) -> tuple[PortRange, ...]:
    merged: list[PortRange] = []
    for current in sorted(ranges):
        if merged and current.lo <= merged[-1].hi + 1:
            last = merged[-1]
            merged[-1] = PortRange(last.lo, max(last.hi, current.hi))
        else:
            merged.append(current)
    return tuple(merged)


def _check_port_protos(
    doc: Doc,
    fields: Fields,
    ports: dict[str, tuple[PortRange, ...] | None],
    protos: frozenset[int] | None,
) -> None:
    """Ports only exist for TCP and UDP; a port match on ICMP would never hit."""
    if protos is None or protos & PORT_PROTOS:
        return
    for key, value in ports.items():
        if value is not None:
            doc.error(fields[key][0], f"{key} needs proto tcp or udp")
