"""LinkMonitor against real rtnetlink, inside throwaway namespaces.

The monitor works in the namespace of the thread that starts it, so each
test runs it in a child process entered into a fresh ``xdpdt-XXXX-le``
namespace with ``nsenter --net`` (changing this process's namespace would
leak into every other test).  The child prints one JSON line per event on
stdout; the test drives links with ``ip -n`` and reads the lines back.
Only veths named ``xdpdt-XXXX-*`` are created, always inside our own
namespaces, which are deleted in a ``finally`` even when a test fails.

"No event" is checked with a marker: after the changes that must stay
silent, a marker veth pair is created, and the next events must be the
marker's (netlink delivers in order).
"""

from __future__ import annotations

import json
import os
import queue
import secrets
import subprocess
import threading
import time
from typing import Iterator

import pytest

from tests.testbed.daemon import PYTHON, REPO_ROOT, pythonpath
from tests.testbed.netns import NETNS_RUN_DIR, in_netns, ip
from tests.testbed.rival import Rival

pytestmark = pytest.mark.kernel

# The child: runs LinkMonitor in the namespace it was started in, prints
# events as JSON lines, stops when stdin closes and reports how long stop()
# took.  argv: MODE RCVBUF, MODE is plain, raise (on_event raises on the
# first event) or slow (on_event sleeps on the first event, so the socket
# overflows).
_CHILD = r"""
import json, sys, threading, time
from xdpd import logs
logs.setup()  # log lines go to stderr, stdout stays JSON
from xdpd.linkevents import LinkMonitor

mode, rcvbuf = sys.argv[1], int(sys.argv[2])
lock = threading.Lock()
first = [True]

def out(obj):
    with lock:
        sys.stdout.write(json.dumps(obj) + "\n")
        sys.stdout.flush()

def on_event(ev):
    if first[0]:
        first[0] = False
        if mode == "raise":
            raise RuntimeError("on_event failed on purpose")
        if mode == "slow":
            time.sleep(0.5)
    out({"kind": ev.kind, "name": ev.name, "ifindex": ev.ifindex, "mode": ev.mode, "prog_id": ev.prog_id})

mon = LinkMonitor(on_event, **({"rcvbuf": rcvbuf} if rcvbuf else {}))
mon.start()
mon.start()  # idempotent
out({"ready": True})
sys.stdin.read()
t = time.monotonic()
mon.stop()
mon.stop()  # idempotent
out({"stopped": time.monotonic() - t})
"""


class Netns:
    """A namespace ``xdpdt-XXXX-<suffix>`` of our own; :meth:`delete` removes it."""

    def __init__(self, suffix: str) -> None:
        for _ in range(100):
            self.tag = f"xdpdt-{secrets.token_hex(2)}"
            self.name = f"{self.tag}-{suffix}"
            if not os.path.exists(os.path.join(NETNS_RUN_DIR, self.name)):
                break
        ip(["netns", "add", self.name])

    def ip(self, *args: str, input: str | None = None) -> str:
        return ip(["-n", self.name, *args], input=input).stdout

    def ifindex(self, dev: str) -> int:
        return int(json.loads(self.ip("-j", "link", "show", "dev", dev))[0]["ifindex"])

    def add_veth(self, a: str, b: str) -> tuple[int, int]:
        """A veth pair with both ends inside this namespace; returns the two ifindexes."""
        self.ip("link", "add", a, "type", "veth", "peer", "name", b)
        return self.ifindex(a), self.ifindex(b)

    def delete(self) -> None:
        ip(["netns", "del", self.name], check=False)


class Monitor:
    """The child process running LinkMonitor inside ``ns``, and its event lines."""

    def __init__(self, ns: Netns, mode: str = "plain", rcvbuf: int = 0) -> None:
        self.proc = subprocess.Popen(
            in_netns(ns.name, [PYTHON, "-c", _CHILD, mode, str(rcvbuf)]),
            cwd=REPO_ROOT, env={**os.environ, "PYTHONPATH": pythonpath()},
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.lines: "queue.Queue[dict | None]" = queue.Queue()
        self.stderr = ""
        self._out = threading.Thread(target=self._read_stdout, daemon=True)
        self._err = threading.Thread(target=self._read_stderr, daemon=True)
        self._out.start()
        self._err.start()
        first = self.next(timeout=15)
        assert first == {"ready": True}, f"monitor did not start: {first}; stderr: {self.stderr}"

    def _read_stdout(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(json.loads(line))
        self.lines.put(None)

    def _read_stderr(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.stderr += line

    def next(self, timeout: float = 5.0) -> dict | None:
        try:
            return self.lines.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"no event within {timeout} s; child stderr: {self.stderr}") from None

    def events(self, n: int, timeout: float = 5.0) -> list[tuple[str, str, int]]:
        """The next ``n`` events as (kind, name, ifindex)."""
        out = []
        for _ in range(n):
            line = self.next(timeout)
            assert line is not None and "kind" in line, \
                f"expected an event, got {line}; stderr: {self.stderr}"
            out.append((line["kind"], line["name"], line["ifindex"]))
        return out

    def stop(self) -> float:
        """Close stdin, let the child call stop(); return how long stop() took."""
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        line = self.next(timeout=10)
        assert line is not None and "stopped" in line, f"unexpected line {line}; stderr: {self.stderr}"
        assert self.proc.wait(timeout=10) == 0, self.stderr
        self._err.join(timeout=5)
        return float(line["stopped"])

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)


@pytest.fixture
def netns() -> Iterator[Netns]:
    ns = Netns("le")
    try:
        yield ns
    finally:
        ns.delete()


@pytest.fixture
def monitors() -> Iterator[list[Monitor]]:
    """Monitors started by a test; killed at the end if still running."""
    started: list[Monitor] = []
    try:
        yield started
    finally:
        for mon in started:
            mon.kill()


def test_appear_disappear_recreate_rename(netns: Netns, monitors: list[Monitor]) -> None:
    mon = Monitor(netns)
    monitors.append(mon)
    a, b = f"{netns.tag}-a", f"{netns.tag}-b"

    ia, ib = netns.add_veth(a, b)
    assert sorted(mon.events(2)) == sorted([("new", a, ia), ("new", b, ib)])

    # State changes of known links (lo existed before start) stay silent.
    netns.ip("link", "set", "lo", "up")
    netns.ip("link", "set", a, "up")
    netns.ip("link", "set", a, "mtu", "1400")
    netns.ip("link", "set", a, "down")
    m1, m2 = f"{netns.tag}-m1", f"{netns.tag}-m2"
    im1, im2 = netns.add_veth(m1, m2)
    assert sorted(mon.events(2)) == sorted([("new", m1, im1), ("new", m2, im2)])

    netns.ip("link", "del", a)  # takes its peer with it
    assert sorted(mon.events(2)) == sorted([("del", a, ia), ("del", b, ib)])

    ia2, ib2 = netns.add_veth(a, b)
    assert sorted(mon.events(2)) == sorted([("new", a, ia2), ("new", b, ib2)])

    # A rename is the old name going away and the new one appearing.
    r = f"{netns.tag}-r"
    netns.ip("link", "set", a, "name", r)
    assert mon.events(2) == [("del", a, ia2), ("new", r, ia2)]

    assert mon.stop() < 1.0
    assert "link_monitor_error" not in mon.stderr


def test_other_namespaces_are_not_seen(netns: Netns, monitors: list[Monitor]) -> None:
    other = Netns("lx")
    try:
        mon = Monitor(netns)
        monitors.append(mon)
        other.add_veth(f"{other.tag}-a", f"{other.tag}-b")
        m1, m2 = f"{netns.tag}-m1", f"{netns.tag}-m2"
        im1, im2 = netns.add_veth(m1, m2)
        assert sorted(mon.events(2)) == sorted([("new", m1, im1), ("new", m2, im2)])
        assert mon.stop() < 1.0
    finally:
        other.delete()


def test_callback_exception_is_logged_and_monitor_goes_on(netns: Netns, monitors: list[Monitor]) -> None:
    mon = Monitor(netns, mode="raise")
    monitors.append(mon)
    a, b = f"{netns.tag}-a", f"{netns.tag}-b"
    ia, ib = netns.add_veth(a, b)
    # The first of the two events raised inside on_event and was not printed.
    [(kind, name, ifindex)] = mon.events(1)
    assert kind == "new" and (name, ifindex) in ((a, ia), (b, ib))
    netns.ip("link", "del", a)
    assert sorted(mon.events(2)) == sorted([("del", a, ia), ("del", b, ib)])
    assert mon.stop() < 1.0
    assert "link_monitor_error" in mon.stderr and "on purpose" in mon.stderr


def test_overflow_is_recovered_from_the_link_table(netns: Netns, monitors: list[Monitor]) -> None:
    # A tiny receive buffer and an on_event that stalls once: the kernel
    # drops messages (ENOBUFS) and the monitor must re-read the table.
    mon = Monitor(netns, mode="slow", rcvbuf=4096)
    monitors.append(mon)
    pairs = [(f"{netns.tag}-{i}a", f"{netns.tag}-{i}b") for i in range(12)]
    netns.ip("-batch", "-", input="".join(f"link add {a} type veth peer name {b}\n" for a, b in pairs))
    want = {name: netns.ifindex(name) for pair in pairs for name in pair}

    seen: dict[str, int] = {}
    deadline = time.monotonic() + 10
    while set(seen) != set(want):
        try:
            [(kind, name, ifindex)] = mon.events(1, timeout=max(0.1, deadline - time.monotonic()))
        except AssertionError as e:
            missing = sorted(set(want) - set(seen))
            raise AssertionError(f"never reported: {missing}; {e}") from None
        assert kind == "new" and name not in seen, f"unexpected or repeated event {kind} {name}"
        seen[name] = ifindex
    assert seen == want
    assert mon.stop() < 1.0
    assert "link_events_overflow" in mon.stderr, "the socket did not overflow; the test proved nothing"


def test_xdp_changes_are_reported_with_the_program_now_attached(netns: Netns, monitors: list[Monitor]) -> None:
    """Another tool's netlink attach, replace and detach each come as an ``xdp`` event carrying
    the mode and program now there; a setlink that changes nothing, and other state changes, do
    not.  The kernel announces XDP changes of an interface that is up only: one made while it is
    down is reported when it comes up."""
    mon = Monitor(netns)
    monitors.append(mon)
    a, b = f"{netns.tag}-a", f"{netns.tag}-b"
    ia, ib = netns.add_veth(a, b)
    assert sorted(mon.events(2)) == sorted([("new", a, ia), ("new", b, ib)])
    with Rival(netns.name, a) as rival, Rival(netns.name, a) as other:
        rival.attach("generic")                                 # while down: not announced
        netns.ip("link", "set", a, "up")
        assert mon.next() == {"kind": "xdp", "name": a, "ifindex": ia, "mode": "generic",
                              "prog_id": rival.prog_id}
        other.attach("generic")                                 # replaced by someone else
        assert mon.next() == {"kind": "xdp", "name": a, "ifindex": ia, "mode": "generic",
                              "prog_id": other.prog_id}
        other.attach("generic")                                 # the same again: no change
        netns.ip("link", "set", a, "mtu", "1400")
        netns.ip("link", "set", a, "xdpgeneric", "off")
        assert mon.next() == {"kind": "xdp", "name": a, "ifindex": ia, "mode": None, "prog_id": 0}
    m1, m2 = f"{netns.tag}-m1", f"{netns.tag}-m2"
    im1, im2 = netns.add_veth(m1, m2)
    assert sorted(mon.events(2)) == sorted([("new", m1, im1), ("new", m2, im2)])
    assert mon.stop() < 1.0
    assert "link_monitor_error" not in mon.stderr
