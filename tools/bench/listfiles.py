"""The workloads of the daemon and config-load benchmarks: huge address list files and their config.

The daemon benchmark's list (:func:`make_list`) never contains the test
bed's own addresses, so the probe's sources are listed only when an edit
puts them in; the config-load benchmark's lines (:func:`make_lines`) are
any addresses at all, plus comments.
"""

from __future__ import annotations

import array
import random
import socket
import textwrap
from dataclasses import dataclass

SEED = 42
LIST_NAME = "blocklist.txt"
N_V4_NETS, N_V6_NETS, N_V6_HOSTS = 500, 300, 200
"""Lines of the list that are not IPv4 /32s (the rest are)."""

TARGET_SRC = "198.51.100.7"
"""The probe source the edits add to and remove from the list (a sender address of the bed)."""
CONTROL_SRC = "198.51.100.8"
"""A probe source never listed: shows the stream flows and that no reload loses a packet."""
PROBE_PORT = 4242

# The bed's traffic uses these /24s; the random list never contains them.
_DOC_V4_NETS = frozenset(int.from_bytes(socket.inet_aton(n), "big") >> 8
                         for n in ("192.0.2.0", "198.51.100.0", "203.0.113.0"))


@dataclass
class AddressList:
    """The list's lines, and addresses that are not in it (for edits)."""

    lines: list[str]
    spare_v4: list[str]

    def text(self, replace: dict[int, str] | None = None) -> str:
        if not replace:
            return "\n".join(self.lines) + "\n"
        lines = list(self.lines)
        for i, line in replace.items():
            lines[i] = line
        return "\n".join(lines) + "\n"


def _random_v4(rng: random.Random, n: int, taken: set[int]) -> list[int]:
    """``n`` random IPv4 addresses (ints) not in ``taken`` nor in the bed's /24s; added to ``taken``."""
    out: list[int] = []
    while len(out) < n:
        need = n - len(out)
        for a in array.array("I", rng.randbytes(4 * (need + need // 50 + 16))):
            if a in taken or a >> 8 in _DOC_V4_NETS:
                continue
            taken.add(a)
            out.append(a)
            if len(out) == n:
                break
    return out


def make_list(total: int, n_spare: int) -> AddressList:
    """``total`` lines: mostly IPv4 /32s, plus /24s and IPv6 prefixes and hosts, shuffled."""
    rng = random.Random(SEED)
    n_v4 = total - N_V4_NETS - N_V6_NETS - N_V6_HOSTS
    if n_v4 < 1:
        raise ValueError(f"--lines must be more than {N_V4_NETS + N_V6_NETS + N_V6_HOSTS}")
    taken: set[int] = set()
    hosts = _random_v4(rng, n_v4, taken)
    # Byte order does not matter for random addresses; inet_ntoa wants 4 bytes.
    packed = array.array("I", hosts).tobytes()
    lines = [socket.inet_ntoa(packed[i:i + 4]) for i in range(0, len(packed), 4)]
    nets: set[int] = set()
    while len(nets) < N_V4_NETS:
        a = rng.getrandbits(32) & 0xFFFFFF00
        if a >> 8 not in _DOC_V4_NETS:
            nets.add(a)
    lines += [f"{socket.inet_ntoa(a.to_bytes(4, 'big'))}/24" for a in sorted(nets)]
    # IPv6 under 2001:db8:1000::/36 (prefixes) and 2001:db8:2000::/36 (hosts):
    # never the bed's 2001:db8:ffff::/64, 2001:db8:bad::/48 or 2001:db8:900d::/64.
    base = 0x20010DB8 << 96
    v6_nets: set[tuple[int, int]] = set()
    while len(v6_nets) < N_V6_NETS:
        plen = rng.randint(40, 64)
        a = base | (0x1 << 92) | rng.getrandbits(92)
        v6_nets.add((a >> (128 - plen) << (128 - plen), plen))
    lines += [f"{socket.inet_ntop(socket.AF_INET6, a.to_bytes(16, 'big'))}/{p}" for a, p in sorted(v6_nets)]
    v6_hosts = {base | (0x2 << 92) | rng.getrandbits(92) for _ in range(N_V6_HOSTS)}
    lines += [socket.inet_ntop(socket.AF_INET6, a.to_bytes(16, "big")) for a in sorted(v6_hosts)]
    rng.shuffle(lines)
    spare = _random_v4(rng, n_spare, taken)
    return AddressList(lines, [socket.inet_ntoa(a.to_bytes(4, "big")) for a in spare])


def config_yaml(iface: str) -> str:
    """The daemon benchmark's config: the list as one rule among five, logging and drift checks hourly."""
    return textwrap.dedent(f"""\
        settings: {{log_interval: 3600, check_interval: 3600}}
        interfaces:
          {iface}: {{mode: auto, default: pass}}
        rules:
          - {{name: count-probe, action: count, proto: udp, dst_port: {PROBE_PORT}}}
          - {{name: drop-bad-net, action: drop, src: [192.0.2.0/24, "2001:db8:bad::/48"]}}
          - {{name: blocklist, action: drop, src_file: {LIST_NAME}}}
          - {{name: no-dns-in, action: drop, proto: udp, dst_port: 53}}
          - {{name: web, action: count, proto: tcp, dst_port: [80, "8000-8080"]}}
        """)


# --------------------------------------------------------------- config load


def make_lines(count: int, rng: random.Random) -> list[bytes]:
    """A list file's lines for the config-load benchmark: 90% IPv4, 9% IPv6, 1% /24s, a comment."""
    lines = [b"# generated block list", b""]
    while len(lines) < count:
        r = rng.random()
        if r < 0.90:
            lines.append(socket.inet_ntoa(rng.getrandbits(32).to_bytes(4, "big")).encode())
        elif r < 0.99:
            lines.append(socket.inet_ntop(socket.AF_INET6, rng.getrandbits(128).to_bytes(16, "big")).encode())
        else:
            lines.append(socket.inet_ntoa((rng.getrandbits(24) << 8).to_bytes(4, "big")).encode() + b"/24")
    return lines


def fresh_v4(rng: random.Random) -> bytes:
    """An address for an edit: 198.18.0.0/15 (benchmarking range), rarely in the random part by chance."""
    return socket.inet_ntoa((0xC6120000 | rng.getrandbits(17)).to_bytes(4, "big")).encode()
