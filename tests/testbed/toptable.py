"""``xdpd top``'s text table read back as numbers, for tests that run it as an operator does.

Used by the kernel test of ``top`` (:mod:`tests.kernel.test_top`) and the
end-to-end test (``xdpd top --once`` of the installed package); both assert
on what the table shows, so both read it the same way.
"""

from __future__ import annotations

import re
from typing import Any

SUFFIX = {"": 1, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12}


def number(text: str) -> float:
    """A rate as ``xdpd top`` prints it (``480``, ``1.23k``) as a number."""
    m = re.fullmatch(r"([0-9.]+)([kMGT]?)", text)
    assert m, f"not a rate: {text!r}"
    return float(m.group(1)) * SUFFIX[m.group(2)]


def parse(lines: list[str]) -> tuple[dict[str, dict[str, Any]], dict[str, dict[str, Any]], list[str]]:
    """(interfaces, rules, rule names in the order shown) from the text table."""
    ifaces: dict[str, dict[str, Any]] = {}
    rules: dict[str, dict[str, Any]] = {}
    order: list[str] = []
    section, current = None, None
    for line in lines:
        if line.startswith("INTERFACE / VERDICT"):
            section = "ifaces"
        elif line.startswith("#   RULE"):
            section = "rules"
        elif not line.strip() or line.startswith("("):
            continue
        elif section == "ifaces" and line.startswith("  "):
            label, pps, bps = line.split()
            ifaces[current]["verdicts"][label] = (number(pps), number(bps))
        elif section == "ifaces":
            name, pps, bps, drops, *note = line.split()
            current = name
            ifaces[name] = {"pps": number(pps), "bps": number(bps), "drops": number(drops),
                            "note": " ".join(note), "verdicts": {}}
        elif section == "rules":
            pos, name, action, pps, bps, limited, *note = line.split()
            rules[name] = {"position": int(pos), "action": action, "pps": number(pps), "bps": number(bps),
                           "limited": None if limited == "-" else number(limited), "note": " ".join(note)}
            order.append(name)
    return ifaces, rules, order


def near(got: float, want: float, rel: float = 0.10, slack: float = 3.0) -> bool:
    """Whether a rate shown is within ``rel`` of what was sent, give or take ``slack`` packets/s."""
    return abs(got - want) <= rel * want + slack
