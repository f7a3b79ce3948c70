"""Pure-Python builder for crafted Ethernet frames.

Used to feed ``BPF_PROG_TEST_RUN`` and to inject frames with an AF_PACKET
socket.  No scapy: the tests must run on a bare Debian with only the standard
library, and every byte we emit should be visible in this file.

The functions compose by concatenation, innermost first::

    frame = eth(ethertype=ETH_P_IPV4) + ipv4("192.0.2.1", "203.0.113.2", IPPROTO_UDP, udp(1234, 53))

Each header function returns the header *plus* the payload it was given
(``eth`` returns just the header unless ``payload`` is passed).  Addresses are
given as text (``"192.0.2.1"``, ``"2001:db8::1"``) or packed bytes.

Checksums: the IPv4 header checksum is always correct.  ICMPv4 checksums are
always correct (they need no pseudo header).  TCP, UDP and ICMPv6 checksums
need the IP addresses, so :func:`tcp`, :func:`udp` and :func:`icmpv6` leave them
zero and :func:`ipv4` / :func:`ipv6` fill them in when the L4 header directly
follows and the packet is not a fragment.  XDP programs do not check L4
checksums, but the kernel stack does, so correct ones let the same frame be
injected on a real link and be received by a socket.
"""

from __future__ import annotations

import ipaddress
import struct
from typing import Sequence, Union

Addr = Union[str, bytes, ipaddress.IPv4Address, ipaddress.IPv6Address]
Mac = Union[str, bytes]

ETH_P_IPV4 = 0x0800
ETH_P_ARP = 0x0806
ETH_P_8021Q = 0x8100
ETH_P_8021AD = 0x88A8
ETH_P_IPV6 = 0x86DD

IPPROTO_HOPOPTS = 0
IPPROTO_ICMP = 1
IPPROTO_TCP = 6
IPPROTO_UDP = 17
IPPROTO_ROUTING = 43
IPPROTO_FRAGMENT = 44
IPPROTO_AH = 51
IPPROTO_ICMPV6 = 58
IPPROTO_NONE = 59
IPPROTO_DSTOPTS = 60

BROADCAST_MAC = b"\xff" * 6

_PROTO_NAMES = {"tcp": IPPROTO_TCP, "udp": IPPROTO_UDP, "icmp": IPPROTO_ICMP, "icmpv6": IPPROTO_ICMPV6}
_TCP_FLAGS = {"F": 0x01, "S": 0x02, "R": 0x04, "P": 0x08, "A": 0x10, "U": 0x20, "E": 0x40, "C": 0x80}
# Offset of the checksum field inside each L4 header we know how to fill.
_L4_CSUM_OFFSET = {IPPROTO_TCP: 16, IPPROTO_UDP: 6, IPPROTO_ICMPV6: 2}


# --------------------------------------------------------------------------- helpers


def mac(value: Mac) -> bytes:
    """Return a 6-byte MAC from ``"aa:bb:cc:dd:ee:ff"`` or bytes."""
    raw = bytes.fromhex(value.replace(":", "").replace("-", "")) if isinstance(value, str) else bytes(value)
    if len(raw) != 6:
        raise ValueError(f"MAC must be 6 bytes, got {len(raw)}")
    return raw


def ip4(value: Addr) -> bytes:
    """Return a packed IPv4 address."""
    return value if isinstance(value, bytes) and len(value) == 4 else ipaddress.IPv4Address(value).packed


def ip6(value: Addr) -> bytes:
    """Return a packed IPv6 address."""
    return value if isinstance(value, bytes) and len(value) == 16 else ipaddress.IPv6Address(value).packed


def proto_number(proto: Union[str, int]) -> int:
    """Map ``"tcp"``/``"udp"``/``"icmp"``/``"icmpv6"`` (or a number) to an IP protocol number."""
    return proto if isinstance(proto, int) else _PROTO_NAMES[proto.lower()]


def inet_checksum(data: bytes) -> int:
    """RFC 1071 one's-complement checksum of ``data`` (odd lengths are zero-padded)."""
    if len(data) % 2:
        data += b"\x00"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def l4_checksum(src: bytes, dst: bytes, proto: int, segment: bytes) -> int:
    """Checksum of an L4 segment including the IPv4 or IPv6 pseudo header.

    ``src``/``dst`` are packed addresses; their length selects the family.
    A computed UDP checksum of 0 is sent as 0xffff (RFC 768 / RFC 8200).
    """
    if len(src) == 4:
        pseudo = src + dst + struct.pack("!BBH", 0, proto, len(segment))
    else:
        pseudo = src + dst + struct.pack("!IxxxB", len(segment), proto)
    csum = inet_checksum(pseudo + segment)
    return 0xFFFF if csum == 0 and proto == IPPROTO_UDP else csum


def _fill_l4_checksum(src: bytes, dst: bytes, proto: int, segment: bytes) -> bytes:
    """Patch the checksum of a TCP/UDP/ICMPv6 segment whose checksum field is zero.

    A non-zero field is left alone so tests can plant deliberately wrong
    checksums; a segment too short to hold its header is left alone too
    (truncated-header tests).
    """
    off = _L4_CSUM_OFFSET.get(proto)
    min_len = {IPPROTO_TCP: 20, IPPROTO_UDP: 8, IPPROTO_ICMPV6: 4}.get(proto, 0)
    if off is None or len(segment) < min_len or segment[off : off + 2] != b"\x00\x00":
        return segment
    csum = l4_checksum(src, dst, proto, segment)
    return segment[:off] + struct.pack("!H", csum) + segment[off + 2 :]


# --------------------------------------------------------------------------- L2


def vlan_tag(tpid: int, vid: int, pcp: int = 0, dei: int = 0) -> bytes:
    """One 802.1Q/802.1ad tag (TPID + TCI).  XDP parsers look at TPID and skip 4 bytes."""
    return struct.pack("!HH", tpid, (pcp & 7) << 13 | (dei & 1) << 12 | (vid & 0xFFF))


def eth(
    dst: Mac = b"\x02" * 6,
    src: Mac = b"\x04" * 6,
    ethertype: int = ETH_P_IPV4,
    vlans: Sequence[tuple[int, int]] = (),
    payload: bytes = b"",
) -> bytes:
    """Ethernet header (14 bytes, plus 4 per VLAN tag), optionally followed by ``payload``.

    Fields that matter for XDP parsing: the EtherType at offset 12 (or after
    the last VLAN tag).  ``vlans`` is ``[(tpid, vid), ...]`` outermost first,
    with tpid 0x8100 (802.1Q) or 0x88a8 (802.1ad); ``ethertype`` is the inner
    EtherType that follows the last tag.  MACs only matter for whether the
    kernel stack accepts the frame (dst must be the interface's MAC or
    broadcast when injecting on a real link).
    """
    tags = b"".join(vlan_tag(tpid, vid) for tpid, vid in vlans)
    return mac(dst) + mac(src) + tags + struct.pack("!H", ethertype) + payload


# --------------------------------------------------------------------------- L3


def ipv4(
    src: Addr,
    dst: Addr,
    proto: Union[int, str],
    payload: bytes = b"",
    options: bytes = b"",
    frag_offset: int = 0,
    more_fragments: bool = False,
    ihl: int | None = None,
    ttl: int = 64,
    tot_len: int | None = None,
    version: int = 4,
    ident: int = 0,
    dont_fragment: bool = False,
    tos: int = 0,
    l4_checksum: bool = True,
) -> bytes:
    """IPv4 header with a correct header checksum, followed by ``payload``.

    Fields that matter for XDP parsing: ``version`` (byte 0 high nibble),
    ``ihl`` (byte 0 low nibble, header length in 4-byte words: where L4
    starts), ``proto`` (byte 9), the fragment field (bytes 6-7: a non-zero
    ``frag_offset`` means there is no L4 header in this packet), and the
    addresses (bytes 12-19).

    ``options`` are zero-padded (EOL) to a multiple of 4 bytes.  ``ihl`` and
    ``tot_len`` default to the true values; override them to build malformed
    packets (the checksum is computed over whatever header results).
    ``frag_offset`` is the raw 13-bit field, in 8-byte units.
    ``l4_checksum`` fills a zero TCP/UDP checksum when this is not a fragment.
    """
    proto = proto_number(proto)
    s, d = ip4(src), ip4(dst)
    options += b"\x00" * (-len(options) % 4)
    true_ihl = 5 + len(options) // 4
    if l4_checksum and frag_offset == 0 and not more_fragments and proto != IPPROTO_ICMPV6:
        payload = _fill_l4_checksum(s, d, proto, payload)
    flags = (0x4000 if dont_fragment else 0) | (0x2000 if more_fragments else 0) | (frag_offset & 0x1FFF)
    header = struct.pack(
        "!BBHHHBBH4s4s",
        (version & 0xF) << 4 | ((true_ihl if ihl is None else ihl) & 0xF),
        tos,
        (true_ihl * 4 + len(payload)) if tot_len is None else tot_len,
        ident,
        flags,
        ttl,
        proto,
        0,
        s,
        d,
    ) + options
    csum = inet_checksum(header)
    return header[:10] + struct.pack("!H", csum) + header[12:] + payload


def ipv6(
    src: Addr,
    dst: Addr,
    next_header: Union[int, str],
    payload: bytes = b"",
    hop_limit: int = 64,
    traffic_class: int = 0,
    flow_label: int = 0,
    payload_len: int | None = None,
    version: int = 6,
    l4_checksum: bool = True,
) -> bytes:
    """40-byte IPv6 header followed by ``payload``.

    Fields that matter for XDP parsing: ``version`` (byte 0 high nibble),
    ``next_header`` (byte 6: an L4 protocol or an extension header to walk,
    see :func:`ipv6_ext`), and the addresses (bytes 8-23 and 24-39).
    ``payload_len`` defaults to the true length; override it for malformed
    packets.  ``l4_checksum`` fills a zero TCP/UDP/ICMPv6 checksum only when
    the L4 header follows directly (with extension headers in between use
    :func:`frame_v6`, which computes it before wrapping).
    """
    nh = proto_number(next_header)
    s, d = ip6(src), ip6(dst)
    if l4_checksum:
        payload = _fill_l4_checksum(s, d, nh, payload)
    first_word = (version & 0xF) << 28 | (traffic_class & 0xFF) << 20 | (flow_label & 0xFFFFF)
    plen = len(payload) if payload_len is None else payload_len
    return struct.pack("!IHBB16s16s", first_word, plen, nh, hop_limit, s, d) + payload


def _pad_options(body: bytes) -> bytes:
    """Pad a HBH/DestOpts option area so that 2 + len is a multiple of 8 (Pad1/PadN)."""
    need = -(2 + len(body)) % 8
    if need == 1:
        return body + b"\x00"  # Pad1
    if need > 1:
        return body + bytes([1, need - 2]) + b"\x00" * (need - 2)  # PadN
    return body


def ipv6_ext(
    kind: int,
    next_header: Union[int, str],
    body: bytes | None = None,
    *,
    frag_offset: int = 0,
    more_fragments: bool = False,
    ident: int = 0,
    hdr_ext_len: int | None = None,
) -> bytes:
    """One IPv6 extension header (without the data that follows it).

    XDP parsers walk these using byte 0 (next header) and byte 1 (length):
    for hop-by-hop (0), routing (43) and destination options (60) the length
    is in 8-byte units *not counting* the first 8 bytes; for AH (51) it is in
    4-byte units minus 2; the fragment header (44) is always 8 bytes, and a
    non-zero ``frag_offset`` (raw 13-bit field, 8-byte units) means the L4
    header is not in this packet.

    ``body`` is everything after the first two bytes; it defaults to padding
    only (HBH/DestOpts), a type-0 routing header with segments-left 0, or a
    zero AH.  Option areas are padded with Pad1/PadN, other bodies with
    zeros.  ``hdr_ext_len`` overrides the length byte for malformed tests.
    """
    nh = proto_number(next_header)
    if kind == IPPROTO_FRAGMENT:
        field = (frag_offset & 0x1FFF) << 3 | (1 if more_fragments else 0)
        length = 0 if hdr_ext_len is None else hdr_ext_len
        return struct.pack("!BBHI", nh, length, field, ident)
    if kind in (IPPROTO_HOPOPTS, IPPROTO_DSTOPTS):
        body = _pad_options(body or b"")
    elif kind in (IPPROTO_ROUTING, IPPROTO_AH):
        body = b"\x00" * 6 if body is None else body
        body += b"\x00" * (-(2 + len(body)) % 8)
    else:
        raise ValueError(f"unsupported extension header {kind}")
    total = 2 + len(body)
    if hdr_ext_len is None:
        hdr_ext_len = total // 4 - 2 if kind == IPPROTO_AH else total // 8 - 1
    return struct.pack("!BB", nh, hdr_ext_len) + body


# --------------------------------------------------------------------------- L4


def tcp_flags(flags: Union[str, int]) -> int:
    """``"SA"`` -> 0x12.  Letters: F S R P A U E C."""
    if isinstance(flags, int):
        return flags
    value = 0
    for letter in flags.upper():
        value |= _TCP_FLAGS[letter]
    return value


def tcp(
    sport: int,
    dport: int,
    flags: Union[str, int] = "S",
    payload: bytes = b"",
    seq: int = 0,
    ack: int = 0,
    window: int = 65535,
    options: bytes = b"",
    data_offset: int | None = None,
) -> bytes:
    """TCP header (checksum 0, filled by :func:`ipv4`/:func:`ipv6`) plus ``payload``.

    Fields that matter for XDP parsing: ports (bytes 0-3) and flags (byte 13,
    e.g. SYN-without-ACK for new connections).  ``data_offset`` (4-byte
    words) overrides the true header length for malformed tests.
    """
    options += b"\x00" * (-len(options) % 4)
    doff = 5 + len(options) // 4 if data_offset is None else data_offset
    header = struct.pack("!HHIIBBHHH", sport, dport, seq, ack, (doff & 0xF) << 4, tcp_flags(flags), window, 0, 0)
    return header + options + payload


def udp(sport: int, dport: int, payload: bytes = b"", length: int | None = None) -> bytes:
    """UDP header (checksum 0, filled by :func:`ipv4`/:func:`ipv6`) plus ``payload``.

    Fields that matter for XDP parsing: ports (bytes 0-3).  ``length``
    overrides the UDP length field for malformed tests.
    """
    return struct.pack("!HHHH", sport, dport, 8 + len(payload) if length is None else length, 0) + payload


def icmp(type: int = 8, code: int = 0, payload: bytes = b"", ident: int = 0, seq: int = 0) -> bytes:
    """ICMPv4 message with a correct checksum.

    Fields that matter for XDP parsing: type (byte 0) and code (byte 1).
    ``ident``/``seq`` fill the 4-byte rest-of-header (meaningful for echo).
    """
    body = struct.pack("!BBHHH", type, code, 0, ident, seq) + payload
    return body[:2] + struct.pack("!H", inet_checksum(body)) + body[4:]


def icmpv6(type: int = 128, code: int = 0, payload: bytes = b"", ident: int = 0, seq: int = 0) -> bytes:
    """ICMPv6 message (checksum 0, filled by :func:`ipv6`: it covers the pseudo header).

    Fields that matter for XDP parsing: type (byte 0; 133-137 are ND/RA and
    must normally pass) and code (byte 1).
    """
    return struct.pack("!BBHHH", type, code, 0, ident, seq) + payload


# --------------------------------------------------------------------------- ARP


def arp(op: int, sender_mac: Mac, sender_ip: Addr, target_mac: Mac, target_ip: Addr) -> bytes:
    """28-byte Ethernet/IPv4 ARP packet (goes after an ``eth(ethertype=ETH_P_ARP)``)."""
    return struct.pack("!HHBBH", 1, ETH_P_IPV4, 6, 4, op) + mac(sender_mac) + ip4(sender_ip) + mac(target_mac) + ip4(target_ip)


def arp_request(sender_ip: Addr, target_ip: Addr, sender_mac: Mac = b"\x04" * 6) -> bytes:
    """ARP who-has ``target_ip`` (op 1, target MAC zero).  XDP sees EtherType 0x0806."""
    return arp(1, sender_mac, sender_ip, b"\x00" * 6, target_ip)


def frame_arp_request(sender_ip: Addr, target_ip: Addr, sender_mac: Mac = b"\x04" * 6, vlans: Sequence[tuple[int, int]] = ()) -> bytes:
    """Complete broadcast ARP request frame."""
    return eth(BROADCAST_MAC, sender_mac, ETH_P_ARP, vlans) + arp_request(sender_ip, target_ip, sender_mac)


# --------------------------------------------------------------------------- convenience


def _l4(proto: int, sport: int, dport: int, payload: bytes, tcp_flags_: Union[str, int], v6: bool,
        icmp_type: int | None = None, icmp_code: int = 0) -> bytes:
    """Build the L4 part for :func:`frame_v4`/:func:`frame_v6`; ICMP uses sport as ident.

    ``icmp_type`` defaults to echo request (8, or 128 for ICMPv6).
    """
    if proto == IPPROTO_TCP:
        return tcp(sport, dport, tcp_flags_, payload)
    if proto == IPPROTO_UDP:
        return udp(sport, dport, payload)
    if proto == IPPROTO_ICMP and not v6:
        return icmp(8 if icmp_type is None else icmp_type, icmp_code, payload, ident=sport)
    if proto == IPPROTO_ICMPV6 and v6:
        return icmpv6(128 if icmp_type is None else icmp_type, icmp_code, payload, ident=sport)
    return payload


def frame_v4(
    proto: Union[str, int],
    src: Addr,
    dst: Addr,
    sport: int = 1234,
    dport: int = 80,
    *,
    payload: bytes = b"",
    tcp_flags: Union[str, int] = "S",
    icmp_type: int | None = None,
    icmp_code: int = 0,
    eth_dst: Mac = b"\x02" * 6,
    eth_src: Mac = b"\x04" * 6,
    vlans: Sequence[tuple[int, int]] = (),
    **ip_kw: object,
) -> bytes:
    """Complete Ethernet + IPv4 + L4 frame.

    ``proto`` is ``"tcp"``, ``"udp"``, ``"icmp"`` (``icmp_type``/``icmp_code``,
    by default an echo request; ident = ``sport``, ports otherwise ignored)
    or any other protocol number (then ``payload`` is the raw L4 data).  ``ip_kw`` goes to :func:`ipv4`
    (``ttl``, ``options``, ``frag_offset``, ``more_fragments``, ``ihl`` ...).
    """
    number = proto_number(proto)
    l4 = _l4(number, sport, dport, payload, tcp_flags, False, icmp_type, icmp_code)
    return eth(eth_dst, eth_src, ETH_P_IPV4, vlans) + ipv4(src, dst, number, l4, **ip_kw)  # type: ignore[arg-type]


ExtSpec = Union[int, tuple[int, dict]]


def frame_v6(
    proto: Union[str, int],
    src: Addr,
    dst: Addr,
    sport: int = 1234,
    dport: int = 80,
    *,
    exts: Sequence[ExtSpec] = (),
    payload: bytes = b"",
    tcp_flags: Union[str, int] = "S",
    icmp_type: int | None = None,
    icmp_code: int = 0,
    eth_dst: Mac = b"\x02" * 6,
    eth_src: Mac = b"\x04" * 6,
    vlans: Sequence[tuple[int, int]] = (),
    **ip_kw: object,
) -> bytes:
    """Complete Ethernet + IPv6 [+ extension headers] + L4 frame.

    ``exts`` lists extension headers in wire order, each a kind (0, 43, 44,
    51, 60) or ``(kind, kwargs_for_ipv6_ext)``, e.g.
    ``exts=[0, (44, {"frag_offset": 0, "more_fragments": True})]``.  The L4
    checksum is computed before wrapping (not for fragments), so it is correct
    unless a routing header changes the final destination.  ``ip_kw`` goes to
    :func:`ipv6`.
    """
    number = proto_number(proto)
    l4 = _l4(number, sport, dport, payload, tcp_flags, True, icmp_type, icmp_code)
    specs = [(e, {}) if isinstance(e, int) else e for e in exts]
    fragmented = any(k == IPPROTO_FRAGMENT and (kw.get("frag_offset") or kw.get("more_fragments")) for k, kw in specs)
    if not fragmented:
        l4 = _fill_l4_checksum(ip6(src), ip6(dst), number, l4)
    inner, nh = l4, number
    for kind, kw in reversed(specs):
        inner, nh = ipv6_ext(kind, nh, **kw) + inner, kind
    return eth(eth_dst, eth_src, ETH_P_IPV6, vlans) + ipv6(src, dst, nh, inner, l4_checksum=False, **ip_kw)  # type: ignore[arg-type]
