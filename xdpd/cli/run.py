"""``xdpd run``: the foreground daemon."""

from __future__ import annotations

from .. import startup


def main(args) -> int:
    # The compile, or a restart's read of the pinned maps, starts before the daemon's
    # heavy imports (about 0.25 s): see xdpd.startup.
    start = startup.begin(args.config_dir, args.pin_dir)
    from .. import daemon, logs

    logs.setup()
    return daemon.run(args.config_dir, args.pin_dir, args.runtime_dir, start)
