"""Network namespace primitives every part of the test bed (and the benchmarks) shares.

Named namespaces live in ``/run/netns`` (``ip netns add``).  This module
enters them per thread (``setns(2)`` changes only the calling thread), runs
``ip`` inside them, builds ``nsenter`` command lines, and keeps the owner
files that let a sweep tell a crashed run's namespaces from a live run's.

Owner files: before a test bed's namespaces are created, ``/run/xdpdt/<tag>.owner``
records the creating process (pid and start time, so a recycled pid is not
mistaken for the owner).  A missing or unreadable owner file means "not
ours", never "dead".
"""

from __future__ import annotations

import ctypes
import os
import socket
import subprocess
import threading
from typing import Any, Callable, Sequence, TypeVar

CLONE_NEWNET = 0x40000000
NETNS_RUN_DIR = "/run/netns"
OWNER_DIR = "/run/xdpdt"

_libc = ctypes.CDLL(None, use_errno=True)

T = TypeVar("T")


def ip(args: Sequence[str], input: str | None = None, check: bool = True) -> subprocess.CompletedProcess:
    """Run ``ip ARGS``; raise with ip's stderr on failure (when ``check``)."""
    proc = subprocess.run(["ip", *args], input=input, capture_output=True, text=True, timeout=30)
    if check and proc.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)} failed ({proc.returncode}): {proc.stderr.strip()}")
    return proc


def list_netns() -> list[str]:
    """Names of all named network namespaces (``ip netns list`` without the ids)."""
    try:
        return sorted(os.listdir(NETNS_RUN_DIR))
    except FileNotFoundError:
        return []


def in_netns(ns: str, argv: list[str]) -> list[str]:
    """``argv`` run in network namespace ``ns`` only.

    ``nsenter --net``, not ``ip netns exec``: the latter remounts /sys, which
    hides the bpf filesystem pin directories live on; here mounts, including
    /sys/fs/bpf, stay the host's.
    """
    return ["nsenter", f"--net={NETNS_RUN_DIR}/{ns}", *argv]


def setns_current_thread(ns: str) -> None:
    """Move the *calling thread* into network namespace ``ns`` (setns(2) is per thread)."""
    fd = os.open(os.path.join(NETNS_RUN_DIR, ns), os.O_RDONLY | os.O_CLOEXEC)
    try:
        if _libc.setns(fd, CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"setns({ns}): {os.strerror(err)}")
    finally:
        os.close(fd)


def call_in_netns(ns: str, fn: Callable[[], T], name: str | None = None) -> T:
    """``fn()`` run by a throw-away thread inside network namespace ``ns``; its result or its exception.

    setns(2) moves only the calling thread, and for good, so a thread of
    its own enters the namespace and ends with ``fn``; the calling thread
    stays where it is.  What ``fn`` creates there keeps its namespace: a
    socket for its whole life, an ifindex it resolves (``ifindex`` arguments
    of BPF_PROG_TEST_RUN and netlink calls are looked up in the namespace of
    the thread making the call).
    """
    result: dict[str, Any] = {}

    def worker() -> None:
        try:
            setns_current_thread(ns)
            result["value"] = fn()
        except BaseException as exc:  # re-raised in the caller's thread
            result["error"] = exc

    thread = threading.Thread(target=worker, name=name or f"in-netns-{ns}", daemon=True)
    thread.start()
    thread.join()
    if "error" in result:
        raise result["error"]
    return result["value"]


def ns_socket(ns: str, family: int, type: int, proto: int = 0) -> socket.socket:
    """Create a socket that lives in network namespace ``ns``.

    A socket belongs to the namespace of the thread that created it, for its
    whole life (see :func:`call_in_netns`).  The returned socket can be used
    from any thread.
    """
    return call_in_netns(ns, lambda: socket.socket(family, type, proto), name=f"ns-socket-{ns}")


# --------------------------------------------------------------------------- owner files


def owner_path(tag: str) -> str:
    """The owner file of the namespaces named ``<tag>-...``."""
    return os.path.join(OWNER_DIR, f"{tag}.owner")


def process_start_time(pid: int) -> str | None:
    """Start time of ``pid`` (field 22 of /proc/PID/stat), or None if it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
    except (FileNotFoundError, ProcessLookupError):
        return None
    return stat.rsplit(")", 1)[1].split()[19]


def owner_is_dead(owner_file: str) -> bool:
    """True only if ``owner_file`` names a process that provably no longer runs.

    A missing or unreadable owner file means "not ours / unknown", never
    "dead": namespaces other people create with the shared ``xdpdt-``
    prefix have no owner file and must survive a sweep.
    """
    try:
        with open(owner_file) as f:
            pid_text, start = f.read().split()
        pid = int(pid_text)
    except (OSError, ValueError):
        return False
    return process_start_time(pid) != start


def write_owner_file(path: str) -> bool:
    """Atomically create ``path`` holding this process's pid and start time.

    Written to a temporary file and hard-linked into place, so the file
    never exists half-written, and link() fails if the tag is taken.
    Returns False if ``path`` already exists.
    """
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = f"{path}.{os.getpid()}.{threading.get_ident()}.tmp"
    with open(tmp, "w") as f:
        f.write(f"{os.getpid()} {process_start_time(os.getpid())}\n")
    try:
        os.link(tmp, path)
        return True
    except FileExistsError:
        return False
    finally:
        os.unlink(tmp)
