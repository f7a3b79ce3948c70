"""``xdpd plan``: what a reload would change, touching nothing.

Reads the config like ``check``, the pinned maps and program like
``status``, and the interfaces' attachments from netlink, then prints the
planner's operations.  Exit status: 0 when nothing would change, 2 when
something would (like ``terraform plan -detailed-exitcode``), 78 for an
invalid config.
"""

from __future__ import annotations

import json
import os
import sys

from pyroute2 import IPRoute

from .. import bpfsys
from ..daemon import EX_CONFIG
from ..datapath import Datapath, current_maps_dir
from ..enforcer import Enforcer, PROG_NAME
from .check import load_or_report

EX_CHANGES = 2


def main(args) -> int:
    config = load_or_report(args.config_dir, "plan")
    if config is None:
        return EX_CONFIG
    prog_path = os.path.join(args.pin_dir, "prog")
    maps_dir = current_maps_dir(args.pin_dir) if os.path.isdir(args.pin_dir) else None
    if maps_dir is None or not os.path.exists(prog_path):
        lines = [f"nothing pinned under {args.pin_dir}: the daemon would compile and load the program, then"]
        lines += [f"attach {i.name} ({i.mode.value})" for i in config.interfaces]
        lines += [f"add rule {r.name}" for r in config.rules]
        return _print(args, lines, changes=True)
    prog_fd = bpfsys.obj_get(prog_path)
    dp = Datapath(maps_dir)
    try:
        if bpfsys.prog_info(prog_fd).name != PROG_NAME:
            print(f"{prog_path} is not an xdpd program", file=sys.stderr)
            return 1
        dp.adopt()
        with IPRoute() as ipr:
            prep = Enforcer(dp, prog_fd, ipr).prepare(config)
    finally:
        dp.close()
        os.close(prog_fd)
    p = prep.plan
    return _print(args, p.lines(), changes=bool(p))


def _print(args, lines: list[str], changes: bool) -> int:
    if args.json:
        print(json.dumps({"changes": changes, "operations": lines}, indent=2))
    elif changes:
        print("\n".join(lines))
    else:
        print("no changes: the kernel already enforces this config")
    return EX_CHANGES if changes else 0
