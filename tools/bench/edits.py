"""List edits for the daemon benchmark: which lines change, and how long until packets show the change.

An edit renames a new version of the list over it (as an editor saves);
:func:`run_edit` then times it from real packets: the probe sends a
datagram from the target source, each followed at once by one from a
control source that is never listed, so the edit is enforced between the
last target datagram that passed and the control datagram sent right after
the first one that was dropped (or the other way round when the edit
removes the target): an upper bound, at most one probe interval late.
"""

from __future__ import annotations

import os
import random
import re
import time
from dataclasses import dataclass

from tests.testbed.probe import UdpProbe
from tools.bench.daemonrun import RELOAD_TIMEOUT, BenchDaemon, wait_quiet
from tools.bench.listfiles import CONTROL_SRC, SEED, TARGET_SRC, AddressList


@dataclass
class Edit:
    label: str
    lines_changed: int
    expect: str | None                # "drop": the target gets listed; "pass": unlisted; None: no change
    renamed_at: float = 0.0
    reloading: float | None = None    # seconds after the rename
    ready: float | None = None
    packet_lo: float | None = None    # the change took effect in (packet_lo, packet_hi]
    packet_hi: float | None = None
    daemon_ms: int | None = None
    problem: str = ""
    target_lost: int = 0
    """Datagrams of the target source dropped from the rename until the end of the measurement."""

    @property
    def enforced(self) -> float | None:
        """Seconds from the rename to the change being enforced (packet evidence, else READY=1)."""
        return self.packet_hi if self.expect else self.ready


def _arrivals(probe: UdpProbe, src: str) -> list[tuple[int, float]]:
    return sorted(list(probe.arrivals[src]))


def _first_arrival_from(arrivals: list[tuple[int, float]], seq: int) -> float | None:
    for s, t in arrivals:
        if s >= seq:
            return t
    return None


def run_edit(d: BenchDaemon, probe: UdpProbe, path: str, text: str, edit: Edit, interval: float) -> Edit:
    """Rename ``text`` over the list; measure until the change shows in packets and READY=1."""
    tmp = os.path.join(os.path.dirname(path), f".{os.path.basename(path)}.new")
    with open(tmp, "w") as f:
        f.write(text)
    d.drain_messages()
    if not probe.wait_received(CONTROL_SRC, 3, timeout=2.0):
        raise RuntimeError(f"probe stream stopped before an edit: {probe.summary()}")
    before = probe.sent[TARGET_SRC]
    t0 = time.monotonic()
    os.rename(tmp, path)
    edit.renamed_at = t0
    t_rel, _ = d.next_note(lambda m: "RELOADING=1" in m.splitlines(), RELOAD_TIMEOUT, edit.label)
    t_ready, msg = d.next_note(lambda m: "READY=1" in m.splitlines(), RELOAD_TIMEOUT, edit.label)
    edit.reloading, edit.ready = t_rel - t0, t_ready - t0
    if "reload rejected" in msg or "reload failed" in msg:
        edit.problem = msg.replace("\n", " ")
    wait_quiet(d.proc.pid, quiet=0.2)      # the second bank is written too
    probe.wait_sent(TARGET_SRC, max(10, int(0.1 / interval)))  # packets well after the switch
    probe.wait_received(CONTROL_SRC, 1, timeout=1.0)
    for line in reversed(d.log_since(t0)):
        m = re.search(r"reload_applied .*\bms=(\d+)", line)
        if m:
            edit.daemon_ms = int(m.group(1))
            break

    target, control = _arrivals(probe, TARGET_SRC), _arrivals(probe, CONTROL_SRC)
    after = [(s, t) for s, t in target if s >= before]
    # The last few datagrams sent may still be on their way: not counted.
    upto = probe.sent[TARGET_SRC] - 3
    edit.target_lost = max(0, upto - before) - len({s for s, _ in after if s < upto})
    if edit.expect == "drop":
        if not target or target[-1][1] > t_ready + 0.05:
            edit.problem = edit.problem or "the added source still gets through"
        else:
            last_seq, last_t = target[-1]
            first_dropped_next = _first_arrival_from(control, last_seq + 1)
            edit.packet_lo = last_t - t0
            edit.packet_hi = (first_dropped_next - t0) if first_dropped_next else None
            if last_t < t0 - 2 * interval:
                edit.problem = "the added source was dropped before the edit"
    elif edit.expect == "pass":
        if not after:
            edit.problem = edit.problem or "the removed source is still dropped"
        else:
            first_seq, first_t = after[0]
            prev_ctrl = _first_arrival_from(control, first_seq - 1)
            edit.packet_hi = first_t - t0
            edit.packet_lo = (prev_ctrl - t0) if prev_ctrl is not None and first_seq > before else None
    return edit


def edits_plan(alist: AddressList, n_one: int, n_hundred: int, n_touch: int) -> list[tuple[Edit, dict[int, str]]]:
    """The edits in order, each with the lines that differ from ``alist`` in the text it renames into place.

    One-line edits replace one line with the target (then put it back);
    100-line edits replace 100 lines spread over the file, one of them with
    the target (then put them all back); the list starts and ends as made.
    """
    rng = random.Random(SEED + 1)
    n = len(alist.lines)
    base: dict[int, str] = {}
    out: list[tuple[Edit, dict[int, str]]] = []
    for i in range(n_one):
        if i % 2 == 0:
            pos = rng.randrange(n)
            out.append((Edit(f"1 line: add {TARGET_SRC} at line {pos + 1:,}", 1, "drop"),
                        {pos: TARGET_SRC}))
        else:
            out.append((Edit(f"1 line: remove it again (line {pos + 1:,})", 1, "pass"), base))
    if n_one % 2:
        out.append((Edit(f"1 line: remove it again (line {pos + 1:,}), not counted", 1, "pass"), base))
    spare = iter(alist.spare_v4)
    for i in range(n_hundred):
        if i % 2 == 0:
            positions = sorted(rng.sample(range(n), 100))
            replace = {p: next(spare) for p in positions}
            replace[positions[50]] = TARGET_SRC
            out.append((Edit(f"100 lines (lines {positions[0] + 1:,} to {positions[-1] + 1:,}), "
                             f"adding {TARGET_SRC}", 100, "drop"), replace))
        else:
            out.append((Edit("100 lines: put back", 100, "pass"), base))
    if n_hundred % 2:
        out.append((Edit("100 lines: put back, not counted", 100, "pass"), base))
    for _ in range(n_touch):
        out.append((Edit("unchanged: identical copy renamed over the list", 0, None), base))
    return out
