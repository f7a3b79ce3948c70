"""Command line: one small module per verb (run, status, check, plan, reload).

The verbs and their options are a contract other tools script against:
add to them, never rename.
"""

from __future__ import annotations

import argparse

from .. import __version__

DEFAULT_CONFIG_DIR = "/etc/xdpd"
DEFAULT_PIN_DIR = "/sys/fs/bpf/xdpd"
DEFAULT_RUNTIME_DIR = "/run/xdpd"


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="xdpd", description="Declarative XDP packet filter.")
    p.add_argument("--version", action="version", version=f"xdpd {__version__}")
    sub = p.add_subparsers(dest="verb", required=True, metavar="VERB")

    run = sub.add_parser("run", help="enforce the config and run until SIGTERM")
    run.add_argument("--config-dir", default=DEFAULT_CONFIG_DIR)
    run.add_argument("--pin-dir", default=DEFAULT_PIN_DIR)
    run.add_argument("--runtime-dir", default=DEFAULT_RUNTIME_DIR,
                     help="where the outcome of each reload is written (reload.json)")

    status = sub.add_parser("status", help="show what is enforced (works while the daemon is down)")
    status.add_argument("--json", action="store_true", help="machine-readable output")
    status.add_argument("--pin-dir", default=DEFAULT_PIN_DIR)

    check = sub.add_parser("check", help="validate the config; exit 78 on errors")
    check.add_argument("--config-dir", default=DEFAULT_CONFIG_DIR)

    plan = sub.add_parser("plan", help="show what a reload would change, touching nothing; "
                                       "exit 0 if nothing, 2 if something would change")
    plan.add_argument("--config-dir", default=DEFAULT_CONFIG_DIR)
    plan.add_argument("--pin-dir", default=DEFAULT_PIN_DIR)
    plan.add_argument("--json", action="store_true", help="machine-readable output")

    reload = sub.add_parser("reload", help="make the running daemon reload and wait for the outcome; "
                                           "exit 1 if the new config was rejected")
    reload.add_argument("--pid", type=int, default=None,
                        help="the daemon's pid (default: the main pid of xdpd.service)")
    reload.add_argument("--runtime-dir", default=DEFAULT_RUNTIME_DIR,
                        help="the daemon's --runtime-dir, where it reports each reload")
    reload.add_argument("--timeout", type=float, default=60.0, metavar="SECONDS",
                        help="how long to wait for the outcome (default: 60)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.verb == "run":
        from . import run
        return run.main(args)
    if args.verb == "status":
        from . import status
        return status.main(args)
    if args.verb == "plan":
        from . import plan
        return plan.main(args)
    if args.verb == "reload":
        from . import reload
        return reload.main(args)
    from . import check
    return check.main(args)
