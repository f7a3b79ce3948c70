"""Debian's fail2ban in the container, banning through the action the xdpd package ships.

Two jails read log files the test writes (``FAILED LOGIN from <HOST>``
lines, no date: fail2ban takes the time it reads them) and use ``action =
xdpd``: :data:`JAIL` with a 5 s ``bantime``, :data:`PERMANENT_JAIL` with
``bantime = -1``.  Debian's own ``sshd`` jail is switched off (its log file
does not exist in a minimal system).  fail2ban is installed into the root
before boot (:meth:`tests.e2e.rootfs.RunRoot.install_packages`, from
Debian, apart from the package under test) and disabled, so only
:meth:`Fail2ban.start` runs it.

No pytest in here.
"""

from __future__ import annotations

import textwrap
import time

from tests.e2e.machine import CommandFailed, Machine

PACKAGES = ("fail2ban",)
INSTALL_THEN = "systemctl disable fail2ban"
"""Installed but not started at boot: the test starts it with its own jails."""

JAIL = "xdpd-e2e"
PERMANENT_JAIL = "xdpd-e2e-perm"
BANTIME = 5
MAXRETRY = 3
LOGS = {JAIL: "/var/log/xdpd-e2e-login.log", PERMANENT_JAIL: "/var/log/xdpd-e2e-perm.log"}
F2B_LOG = "/var/log/fail2ban.log"

FILTER = """\
    [Definition]
    failregex = ^FAILED LOGIN from <HOST>\\s*$
    datepattern = {NONE}
"""

JAILS = f"""\
    [sshd]
    enabled = false

    [{JAIL}]
    enabled = true
    filter = xdpd-e2e
    logpath = {LOGS[JAIL]}
    backend = polling
    action = xdpd
    maxretry = {MAXRETRY}
    findtime = 60
    bantime = {BANTIME}

    [{PERMANENT_JAIL}]
    enabled = true
    filter = xdpd-e2e
    logpath = {LOGS[PERMANENT_JAIL]}
    backend = polling
    action = xdpd
    maxretry = {MAXRETRY}
    findtime = 60
    bantime = -1
"""


class Fail2ban:
    def __init__(self, machine: Machine) -> None:
        self.m = machine

    def _write(self, path: str, text: str) -> None:
        """Write a file of the container's root from the host (its root is a directory here)."""
        with open(self.m.root.path + path, "w") as f:
            f.write(textwrap.dedent(text))

    def configure(self) -> None:
        self._write("/etc/fail2ban/filter.d/xdpd-e2e.conf", FILTER)
        self._write("/etc/fail2ban/jail.d/xdpd-e2e.local", JAILS)
        for path in LOGS.values():
            self._write(path, "")

    def start(self, timeout: float = 30.0) -> None:
        """Start the service and wait until both jails run."""
        self.m.run("systemctl start fail2ban")
        deadline = time.monotonic() + timeout
        while True:
            status = self.m.run("fail2ban-client status", check=False)
            if status.returncode == 0 and JAIL in status.stdout and PERMANENT_JAIL in status.stdout:
                return
            if time.monotonic() > deadline:
                raise CommandFailed(f"fail2ban did not start its jails within {timeout:.0f} s:\n"
                                    f"{status.stdout}{status.stderr}\n{self.log()}")
            time.sleep(0.2)

    def stop(self) -> None:
        self.m.run("systemctl stop fail2ban")

    def fail(self, jail: str, src: str, count: int = MAXRETRY) -> None:
        """Log ``count`` failed logins from ``src`` where ``jail`` reads."""
        with open(self.m.root.path + LOGS[jail], "a") as f:
            f.write(f"FAILED LOGIN from {src}\n" * count)

    def log(self) -> str:
        try:
            with open(self.m.root.path + F2B_LOG, errors="replace") as f:
                return f.read()
        except FileNotFoundError:
            return "(no fail2ban.log)"

    def logged(self, text: str) -> bool:
        return text in self.log()

    def errors(self) -> list[str]:
        return [line for line in self.log().splitlines() if " ERROR " in line or " CRITICAL " in line]
