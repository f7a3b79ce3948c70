"""The send-and-count exchanges behind :meth:`tests.testbed.netbed.NetBed.send`.

Why in-process instead of ``ip netns exec python3 ...`` helpers: a socket
belongs to the network namespace of the thread that created it, for its whole
life.  So a short-lived thread that ``setns()``-es into the victim (or sender)
namespace can create a socket and hand it back; the pytest process then
drives both ends itself.  That removes interpreter start-up (tens of ms per
process), readiness handshakes between processes, and the races that come
with them: the receiver is bound before the first packet is sent by
construction.  The test process's own threads never change namespace.

Counting model (all exchanges): after the last packet is sent we collect
arrivals until the expected number is reached (returns at once), or nothing
new arrived for ``settle`` seconds, or ``timeout`` seconds passed since the
last packet was sent.  On a veth pair delivery (and an XDP drop) happens
within microseconds of ``send()``, usually before it returns, so ``settle``
is what a lost packet costs and can be small.
"""

from __future__ import annotations

import errno
import ipaddress
import os
import random
import select
import socket
import struct
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Iterable, Sequence

from tests.testbed import frames
from tests.testbed.netns import ns_socket

if TYPE_CHECKING:
    from tests.testbed.netbed import NetBed

SO_RCVBUFFORCE = getattr(socket, "SO_RCVBUFFORCE", 33)  # not exported by Python 3.11


# --------------------------------------------------------------------------- waiting


@dataclass(frozen=True)
class Wait:
    """How long to keep collecting after the last packet was sent (see module doc)."""

    settle: float = 0.15
    timeout: float = 1.0


def collect(poll: Callable[[float], int], want: int, wait: Wait) -> int:
    """Call ``poll(max_block_seconds) -> new_items`` until ``want`` items or the wait ends."""
    got = 0
    start = last = time.monotonic()
    while got < want:
        remaining = min(last + wait.settle, start + wait.timeout) - time.monotonic()
        if remaining <= 0:
            break
        new = poll(remaining)
        if new:
            got += new
            last = time.monotonic()
    return got


def _readable(sock: socket.socket, block: float) -> bool:
    """Wait up to ``block`` seconds for ``sock`` to become readable."""
    return bool(select.select([sock], [], [], max(block, 0))[0])


def same_ip(a: str, b: str) -> bool:
    """Compare addresses textually-independently (``2001:db8::1`` vs expanded forms)."""
    return ipaddress.ip_address(a.split("%")[0]) == ipaddress.ip_address(b.split("%")[0])


def family_of(addr: str) -> int:
    """AF_INET or AF_INET6 for a textual address."""
    return socket.AF_INET6 if ipaddress.ip_address(addr).version == 6 else socket.AF_INET


def wildcard(family: int) -> str:
    """The any-address of ``family``, for binding receivers that accept every destination."""
    return "::" if family == socket.AF_INET6 else "0.0.0.0"


def _close_all(socks: Iterable[socket.socket]) -> None:
    """Close every socket; a namespace stays alive while any of its sockets is open."""
    for s in socks:
        s.close()


# --------------------------------------------------------------------------- UDP


SockOpts = Sequence[tuple[int, int, int]]
"""``(level, option, value)`` for ``setsockopt`` on a sending socket, e.g. ``(IPPROTO_IP, IP_TTL, 1)``."""


def udp_exchange(sender_ns: str, victim_ns: str, src: str, dst: str, dport: int, sport: int | None,
                 count: int, payload_len: int, wait: Wait, tx_opts: SockOpts = ()) -> int:
    """Send ``count`` datagrams src->dst:dport; return how many a victim socket received.

    The victim socket is bound to the wildcard address on ``dport`` and only
    datagrams whose source address is ``src`` are counted, so stray traffic
    cannot inflate the result.  ``tx_opts`` are set on the sending socket.
    """
    fam = family_of(dst)
    tx = ns_socket(sender_ns, fam, socket.SOCK_DGRAM)
    try:
        for opt in tx_opts:
            tx.setsockopt(*opt)
        tx.bind((src, sport or 0))
        payload = b"x" * payload_len

        def send() -> None:
            for _ in range(count):
                tx.sendto(payload, (dst, dport))

        return udp_receive(victim_ns, fam, src, dport, count, wait, send)
    finally:
        tx.close()


def udp_receive(victim_ns: str, fam: int, src: str, dport: int, count: int, wait: Wait,
                send: Callable[[], None]) -> int:
    """Bind a victim socket on ``dport``, call ``send()``, return how many datagrams from ``src`` arrived."""
    rx = ns_socket(victim_ns, fam, socket.SOCK_DGRAM)
    try:
        rx.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, 4 << 20)
        rx.bind((wildcard(fam), dport))
        rx.setblocking(False)
        send()

        def poll(block: float) -> int:
            if not _readable(rx, block):
                return 0
            return _drain_udp(rx, src)

        return collect(poll, count, wait)
    finally:
        rx.close()


def inject_udp_exchange(bed: "NetBed", frame: bytes, count: int, wait: Wait = Wait()) -> int:
    """Inject a crafted UDP ``frame`` ``count`` times out of the sender's veth; return how many a victim socket got.

    For frames no socket can send (a VLAN tag on a kernel without 802.1Q
    devices).  The frame's source address and destination port are read
    from its IP and UDP headers (after any VLAN tags).
    """
    off = 12
    while frame[off:off + 2] in (b"\x81\x00", b"\x88\xa8"):
        off += 4
    ethertype, l3 = frame[off:off + 2], off + 2
    if ethertype == b"\x08\x00":
        fam, src, l4 = socket.AF_INET, frame[l3 + 12:l3 + 16], l3 + (frame[l3] & 0x0F) * 4
    else:
        fam, src, l4 = socket.AF_INET6, frame[l3 + 8:l3 + 24], l3 + 40
    dport = struct.unpack("!H", frame[l4 + 2:l4 + 4])[0]
    return udp_receive(bed.victim_ns, fam, str(ipaddress.ip_address(src)), dport, count, wait,
                       lambda: bed.inject(frame, count))


def _drain_udp(rx: socket.socket, src: str) -> int:
    """Read all queued datagrams; return how many came from ``src``."""
    n = 0
    while True:
        try:
            _data, addr = rx.recvfrom(65535)
        except BlockingIOError:
            return n
        n += same_ip(addr[0], src)


# --------------------------------------------------------------------------- TCP

# Linux' initial SYN retransmission timeout is 1 s; waiting less than that
# guarantees exactly one SYN per connection attempt.
_MAX_TCP_WAIT = 0.9


def tcp_exchange(sender_ns: str, victim_ns: str, src: str, dst: str, dport: int, sport: int | None,
                 count: int, wait: Wait) -> int:
    """Make ``count`` connection attempts; return how many the victim's listener accepted.

    Each attempt is a new connection from ``src``, so each sends exactly one
    SYN (the wait is capped below the 1 s SYN retransmission timer).  With
    ``sport=None`` all attempts run in parallel, so a fully dropped batch
    costs one ``settle`` period, not ``count`` connect timeouts.  A fixed
    ``sport`` forces one attempt at a time (the 4-tuples would collide).
    Connections are closed with RST (SO_LINGER 0) so no TIME_WAIT blocks the
    next attempt from the same port.
    """
    fam = family_of(dst)
    wait = Wait(wait.settle, min(wait.timeout, _MAX_TCP_WAIT))
    listener = ns_socket(victim_ns, fam, socket.SOCK_STREAM)
    try:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((wildcard(fam), dport))
        listener.listen(count + 16)
        listener.setblocking(False)
        batches = [count] if sport is None else [1] * count
        return sum(_tcp_batch(sender_ns, listener, fam, src, dst, dport, sport, n, wait) for n in batches)
    finally:
        listener.close()


def _tcp_client(sender_ns: str, fam: int, src: str, sport: int | None) -> socket.socket:
    """Non-blocking client bound to ``src`` that closes with RST (no TIME_WAIT)."""
    client = ns_socket(sender_ns, fam, socket.SOCK_STREAM)
    client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    client.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    client.setblocking(False)
    client.bind((src, sport or 0))
    return client


def _tcp_batch(sender_ns: str, listener: socket.socket, fam: int, src: str, dst: str, dport: int,
               sport: int | None, n: int, wait: Wait) -> int:
    """Start ``n`` connects at once; return how many the listener accepted."""
    clients = [_tcp_client(sender_ns, fam, src, sport) for _ in range(n)]
    accepted: list[socket.socket] = []
    try:
        for client in clients:
            rc = client.connect_ex((dst, dport))
            if rc not in (0, errno.EINPROGRESS):
                raise OSError(rc, f"connect {src}->{dst}:{dport}: {os.strerror(rc)}")
        connected = _await_connects(clients, wait)
        # The victim can only have completed handshakes the sender completed.
        return _accept_from(listener, src, connected, wait, accepted) if connected else 0
    finally:
        _close_all(clients + accepted)


def _await_connects(clients: list[socket.socket], wait: Wait) -> int:
    """Wait for the connects to finish; return how many succeeded (SYN-ACK came back)."""
    pending = set(clients)
    ok = 0

    def poll(block: float) -> int:
        nonlocal ok
        _r, writable, _x = select.select([], list(pending), [], max(block, 0))
        for sock in writable:
            pending.discard(sock)
            ok += sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 0
        return len(writable)

    collect(poll, len(clients), wait)
    return ok


def _accept_from(listener: socket.socket, src: str, want: int, wait: Wait, keep: list[socket.socket]) -> int:
    """Accept up to ``want`` connections from ``src``; accepted sockets go to ``keep`` for closing."""
    def poll(block: float) -> int:
        if not _readable(listener, block):
            return 0
        n = 0
        while True:
            try:
                conn, addr = listener.accept()
            except BlockingIOError:
                return n
            keep.append(conn)
            n += same_ip(addr[0], src)

    return collect(poll, want, wait)


# --------------------------------------------------------------------------- ICMP


def icmp_exchange(sender_ns: str, src: str, dst: str, count: int, payload_len: int, wait: Wait) -> int:
    """Send ``count`` echo requests from ``src``; return how many distinct replies came back.

    Raw sockets in the sender namespace (we are root; no ``ping`` binary
    needed).  A random identifier per call keeps replies to other calls out;
    duplicates are counted once.  The ICMPv6 checksum is filled in by the
    kernel for raw ICMPv6 sockets.
    """
    v6 = family_of(dst) == socket.AF_INET6
    fam, proto = (socket.AF_INET6, socket.IPPROTO_ICMPV6) if v6 else (socket.AF_INET, socket.IPPROTO_ICMP)
    sock = ns_socket(sender_ns, fam, socket.SOCK_RAW, proto)
    ident = random.randrange(1, 0xFFFF)
    try:
        sock.bind((src, 0))
        sock.setblocking(False)
        payload = b"p" * payload_len
        for seq in range(count):
            msg = frames.icmpv6(128, 0, payload, ident, seq) if v6 else frames.icmp(8, 0, payload, ident, seq)
            sock.sendto(msg, (dst, 0))
        seen: set[int] = set()

        def poll(block: float) -> int:
            if not _readable(sock, block):
                return 0
            before = len(seen)
            _drain_echo_replies(sock, v6, ident, dst, seen)
            return len(seen) - before

        return collect(poll, count, wait)
    finally:
        sock.close()


def _drain_echo_replies(sock: socket.socket, v6: bool, ident: int, dst: str, seen: set[int]) -> None:
    """Add the sequence numbers of our echo replies from ``dst`` to ``seen``."""
    reply_type = 129 if v6 else 0
    while True:
        try:
            data, addr = sock.recvfrom(65535)
        except BlockingIOError:
            return
        if not v6:  # raw IPv4 sockets deliver the IP header too
            data = data[(data[0] & 0x0F) * 4 :]
        if len(data) < 8 or not same_ip(addr[0], dst):
            continue
        mtype, _code, _csum, rid, rseq = struct.unpack("!BBHHH", data[:8])
        if mtype == reply_type and rid == ident:
            seen.add(rseq)


def send_trigger(sender_ns: str, src: str, dst: str, port: int = 9) -> None:
    """Send one UDP datagram, just to make the sender's kernel resolve ``dst``'s MAC."""
    tx = ns_socket(sender_ns, family_of(dst), socket.SOCK_DGRAM)
    try:
        tx.bind((src, 0))
        tx.sendto(b"neigh", (dst, port))
    finally:
        tx.close()
