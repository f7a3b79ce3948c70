"""The YAML config directory -> :class:`model.Config`, with validation.

This module reads the directory (which ``*.yaml`` files, as UTF-8), merges
its files into one :class:`model.Config` and checks what spans files:
the same setting, interface or rule name in two places, the number of
rules, that the interfaces rules name are configured, the address capacity,
and who can write the files (:mod:`xdpd.permissions`: every file and the
directory are surveyed as they are read, and judged once the merged settings
say whether ``strict_permissions`` is on).  What one file says is parsed by the modules
below it: :mod:`xdpd.yamldoc` (YAML nodes with their ``file:line:col``),
:mod:`xdpd.settingsparse`, :mod:`xdpd.ifaceparse` and :mod:`xdpd.ruleparse`
(one section each).

Validation is strict on purpose: this is a packet filter, and a misspelt
key that is ignored silently disables a rule.  All problems from all files
are collected before :class:`ConfigError` is raised, so one run shows the
user everything to fix.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

import yaml

from xdpd import permissions
from xdpd.ifaceparse import parse_interfaces
from xdpd.layout import MAX_RULES
from xdpd.listcache import ListCache
from xdpd.model import Config, Interface, Origin, Rule, Settings
from xdpd.problems import ConfigError, Problem, format_origin, show
from xdpd.ruleaddrs import ListFiles
from xdpd.ruleparse import RuleResult, parse_rules
from xdpd.settingsparse import CAPACITY_LIMITS, parse_settings
from xdpd.yamldoc import Doc, compose, suggest

__all__ = [
    "MAX_RULES",
    "ConfigError",
    "ListCache",
    "Problem",
    "load_config",
    "parse_config_text",
    "peek_settings",
]

TOP_KEYS = ("settings", "interfaces", "rules")


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
    keeps everything, since the next attempt will likely want it.  The cache
    never spares a file its permission check: a ``chmod`` alone changes no
    byte of a file but can make it unsafe.
    """
    builder = _Builder(cache=cache)
    config_dir = os.path.abspath(config_dir)
    paths = _yaml_files(config_dir)
    builder.surveys.append(permissions.survey(config_dir, permissions.CONFIG_DIR))
    for path in paths:
        builder.surveys.append(permissions.survey(path, permissions.CONFIG_FILE))
        text = _read_yaml_file(path, builder.problems)
        builder.files.setdefault(path)
        if text is not None:
            builder.add_text(text, path)
    return builder.finish()


def parse_config_text(text: str, path: str, cache: ListCache | None = None) -> Config:
    """Validate one YAML text as if it were the only file of the config dir.

    ``path`` is used for messages and to resolve relative list-file paths.
    The text itself is the caller's to vouch for (its permissions are not
    checked); the list files it names are checked as in :func:`load_config`.
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
    :func:`load_config` remains the judge.  Only the map capacities
    (:data:`settingsparse.CAPACITY_LIMITS`) are read: they are what the
    program is built with.
    """
    values: dict = {}
    try:
        for path in _yaml_files(config_dir):
            with open(path, encoding="utf-8") as f:
                doc = yaml.safe_load(f)
            if isinstance(doc, dict) and isinstance(doc.get("settings"), dict):
                for key, bound in CAPACITY_LIMITS.items():
                    v = doc["settings"].get(key)
                    if isinstance(v, int) and not isinstance(v, bool) and 1 <= v <= bound:
                        values[key] = v
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


# --------------------------------------------------------------------------
# Merging files


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
    rule_interfaces: list[tuple[str, Origin]] = field(default_factory=list)
    surveys: list[permissions.Survey] = field(default_factory=list)
    """Each file (and the config dir) as it was when read, for :meth:`_check_permissions`."""
    cache: ListCache | None = None

    def __post_init__(self) -> None:
        self.list_files = ListFiles(self.problems, self.files, self.cache, self.surveys)
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
            self._add_settings(parse_settings(doc, top["settings"][1]))
        if "interfaces" in top:
            for name, origin, iface in parse_interfaces(doc, top["interfaces"][1]):
                self._add_interface(name, origin, iface)
        if "rules" in top:
            for result in parse_rules(doc, top["rules"][1], self.list_files):
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

    def _add_rule(self, result: RuleResult) -> None:
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
        self.rule_interfaces.extend(result.interfaces)
        if result.rule is not None:
            self.rules.append(result.rule)

    def _error(self, origin: Origin, message: str) -> None:
        self.problems.append(Problem(origin, message))

    def finish(self) -> Config:
        settings = Settings(**{key: value for key, (value, _) in self.settings.items()})
        self._check_rule_interfaces()
        if not self.problems:
            self._check_capacity(settings)
        self._check_permissions(settings)
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

    def _check_permissions(self, settings: Settings) -> None:
        """Refuse files a user other than root can write, unless an opt-out from a safe file says not to.

        Their problems come first: the daemon's status line shows the first
        problem, and when a file is unsafe nothing it says can be trusted.
        """
        opt_out = self.settings.get("strict_permissions")
        found = permissions.refusals(self.surveys, settings.strict_permissions,
                                     opt_out[1] if opt_out is not None else None)
        self.problems[:0] = found

    def _check_rule_interfaces(self) -> None:
        """A rule's ``interfaces`` name interfaces configured in some file of the dir.

        One configured but invalid counts as configured: it was reported
        where it is configured.
        """
        names = list(self.interfaces)
        for name, origin in self.rule_interfaces:
            if name not in self.interfaces:
                hint = suggest(name, names) if names else "; no interface is configured"
                self._error(origin, f"interface {show(name)} is not configured under 'interfaces'" + hint)

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
