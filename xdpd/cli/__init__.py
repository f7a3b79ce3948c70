"""Command line: one small module per verb (run, status, check, plan, reload, ban, top).

The verbs and their options are a contract other tools script against:
add to them, never rename.
"""

from __future__ import annotations

import argparse
import math

from .. import __version__

DEFAULT_CONFIG_DIR = "/etc/xdpd"
DEFAULT_PIN_DIR = "/sys/fs/bpf/xdpd"
DEFAULT_RUNTIME_DIR = "/run/xdpd"


def _seconds(text: str) -> float:
    """``--interval``: a number of seconds, more than 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"must be more than 0 seconds, got {text!r}")
    return value


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

    ban = sub.add_parser("ban", help="ban sources by hand, list and lift bans (works while the daemon is down)")
    ban_sub = ban.add_subparsers(dest="ban_command", required=True, metavar="COMMAND")
    address_help = ("an IPv4 address, or an IPv6 address or prefix of /64 or longer "
                    "(an IPv6 ban covers the address's /64)")
    ban_add = ban_sub.add_parser("add", help="drop everything from ADDRESS, before any rule, on every interface; "
                                             "replaces an existing ban of it")
    ban_add.add_argument("address", metavar="ADDRESS", help=address_help)
    ban_add.add_argument("--for", dest="duration", metavar="DURATION", default=None,
                         help="how long: 30s, 10m, 1h, 2d (at most 365d; default: until deleted)")
    ban_add.add_argument("--reason", metavar="TEXT", default="",
                         help="shown by 'xdpd ban list' (at most 63 bytes)")
    ban_add.add_argument("--pin-dir", default=DEFAULT_PIN_DIR)
    ban_del = ban_sub.add_parser("del", help="lift the ban of ADDRESS; exit 1 if it was not banned")
    ban_del.add_argument("address", metavar="ADDRESS", help=address_help)
    ban_del.add_argument("--pin-dir", default=DEFAULT_PIN_DIR)
    ban_list = ban_sub.add_parser("list", help="show the active bans")
    ban_list.add_argument("--json", action="store_true", help="machine-readable output")
    ban_list.add_argument("--pin-dir", default=DEFAULT_PIN_DIR)

    top = sub.add_parser("top", help="packets, bytes and drops per second per interface, verdict and rule, "
                                     "live; q quits (works while the daemon is down)")
    top.add_argument("--pin-dir", default=DEFAULT_PIN_DIR)
    top.add_argument("--once", action="store_true",
                     help="print the rates over one interval and exit (also when stdout is not a terminal)")
    top.add_argument("--interval", type=_seconds, default=1.0, metavar="SECONDS",
                     help="how far apart the two readings of each rate are, and how often the view "
                          "refreshes (default: 1)")
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
    if args.verb == "ban":
        from . import ban
        return ban.main(args)
    if args.verb == "top":
        from . import top
        return top.main(args)
    from . import check
    return check.main(args)
