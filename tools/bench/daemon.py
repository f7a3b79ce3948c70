"""Benchmark the real daemon: cold start, list-edit reloads and memory, with 1M addresses.

Run as root from the repository root: ``make bench``
(``/usr/bin/python3 -m tools.bench.daemon``).

Where :mod:`tools.bench.packet` measures the XDP program per packet, this measures
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
4. **Restart**: the daemon is stopped as a package upgrade stops it (the
   ``keep-attached`` flag in its runtime dir, then SIGTERM: the filter stays
   attached) and started again on the same pin dir and the same config.
   Measured from just before the spawn to ``READY=1``: the program pinned
   by the first daemon is reused (no compiler child; the log must say
   ``program_reused``) and the maps are adopted, not rewritten.  The
   restarted daemon's peak RSS is its VmHWM once it is idle again.  The
   breakdown comes from the arrival times of its log lines
   (``program_reused`` after the config is read, ``enforced`` after
   adoption and the first plan).

Everything happens in a throwaway :class:`tests.testbed.netbed.NetBed` (``xdpdt-`` namespaces,
documentation addresses only), with the daemon started by
:class:`tests.testbed.daemon.XdpdProcess` (``nsenter`` into the victim namespace,
pin dir ``/sys/fs/bpf/xdpdt-*``, config dir and ``--runtime-dir`` in
temporary directories).  All of it is removed at the end, also after a
failure or Ctrl-C.  Periodic logging and drift checks are set to an hour so
they do not land in a measurement.

The exit status is 0 whenever the measurements were taken, over target or
not (the table says OVER); 1 if the daemon failed, 2 without root.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import sys
import tempfile
import time

from tests.testbed.daemon import DaemonFailed
from tests.testbed.netbed import NetBed
from tests.testbed.probe import UdpProbe
from tools.bench.daemonrun import (READY_TIMEOUT, BenchDaemon, ChildWatch, cpu_ticks, proc_status, wait_quiet,
                                   wait_watching)
from tools.bench.edits import edits_plan, run_edit
from tools.bench.listfiles import CONTROL_SRC, LIST_NAME, PROBE_PORT, SEED, TARGET_SRC, config_yaml, make_list
from tools.bench.report import DaemonResults, daemon_report, fmt_ms
from tools.bench.session import load_average, log, unwind_on_signals


def measure(args: argparse.Namespace, r: DaemonResults, workdir: str) -> None:
    """Cold start, idle memory, then every edit under a running probe; fills ``r``."""
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
        t_ready, children = until_ready(d, "start")
        r.cold = t_ready - d.spawned_at
        r.cold_enforced = next((at - d.spawned_at for at, line in d.timed_log_since(d.spawned_at)
                                if " enforced " in f" {line} "), None)
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
        restart(d, r, runtime_dir)
        d.stop()
    finally:
        if probe is not None:
            probe.stop(settle=0)
        if d is not None:
            r.log = [line for _, line in d.lines]
            d.close()
        bed.destroy()


def until_ready(d: BenchDaemon, what: str) -> tuple[float, ChildWatch]:
    """Wait for the just spawned daemon's READY=1 while watching its children: (arrival time, the watch)."""
    children = ChildWatch(d.proc.pid).start()
    try:
        t_ready, _ = d.next_note(lambda m: "READY=1" in m.splitlines(), READY_TIMEOUT, what)
    finally:
        children.stop()
    return t_ready, children


def restart(d: BenchDaemon, r: DaemonResults, runtime_dir: str) -> None:
    """Stop the daemon as an upgrade does (filter left attached), start it again; fills ``r.restart*``."""
    prog_before = d.status().get("prog_id")
    open(os.path.join(runtime_dir, "keep-attached"), "w").close()
    if d.stop() != 0:
        raise RuntimeError(f"xdpd exited with {d.returncode} on SIGTERM before the restart")
    log("restart (same program, same config) ...")
    d.restart(wait=False)
    t_ready, children = until_ready(d, "restart")
    r.restart = t_ready - d.spawned_at
    r.restart_cpu = cpu_ticks(d.proc.pid) / os.sysconf("SC_CLK_TCK")
    r.restart_compiled = children.compiler() is not None
    for at, line in d.timed_log_since(d.spawned_at):
        if "program_reused" in line or "program_compiled" in line:
            r.restart_program = (at - d.spawned_at, "reused" if "program_reused" in line else "compiled")
        elif " enforced " in f" {line} " and r.restart_enforced is None:
            r.restart_enforced = at - d.spawned_at
    log(f"  READY=1 after {r.restart:.2f} s ({r.restart_program[1] if r.restart_program else '?'})")
    wait_quiet(d.proc.pid)
    r.rss_restart = proc_status(d.proc.pid)
    r.restart_same_prog = d.status().get("prog_id") == prog_before


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
        print("bench.daemon: needs root (namespaces, BPF, XDP)", file=sys.stderr)
        return 2

    unwind_on_signals()
    # Ctrl-C raises KeyboardInterrupt even if SIGINT was ignored when we started (a `&` job).
    signal.signal(signal.SIGINT, signal.default_int_handler)

    t_start = time.perf_counter()
    r = DaemonResults(interval=args.interval, load=[load_average()])
    rc = 0
    workdir = tempfile.mkdtemp(prefix="xdpdt-bench-reload-")
    try:
        measure(args, r, workdir)
    except (DaemonFailed, RuntimeError, OSError) as e:
        log(f"bench.daemon: {e}")
        rc = 1
    except KeyboardInterrupt:
        log("bench.daemon: interrupted; everything it made is removed")
        return 130
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
        if args.log and r.log:
            log("--- xdpd log ---\n" + "\n".join(r.log))
    r.load.append(load_average())
    daemon_report(r, time.perf_counter() - t_start)
    return rc


if __name__ == "__main__":
    sys.exit(main())
