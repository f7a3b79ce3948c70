"""A flood's receiver: a native XDP program counting UDP datagrams per source and checking their checksums.

:class:`SourceCounter` compiles ``sourcecount.bpf.c`` (beside this file)
with bcc, attaches it in native mode to an interface inside a namespace
(the victim end of a :class:`tests.testbed.netbed.NetBed`), and reads what
it counted: frames per source (by the low ``slot_bits`` bits of the source
address), and frames whose IPv4 header or UDP checksum is wrong.  It drops
what it counts, so it measures a generator, not the stack; everything else
(ARP, ND, other ports) passes.

Nothing is pinned: the program lives as long as the object (and the
attachment as long as the interface, or until :meth:`close`).
"""

from __future__ import annotations

import array
import ctypes as ct
import time
from dataclasses import dataclass
from pathlib import Path

from tests.testbed.netns import call_in_netns
from tests.testbed.xdplink import detach_xdp
from xdpd import bpfsys

SOURCE = Path(__file__).resolve().parent / "sourcecount.bpf.c"
XDP_FLAGS_DRV_MODE = 1 << 2


@dataclass(frozen=True)
class Totals:
    frames: int
    ip_bad: int
    """IPv4 header checksum wrong."""
    l4_bad: int
    """UDP checksum wrong."""
    l4_unchecked: int
    """UDP checksum zero over IPv4, or a datagram too long to check."""


class SourceCounter:
    """The counting program, attached natively to ``ifname`` in ``netns`` (see the module docstring)."""

    def __init__(self, netns: str, ifname: str, dport: int = 9, slot_bits: int = 20) -> None:
        from bcc import BPF  # imported late: a test bed without bcc still imports this module

        self.netns, self.ifname, self.slots = netns, ifname, 1 << slot_bits
        self._bpf = BPF(src_file=str(SOURCE).encode(), cflags=["-w", f"-DDPORT={dport}", f"-DSLOT_BITS={slot_bits}"])
        fn = self._bpf.load_func(b"xdp_sourcecount", BPF.XDP)
        self._per_source = bpfsys.Map(self._bpf[b"per_source"].map_fd, ct.c_uint32, ct.c_uint32, "per_source")
        self._totals = bpfsys.Map(self._bpf[b"totals"].map_fd, ct.c_uint32, ct.c_uint64, "totals")
        call_in_netns(netns, lambda: BPF.attach_xdp(ifname.encode(), fn, XDP_FLAGS_DRV_MODE),
                      name=f"attach-{ifname}")
        self._attached = True

    def totals(self) -> Totals:
        values = [int(self._totals.lookup(ct.c_uint32(i)).value) for i in range(4)]
        return Totals(*values)

    def per_source(self) -> array.array:
        """Frames counted per slot (the low bits of the source address), as an ``array('I')``."""
        counts = array.array("I")
        counts.frombytes(self._per_source.array_values())
        return counts

    def wait_for(self, frames: int, timeout: float = 2.0) -> Totals:
        """The totals once ``frames`` frames were counted, or when the count stops growing (checked every 20 ms)."""
        deadline = time.monotonic() + timeout
        now = self.totals()
        while now.frames < frames and time.monotonic() < deadline:
            time.sleep(0.02)
            last, now = now, self.totals()
            if now == last:
                break
        return now

    def reset(self) -> None:
        """Zero every count."""
        keys = array.array("I", range(self.slots)).tobytes()
        self._per_source.update_batch(keys, bytes(4 * self.slots))
        for i in range(4):
            self._totals.update(ct.c_uint32(i), ct.c_uint64(0))

    def close(self) -> None:
        """Detach (if the interface is still there) and unload."""
        if self._attached:
            self._attached = False
            detach_xdp(self.netns, self.ifname)
        self._bpf.cleanup()

    def __enter__(self) -> "SourceCounter":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
