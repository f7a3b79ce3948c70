"""``xdpd status``: read the pinned state, daemon or not."""

from __future__ import annotations

import json
import sys

from ..exitcodes import EX_NOPERM, EX_OK, EX_REJECTED
from ..status import format_status, read_status


def main(args) -> int:
    try:
        st = read_status(args.pin_dir)
    except PermissionError as e:
        print(f"xdpd status: {e} (run as root)", file=sys.stderr)
        return EX_NOPERM
    if args.json:
        print(json.dumps(st, indent=2))  # rules stay in config order
    else:
        print(format_status(st))
    return EX_OK if "error" not in st else EX_REJECTED
