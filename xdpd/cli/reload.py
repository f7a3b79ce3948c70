"""``xdpd reload``: make the running daemon reload, wait for its answer.

SIGHUP carries no answer back, so the daemon writes the outcome of every
reload to ``<runtime dir>/reload.json`` (:mod:`xdpd.reloadstate`).  This
verb reads the ``seq`` there, sends SIGHUP, and waits for an outcome with a
different ``seq`` (larger; or smaller, when a restarted daemon started
counting again).  It prints the summary, every problem on stderr, and exits:

* 0  the new config is enforced;
* 1  it was rejected or failed to apply: the daemon keeps enforcing the
  previous config;
* 69 (EX_UNAVAILABLE) no xdpd daemon with that pid, or it exited meanwhile;
* 75 (EX_TEMPFAIL) no answer within ``--timeout`` seconds;
* 77 (EX_NOPERM) not allowed to signal the daemon.

The systemd unit uses it as ``ExecReload=/usr/sbin/xdpd reload --pid
$MAINPID``, so ``systemctl reload xdpd`` fails when the config is rejected.
Without ``--pid``, the main pid of ``xdpd.service`` is asked from systemd.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from .. import reloadstate
from ..exitcodes import EX_NOPERM, EX_OK, EX_REJECTED, EX_TEMPFAIL, EX_UNAVAILABLE

POLL_SECONDS = 0.1
UNIT = "xdpd.service"


class ReloadError(Exception):
    """Why no answer could be had; ``code`` is the exit code."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


def systemd_main_pid(unit: str = UNIT) -> int:
    """The main pid of ``unit`` according to systemd (0 when it is not running)."""
    try:
        out = subprocess.run(["systemctl", "show", "--value", "--property=MainPID", unit],
                             capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise ReloadError(f"no --pid given and systemd cannot be asked for {unit}'s pid ({e})",
                          EX_UNAVAILABLE)
    try:
        return int(out.stdout.strip() or 0)
    except ValueError:
        return 0


def _cmdline(pid: int) -> list[str] | None:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            raw = f.read()
    except FileNotFoundError:
        raise ReloadError(f"no process with pid {pid}: is xdpd running?", EX_UNAVAILABLE)
    except OSError:
        return None  # /proc hidden from us: the signal itself will tell
    return [a.decode(errors="replace") for a in raw.split(b"\0") if a]


def check_is_xdpd(pid: int) -> None:
    """Refuse to send SIGHUP (which ends most programs) to something that is not ``xdpd run``."""
    args = _cmdline(pid)
    if args is None:
        return
    if not args:
        raise ReloadError(f"pid {pid} is not an xdpd daemon (a kernel thread or a zombie)", EX_UNAVAILABLE)
    if not (any("xdpd" in a for a in args) and "run" in args):
        raise ReloadError(f"pid {pid} is not an xdpd daemon (it runs: {' '.join(args)[:200]})",
                          EX_UNAVAILABLE)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie still "exists" for kill(0)
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def reload(pid: int, runtime_dir: str, timeout: float) -> reloadstate.ReloadState:
    """Signal ``pid`` and return the daemon's outcome of that reload (raise :class:`ReloadError`)."""
    check_is_xdpd(pid)
    before = reloadstate.read(runtime_dir)
    seq = before.seq if before else 0
    try:
        os.kill(pid, signal.SIGHUP)
    except ProcessLookupError:
        raise ReloadError(f"no process with pid {pid}: is xdpd running?", EX_UNAVAILABLE)
    except PermissionError:
        raise ReloadError(f"not allowed to signal pid {pid} (run as root)", EX_NOPERM)
    deadline = time.monotonic() + timeout
    while True:
        state = reloadstate.read(runtime_dir)
        if state is not None and state.seq != seq:
            return state
        if not _alive(pid):
            raise ReloadError(f"xdpd (pid {pid}) exited before answering the reload", EX_UNAVAILABLE)
        if time.monotonic() >= deadline:
            raise ReloadError(f"xdpd (pid {pid}) did not report the outcome of the reload within "
                              f"{timeout:g} s (no new {reloadstate.path(runtime_dir)}); it may still "
                              "be reloading: see its log", EX_TEMPFAIL)
        time.sleep(POLL_SECONDS)


def main(args) -> int:
    try:
        pid = args.pid if args.pid is not None else systemd_main_pid()
        if pid <= 0:
            raise ReloadError(f"{UNIT} is not running (give the daemon's --pid otherwise)", EX_UNAVAILABLE)
        state = reload(pid, args.runtime_dir, args.timeout)
    except ReloadError as e:
        print(f"xdpd reload: {e}", file=sys.stderr)
        return e.code
    for problem in state.errors:
        print(problem, file=sys.stderr)
    if state.ok:
        print(state.summary or "reloaded")
        return EX_OK
    print(f"xdpd reload: {state.summary or 'rejected'}", file=sys.stderr)
    return EX_REJECTED
