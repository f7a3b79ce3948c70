"""What is wrong with a configuration, and where: the lowest layer of config.

:class:`Problem` and :class:`ConfigError` are raised by the list-file code
(:mod:`xdpd.addrlist`, :mod:`xdpd.listcache`) as well as by
:mod:`xdpd.config`, so they live here, below both; :mod:`xdpd.config`
re-exports them for its callers.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from xdpd.model import Origin

_SHOW_MAX = 60
"""Longest piece of user text quoted back in a message."""


def format_origin(origin: Origin) -> str:
    """Render an origin, leaving out a column of 0.

    List-file lines have no meaningful column, and ``FILE:LINE`` is what
    editors and ``grep -n`` users expect; :class:`model.Origin` itself always
    prints the column when there is a line.
    """
    if origin.line and not origin.col:
        return f"{origin.path}:{origin.line}"
    return str(origin)


@dataclass(frozen=True)
class Problem:
    """One thing wrong with the configuration, and where it is."""

    origin: Origin
    message: str

    def __str__(self) -> str:
        return f"{format_origin(self.origin)}: {self.message}"


class ConfigError(Exception):
    """The configuration is invalid; ``problems`` lists everything found.

    All problems are collected before raising so that a user fixing a config
    sees every mistake in one run instead of one per reload.
    """

    def __init__(self, problems: Iterable[Problem]) -> None:
        self.problems: list[Problem] = list(problems)
        super().__init__(self.problems)

    def __str__(self) -> str:
        return "\n".join(str(p) for p in self.problems)


def show(text: str) -> str:
    """Quote user text for a message, cut short so one bad line stays one line.

    Unprintable characters are escaped as Python would (``\\r``, ``\\x00``),
    so a stray carriage return cannot garble the terminal or the log.
    """
    if len(text) > _SHOW_MAX:
        text = text[:_SHOW_MAX] + "..."
    if not text.isprintable():
        text = "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)
    return "'" + text + "'"
