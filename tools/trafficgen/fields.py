"""Where a frame keeps the fields the generator rewrites: the source address and the checksums over it.

The generator's XDP program parses nothing: it is told, per flood, at which
offsets the source address, the IPv4 header checksum and the L4 checksum
lie.  :func:`locate` finds them once, in Python, for the frame the caller
built (usually with :mod:`tests.testbed.frames`).

An L4 checksum is located only where changing the source address changes
it and the L4 header is in this frame: TCP, UDP and ICMPv6 (their checksums
cover a pseudo header with the addresses), not ICMPv4, and not in a
fragment other than the first.  A first fragment's checksum covers the
whole datagram, but the incremental update is still right: it only
accounts for the changed address.
"""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass

from tests.testbed.frames import (
    ETH_P_8021AD, ETH_P_8021Q, ETH_P_IPV4, ETH_P_IPV6, IPPROTO_AH, IPPROTO_DSTOPTS, IPPROTO_FRAGMENT,
    IPPROTO_HOPOPTS, IPPROTO_ICMPV6, IPPROTO_ROUTING, IPPROTO_TCP, IPPROTO_UDP,
)

IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# Offset of the checksum inside each L4 header whose checksum covers the addresses.
_L4_CSUM_OFFSET = {IPPROTO_TCP: 16, IPPROTO_UDP: 6, IPPROTO_ICMPV6: 2}
_V6_OPTION_HEADERS = (IPPROTO_HOPOPTS, IPPROTO_ROUTING, IPPROTO_DSTOPTS)


class FrameError(ValueError):
    """The frame has no source address the generator can rewrite; the message says what is wrong."""


@dataclass(frozen=True)
class FrameFields:
    """Offsets into one frame (0: the field is absent)."""

    version: int
    """4 or 6."""
    src: IpAddress
    src_off: int
    ip_csum_off: int
    """The IPv4 header checksum; 0 for IPv6."""
    l4_proto: int | None
    """TCP, UDP or ICMPv6 when :attr:`l4_csum_off` is set."""
    l4_csum_off: int


def locate(frame: bytes) -> FrameFields:
    """The fields of an Ethernet frame carrying IPv4 or IPv6, after any 802.1Q/802.1ad tags.

    Raises :class:`FrameError` for anything else, and for a frame too short
    for the headers it announces.
    """
    off = 12
    while _u16(frame, off, "EtherType") in (ETH_P_8021Q, ETH_P_8021AD):
        off += 4
    ethertype, l3 = _u16(frame, off, "EtherType"), off + 2
    if ethertype == ETH_P_IPV4:
        return _locate_v4(frame, l3)
    if ethertype == ETH_P_IPV6:
        return _locate_v6(frame, l3)
    raise FrameError(f"EtherType 0x{ethertype:04x} is neither IPv4 nor IPv6: no source address to rewrite")


def _locate_v4(frame: bytes, l3: int) -> FrameFields:
    _need(frame, l3 + 20, "IPv4 header")
    if frame[l3] >> 4 != 4:
        raise FrameError(f"IP version {frame[l3] >> 4} in an IPv4 frame")
    ihl = (frame[l3] & 0x0F) * 4
    if ihl < 20:
        raise FrameError(f"IPv4 header length {ihl} below 20")
    _need(frame, l3 + ihl, "IPv4 options")
    src = ipaddress.IPv4Address(frame[l3 + 12:l3 + 16])
    proto, frag_offset = frame[l3 + 9], _u16(frame, l3 + 6, "fragment field") & 0x1FFF
    l4_csum = _l4_csum_off(frame, l3 + ihl, proto) if frag_offset == 0 and proto != IPPROTO_ICMPV6 else 0
    return FrameFields(4, src, l3 + 12, l3 + 10, proto if l4_csum else None, l4_csum)


def _locate_v6(frame: bytes, l3: int) -> FrameFields:
    _need(frame, l3 + 40, "IPv6 header")
    if frame[l3] >> 4 != 6:
        raise FrameError(f"IP version {frame[l3] >> 4} in an IPv6 frame")
    src = ipaddress.IPv6Address(frame[l3 + 8:l3 + 24])
    nh, off = frame[l3 + 6], l3 + 40
    while nh in _V6_OPTION_HEADERS or nh in (IPPROTO_AH, IPPROTO_FRAGMENT):
        _need(frame, off + 8, f"IPv6 extension header {nh}")
        if nh == IPPROTO_FRAGMENT and _u16(frame, off + 2, "fragment field") >> 3:
            return FrameFields(6, src, l3 + 8, 0, None, 0)  # not the first fragment: no L4 header
        length = 8 if nh == IPPROTO_FRAGMENT else (frame[off + 1] + 2) * 4 if nh == IPPROTO_AH else (frame[off + 1] + 1) * 8
        nh, off = frame[off], off + length
    l4_csum = _l4_csum_off(frame, off, nh)
    return FrameFields(6, src, l3 + 8, 0, nh if l4_csum else None, l4_csum)


def _l4_csum_off(frame: bytes, l4: int, proto: int) -> int:
    rel = _L4_CSUM_OFFSET.get(proto)
    if rel is None:
        return 0
    _need(frame, l4 + rel + 2, f"the checksum of the protocol {proto} header")
    return l4 + rel


def _need(frame: bytes, end: int, what: str) -> None:
    if len(frame) < end:
        raise FrameError(f"frame of {len(frame)} bytes ends before {what} (needs {end})")


def _u16(frame: bytes, off: int, what: str) -> int:
    _need(frame, off + 2, what)
    return struct.unpack_from("!H", frame, off)[0]
