"""Light checks of the frame builder: lengths, fields at the offsets XDP reads, checksums."""

from __future__ import annotations

import struct

import pytest

from tests.testbed import frames as f

SRC4, DST4 = "192.0.2.1", "203.0.113.2"
SRC6, DST6 = "2001:db8:bad::1", "2001:db8:ffff::2"


def l4_ok(src: bytes, dst: bytes, proto: int, segment: bytes) -> bool:
    """A correct L4 checksum makes the sum over pseudo header + segment zero."""
    if len(src) == 4:
        pseudo = src + dst + struct.pack("!BBH", 0, proto, len(segment))
    else:
        pseudo = src + dst + struct.pack("!IxxxB", len(segment), proto)
    return f.inet_checksum(pseudo + segment) == 0


# --------------------------------------------------------------------------- L2


def test_eth_plain_header() -> None:
    h = f.eth("02:00:00:00:00:01", b"\x04" * 6, f.ETH_P_IPV6)
    assert len(h) == 14
    assert h[:6] == bytes.fromhex("020000000001")
    assert h[12:14] == b"\x86\xdd"


def test_eth_vlans_outermost_first() -> None:
    h = f.eth(ethertype=f.ETH_P_IPV4, vlans=[(f.ETH_P_8021AD, 100), (f.ETH_P_8021Q, 200)])
    assert len(h) == 22
    assert struct.unpack("!HHHHH", h[12:22]) == (0x88A8, 100, 0x8100, 200, 0x0800)


def test_mac_rejects_wrong_length() -> None:
    with pytest.raises(ValueError):
        f.mac("02:00:00:00:01")


# --------------------------------------------------------------------------- IPv4


def test_inet_checksum_known_vector() -> None:
    # Classic example header (192.168.0.1 -> 192.168.0.199, UDP), checksum 0xb861.
    header = bytes.fromhex("450000730000400040110000c0a80001c0a800c7")
    assert f.inet_checksum(header) == 0xB861


def test_ipv4_fields_and_checksum() -> None:
    pkt = f.ipv4(SRC4, DST4, "udp", b"x" * 8, ttl=7, ident=0x1234)
    assert len(pkt) == 28
    assert pkt[0] == 0x45
    assert struct.unpack("!H", pkt[2:4])[0] == 28
    assert pkt[8] == 7 and pkt[9] == f.IPPROTO_UDP
    assert pkt[12:16] == f.ip4(SRC4) and pkt[16:20] == f.ip4(DST4)
    assert f.inet_checksum(pkt[:20]) == 0


def test_ipv4_options_padded_and_ihl() -> None:
    pkt = f.ipv4(SRC4, DST4, 6, b"", options=b"\x94\x04\x00")  # router alert, 3 bytes -> 4
    assert pkt[0] & 0x0F == 6
    assert len(pkt) == 24
    assert f.inet_checksum(pkt[:24]) == 0


def test_ipv4_fragment_field() -> None:
    pkt = f.ipv4(SRC4, DST4, 17, b"\x00" * 8, frag_offset=185, more_fragments=True, dont_fragment=True)
    assert struct.unpack("!H", pkt[6:8])[0] == 0x4000 | 0x2000 | 185


def test_ipv4_malformed_overrides() -> None:
    pkt = f.ipv4(SRC4, DST4, 17, b"", ihl=4, tot_len=9999, version=6)
    assert pkt[0] == 0x64
    assert struct.unpack("!H", pkt[2:4])[0] == 9999
    assert len(pkt) == 20
    assert f.inet_checksum(pkt[:20]) == 0


def test_ipv4_fills_udp_and_tcp_checksums() -> None:
    for proto, seg in ((17, f.udp(1, 2, b"hello")), (6, f.tcp(1, 2, "S", b"abc"))):
        pkt = f.ipv4(SRC4, DST4, proto, seg)
        assert l4_ok(f.ip4(SRC4), f.ip4(DST4), proto, pkt[20:])


def test_ipv4_leaves_fragments_and_planted_checksums_alone() -> None:
    frag = f.ipv4(SRC4, DST4, 17, f.udp(1, 2, b"x"), more_fragments=True)
    assert frag[20 + 6 : 20 + 8] == b"\x00\x00"
    planted = bytearray(f.udp(1, 2, b"x"))
    planted[6:8] = b"\x12\x34"
    assert f.ipv4(SRC4, DST4, 17, bytes(planted))[26:28] == b"\x12\x34"


# --------------------------------------------------------------------------- IPv6


def test_ipv6_fields() -> None:
    pkt = f.ipv6(SRC6, DST6, "tcp", f.tcp(1, 2), hop_limit=3, flow_label=0xABCDE)
    assert len(pkt) == 60
    assert pkt[0] >> 4 == 6
    assert struct.unpack("!I", pkt[:4])[0] & 0xFFFFF == 0xABCDE
    assert struct.unpack("!H", pkt[4:6])[0] == 20
    assert pkt[6] == f.IPPROTO_TCP and pkt[7] == 3
    assert pkt[8:24] == f.ip6(SRC6) and pkt[24:40] == f.ip6(DST6)
    assert l4_ok(f.ip6(SRC6), f.ip6(DST6), 6, pkt[40:])


@pytest.mark.parametrize("kind", [f.IPPROTO_HOPOPTS, f.IPPROTO_DSTOPTS, f.IPPROTO_ROUTING])
@pytest.mark.parametrize("body_len", [0, 1, 6, 7, 13])
def test_ipv6_ext_lengths_in_8_byte_units(kind: int, body_len: int) -> None:
    ext = f.ipv6_ext(kind, f.IPPROTO_UDP, b"\x00" * body_len)  # zero bytes = Pad1 options
    assert len(ext) % 8 == 0 and len(ext) >= 2 + body_len
    assert ext[0] == f.IPPROTO_UDP
    assert (ext[1] + 1) * 8 == len(ext)


def test_ipv6_ext_fragment_and_ah() -> None:
    frag = f.ipv6_ext(f.IPPROTO_FRAGMENT, "udp", frag_offset=3, more_fragments=True, ident=0xDEADBEEF)
    assert len(frag) == 8
    assert frag[0] == 17
    assert struct.unpack("!H", frag[2:4])[0] == 3 << 3 | 1
    assert struct.unpack("!I", frag[4:8])[0] == 0xDEADBEEF
    ah = f.ipv6_ext(f.IPPROTO_AH, "tcp", b"\x00" * 22)  # 24 bytes total
    assert len(ah) == 24 and ah[1] == 24 // 4 - 2


def test_ipv6_ext_length_override() -> None:
    assert f.ipv6_ext(f.IPPROTO_HOPOPTS, 6, hdr_ext_len=200)[1] == 200


# --------------------------------------------------------------------------- L4 / ARP


def test_tcp_header() -> None:
    seg = f.tcp(1234, 80, "SA", b"xy", seq=7, options=b"\x02\x04\x05\xb4")
    assert len(seg) == 26
    assert struct.unpack("!HH", seg[:4]) == (1234, 80)
    assert seg[12] >> 4 == 6
    assert seg[13] == 0x12
    assert f.tcp(1, 2, data_offset=15)[12] >> 4 == 15


def test_udp_header() -> None:
    seg = f.udp(53, 9, b"abc")
    assert seg[:6] == struct.pack("!HHH", 53, 9, 11)
    assert f.udp(1, 2, length=3)[4:6] == b"\x00\x03"


def test_icmp_checksum_and_echo_fields() -> None:
    msg = f.icmp(8, 0, b"ping", ident=0x4242, seq=9)
    assert msg[0] == 8 and f.inet_checksum(msg) == 0
    assert struct.unpack("!HH", msg[4:8]) == (0x4242, 9)


def test_icmpv6_checksum_filled_by_ipv6() -> None:
    pkt = f.ipv6(SRC6, DST6, "icmpv6", f.icmpv6(128, 0, b"p"))
    assert pkt[40] == 128
    assert l4_ok(f.ip6(SRC6), f.ip6(DST6), 58, pkt[40:])


def test_arp_request() -> None:
    arp = f.arp_request("203.0.113.1", "203.0.113.2")
    assert len(arp) == 28
    assert struct.unpack("!HHBBH", arp[:8]) == (1, 0x0800, 6, 4, 1)
    assert arp[14:18] == f.ip4("203.0.113.1") and arp[24:28] == f.ip4("203.0.113.2")
    frame = f.frame_arp_request("203.0.113.1", "203.0.113.2")
    assert frame[:6] == f.BROADCAST_MAC and frame[12:14] == b"\x08\x06" and len(frame) == 42


# --------------------------------------------------------------------------- convenience


def test_frame_v4_udp_layout() -> None:
    frame = f.frame_v4("udp", SRC4, DST4, 5555, 53, payload=b"q" * 10, vlans=[(0x8100, 5)])
    assert len(frame) == 18 + 20 + 8 + 10
    assert frame[16:18] == b"\x08\x00"
    ip = frame[18:]
    assert ip[9] == 17 and struct.unpack("!HH", ip[20:24]) == (5555, 53)
    assert l4_ok(f.ip4(SRC4), f.ip4(DST4), 17, ip[20:])


def test_frame_v4_icmp_and_kwargs() -> None:
    frame = f.frame_v4("icmp", SRC4, DST4, ttl=1)
    assert frame[14 + 8] == 1 and frame[14 + 9] == 1 and frame[14 + 20] == 8


def test_frame_v6_ext_chain_and_checksum() -> None:
    frame = f.frame_v6("tcp", SRC6, DST6, 1, 443, exts=[f.IPPROTO_HOPOPTS, f.IPPROTO_DSTOPTS])
    ip = frame[14:]
    assert ip[6] == f.IPPROTO_HOPOPTS
    hbh = ip[40:]
    assert hbh[0] == f.IPPROTO_DSTOPTS
    dst_opts = hbh[(hbh[1] + 1) * 8 :]
    assert dst_opts[0] == f.IPPROTO_TCP
    tcp_seg = dst_opts[(dst_opts[1] + 1) * 8 :]
    assert struct.unpack("!HH", tcp_seg[:4]) == (1, 443)
    assert struct.unpack("!H", ip[4:6])[0] == len(ip) - 40
    assert l4_ok(f.ip6(SRC6), f.ip6(DST6), 6, tcp_seg)


def test_frame_v6_non_first_fragment_has_no_l4_checksum() -> None:
    frame = f.frame_v6("udp", SRC6, DST6, exts=[(f.IPPROTO_FRAGMENT, {"frag_offset": 1})])
    ip = frame[14:]
    assert ip[6] == f.IPPROTO_FRAGMENT and ip[40] == f.IPPROTO_UDP
    assert ip[48 + 6 : 48 + 8] == b"\x00\x00"
