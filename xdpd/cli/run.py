"""``xdpd run``: the foreground daemon."""

from __future__ import annotations

from .. import daemon, logs


def main(args) -> int:
    logs.setup()
    return daemon.run(args.config_dir, args.pin_dir, args.runtime_dir)
