"""Command line: one small module per verb (run, status, check).

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
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.verb == "run":
        from . import run
        return run.main(args)
    if args.verb == "status":
        from . import status
        return status.main(args)
    from . import check
    return check.main(args)
