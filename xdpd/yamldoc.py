"""YAML text -> nodes, and nodes -> values or problems at ``file:line:col``.

The YAML is composed into nodes (not loaded into Python objects) so that every
problem can point at the exact ``file:line:col`` it concerns, and so that
things PyYAML would silently accept -- a duplicate key, where the last one
wins -- can be rejected.

This module knows YAML and nothing of xdpd's sections: the parsers of
settings, interfaces and rules build on :class:`Doc`.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Sequence
from enum import Enum
from typing import Any, TypeVar

import yaml
from yaml.constructor import SafeConstructor
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from xdpd.model import Origin
from xdpd.problems import Problem, format_origin, show

TAG = "tag:yaml.org,2002:"
"""The prefix of the standard YAML tags (``TAG + "int"``)."""
_KIND_BY_TAG = {
    TAG + "str": "a string",
    TAG + "int": "an integer",
    TAG + "float": "a number",
    TAG + "bool": "a boolean",
    TAG + "null": "null",
    TAG + "timestamp": "a date",
    TAG + "binary": "binary data",
}
_EMPTY_LIST = "empty list would match nothing; remove the key to match anything"

_E = TypeVar("_E", bound=Enum)
Fields = dict[str, tuple[Node, Node]]
"""A validated mapping: key -> (key node, value node)."""


class _Invalid:
    """Marks a value that was already reported as a problem."""


INVALID = _Invalid()


def compose(text: str, path: str, problems: list[Problem]) -> Node | None:
    """Parse YAML into a node tree; None for an empty file or a syntax error."""
    loader = None
    try:
        loader = yaml.SafeLoader(text)  # checks for unprintable characters
        return loader.get_single_node()
    except yaml.MarkedYAMLError as exc:
        problems.append(_syntax_problem(path, exc))
    except yaml.reader.ReaderError as exc:
        problems.append(Problem(_position_origin(path, text, exc.position), _reader_message(exc)))
    except yaml.YAMLError as exc:
        problems.append(Problem(Origin(path), f"YAML error: {exc}"))
    except RecursionError:
        problems.append(Problem(Origin(path), "YAML nesting is too deep"))
    finally:
        if loader is not None:
            loader.dispose()
    return None


def _syntax_problem(path: str, exc: yaml.MarkedYAMLError) -> Problem:
    """A PyYAML error at its (0-based) mark, with its context if any."""
    mark = exc.problem_mark or exc.context_mark
    origin = Origin(path, mark.line + 1, mark.column + 1) if mark else Origin(path)
    message = exc.problem or exc.context or "invalid YAML"
    if exc.context and exc.problem:
        where = ""
        if exc.context_mark is not None:
            where = f" at {exc.context_mark.line + 1}:{exc.context_mark.column + 1}"
        message = f"{message} ({exc.context}{where})"
    return Problem(origin, f"YAML syntax error: {message}")


def _position_origin(path: str, text: str, position: int) -> Origin:
    line = text.count("\n", 0, position) + 1
    col = position - (text.rfind("\n", 0, position) + 1) + 1
    return Origin(path, line, col)


def _reader_message(exc: yaml.reader.ReaderError) -> str:
    char = exc.character
    code = ord(char) if isinstance(char, str) else char
    return f"YAML syntax error: character #x{code:04x} is not allowed ({exc.reason})"


def kind(node: Node) -> str:
    """How a node is described in a message: 'a list', 'an integer', ..."""
    if isinstance(node, MappingNode):
        return "a mapping"
    if isinstance(node, SequenceNode):
        return "a list"
    return _KIND_BY_TAG.get(node.tag, f"a value tagged {node.tag}")


def is_null(node: Node) -> bool:
    return isinstance(node, ScalarNode) and node.tag == TAG + "null"


def _is_str(node: Node) -> bool:
    return isinstance(node, ScalarNode) and node.tag == TAG + "str"


def suggest(word: str, choices: Sequence[str]) -> str:
    """'; did you mean X?' for a near miss, else the list of valid choices."""
    close = difflib.get_close_matches(word.lower(), choices, n=1, cutoff=0.6)
    if close:
        return f"; did you mean {show(close[0])}?"
    return f"; expected one of: {', '.join(choices)}"


class Doc:
    """One YAML file being validated: node -> value, or a Problem at the node.

    ``dir`` is the file's directory: relative paths written in the file
    (list files) are relative to it.
    """

    def __init__(self, path: str, problems: list[Problem]) -> None:
        self.path = path
        self.dir = os.path.dirname(os.path.abspath(path))
        self.problems = problems
        self._constructor = SafeConstructor()

    def origin(self, node: Node) -> Origin:
        mark = node.start_mark
        return Origin(self.path, mark.line + 1, mark.column + 1)

    def error(self, node: Node, message: str) -> None:
        self.problems.append(Problem(self.origin(node), message))

    def mapping(
        self,
        node: Node,
        what: str,
        keys: Sequence[str] | None,
        *,
        allow_null: bool = True,
        key_what: str = "key",
    ) -> Fields | None:
        """Validate a mapping: string keys, no duplicates, only ``keys``.

        ``keys=None`` allows any key (the interface map).  Unknown keys are
        reported and left out; the known ones are returned.
        """
        if allow_null and is_null(node):
            return {}
        if not isinstance(node, MappingNode):
            self.error(node, f"{what} must be a mapping, got {kind(node)}")
            return None
        seen: Fields = {}
        for key_node, value_node in node.value:
            key = self._key(key_node, key_what)
            if key is None:
                continue
            if key in seen:
                first = self.origin(seen[key][0])
                self.error(key_node, f"duplicate key {show(key)} (first at {format_origin(first)})")
                continue
            seen[key] = (key_node, value_node)
            if keys is not None and key not in keys:
                self.error(key_node, f"unknown key {show(key)}" + suggest(key, keys))
        return {k: v for k, v in seen.items() if keys is None or k in keys}

    def _key(self, node: Node, key_what: str) -> str | None:
        if _is_str(node):
            return str(node.value)
        if isinstance(node, ScalarNode) and node.tag == TAG + "merge":
            self.error(node, "YAML merge keys ('<<') are not supported")
        elif isinstance(node, ScalarNode) and not is_null(node):
            quoted = show(str(node.value))
            self.error(node, f"{key_what} must be a string, got {kind(node)} (quote it: {quoted})")
        else:
            self.error(node, f"{key_what} must be a string, got {kind(node)}")
        return None

    def construct(self, node: ScalarNode) -> Any:
        """The Python value of a scalar, or :data:`INVALID` after reporting why YAML cannot build it.

        Anything can come out of PyYAML's constructors on hostile input
        (``!!int x``, bad dates, unknown tags), and a config error must never
        become a crash, hence the broad except.
        """
        try:
            return self._constructor.construct_object(node)
        except Exception as exc:  # noqa: BLE001 - see docstring
            self.error(node, f"bad YAML value {show(str(node.value))}: {exc}")
            return INVALID

    def boolean(self, node: Node, what: str) -> Any:
        """``true`` or ``false``; INVALID after reporting anything else."""
        if isinstance(node, ScalarNode) and node.tag == TAG + "bool":
            return self.construct(node)  # INVALID for '!!bool x', reported there
        self.error(node, f"{what} must be true or false, got {kind(node)}")
        return INVALID

    def string(self, node: Node, what: str) -> str | None:
        if _is_str(node):
            return str(node.value)
        self.error(node, f"{what} must be a string, got {kind(node)}")
        return None

    def choice(self, node: Node, what: str, enum: type[_E]) -> _E | None:
        """A case-insensitive enum value, with a suggestion for typos."""
        names = [str(member.value) for member in enum]
        text = self.string(node, what)
        if text is None:
            return None
        try:
            return enum(text.lower())
        except ValueError:
            self.error(node, f"unknown {what} {show(text)}" + suggest(text, names))
            return None

    def items(self, node: Node, what: str) -> list[Node] | None:
        """A list, or one value standing for a one-item list; never empty."""
        if isinstance(node, SequenceNode):
            if not node.value:
                self.error(node, _EMPTY_LIST)
                return None
            return list(node.value)
        if isinstance(node, MappingNode):
            self.error(node, f"{what} must be a list or a single value, got a mapping")
            return None
        if is_null(node):
            self.error(node, f"{what} has no value; remove the key to match anything")
            return None
        return [node]

    def item_text(self, node: Node, what: str) -> str | None:
        """The text of a scalar list item, as written.

        Using the source text rather than the resolved value sidesteps YAML
        1.1 surprises: ``1:2:3:4:5:6:7:8`` is a base-60 integer and ``022``
        an octal one, but the user meant an address and port 22.
        """
        if isinstance(node, ScalarNode) and not is_null(node):
            return str(node.value).strip()
        if is_null(node):
            self.error(node, f"empty {what}")
        else:
            self.error(node, f"{what} must be a single value, got {kind(node)}")
        return None
