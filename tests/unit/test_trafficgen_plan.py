"""The traffic generator's pure half: where a frame's fields are, what a flood may do, how it is chunked.

The kernel half (the XDP program rewriting sources, the live test runs or
the relay) is tested in ``tests/kernel/test_trafficgen.py``.
"""

from __future__ import annotations

import ipaddress

import pytest

from tests.testbed import frames
from tools.trafficgen import relay
from tools.trafficgen.fields import FrameError, locate
from tools.trafficgen.plan import (
    FIRST_CHUNK, L4_UDP, L4_ZERO_NONE, MAX_COUNT, MAX_SECONDS, MODE_COUNTER, MODE_KEEP, MODE_RANDOM,
    PACED_CHUNK_SECONDS, FloodRefused, Sources, next_chunk, plan_flood,
)
from tools.trafficgen.program import MAX_COPIES, RelayPlan

V4 = frames.frame_v4("udp", "192.0.2.1", "203.0.113.2", 1234, 9)
V6 = frames.frame_v6("udp", "2001:db8::1", "2001:db8:ffff::2", 1234, 9)


# --------------------------------------------------------------------------- fields


def test_ipv4_udp_fields() -> None:
    f = locate(V4)
    assert (f.version, f.src, f.src_off, f.ip_csum_off, f.l4_proto, f.l4_csum_off) == (
        4, ipaddress.ip_address("192.0.2.1"), 26, 24, 17, 40)


def test_vlan_tags_and_ipv4_options_move_the_fields() -> None:
    f = locate(frames.frame_v4("tcp", "192.0.2.1", "203.0.113.2", vlans=[(0x88A8, 5), (0x8100, 7)],
                               options=b"\x01\x01\x01\x01"))
    assert (f.src_off, f.ip_csum_off, f.l4_proto, f.l4_csum_off) == (34, 32, 6, 22 + 24 + 16)


def test_no_l4_checksum_without_a_pseudo_header_or_an_l4_header() -> None:
    assert locate(frames.frame_v4("icmp", "192.0.2.1", "203.0.113.2")).l4_csum_off == 0
    assert locate(frames.frame_v4("udp", "192.0.2.1", "203.0.113.2", frag_offset=10)).l4_csum_off == 0
    assert locate(frames.frame_v4("udp", "192.0.2.1", "203.0.113.2", more_fragments=True)).l4_csum_off == 40
    assert locate(frames.frame_v6("udp", "2001:db8::1", "2001:db8::2", exts=[(44, {"frag_offset": 3})])).l4_csum_off == 0


def test_ipv6_fields_after_extension_headers() -> None:
    f = locate(V6)
    assert (f.version, f.src_off, f.ip_csum_off, f.l4_csum_off) == (6, 22, 0, 60)
    f = locate(frames.frame_v6("icmpv6", "2001:db8::1", "2001:db8::2", exts=[0, 43, 51, 60]))
    assert (f.l4_proto, f.l4_csum_off) == (58, 54 + 8 + 8 + 8 + 8 + 2)


@pytest.mark.parametrize("frame, message", [
    (frames.frame_arp_request("203.0.113.1", "203.0.113.2"), "neither IPv4 nor IPv6"),
    (V4[:30], "ends before IPv4 header"),
    (V6[:50], "ends before IPv6 header"),
    (frames.frame_v4("udp", "192.0.2.1", "203.0.113.2", version=6), "IP version 6 in an IPv4 frame"),
])
def test_frames_without_a_rewritable_source(frame: bytes, message: str) -> None:
    with pytest.raises(FrameError, match=message):
        locate(frame)


# --------------------------------------------------------------------------- plan


def test_program_config_for_each_family() -> None:
    p = plan_flood(V4, 10, sources=Sources("counter", "198.51.100.0/24")).program
    assert (p.mode, p.src_off, p.src_words, p.ip_csum_off, p.l4_csum_off) == (MODE_COUNTER, 26, 2, 24, 40)
    assert (p.l4_flags, p.host_mask, p.base) == (L4_UDP | L4_ZERO_NONE, 0xFF, bytes(12) + bytes([198, 51, 100, 0]))
    p = plan_flood(V6, 10, sources=Sources("random", "2001:db8:1::/64")).program
    assert (p.mode, p.src_words, p.ip_csum_off, p.l4_flags) == (MODE_RANDOM, 8, 0, L4_UDP)
    assert p.host_mask == 0xFFFF_FFFF  # only the low 32 bits vary
    assert p.base == ipaddress.ip_address("2001:db8:1::").packed
    assert plan_flood(V4, 10, sources=Sources("random", "192.0.2.7/32")).program.host_mask == 0
    assert plan_flood(V4, 10).program.mode == MODE_KEEP


def test_a_frame_that_is_not_ip_floods_unchanged() -> None:
    arp = frames.frame_arp_request("203.0.113.1", "203.0.113.2")
    assert plan_flood(arp, 10).program.mode == MODE_KEEP
    with pytest.raises(FrameError):
        plan_flood(arp, 10, sources=Sources("counter", "192.0.2.0/24"))


@pytest.mark.parametrize("kwargs, message", [
    ({"count": 0}, "count 0"),
    ({"count": MAX_COUNT + 1}, "count"),
    ({"seconds_max": MAX_SECONDS + 1}, "time limit"),
    ({"seconds_max": 0}, "time limit"),
    ({"batch_size": 257}, "batch size"),
    ({"rate_pps": 0}, "rate 0"),
    ({"count": 1_000_000, "rate_pps": 10_000, "seconds_max": 10}, "take 100 s"),
    ({"sources": Sources("counter", "10.0.0.0/8")}, "outside the documentation ranges"),
    ({"sources": Sources("counter", "192.0.2.0/23")}, "outside the documentation ranges"),
    ({"sources": Sources("counter", "2001:db8::/32")}, "IPv6, the frame IPv4"),
    ({"frame": V4[:10]}, "frame of 10 bytes"),
])
def test_refused(kwargs: dict, message: str) -> None:
    args = {"frame": V4, "count": 1000, **kwargs}
    with pytest.raises(FloodRefused, match=message):
        plan_flood(args.pop("frame"), args.pop("count"), **args)


def test_sources_are_checked_when_made() -> None:
    with pytest.raises(FloodRefused, match="use 'counter' or 'random'"):
        Sources("sequential", "192.0.2.0/24")  # type: ignore[arg-type]
    with pytest.raises(FloodRefused, match="has host bits set"):
        Sources("counter", "192.0.2.1/24")
    assert Sources("counter", "2001:db8::/32").host_bits == 32
    assert Sources("counter", "2001:db8::/32", per_64=True).host_bits == 32
    assert Sources("counter", "2001:db8:1:ff00::/56", per_64=True).host_bits == 8
    with pytest.raises(FloodRefused, match="per_64 needs an IPv6 prefix of /64 or shorter"):
        Sources("counter", "192.0.2.0/24", per_64=True)


# --------------------------------------------------------------------------- chunks


def test_paced_chunks_follow_the_schedule() -> None:
    plan = plan_flood(V4, 10_000, rate_pps=1_000_000)
    size = int(1_000_000 * PACED_CHUNK_SECONDS)
    assert next_chunk(plan, 0, 0.0, None) == (size, 0.0)
    frames_, wait = next_chunk(plan, 4000, 0.001, None)
    assert frames_ == size and wait == pytest.approx(0.003)
    assert next_chunk(plan, 4000, 0.01, 5e6) == (size, 0.0)  # behind: no wait
    assert next_chunk(plan, 9_999, 0.01, 5e6)[0] == 1
    assert next_chunk(plan_flood(V4, 10, rate_pps=10), 3, 0.1, None) == (1, pytest.approx(0.2))


def test_unpaced_chunks_measure_then_fill_the_time() -> None:
    plan = plan_flood(V4, 10_000_000, seconds_max=1.0)
    assert next_chunk(plan, 0, 0.0, None) == (FIRST_CHUNK, 0.0)
    assert next_chunk(plan, FIRST_CHUNK, 0.01, 6e6) == (300_000, 0.0)
    assert next_chunk(plan, 5_000_000, 0.99, 6e6) == (60_000, 0.0)  # what fits before the limit
    assert next_chunk(plan, 5_000_000, 1.5, 6e6) == (plan.batch_size, 0.0)
    assert next_chunk(plan, 9_999_990, 0.5, 6e6) == (10, 0.0)


# --------------------------------------------------------------------------- the relay's feed


@pytest.mark.parametrize("count", [1, 15, 16, 17, 100, 1 << 20])
def test_the_relay_feeds_just_enough_frames_for_the_count(count: int) -> None:
    copies = relay.COPIES
    assert relay.fed_frames(count, count, copies) == count // copies + count % copies
    assert relay.fed_frames(0, count, copies) == 0
    assert relay.fed_frames(count, count, 1) == count


def test_the_relay_feeds_chunk_by_chunk_what_it_feeds_at_once() -> None:
    """Paced chunks that do not fall on a multiple of the copies add up to the same feed, never less than asked."""
    count, copies = 10_007, 16
    bounds = list(range(0, count, 333)) + [count]
    fed = [relay.fed_frames(b, count, copies) for b in bounds]
    assert fed[-1] == relay.fed_frames(count, count, copies)
    assert all(f * copies >= min(b, count // copies * copies) for f, b in zip(fed, bounds))
    assert fed == sorted(fed)


def test_only_a_frame_sent_unchanged_is_copied() -> None:
    keep = plan_flood(V4, 1000)
    assert relay.relay_plan(keep, 7) == RelayPlan(7, relay.COPIES, 1000)
    varied = plan_flood(V4, 1000, sources=Sources("counter", "192.0.2.0/24"))
    assert relay.relay_plan(varied, 7) == RelayPlan(7, 1, 1000)
    assert relay.relay_plan(plan_flood(V4, relay.COPIES - 1), 7).copies == 1
    assert relay.COPIES <= MAX_COPIES
