"""``xdpd check``: validate without touching the kernel."""

from __future__ import annotations

import sys

from ..config import ConfigError, load_config
from ..exitcodes import EX_CONFIG
from ..model import Config


def load_or_report(config_dir: str, verb: str) -> Config | None:
    """The config, or None after printing every problem (the caller exits 78)."""
    try:
        return load_config(config_dir)
    except ConfigError as e:
        for p in e.problems:
            print(p, file=sys.stderr)
        print(f"xdpd {verb}: {len(e.problems)} problem(s) in {config_dir}", file=sys.stderr)
        return None


def main(args) -> int:
    config = load_or_report(args.config_dir, "check")
    if config is None:
        return EX_CONFIG
    n = sum(len(r.src or ()) + len(r.dst or ()) for r in config.rules)
    print(f"{args.config_dir}: OK ({len(config.interfaces)} interfaces, {len(config.rules)} rules, "
          f"{n} addresses)")
    return 0
