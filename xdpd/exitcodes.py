"""Exit codes of every verb, in one place.

sysexits(3) codes where one fits, because systemd and scripts act on them:
the unit's ``RestartPreventExitStatus=69 78`` keeps a bad config or a missing
prerequisite from turning into a restart loop.
"""

from __future__ import annotations

import os

EX_OK = os.EX_OK
EX_USAGE = os.EX_USAGE              # 64: bad command line (argparse uses 2 itself)
EX_UNAVAILABLE = os.EX_UNAVAILABLE  # 69: a prerequisite is missing, no daemon to talk to, nothing pinned (ban)
EX_SOFTWARE = os.EX_SOFTWARE        # 70: the program could not be built or attached
EX_TEMPFAIL = os.EX_TEMPFAIL        # 75: no answer in time (reload); the ban table is full (ban add)
EX_NOPERM = os.EX_NOPERM            # 77: not allowed (run as root)
EX_CONFIG = os.EX_CONFIG            # 78: the config is invalid

EX_REJECTED = 1
"""``reload``: the daemon rejected the new config and keeps the old one;
``status``/``plan``: nothing (usable) is pinned."""

EX_CHANGES = 2
"""``plan``: something would change (like ``terraform plan -detailed-exitcode``)."""

EX_NOT_BANNED = 1
"""``ban del``: the address was not banned, so nothing was lifted (a script
that only wants it gone may accept this; fail2ban's action does)."""
