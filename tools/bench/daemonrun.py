"""Running the real daemon for the daemon benchmark: a time-stamped ``xdpd run``, and what /proc says about it.

:class:`BenchDaemon` is the test bed's :class:`tests.testbed.daemon.XdpdProcess`
(``nsenter`` into the victim namespace, pin dir ``/sys/fs/bpf/xdpdt-*``,
config dir and runtime dir in temporary directories, all removed on close)
with every log line and sd_notify datagram kept with its arrival time.  The
/proc readers tell when the daemon is idle, what it watches, how much
memory it holds and when its compiler child ran.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path
from typing import Callable

from tests.testbed.daemon import REPO_ROOT, DaemonFailed, XdpdProcess
from tests.testbed.netbed import NetBed

READY_TIMEOUT = 120.0
RELOAD_TIMEOUT = 30.0


class BenchDaemon(XdpdProcess):
    """:class:`XdpdProcess` with its own ``--runtime-dir``, and its output and sd_notify datagrams time-stamped.

    stderr goes through a pipe so each log line gets the ``time.monotonic()``
    of its arrival (the daemon's own timestamps are whole seconds); every
    sd_notify datagram is kept with its arrival time in :attr:`notes`.
    """

    def __init__(self, bed: NetBed, config: str, runtime_dir: str) -> None:
        super().__init__(bed, config)
        self.runtime_dir = runtime_dir
        self.lines: list[tuple[float, str]] = []
        self.notes: list[tuple[float, str]] = []
        self.spawned_at = 0.0
        self._reader: threading.Thread | None = None

    def start(self, wait: bool = False) -> "BenchDaemon":
        self.starts += 1
        self.spawned_at = time.monotonic()
        self.proc = subprocess.Popen(self.command(), cwd=REPO_ROOT, env=self.environment(), stdin=subprocess.DEVNULL,
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        self._reader = threading.Thread(target=self._read_output, name="xdpd-output", daemon=True)
        self._reader.start()
        if wait:
            self.next_note(lambda m: "READY=1" in m.splitlines(), READY_TIMEOUT, "start")
        return self

    def _read_output(self) -> None:
        for raw in self.proc.stdout:
            self.lines.append((time.monotonic(), raw.decode(errors="replace").rstrip("\n")))

    def next_note(self, match: Callable[[str], bool], timeout: float, what: str) -> tuple[float, str]:
        """Wait for the next sd_notify datagram ``match(msg)`` accepts; return (arrival time, msg)."""
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise DaemonFailed(f"no matching sd_notify message within {timeout:.0f} s ({what}); "
                                   f"got {[m for _, m in self.notes[-3:]]}", self.proc.poll(), self.stderr())
            self.notify.settimeout(min(remaining, 0.2))
            try:
                msg = self.notify.recv(65536).decode(errors="replace")
            except socket.timeout:
                if self.proc.poll() is not None:
                    raise DaemonFailed(f"xdpd exited ({what})", self.proc.returncode, self.stderr()) from None
                continue
            self.keep_message(msg)
            if match(msg):
                return self.notes[-1]

    def keep_message(self, msg: str) -> None:
        """Record the datagram with its arrival time in :attr:`notes` too."""
        self.notes.append((time.monotonic(), msg))
        super().keep_message(msg)

    def log_since(self, t: float) -> list[str]:
        return [line for at, line in list(self.lines) if at >= t]

    def timed_log_since(self, t: float) -> list[tuple[float, str]]:
        """(arrival time, line) of every log line that arrived at ``t`` or later."""
        return [(at, line) for at, line in list(self.lines) if at >= t]

    def stderr(self) -> str:
        return "\n".join(line for _, line in list(self.lines))

    stderr_since_start = stderr

    def close(self) -> None:
        # A compiler child outliving the daemon would pin into the removed pin dir again.
        if self.proc is not None and self.proc.poll() is None:
            for pid in _compiler_children(self.proc.pid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        super().close()
        shutil.rmtree(self.pin_dir, ignore_errors=True)
        if self._reader is not None:
            self._reader.join(5)
        if self.proc is not None and self.proc.stdout is not None:
            self.proc.stdout.close()


# --------------------------------------------------------------- /proc


def _compiler_children(pid: int) -> list[int]:
    """Pids of ``pid``'s ``python3 -m xdpd.compiler`` children."""
    out = []
    with contextlib.suppress(OSError):
        for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split():
            with contextlib.suppress(OSError):
                if b"xdpd.compiler" in Path(f"/proc/{child}/cmdline").read_bytes():
                    out.append(int(child))
    return out


def proc_status(pid: int) -> dict[str, int]:
    """VmRSS, VmHWM, ... of ``pid`` in bytes."""
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key.startswith("Vm") and value.strip().endswith("kB"):
            out[key] = int(value.split()[0]) * 1024
    return out


def cpu_ticks(pid: int) -> int:
    """utime + stime of the whole process (all threads), in clock ticks."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def wait_quiet(pid: int, quiet: float = 0.3, timeout: float = 60.0) -> float:
    """Wait until ``pid`` used no CPU for ``quiet`` seconds; return when that quiet stretch began."""
    deadline = time.monotonic() + timeout
    last, since = cpu_ticks(pid), time.monotonic()
    while time.monotonic() < deadline:
        time.sleep(0.02)
        now, ticks = time.monotonic(), cpu_ticks(pid)
        if ticks != last:
            last, since = ticks, now
        elif now - since >= quiet:
            return since
    raise RuntimeError(f"xdpd (pid {pid}) kept using CPU for {timeout:.0f} s")


def inotify_watches(pid: int) -> set[int]:
    """Inode numbers ``pid``'s inotify instances watch."""
    inodes: set[int] = set()
    fd_dir = f"/proc/{pid}/fd"
    for fd in os.listdir(fd_dir):
        with contextlib.suppress(OSError):
            if os.readlink(f"{fd_dir}/{fd}") != "anon_inode:inotify":
                continue
            for line in Path(f"/proc/{pid}/fdinfo/{fd}").read_text().splitlines():
                m = re.search(r"\bino:([0-9a-f]+)", line)
                if line.startswith("inotify") and m:
                    inodes.add(int(m.group(1), 16))
    return inodes


def wait_watching(d: BenchDaemon, path: str, timeout: float = 60.0) -> float:
    """Wait until the daemon has an inotify watch on ``path``'s directory; return when seen."""
    ino = os.stat(os.path.dirname(path)).st_ino
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if d.proc.poll() is not None:
            raise DaemonFailed("xdpd exited after READY=1", d.proc.returncode, d.stderr())
        if ino in inotify_watches(d.proc.pid):
            return time.monotonic()
        time.sleep(0.01)
    raise RuntimeError(f"xdpd did not watch {os.path.dirname(path)} within {timeout:.0f} s of READY=1")


class ChildWatch:
    """Records the daemon's child processes (the compiler) with when they were first and last seen."""

    def __init__(self, pid: int, period: float = 0.005) -> None:
        self.pid, self.period = pid, period
        self.children: dict[int, list] = {}     # pid -> [first seen, last seen, cmdline]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="child-watch", daemon=True)

    def start(self) -> "ChildWatch":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)

    def _run(self) -> None:
        path = f"/proc/{self.pid}/task/{self.pid}/children"
        while not self._stop.is_set():
            try:
                pids = [int(p) for p in Path(path).read_text().split()]
            except (OSError, ValueError):
                return
            now = time.monotonic()
            for p in pids:
                entry = self.children.get(p)
                if entry is None:
                    cmd = ""
                    with contextlib.suppress(OSError):
                        cmd = Path(f"/proc/{p}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
                    self.children[p] = [now, now, cmd]
                else:
                    entry[1] = now
            self._stop.wait(self.period)

    def compiler(self) -> tuple[float, float] | None:
        """(first seen, last seen) of the ``xdpd.compiler`` child, if one was seen."""
        for first, last, cmd in self.children.values():
            if "xdpd.compiler" in cmd:
                return first, last
        return None
