"""Shared pytest setup: the ``kernel`` marker, the ``netbed`` fixture, and a
session-start sweep of test-bed namespaces left behind by crashed runs."""

from __future__ import annotations

import os
import shutil
import sys
from typing import Iterator

import pytest

from tests.testbed.netbed import NetBed


def _kernel_unavailable() -> str | None:
    """Why kernel tests cannot run here, or None if they can."""
    if os.geteuid() != 0:
        return "kernel tests need root"
    if shutil.which("ip") is None:
        return "kernel tests need iproute2 (ip)"
    return None


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "kernel: needs root and a real kernel (network namespaces, veth, BPF/XDP)",
    )


def pytest_sessionstart(session: pytest.Session) -> None:
    """Remove ``xdpdt-*`` namespaces whose creating process is dead (crashed earlier runs)."""
    if _kernel_unavailable():
        return
    try:
        removed = NetBed.sweep_stale()
    except Exception as exc:  # a failed sweep must not stop unit tests
        sys.stderr.write(f"warning: stale test-bed sweep failed: {exc}\n")
        return
    if removed:
        sys.stderr.write(f"removed stale test namespaces: {' '.join(removed)}\n")


def pytest_runtest_setup(item: pytest.Item) -> None:
    # Kernel tests are the point of `make test`: a machine that cannot run
    # them fails loudly rather than passing on skipped tests.
    if item.get_closest_marker("kernel") is not None:
        reason = _kernel_unavailable()
        if reason:
            pytest.fail(f"{reason} (run: sudo make test)", pytrace=False)


@pytest.fixture
def netbed() -> Iterator[NetBed]:
    """A fresh two-namespace bed (sender/victim), destroyed after the test even if it fails."""
    reason = _kernel_unavailable()
    if reason:
        pytest.fail(f"{reason} (run: sudo make test)", pytrace=False)
    bed = NetBed.create()
    try:
        yield bed
    finally:
        bed.destroy()
