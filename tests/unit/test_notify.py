"""sd_notify without blocking: a notify socket nobody reads never stalls the daemon."""

from __future__ import annotations

import socket
import time

from xdpd.notify import Notifier


def _socket(tmp_path, monkeypatch) -> tuple[socket.socket, str]:
    """A notify socket, named in $NOTIFY_SOCKET as systemd does."""
    path = str(tmp_path / "notify")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    monkeypatch.setenv("NOTIFY_SOCKET", path)
    return sock, path


def _read_all(sock: socket.socket) -> list[str]:
    sock.setblocking(False)
    out = []
    try:
        while True:
            out.append(sock.recv(65536).decode())
    except BlockingIOError:
        return out


def test_a_socket_nobody_reads_costs_nothing_and_keeps_the_state_lines(tmp_path, monkeypatch):
    sock, path = _socket(tmp_path, monkeypatch)
    n = Notifier.from_env()
    started = time.monotonic()
    sent = [n.notify(f"STATUS=update {i}") for i in range(5000)]
    assert time.monotonic() - started < 2.0          # a blocking sendto would never return here
    assert sent[0] and not sent[-1] and n.dropped == sent.count(False) > 4000
    assert not n.notify("READY=1\nSTATUS=enforcing")  # the queue is still full: READY=1 is kept
    queued = _read_all(sock)
    assert queued[:2] == ["STATUS=update 0", "STATUS=update 1"] and len(queued) < 5000
    assert n.notify("WATCHDOG=1")                     # room again: READY=1 goes out with the next message
    assert _read_all(sock) == ["READY=1\nWATCHDOG=1"]
    assert n.notify("STATUS=x") and _read_all(sock) == ["STATUS=x"]   # delivered once, not again
    n.close()
    sock.close()


def test_a_newer_state_line_replaces_the_one_carried_over(tmp_path, monkeypatch):
    sock, path = _socket(tmp_path, monkeypatch)
    n = Notifier.from_env()
    while n.notify("STATUS=filling"):
        pass
    assert not n.notify("RELOADING=1")
    assert not n.notify("READY=1\nSTATUS=reload applied")
    _read_all(sock)
    assert n.notify("READY=1\nSTATUS=again")
    assert _read_all(sock) == ["RELOADING=1\nREADY=1\nSTATUS=again"]


def test_no_socket_or_nobody_listening(tmp_path, monkeypatch):
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    none = Notifier.from_env()
    assert none.address is None and not none.notify("READY=1") and none.dropped == 0
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "nobody"))
    gone = Notifier.from_env()
    assert not gone.notify("READY=1") and gone.dropped == 1
    monkeypatch.setenv("NOTIFY_SOCKET", "@xdpdt-abstract")
    assert Notifier.from_env().address == "\0xdpdt-abstract"
