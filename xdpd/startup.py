"""The first steps of ``xdpd run``, taken before the daemon's heavy imports.

Importing the whole daemon (pyroute2, prometheus_client, structlog, the
watchdog library) takes about 0.25 s.  The slowest step of a first start is
the compile (about 1.4 s, in a child process), and of a restart reading back
what the previous daemon's maps hold (about 1 s of batch lookups for a
million addresses, mostly spent in the kernel).  Neither needs those
imports, so :func:`begin` starts both first: it checks the prerequisites,
decides between the pinned program and a compile
(:func:`xdpd.compiler.find_or_compile`) and starts reading the banks of the
maps pinned for that build (:class:`xdpd.bankread.BankReader`).
:func:`xdpd.daemon.run` takes the :class:`Start` over; it decides nothing
here that it could not undo (a guess of the build parameters that the full
config contradicts is cancelled there).

Only light modules are imported here.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from . import prereq
from .bankread import BankReader
from .compiler import BuildParams, PendingCompile, Reused, Unbuildable, find_or_compile
from .config import peek_settings
from .maps import LayoutMismatch, PinnedMaps


def build_params(settings) -> BuildParams:
    """The program's ``-D`` parameters for these settings (its capacities)."""
    # Two banks share each exact map.
    return BuildParams(max_exact=2 * settings.max_addresses, max_limit_sources=settings.max_limit_sources,
                       max_bans=settings.max_bans)


@dataclass
class Start:
    """What :func:`begin` set going; :func:`xdpd.daemon.run` finishes or cancels it."""

    params: BuildParams | None = None
    """The build parameters guessed from the settings alone (before the lists are read)."""
    program: Reused | PendingCompile | Unbuildable | None = None
    early: BankReader | None = None
    """The banks of the maps already pinned for this build, being read (None: nothing to read)."""
    missing: prereq.Missing | None = None
    """A prerequisite that is missing: nothing else was started."""

    def cancel(self) -> None:
        """Stop what was started: the compile, the read and its maps."""
        if self.program is not None:
            self.program.cancel()
        self.drop_reader()

    def drop_reader(self) -> None:
        """Stop an early read that will not be used, and close its maps."""
        if self.early is not None:
            self.early.cancel()
            self.early.maps.close()
            self.early = None


def begin(config_dir: str, pin_dir: str) -> Start:
    """Check the prerequisites, then start the program (reused or compiling) and the read of its maps."""
    try:
        prereq.check_all(pin_dir)
    except prereq.Missing as e:
        return Start(missing=e)
    params = build_params(peek_settings(config_dir))
    program = find_or_compile(pin_dir, params)
    return Start(params, program, start_reading(program.maps_dir))


def start_reading(maps_dir: str | None) -> BankReader | None:
    """Read both banks of the maps pinned in ``maps_dir``, in threads (None: nothing to read).

    Maps that cannot be opened are left to the daemon's own open, which
    reports them.
    """
    if not maps_dir or not os.path.exists(os.path.join(maps_dir, "state")):
        return None
    try:
        maps = PinnedMaps(maps_dir)
    except (LayoutMismatch, OSError):
        return None
    try:
        if maps.is_initialised():
            return BankReader(maps).start()
    except OSError:
        pass
    maps.close()
    return None
