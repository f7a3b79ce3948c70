"""The real ``xdpd run`` daemon inside a test bed's victim namespace.

:class:`XdpdProcess` writes a YAML config into a temporary config dir and
starts ``python3 -m xdpd run`` in the victim namespace of a
:class:`netbed.NetBed`, exactly as an operator would (only the namespace
differs).  Readiness is the daemon's own ``READY=1`` sd_notify message on an
AF_UNIX datagram socket this process owns (``NOTIFY_SOCKET``), not a sleep or
a log line.  If the daemon exits before it is ready, :class:`DaemonFailed`
carries its exit code and stderr.

The daemon is started with ``nsenter --net=/run/netns/NS``, not ``ip netns
exec``: the latter remounts /sys, which hides the bpf filesystem the pin
directory lives on.  The pin directory is ``/sys/fs/bpf/<bed tag>-xdpd<N>``
(the bed tag is ``xdpdt-XXXX``, unique per bed) and is removed on close.

Whatever happens, :meth:`XdpdProcess.close` kills the process (it is our
child; nothing else is ever signalled), removes the config and pin
directories, and so leaves no daemon, pin or config behind.  Attachments left
by ``detach_on_stop: false`` vanish with the bed's namespaces (the veth is
deleted), and tests detach them explicitly anyway.

:func:`xdpd_factory` yields a factory, ``factory(yaml_text)``, and closes every
daemon it started at the end (``test_traffic.py`` wraps it as the ``xdpd``
fixture).  Nothing here depends on pytest, so ``tools/demo.py`` uses
:class:`XdpdProcess` too.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import textwrap
import time
from typing import Any, Callable, Iterator

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PYTHON = "/usr/bin/python3"
BPFFS = "/sys/fs/bpf"

READY_TIMEOUT = 30.0
"""Compiling the BPF program takes 2-3 s; a cold bcc/clang can take longer."""

STOP_TIMEOUT = 15.0

_counter = itertools.count(1)


class DaemonFailed(Exception):
    """The daemon exited (or never became ready); ``returncode`` and ``stderr`` say why."""

    def __init__(self, message: str, returncode: int | None, stderr: str) -> None:
        super().__init__(f"{message} (exit code {returncode})\n--- xdpd stderr ---\n{stderr}")
        self.returncode = returncode
        self.stderr = stderr


def in_netns(ns: str, argv: list[str]) -> list[str]:
    """``argv`` run in network namespace ``ns`` only (mounts, incl. /sys/fs/bpf, stay the host's)."""
    return ["nsenter", f"--net=/run/netns/{ns}", *argv]


def xdp_attachment(ns: str, ifname: str) -> str | None:
    """``"xdp"``, ``"xdpgeneric"``, ... as ``ip link`` reports for ``ifname`` in ``ns``, or None."""
    out = subprocess.run(["ip", "-n", ns, "-d", "-j", "link", "show", "dev", ifname],
                         capture_output=True, text=True, check=True, timeout=30).stdout
    xdp = json.loads(out)[0].get("xdp")
    if not xdp:
        return None
    return {1: "xdp", 2: "xdpgeneric", 3: "xdpoffload", 4: "xdpmulti"}.get(xdp.get("mode"), str(xdp.get("mode")))


def detach_xdp(ns: str, ifname: str) -> None:
    """Remove any XDP program from ``ifname`` in ``ns`` (both modes; quiet if none)."""
    for kind in ("xdp", "xdpgeneric"):
        subprocess.run(["ip", "-n", ns, "link", "set", "dev", ifname, kind, "off"],
                       capture_output=True, text=True, timeout=30)


class XdpdProcess:
    """One ``xdpd run`` in a bed's victim namespace.  A context manager; always :meth:`close`."""

    def __init__(self, bed, config_yaml: str, name: str = "rules.yaml") -> None:
        self.bed = bed
        self.ns = bed.victim_ns
        self.config_name = name
        self.config_dir = tempfile.mkdtemp(prefix="xdpdt-conf-")
        self.pin_dir = os.path.join(BPFFS, f"{bed.tag}-xdpd{next(_counter)}")
        if not os.path.basename(self.pin_dir).startswith("xdpdt-"):
            raise ValueError(f"refusing pin dir {self.pin_dir}: tests only use {BPFFS}/xdpdt-*")
        self.notify_path = os.path.join(self.config_dir, ".notify")  # hidden: not read as config
        self.notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        self.notify.bind(self.notify_path)
        self.stderr_file = tempfile.TemporaryFile(mode="w+", prefix="xdpdt-stderr-")
        self.proc: subprocess.Popen | None = None
        self.returncode: int | None = None
        self.messages: list[str] = []
        """Every sd_notify datagram received, in order."""
        self.write_config(config_yaml)

    # ------------------------------------------------------------------ lifecycle

    def write_config(self, config_yaml: str) -> None:
        """Replace the config file (atomically: the daemon never reads half a file)."""
        path = os.path.join(self.config_dir, self.config_name)
        tmp = os.path.join(self.config_dir, ".tmp-config")
        with open(tmp, "w") as f:
            f.write(textwrap.dedent(config_yaml))
        os.replace(tmp, path)

    def start(self, wait: bool = True) -> "XdpdProcess":
        """Start the daemon; with ``wait``, return once it sent READY=1 (raise :class:`DaemonFailed` if not)."""
        env = {**os.environ, "NOTIFY_SOCKET": self.notify_path, "PYTHONDONTWRITEBYTECODE": "1",
               "PYTHONPATH": REPO_ROOT + (os.pathsep + os.environ["PYTHONPATH"] if os.environ.get("PYTHONPATH") else "")}
        argv = in_netns(self.ns, [PYTHON, "-m", "xdpd", "run", "--config-dir", self.config_dir,
                                  "--pin-dir", self.pin_dir])
        self.proc = subprocess.Popen(argv, cwd=REPO_ROOT, env=env, stdin=subprocess.DEVNULL,
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
            self.messages.append(msg)
            if "READY=1" in msg.splitlines():
                return msg

    def _drain_notify(self) -> None:
        self.notify.setblocking(False)
        try:
            while True:
                self.messages.append(self.notify.recv(65536).decode(errors="replace"))
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

    def status_cmd(self, *args: str) -> subprocess.CompletedProcess:
        """``xdpd status ARGS --pin-dir ...`` in the victim namespace (daemon running or not)."""
        env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1", "PYTHONPATH": REPO_ROOT}
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
def xdpd_factory(bed) -> Iterator[Callable[..., XdpdProcess]]:
    """``factory(yaml_text, start=True)`` -> a started :class:`XdpdProcess` in ``bed``'s victim.

    Every daemon the factory made is killed and its pin dir removed when the
    block ends, pass or fail.  ``test_traffic.py`` wraps this as the ``xdpd``
    fixture.
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
