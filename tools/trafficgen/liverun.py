"""BPF_PROG_TEST_RUN in live-frames mode: an XDP program's verdicts carried out, ``repeat`` times.

Kernel >= 5.18 (Documentation/bpf/bpf_prog_run.rst, "Running XDP programs
in live frame mode").  What the kernel does, and what callers rely on:

- the program runs once per repetition, in batches of ``batch_size``
  (default 64, at most 256); each run gets its own page holding the frame,
  and the frames a batch sends are flushed together at its end;
- the verdict is acted on: XDP_TX becomes a redirect out of the interface
  ``ingress_ifindex`` names (so it needs a driver with ``ndo_xdp_xmit``,
  which veth has), XDP_PASS hands the frame to that interface's stack;
- the ifindex is looked up in the network namespace of the calling thread;
- nothing comes back: no verdict, no output frame, and a frame the
  interface refuses is dropped silently (tracepoint ``xdp:xdp_redirect_err``);
- pages are recycled without being rewritten, so a run may see the frame as
  an earlier run left it; programs must write absolute values;
- the call blocks until every repetition ran, and a signal to the calling
  thread ends it early with EINTR (the frames sent by then are gone).

The ctypes call uses xdpd.bpfsys's libbpf handle and its
``bpf_test_run_opts`` layout, so there is one binding of each.
"""

from __future__ import annotations

import ctypes as ct

from xdpd import bpfsys

BPF_F_TEST_XDP_LIVE_FRAMES = 1 << 1


class XdpMd(ct.Structure):
    """``struct xdp_md``: the context a test run starts the program with."""

    _fields_ = [(name, ct.c_uint32) for name in
                ("data", "data_end", "data_meta", "ingress_ifindex", "rx_queue_index", "egress_ifindex")]


def prog_test_run_live(prog_fd: int, frame: bytes, repeat: int, ifindex: int, batch_size: int = 0) -> None:
    """Run XDP program ``prog_fd`` ``repeat`` times on ``frame`` as if it arrived on ``ifindex``, acting on each verdict."""
    data = ct.create_string_buffer(frame, len(frame))
    ctx = XdpMd(data_end=len(frame), ingress_ifindex=ifindex)
    opts = bpfsys._TestRunOpts(
        sz=ct.sizeof(bpfsys._TestRunOpts),
        data_in=ct.addressof(data),
        data_size_in=len(frame),
        ctx_in=ct.addressof(ctx),
        ctx_size_in=ct.sizeof(ctx),
        repeat=repeat,
        flags=BPF_F_TEST_XDP_LIVE_FRAMES,
        batch_size=batch_size,
    )
    bpfsys._check(bpfsys._libbpf().bpf_prog_test_run_opts(prog_fd, ct.byref(opts)),
                  f"BPF_PROG_TEST_RUN (live frames, ifindex {ifindex}, {repeat} frames)")
