"""The Python layout (xdpd/layout.py) against the compiled program's maps, as the kernel reports them."""

from __future__ import annotations

import ctypes as ct
import os

import pytest

from xdpd import bpfsys, layout
from xdpd.maps import LayoutMismatch, PinnedMaps, check_sizes

pytestmark = pytest.mark.kernel


def test_every_map_has_the_key_and_value_size_the_python_layout_says(prog):
    maps_dir = prog.compiled.maps_dir
    assert sorted(os.listdir(maps_dir)) == sorted(layout.MAPS)
    for name, (key_type, value_type) in layout.MAPS.items():
        fd = bpfsys.obj_get(os.path.join(maps_dir, name))
        try:
            info = bpfsys.map_info(fd)
        finally:
            os.close(fd)
        assert (info.key_size, info.value_size) == (ct.sizeof(key_type), ct.sizeof(value_type)), name


def test_opening_maps_with_a_drifted_layout_fails_loudly(prog):
    class Wider(ct.Structure):
        _fields_ = [("w", ct.c_uint64 * (layout.MASK_WORDS + 1))]

    m = bpfsys.Map.open_pinned(os.path.join(prog.compiled.maps_dir, "proto_mask"), ct.c_uint32, Wider)
    try:
        with pytest.raises(LayoutMismatch, match=r"map proto_mask: the kernel says key 4 bytes, value 16 bytes; "
                                                 r"xdpd/layout.py says key 4, value 24"):
            check_sizes(m)
    finally:
        m.close()
    PinnedMaps(prog.compiled.maps_dir).close()   # the real layout opens cleanly
