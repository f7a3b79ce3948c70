"""A loaded xdpd program driven by BPF_PROG_TEST_RUN, for frame-level tests.

``tests/kernel/conftest.py`` compiles it once per session (the ``prog``
fixture) into its own pin directory.  Each test loads a rule set (YAML,
parsed by the real config loader) into the banks and runs crafted frames
through the kernel's verifier-checked program: no interface is involved.
BPF_PROG_TEST_RUN reports ingress ifindex 1, so the image enables ifindex 1
-- a map entry in the test's own maps, nothing is attached to any device.

The entry is built by the daemon's own :func:`xdpd.tables.iface_entries`:
for a YAML with an ``interfaces:`` section, ``load(..., iface="eth0")``
makes ifindex 1 play ``eth0`` (its default, observe mode and the rules
scoped to it); without one, a stand-in interface with ``default`` carries
every rule.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import textwrap

from xdpd import bpfsys, layout, pins, tables
from xdpd.bans import BanTable
from xdpd.compiler import BuildParams, compile_program
from xdpd.config import parse_config_text
from xdpd.datapath import Datapath
from xdpd.maps import PinnedMaps
from xdpd.model import Config, Default, Interface
from xdpd.observed import RuleSlot
from xdpd.plan import assign_slots

XDP_DROP, XDP_PASS = 1, 2
VERDICTS = {XDP_DROP: "drop", XDP_PASS: "pass"}


class LoadedProgram:
    """The compiled program, its maps and rule slots: load a rule set, run frames, read counters."""

    def __init__(self, pin_dir: str, max_exact: int = 200_000, params: BuildParams | None = None) -> None:
        os.makedirs(pin_dir, exist_ok=True)
        self.pin_dir = pin_dir
        self.params = params or BuildParams(max_exact=max_exact)
        self.compiled = compile_program(pin_dir, self.params)
        self.maps = PinnedMaps(self.compiled.maps_dir)
        self.dp = Datapath(self.maps)
        self.slots: dict[str, int] = {}

    def load(self, yaml_text: str, default: str = "pass", iface: str | None = None) -> None:
        """Write the rule set of ``yaml_text`` into the banks, enabled on ifindex 1 as ``iface``.

        ``iface`` names an interface of the YAML's ``interfaces:`` section
        (its own default and observe apply, ``default`` must stay "pass");
        without it the YAML must configure no interface and ifindex 1 is a
        stand-in with ``default``.
        """
        config = _as_ifindex_1(parse_config_text(textwrap.dedent(yaml_text), "test.yaml"), default, iface)
        names = [r.name for r in config.rules]
        retired = {s for n, s in self.slots.items() if n not in names}
        slots = assign_slots(names, self.slots, retired, layout.MAX_RULE_SLOTS)
        fresh = {s for n, s in slots.items() if n not in self.slots}
        self.maps.write_rule_slots({slots[r.name]: RuleSlot(r.name, layout.ACTION_CODES[r.action.value])
                                    for r in config.rules}, fresh)
        self.slots = slots
        name = config.interfaces[0].name if iface is None else iface
        image = tables.build_image(config, self.slots, tables.iface_entries(config, {name: 1}, {name: 0}))
        self.dp.apply(image)

    def run(self, frame: bytes) -> str:
        action, _ = bpfsys.prog_test_run(self.compiled.prog_fd, frame)
        return VERDICTS[action]

    def check(self, cases: list[tuple[str, bytes, str]]) -> None:
        """Run every ``(what, frame, expected verdict)``; report all mismatches at once."""
        wrong = [(what, want, got) for what, f, want in cases if (got := self.run(f)) != want]
        assert not wrong, "\n".join(f"{what}: expected {want}, got {got}" for what, want, got in wrong)

    def rule(self, name: str) -> tuple[int, int]:
        return self.maps.counter("rule_stats", self.slots[name])

    def verdict_count(self, verdict: layout.Verdict) -> int:
        return self.maps.counter("iface_stats", verdict)[0]

    def limited(self, name: str) -> tuple[int, int]:
        """(packets, bytes) the limit rule ``name`` dropped over its rate."""
        return self.maps.counter("limit_stats", self.slots[name])

    def runs(self, frame: bytes, n: int) -> list[str]:
        """The verdicts of ``n`` runs of ``frame``, one program run each, back to back."""
        return [self.run(frame) for _ in range(n)]

    def ban_table(self) -> BanTable:
        """The program's ban table (the caller closes it), armed through this program's state."""
        return BanTable(pins.bans_dir(self.pin_dir, self.params.max_bans), self.maps["state"])

    def close(self) -> None:
        self.maps.close()
        shutil.rmtree(self.pin_dir, ignore_errors=True)


STAND_IN = "xdpdt-test"
"""The interface ifindex 1 plays when a test's YAML configures none."""


def _as_ifindex_1(config: Config, default: str, iface: str | None) -> Config:
    if iface is None:
        if config.interfaces:
            raise ValueError("the YAML configures interfaces: say which one ifindex 1 is (iface=...)")
        return dataclasses.replace(config, interfaces=(Interface(STAND_IN, default=Default(default)),))
    if default != "pass":
        raise ValueError("with iface=..., the interface's default comes from the YAML")
    if config.interface(iface) is None:
        raise ValueError(f"{iface!r} is not configured in the YAML")
    return config
