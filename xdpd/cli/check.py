"""``xdpd check``: validate without touching the kernel."""

from __future__ import annotations

import sys

from ..config import ConfigError, load_config
from ..daemon import EX_CONFIG


def main(args) -> int:
    try:
        config = load_config(args.config_dir)
    except ConfigError as e:
        for p in e.problems:
            print(p, file=sys.stderr)
        print(f"xdpd check: {len(e.problems)} problem(s) in {args.config_dir}", file=sys.stderr)
        return EX_CONFIG
    n = sum(len(r.src or ()) + len(r.dst or ()) for r in config.rules)
    print(f"{args.config_dir}: OK ({len(config.interfaces)} interfaces, {len(config.rules)} rules, "
          f"{n} addresses)")
    return 0
