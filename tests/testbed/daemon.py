"""The real ``xdpd run`` daemon inside a test bed's victim namespace.

:class:`XdpdProcess` writes a YAML config into a temporary config dir and
starts ``python3 -m xdpd run`` in the victim namespace of a
:class:`tests.testbed.netbed.NetBed`, exactly as an operator would (only the namespace
differs).  Readiness is the daemon's own ``READY=1`` sd_notify message on an
AF_UNIX datagram socket this process owns (``NOTIFY_SOCKET``), not a sleep or
a log line.  If the daemon exits before it is ready, :class:`DaemonFailed`
carries its exit code and stderr.

The daemon is started with :func:`tests.testbed.netns.in_netns` (``nsenter``,
which keeps the host's /sys/fs/bpf, where the pin directory lives).  The pin directory is ``/sys/fs/bpf/<bed tag>-xdpd<N>``
(the bed tag is ``xdpdt-XXXX``, unique per bed) and is removed on close.

For restarts and crashes, :meth:`XdpdProcess.kill` (SIGKILL) and
:meth:`XdpdProcess.restart` (a new daemon on the same config and pin dirs)
stand in for a service manager; :meth:`XdpdProcess.write_file` adds further
files to the config dir; :class:`tests.testbed.xdplink.XdpMonitor` records
every XDP attach, replace and detach, so a test can prove an interface was
never without its program.

Whatever happens, :meth:`XdpdProcess.close` kills the process (it is our
child; nothing else is ever signalled), removes the config and pin
directories, and so leaves no daemon, pin or config behind.  Attachments left
by ``detach_on_stop: false`` vanish with the bed's namespaces (the veth is
deleted), and tests detach them explicitly anyway.

:func:`xdpd_factory` yields a factory, ``factory(yaml_text)``, and closes every
daemon it started at the end (``tests/kernel/conftest.py`` wraps it as the
``xdpd`` fixture).  Nothing here depends on pytest, so ``tools/demo.py`` and
the daemon benchmark use :class:`XdpdProcess` too.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import textwrap
import time
from typing import TYPE_CHECKING, Any, Callable, Iterator

from tests.testbed.netns import in_netns
from tests.testbed.xdplink import detach_xdp

if TYPE_CHECKING:
    from tests.testbed.netbed import NetBed

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PYTHON = "/usr/bin/python3"
BPFFS = "/sys/fs/bpf"

READY_TIMEOUT = 30.0
"""Compiling the BPF program takes 2-3 s; a cold bcc/clang can take longer."""

STOP_TIMEOUT = 15.0

_counter = itertools.count(1)


def pythonpath() -> str:
    """``PYTHONPATH`` for a child process: this tree first (its ``xdpd`` and ``tests``), then the caller's."""
    inherited = os.environ.get("PYTHONPATH")
    return REPO_ROOT + (os.pathsep + inherited if inherited else "")


class DaemonFailed(Exception):
    """The daemon exited (or never became ready); ``returncode`` and ``stderr`` say why."""

    def __init__(self, message: str, returncode: int | None, stderr: str) -> None:
        super().__init__(f"{message} (exit code {returncode})\n--- xdpd stderr ---\n{stderr}")
        self.returncode = returncode
        self.stderr = stderr


class XdpdProcess:
    """One ``xdpd run`` in a bed's victim namespace.  A context manager; always :meth:`close`."""

    def __init__(self, bed: NetBed, config_yaml: str, name: str = "rules.yaml") -> None:
        self.bed = bed
        self.ns = bed.victim_ns
        self.config_name = name
        self.config_dir = tempfile.mkdtemp(prefix="xdpdt-conf-")
        self.pin_dir = os.path.join(BPFFS, f"{bed.tag}-xdpd{next(_counter)}")
        if not os.path.basename(self.pin_dir).startswith("xdpdt-"):
            raise ValueError(f"refusing pin dir {self.pin_dir}: tests only use {BPFFS}/xdpdt-*")
        self.notify_path = os.path.join(self.config_dir, ".notify")  # hidden: not read as config
        self.runtime_dir = os.path.join(self.config_dir, ".run")     # reload.json goes here
        self.notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        self.notify.bind(self.notify_path)
        self.stderr_file = tempfile.TemporaryFile(mode="w+", prefix="xdpdt-stderr-")
        self.proc: subprocess.Popen | None = None
        self.returncode: int | None = None
        self.messages: list[str] = []
        """Every sd_notify datagram received, in order."""
        self.starts = 0
        """How many times :meth:`start` (or :meth:`restart`) ran a daemon."""
        self.env: dict[str, str] = {}
        """More environment for the daemon, set before :meth:`start` (``XDPD_ATTACH``, ``WATCHDOG_USEC``)."""
        self._stderr_mark = 0
        self.write_config(config_yaml)

    # ------------------------------------------------------------------ lifecycle

    def write_config(self, config_yaml: str) -> None:
        """Replace the config file (atomically: the daemon never reads half a file)."""
        path = os.path.join(self.config_dir, self.config_name)
        tmp = os.path.join(self.config_dir, ".tmp-config")
        with open(tmp, "w") as f:
            f.write(textwrap.dedent(config_yaml))
        os.replace(tmp, path)

    def write_file(self, name: str, text: str, atomic: bool = True) -> str:
        """Write another file of the config dir (a second ``*.yaml``, a list file); return its path.

        ``atomic=False`` writes in place, as a careless editor would (used to
        leave a half-written file on purpose).
        """
        if os.sep in name or name.startswith("."):
            raise ValueError(f"{name!r}: only plain names inside the config dir")
        path = os.path.join(self.config_dir, name)
        if not atomic:
            with open(path, "w") as f:
                f.write(text)
            return path
        tmp = os.path.join(self.config_dir, f".tmp-{name}")
        with open(tmp, "w") as f:
            f.write(text)
        os.replace(tmp, path)
        return path

    def remove_file(self, name: str) -> None:
        """Remove a file (or an empty directory) of the config dir written by a test; quiet if absent."""
        path = os.path.join(self.config_dir, name)
        if os.path.isdir(path) and not os.path.islink(path):
            os.rmdir(path)
        elif os.path.lexists(path):
            os.unlink(path)

    def environment(self) -> dict[str, str]:
        """The daemon's environment: ours, with our notify socket and this tree's ``xdpd`` first.

        A service manager's own variables (watchdog, journal stream) are
        left out: they are addressed to the process that runs the tests.
        :attr:`env` comes last.
        """
        env = {k: v for k, v in os.environ.items()
               if k not in ("WATCHDOG_USEC", "WATCHDOG_PID", "JOURNAL_STREAM", "INVOCATION_ID")}
        env.update({"NOTIFY_SOCKET": self.notify_path, "PYTHONDONTWRITEBYTECODE": "1",
                    "XDPD_LOG_TARGET": "console",  # stderr is what the tests read, even under a CI service
                    "PYTHONPATH": pythonpath()})
        env.update(self.env)
        return env

    def command(self) -> list[str]:
        """``xdpd run`` on this config, pin and runtime dir, in the victim namespace."""
        return in_netns(self.ns, [PYTHON, "-m", "xdpd", "run", "--config-dir", self.config_dir,
                                  "--pin-dir", self.pin_dir, "--runtime-dir", self.runtime_dir])

    def start(self, wait: bool = True) -> "XdpdProcess":
        """Start the daemon; with ``wait``, return once it sent READY=1 (raise :class:`DaemonFailed` if not)."""
        self.stderr_file.seek(0, os.SEEK_END)
        self._stderr_mark = self.stderr_file.tell()
        self.starts += 1
        self.returncode = None
        self.proc = subprocess.Popen(self.command(), cwd=REPO_ROOT, env=self.environment(), stdin=subprocess.DEVNULL,
                                     stdout=self.stderr_file, stderr=self.stderr_file)
        if wait:
            self.wait_ready("start")
        return self

    def wait_ready(self, what: str, timeout: float = READY_TIMEOUT) -> str:
        """Wait for the next datagram with a ``READY=1`` line; return the whole datagram."""
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise DaemonFailed(f"xdpd sent no READY=1 within {timeout:.0f} s after {what}",
                                   self.proc.poll() if self.proc else None, self.stderr())
            self.notify.settimeout(min(remaining, 0.2))
            try:
                msg = self.notify.recv(65536).decode(errors="replace")
            except socket.timeout:
                if self.proc is not None and self.proc.poll() is not None:
                    self._drain_notify()
                    if any("READY=1" in m.splitlines() for m in self.messages[-1:]):
                        return self.messages[-1]
                    self.returncode = self.proc.returncode
                    raise DaemonFailed(f"xdpd exited before READY=1 ({what})", self.returncode, self.stderr())
                continue
            self.keep_message(msg)
            if "READY=1" in msg.splitlines():
                return msg

    def keep_message(self, msg: str) -> None:
        """Record a received sd_notify datagram in :attr:`messages` (a subclass may record more)."""
        self.messages.append(msg)

    def drain_messages(self) -> list[str]:
        """Move every datagram queued on the notify socket to :attr:`messages`; return those."""
        before = len(self.messages)
        self._drain_notify()
        return self.messages[before:]

    def _drain_notify(self) -> None:
        self.notify.setblocking(False)
        try:
            while True:
                self.keep_message(self.notify.recv(65536).decode(errors="replace"))
        except (BlockingIOError, InterruptedError):
            pass
        finally:
            self.notify.setblocking(True)

    def reload(self, config_yaml: str | None = None) -> str:
        """Rewrite the config (if given), SIGHUP, and wait for the next READY=1; return that message.

        The message also carries the daemon's ``STATUS=`` line, e.g. whether the
        reload was rejected.
        """
        if config_yaml is not None:
            self.write_config(config_yaml)
        self._drain_notify()  # the STATUS= after the last READY=1 must not count as the answer
        self._signal(signal.SIGHUP)
        return self.wait_ready("SIGHUP")

    def stop(self, timeout: float = STOP_TIMEOUT) -> int:
        """SIGTERM, wait for the exit, return the exit code."""
        if self.proc is None:
            raise RuntimeError("xdpd was never started")
        if self.proc.poll() is None:
            self._signal(signal.SIGTERM)
        try:
            self.returncode = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise DaemonFailed(f"xdpd did not exit within {timeout:.0f} s of SIGTERM", None, self.stderr())
        return self.returncode

    def wait_exit(self, timeout: float = READY_TIMEOUT) -> int:
        """Wait for the daemon to exit on its own (e.g. a bad config); return the exit code."""
        try:
            self.returncode = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise DaemonFailed(f"xdpd still running after {timeout:.0f} s", None, self.stderr())
        return self.returncode

    def kill(self, timeout: float = 10.0) -> int:
        """SIGKILL the daemon (a crash: no clean-up code runs), wait for it, return the exit code (-9)."""
        self._signal(signal.SIGKILL)
        try:
            self.returncode = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise DaemonFailed(f"xdpd did not die within {timeout:.0f} s of SIGKILL", None, self.stderr())
        return self.returncode

    def restart(self, wait: bool = True) -> "XdpdProcess":
        """Start a new daemon on the same config dir, pin dir and notify socket.

        The previous process must have exited (:meth:`stop`, :meth:`kill`,
        :meth:`wait_exit`): this is what a service manager does after a
        crash or a ``systemctl restart``.  Datagrams the old process left on
        the notify socket are moved to :attr:`messages` first, so
        ``wait_ready`` waits for the new process.  :meth:`stderr_since_start`
        then shows the new process's log only.
        """
        if self.proc is None:
            raise RuntimeError("xdpd was never started")
        if self.proc.poll() is None:
            raise RuntimeError("xdpd is still running; stop or kill it before restart()")
        self.returncode = self.proc.returncode
        self._drain_notify()
        return self.start(wait)

    def wait_message(self, pattern: str, timeout: float = READY_TIMEOUT) -> str:
        """Wait for an sd_notify datagram matching the regex ``pattern`` (searched); return it.

        Only datagrams not yet received count, not those already in
        :attr:`messages`.  To wait for the answer to something the test
        triggers (a file change, a link event), call :meth:`drain_messages`
        before the trigger, so an earlier datagram still queued is not taken
        for the answer.
        """
        rx = re.compile(pattern)
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise DaemonFailed(f"no sd_notify message matching {pattern!r} within {timeout:.0f} s "
                                   f"(got {self.messages[-5:]})", self.proc.poll() if self.proc else None,
                                   self.stderr())
            self.notify.settimeout(min(remaining, 0.2))
            try:
                msg = self.notify.recv(65536).decode(errors="replace")
            except socket.timeout:
                continue
            self.keep_message(msg)
            if rx.search(msg):
                return msg

    def _signal(self, sig: int) -> None:
        # nsenter execs the interpreter, so the child pid is the daemon itself.
        if self.proc.poll() is not None:
            raise DaemonFailed(f"xdpd is not running (cannot send {signal.Signals(sig).name})",
                               self.proc.returncode, self.stderr())
        self.proc.send_signal(sig)

    def close(self) -> None:
        """Kill the daemon if still running, remove the pin and config dirs.  Idempotent."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                pass
            # A killed daemon leaves its attachment; remove it while the bed exists.
            if os.path.exists(f"/run/netns/{self.ns}"):
                detach_xdp(self.ns, self.bed.victim_if)
        self.notify.close()
        self.stderr_file.close()
        shutil.rmtree(self.pin_dir, ignore_errors=True)
        shutil.rmtree(self.config_dir, ignore_errors=True)

    def __enter__(self) -> "XdpdProcess":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # ------------------------------------------------------------------ inspection

    def stderr(self) -> str:
        """Everything the daemon logged so far."""
        if self.stderr_file.closed:
            return ""
        self.stderr_file.flush()
        self.stderr_file.seek(0)
        return self.stderr_file.read()

    def stderr_since_start(self) -> str:
        """What the daemon logged since the last :meth:`start`/:meth:`restart` (that process only)."""
        if self.stderr_file.closed:
            return ""
        self.stderr_file.flush()
        self.stderr_file.seek(self._stderr_mark)
        return self.stderr_file.read()

    def status_cmd(self, *args: str) -> subprocess.CompletedProcess:
        """``xdpd status ARGS --pin-dir ...`` in the victim namespace (daemon running or not)."""
        env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1", "PYTHONPATH": pythonpath()}
        return subprocess.run(in_netns(self.ns, [PYTHON, "-m", "xdpd", "status", *args, "--pin-dir", self.pin_dir]),
                              cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=60)

    def status(self) -> dict:
        """``xdpd status --json``, parsed."""
        proc = self.status_cmd("--json")
        if proc.returncode != 0:
            raise AssertionError(f"xdpd status --json exited {proc.returncode}: {proc.stderr}{proc.stdout}")
        return json.loads(proc.stdout)

    def rule_packets(self) -> dict[str, int]:
        """Packets per rule name, from ``status --json``."""
        return {name: r["packets"] for name, r in self.status()["rules"].items()}


def status_line(message: str) -> str | None:
    """The text of the ``STATUS=`` line of an sd_notify datagram, or None."""
    for line in message.splitlines():
        if line.startswith("STATUS="):
            return line[len("STATUS="):]
    return None


def config(iface: str, rules: str = "[]", mode: str = "auto", default: str = "pass",
           settings: str = "") -> str:
    """A config text for one interface.  ``rules`` is YAML (a flow list or a block of ``- {...}`` lines)."""
    rules_text = textwrap.dedent(rules).strip()
    if rules_text.startswith("-"):
        rules_text = "\n" + textwrap.indent(rules_text, "  ")
    extra = f", {settings}" if settings else ""
    return (f"settings: {{log_interval: 60, max_addresses: 1024{extra}}}\n"
            f"interfaces:\n  {iface}: {{mode: {mode}, default: {default}}}\n"
            f"rules: {rules_text}\n")


@contextlib.contextmanager
def xdpd_factory(bed: NetBed) -> Iterator[Callable[..., XdpdProcess]]:
    """``factory(yaml_text, start=True)`` -> a started :class:`XdpdProcess` in ``bed``'s victim.

    Every daemon the factory made is killed and its pin dir removed when the
    block ends, pass or fail.  ``tests/kernel/conftest.py`` wraps this as the
    ``xdpd`` fixture.
    """
    made: list[XdpdProcess] = []

    def factory(config_yaml: str, start: bool = True) -> XdpdProcess:
        d = XdpdProcess(bed, config_yaml)
        made.append(d)
        return d.start() if start else d

    try:
        yield factory
    finally:
        for d in made:
            d.close()
