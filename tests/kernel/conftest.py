"""Fixtures of the kernel tests: the compiled program, and daemons in the ``netbed`` fixture's bed."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Callable, Iterator

import pytest

from tests.testbed.daemon import XdpdProcess, xdpd_factory
from tests.testbed.netbed import NetBed

if TYPE_CHECKING:
    from tests.testbed.program import LoadedProgram


@pytest.fixture(scope="session")
def prog() -> Iterator[LoadedProgram]:
    """The xdpd program, compiled once per session into its own pin dir, removed at the end."""
    # Imported here, not at the top: a conftest that cannot import would stop
    # the collection of every kernel test, not just of those using the program.
    from tests.testbed.program import LoadedProgram

    lp = LoadedProgram(f"/sys/fs/bpf/xdpdt-prog-{os.getpid()}", max_exact=200_000)
    try:
        yield lp
    finally:
        lp.close()


@pytest.fixture
def xdpd(netbed: NetBed) -> Iterator[Callable[..., XdpdProcess]]:
    """Factory ``xdpd(yaml_text, start=True)``: a daemon in ``netbed``'s victim, killed and unpinned after the test."""
    with xdpd_factory(netbed) as factory:
        yield factory
