"""Where live frames are refused: frames fed through the parking pair, where the program redirects them out.

Some kernels refuse BPF_PROG_TEST_RUN's live-frames mode outright (EPERM
for any program, while plain test runs work: seen on this project's VMs
from kernel 6.18.44-fc-v1300 on).  The relay keeps what the receiver sees
the same: the generator program still runs once per frame and rewrites it,
and the frame still reaches the peer of the sending veth as an XDP frame
(a redirect out of the sending veth, ``ndo_xdp_xmit``), so the peer's
ring, counters and requirements are those of live frames.  Only the
sender's side differs.  The parking pair (:mod:`.park`) is up; an
AF_PACKET socket writes the frame into its peer end with ``sendmmsg``
(:data:`BATCH` frames a call, the qdisc bypassed), the program runs on the
other end in native mode, and its ``out_ifindex`` is the sending veth's.

Each frame then costs an skb, the copy of it into an XDP frame and a NAPI
poll on each veth it crosses: the relay sends about a third of the live
rate here (see :mod:`tools.trafficgen`), and the receiver gets its frames
in smaller batches.
"""

from __future__ import annotations

import ctypes as ct
import errno
import os
import socket
from typing import Callable

from tests.testbed.netns import ns_socket
from tools.trafficgen.plan import MODE_KEEP, FloodPlan
from tools.trafficgen.program import RelayPlan

COPIES = 16
"""Frames out per frame fed in, for a flood of one unchanged frame (no ``sources``).

Each fed frame costs about 2 us here (an skb, its copy into an XDP frame,
a NAPI poll on each veth); a copy, the page it is cloned into.  At most
:data:`IN_FLIGHT` fed frames wait at a time, so their copies fit the
receiving veth's 256-frame ring even when its NAPI runs late."""
IN_FLIGHT = 12
"""Fed frames the socket's send buffer holds before sendmmsg() waits for the relay to take them."""

SKB_TRUESIZE = 768
"""What the kernel charges a socket for an skb of a short frame (data, skb and shared info)."""
SOL_PACKET = 263
PACKET_QDISC_BYPASS = 20
BATCH = 1024
"""Frames per sendmmsg() call (the kernel's UIO_MAXIOV limit on vlen)."""

_libc = ct.CDLL(None, use_errno=True)


class _IoVec(ct.Structure):
    _fields_ = [("iov_base", ct.c_void_p), ("iov_len", ct.c_size_t)]


class _MsgHdr(ct.Structure):
    _fields_ = [("msg_name", ct.c_void_p), ("msg_namelen", ct.c_uint32), ("msg_iov", ct.POINTER(_IoVec)),
                ("msg_iovlen", ct.c_size_t), ("msg_control", ct.c_void_p), ("msg_controllen", ct.c_size_t),
                ("msg_flags", ct.c_int)]


class _MMsgHdr(ct.Structure):
    _fields_ = [("msg_hdr", _MsgHdr), ("msg_len", ct.c_uint)]


def relay_plan(plan: FloodPlan, out_ifindex: int) -> RelayPlan:
    """The program's part of a relayed flood: copies only of a frame sent unchanged."""
    copies = COPIES if plan.program.mode == MODE_KEEP and plan.count >= COPIES else 1
    return RelayPlan(out_ifindex, copies, plan.count)


def fed_frames(out: int, count: int, copies: int) -> int:
    """Frames to feed for the first ``out`` frames of a flood of ``count``.

    The program sends ``copies`` per fed frame while that many more fit in
    ``count``, then one each (:data:`RelayPlan.budget`).
    """
    whole = count // copies * copies
    return -(-min(out, whole) // copies) + max(0, out - whole)


class Feeder:
    """An AF_PACKET socket in ``ns`` bound to ``ifname``: :meth:`send` writes one frame ``count`` times."""

    def __init__(self, ns: str, ifname: str) -> None:
        self.sock = ns_socket(ns, socket.AF_PACKET, socket.SOCK_RAW, 0)
        try:
            self.sock.setsockopt(SOL_PACKET, PACKET_QDISC_BYPASS, 1)
            # The send buffer is what holds fed frames back (backpressure):
            # about IN_FLIGHT skbs of a small frame (the kernel doubles it).
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, IN_FLIGHT * SKB_TRUESIZE // 2)
            self.sock.bind((ifname, 0))
        except BaseException:
            self.sock.close()
            raise
        self._frame = b""
        self._buf = ct.create_string_buffer(0)
        self._iov = _IoVec()
        self._msgs = (_MMsgHdr * BATCH)()

    def _prepare(self, frame: bytes) -> None:
        """Point every message of the batch at one copy of ``frame``."""
        self._frame = frame
        self._buf = ct.create_string_buffer(frame, len(frame))
        self._iov = _IoVec(ct.addressof(self._buf), len(frame))
        for m in self._msgs:
            m.msg_hdr.msg_iov = ct.pointer(self._iov)
            m.msg_hdr.msg_iovlen = 1

    def send(self, frame: bytes, count: int) -> None:
        """Write ``frame`` ``count`` times; blocks while the socket's send buffer is full.

        Raises OSError if the kernel refuses a frame (an interface gone or
        down, a frame longer than its MTU).
        """
        if frame != self._frame:
            self._prepare(frame)
        fd, msgs = self.sock.fileno(), ct.byref(self._msgs)
        left = count
        while left:
            n = _libc.sendmmsg(fd, msgs, min(left, BATCH), 0)
            if n < 0:
                err = ct.get_errno()
                if err == errno.EINTR:
                    continue
                raise OSError(err, f"sendmmsg on the relay: {os.strerror(err)}")
            left -= n

    def transmit(self, frame: bytes, count: int, copies: int) -> Callable[[int], None]:
        """``transmit(n)``: send the next ``n`` of the flood's ``count`` frames, ``copies`` per fed frame."""
        out = 0

        def send_next(n: int) -> None:
            nonlocal out
            self.send(frame, fed_frames(out + n, count, copies) - fed_frames(out, count, copies))
            out += n

        return send_next

    def close(self) -> None:
        self.sock.close()

