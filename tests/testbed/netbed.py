"""Throw-away two-namespace test beds for kernel tests.

A :class:`NetBed` is two network namespaces, ``sender`` and ``victim``, joined
by one veth pair.  XDP programs under test are attached to the victim's end;
the sender originates traffic from a set of documentation-range addresses.

Safety: everything this module creates is named ``<prefix>-<4 hex>-...``
(default prefix ``xdpdt``) and lives inside the two namespaces.  The veth is
created from inside the sender namespace with its peer placed straight into
the victim namespace, so no device ever appears in the host namespace, and
every ``ip`` command is run with ``-n <our namespace>``.  Only the ranges
192.0.2.0/24, 198.51.100.0/24, 203.0.113.0/24 and 2001:db8::/32 are used.

Crash safety: before a bed's namespaces are created, an owner file
``/run/xdpdt/<tag>.owner`` records the creating process (pid + start time).
:meth:`NetBed.sweep_stale` deletes only namespaces of this module's exact
naming pattern whose recorded owner is gone.  So a session-start sweep cleans
up after crashed runs without touching the beds of a test run going on in
parallel, or namespaces other tools create under the shared ``xdpdt-``
prefix (they have no owner file).

The owner files and namespace primitives are in :mod:`tests.testbed.netns`,
the steady probe stream in :mod:`tests.testbed.probe`.  This module
deliberately has no pytest dependency; see ``tests/conftest.py`` for the
fixture.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import socket
import subprocess
import time
import weakref
from typing import Any, Sequence

from tests.testbed import traffic
from tests.testbed import netns
from tests.testbed.netns import OWNER_DIR
from tests.testbed.probe import UdpProbe
from tests.testbed.traffic import Wait

IFNAMSIZ = 15

# Sysctls for both namespaces, set before the veth exists so the per-device
# copies inherit them.  DAD and router solicitations off: addresses must be
# usable at once and the link should stay quiet.  rp_filter off: IPv4
# settings are inherited from the host, whose policy must not leak in.
_COMMON_SYSCTLS = (
    "net.ipv6.conf.all.disable_ipv6=0",
    "net.ipv6.conf.default.disable_ipv6=0",
    "net.ipv6.conf.all.accept_dad=0",
    "net.ipv6.conf.default.accept_dad=0",
    "net.ipv6.conf.all.accept_ra=0",
    "net.ipv6.conf.default.accept_ra=0",
    "net.ipv6.conf.all.router_solicitations=0",
    "net.ipv6.conf.default.router_solicitations=0",
    "net.ipv4.conf.all.rp_filter=0",
    "net.ipv4.conf.default.rp_filter=0",
    # MLD reports go out at once (during setup) instead of trickling in for
    # a second or two, when an XDP program under test may already count them.
    "net.ipv6.conf.all.mldv1_unsolicited_report_interval=0",
    "net.ipv6.conf.default.mldv1_unsolicited_report_interval=0",
    "net.ipv6.conf.all.mldv2_unsolicited_report_interval=0",
    "net.ipv6.conf.default.mldv2_unsolicited_report_interval=0",
)
# arp_announce=2: ARP requests always carry the primary address 203.0.113.1,
# whatever source a test sends from, so neighbour resolution does not depend
# on which (possibly filtered) extra source address triggered it.
_SENDER_SYSCTLS = ("net.ipv4.conf.all.arp_announce=2",)

# Neighbour entries resolved during setup stay REACHABLE for an hour, so no
# unicast ARP/ND re-probe lands on the victim in the middle of a test.
# arp_works()/nd_works() flush and resolve afresh, so ARP/ND filtering is
# still testable.  (Set per device: a non-initial netns has no neigh/default.)
_REACHABLE_MS = 3_600_000

# Extra sender source addresses.  "good" is not hexadecimal, so the "good"
# IPv6 sources are 2001:db8:900d::/64 ("g00d").
EXTRA_V4 = tuple(f"{net}.{i}" for net in ("192.0.2", "198.51.100") for i in range(1, 10))
EXTRA_V6 = tuple(f"2001:db8:{net}::{i}" for net in ("bad", "900d") for i in range(1, 10))
_EXTRA_V4_NETS = ("192.0.2.0/24", "198.51.100.0/24")
_EXTRA_V6_NETS = ("2001:db8:bad::/64", "2001:db8:900d::/64")

_GOOD_NEIGH_STATES = {"REACHABLE", "STALE", "DELAY", "PROBE", "PERMANENT", "NOARP"}


def _neigh_batch(dev: str) -> list[str]:
    """``ip -batch`` lines that make resolved neighbours on ``dev`` stay REACHABLE."""
    return [f"ntable change name {table} dev {dev} base_reachable {_REACHABLE_MS}"
            for table in ("arp_cache", "ndisc_cache")]


def _bed_tag(ns: str, prefix: str) -> str | None:
    """``xdpdt-1a2b`` for ``xdpdt-1a2b-s``/``-v``; None for names :meth:`NetBed.create` never makes."""
    match = re.fullmatch(re.escape(prefix) + r"([0-9a-f]{4})-[sv]", ns)
    return ns[:-2] if match else None


class NetBed:
    """Two namespaces, ``sender`` and ``victim``, joined by one veth pair.

    Use :meth:`create` (or ``with NetBed.create() as bed:``) and always
    :meth:`destroy`; destroy is idempotent.

    Addresses: the victim has 203.0.113.2/24 and 2001:db8:ffff::2/64; the
    sender has 203.0.113.1/24 and 2001:db8:ffff::1/64 plus the extra
    sources 192.0.2.1-9, 198.51.100.1-9 (/32), 2001:db8:bad::1-9 and
    2001:db8:900d::1-9 (/128), all without DAD.  The victim routes the extra
    ranges back via the sender's primary address.

    After :meth:`create` the link is quiet: neighbour entries on both sides
    are resolved and stay REACHABLE, MLD reports have already been sent, and
    router solicitations are off, so an XDP program attached afterwards sees
    only the traffic a test sends (plus whatever :meth:`arp_works` /
    :meth:`nd_works` trigger).
    """

    victim_v4 = "203.0.113.2"
    victim_v6 = "2001:db8:ffff::2"
    sender_v4_primary = "203.0.113.1"
    sender_v6_primary = "2001:db8:ffff::1"
    extra_v4 = EXTRA_V4
    extra_v6 = EXTRA_V6

    def __init__(self, tag: str) -> None:
        """Name a bed; does not create anything (see :meth:`create`)."""
        self.tag = tag
        self.sender_ns = f"{tag}-s"
        self.victim_ns = f"{tag}-v"
        self.sender_if = f"{tag}-a"
        self.victim_if = f"{tag}-b"
        if len(self.sender_if) > IFNAMSIZ:
            raise ValueError(f"interface name {self.sender_if!r} longer than {IFNAMSIZ} chars")
        self.owner_file = netns.owner_path(tag)
        self._destroyed = False
        self._procs: list[subprocess.Popen] = []
        self._socks: "weakref.WeakSet[socket.socket]" = weakref.WeakSet()
        self._victim_ifindex: int | None = None
        self._created_ns: list[str] = []
        self._probes: list[UdpProbe] = []

    # ------------------------------------------------------------------ lifecycle

    @classmethod
    def create(cls, prefix: str = "xdpdt") -> "NetBed":
        """Build a fresh bed; on any failure, tear down what was built and re-raise."""
        bed = cls(cls._reserve_tag(prefix))
        try:
            bed._build()
        except BaseException:
            bed.destroy()
            raise
        return bed

    @staticmethod
    def _reserve_tag(prefix: str) -> str:
        """Pick an unused ``prefix-XXXX`` and claim it by creating its owner file.

        The owner file is written *before* any namespace exists, so a
        concurrent sweep never mistakes a live run's namespace for a stale one.
        """
        for _ in range(100):
            tag = f"{prefix}-{secrets.token_hex(2)}"
            if any(ns.startswith(tag + "-") for ns in netns.list_netns()):
                continue
            if netns.write_owner_file(netns.owner_path(tag)):
                return tag
        raise RuntimeError("could not find a free test-bed tag")

    def _build(self) -> None:
        """Namespaces, sysctls, veth, addresses and routes, then the warm-up."""
        for ns in (self.sender_ns, self.victim_ns):
            netns.ip(["netns", "add", ns])
            self._created_ns.append(ns)  # destroy() deletes only what we created
        self._sysctl(self.sender_ns, _COMMON_SYSCTLS + _SENDER_SYSCTLS)
        self._sysctl(self.victim_ns, _COMMON_SYSCTLS)
        netns.ip(["-n", self.sender_ns, "link", "add", self.sender_if, "type", "veth",
             "peer", "name", self.victim_if, "netns", self.victim_ns])
        netns.ip(["-n", self.sender_ns, "-batch", "-"], input=self._sender_batch())
        netns.ip(["-n", self.victim_ns, "-batch", "-"], input=self._victim_batch())
        self._warm_up()

    def _warm_up(self) -> None:
        """Resolve all four neighbour entries now, and prove the link works.

        Without this the first packets a test sends would wait in the
        neighbour queue (and could overflow it), the victim would ARP for
        the sender in the middle of a test, and a broken bed would show up
        as a confusing "XDP dropped everything" failure.
        """
        ok = self.arp_works(timeout=2.0) and self.nd_works(timeout=2.0)
        for version in (4, 6):
            ok = ok and self._resolves(self.victim_ns, self.victim_if, self.victim_addr(version),
                                       self.sender_primary(version), self.sender_mac(), timeout=2.0)
        if not ok:
            raise RuntimeError(f"test bed {self.tag}: neighbour resolution over the fresh veth failed")

    def _sysctl(self, ns: str, settings: Sequence[str]) -> None:
        proc = self.run(ns, ["sysctl", "-q", "-w", *settings])
        if proc.returncode != 0:
            raise RuntimeError(f"sysctl in {ns} failed: {proc.stderr.strip()}")

    def _sender_batch(self) -> str:
        dev = self.sender_if
        lines = ["link set lo up", *_neigh_batch(dev), f"link set {dev} up",
                 f"addr add {self.sender_v4_primary}/24 dev {dev}",
                 f"addr add {self.sender_v6_primary}/64 dev {dev} nodad"]
        lines += [f"addr add {a}/32 dev {dev}" for a in EXTRA_V4]
        lines += [f"addr add {a}/128 dev {dev} nodad" for a in EXTRA_V6]
        return "\n".join(lines) + "\n"

    def _victim_batch(self) -> str:
        """Victim addresses, and routes back to the extra sources via the sender's primary address.

        Routing via the primary address (rather than on-link) means the
        victim needs only one neighbour entry per family, whatever sources a
        test uses.
        """
        dev = self.victim_if
        lines = ["link set lo up", *_neigh_batch(dev), f"link set {dev} up",
                 f"addr add {self.victim_v4}/24 dev {dev}",
                 f"addr add {self.victim_v6}/64 dev {dev} nodad"]
        lines += [f"route add {n} via {self.sender_v4_primary} dev {dev}" for n in _EXTRA_V4_NETS]
        lines += [f"route add {n} via {self.sender_v6_primary} dev {dev}" for n in _EXTRA_V6_NETS]
        return "\n".join(lines) + "\n"

    def destroy(self) -> None:
        """Remove both namespaces (and thereby the veth pair).  Safe to call twice."""
        if self._destroyed:
            return
        self._destroyed = True
        for probe in self._probes:
            probe.stop(settle=0)
        self._stop_processes()
        for sock in list(self._socks):
            sock.close()
        names = set(netns.list_netns())
        ours = [ns for ns in self._created_ns if ns in names]
        if self.sender_ns in ours:
            netns.ip(["-n", self.sender_ns, "link", "del", self.sender_if], check=False)
        for ns in ours:
            netns.ip(["netns", "del", ns], check=False)
        leftover = set(ours) & set(netns.list_netns())
        if leftover:  # keep the owner file: once this process is gone, a sweep retries
            raise RuntimeError(f"could not delete namespaces {sorted(leftover)}")
        self._remove_owner_file()

    def _stop_processes(self) -> None:
        """End the processes this bed started with :meth:`popen` (only those)."""
        for proc in self._procs:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=2)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(timeout=5)
        self._procs.clear()

    def _remove_owner_file(self) -> None:
        try:
            os.unlink(self.owner_file)
        except FileNotFoundError:
            pass

    def __enter__(self) -> "NetBed":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.destroy()

    @staticmethod
    def sweep_stale(prefix: str = "xdpdt-") -> list[str]:
        """Delete test-bed namespaces left behind by crashed runs; return their names.

        Only namespaces that :meth:`create` made are candidates: the name
        must be exactly ``<prefix><4 hex>-s`` or ``-v`` *and* its owner file
        must name a process that is gone.  Beds of a test run going on in
        parallel (live owner) and namespaces made by anyone else under the
        shared ``xdpdt-`` prefix (no owner file) are never touched.
        Deleting a namespace also deletes its veth end.
        """
        if not prefix:
            raise ValueError("refusing to sweep with an empty prefix")
        removed = []
        for ns in netns.list_netns():
            tag = _bed_tag(ns, prefix)
            if tag is None or not netns.owner_is_dead(netns.owner_path(tag)):
                continue
            if netns.ip(["netns", "del", ns], check=False).returncode == 0:
                removed.append(ns)
        NetBed._sweep_owner_files(prefix)
        return removed

    @staticmethod
    def _sweep_owner_files(prefix: str) -> None:
        """Drop owner files of dead owners whose namespaces are all gone."""
        try:
            files = os.listdir(OWNER_DIR)
        except FileNotFoundError:
            return
        live_tags = {_bed_tag(ns, prefix) for ns in netns.list_netns()}
        for name in files:
            tag = name[: -len(".owner")] if name.endswith(".owner") else None
            if tag is None or _bed_tag(f"{tag}-s", prefix) is None or tag in live_tags:
                continue
            if netns.owner_is_dead(netns.owner_path(tag)):
                try:
                    os.unlink(netns.owner_path(tag))
                except FileNotFoundError:
                    pass

    # ------------------------------------------------------------------ queries

    def victim_addr(self, family: int | str) -> str:
        """Victim address for ``socket.AF_INET``/``AF_INET6``, 4/6 or "v4"/"v6"/"ipv4"/"ipv6"."""
        return self.victim_v6 if self._is_v6(family) else self.victim_v4

    def sender_primary(self, family: int | str) -> str:
        """Sender's primary (on-link) address of the given family."""
        return self.sender_v6_primary if self._is_v6(family) else self.sender_v4_primary

    @staticmethod
    def _is_v6(family: int | str) -> bool:
        if family in (socket.AF_INET6, 6, "6", "v6", "ipv6", "inet6"):
            return True
        if family in (socket.AF_INET, 4, "4", "v4", "ipv4", "inet"):
            return False
        raise ValueError(f"unknown address family {family!r}")

    def victim_ifindex(self) -> int:
        """ifindex of the victim's veth end (inside the victim namespace), for XDP attach."""
        if self._victim_ifindex is None:
            self._victim_ifindex = int(self._link_info(self.victim_ns, self.victim_if)["ifindex"])
        return self._victim_ifindex

    def victim_mac(self) -> str:
        """MAC of the victim's veth end, e.g. for frames injected with :meth:`inject`."""
        return str(self._link_info(self.victim_ns, self.victim_if)["address"])

    def sender_mac(self) -> str:
        """MAC of the sender's veth end."""
        return str(self._link_info(self.sender_ns, self.sender_if)["address"])

    def _link_info(self, ns: str, dev: str) -> dict:
        out = netns.ip(["-n", ns, "-j", "link", "show", "dev", dev]).stdout
        return json.loads(out)[0]

    # ------------------------------------------------------------------ processes and sockets

    def _ns(self, ns: str) -> str:
        """Accept ``"sender"``/``"victim"`` or our own namespace names; refuse anything else."""
        resolved = {"sender": self.sender_ns, "victim": self.victim_ns}.get(ns, ns)
        if resolved not in (self.sender_ns, self.victim_ns):
            raise ValueError(f"{ns!r} is not a namespace of this bed")
        return resolved

    def run(self, ns: str, argv: Sequence[str], **kw: Any) -> subprocess.CompletedProcess:
        """Run ``argv`` inside ``ns`` (``ip netns exec``); output captured as text by default."""
        kw.setdefault("capture_output", True)
        kw.setdefault("text", True)
        kw.setdefault("timeout", 60)
        return subprocess.run(["ip", "netns", "exec", self._ns(ns), *argv], **kw)

    def popen(self, ns: str, argv: Sequence[str], **kw: Any) -> subprocess.Popen:
        """Start ``argv`` inside ``ns``; :meth:`destroy` terminates it if still running."""
        proc = subprocess.Popen(["ip", "netns", "exec", self._ns(ns), *argv], **kw)
        self._procs.append(proc)
        return proc

    def socket(self, ns: str, family: int, type: int, proto: int = 0) -> socket.socket:
        """A socket living in ``ns`` (sender/victim), usable from this process.

        Sockets still open at :meth:`destroy` are closed, since they would
        keep the namespace alive.
        """
        sock = netns.ns_socket(self._ns(ns), family, type, proto)
        self._socks.add(sock)
        return sock

    def inject(self, frame: bytes, count: int = 1) -> None:
        """Transmit a raw Ethernet frame (e.g. from :mod:`frames`) out of the sender's veth.

        The frame arrives on the victim's end exactly as given, so XDP there
        sees it.  For the victim's stack to accept it, the destination MAC
        must be :meth:`victim_mac` (or broadcast) and checksums correct.
        """
        with self.socket("sender", socket.AF_PACKET, socket.SOCK_RAW, 0) as sock:
            sock.bind((self.sender_if, 0))
            for _ in range(count):
                sock.send(frame)

    # ------------------------------------------------------------------ extra victim devices

    def add_macvlan(self, v4: str = "203.0.113.30", v6: str | None = "2001:db8:ffff::30",
                    suffix: str = "m") -> str:
        """A macvlan (bridge mode) on the victim's veth, with its own addresses; return its name.

        The device is ``<tag>-<suffix>`` in the victim namespace (it goes with
        the namespace).  Frames for it arrive on the victim's veth and are
        handed to the macvlan by MAC, so traffic sent to ``v4``/``v6`` from
        the sender (``send(..., dst=v4)``, a :class:`UdpProbe` with ``dst``)
        crosses first the veth's XDP hook, then the macvlan's.  The sender
        gets permanent neighbour entries for the addresses, so no ARP/ND
        happens mid-test.  A macvlan has no native XDP support, so programs
        attach to it in generic mode only.
        """
        name = self._victim_device_name(suffix)
        netns.ip(["-n", self.victim_ns, "link", "add", name, "link", self.victim_if, "type", "macvlan", "mode", "bridge"])
        lines = [*_neigh_batch(name), f"addr add {v4}/32 dev {name}"]
        if v6:
            lines.append(f"addr add {v6}/128 dev {name} nodad")
        lines.append(f"link set {name} up")
        netns.ip(["-n", self.victim_ns, "-batch", "-"], input="\n".join(lines) + "\n")
        mac = str(self._link_info(self.victim_ns, name)["address"])
        for addr in (v4, v6) if v6 else (v4,):
            netns.ip(["-n", self.sender_ns, "neigh", "replace", addr, "lladdr", mac, "dev", self.sender_if,
                 "nud", "permanent"])
        return name

    def add_bridge(self, suffix: str = "br") -> str:
        """An empty, up Linux bridge ``<tag>-<suffix>`` in the victim namespace; return its name.

        Bridges have no native XDP support: a device to test generic mode
        and its fallback on, not to carry traffic.
        """
        name = self._victim_device_name(suffix)
        netns.ip(["-n", self.victim_ns, "link", "add", name, "type", "bridge"])
        netns.ip(["-n", self.victim_ns, "link", "set", name, "up"])
        return name

    def _victim_device_name(self, suffix: str) -> str:
        name = f"{self.tag}-{suffix}"
        if len(name) > IFNAMSIZ or not re.fullmatch(r"[a-z0-9]+", suffix) or suffix in ("a", "b"):
            raise ValueError(f"bad device suffix {suffix!r} (name {name!r})")
        return name

    def probe(self, sources: Sequence[str], dport: int = 4242, interval: float = 0.002,
              dst: dict[int, str] | str | None = None) -> UdpProbe:
        """A started :class:`UdpProbe` (stopped by :meth:`UdpProbe.stop`, or at the latest by :meth:`destroy`)."""
        probe = UdpProbe(self, sources, dport=dport, interval=interval, dst=dst)
        self._probes.append(probe)
        return probe.start()

    # ------------------------------------------------------------------ traffic

    def send(self, proto: str, src: str, dst: str | None = None, dport: int = 9, sport: int | None = None,
             count: int = 1, payload_len: int = 32, timeout: float = 1.0, settle: float = 0.15,
             tx_opts: traffic.SockOpts = ()) -> int:
        """Send ``count`` packets from the sender namespace with source ``src``; return how many the victim got.

        What is counted, per ``proto``:

        * ``udp``: datagrams from ``src`` received by a UDP socket bound in the
          victim namespace on ``dport`` (wildcard address).
        * ``tcp``: connections from ``src`` accepted by a listening socket in
          the victim.  Each attempt is a new connection sending exactly one
          SYN; attempts run in parallel unless ``sport`` is fixed.
          ``payload_len`` is unused.
        * ``icmp`` / ``icmpv6``: echo requests answered (distinct echo replies
          from ``dst`` received by a raw socket in the sender).

        ``dst`` defaults to the victim address of ``src``'s family.
        ``tx_opts`` (UDP only) are ``setsockopt`` calls on the sending socket
        (``(IPPROTO_IP, IP_TTL, 1)``).  After the
        last packet is sent we return as soon as all ``count`` arrived;
        otherwise once nothing new arrived for ``settle`` seconds (what a
        dropped packet costs) or ``timeout`` seconds passed (TCP: at most
        0.9 s, below the SYN retransmission timer).
        """
        fam = traffic.family_of(src)
        dst = dst or self.victim_addr(fam)
        if traffic.family_of(dst) != fam:
            raise ValueError(f"src {src} and dst {dst} are of different families")
        wait = Wait(settle=settle, timeout=timeout)
        proto = proto.lower()
        if proto == "udp":
            return traffic.udp_exchange(self.sender_ns, self.victim_ns, src, dst, dport, sport, count, payload_len, wait,
                                        tx_opts)
        if tx_opts:
            raise ValueError("tx_opts are for udp only")
        if proto == "tcp":
            return traffic.tcp_exchange(self.sender_ns, self.victim_ns, src, dst, dport, sport, count, wait)
        if proto in ("icmp", "icmpv6"):
            if (proto == "icmpv6") != (fam == socket.AF_INET6):
                raise ValueError(f"{proto} does not go with source {src}")
            return traffic.icmp_exchange(self.sender_ns, src, dst, count, payload_len, wait)
        raise ValueError(f"unknown protocol {proto!r}")

    # ------------------------------------------------------------------ neighbour discovery

    def arp_works(self, timeout: float = 0.5) -> bool:
        """Flush the sender's IPv4 neighbour cache, trigger ARP for the victim, and see it resolve.

        True once the entry for the victim holds the victim's MAC in a
        resolved state (REACHABLE etc.); False if it is still unresolved
        after ``timeout`` (the kernel retries ARP only after 1 s, so a
        dropped request or reply shows up as INCOMPLETE/FAILED here).
        """
        return self._neigh_works(4, timeout)

    def nd_works(self, timeout: float = 0.5) -> bool:
        """The same as :meth:`arp_works` for IPv6 neighbour discovery (NS/NA)."""
        return self._neigh_works(6, timeout)

    def _neigh_works(self, version: int, timeout: float) -> bool:
        return self._resolves(self.sender_ns, self.sender_if, self.sender_primary(version),
                              self.victim_addr(version), self.victim_mac(), timeout)

    def _resolves(self, ns: str, dev: str, src: str, target: str, want_mac: str, timeout: float) -> bool:
        """Flush ``ns``'s neighbour cache for ``target``'s family, send to ``target``, wait for resolution."""
        version = 6 if ":" in target else 4
        netns.ip(["-n", ns, f"-{version}", "neigh", "flush", "dev", dev], check=False)
        traffic.send_trigger(ns, src, target)
        deadline = time.monotonic() + timeout
        while True:
            entry = self._neigh_entry(ns, dev, version, target)
            if entry and entry.get("lladdr", "").lower() == want_mac.lower() and _GOOD_NEIGH_STATES & set(entry.get("state", [])):
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.01)

    @staticmethod
    def _neigh_entry(ns: str, dev: str, version: int, addr: str) -> dict | None:
        out = netns.ip(["-n", ns, f"-{version}", "-j", "neigh", "show", addr, "dev", dev]).stdout
        entries = json.loads(out or "[]")
        return entries[0] if entries else None
