"""What an attached XDP program costs per frame under real traffic: the kernel's BPF run-time statistics.

``BPF_ENABLE_STATS`` (``BPF_STATS_RUN_TIME``) makes the kernel time every
BPF program run (two clock reads around each) for as long as the returned
fd stays open, so the statistics end with the block or the process, whatever
happens.  ``bpftool prog show`` then reports ``run_time_ns`` and
``run_cnt``.  The clock reads cost time of their own, for every program on
the machine, so floods measured this way are not line-rate figures: they
say where the time of one frame goes, the line-rate table says how many
frames get through.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
from typing import Iterator

from xdpd import bpfsys

BPF_STATS_RUN_TIME = 0


@contextlib.contextmanager
def run_time_stats() -> Iterator[None]:
    """Kernel BPF run-time statistics on for the block (needs root; off again when the fd closes)."""
    fd = bpfsys._check(bpfsys._libbpf().bpf_enable_stats(BPF_STATS_RUN_TIME), "BPF_ENABLE_STATS")
    try:
        yield
    finally:
        os.close(fd)


def run_stats(prog_id: int) -> tuple[int, int]:
    """``(runs, nanoseconds)`` the program with ``prog_id`` accumulated while statistics were on."""
    out = subprocess.run(["bpftool", "prog", "show", "id", str(prog_id), "--json"], capture_output=True,
                         text=True, check=True).stdout
    info = json.loads(out)
    return int(info.get("run_cnt", 0)), int(info.get("run_time_ns", 0))
