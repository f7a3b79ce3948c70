"""A booted Debian container: ``systemd-nspawn --boot`` on a :class:`rootfs.RunRoot`.

The container gets its own network namespace (``--private-network``: only
``lo`` at first; the test makes its own veth inside), every capability, the
``bpf`` system call, the host's kernel headers read-only (``/lib/modules``,
``/usr/src``: bcc compiles against the running kernel) and the host's bpf
filesystem (``/sys/fs/bpf``).  That last one is shared with the host: the
daemon inside pins at the real default path ``/sys/fs/bpf/xdpd``, which the
test checks is free before it boots and removes afterwards.

Commands run inside with ``nsenter -t <container init> -a``.  The container
is not registered with machined (``--register=no``), so it is ended by its
own ``systemctl poweroff``, else by signalling the nspawn process this
module started, else by killing the container's init (which ends every
process in the container's pid namespace).

No pytest in here.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time

from tests.e2e.rootfs import Log, RunRoot, _stderr_log

ENV = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8",
       "TERM": "dumb", "SYSTEMD_PAGER": "", "SYSTEMD_COLORS": "0", "DEBIAN_FRONTEND": "noninteractive"}

BOOT_TIMEOUT = 120.0
SHUTDOWN_TIMEOUT = 60.0


class CommandFailed(AssertionError):
    pass


class Machine:
    """One container; a context manager that always shuts it down."""

    def __init__(self, root: RunRoot, log: Log = _stderr_log) -> None:
        self.root = root
        self.name = root.name
        self.log = log
        self.console_path = os.path.join(root.dir, "console.log")
        self.proc: subprocess.Popen | None = None
        self.pid: int | None = None
        """The container's init (systemd) as the host sees it."""

    # ------------------------------------------------------------ lifecycle

    def boot(self, timeout: float = BOOT_TIMEOUT) -> "Machine":
        argv = ["systemd-nspawn", "--boot", "--register=no", "--keep-unit", "--private-network",
                "--capability=all", "--system-call-filter=bpf perf_event_open",
                "--bind-ro=/lib/modules", "--bind-ro=/usr/src", "--bind=/sys/fs/bpf",
                "-D", self.root.path, "-M", self.name]
        t0 = time.monotonic()
        with open(self.console_path, "wb") as console:
            self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=console,
                                         stderr=subprocess.STDOUT, env=ENV)
        with open(os.path.join(self.root.dir, "nspawn.json"), "w") as f:
            json.dump({"pid": self.proc.pid}, f)
        deadline = t0 + timeout
        self.pid = self._find_init(deadline)
        # Until systemd listens on its private socket, systemctl cannot ask it
        # anything ("offline" or nothing at all): retry.
        while True:
            left = max(1, int(deadline - time.monotonic()))
            state = self.run(f"timeout {left} systemctl is-system-running --wait", check=False,
                             timeout=left + 10).stdout.strip()
            if state not in ("", "offline", "initializing", "starting") or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        # degraded: Debian 13's systemd-modules-load.service fails in the
        # container ("Failed to initialize libkmod context"); it loads nothing
        # the test needs.
        if state not in ("running", "degraded"):
            failed = self.run("systemctl --failed --no-legend", check=False).stdout
            raise CommandFailed(f"container did not finish booting (state {state!r}); failed units:\n"
                                f"{failed}\n--- console ---\n{self.console_tail()}")
        self.log(f"container {self.name} booted in {time.monotonic() - t0:.1f} s ({state})")
        return self

    def _find_init(self, deadline: float) -> int:
        children = f"/proc/{self.proc.pid}/task/{self.proc.pid}/children"
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise CommandFailed(f"systemd-nspawn exited with {self.proc.returncode}:\n{self.console_tail()}")
            try:
                with open(children) as f:
                    pids = [int(p) for p in f.read().split()]
            except OSError:
                pids = []
            for pid in pids:
                try:
                    with open(f"/proc/{pid}/comm") as f:
                        if f.read().strip() == "systemd":
                            return pid
                except OSError:
                    pass
            time.sleep(0.05)
        raise CommandFailed(f"no container init under systemd-nspawn after the timeout:\n{self.console_tail()}")

    def shutdown(self, timeout: float = SHUTDOWN_TIMEOUT) -> None:
        """Power the container off; escalate to signals if it does not go."""
        if self.proc is None or self.proc.poll() is not None:
            return
        t0 = time.monotonic()
        asked = self.pid is not None and self.run("systemctl poweroff --no-block", check=False,
                                                  timeout=15).returncode == 0
        try:
            self.proc.wait(timeout if asked else 0.1)
            self.log(f"container {self.name} powered off in {time.monotonic() - t0:.1f} s")
            return
        except subprocess.TimeoutExpired:
            if asked:
                self.log(f"container {self.name} did not power off within {timeout:.0f} s; terminating")
        self.proc.terminate()  # nspawn asks the container to shut down
        try:
            self.proc.wait(15)
            return
        except subprocess.TimeoutExpired:
            pass
        if self.pid is not None:
            kill_container_init(self.proc.pid, self.pid)
        self.proc.kill()
        self.proc.wait(15)

    def __enter__(self) -> "Machine":
        return self

    def __exit__(self, *exc) -> None:
        self.shutdown()

    # ------------------------------------------------------------ inside

    def run(self, script: str, check: bool = True, timeout: float = 120.0) -> subprocess.CompletedProcess:
        """``sh -c script`` inside the container (all its namespaces); stdout and stderr as text."""
        if self.pid is None:
            raise RuntimeError("container not booted")
        proc = subprocess.run(["nsenter", "-t", str(self.pid), "-a", "/bin/sh", "-c", script],
                              capture_output=True, text=True, timeout=timeout, env=ENV,
                              stdin=subprocess.DEVNULL)
        if check and proc.returncode != 0:
            raise CommandFailed(f"in the container: {script}\nexit {proc.returncode}\n"
                                f"--- stdout ---\n{proc.stdout}\n--- stderr ---\n{proc.stderr}")
        return proc

    def console_tail(self, lines: int = 40) -> str:
        try:
            with open(self.console_path, errors="replace") as f:
                return "".join(f.readlines()[-lines:])
        except OSError:
            return "(no console log)"


def kill_container_init(nspawn_pid: int, init_pid: int) -> None:
    """SIGKILL a container's init, only if it is still the child of that nspawn."""
    try:
        with open(f"/proc/{init_pid}/stat") as f:
            ppid = int(f.read().rsplit(")", 1)[1].split()[1])
    except (OSError, ValueError, IndexError):
        return
    if ppid == nspawn_pid:
        os.kill(init_pid, signal.SIGKILL)


def stop_stale_container(run_dir: str) -> None:
    """End the container a killed run left behind in ``run_dir`` (its nspawn, by recorded pid)."""
    try:
        with open(os.path.join(run_dir, "nspawn.json")) as f:
            pid = int(json.load(f)["pid"])
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            cmdline = f.read().split(b"\0")
    except (OSError, ValueError, KeyError):
        return
    if not cmdline or not cmdline[0].endswith(b"systemd-nspawn") \
            or os.path.join(run_dir, "rootfs").encode() not in cmdline:
        return  # the pid was reused: not ours
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            for child in f.read().split():
                kill_container_init(pid, int(child))
    except OSError:
        pass
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        return
    for _ in range(100):
        if not os.path.exists(f"/proc/{pid}"):
            return
        time.sleep(0.1)
