#!/usr/bin/python3
"""Benchmark the real daemon: cold start, list-edit reloads and memory, with 1M addresses.

Run as root: ``make bench`` (``/usr/bin/python3 tools/bench_reload.py``).

Where :mod:`tools.bench` measures the XDP program per packet, this measures
``python3 -m xdpd run`` as an operator runs it, against the issue's
daemon-level targets:

1. **Cold start**: a config with one interface and a rule whose
   ``src_file`` is a 1,000,000-line list (random unique IPv4 /32s from
   ``random.Random(SEED)``, a few hundred /24s, IPv6 prefixes and hosts under
   2001:db8::/32), a fresh pin dir.  Measured from just before the process is
   spawned to the ``READY=1`` datagram on ``NOTIFY_SOCKET`` (bcc compile
   included).  The breakdown comes from watching the daemon's children: the
   compiler child's lifetime splits the time into before, during and after
   the compile.
2. **A list edit, enforced**: the edited list is written to a temporary
   file in the same directory and ``os.rename``-d over the list.  The
   evidence is real packets: the bed's sender sends a UDP datagram every
   ``--interval`` seconds from the source the edit adds (or removes), each
   followed at once by one from a control source that is never listed.  The
   edit is enforced between the last datagram of the target that passed and
   the control datagram sent right after the first one that was dropped (or
   the other way round when the edit removes the target), so the reported
   time is an upper bound, at most one probe interval late.  The
   ``RELOADING=1`` / ``READY=1`` datagrams and the daemon's own
   ``reload_applied ms=`` give the breakdown (watcher and debounce, then the
   reload).  One-line edits replace one line (alternately putting the target
   in and taking it out again); 100-line edits replace 100 lines scattered
   over the file; the unchanged case renames an identical copy over the list.
3. **Memory**: VmRSS and VmHWM of the daemon from ``/proc/PID/status`` once
   it is ready, has written the second map bank and has been idle for
   ``--idle`` seconds, then after the one-line edits and after all of them.

Everything happens in a throwaway :class:`netbed.NetBed` (``xdpdt-`` namespaces,
documentation addresses only), with the daemon started by
:class:`daemon_fixture.XdpdProcess` (``nsenter`` into the victim namespace,
pin dir ``/sys/fs/bpf/xdpdt-*``, config dir and ``--runtime-dir`` in
temporary directories).  All of it is removed at the end, also after a
failure or Ctrl-C.  Periodic logging and drift checks are set to an hour so
they do not land in a measurement.

The exit status is 0 whenever the measurements were taken, over target or
not (the table says OVER); 1 if the daemon failed, 2 without root.
"""

from __future__ import annotations

import argparse
import array
import contextlib
import os
import platform
import random
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.dont_write_bytecode = True  # a shared tree: leave no __pycache__ behind
for _p in (ROOT / "tests" / "kernel", ROOT / "tests", ROOT):
    sys.path.insert(0, str(_p))

from daemon_fixture import PYTHON, REPO_ROOT, DaemonFailed, XdpdProcess, in_netns  # noqa: E402
from netbed import NetBed, UdpProbe  # noqa: E402

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

COLD_START_TARGET = 5.0          # seconds
EDIT_TARGET = 0.5                # seconds, one line changed
RSS_TARGET = 150_000_000         # bytes (MB = 10^6 bytes)

READY_TIMEOUT = 120.0
RELOAD_TIMEOUT = 30.0


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# --------------------------------------------------------------- the list

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


# --------------------------------------------------------------- the daemon

def config_yaml(iface: str) -> str:
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


class BenchDaemon(XdpdProcess):
    """:class:`XdpdProcess` with ``--runtime-dir``, and its output and sd_notify datagrams time-stamped.

    stderr goes through a pipe so each log line gets the ``time.monotonic()``
    of its arrival (the daemon's own timestamps are whole seconds); every
    sd_notify datagram is kept with its arrival time in :attr:`notes`.
    """

    def __init__(self, bed: NetBed, config: str, runtime_dir: str) -> None:
        super().__init__(bed, config)
        self.runtime_dir = runtime_dir
        self.lines: list[tuple[float, str]] = []
        self.notes: list[tuple[float, str]] = []
        self.spawned_at = 0.0
        self._reader: threading.Thread | None = None

    def start(self, wait: bool = False) -> "BenchDaemon":
        env = {k: v for k, v in os.environ.items()
               if k not in ("WATCHDOG_USEC", "WATCHDOG_PID", "JOURNAL_STREAM", "INVOCATION_ID")}
        env.update({"NOTIFY_SOCKET": self.notify_path, "PYTHONDONTWRITEBYTECODE": "1",
                    "XDPD_LOG_TARGET": "console",
                    "PYTHONPATH": REPO_ROOT + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")})
        argv = in_netns(self.ns, [PYTHON, "-m", "xdpd", "run", "--config-dir", self.config_dir,
                                  "--pin-dir", self.pin_dir, "--runtime-dir", self.runtime_dir])
        self.starts += 1
        self.spawned_at = time.monotonic()
        self.proc = subprocess.Popen(argv, cwd=REPO_ROOT, env=env, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        self._reader = threading.Thread(target=self._read_output, name="xdpd-output", daemon=True)
        self._reader.start()
        if wait:
            self.next_note(lambda m: "READY=1" in m.splitlines(), READY_TIMEOUT, "start")
        return self

    def _read_output(self) -> None:
        for raw in self.proc.stdout:
            self.lines.append((time.monotonic(), raw.decode(errors="replace").rstrip("\n")))

    def next_note(self, match, timeout: float, what: str) -> tuple[float, str]:
        """Wait for the next sd_notify datagram ``match(msg)`` accepts; return (arrival time, msg)."""
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise DaemonFailed(f"no matching sd_notify message within {timeout:.0f} s ({what}); "
                                   f"got {[m for _, m in self.notes[-3:]]}", self.proc.poll(), self.stderr())
            self.notify.settimeout(min(remaining, 0.2))
            try:
                msg = self.notify.recv(65536).decode(errors="replace")
            except socket.timeout:
                if self.proc.poll() is not None:
                    raise DaemonFailed(f"xdpd exited ({what})", self.proc.returncode, self.stderr()) from None
                continue
            now = time.monotonic()
            self.notes.append((now, msg))
            self.messages.append(msg)
            if match(msg):
                return now, msg

    def drain_notes(self) -> None:
        self.notify.setblocking(False)
        try:
            while True:
                msg = self.notify.recv(65536).decode(errors="replace")
                self.notes.append((time.monotonic(), msg))
                self.messages.append(msg)
        except (BlockingIOError, InterruptedError):
            pass
        finally:
            self.notify.setblocking(True)

    def log_since(self, t: float) -> list[str]:
        return [line for at, line in list(self.lines) if at >= t]

    def stderr(self) -> str:
        return "\n".join(line for _, line in list(self.lines))

    stderr_since_start = stderr

    def close(self) -> None:
        # A compiler child outliving the daemon would pin into the removed pin dir again.
        if self.proc is not None and self.proc.poll() is None:
            for pid in _compiler_children(self.proc.pid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        super().close()
        shutil.rmtree(self.pin_dir, ignore_errors=True)
        if self._reader is not None:
            self._reader.join(5)
        if self.proc is not None and self.proc.stdout is not None:
            self.proc.stdout.close()


# --------------------------------------------------------------- /proc

def _compiler_children(pid: int) -> list[int]:
    """Pids of ``pid``'s ``python3 -m xdpd.compiler`` children."""
    out = []
    with contextlib.suppress(OSError):
        for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split():
            with contextlib.suppress(OSError):
                if b"xdpd.compiler" in Path(f"/proc/{child}/cmdline").read_bytes():
                    out.append(int(child))
    return out


def proc_status(pid: int) -> dict[str, int]:
    """VmRSS, VmHWM, ... of ``pid`` in bytes."""
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key.startswith("Vm") and value.strip().endswith("kB"):
            out[key] = int(value.split()[0]) * 1024
    return out


def cpu_ticks(pid: int) -> int:
    """utime + stime of the whole process (all threads), in clock ticks."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def wait_quiet(pid: int, quiet: float = 0.3, timeout: float = 60.0) -> float:
    """Wait until ``pid`` used no CPU for ``quiet`` seconds; return when that quiet stretch began."""
    deadline = time.monotonic() + timeout
    last, since = cpu_ticks(pid), time.monotonic()
    while time.monotonic() < deadline:
        time.sleep(0.02)
        now, ticks = time.monotonic(), cpu_ticks(pid)
        if ticks != last:
            last, since = ticks, now
        elif now - since >= quiet:
            return since
    raise RuntimeError(f"xdpd (pid {pid}) kept using CPU for {timeout:.0f} s")


def inotify_watches(pid: int) -> set[int]:
    """Inode numbers ``pid``'s inotify instances watch."""
    inodes: set[int] = set()
    fd_dir = f"/proc/{pid}/fd"
    for fd in os.listdir(fd_dir):
        with contextlib.suppress(OSError):
            if os.readlink(f"{fd_dir}/{fd}") != "anon_inode:inotify":
                continue
            for line in Path(f"/proc/{pid}/fdinfo/{fd}").read_text().splitlines():
                m = re.search(r"\bino:([0-9a-f]+)", line)
                if line.startswith("inotify") and m:
                    inodes.add(int(m.group(1), 16))
    return inodes


def wait_watching(d: BenchDaemon, path: str, timeout: float = 60.0) -> float:
    """Wait until the daemon has an inotify watch on ``path``'s directory; return when seen."""
    ino = os.stat(os.path.dirname(path)).st_ino
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if d.proc.poll() is not None:
            raise DaemonFailed("xdpd exited after READY=1", d.proc.returncode, d.stderr())
        if ino in inotify_watches(d.proc.pid):
            return time.monotonic()
        time.sleep(0.01)
    raise RuntimeError(f"xdpd did not watch {os.path.dirname(path)} within {timeout:.0f} s of READY=1")


class ChildWatch:
    """Records the daemon's child processes (the compiler) with when they were first and last seen."""

    def __init__(self, pid: int, period: float = 0.005) -> None:
        self.pid, self.period = pid, period
        self.children: dict[int, list] = {}     # pid -> [first seen, last seen, cmdline]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="child-watch", daemon=True)

    def start(self) -> "ChildWatch":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)

    def _run(self) -> None:
        path = f"/proc/{self.pid}/task/{self.pid}/children"
        while not self._stop.is_set():
            try:
                pids = [int(p) for p in Path(path).read_text().split()]
            except (OSError, ValueError):
                return
            now = time.monotonic()
            for p in pids:
                entry = self.children.get(p)
                if entry is None:
                    cmd = ""
                    with contextlib.suppress(OSError):
                        cmd = Path(f"/proc/{p}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
                    self.children[p] = [now, now, cmd]
                else:
                    entry[1] = now
            self._stop.wait(self.period)

    def compiler(self) -> tuple[float, float] | None:
        """(first seen, last seen) of the ``xdpd.compiler`` child, if one was seen."""
        for first, last, cmd in self.children.values():
            if "xdpd.compiler" in cmd:
                return first, last
        return None


# --------------------------------------------------------------- edits

@dataclass
class Edit:
    label: str
    lines_changed: int
    expect: str | None                # "drop": the target gets listed; "pass": unlisted; None: no change
    renamed_at: float = 0.0
    reloading: float | None = None    # seconds after the rename
    ready: float | None = None
    packet_lo: float | None = None    # the change took effect in (packet_lo, packet_hi]
    packet_hi: float | None = None
    daemon_ms: int | None = None
    problem: str = ""
    target_lost: int = 0
    """Datagrams of the target source dropped from the rename until the end of the measurement."""

    @property
    def enforced(self) -> float | None:
        """Seconds from the rename to the change being enforced (packet evidence, else READY=1)."""
        return self.packet_hi if self.expect else self.ready


def _arrivals(probe: UdpProbe, src: str) -> list[tuple[int, float]]:
    return sorted(list(probe.arrivals[src]))


def _first_arrival_from(arrivals: list[tuple[int, float]], seq: int) -> float | None:
    for s, t in arrivals:
        if s >= seq:
            return t
    return None


def run_edit(d: BenchDaemon, probe: UdpProbe, path: str, text: str, edit: Edit, interval: float) -> Edit:
    """Rename ``text`` over the list; measure until the change shows in packets and READY=1."""
    tmp = os.path.join(os.path.dirname(path), f".{os.path.basename(path)}.new")
    with open(tmp, "w") as f:
        f.write(text)
    d.drain_notes()
    if not probe.wait_received(CONTROL_SRC, 3, timeout=2.0):
        raise RuntimeError(f"probe stream stopped before an edit: {probe.summary()}")
    before = probe.sent[TARGET_SRC]
    t0 = time.monotonic()
    os.rename(tmp, path)
    edit.renamed_at = t0
    t_rel, _ = d.next_note(lambda m: "RELOADING=1" in m.splitlines(), RELOAD_TIMEOUT, edit.label)
    t_ready, msg = d.next_note(lambda m: "READY=1" in m.splitlines(), RELOAD_TIMEOUT, edit.label)
    edit.reloading, edit.ready = t_rel - t0, t_ready - t0
    if "reload rejected" in msg or "reload failed" in msg:
        edit.problem = msg.replace("\n", " ")
    wait_quiet(d.proc.pid, quiet=0.2)      # the second bank is written too
    probe.wait_sent(TARGET_SRC, max(10, int(0.1 / interval)))  # packets well after the switch
    probe.wait_received(CONTROL_SRC, 1, timeout=1.0)
    for line in reversed(d.log_since(t0)):
        m = re.search(r"reload_applied .*\bms=(\d+)", line)
        if m:
            edit.daemon_ms = int(m.group(1))
            break

    target, control = _arrivals(probe, TARGET_SRC), _arrivals(probe, CONTROL_SRC)
    after = [(s, t) for s, t in target if s >= before]
    # The last few datagrams sent may still be on their way: not counted.
    upto = probe.sent[TARGET_SRC] - 3
    edit.target_lost = max(0, upto - before) - len({s for s, _ in after if s < upto})
    if edit.expect == "drop":
        if not target or target[-1][1] > t_ready + 0.05:
            edit.problem = edit.problem or "the added source still gets through"
        else:
            last_seq, last_t = target[-1]
            first_dropped_next = _first_arrival_from(control, last_seq + 1)
            edit.packet_lo = last_t - t0
            edit.packet_hi = (first_dropped_next - t0) if first_dropped_next else None
            if last_t < t0 - 2 * interval:
                edit.problem = "the added source was dropped before the edit"
    elif edit.expect == "pass":
        if not after:
            edit.problem = edit.problem or "the removed source is still dropped"
        else:
            first_seq, first_t = after[0]
            prev_ctrl = _first_arrival_from(control, first_seq - 1)
            edit.packet_hi = first_t - t0
            edit.packet_lo = (prev_ctrl - t0) if prev_ctrl is not None and first_seq > before else None
    return edit


def edits_plan(alist: AddressList, n_one: int, n_hundred: int, n_touch: int) -> list[tuple[Edit, dict[int, str]]]:
    """The edits in order, each with the lines that differ from ``alist`` in the text it renames into place.

    One-line edits replace one line with the target (then put it back);
    100-line edits replace 100 lines spread over the file, one of them with
    the target (then put them all back); the list starts and ends as made.
    """
    rng = random.Random(SEED + 1)
    n = len(alist.lines)
    base: dict[int, str] = {}
    out: list[tuple[Edit, dict[int, str]]] = []
    for i in range(n_one):
        if i % 2 == 0:
            pos = rng.randrange(n)
            out.append((Edit(f"1 line: add {TARGET_SRC} at line {pos + 1:,}", 1, "drop"),
                        {pos: TARGET_SRC}))
        else:
            out.append((Edit(f"1 line: remove it again (line {pos + 1:,})", 1, "pass"), base))
    if n_one % 2:
        out.append((Edit(f"1 line: remove it again (line {pos + 1:,}), not counted", 1, "pass"), base))
    spare = iter(alist.spare_v4)
    for i in range(n_hundred):
        if i % 2 == 0:
            positions = sorted(rng.sample(range(n), 100))
            replace = {p: next(spare) for p in positions}
            replace[positions[50]] = TARGET_SRC
            out.append((Edit(f"100 lines (lines {positions[0] + 1:,} to {positions[-1] + 1:,}), "
                             f"adding {TARGET_SRC}", 100, "drop"), replace))
        else:
            out.append((Edit("100 lines: put back", 100, "pass"), base))
    if n_hundred % 2:
        out.append((Edit("100 lines: put back, not counted", 100, "pass"), base))
    for _ in range(n_touch):
        out.append((Edit("unchanged: identical copy renamed over the list", 0, None), base))
    return out


# --------------------------------------------------------------- report

def fmt_s(x: float | None) -> str:
    return "–" if x is None else f"{x:.2f} s"


def fmt_ms(x: float | None) -> str:
    return "–" if x is None else f"{x * 1000:.0f} ms"


def fmt_mb(n: int) -> str:
    return f"{n / 1e6:.0f} MB"


def verdict(value: float | None, target: float) -> str:
    if value is None:
        return "not measured"
    return "ok" if value <= target else "**OVER**"


def machine_line() -> str:
    cpu = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem = ""
    with contextlib.suppress(OSError, IndexError, ValueError):
        kb = int(Path("/proc/meminfo").read_text().split("MemTotal:")[1].split()[0])
        mem = f", {kb / 2**20:.0f} GiB RAM"
    bcc = ""
    with contextlib.suppress(Exception):
        out = subprocess.run(["dpkg-query", "-W", "-f", "${Version}", "python3-bpfcc"],
                             capture_output=True, text=True, timeout=10).stdout.strip()
        bcc = f", python3-bpfcc {out}" if out else ""
    return (f"kernel {platform.release()}, {cpu or platform.machine()} ({os.cpu_count()} CPUs{mem}), "
            f"Python {platform.python_version()}{bcc}")


def load_average() -> str:
    """The 1-minute load average: on a shared machine, what else competed for the CPUs."""
    with contextlib.suppress(OSError, IndexError):
        return Path("/proc/loadavg").read_text().split()[0]
    return "?"


@dataclass
class Results:
    lines: int = 0
    list_bytes: int = 0
    cold: float | None = None
    spawned_to_compile: float | None = None
    compile: float | None = None
    compile_to_ready: float | None = None
    ready_to_settled: float | None = None
    rss_idle: dict[str, int] = field(default_factory=dict)
    rss_one: dict[str, int] = field(default_factory=dict)
    rss_after: dict[str, int] = field(default_factory=dict)
    load: list[str] = field(default_factory=list)
    log: list[str] = field(default_factory=list)
    edits: list[Edit] = field(default_factory=list)
    counted: set[int] = field(default_factory=set)
    control: str = ""
    control_lost: int = 0
    control_sent: int = 0
    interval: float = 0.005
    status: str = ""


def _edit_stats(edits: list[Edit]) -> tuple[float | None, float | None, int]:
    values = [e.enforced for e in edits if e.enforced is not None and not e.problem]
    if not values:
        return None, None, 0
    return statistics.median(values), max(values), len(values)


def report(r: Results, elapsed: float) -> None:
    counted = [e for i, e in enumerate(r.edits) if i in r.counted]
    one = [e for e in counted if e.lines_changed == 1]
    hundred = [e for e in counted if e.lines_changed == 100]
    touch = [e for e in counted if e.lines_changed == 0]
    print()
    print(f"xdpd daemon benchmark: {machine_line()}; load average {' → '.join(r.load)} (start → end); "
          f"list of {r.lines:,} lines ({r.list_bytes / 1e6:.1f} MB, random.Random({SEED})), "
          f"probe every {r.interval * 1000:g} ms")
    print()
    print("| scenario | measured | target | |")
    print("| --- | ---: | ---: | --- |")
    print(f"| cold start to READY=1, {r.lines:,} addresses from a list file, fresh pin dir (bcc compile "
          f"included) | {fmt_s(r.cold)} | ≤ {COLD_START_TARGET:g} s | {verdict(r.cold, COLD_START_TARGET)} |")
    for label, group, target in (
            ("one line changed, enforced (first packet that saw the new list)", one, EDIT_TARGET),
            ("100 lines changed across the file, enforced (first packet)", hundred, None),
            ("file rewritten unchanged, reload done (READY=1)", touch, None)):
        med, mx, n = _edit_stats(group)
        bad = [e for e in group if e.problem]
        measured = "–" if med is None else f"{fmt_ms(med)} median, {fmt_ms(mx)} max (n={n})"
        if bad:
            measured += f"; {len(bad)} failed"
        if target is None:
            ok = "(no target)" if not bad else "**FAILED**"
            tgt = "–"
        else:
            ok = "**FAILED**" if bad else verdict(mx, target)
            tgt = f"≤ {target * 1000:.0f} ms"
        print(f"| {label} | {measured} | {tgt} | {ok} |")
    for label, rss in (("RSS, steady state (READY=1, second bank written, idle)", r.rss_idle),
                       ("RSS after the one-line edits", r.rss_one),
                       ("RSS after all edits (100-line ones included)", r.rss_after)):
        if rss:
            print(f"| {label} | {fmt_mb(rss['VmRSS'])} (peak VmHWM {fmt_mb(rss['VmHWM'])}) "
                  f"| ≤ {RSS_TARGET / 1e6:.0f} MB | {verdict(rss['VmRSS'], RSS_TARGET)} |")
        else:
            print(f"| {label} | – | ≤ {RSS_TARGET / 1e6:.0f} MB | not measured |")
    print()
    if r.cold is not None and r.compile is not None:
        print(f"cold start {fmt_s(r.cold)}: process start, imports, load_config of the list, prerequisites "
              f"{fmt_s(r.spawned_to_compile)}; compiler child (bcc) {fmt_s(r.compile)}; after it, "
              f"adopt + enforce (build image, write one bank, attach) + pin {fmt_s(r.compile_to_ready)}. "
              f"After READY=1 the daemon wrote the second bank until {fmt_s(r.ready_to_settled)} later "
              "(busy until then; a reload waits for it).")
    if r.edits:
        print()
        print("| edit | lines | enforced (packets) | RELOADING=1 | READY=1 | daemon's reload_applied ms | "
              "target datagrams dropped |")
        print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
        for e in r.edits:
            pk = "–"
            if e.packet_hi is not None:
                pk = (f"{fmt_ms(e.packet_lo)} – {fmt_ms(e.packet_hi)}" if e.packet_lo is not None
                      else f"≤ {fmt_ms(e.packet_hi)}")
            label = e.label + (f" **{e.problem}**" if e.problem else "")
            print(f"| {label} | {e.lines_changed} | {pk} | {fmt_ms(e.reloading)} | {fmt_ms(e.ready)} | "
                  f"{e.daemon_ms if e.daemon_ms is not None else '–'} | {e.target_lost} |")
        print()
        print(f"Times are from os.rename(); \"enforced\" is the interval, from the probe's packets, in which "
              f"the bank switch happened (the table above uses its upper end). Control source "
              f"{CONTROL_SRC} (never listed): {r.control_lost} of {r.control_sent} datagrams lost over all "
              f"edits.")
    if r.status:
        print(r.status)
    print(f"(MB = 10^6 bytes. Whole run: {elapsed:.0f} s.)")


# --------------------------------------------------------------- main

def measure(args: argparse.Namespace, r: Results, workdir: str) -> None:
    log(f"generating a {args.lines:,}-line list (random.Random({SEED})) ...")
    t = time.perf_counter()
    alist = make_list(args.lines, n_spare=100 * args.hundred)
    text = alist.text()
    r.lines, r.list_bytes = len(alist.lines), len(text.encode())
    log(f"  {time.perf_counter() - t:.1f} s")
    plan = edits_plan(alist, args.one, args.hundred, args.touch)

    log("creating the test bed ...")
    bed = NetBed.create()
    probe: UdpProbe | None = None
    d: BenchDaemon | None = None
    try:
        runtime_dir = os.path.join(workdir, "run")
        d = BenchDaemon(bed, config_yaml(bed.victim_if), runtime_dir)
        list_path = d.write_file(LIST_NAME, text)
        del text
        log("cold start ...")
        d.start()
        children = ChildWatch(d.proc.pid).start()
        try:
            t_ready, _ = d.next_note(lambda m: "READY=1" in m.splitlines(), READY_TIMEOUT, "start")
        finally:
            children.stop()
        r.cold = t_ready - d.spawned_at
        comp = children.compiler()
        if comp:
            r.spawned_to_compile = comp[0] - d.spawned_at
            r.compile = comp[1] - comp[0]
            r.compile_to_ready = t_ready - comp[1]
        log(f"  READY=1 after {r.cold:.2f} s")
        wait_watching(d, list_path)
        r.ready_to_settled = wait_quiet(d.proc.pid) - t_ready
        log(f"  settled {r.ready_to_settled:.2f} s after READY=1; idle {args.idle:g} s ...")
        time.sleep(args.idle)
        r.rss_idle = proc_status(d.proc.pid)

        probe = bed.probe([TARGET_SRC, CONTROL_SRC], dport=PROBE_PORT, interval=args.interval)
        if not probe.wait_received(TARGET_SRC, 5) or not probe.wait_received(CONTROL_SRC, 5):
            raise RuntimeError(f"no probe traffic reaches the victim before any edit: {probe.summary()}")
        control_start = (probe.sent[CONTROL_SRC], probe.received(CONTROL_SRC))
        for i, (edit, replace) in enumerate(plan):
            log(f"edit: {edit.label} ...")
            run_edit(d, probe, list_path, alist.text(replace), edit, args.interval)
            r.edits.append(edit)
            if "not counted" not in edit.label:
                r.counted.add(i)
            log(f"  enforced {fmt_ms(edit.enforced)} (READY=1 {fmt_ms(edit.ready)})"
                + (f" PROBLEM: {edit.problem}" if edit.problem else ""))
            if edit.lines_changed == 1 and (i + 1 == len(plan) or plan[i + 1][0].lines_changed != 1):
                wait_quiet(d.proc.pid)
                r.rss_one = proc_status(d.proc.pid)
        probe.stop()
        r.control_sent = probe.sent[CONTROL_SRC] - control_start[0]
        r.control_lost = r.control_sent - (probe.received(CONTROL_SRC) - control_start[1])
        wait_quiet(d.proc.pid)
        time.sleep(1.0)
        r.rss_after = proc_status(d.proc.pid)
        st = d.status()
        rule = st.get("rules", {}).get("blocklist", {})
        r.status = (f"xdpd status --json at the end: rule blocklist dropped {rule.get('packets', '?')} packets "
                    f"(the probe's target source while it was listed).")
        d.stop()
    finally:
        if probe is not None:
            probe.stop(settle=0)
        if d is not None:
            r.log = [line for _, line in d.lines]
            d.close()
        bed.destroy()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--lines", type=int, default=1_000_000, help="lines of the list file")
    ap.add_argument("--one", type=int, default=6, help="one-line edits (alternately add and remove)")
    ap.add_argument("--hundred", type=int, default=4, help="100-line edits (alternately add and put back)")
    ap.add_argument("--touch", type=int, default=3, help="renames of an identical copy")
    ap.add_argument("--interval", type=float, default=0.005, help="seconds between probe datagrams")
    ap.add_argument("--idle", type=float, default=3.0, help="idle seconds before the first RSS reading")
    ap.add_argument("--log", action="store_true", help="print the daemon's log at the end")
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("bench_reload: needs root (namespaces, BPF, XDP)", file=sys.stderr)
        return 2

    # SIGTERM/SIGHUP unwind through the finally blocks like Ctrl-C does.
    def _stop(signum, _frame):
        raise SystemExit(128 + signum)
    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGHUP, _stop)
    # Ctrl-C raises KeyboardInterrupt even if SIGINT was ignored when we started (a `&` job).
    signal.signal(signal.SIGINT, signal.default_int_handler)

    t_start = time.perf_counter()
    r = Results(interval=args.interval, load=[load_average()])
    rc = 0
    workdir = tempfile.mkdtemp(prefix="xdpdt-bench-reload-")
    try:
        measure(args, r, workdir)
    except (DaemonFailed, RuntimeError, OSError) as e:
        log(f"bench_reload: {e}")
        rc = 1
    except KeyboardInterrupt:
        log("bench_reload: interrupted; everything it made is removed")
        return 130
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
        if args.log and r.log:
            log("--- xdpd log ---\n" + "\n".join(r.log))
    r.load.append(load_average())
    report(r, time.perf_counter() - t_start)
    return rc


if __name__ == "__main__":
    sys.exit(main())
