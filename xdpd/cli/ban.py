"""``xdpd ban add|del|list``: the ban table by hand, with or without a daemon.

The table is pinned apart from the program (:mod:`xdpd.bans`), so these
commands work whether ``xdpd run`` is up, crashed, or stopped with its pins
left in place; a ban added while no daemon runs is enforced at once if a
program is attached, and kept for the next daemon either way.  Only a
machine where no daemon has ever started has nothing to write to (exit 69).

Every argument is checked before the table is opened, so a typo (``--for
5x``, a prefix, a reason too long) changes nothing and needs no root.
fail2ban's action (``/etc/fail2ban/action.d/xdpd.conf``) runs ``add`` and
``del``; it accepts exit 1 from ``del`` (the ban had already expired).
"""

from __future__ import annotations

import errno
import json
import math
import os
import sys
import time
from dataclasses import dataclass
from typing import Any

from .. import layout
from ..bans import V4_MAPPED, BanError, BanRecord, BanTable, open_pinned, parse_source, source_text
from ..exitcodes import EX_NOPERM, EX_NOT_BANNED, EX_OK, EX_TEMPFAIL, EX_UNAVAILABLE, EX_USAGE
from ..problems import show
from ..units import parse_duration

REASON_MAX_BYTES = layout.Ban.reason.size - 1
"""The C string in the ban entry keeps its terminating NUL."""

CLI_SOURCE = "cli"
"""``source`` of a ban made by ``xdpd ban add`` (a rule-made ban shows the rule's name)."""


class BanCliError(Exception):
    """What went wrong, for one line on stderr; ``code`` is the exit status."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class AddRequest:
    """A validated ``ban add``: nothing in it can fail to be written except for room."""

    key: bytes
    seconds: float | None
    """None: until deleted."""
    reason: str


# -- reading the arguments (pure) ------------------------------------------------


def parse_address(text: str) -> bytes:
    """The table key for ADDRESS; a usage error names what is wrong with it."""
    try:
        return parse_source(text)
    except BanError as e:
        raise BanCliError(str(e), EX_USAGE) from None


def parse_reason(text: str) -> str:
    """``--reason``: printable, and short enough to be stored whole (never cut silently)."""
    if not text.isprintable():
        raise BanCliError(f"--reason {show(text)} has control characters; write it on one line", EX_USAGE)
    size = len(text.encode())
    if size > REASON_MAX_BYTES:
        raise BanCliError(f"--reason is {size} bytes long; at most {REASON_MAX_BYTES} are stored "
                          "(UTF-8): shorten it", EX_USAGE)
    return text


def parse_add(address: str, duration: str | None, reason: str) -> AddRequest:
    key = parse_address(address)
    try:
        seconds = None if duration is None else parse_duration(duration, what="--for")
    except ValueError as e:
        raise BanCliError(str(e), EX_USAGE) from None
    return AddRequest(key, seconds, parse_reason(reason))


# -- what list shows (pure) --------------------------------------------------------


def human_duration(seconds: float) -> str:
    """``5m``, ``1m 30s``, ``2h 5m``, ``3d 4h``: the two largest units, rounded up to a second."""
    s = max(0, math.ceil(seconds))
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if s >= size or (unit == "s" and not parts):
            parts.append(f"{s // size}{unit}")
            s %= size
        if len(parts) == 2 or (parts and not s):
            break
    return " ".join(parts)




def list_rows(records: list[BanRecord], now_ns: int, now_unix: float,
              rule_names: dict[int, str]) -> list[dict[str, Any]]:
    """The ``list --json`` shape, active bans only, IPv4 first, then by address."""
    rows = []
    active = (r for r in records if r.active(now_ns))
    for r in sorted(active, key=lambda r: (not r.key.startswith(V4_MAPPED), r.key)):
        expires = None if not r.expires_ns else round(now_unix + (r.expires_ns - now_ns) / 1e9, 3)
        rows.append({"address": r.address, "expires": expires, "reason": r.reason,
                     "source": r.source(rule_names)})
    return rows


def local_time(unix: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S %Z", time.localtime(unix))


def expiry_text(expires: float | None, now_unix: float) -> str:
    if expires is None:
        return "until deleted"
    return f"{local_time(expires)} (in {human_duration(expires - now_unix)})"


def format_table(rows: list[dict[str, Any]], now_unix: float) -> str:
    """A table a person reads: address, expiry in local time and from now, source, reason."""
    if not rows:
        return "no active bans"
    cells = [("ADDRESS", "EXPIRES", "SOURCE", "REASON")]
    cells += [(r["address"], expiry_text(r["expires"], now_unix), r["source"], r["reason"]) for r in rows]
    widths = [max(len(c[i]) for c in cells) for i in range(3)]
    return "\n".join(f"{a:<{widths[0]}}  {e:<{widths[1]}}  {s:<{widths[2]}}  {why}".rstrip()
                     for a, e, s, why in cells)


# -- the table ---------------------------------------------------------------------


def open_table(pin_dir: str) -> BanTable:
    """The pinned ban table, or a :class:`BanCliError` that says why not and what to do."""
    try:
        os.stat(pin_dir)
    except PermissionError:
        raise BanCliError(f"not allowed to read {pin_dir} (run as root)", EX_NOPERM) from None
    except OSError:
        pass  # absent: open_pinned says so, naming the pin dir
    try:
        return open_pinned(pin_dir)
    except BanError as e:
        raise BanCliError(str(e), EX_UNAVAILABLE) from None
    except OSError as e:
        if e.errno in (errno.EPERM, errno.EACCES):
            raise BanCliError(f"{e} (run as root)", EX_NOPERM) from None
        raise


def rule_names(pin_dir: str) -> dict[int, str]:
    """Counter slot -> limit rule name, from the pinned maps (empty if they cannot be read)."""
    from ..maps import LayoutMismatch, PinnedMaps
    from ..pins import current_maps_dir

    try:
        maps_dir = current_maps_dir(pin_dir)
        if maps_dir is None:
            return {}
        maps = PinnedMaps(maps_dir)
    except (LayoutMismatch, OSError):
        return {}
    try:
        return {slot: r.name for slot, r in maps.rule_slots().items()}
    finally:
        maps.close()


def _names_for(records: list[BanRecord], pin_dir: str) -> dict[int, str]:
    """Rule names, read only when some ban was made by a rule."""
    return rule_names(pin_dir) if any(r.rule_slot != layout.BAN_BY_CLI for r in records) else {}


def _describe(record: BanRecord, now_ns: int, pin_dir: str) -> str:
    expires = record.expires_unix(now_ns)
    parts = [f"until {local_time(expires)}" if expires is not None else "until deleted",
             f"source {record.source(_names_for([record], pin_dir))}"]
    if record.reason:
        parts.append(f"reason {show(record.reason)}")
    return ", ".join(parts)


# -- the commands ------------------------------------------------------------------


def add(args) -> int:
    req = parse_add(args.address, args.duration, args.reason)
    address = source_text(req.key)
    with open_table(args.pin_dir) as table:
        now = time.monotonic_ns()
        old = table.get(req.key)
        try:
            table.add(req.key, req.seconds, req.reason)
        except BanError as e:
            raise BanCliError(str(e), EX_TEMPFAIL) from None
        how = ("until deleted" if req.seconds is None else
               f"for {human_duration(req.seconds)}, until {local_time(time.time() + req.seconds)}")
        if old is not None and old.active(now):
            print(f"banned {address} {how} (replaces its ban {_describe(old, now, args.pin_dir)})")
        else:
            print(f"banned {address} {how}")
    return EX_OK


def delete(args) -> int:
    key = parse_address(args.address)
    address = source_text(key)
    with open_table(args.pin_dir) as table:
        now = time.monotonic_ns()
        old = table.get(key)
        table.delete(key)  # an expired entry the daemon has not swept yet goes too
    if old is None or not old.active(now):
        print(f"xdpd ban del: {address} is not banned (see xdpd ban list)", file=sys.stderr)
        return EX_NOT_BANNED
    print(f"lifted the ban of {address} ({_describe(old, now, args.pin_dir)})")
    return EX_OK


def list_bans(args) -> int:
    with open_table(args.pin_dir) as table:
        records = table.records()
        now_ns, now_unix = time.monotonic_ns(), time.time()
    rows = list_rows(records, now_ns, now_unix, _names_for(records, args.pin_dir))
    print(json.dumps(rows, indent=2) if args.json else format_table(rows, now_unix))
    return EX_OK


COMMANDS = {"add": add, "del": delete, "list": list_bans}


def main(args) -> int:
    try:
        return COMMANDS[args.ban_command](args)
    except BanCliError as e:
        print(f"xdpd ban {args.ban_command}: {e}", file=sys.stderr)
        return e.code
