"""``xdpd plan``: what a reload would change, touching nothing.

Reads the config like ``check``, then observes the kernel like the daemon
does (the pinned program and maps, every interface's attachment) and prints
the very :class:`~xdpd.plan.Plan` the daemon would execute.  Exit status: 0
when nothing would change, 2 when something would (like ``terraform plan
-detailed-exitcode``), 78 for an invalid config.  The kernel-side modules
are imported only once the config is valid.
"""

from __future__ import annotations

import json
import os
import sys

from ..exitcodes import EX_CHANGES, EX_CONFIG, EX_OK, EX_REJECTED
from ..plan import PlanError, plan
from .check import load_or_report


def main(args) -> int:
    config = load_or_report(args.config_dir, "plan")
    if config is None:
        return EX_CONFIG
    from pyroute2 import IPRoute

    from ..datapath import Datapath
    from ..links import XdpLinks
    from ..bankread import candidates_of
    from ..maps import PinnedMaps
    from ..observe import observe
    from ..pins import current_maps_dir, pinned_program

    maps_dir = current_maps_dir(args.pin_dir) if os.path.isdir(args.pin_dir) else None
    try:
        prog_fd = pinned_program(args.pin_dir) if maps_dir else None
    except ValueError as e:
        print(f"xdpd plan: {e}", file=sys.stderr)
        return EX_REJECTED
    if prog_fd is None:
        lines = [f"nothing pinned under {args.pin_dir}: the daemon would compile and load the program, then"]
        lines += [f"attach {i.name} ({i.mode.value})" for i in config.interfaces]
        lines += [f"add rule {r.name}" for r in config.rules]
        return _print(args, lines, changes=True)
    maps = PinnedMaps(maps_dir)
    try:
        datapath = Datapath(maps)
        datapath.adopt(candidates_of(config.rules))  # the config's lists: no sort when unchanged
        with IPRoute() as ipr:
            p = plan(config, observe(datapath, XdpLinks(ipr, prog_fd, args.pin_dir)))
    except PlanError as e:
        print(f"xdpd plan: {e}", file=sys.stderr)
        return EX_REJECTED
    finally:
        maps.close()
        os.close(prog_fd)
    return _print(args, p.lines(), changes=bool(p))


def _print(args, lines: list[str], changes: bool) -> int:
    if args.json:
        print(json.dumps({"changes": changes, "operations": lines}, indent=2))
    elif changes:
        print("\n".join(lines))
    else:
        print("no changes: the kernel already enforces this config")
    return EX_CHANGES if changes else EX_OK
