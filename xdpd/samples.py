"""Samples of matched packets: the program's ring buffer -> ``sample`` log events.

A rule with ``sample: N/s`` makes the XDP program hand the headers of up to
N of the packets it matches per second to this module, rate-limited in the
kernel (a flood cannot flood the journal).  Each becomes one ``sample``
event: ``rule``, ``iface``, ``verdict``, ``src``, ``dst``, ``proto``,
``sport``/``dport`` (TCP, UDP), ``length`` (the IP packet's), and
``icmp_type``/``icmp_code`` or ``tcp_flags`` where the packet has them; in
journald ``XDPD_EVENT=sample`` with ``XDPD_RULE``, ``XDPD_SRC`` ..., so
``journalctl -u xdpd XDPD_EVENT=sample -f`` follows them.

The ring buffer is not pinned (bcc cannot pin one it offers
``ringbuf_output`` on); it is found among the maps of the program the
daemon runs, so a restarted daemon that adopted a pinned program reads the
same buffer.  :class:`SampleLogger` polls it in a thread of its own.
"""

from __future__ import annotations

import ctypes as ct
import ipaddress
import os
import threading
import time
from typing import Any

from . import bpfsys, layout
from .maps import PinnedMaps
from .model import PROTO_NAMES, TCP_FLAG_BITS

_PROTO_BY_NUMBER = {n: name for name, n in PROTO_NAMES.items()}
POLL_MS = 200
"""How long one poll waits: the longest a stop waits for the thread."""
NAMES_MAX_AGE = 1.0
"""Seconds the rule and interface names are trusted: a reload may give a
rule's slot to another rule."""


def find_ring(prog_fd: int) -> int | None:
    """A new fd for the program's sample ring buffer (the caller closes it), or None."""
    for map_id in bpfsys.prog_info(prog_fd).map_ids:
        fd = bpfsys.map_fd_by_id(map_id)
        if bpfsys.map_info(fd).name == layout.SAMPLES_MAP:
            return fd
        os.close(fd)
    return None


def describe(s: layout.Sample, rule: str, iface: str) -> dict[str, Any]:
    """The fields of one ``sample`` event (pure: what is logged is decided here)."""
    width = 4 if s.family == 4 else 16
    ip = ipaddress.ip_address
    fields: dict[str, Any] = {
        "rule": rule,
        "iface": iface,
        "verdict": layout.Verdict(s.verdict).label if s.verdict < layout.NVERDICTS else str(s.verdict),
        "src": str(ip(bytes(s.src[:width]))),
        "dst": str(ip(bytes(s.dst[:width]))),
        "proto": _PROTO_BY_NUMBER.get(s.proto, str(s.proto)),
    }
    if s.sport != layout.NO_PORT:
        fields.update(sport=s.sport, dport=s.dport)
    fields["length"] = s.length
    if s.l4 and s.proto == 6:
        fields["tcp_flags"] = ",".join(n for n, bit in TCP_FLAG_BITS.items() if s.tcp_flags & bit) or "none"
    elif s.l4 and s.proto in (1, 58):
        fields.update(icmp_type=s.icmp_type, icmp_code=s.icmp_code)
    if s.vlan < layout.VLAN_IDS:
        fields["vlan"] = s.vlan
    return fields


class SampleLogger:
    """Polls the program's sample ring buffer in a thread and logs each sample."""

    def __init__(self, prog_fd: int, maps: PinnedMaps, log) -> None:
        self.maps, self.log = maps, log
        self._fd = find_ring(prog_fd)
        self._ring = bpfsys.RingBuffer(self._fd, self._on_record) if self._fd is not None else None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="xdpd-samples", daemon=True)
        self._rules: dict[int, str] = {}
        self._ifaces: dict[int, str] = {}
        self._names_read = 0.0

    def start(self) -> "SampleLogger":
        if self._ring is None:
            self.log.warning("samples_unavailable", detail="the program has no sample ring buffer")
        else:
            self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()
        if self._ring is not None:
            self._ring.close()
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._ring.poll(POLL_MS)
            except OSError as e:
                self.log.error("samples_failed", detail=str(e))
                self._stop.wait(1.0)

    def _on_record(self, data: bytes) -> None:
        s = layout.Sample.from_buffer_copy(data.ljust(ct.sizeof(layout.Sample), b"\0"))
        now = time.monotonic()
        if now - self._names_read > NAMES_MAX_AGE:
            self._rules = {k: r.name for k, r in self.maps.rule_slots().items()}
            self._ifaces = {i.ifindex: i.name for i in self.maps.iface_slots().values()}
            self._names_read = now
        rule = self._rules.get(s.rule_slot, f"slot{s.rule_slot}")
        iface = self._ifaces.get(s.ifindex, f"ifindex{s.ifindex}")
        self.log.info("sample", **describe(s, rule, iface))
