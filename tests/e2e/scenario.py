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
from dataclasses import dataclass
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

SEND_UDP = textwrap.dedent("""
    import json, socket, sys, time
    src, sport, dport, count, interval, size = sys.argv[1:7]
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((src, int(sport)))
    payload, t0 = bytes(int(size)), time.monotonic()
    at = t0
    for _ in range(int(count)):
        s.sendto(payload, ("%s", int(dport)))
        at += float(interval)  # a fixed schedule: a late send is caught up, the rate stays
        time.sleep(max(0.0, at - time.monotonic()))
    print(json.dumps({"sent": int(count), "seconds": time.monotonic() - t0}))
""") % TARGET
"""Run in the sender namespace with ``src sport dport count interval size``: ``count``
datagrams of ``size`` zero bytes, one every ``interval`` seconds; prints what it sent and
how long that took (bounded by ``count * interval``)."""


@dataclass(frozen=True)
class TopRun:
    """``xdpd top --once`` run in the container while a UDP stream flowed."""

    stdout: str
    stderr: str
    returncode: int
    stream_outlasted_top: bool
    """The stream was still sending when top printed: its rates are of the stream."""
    rate: float
    """Datagrams per second the stream sent, over its whole run."""


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

    def send_udp(self, src: str, sport: int, dport: int, count: int, interval: float = 0.01,
                 size: int = 0) -> None:
        """``count`` datagrams from ``src:sport`` to the filtered side's ``dport`` (nothing listens)."""
        args = " ".join(str(a) for a in (src, sport, dport, count, interval, size))
        self.m.run(f"nsenter --net=/run/netns/{SENDER_NS} python3 -c {shlex.quote(SEND_UDP)} {args}",
                   timeout=30 + count * interval)

    def top_once_while_sending(self, src: str, dport: int, count: int, interval: float,
                               top_interval: float, lead: float = 0.5) -> TopRun:
        """``xdpd top --once --interval top_interval`` started ``lead`` seconds into a stream of
        ``count`` datagrams from ``src``, one every ``interval`` s (the stream should outlast it)."""
        script = textwrap.dedent(f"""
            import json, subprocess, time
            sender = subprocess.Popen(["nsenter", "--net=/run/netns/{SENDER_NS}", "python3", "-c",
                                       {SEND_UDP!r}, "{src}", "0", "{dport}", "{count}", "{interval}", "0"],
                                      stdout=subprocess.PIPE, text=True)
            time.sleep({lead})
            top = subprocess.run(["xdpd", "top", "--once", "--interval", "{top_interval}"],
                                 capture_output=True, text=True, timeout=30)
            running = sender.poll() is None
            sent = json.loads(sender.communicate(timeout={30 + count * interval})[0])
            print(json.dumps({{"stdout": top.stdout, "stderr": top.stderr, "returncode": top.returncode,
                              "running": running, "rate": sent["sent"] / sent["seconds"]}}))
        """)
        out = json.loads(self.m.run(f"python3 -c {shlex.quote(script)}", timeout=60 + count * interval).stdout)
        return TopRun(out["stdout"], out["stderr"], out["returncode"], out["running"], out["rate"])

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
        """``journalctl -u xdpd MATCHES -o json`` as dicts, oldest first; only the entries after
        ``since_cursor`` if given.

        Not ``--after-cursor``: Debian 12's journalctl (systemd 252) steps two entries on from
        the cursor with it, assuming the cursor's entry satisfies the matches, so with matches
        it loses the first entry that does.  ``--cursor`` steps one and may show the cursor's
        own entry, which is left out here."""
        start = f"--cursor='{since_cursor}'" if since_cursor else ""
        out = self.m.run(f"journalctl --no-pager -o json -u xdpd {start} " + " ".join(matches)).stdout
        entries = [json.loads(line) for line in out.splitlines() if line.strip()]
        return [e for e in entries if e["__CURSOR"] != since_cursor]

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
