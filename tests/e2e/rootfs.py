"""Debian root filesystems for the end-to-end test: a cached base, a fresh copy per run.

One base per release in :data:`SUITES` (Debian 12 "bookworm" and Debian 13
"trixie"): ``debootstrap --variant=minbase SUITE`` plus systemd and the few
tools the test drives (iproute2, ping), with apt's package lists already
fetched.  Each is built once into ``<cache>/SUITE-<key>.partial`` and only
renamed to ``<cache>/SUITE-<key>`` after every step succeeded, with a
stamp file naming the key inside: a debootstrap that died half-way is never
reused, and a change of the recipe (a new key) builds a new base of that
release only.  The host's debootstrap must know the suite: Debian 12's
(1.0.128+nmu2) and Debian 13's both have ``scripts/bookworm`` and
``scripts/trixie``, links to ``sid`` as for every Debian release.

Each run copies the base to ``/var/tmp/xdpdt-e2e-XXXX/rootfs`` and installs the
package under test with ``apt-get install ./xdpd_*.deb``, so apt resolves the
package's real dependencies, then, in an apt call of their own, the Debian
packages the test uses beside it (fail2ban): the base and its cache key stay
as they are.  Downloaded ``.deb`` files are kept in
``<cache>/archives`` (bind-mounted as the root's apt archive; one for both
releases, as a file's name carries its version), so a warm run needs no
network.  Every chroot step runs in a private mount namespace
(``unshare --mount``): its /proc, /dev and bind mounts disappear with the
process, even if the test is killed, and never show up on the host.

No pytest in here; ``tools``-style use from a shell works too::

    /usr/bin/python3 tests/e2e/rootfs.py [SUITE...]   # build (or validate) the cached bases
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import secrets
import shutil
import subprocess
import sys
import time
from typing import Callable, Iterator

CACHE_ROOT = os.environ.get("XDPD_E2E_CACHE", "/var/cache/xdpd-e2e")
RUN_PARENT = "/var/tmp"
RUN_PREFIX = "xdpdt-e2e-"
SUITES = ("bookworm", "trixie")
"""Debian 12 and Debian 13: every end-to-end test runs on each."""
MIRROR = os.environ.get("XDPD_E2E_MIRROR", "http://deb.debian.org/debian")
BASE_PACKAGES = ("systemd", "systemd-sysv", "dbus", "iproute2", "iputils-ping", "procps")
"""The same names on both releases."""
RECIPE_VERSION = 1
"""Bump when the base recipe below changes in a way the key would not see."""

STAMP = ".xdpd-e2e-base"
APT_ENV = {"DEBIAN_FRONTEND": "noninteractive", "LC_ALL": "C.UTF-8",
           "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}

Log = Callable[[str], None]


def _stderr_log(msg: str) -> None:
    print(f"[e2e {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def base_key(suite: str) -> str:
    recipe = {"v": RECIPE_VERSION, "suite": suite, "mirror": MIRROR, "packages": BASE_PACKAGES,
              "arch": os.uname().machine}
    return hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:12]


def base_dir(suite: str) -> str:
    return os.path.join(CACHE_ROOT, f"{suite}-{base_key(suite)}")


def _is_valid(path: str, suite: str) -> bool:
    try:
        with open(os.path.join(path, STAMP)) as f:
            return f.read().strip() == base_key(suite)
    except OSError:
        return False


@contextlib.contextmanager
def _locked(name: str) -> Iterator[None]:
    """An exclusive flock on ``<cache>/<name>`` (parallel runs wait, not race)."""
    os.makedirs(CACHE_ROOT, exist_ok=True)
    with open(os.path.join(CACHE_ROOT, name), "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _run(argv: list[str], what: str, timeout: float, env: dict | None = None) -> str:
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout,
                          env=env, stdin=subprocess.DEVNULL)
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).splitlines()[-40:])
        raise RuntimeError(f"{what} failed (exit {proc.returncode}): {' '.join(argv)}\n{tail}")
    return proc.stdout


def in_chroot(root: str, script: str, what: str, timeout: float = 900,
              binds: tuple[tuple[str, str], ...] = ()) -> str:
    """Run ``script`` (sh) chrooted in ``root``, with /proc, /sys, /dev and ``binds``
    (host path, path inside root) mounted in a private mount namespace only."""
    mounts = [f"mount -t proc proc {root}/proc", f"mount -t sysfs sysfs {root}/sys",
              f"mount --rbind /dev {root}/dev"]
    for host, inside in binds:
        mounts.append(f"mkdir -p {root}{inside} && mount --bind {host} {root}{inside}")
    outer = " && ".join(mounts) + f' && exec chroot {root} /bin/sh -ec "$1"'
    return _run(["unshare", "--mount", "--propagation", "private", "--", "sh", "-ec", outer, "sh", script],
                what, timeout, env=APT_ENV)


def ensure_base(suite: str, log: Log = _stderr_log) -> str:
    """The cached base root filesystem of ``suite``, built first if missing or invalid."""
    if suite not in SUITES:
        raise ValueError(f"unknown suite {suite!r}: one of {', '.join(SUITES)}")
    # One lock for every suite: the sweep below removes any half-built base.
    with _locked(".base.lock"):
        path = base_dir(suite)
        if _is_valid(path, suite):
            return path
        if shutil.which("debootstrap") is None:
            raise RuntimeError("debootstrap is missing: run make setup")
        if not os.path.exists(f"/usr/share/debootstrap/scripts/{suite}"):
            raise RuntimeError(f"this host's debootstrap does not know {suite}: install a newer "
                               "debootstrap (Debian 12's and 13's know bookworm and trixie)")
        for old in os.listdir(CACHE_ROOT):  # other keys of this suite, half-built bases
            if old.startswith(f"{suite}-") and os.path.join(CACHE_ROOT, old) != path or old.endswith(".partial"):
                log(f"removing stale cache entry {old}")
                remove_tree(os.path.join(CACHE_ROOT, old))
        remove_tree(path)
        partial = path + ".partial"
        t0 = time.monotonic()
        log(f"building the {suite} base in {partial} (first run only; needs {MIRROR})")
        # In a private mount namespace: the /proc and /sys debootstrap mounts
        # in the target vanish with it, even if it is killed half-way.
        _run(["unshare", "--mount", "--propagation", "private", "--",
              "debootstrap", "--variant=minbase", f"--include={','.join(BASE_PACKAGES)}",
              suite, partial, MIRROR], "debootstrap", timeout=1800, env=APT_ENV)
        with open(os.path.join(partial, "etc/apt/sources.list"), "w") as f:
            f.write(f"deb {MIRROR} {suite} main\n")
        shutil.copyfile("/etc/resolv.conf", os.path.join(partial, "etc/resolv.conf"))
        # No getty on the container console; the test enters with nsenter.
        in_chroot(partial, "apt-get update -q && apt-get clean && systemctl mask console-getty.service "
                           "getty@.service systemd-networkd-wait-online.service", "apt-get update (base)")
        with open(os.path.join(partial, STAMP), "w") as f:
            f.write(base_key(suite) + "\n")
        os.rename(partial, path)
        log(f"{suite} base ready in {time.monotonic() - t0:.0f} s: {path}")
        return path


def _mounts_under(path: str) -> list[str]:
    prefix = os.path.realpath(path).rstrip("/") + "/"
    found = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            point = line.split()[4].replace("\\040", " ")
            if point == prefix.rstrip("/") or point.startswith(prefix):
                found.append(point)
    return found


class RunRoot:
    """A fresh copy of a release's base: ``/var/tmp/xdpdt-e2e-XXXX/rootfs``; :meth:`remove` always.

    ``/var/tmp/xdpdt-e2e-XXXX/owner`` records this process (pid and start
    time), so :func:`stale_run_dirs` can tell the leftovers of a killed run from
    a run still going on.
    """

    def __init__(self, suite: str, log: Log = _stderr_log, owns: tuple[str, ...] = ()) -> None:
        """``suite``: one of :data:`SUITES`; ``owns``: host paths this run creates and a sweep
        may remove if the run is killed."""
        self.suite = suite
        self.log = log
        base = ensure_base(suite, log)
        # The name is also the container's machine name: hex only (mkdtemp's
        # suffix may hold "_", which machine names may not).
        while True:
            self.name = RUN_PREFIX + secrets.token_hex(4)
            self.dir = os.path.join(RUN_PARENT, self.name)
            try:
                os.mkdir(self.dir, 0o700)
                break
            except FileExistsError:
                continue
        self.path = os.path.join(self.dir, "rootfs")
        with open(os.path.join(self.dir, "owner"), "w") as f:
            json.dump({"pid": os.getpid(), "start": _start_time(os.getpid()), "owns": list(owns)}, f)
        t0 = time.monotonic()
        try:
            _run(["cp", "-a", "--reflink=auto", base, self.path], "copying the base", timeout=600)
        except BaseException:
            remove_tree(self.dir)
            raise
        self.log(f"copied the {suite} base to {self.path} in {time.monotonic() - t0:.1f} s")

    def install_deb(self, deb: str) -> str:
        """``apt-get install ./xdpd_*.deb`` in the root, services not started; returns apt's output."""
        inside = "/root/" + os.path.basename(deb)
        shutil.copyfile(deb, self.path + inside)
        t0 = time.monotonic()
        try:
            out = self._apt_install(inside, "apt-get install ./xdpd.deb")
        finally:
            os.unlink(self.path + inside)
        self.log(f"installed {os.path.basename(deb)} with its dependencies in {time.monotonic() - t0:.0f} s")
        return out

    def install_packages(self, packages: tuple[str, ...], then: str = "") -> str:
        """``apt-get install PACKAGES`` from Debian, services not started, then the shell
        command ``then`` in the root; returns apt's output.

        Its own apt call, after the package under test: that one must get
        every dependency from its own ``Depends``, not from these.
        """
        t0 = time.monotonic()
        out = self._apt_install(" ".join(packages), f"apt-get install {' '.join(packages)}", then)
        self.log(f"installed {', '.join(packages)} in {time.monotonic() - t0:.0f} s")
        return out

    def _apt_install(self, what: str, title: str, then: str = "") -> str:
        archives = os.path.join(CACHE_ROOT, "archives")
        os.makedirs(os.path.join(archives, "partial"), exist_ok=True)
        policy = os.path.join(self.path, "usr/sbin/policy-rc.d")
        with open(policy, "w") as f:
            f.write("#!/bin/sh\n# xdpd e2e: no service starts inside the install chroot\nexit 101\n")
        os.chmod(policy, 0o755)
        # Without recommends: the kernel headers the package recommends come
        # from the host (bound into the container), as they must match the
        # host's kernel anyway.  If the cached package lists went stale (a
        # point release replaced a package), refresh them once.
        install = f"apt-get install -y -q --no-install-recommends -o APT::Sandbox::User=root {what}"
        script = f"{install} || (apt-get update -q && {install})"
        if then:
            script += f"\n{then}"
        try:
            with _locked(".archives.lock"):
                return in_chroot(self.path, script, title, binds=((archives, "/var/cache/apt/archives"),))
        finally:
            os.unlink(policy)

    def remove(self) -> None:
        """Delete the copy; refuses (loudly) while anything is still mounted inside it."""
        remove_tree(self.dir)


def _start_time(pid: int) -> str | None:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def remove_tree(path: str) -> None:
    """``rm -rf path``, refused (loudly) while anything is mounted inside it."""
    if not os.path.lexists(path):
        return
    busy = _mounts_under(path)
    if busy:
        raise RuntimeError(f"not removing {path}: still mounted: {busy}")
    # rm is many times faster than shutil.rmtree on a root filesystem's
    # tens of thousands of files; --one-file-system as a second guard.
    _run(["rm", "-rf", "--one-file-system", "--", path], f"removing {path}", timeout=600)


def owner_alive(run_dir: str) -> bool:
    """Whether the process that made ``run_dir`` still runs (unknown owner counts as alive)."""
    try:
        with open(os.path.join(run_dir, "owner")) as f:
            owner = json.load(f)
    except FileNotFoundError:
        # Between mkdir and writing the file: only a run that is going on.
        return time.time() - os.stat(run_dir).st_mtime < 60
    except (OSError, ValueError):
        return True
    return owner.get("start") is not None and _start_time(owner.get("pid", 0)) == owner["start"]


def owned_paths(run_dir: str) -> list[str]:
    """The host paths a (stale) run recorded as its own."""
    try:
        with open(os.path.join(run_dir, "owner")) as f:
            return [str(p) for p in json.load(f).get("owns", [])]
    except (OSError, ValueError, AttributeError):
        return []


def stale_run_dirs() -> list[str]:
    return sorted(os.path.join(RUN_PARENT, d) for d in os.listdir(RUN_PARENT)
                  if d.startswith(RUN_PREFIX) and os.path.isdir(os.path.join(RUN_PARENT, d))
                  and not owner_alive(os.path.join(RUN_PARENT, d)))


if __name__ == "__main__":
    for name in sys.argv[1:] or SUITES:
        print(ensure_base(name))
