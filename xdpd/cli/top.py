"""``xdpd top``: packets, bytes and drops per second, live, for an incident.

Rates come from two readings of the pinned per-CPU counters one interval
apart (:mod:`xdpd.snapshot`, :func:`xdpd.rates.rate_rows`), so like
``status`` it works whether the daemon runs or not, and changes nothing.

On a terminal it redraws a table every interval (busiest interface and
rule first) on the alternate screen, with the terminal in cbreak mode so a
single ``q`` quits.  Whatever ends it (``q``, Ctrl-C, SIGTERM or SIGHUP, an
exception) puts the terminal back as it was: line mode, echo, cursor, the
screen it came from.  With ``--once``, or when standard output is not a
terminal (a pipe, a file, a script), it prints one table of the rates over
one interval and exits.
"""

from __future__ import annotations

import errno
import os
import select
import signal
import sys
import termios
import time
import tty
from typing import Iterator, TextIO

from ..exitcodes import EX_NOPERM, EX_OK, EX_REJECTED
from ..maps import LayoutMismatch
from ..rates import RateTable, Snapshot, format_rates, rate_rows
from ..snapshot import NothingPinned, read_snapshot

QUIT_KEYS = ("q", "Q")

ENTER_SCREEN = "\x1b[?1049h\x1b[?25l"
"""Switch to the alternate screen and hide the cursor (xterm; tmux, screen and the Linux console too)."""
LEAVE_SCREEN = "\x1b[?25h\x1b[?1049l"
HOME, CLEAR_EOL, CLEAR_BELOW = "\x1b[H", "\x1b[K", "\x1b[J"


class Unreadable(Exception):
    """The pins cannot be read: one line to show, and the exit status."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


class Quit(Exception):
    """A signal asked the live view to end; ``code`` is the exit status."""

    def __init__(self, code: int) -> None:
        super().__init__(code)
        self.code = code


def read(pin_dir: str) -> Snapshot:
    """A reading; :class:`Unreadable` says why there is none (other errors are bugs: they propagate)."""
    try:
        return read_snapshot(pin_dir)
    except NothingPinned as e:
        raise Unreadable(f"xdpd: {e} (is the daemon started? see --pin-dir)", EX_REJECTED) from None  # as status
    except LayoutMismatch as e:
        raise Unreadable(f"xdpd top: {e}", EX_REJECTED) from None
    except OSError as e:
        if e.errno in (errno.EPERM, errno.EACCES):
            raise Unreadable(f"xdpd top: {e} (run as root)", EX_NOPERM) from None
        if e.errno == errno.ENOENT:  # a map unpinned between finding its directory and opening it
            raise Unreadable(f"xdpd top: {e} (the pins changed while being read: a daemon starting?)",
                             EX_REJECTED) from None
        raise


def title(pin_dir: str, interval: float) -> str:
    return f"xdpd top: {pin_dir}, every {interval:g} s"


def once(pin_dir: str, first: Snapshot, interval: float, out: TextIO) -> int:
    """One table of the rates over one interval."""
    time.sleep(max(0.0, first.at + interval - time.monotonic()))
    second = read(pin_dir)
    table = rate_rows(first, second)
    print(f"xdpd top: {pin_dir}, rates over {table.seconds:.2f} s", file=out)
    print("\n".join(format_rates(table)), file=out)
    return EX_OK


# -- the live view ---------------------------------------------------------------


class Screen:
    """The terminal while the live view runs: cbreak input, alternate screen, no cursor.

    A context manager; on exit everything is restored, whatever the reason.
    Without a terminal on standard input there is no ``q`` (Ctrl-C still ends it).
    """

    def __init__(self, stdin: TextIO, stdout: TextIO) -> None:
        self.out = stdout
        self.in_fd: int | None = stdin.fileno() if stdin.isatty() else None
        self.saved: list | None = None

    def __enter__(self) -> "Screen":
        if self.in_fd is not None:
            self.saved = termios.tcgetattr(self.in_fd)
            tty.setcbreak(self.in_fd)  # no line buffering, no echo; Ctrl-C still signals
        self.out.write(ENTER_SCREEN)
        self.out.flush()
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            self.out.write(LEAVE_SCREEN)
            self.out.flush()
        finally:
            if self.saved is not None:
                termios.tcsetattr(self.in_fd, termios.TCSADRAIN, self.saved)

    def keys(self, timeout: float) -> str:
        """Keys typed within ``timeout`` seconds ("" if none: it just waits)."""
        if self.in_fd is None:
            time.sleep(timeout)
            return ""
        readable, _w, _x = select.select([self.in_fd], [], [], timeout)
        if not readable:
            return ""
        data = os.read(self.in_fd, 64)
        if not data:  # end of input: nothing more will be typed
            self.in_fd = None
        return data.decode(errors="replace")

    def draw(self, lines: list[str]) -> None:
        """Redraw in place, cut to the terminal so nothing wraps or scrolls."""
        try:
            cols, rows = os.get_terminal_size(self.out.fileno())
        except OSError:
            cols, rows = 0, 0
        cols, rows = cols or 80, rows or 24  # a terminal that does not say its size
        shown = [line[: max(1, cols - 1)] for line in lines[:rows]]
        self.out.write(HOME + f"{CLEAR_EOL}\n".join(shown) + CLEAR_EOL + CLEAR_BELOW)
        self.out.flush()


def frame(pin_dir: str, interval: float, table: RateTable | None, problem: str | None) -> list[str]:
    head = f"{title(pin_dir, interval)}, {time.strftime('%H:%M:%S')}; q quits"
    if problem:
        return [head, "", problem, f"(trying again every {interval:g} s)"]
    if table is None:
        return [head, "", f"measuring for {interval:g} s..."]
    return [head, ""] + format_rates(table)


def ticks(start: float, interval: float) -> Iterator[float]:
    """When to read next: every ``interval`` from ``start``, skipping what a slow reading missed."""
    at = start
    while True:
        at += interval
        now = time.monotonic()
        if at < now:
            at = now + interval
        yield at


def live(pin_dir: str, first: Snapshot, interval: float, screen: Screen) -> int:
    previous: Snapshot | None = first
    screen.draw(frame(pin_dir, interval, None, None))
    for at in ticks(first.at, interval):
        while (left := at - time.monotonic()) > 0:
            if any(k in QUIT_KEYS for k in screen.keys(left)):
                return EX_OK
        try:
            reading = read(pin_dir)
        except Unreadable as e:  # the daemon restarting, pins removed: keep watching
            previous = None
            screen.draw(frame(pin_dir, interval, None, str(e)))
            continue
        table = rate_rows(previous, reading) if previous is not None else None
        previous = reading
        screen.draw(frame(pin_dir, interval, table, None))
    raise AssertionError("unreachable")


def _quit_on(signum: int, _frame: object) -> None:
    raise Quit(128 + signum)


def main(args) -> int:
    try:
        first = read(args.pin_dir)
        if args.once or not sys.stdout.isatty():
            return once(args.pin_dir, first, args.interval, sys.stdout)
    except Unreadable as e:
        print(e, file=sys.stderr)
        return e.code
    handlers = {s: signal.signal(s, _quit_on) for s in (signal.SIGTERM, signal.SIGHUP)}
    try:
        with Screen(sys.stdin, sys.stdout) as screen:
            return live(args.pin_dir, first, args.interval, screen)
    except KeyboardInterrupt:
        return EX_OK  # Ctrl-C is how many people leave a top: not a failure
    except Quit as q:
        return q.code
    finally:
        for s, h in handlers.items():
            signal.signal(s, h)
