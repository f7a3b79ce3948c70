"""Structured logging: one place decides how events are rendered.

Code logs events with fields (``log.info("attached", iface="eth0",
mode="native")``); this module picks the renderer:

* **journald**, when the daemon runs under systemd: every event becomes one
  journal entry with ``MESSAGE`` (a readable one-line rendering),
  ``PRIORITY`` (from the level), ``XDPD_EVENT`` (the event name) and one
  field per event field, so ``journalctl -u xdpd XDPD_RULE=drop-bad-net``
  finds a rule's counts (see :func:`journal_fields` for the names);
* **console** otherwise: a readable line with a timestamp on stderr.

Which one is decided once, in :func:`setup`, by :func:`choose_target`.
"""

from __future__ import annotations

import json
import logging
import os
import re
import sys
from typing import Any, Callable, Mapping, TextIO

import structlog

JOURNAL = "journal"
CONSOLE = "console"

TARGET_ENV = "XDPD_LOG_TARGET"
"""Set to ``journal`` or ``console`` to override the detection."""

SYSLOG_IDENTIFIER = "xdpd"

PRIORITIES = {"debug": 7, "info": 6, "warning": 4, "warn": 4, "error": 3, "exception": 3,
              "critical": 2}
"""structlog level -> syslog priority (journald's PRIORITY field)."""

FIELD_NAMES = {
    "iface": "XDPD_IFACE",
    "rule": "XDPD_RULE",
    "action": "XDPD_ACTION",
    "verdict": "XDPD_VERDICT",
    "packets": "PACKETS",
    "bytes": "BYTES",
    "delta_packets": "DELTA_PACKETS",
    "delta_bytes": "DELTA_BYTES",
}
"""Event fields with fixed journal names; any other ``key`` becomes ``XDPD_KEY``."""

_INVALID = re.compile(r"[^A-Z0-9_]")
_LEAD_KEYS = ("iface", "rule", "action", "verdict")
"""Shown first in MESSAGE: what the numbers are about."""


def choose_target(env: Mapping[str, str] | None = None, stream: TextIO | None = None) -> str:
    """``journal`` when stderr is systemd's journal stream, else ``console``.

    systemd sets ``JOURNAL_STREAM=<dev>:<inode>`` for a service whose stdout
    or stderr is connected to the journal.  The variable is inherited by
    children whose stderr may go elsewhere (a test harness started from a
    service, say), so it only counts when it matches stderr itself.  Without
    it, ``INVOCATION_ID`` (set for every unit systemd starts) still means a
    systemd service, one whose output is not the journal (e.g.
    ``StandardError=null``): the journal is the right place then too.
    """
    env = os.environ if env is None else env
    stream = sys.stderr if stream is None else stream
    forced = env.get(TARGET_ENV, "").strip().lower()
    if forced in (JOURNAL, CONSOLE):
        return forced
    journal_stream = env.get("JOURNAL_STREAM")
    if journal_stream:
        return JOURNAL if _is_stream(journal_stream, stream) else CONSOLE
    return JOURNAL if env.get("INVOCATION_ID") else CONSOLE


def _is_stream(journal_stream: str, stream: TextIO) -> bool:
    try:
        dev, ino = (int(x) for x in journal_stream.split(":"))
        st = os.fstat(stream.fileno())
    except (ValueError, OSError, AttributeError):
        return False
    return (st.st_dev, st.st_ino) == (dev, ino)


def field_name(key: str) -> str:
    """The journal field for an event field: ``rule`` -> ``XDPD_RULE``, ``packets`` -> ``PACKETS``."""
    if key in FIELD_NAMES:
        return FIELD_NAMES[key]
    # Journal field names: A-Z, 0-9, _, not starting with "_" (trusted fields).
    return "XDPD_" + _INVALID.sub("_", key.upper())


def _text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bool) or value is None or isinstance(value, (list, tuple, dict)):
        return json.dumps(value, default=str)
    return str(value)


def one_line(event: str, fields: Mapping[str, Any]) -> str:
    """``count rule=drop-bad-net action=drop packets=12 ...``: the event, then key=value.

    The fields that say what an event is about (iface, rule, action,
    verdict) come first, the others in the order they were logged.

    Values with spaces or quotes are double-quoted; line breaks are escaped,
    so each event stays one line (the full text is in its own field).
    """
    parts = [event]
    first = [k for k in _LEAD_KEYS if k in fields]
    for key in first + [k for k in fields if k not in first]:
        value = fields[key]
        text = _text(value)
        if text == "" or any(c.isspace() or c in "\"'=" for c in text):
            text = json.dumps(text)
        parts.append(f"{key}={text}")
    return " ".join(parts)


def journal_fields(event_dict: Mapping[str, Any]) -> list[str]:
    """The journal entry (``FIELD=value`` strings) for one structlog event dict."""
    fields = dict(event_dict)
    event = str(fields.pop("event", ""))
    level = str(fields.pop("level", "info"))
    fields.pop("timestamp", None)
    exception = fields.pop("exception", None)
    entry = [f"MESSAGE={one_line(event, fields)}",
             f"PRIORITY={PRIORITIES.get(level, 6)}",
             f"SYSLOG_IDENTIFIER={SYSLOG_IDENTIFIER}",
             f"XDPD_EVENT={event}"]
    entry += [f"{field_name(k)}={_text(v)}" for k, v in fields.items()]
    if exception:
        entry.append(f"XDPD_EXCEPTION={exception}")
    return entry


class JournalLogger:
    """A structlog logger whose every method sends one journal entry.

    If journald cannot be reached (its socket is gone), the entry's message
    goes to stderr instead of being lost.
    """

    def __init__(self, send: Callable[..., None], fallback: TextIO | None = None) -> None:
        self._send = send
        self._fallback = fallback

    def msg(self, entry: list[str]) -> None:
        try:
            self._send(*entry)
        except OSError:
            out = self._fallback or sys.stderr
            message = next((f[len("MESSAGE="):] for f in entry if f.startswith("MESSAGE=")), "")
            print(message, file=out, flush=True)

    debug = info = warning = warn = error = exception = critical = fatal = log = msg


def _to_journal_entry(logger, method_name: str, event_dict: dict) -> dict:
    # The last processor's return value is passed to the logger method as **kwargs.
    return {"entry": journal_fields(event_dict)}


def setup(level: int = logging.INFO, target: str | None = None,
          journal_send: Callable[..., None] | None = None) -> str:
    """Configure logging for the process; returns the target chosen (``journal``/``console``).

    ``target`` overrides :func:`choose_target`; ``journal_send`` replaces
    ``systemd.journal.sendv`` (tests).  Falls back to the console when the
    journal is wanted but python3-systemd is missing.
    """
    target = target or choose_target()
    if target == JOURNAL and journal_send is None:
        try:
            from systemd import journal
            journal_send = journal.sendv
        except ImportError:
            target = CONSOLE
    if target == JOURNAL:
        structlog.configure(
            processors=[
                structlog.processors.add_log_level,
                structlog.processors.format_exc_info,
                _to_journal_entry,
            ],
            wrapper_class=structlog.make_filtering_bound_logger(level),
            logger_factory=lambda *args: JournalLogger(journal_send),
            cache_logger_on_first_use=True,
        )
        return JOURNAL
    structlog.configure(
        processors=[
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="%Y-%m-%d %H:%M:%S", utc=False),
            structlog.dev.ConsoleRenderer(colors=False),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=True,
    )
    return CONSOLE


def get(name: str = "xdpd"):
    return structlog.get_logger(name)
