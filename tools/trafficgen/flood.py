"""Send one frame many times out of a veth in a network namespace, as fast as possible or at a rate.

:meth:`TrafficGen.flood` checks and plans first (:mod:`.plan`: nothing
touches the kernel before every argument is accepted), then configures the
generator program (:mod:`.program`), sends from a thread inside the
namespace chunk by chunk (:mod:`.liverun`, or :mod:`.relay` where the
kernel refuses live frames), and reads the interface's
counters (:mod:`.link`) to say what became of the frames.  :func:`flood`
is the same for a single flood.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass
from typing import Callable

from tests.testbed.netns import NETNS_RUN_DIR, call_in_netns
from tools.trafficgen import link
from tools.trafficgen.link import LinkError, LinkState
from tools.trafficgen.liverun import prog_test_run_live
from tools.trafficgen.park import Parking
from tools.trafficgen.plan import DEFAULT_BATCH, FloodPlan, Sources, next_chunk, plan_flood
from tools.trafficgen.program import GeneratorProgram, RelayPlan, shared_program
from tools.trafficgen.relay import Feeder, relay_plan

SETTLE_SECONDS = 0.1
"""How long the counters may take to catch up with the last frames (they do not wait for the peer's NAPI)."""


@dataclass(frozen=True)
class FloodResult:
    """What one flood did.

    ``delivered`` and ``dropped`` are the changes of the sending veth's
    ``tx_packets`` and ``tx_dropped`` over the flood: frames its peer took
    in, and frames that found the peer's ring full (see :mod:`.link`).
    Other traffic on the link in the meantime counts too.
    """

    sent: int
    """Frames the program ran on and handed to the kernel to transmit."""
    seconds: float
    """From the start of the first test run to the end of the last, pauses of a paced flood included."""
    delivered: int
    dropped: int

    @property
    def pps(self) -> float:
        return self.sent / self.seconds if self.seconds > 0 else 0.0

    @property
    def vanished(self) -> int:
        """Frames in neither counter: what a peer without native XDP or GRO refuses."""
        return max(0, self.sent - self.delivered - self.dropped)


class FloodDeadline(TimeoutError):
    """The flood hit its time limit before sending every frame; :attr:`result` says what it did send."""

    def __init__(self, result: FloodResult, count: int, seconds_max: float) -> None:
        super().__init__(f"time limit of {seconds_max:g} s reached after {result.sent:,} of {count:,} frames "
                         f"({result.pps / 1e6:.2f} Mpps)")
        self.result = result


class TrafficGen:
    """Floods out of one interface: ``TrafficGen(netns, ifname)``, then :meth:`flood` as often as needed.

    While open, the generator program is parked in the sender's namespace
    (:mod:`.park`: a down veth pair, about 50 ms to set up and to remove),
    which makes each test run cost microseconds instead of 24 ms: what lets
    a paced flood send in 2 ms chunks.  ``program`` defaults to the
    process's shared generator; floods through one program run one at a
    time.  ``relay``: send through :mod:`.relay` (True) or live frames
    (False); by default live frames, unless the kernel refuses them
    (:attr:`.program.GeneratorProgram.live_frames`).  Use as a context
    manager, or call :meth:`close`.

    Raises :class:`.link.LinkError` if the namespace or the interface does
    not exist.
    """

    def __init__(self, netns: str, ifname: str, program: GeneratorProgram | None = None,
                 relay: bool | None = None) -> None:
        self.netns, self.ifname = netns, ifname
        if not os.path.exists(os.path.join(NETNS_RUN_DIR, netns)):
            raise LinkError(f"no network namespace {netns!r} (no {NETNS_RUN_DIR}/{netns})")
        self.ifindex = call_in_netns(netns, lambda: link.read_link(ifname), name=f"trafficgen-{ifname}").ifindex
        self.program = program or shared_program()
        if relay is None:
            with self.program.lock:
                relay = not self.program.live_frames
        self.live = not relay
        self._parking: Parking | None = Parking(netns, self.program.prog_fd, up=not self.live)
        self._feeder: Feeder | None = None
        if not self.live:
            try:
                self._feeder = Feeder(netns, self._parking.peer)
            except BaseException:
                self.close()
                raise

    def flood(self, frame: bytes, count: int, *, sources: Sources | None = None, batch_size: int = DEFAULT_BATCH,
              rate_pps: int | None = None, seconds_max: float = 10.0) -> FloodResult:
        """Transmit ``count`` copies of ``frame``; block until done.

        The frames arrive at the veth's peer as if sent by the wire; the
        peer needs a native XDP program, or GRO on (:func:`.link.set_gro`),
        to take them.  ``sources`` rewrites each frame's source address
        (checksums kept valid); ``rate_pps`` paces the flood (on average
        over 2 ms), otherwise frames go as fast as the kernel sends them.
        ``seconds_max`` bounds the run: a paced flood that cannot make it
        is refused at once, an unpaced one that runs out of time raises
        :class:`FloodDeadline`.  ``batch_size`` frames are flushed to the
        peer together: above 64 (NAPI's budget) the peer's 256-frame ring
        can overflow (see :attr:`FloodResult.dropped`).

        Raises :class:`.plan.FloodRefused` for arguments out of bounds,
        :class:`.fields.FrameError` for a frame whose source cannot be
        rewritten, :class:`.link.LinkError` for a down interface.
        """
        plan = plan_flood(frame, count, batch_size=batch_size, sources=sources, rate_pps=rate_pps,
                          seconds_max=seconds_max)
        if self._parking is None:
            raise RuntimeError("TrafficGen is closed")
        prog = self.program
        stop = threading.Event()
        relay: RelayPlan | None = None
        if self._feeder is None:
            transmit = lambda size: prog_test_run_live(prog.prog_fd, plan.frame, size, self.ifindex,  # noqa: E731
                                                       plan.batch_size)
        else:
            relay = relay_plan(plan, self.ifindex)
            transmit = self._feeder.transmit(plan.frame, plan.count, relay.copies)

        def run() -> tuple[LinkState, LinkState, float]:
            prog.configure(plan.program, relay)  # in the namespace: the relay's map resolves the index there
            return _send(plan, self.ifname, transmit, stop)

        with prog.lock:
            try:
                before, after, seconds = call_in_netns(self.netns, run, name=f"trafficgen-{self.ifname}")
            finally:
                stop.set()  # an interrupted caller stops the thread at its next chunk
            result = FloodResult(prog.frames_run(), seconds, after.tx_packets - before.tx_packets,
                                 after.tx_dropped - before.tx_dropped)
        if result.sent < count:
            raise FloodDeadline(result, count, seconds_max)
        return result

    def close(self) -> None:
        """Unpark the program (the program itself stays loaded for other floods)."""
        if self._feeder is not None:
            self._feeder.close()
            self._feeder = None
        if self._parking is not None:
            self._parking.close()
            self._parking = None

    def __enter__(self) -> "TrafficGen":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def flood(netns: str, ifname: str, frame: bytes, count: int, *, sources: Sources | None = None,
          batch_size: int = DEFAULT_BATCH, rate_pps: int | None = None, seconds_max: float = 10.0,
          program: GeneratorProgram | None = None) -> FloodResult:
    """One flood out of ``ifname`` in namespace ``netns``: :meth:`TrafficGen.flood` of a generator opened for it.

    Opening and closing the generator adds about 50 ms outside the
    measured time; for many floods, keep a :class:`TrafficGen` open.
    """
    with TrafficGen(netns, ifname, program) as gen:
        return gen.flood(frame, count, sources=sources, batch_size=batch_size, rate_pps=rate_pps,
                         seconds_max=seconds_max)


def _send(plan: FloodPlan, ifname: str, transmit: Callable[[int], None],
          stop: threading.Event) -> tuple[LinkState, LinkState, float]:
    """The chunks of one flood, from a thread in the sender's namespace; (counters before, after, seconds).

    ``transmit(n)`` sends the next ``n`` frames (live frames, or the relay).
    """
    before = link.read_link(ifname)
    if not before.up:
        raise LinkError(f"interface {ifname} is down: XDP_TX frames would be dropped")
    sent, pps_seen = 0, None
    start = time.perf_counter()
    while sent < plan.count:
        elapsed = time.perf_counter() - start
        size, wait = next_chunk(plan, sent, elapsed, pps_seen)
        if elapsed + wait >= plan.seconds_max or (wait and stop.wait(wait)) or stop.is_set():
            break
        transmit(size)
        sent += size
        pps_seen = sent / (time.perf_counter() - start)
    seconds = time.perf_counter() - start
    return before, _settled(ifname, before, sent), seconds


def _settled(ifname: str, before: LinkState, sent: int) -> LinkState:
    """The counters once they account for every frame sent, or stop changing, or :data:`SETTLE_SECONDS` passed."""
    deadline = time.monotonic() + SETTLE_SECONDS
    now = link.read_link(ifname)
    while (now.tx_packets - before.tx_packets) + (now.tx_dropped - before.tx_dropped) < sent:
        if time.monotonic() >= deadline:
            break
        time.sleep(0.01)
        last, now = now, link.read_link(ifname)
        if now == last:
            break
    return now
