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
import threading
from pathlib import Path

from tools.trafficgen.plan import ProgramConfig
from xdpd import bpfsys

SOURCE = Path(__file__).resolve().parent / "trafficgen.bpf.c"
FUNCTION = "xdp_trafficgen"


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
    ]


class GeneratorProgram:
    """The loaded program and its two maps, by fd."""

    def __init__(self) -> None:
        from bcc import BPF  # imported late: importing bcc costs about 65 MB and a second

        self._bpf = BPF(src_file=str(SOURCE).encode(), cflags=["-w"])
        self.prog_fd: int = self._bpf.load_func(FUNCTION.encode(), BPF.XDP).fd
        self._config = self._open_map("config", GenConfig)
        self._frames = self._open_map("frames", ct.c_uint64)
        self.lock = threading.Lock()
        """Held by a flood for its whole run: floods through this program must not overlap."""

    def _open_map(self, name: str, value_type: type) -> bpfsys.Map:
        """A map by fd, its value size checked against the kernel's (a layout mismatch fails loudly)."""
        m = bpfsys.Map(self._bpf[name.encode()].map_fd, ct.c_uint32, value_type, name)
        if m.info().value_size != ct.sizeof(value_type):
            raise RuntimeError(f"{SOURCE}: map {name} holds {m.info().value_size}-byte values, "
                               f"{type(self).__module__} expects {ct.sizeof(value_type)}")
        return m

    def configure(self, config: ProgramConfig) -> None:
        """Set what the next flood sends, and restart the frame counter (the counter mode's n) at 0."""
        value = GenConfig(config.mode, config.src_off, config.src_words, config.ip_csum_off,
                          config.l4_csum_off, config.l4_flags, config.host_mask, config.vary_word,
                          (ct.c_uint8 * 16)(*config.base))
        self._config.update(ct.c_uint32(0), value)
        self._frames.update(ct.c_uint32(0), ct.c_uint64(0))

    def frames_run(self) -> int:
        """How often the program ran since :meth:`configure`: the frames it handed to the kernel to send."""
        return int(self._frames.lookup(ct.c_uint32(0)).value)

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
