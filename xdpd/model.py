"""The desired state, as plain immutable data.

Everything the daemon is asked to enforce is described by a :class:`Config`.
It is produced by :mod:`xdpd.config` from YAML and consumed by
:mod:`xdpd.tables` (which turns it into BPF map contents) without either side
touching the kernel.  Keeping these types free of behaviour is what lets the
planner and the table compiler be tested without root.

Addresses are stored packed (network byte order, sorted, unique) rather than
as :mod:`ipaddress` objects: a million-line block list would otherwise cost
hundreds of megabytes of Python objects.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field


class Action(enum.Enum):
    """What a matching rule does.

    ``COUNT`` counts the packet and lets it go on to later rules; ``DROP`` and
    ``PASS`` decide.  ``LIMIT`` lets a packet within the rule's rate go on to
    later rules (as ``COUNT`` does) and drops one over it.
    """

    DROP = "drop"
    PASS = "pass"
    COUNT = "count"
    LIMIT = "limit"


class LimitUnit(enum.Enum):
    """What a rate counts."""

    PACKETS = "packets"
    BYTES = "bytes"


class LimitPer(enum.Enum):
    """Who shares one bucket: each source (an IPv4 address, an IPv6 /64) or
    everything the rule matches."""

    SOURCE = "source"
    RULE = "rule"


class Default(enum.Enum):
    """Verdict for an IP packet no decisive rule matched."""

    PASS = "pass"
    DROP = "drop"


class Mode(enum.Enum):
    """XDP attachment mode.  ``AUTO`` tries native and falls back to generic."""

    AUTO = "auto"
    NATIVE = "native"
    GENERIC = "generic"
    OFFLOAD = "offload"


@dataclass(frozen=True, order=True)
class Origin:
    """Where a piece of configuration came from, for error messages."""

    path: str
    line: int = 0
    col: int = 0

    def __str__(self) -> str:
        if self.line:
            return f"{self.path}:{self.line}:{self.col}"
        return self.path


@dataclass(frozen=True)
class AddrSet:
    """A set of IPv4 and IPv6 addresses and prefixes.

    Host addresses (/32 and /128) live in ``v4_exact``/``v6_exact`` as the
    concatenation of sorted, unique packed addresses, because that is both the
    cheapest Python representation and exactly the bytes the kernel's hash
    map keys want.  Shorter prefixes are few in practice and are kept as
    sorted tuples of ``(packed network address, prefix length)``.
    """

    v4_exact: bytes = b""
    v6_exact: bytes = b""
    v4_prefixes: tuple[tuple[bytes, int], ...] = ()
    v6_prefixes: tuple[tuple[bytes, int], ...] = ()

    def __len__(self) -> int:
        return (
            len(self.v4_exact) // 4
            + len(self.v6_exact) // 16
            + len(self.v4_prefixes)
            + len(self.v6_prefixes)
        )

    def __bool__(self) -> bool:
        return len(self) > 0


@dataclass(frozen=True, order=True)
class PortRange:
    """An inclusive range of ports or other header values (TTL, length,
    ICMP code, VLAN id); a single value has ``lo == hi``."""

    lo: int
    hi: int


PROTO_NAMES: dict[str, int] = {"icmp": 1, "tcp": 6, "udp": 17, "icmpv6": 58}
"""Protocol names accepted in ``proto``; any number 0-255 is accepted too."""

PORT_PROTOS: frozenset[int] = frozenset({6, 17})
"""Protocols whose ports the XDP program reads (TCP and UDP)."""

ICMP_PROTOS: frozenset[int] = frozenset({1, 58})
"""icmp and icmpv6: the protocols whose type and code the XDP program reads."""

TCP_FLAG_BITS: dict[str, int] = {"fin": 0x01, "syn": 0x02, "rst": 0x04, "psh": 0x08,
                                 "ack": 0x10, "urg": 0x20, "ece": 0x40, "cwr": 0x80}
"""``tcp_flags`` names and their bits in the TCP header's flags byte."""


@dataclass(frozen=True)
class TcpFlags:
    """``tcp_flags``: the flags in ``mask`` must equal those in ``value``.

    ``"syn,!ack"`` is ``mask = SYN|ACK, value = SYN``: SYN set, ACK clear,
    every other flag either way.
    """

    mask: int
    value: int

    def matches(self, flags: int) -> bool:
        return flags & self.mask == self.value


@dataclass(frozen=True)
class Limit:
    """A ``limit`` rule's rate (a token bucket: ``burst`` at once, then
    ``rate`` per second), who shares a bucket, and how long a source that
    goes over is banned (None: not banned, only its excess is dropped)."""

    rate: float
    """Packets or bytes (``unit``) per second, > 0."""
    unit: LimitUnit
    burst: int
    """Packets or bytes the bucket holds, >= 1."""
    per: LimitPer = LimitPer.SOURCE
    ban: float | None = None
    """Seconds; only with ``per: source``."""


@dataclass(frozen=True)
class Rule:
    """One entry of the ordered rule list.

    A field that is ``None`` matches anything.  Fields are ANDed; the items
    inside one field are ORed.  ``src``/``dst`` hold the union of the inline
    list and of any list files (``src_files``/``dst_files`` name those files so
    the daemon can watch them).
    """

    name: str
    action: Action
    src: AddrSet | None = None
    dst: AddrSet | None = None
    protos: frozenset[int] | None = None
    src_ports: tuple[PortRange, ...] | None = None
    dst_ports: tuple[PortRange, ...] | None = None
    src_files: tuple[str, ...] = ()
    dst_files: tuple[str, ...] = ()
    interfaces: tuple[str, ...] | None = None
    """The configured interfaces the rule applies on (None: all of them)."""
    tcp_flags: TcpFlags | None = None
    icmp_types: frozenset[tuple[int, int]] | None = None
    """``(family, type)`` pairs: names resolve per family (echo-request is
    (4, 8) and (6, 128)); a number applies to every ICMP family in ``protos``."""
    icmp_codes: tuple[PortRange, ...] | None = None
    ttl: tuple[PortRange, ...] | None = None
    """IPv4 TTL / IPv6 hop limit."""
    length: tuple[PortRange, ...] | None = None
    """IP packet length: IPv4 total length, IPv6 payload length + 40."""
    vlans: tuple[PortRange, ...] | None = None
    """Outer VLAN id of the frame (untagged frames do not match)."""
    limit: Limit | None = None
    """Set exactly when ``action`` is ``LIMIT``."""
    sample: float | None = None
    """Packets per second whose headers the program hands to the daemon to log."""
    origin: Origin = field(default=Origin("<none>"), compare=False)


@dataclass(frozen=True)
class Interface:
    """An interface that carries the filter."""

    name: str
    mode: Mode = Mode.AUTO
    default: Default = Default.PASS
    observe: bool = False
    """Decide and count as usual, but pass what would be dropped."""
    origin: Origin = field(default=Origin("<none>"), compare=False)


@dataclass(frozen=True)
class Settings:
    """Daemon-wide settings (``settings:`` in the YAML)."""

    log_interval: float = 60.0
    """Seconds between log lines with the counters."""
    check_interval: float = 30.0
    """Seconds between checks that the attachments are still what the
    config asks for (another program may detach or replace the XDP program)."""
    detach_on_stop: bool = True
    max_addresses: int = 2_000_000
    """Capacity of each exact-address map (per direction and family)."""
    max_limit_sources: int = 1_000_000
    """Per-source buckets of ``limit`` rules kept (an LRU: the least recently
    seen source is forgotten first); fixed when the program is built."""
    max_bans: int = 1_000_000
    """Capacity of the ban table, shared by ``ban:`` rules and ``xdpd ban``."""
    metrics_listen: tuple[str, int] | None = None
    """(IP address, port) where ``/metrics`` is served; None: not served."""
    metrics_textfile: str | None = None
    """Where the metrics are written every ``log_interval`` (node_exporter's
    textfile collector); None: not written."""
    strict_permissions: bool = True
    """Refuse config and list files (and the config dir) that a non-root
    user could write: such a user would control the host's firewall."""


@dataclass(frozen=True)
class Config:
    """The whole desired state, merged from every file of the config dir."""

    settings: Settings = Settings()
    interfaces: tuple[Interface, ...] = ()
    rules: tuple[Rule, ...] = ()
    files: tuple[str, ...] = ()
    """Every file the config was read from (YAML and list files)."""

    def interface(self, name: str) -> Interface | None:
        for iface in self.interfaces:
            if iface.name == name:
                return iface
        return None
