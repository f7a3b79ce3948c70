"""Fixtures of the end-to-end test: the .deb, and a booted container with it installed.

Everything here fails (never skips) when a prerequisite is missing: the end
to end test is part of ``make test``, and ``make setup`` installs its tools.

What is left behind, whatever happens: nothing.  The container is powered
off, its root filesystem removed, and ``/sys/fs/bpf/xdpd`` (the host's: the
container shares the bpf filesystem) removed, but only because the fixture
checked it did not exist before, holding ``/run/xdpdt-e2e.lock`` so that no
other end-to-end run can interleave.  If the test process is killed
(SIGKILL, no finalizers), the next run stops that run's container, removes
its root filesystem and, if no ``xdpd run`` on the host uses the default pin
dir, its pins.
"""

from __future__ import annotations

import fcntl
import glob
import os
import shutil
import subprocess
import sys
import time
from typing import Iterator

import pytest

from tests.e2e import fail2ban
from tests.e2e import machine as machine_mod
from tests.e2e import rootfs
from tests.e2e.scenario import HOST_PIN_DIR, Scenario

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
LOCK_PATH = "/run/xdpdt-e2e.lock"
TOOLS = ("debootstrap", "systemd-nspawn", "nsenter", "unshare", "dpkg-buildpackage", "make")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "e2e: the .deb under a real systemd in a container (root)")


def log(msg: str) -> None:
    sys.stderr.write(f"[e2e {time.strftime('%H:%M:%S')}] {msg}\n")
    sys.stderr.flush()


def _require_host() -> None:
    if os.geteuid() != 0:
        pytest.fail("the end-to-end test needs root (run: sudo make test)", pytrace=False)
    missing = [t for t in TOOLS if shutil.which(t, path="/usr/sbin:/usr/bin:/sbin:/bin") is None]
    if missing:
        pytest.fail(f"the end-to-end test needs {', '.join(missing)}: run make setup", pytrace=False)
    if not os.path.ismount("/sys/fs/bpf"):
        pytest.fail("no bpf filesystem at /sys/fs/bpf: run make setup", pytrace=False)


def default_pin_users() -> list[int]:
    """Host processes running ``xdpd run`` with the default pin dir."""
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                args = [a.decode(errors="replace") for a in f.read().split(b"\0") if a]
        except OSError:
            continue
        if "run" not in args or not any("xdpd" in a for a in args):
            continue
        pin = next((args[i + 1] for i, a in enumerate(args[:-1]) if a == "--pin-dir"), HOST_PIN_DIR)
        if os.path.normpath(pin) == HOST_PIN_DIR:
            pids.append(int(entry))
    return pids


@pytest.fixture(scope="session")
def deb() -> str:
    """``make deb`` from this tree: the path of dist/xdpd_<version>_all.deb."""
    _require_host()
    t0 = time.monotonic()
    r = subprocess.run(["make", "-s", "-C", REPO_ROOT, "deb"], capture_output=True, text=True, timeout=900)
    if r.returncode != 0:
        pytest.fail(f"make deb failed:\n{r.stdout}\n{r.stderr}", pytrace=False)
    debs = glob.glob(os.path.join(REPO_ROOT, "dist", "xdpd_*_all.deb"))
    assert len(debs) == 1, f"make deb should leave exactly one .deb in dist/: {debs}"
    log(f"make deb: {os.path.basename(debs[0])} in {time.monotonic() - t0:.0f} s")
    return debs[0]


@pytest.fixture(scope="module", params=rootfs.SUITES)
def machine(request, deb) -> Iterator[machine_mod.Machine]:
    """A booted container of each release in :data:`rootfs.SUITES` (every test runs on
    each: ``test_x[bookworm]``, ``test_x[trixie]``; ``-k trixie`` picks one), with the .deb
    installed by apt; torn down whatever happens, before the next release's boots."""
    suite = request.param
    lock = open(LOCK_PATH, "w")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        lock.close()
        pytest.fail(f"another end-to-end run holds {LOCK_PATH}: it shares /sys/fs/bpf/xdpd", pytrace=False)
    root = box = None
    pins_ours = False
    try:
        for stale in rootfs.stale_run_dirs():
            log(f"removing {stale}, left by a run that was killed")
            machine_mod.stop_stale_container(stale)
            if HOST_PIN_DIR in rootfs.owned_paths(stale) and os.path.lexists(HOST_PIN_DIR) \
                    and not default_pin_users():
                log(f"removing {HOST_PIN_DIR}, pinned by that run's container")
                shutil.rmtree(HOST_PIN_DIR)
            rootfs.remove_tree(stale)
        if os.path.lexists(HOST_PIN_DIR):
            pytest.fail(f"{HOST_PIN_DIR} exists on this host (an xdpd is running here, or a killed "
                        "end-to-end run left it). The container would share it: refusing. If no xdpd "
                        f"runs on this host, remove it: rm -rf {HOST_PIN_DIR}", pytrace=False)
        pins_ours = True  # absent now, and we hold the lock: whatever appears there is the container's
        t0 = time.monotonic()
        root = rootfs.RunRoot(suite, log, owns=(HOST_PIN_DIR,))
        root.install_deb(deb)
        # curl: the metrics are scraped with it (test_metrics_over_http_and_in_the_textfile).
        root.install_packages(fail2ban.PACKAGES + ("curl",), then=fail2ban.INSTALL_THEN)
        box = machine_mod.Machine(root, log)
        box.boot()
        log(f"{suite} container ready {time.monotonic() - t0:.0f} s after the root file system was requested")
        yield box
    finally:
        try:
            if box is not None:
                box.shutdown()
        finally:
            if pins_ours and os.path.lexists(HOST_PIN_DIR):
                shutil.rmtree(HOST_PIN_DIR)
            if root is not None:
                t0 = time.monotonic()
                root.remove()
                log(f"removed {root.dir} in {time.monotonic() - t0:.1f} s")
                propagate = os.path.join("/run/systemd/nspawn/propagate", root.name)
                if os.path.isdir(propagate):
                    shutil.rmtree(propagate, ignore_errors=True)
            fcntl.flock(lock, fcntl.LOCK_UN)
            lock.close()


@pytest.fixture(scope="module")
def sc(machine) -> Scenario:
    return Scenario(machine)
