"""The generator's XDP program (``trafficgen.bpf.c`` beside this file), compiled by bcc and configured per flood.

One compile serves any number of floods: what a flood sends (where the
source address is, how to vary it) is written into the program's
``config`` map, and its frame counter reset, before each flood.  Floods
through one :class:`GeneratorProgram` must not overlap (they would share
that map); :meth:`tools.trafficgen.flood.TrafficGen.flood` holds
:attr:`GeneratorProgram.lock` while it runs.  Nothing is pinned and nothing is attached: the program lives as long
as this object (bcc holds its fd).
"""

from __future__ import annotations

import ctypes as ct
import errno
import functools
import threading
from dataclasses import dataclass
from pathlib import Path

from tools.trafficgen.liverun import prog_test_run_live
from tools.trafficgen.plan import ProgramConfig
from xdpd import bpfsys

SOURCE = Path(__file__).resolve().parent / "trafficgen.bpf.c"
FUNCTION = "xdp_trafficgen"
MAX_COPIES = 64
"""Entries of the program's ``out_copies`` map (``MAX_COPIES`` in the C source)."""


@dataclass(frozen=True)
class RelayPlan:
    """A relayed flood's part of the program's configuration (see :mod:`.relay`)."""

    out_ifindex: int = 0
    """The sending interface, in the relay's namespace; 0: live frames (XDP_TX)."""
    copies: int = 1
    """Frames out per frame fed in (2 to :data:`MAX_COPIES`: a broadcast redirect), while ..."""
    budget: int = 0
    """... that many more still fit in the flood's count."""


class GenConfig(ct.Structure):
    """``struct gen_config`` of the C source, field for field."""

    _fields_ = [
        ("mode", ct.c_uint32),
        ("src_off", ct.c_uint32),
        ("src_words", ct.c_uint32),
        ("ip_csum_off", ct.c_uint32),
        ("l4_csum_off", ct.c_uint32),
        ("l4_flags", ct.c_uint32),
        ("host_mask", ct.c_uint32),
        ("vary_word", ct.c_uint32),
        ("base", ct.c_uint8 * 16),
        ("out_ifindex", ct.c_uint32),
        ("copies", ct.c_uint32),
        ("budget", ct.c_uint64),
    ]


class GeneratorProgram:
    """The loaded program and its two maps, by fd."""

    def __init__(self) -> None:
        from bcc import BPF  # imported late: importing bcc costs about 65 MB and a second

        self._bpf = BPF(src_file=str(SOURCE).encode(), cflags=["-w"])
        self.prog_fd: int = self._bpf.load_func(FUNCTION.encode(), BPF.XDP).fd
        self._config = self._open_map("config", GenConfig)
        self._frames = self._open_map("frames", ct.c_uint64)
        self._copies = self._open_map("out_copies", ct.c_uint32)
        if self._copies.info().max_entries != MAX_COPIES:
            raise RuntimeError(f"{SOURCE}: out_copies holds {self._copies.info().max_entries} entries, "
                               f"{type(self).__module__} expects {MAX_COPIES}")
        self.lock = threading.Lock()
        """Held by a flood for its whole run: floods through this program must not overlap."""

    def _open_map(self, name: str, value_type: type) -> bpfsys.Map:
        """A map by fd, its value size checked against the kernel's (a layout mismatch fails loudly)."""
        m = bpfsys.Map(self._bpf[name.encode()].map_fd, ct.c_uint32, value_type, name)
        if m.info().value_size != ct.sizeof(value_type):
            raise RuntimeError(f"{SOURCE}: map {name} holds {m.info().value_size}-byte values, "
                               f"{type(self).__module__} expects {ct.sizeof(value_type)}")
        return m

    def configure(self, config: ProgramConfig, relay: RelayPlan | None = None) -> None:
        """Set what the next flood sends, and restart the frame counter (the counter mode's n) at 0.

        ``relay``: where live frames are refused (:mod:`.relay`), the
        interface the program redirects each frame out of, and how many
        frames leave per frame fed in.  Call it from a thread in that
        interface's network namespace: the copies' map looks the index up
        there.
        """
        relay = relay or RelayPlan()
        for i in range(MAX_COPIES):
            if i < relay.copies and relay.copies > 1:
                self._copies.update(ct.c_uint32(i), ct.c_uint32(relay.out_ifindex))
            else:
                self._copies.delete(ct.c_uint32(i))
        value = GenConfig(config.mode, config.src_off, config.src_words, config.ip_csum_off,
                          config.l4_csum_off, config.l4_flags, config.host_mask, config.vary_word,
                          (ct.c_uint8 * 16)(*config.base), relay.out_ifindex, relay.copies, relay.budget)
        self._config.update(ct.c_uint32(0), value)
        self._frames.update(ct.c_uint32(0), ct.c_uint64(0))

    def frames_run(self) -> int:
        """How often the program ran since :meth:`configure`: the frames it handed to the kernel to send."""
        return int(self._frames.lookup(ct.c_uint32(0)).value)

    @functools.cached_property
    def live_frames(self) -> bool:
        """Whether this kernel runs the program in live-frames mode (some refuse it with EPERM).

        Found out once, with one frame run on no device: the program sends it
        to the loopback device, which takes no XDP frames, so it goes nowhere.
        """
        try:
            prog_test_run_live(self.prog_fd, bytes(60), 1, 0)
        except bpfsys.BpfError as e:
            if e.errno == errno.EPERM:
                return False
            raise
        return True

    def close(self) -> None:
        """Unload the program and its maps (bcc closes the fds)."""
        self._bpf.cleanup()


_shared: GeneratorProgram | None = None
_shared_lock = threading.Lock()


def shared_program() -> GeneratorProgram:
    """The process's one generator program, compiled on first use (about 0.3 s)."""
    global _shared
    with _shared_lock:
        if _shared is None:
            _shared = GeneratorProgram()
        return _shared
