"""``python3 -m xdpd``."""

import sys

from .cli import main

sys.exit(main())
