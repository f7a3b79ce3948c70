"""What every benchmark run shares: progress on stderr, signals that unwind, the machine it ran on."""

from __future__ import annotations

import contextlib
import platform
import signal
import sys
from pathlib import Path


def log(msg: str) -> None:
    """A progress line on stderr (the tables go to stdout)."""
    print(msg, file=sys.stderr, flush=True)


def unwind_on_signals() -> None:
    """SIGTERM/SIGHUP unwind through the ``finally`` blocks like Ctrl-C does, so nothing is left behind."""

    def _stop(signum: int, _frame: object) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGHUP, _stop)


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo, else the machine type."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.machine()


def load_average() -> str:
    """The 1-minute load average: on a shared machine, what else competed for the CPUs."""
    with contextlib.suppress(OSError, IndexError):
        return Path("/proc/loadavg").read_text().split()[0]
    return "?"
