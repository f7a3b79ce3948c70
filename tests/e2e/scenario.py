"""What an operator does with the installed package, as calls: systemctl,
journalctl, editing /etc/xdpd/rules.yaml, and traffic through a veth.

The veth lives entirely inside the container: ``xdpdt-in`` in the
container's own network namespace (xdpd filters there, 192.0.2.1) and its
peer ``xdpdt-out`` in a further namespace ``xdpdt-snd`` created inside the
container, which sends from 192.0.2.2 (``BLOCKED``) and 192.0.2.3
(``OTHER``).  Only documentation addresses; nothing touches the host's
network.
"""

from __future__ import annotations

import json
import os
import shlex
import textwrap
import time
from typing import Callable

from tests.e2e.machine import CommandFailed, Machine

HOST_PIN_DIR = "/sys/fs/bpf/xdpd"
"""The packaged daemon's default pin dir; the container shares the host's bpffs."""

IFACE = "xdpdt-in"
PEER = "xdpdt-out"
SENDER_NS = "xdpdt-snd"
TARGET = "192.0.2.1"
BLOCKED = "192.0.2.2"
OTHER = "192.0.2.3"


class Scenario:
    def __init__(self, machine: Machine) -> None:
        self.m = machine

    # ------------------------------------------------------------ network

    def make_veth(self) -> None:
        self.m.run(f"""set -e
            ip netns add {SENDER_NS}
            ip link add {IFACE} type veth peer name {PEER} netns {SENDER_NS}
            ip addr add {TARGET}/24 dev {IFACE}
            ip link set {IFACE} up
            ip -n {SENDER_NS} addr add {BLOCKED}/24 dev {PEER}
            ip -n {SENDER_NS} addr add {OTHER}/24 dev {PEER}
            ip -n {SENDER_NS} link set lo up
            ip -n {SENDER_NS} link set {PEER} up
        """)

    def ping(self, src: str, count: int = 2) -> bool:
        """Whether echo requests from ``src`` to the filtered side get any reply."""
        r = self.m.run(f"nsenter --net=/run/netns/{SENDER_NS} ping -n -q -c {count} -i 0.2 -W 1 "
                       f"-I {src} {TARGET}", check=False, timeout=30)
        return r.returncode == 0

    def udp(self, src: str) -> bool:
        """Whether one UDP datagram from ``src`` reaches a socket on the filtered side."""
        script = textwrap.dedent(f"""
            import socket, subprocess
            r = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            r.bind(("{TARGET}", 0))
            r.settimeout(1.5)
            send = ("import socket; s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); "
                    "s.bind(('{src}', 0)); s.sendto(b'xdpd-e2e', ('{TARGET}', %d))" % r.getsockname()[1])
            subprocess.run(["nsenter", "--net=/run/netns/{SENDER_NS}", "python3", "-c", send], check=True)
            try:
                print("received" if r.recvfrom(64)[0] == b"xdpd-e2e" else "other")
            except socket.timeout:
                print("lost")
        """)
        out = self.m.run(f"python3 -c {shlex.quote(script)}", timeout=30).stdout.strip()
        assert out in ("received", "lost"), out
        return out == "received"

    def wait_ping(self, src: str, passes: bool, timeout: float, what: str) -> float:
        """Poll until traffic from ``src`` passes (or is dropped); return the seconds it took."""
        return self.wait_until(lambda: self.ping(src, count=1) == passes, timeout,
                               f"{what}: ping from {src} still {'dropped' if passes else 'answered'}")

    def xdp_prog_id(self, iface: str = IFACE) -> int | None:
        out = self.m.run(f"ip -j -d link show dev {iface}").stdout
        xdp = json.loads(out)[0].get("xdp")
        return xdp.get("prog", {}).get("id") if xdp else None

    # ------------------------------------------------------------ bans

    def bans(self) -> list[dict]:
        """``xdpd ban list --json`` in the container (the package's command, default pin dir)."""
        return json.loads(self.m.run("xdpd ban list --json").stdout)

    # ------------------------------------------------------------ config

    def write_config(self, yaml_text: str, name: str = "rules.yaml") -> None:
        """Replace /etc/xdpd/<name> the way an editor should: write a temp file, rename it."""
        etc = os.path.join(self.m.root.path, "etc/xdpd")
        tmp = os.path.join(etc, f".{name}.tmp")
        with open(tmp, "w") as f:
            f.write(textwrap.dedent(yaml_text))
        os.replace(tmp, os.path.join(etc, name))

    # ------------------------------------------------------------ systemd

    def systemctl(self, *args: str, check: bool = True, timeout: float = 120.0):
        return self.m.run("systemctl " + " ".join(args), check=check, timeout=timeout)

    def is_active(self) -> str:
        return self.systemctl("is-active", "xdpd", check=False).stdout.strip()

    def main_pid(self) -> int:
        return int(self.systemctl("show", "--value", "--property=MainPID", "xdpd").stdout.strip())

    def journal(self, *matches: str, since_cursor: str | None = None) -> list[dict]:
        """``journalctl -u xdpd MATCHES -o json`` as dicts, oldest first."""
        after = f"--after-cursor='{since_cursor}'" if since_cursor else ""
        out = self.m.run(f"journalctl --no-pager -o json -u xdpd {after} " + " ".join(matches)).stdout
        return [json.loads(line) for line in out.splitlines() if line.strip()]

    def cursor(self) -> str:
        out = self.m.run("journalctl --no-pager -o json -n 1 -u xdpd").stdout.strip().splitlines()
        return json.loads(out[-1])["__CURSOR"] if out else ""

    def journal_text(self, lines: int = 40) -> str:
        return self.m.run(f"journalctl --no-pager -u xdpd -n {lines}", check=False).stdout

    # ------------------------------------------------------------ waiting

    def wait_until(self, predicate: Callable[[], bool], timeout: float, failure: str) -> float:
        t0 = time.monotonic()
        while True:
            if predicate():
                return time.monotonic() - t0
            if time.monotonic() - t0 > timeout:
                raise CommandFailed(f"{failure} after {timeout:.0f} s\n--- journalctl -u xdpd ---\n"
                                    f"{self.journal_text()}")
            time.sleep(0.3)
