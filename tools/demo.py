"""xdpd in action, on a throw-away test bed: ``sudo make demo``.

What it does, in about ten seconds:

1. builds two network namespaces joined by a veth pair (tests/testbed/netbed.py):
   a "sender" and a "victim"; nothing touches the host's own interfaces;
2. writes a demo config and runs ``xdpd run`` on the victim's veth end;
3. sends real UDP, TCP and ping traffic from the sender, from blocked and
   allowed sources, IPv4 and IPv6, and shows what arrived;
4. prints ``xdpd status`` (per-rule counters read from the kernel);
5. stops the daemon (which detaches the filter) and removes everything,
   also on an error or Ctrl-C.

The config shows the three programs of the original seed note as rules of
one filter: pass everything (the interface default), count every packet in
per-CPU counters (``count-all``), and drop one source (``drop-one-source``).
Run as root, from the repository root: ``sudo /usr/bin/python3 -m tools.demo``.
"""

from __future__ import annotations

import os
import sys
import time

from tests.testbed.daemon import DaemonFailed, XdpdProcess
from tests.testbed.netbed import NetBed
from tests.testbed.xdplink import xdp_attachment

CONFIG = """\
# The xdpd demo config (written to a temporary config dir).
settings: {{log_interval: 60, max_addresses: 1024}}
interfaces:
  {iface}: {{mode: auto, default: pass}}    # pass-all: what no rule drops passes
rules:
  - {{name: count-all, action: count}}                              # per-CPU count of every packet
  - {{name: drop-one-source, action: drop, src: 192.0.2.1}}          # drop by source
  - {{name: no-dns-in, action: drop, proto: udp, dst_port: 53}}      # no DNS queries in
  - {{name: drop-bad-v6-net, action: drop, src: "2001:db8:bad::/48"}} # a whole IPv6 /48
"""

# (label, proto, source, kwargs, count, expect_delivered)
TRAFFIC = [
    ("UDP  from 192.0.2.1 (the blocked source)", "udp", "192.0.2.1", {}, 20, False),
    ("UDP  from 192.0.2.2 (its neighbour)", "udp", "192.0.2.2", {}, 20, True),
    ("ping from 192.0.2.1 (blocked source)", "icmp", "192.0.2.1", {}, 5, False),
    ("ping from 203.0.113.1", "icmp", "203.0.113.1", {}, 5, True),
    ("DNS query udp/53 from 203.0.113.1", "udp", "203.0.113.1", {"dport": 53}, 10, False),
    ("DNS over tcp/53 from 203.0.113.1", "tcp", "203.0.113.1", {"dport": 53}, 5, True),
    ("UDP  from 2001:db8:bad::1 (blocked /48)", "udp", "2001:db8:bad::1", {}, 20, False),
    ("ping from 2001:db8:bad::2 (blocked /48)", "icmpv6", "2001:db8:bad::2", {}, 5, False),
    ("UDP  from 2001:db8:900d::1", "udp", "2001:db8:900d::1", {}, 20, True),
    ("ping from 2001:db8:ffff::1", "icmpv6", "2001:db8:ffff::1", {}, 5, True),
]


def say(text: str = "") -> None:
    print(text, flush=True)


def heading(text: str) -> None:
    say()
    say(f"== {text}")


def main() -> int:
    if os.geteuid() != 0:
        say("xdpd demo: needs root (network namespaces and XDP): sudo make demo")
        return 77

    started = time.monotonic()
    NetBed.sweep_stale()  # beds left by crashed earlier runs (dead owners only)
    bed = daemon = None
    failures = 0
    try:
        heading("1. Test bed: two network namespaces and one veth pair")
        bed = NetBed.create()
        say(f"   sender {bed.sender_ns} ({bed.sender_if}): 203.0.113.1, 2001:db8:ffff::1, "
            "and sources 192.0.2.1-9, 198.51.100.1-9, 2001:db8:bad::1-9, 2001:db8:900d::1-9")
        say(f"   victim {bed.victim_ns} ({bed.victim_if}): {bed.victim_v4}, {bed.victim_v6}  <- xdpd filters here")

        heading("2. Config")
        text = CONFIG.format(iface=bed.victim_if)
        for line in text.splitlines():
            say(("   " + line).rstrip())

        heading("3. Starting xdpd run (compiles the BPF program, then notifies READY=1)")
        daemon = XdpdProcess(bed, text)
        t0 = time.monotonic()
        daemon.start()
        say(f"   ready after {time.monotonic() - t0:.1f} s; attached to {bed.victim_if} "
            f"in {daemon.status()['interfaces'][bed.victim_if]['mode']} mode "
            f"(ip link: {xdp_attachment(bed.victim_ns, bed.victim_if)})")

        heading("4. Traffic from the sender to the victim")
        say(f"   {'traffic class':<44} {'sent':>5} {'received':>9} {'dropped':>8}")
        for label, proto, src, kw, count, delivered in TRAFFIC:
            got = bed.send(proto, src, count=count, **kw)
            ok = got == (count if delivered else 0)
            failures += not ok
            verdict = ("passes" if delivered else "dropped") if ok else "UNEXPECTED"
            say(f"   {label:<44} {count:>5} {got:>9} {count - got:>8}   {verdict}")

        heading("5. xdpd status (counters read from the kernel's per-CPU maps)")
        table = daemon.status_cmd()
        for line in (table.stdout or table.stderr).splitlines():
            say(("   " + line).rstrip())
        st = daemon.status()
        iface = st["interfaces"][bed.victim_if]
        say("   interface verdicts: " + ", ".join(
            f"{v} {c['packets']}" for v, c in iface["counters"].items() if c["packets"]))
        say("   (count-all also sees the TCP handshakes' ACK/RST packets; echo replies leave "
            "the victim and are not filtered)")

        heading("6. Stopping xdpd (SIGTERM; detach_on_stop is true by default)")
        rc = daemon.stop()
        left = xdp_attachment(bed.victim_ns, bed.victim_if)
        say(f"   exit code {rc}; XDP on {bed.victim_if}: {left or 'none (detached)'}")
        after = bed.send("udp", "192.0.2.1", count=5)
        say(f"   UDP from 192.0.2.1 now: sent 5 / received {after}")
        failures += rc != 0 or left is not None or after != 5
    except KeyboardInterrupt:
        say("\ninterrupted: cleaning up")
        failures = -1
    except DaemonFailed as e:
        say(f"\nxdpd failed: {e}")
        failures += 1
    finally:
        if daemon is not None:
            daemon.close()
        if bed is not None:
            bed.destroy()
    if failures < 0:
        return 130
    say()
    say(f"== Cleaned up (namespaces, pins, config) in {time.monotonic() - started:.1f} s total: "
        + ("everything behaved as configured." if not failures else f"{failures} UNEXPECTED result(s)."))
    return 0 if not failures else 1


if __name__ == "__main__":
    sys.exit(main())
