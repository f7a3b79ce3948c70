"""A steady, per-packet counted UDP stream through a :class:`tests.testbed.netbed.NetBed`.

Run it across a reload, a restart or an edit and ask exactly how many
datagrams of a blocked source got through (and when), and how many of an
allowed source were lost.
"""

from __future__ import annotations

import select
import socket
import struct
import threading
import time
from typing import TYPE_CHECKING, Any, Sequence

from tests.testbed import traffic

if TYPE_CHECKING:
    from tests.testbed.netbed import NetBed


class UdpProbe:
    """A steady stream of UDP datagrams from several sender sources to the victim, counted per packet.

    Every ``interval`` seconds one datagram per source is sent (each source
    has its own socket bound to it; the payload carries a sequence number),
    while a receiver thread reads a socket bound in the victim namespace to
    the wildcard address on ``dport`` and records, per source, which
    sequence numbers arrived and when.  So a test can run it across a
    reload or a daemon restart and ask exactly how many packets of a
    blocked source got through (and when), and how many of an allowed
    source were lost.

    ``dst`` is the destination: a victim address, or ``{4: addr, 6: addr}``;
    by default the victim's veth address of each source's family.
    Counts are only final after :meth:`stop`, which stops sending and then
    waits ``settle`` seconds for the last datagrams.
    """

    def __init__(self, bed: NetBed, sources: Sequence[str], dport: int = 4242, interval: float = 0.002,
                 dst: dict[int, str] | str | None = None) -> None:
        self.bed = bed
        self.sources = [str(s) for s in sources]
        self.dport = dport
        self.interval = interval
        self._dst: dict[str, str] = {}
        for src in self.sources:
            version = 6 if traffic.family_of(src) == socket.AF_INET6 else 4
            if isinstance(dst, str):
                target = dst
            elif isinstance(dst, dict) and version in dst:
                target = dst[version]
            else:
                target = bed.victim_addr(version)
            if traffic.family_of(target) != traffic.family_of(src):
                raise ValueError(f"probe source {src} and destination {target} are of different families")
            self._dst[src] = target
        self.sent: dict[str, int] = {s: 0 for s in self.sources}
        """Datagrams sent per source (sequence numbers 0..sent-1)."""
        self.arrivals: dict[str, list[tuple[int, float]]] = {s: [] for s in self.sources}
        """Per source: (sequence number, time.monotonic() of arrival), in arrival order."""
        self.send_errors: list[str] = []
        self._lock = threading.Lock()
        self._stop_sending = threading.Event()
        self._stop_receiving = threading.Event()
        self._threads: list[threading.Thread] = []
        self._rx: list[socket.socket] = []
        self._tx: dict[str, socket.socket] = {}
        self.started_at = 0.0
        self.stopped = False

    def start(self) -> "UdpProbe":
        """Bind the receiver(s) first, then start sending; return self."""
        families = sorted({traffic.family_of(s) for s in self.sources})
        for fam in families:
            rx = self.bed.socket("victim", fam, socket.SOCK_DGRAM)
            rx.setsockopt(socket.SOL_SOCKET, traffic.SO_RCVBUFFORCE, 8 << 20)
            if fam == socket.AF_INET6:
                rx.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            rx.bind((traffic.wildcard(fam), self.dport))
            rx.setblocking(False)
            self._rx.append(rx)
        for src in self.sources:
            tx = self.bed.socket("sender", traffic.family_of(src), socket.SOCK_DGRAM)
            tx.bind((src, 0))
            self._tx[src] = tx
        self.started_at = time.monotonic()
        for target, name in ((self._receive, "probe-rx"), (self._send, "probe-tx")):
            thread = threading.Thread(target=target, name=name, daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def _send(self) -> None:
        seq = 0
        next_at = time.monotonic()
        while not self._stop_sending.is_set():
            for src in self.sources:
                try:
                    self._tx[src].sendto(struct.pack("!I", seq) + b"probe", (self._dst[src], self.dport))
                    with self._lock:
                        self.sent[src] = seq + 1
                except OSError as exc:  # e.g. ENOBUFS; recorded, a lost datagram is counted as lost
                    self.send_errors.append(f"{src} seq {seq}: {exc}")
                    with self._lock:
                        self.sent[src] = seq + 1
            seq += 1
            next_at += self.interval
            delay = next_at - time.monotonic()
            if delay > 0:
                self._stop_sending.wait(delay)
            elif delay < -0.1:  # fell far behind (loaded machine): do not burst to catch up
                next_at = time.monotonic()

    def _receive(self) -> None:
        while not self._stop_receiving.is_set():
            try:
                readable, _w, _x = select.select(self._rx, [], [], 0.05)
            except (OSError, ValueError):  # sockets closed under us by destroy()
                return
            for rx in readable:
                self._drain(rx)

    def _drain(self, rx: socket.socket) -> None:
        while True:
            try:
                data, addr = rx.recvfrom(2048)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return
            now = time.monotonic()
            if len(data) < 4:
                continue
            (seq,) = struct.unpack("!I", data[:4])
            for src in self.sources:
                if traffic.same_ip(addr[0], src):
                    with self._lock:
                        self.arrivals[src].append((seq, now))
                    break

    def stop(self, settle: float = 0.3) -> "UdpProbe":
        """Stop sending, collect what is still on its way for ``settle`` seconds, stop; idempotent."""
        if self.stopped:
            return self
        self.stopped = True
        self._stop_sending.set()
        for thread in self._threads[1:]:
            thread.join(5)
        deadline = time.monotonic() + settle
        while time.monotonic() < deadline and any(self.received(s) < self.sent[s] for s in self.sources):
            time.sleep(0.01)
        self._stop_receiving.set()
        if self._threads:
            self._threads[0].join(5)
        for sock in [*self._rx, *self._tx.values()]:
            sock.close()
        return self

    def __enter__(self) -> "UdpProbe":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    # queries (safe while running; final after stop)

    def received(self, src: str) -> int:
        """Distinct sequence numbers from ``src`` received so far."""
        with self._lock:
            return len({seq for seq, _t in self.arrivals[src]})

    def lost(self, src: str) -> int:
        """Datagrams from ``src`` sent but not received (so far)."""
        with self._lock:
            sent = self.sent[src]
            got = {seq for seq, _t in self.arrivals[src]}
        return sent - len(got & set(range(sent)))

    def arrival_times(self, src: str) -> list[float]:
        """When datagrams from ``src`` arrived, as ``time.monotonic()`` values."""
        with self._lock:
            return [t for _seq, t in self.arrivals[src]]

    def wait_received(self, src: str, more: int = 1, timeout: float = 2.0) -> bool:
        """Wait until ``more`` further datagrams from ``src`` arrived (proof the stream flows)."""
        target = self.received(src) + more
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.received(src) >= target:
                return True
            time.sleep(0.005)
        return False

    def wait_sent(self, src: str, more: int, timeout: float = 5.0) -> None:
        """Wait until ``more`` further datagrams from ``src`` were sent."""
        target = self.sent[src] + more
        deadline = time.monotonic() + timeout
        while self.sent[src] < target:
            if time.monotonic() > deadline:
                raise RuntimeError(f"probe sent nothing from {src} for {timeout} s")
            time.sleep(0.005)

    def run_until_sent(self, total: int, timeout: float) -> None:
        """Keep the stream running until every source sent at least ``total`` datagrams.

        For a test whose evidence needs a minimum number of datagrams
        whatever the machine's speed: what it did while streaming may have
        taken less time than that many intervals.
        """
        deadline = time.monotonic() + timeout
        while min(self.sent.values()) < total:
            if time.monotonic() > deadline:
                raise RuntimeError(f"probe sent fewer than {total} per source within {timeout} s: {self.summary()}")
            time.sleep(0.005)

    def summary(self) -> str:
        return ", ".join(f"{s}: sent {self.sent[s]} received {self.received(s)}" for s in self.sources)
