"""The address fields of a rule: ``src``/``dst`` items and ``src_file``/``dst_file`` lists.

The inline items and the list files of one direction are united into one
:class:`model.AddrSet`; parsing the addresses themselves is
:mod:`xdpd.addrlist`'s (and :mod:`xdpd.listcache`'s) business.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

from yaml.nodes import Node

from xdpd.addrlist import load_addr_file, parse_addr_items, union_all
from xdpd.listcache import ListCache
from xdpd.model import AddrSet, Origin
from xdpd.permissions import LIST_FILE, Survey, survey
from xdpd.problems import ConfigError, Problem
from xdpd.yamldoc import Doc, Fields


class ListFiles:
    """Loads each list file once per config load, however many rules use it.

    Besides saving time on big lists, this reports a bad file once instead
    of once per referencing rule.  With a :class:`ListCache`, files are
    loaded through it.  Every file loaded is added to ``files`` (the
    config's files, watched for changes) and, when ``surveys`` is given,
    surveyed there for :mod:`xdpd.permissions` before the cache is asked:
    a file whose bytes did not change may have changed owner or mode.
    """

    def __init__(self, problems: list[Problem], files: dict[str, None], cache: ListCache | None,
                 surveys: list[Survey] | None = None) -> None:
        self._problems = problems
        self._files = files
        self._surveys = surveys
        self._load = cache.load if cache is not None else load_addr_file
        self.union = cache.union if cache is not None else union_all
        self._cache: dict[str, AddrSet | None] = {}

    def load(self, path: str, origin: Origin) -> AddrSet | None:
        if path not in self._cache:
            self._files.setdefault(path)
            if self._surveys is not None:
                self._surveys.append(survey(path, LIST_FILE))
            try:
                self._cache[path] = self._load(path, origin)
            except ConfigError as exc:
                self._problems.extend(exc.problems)
                self._cache[path] = None
        return self._cache[path]


def parse_addresses(
    doc: Doc, fields: Fields, key: str, list_files: ListFiles
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
