"""A loaded xdpd program driven by BPF_PROG_TEST_RUN, for frame-level tests.

``tests/kernel/conftest.py`` compiles it once per session (the ``prog``
fixture) into its own pin directory.  Each test loads a rule set (YAML,
parsed by the real config loader) into the banks and runs crafted frames
through the kernel's verifier-checked program: no interface is involved.
BPF_PROG_TEST_RUN reports ingress ifindex 1, so the image enables ifindex 1
-- a map entry in the test's own maps, nothing is attached to any device.
"""

from __future__ import annotations

import os
import shutil
import textwrap

from xdpd import bpfsys, layout, tables
from xdpd.compiler import BuildParams, compile_program
from xdpd.config import parse_config_text
from xdpd.datapath import Datapath
from xdpd.maps import PinnedMaps
from xdpd.observed import RuleSlot
from xdpd.plan import assign_slots

XDP_DROP, XDP_PASS = 1, 2
VERDICTS = {XDP_DROP: "drop", XDP_PASS: "pass"}


class LoadedProgram:
    """The compiled program, its maps and rule slots: load a rule set, run frames, read counters."""

    def __init__(self, pin_dir: str, max_exact: int) -> None:
        os.makedirs(pin_dir, exist_ok=True)
        self.pin_dir = pin_dir
        self.compiled = compile_program(pin_dir, BuildParams(max_exact=max_exact))
        self.maps = PinnedMaps(self.compiled.maps_dir)
        self.dp = Datapath(self.maps)
        self.slots: dict[str, int] = {}

    def load(self, yaml_text: str, default: str = "pass") -> None:
        config = parse_config_text(textwrap.dedent(yaml_text), "test.yaml")
        names = [r.name for r in config.rules]
        retired = {s for n, s in self.slots.items() if n not in names}
        slots = assign_slots(names, self.slots, retired, layout.MAX_RULE_SLOTS)
        fresh = {s for n, s in slots.items() if n not in self.slots}
        self.maps.write_rule_slots({slots[r.name]: RuleSlot(r.name, layout.ACTION_CODES[r.action.value])
                                    for r in config.rules}, fresh)
        self.slots = slots
        image = tables.build_image(config, self.slots,
                                   [tables.IfaceEntry(1, default == "drop", 0)])
        self.dp.apply(image)

    def run(self, frame: bytes) -> str:
        action, _ = bpfsys.prog_test_run(self.compiled.prog_fd, frame)
        return VERDICTS[action]

    def rule(self, name: str) -> tuple[int, int]:
        return self.maps.counter("rule_stats", self.slots[name])

    def verdict_count(self, verdict: layout.Verdict) -> int:
        return self.maps.counter("iface_stats", verdict)[0]

    def close(self) -> None:
        self.maps.close()
        shutil.rmtree(self.pin_dir, ignore_errors=True)
