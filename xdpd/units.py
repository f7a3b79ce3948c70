"""Rates (``1000/s``, ``10mbit/s``) and durations (``60s``, ``1h``) as written by an operator.

Pure text -> number, with no YAML in sight: the config's ``limit`` rules use
both, and the command line (``xdpd ban add --for 1h``) uses durations, so a
unit means the same thing wherever it is typed.  Errors are
:class:`ValueError` whose message says what was wrong and shows a form that
is accepted; the caller adds where it was written.

Units are decimal SI (``kB`` is 1000 bytes, ``mbit`` 10^6 bits), as network
rates are quoted.  Spellings are case-sensitive where case carries meaning:
``B`` is a byte and ``bit`` a bit, so a bare ``b`` (``10mb/s``) is refused as
ambiguous rather than guessed; ``KB`` and ``mB`` are refused with the
spelling that is meant, since ``K`` often means 1024.
"""

from __future__ import annotations

import re

from xdpd.model import LimitUnit
from xdpd.problems import show

MAX_RATE = 1e12
"""Largest rate accepted, per second: more than any link carries (8 Tbit/s in bytes)."""
MAX_DURATION = 365 * 86400.0
"""Longest duration accepted (a ban, a burst's refill time), in seconds."""

_NUMBER = r"[0-9]+(?:\.[0-9]+)?"
_RATE_RE = re.compile(rf"(-?)\s*({_NUMBER})\s*([A-Za-z]*)\s*(?:/\s*([A-Za-z]*))?", re.ASCII)
_DURATION_RE = re.compile(rf"(-?)\s*({_NUMBER})\s*([A-Za-z]*)", re.ASCII)

_PERIODS = {"s": 1.0, "m": 60.0, "h": 3600.0}
_BYTE_UNITS = {"B": 1.0, "kB": 1e3, "MB": 1e6, "GB": 1e9}
_BIT_UNITS = {"bit": 1 / 8, "kbit": 1e3 / 8, "mbit": 1e6 / 8, "gbit": 1e9 / 8}
_DURATION_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_PREFIXES = {"": "", "k": "k", "m": "M", "g": "G"}
"""Prefix as typed in any case -> its byte spelling (bits use it lower-cased)."""

_RATE_FORMS = "like '1000/s', '50/m', '10mbit/s' or '500kB/s'"
_RATE_UNITS = "none (packets), B, kB, MB, GB (bytes) or bit, kbit, mbit, gbit (bits)"
_DURATION_FORMS = "like '30s', '10m', '1h' or '2d'"


def parse_rate(text: str, *, what: str = "rate") -> tuple[float, LimitUnit]:
    """``"1000/s"`` -> ``(1000.0, PACKETS)``, ``"10mbit/s"`` -> ``(1250000.0, BYTES)``.

    The result is per second, in packets or bytes (bits are divided by 8).
    It is more than 0, at least 1 per hour and at most :data:`MAX_RATE` per
    second.  ``what`` names the value in messages.
    """
    if not text.strip():
        raise ValueError(f"{what} is empty; write a number per second, minute or hour, {_RATE_FORMS}")
    match = _RATE_RE.fullmatch(text.strip())
    if not match:
        raise ValueError(f"bad {what} {show(text)}; expected a number, an optional unit and /s, /m or /h, "
                         f"{_RATE_FORMS}")
    sign, number, unit, period = match.groups()
    value = float(number)
    if sign or value == 0:
        raise ValueError(f"{what} must be more than 0, got {show(text)}")
    if period is None and (meant := _per_second_spelling(unit)) is not None:
        raise ValueError(f"unknown unit {show(unit)} in {what} {show(text)}; did you mean {show(number + meant)}?")
    noun, scale = _rate_unit(unit, text, what)
    if period is None:
        raise ValueError(f"{what} {show(text)} has no period; write {show(text.strip() + '/s')} "
                         "(per second), or /m or /h (per minute, per hour)")
    if period not in _PERIODS:
        raise ValueError(f"{what} {show(text)} must end in /s, /m or /h (per second, minute or hour)")
    per_hour = value * scale * (3600.0 / _PERIODS[period])
    if per_hour < 1:
        raise ValueError(f"{what} {show(text)} is less than 1 {noun} per hour")
    per_second = value * scale / _PERIODS[period]
    if not per_second <= MAX_RATE:  # also inf, from a number with hundreds of digits
        raise ValueError(f"{what} {show(text)} is more than 10^12 {noun}s per second")
    return per_second, LimitUnit.PACKETS if noun == "packet" else LimitUnit.BYTES


def _rate_unit(unit: str, text: str, what: str) -> tuple[str, float]:
    """A rate's unit -> (singular noun for messages, multiplier to packets or bytes)."""
    if not unit:
        return "packet", 1.0
    if unit in _BYTE_UNITS:
        return "byte", _BYTE_UNITS[unit]
    if unit[:-3].lower() in _PREFIXES and unit[-3:] == "bit":
        return "byte", _BIT_UNITS[unit.lower()]
    prefix = _PREFIXES.get(unit[:-1].lower())
    if prefix is not None and unit[-1:] == "b":
        raise ValueError(f"unit {show(unit)} in {what} {show(text)} is ambiguous: write "
                         f"{show(prefix.lower() + 'bit')} for bits or {show(prefix + 'B')} for bytes")
    if prefix is not None and unit[-1:] == "B":
        raise ValueError(f"unit {show(unit)} in {what} {show(text)}: write {show(prefix + 'B')} "
                         f"({int(_BYTE_UNITS[prefix + 'B'])} bytes; units are decimal)")
    raise ValueError(f"unknown unit {show(unit)} in {what} {show(text)}; expected {_RATE_UNITS}")


def _per_second_spelling(unit: str) -> str | None:
    """``pps`` -> ``/s``, ``Mbps`` -> ``mbit/s``, ``kBps`` -> ``kB/s``: the "per second" units
    operators often write, in the form this module reads (None: not one of them)."""
    if unit == "pps":
        return "/s"
    prefix = _PREFIXES.get(unit[:-3].lower())
    if prefix is None or len(unit) < 3 or unit[-2:] != "ps":
        return None
    if unit[-3] == "b":
        return prefix.lower() + "bit/s"
    if unit[-3] == "B":
        return prefix + "B/s"
    return None


def parse_duration(text: str, *, what: str = "duration") -> float:
    """``"30s"``, ``"10m"``, ``"1h"``, ``"2d"`` (or ``"1.5h"``) -> seconds.

    More than 0 and at most :data:`MAX_DURATION`.  A number without a unit
    is refused rather than taken as seconds: ``ban: 60`` reads the same as
    ``ban: 60m`` to a tired eye.  ``what`` names the value in messages.
    """
    if not text.strip():
        raise ValueError(f"{what} is empty; write a number and s, m, h or d, {_DURATION_FORMS}")
    match = _DURATION_RE.fullmatch(text.strip())
    if not match:
        raise ValueError(f"bad {what} {show(text)}; expected a number and s, m, h or d, {_DURATION_FORMS}")
    sign, number, unit = match.groups()
    value = float(number)
    if sign or value == 0:
        raise ValueError(f"{what} must be more than 0, got {show(text)}")
    if not unit:
        raise ValueError(f"{what} {show(text)} has no unit; write {show(number + 's')} "
                         "(or m, h, d for minutes, hours, days)")
    if unit not in _DURATION_UNITS:
        raise ValueError(f"unknown unit {show(unit)} in {what} {show(text)}; expected s, m, h or d, "
                         f"{_DURATION_FORMS}")
    seconds = value * _DURATION_UNITS[unit]
    if not seconds <= MAX_DURATION:  # also inf
        raise ValueError(f"{what} {show(text)} is more than 365 days")
    return seconds
