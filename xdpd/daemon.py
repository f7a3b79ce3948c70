"""The daemon: the one place where every part is built and wired together.

Read :func:`run` top to bottom to see the whole system: config, checks,
compile (in a child, see :mod:`xdpd.compiler`; a restart reuses the pinned
program when it is a build of the same inputs and logs ``program_reused``,
else ``program_compiled`` with the reason), adopt what a previous daemon
pinned, enforce, notify, then :class:`Daemon.loop`, which reconciles when a
trigger fires and reports counts until SIGTERM.

Every change to the kernel is one pass of :meth:`Daemon.enforce`:
:func:`~xdpd.observe.observe` reads the kernel, :func:`~xdpd.plan.plan`
decides (pure), :class:`~xdpd.execute.Executor` carries the plan out.

Triggers, all of which only set a flag and wake the loop:

* SIGHUP, and a change to the config dir or a list file (:mod:`xdpd.watch`):
  reload the config; an invalid one is rejected and the live state stays;
* an interface appearing or going away or its XDP program changed by
  someone else (:mod:`xdpd.linkevents`), a pinned link of ours detached
  (:mod:`xdpd.linkwatch`), and the periodic drift check
  (``settings.check_interval``): reconcile the current config with the
  kernel, which re-attaches what someone detached or replaced, at once but
  no faster than :class:`~xdpd.repairs.RepairLimiter` allows.

Every reload attempt, whatever triggered it, ends in
``<runtime dir>/reload.json`` (:mod:`xdpd.reloadstate`), so ``xdpd reload``
can wait for it and report.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from dataclasses import dataclass, field

from pyroute2 import IPRoute

from . import bans, bpfsys, buildid, heap, logs, pins, reloadstate
from .buildid import BuildIdentity
from .compiler import CompileError, find_or_compile
from .config import ConfigError, ListCache, load_config
from .settingsparse import CAPACITY_LIMITS
from .bankread import candidates_of
from .counts import CountReporter
from .datapath import Datapath
from .execute import ExecuteFailed, Executor, Outcome
from .exitcodes import EX_CONFIG, EX_OK, EX_SOFTWARE, EX_UNAVAILABLE
from .linkevents import LinkEvent, LinkMonitor
from .links import XdpLinks
from .linkwatch import LinkWatch
from .maps import LayoutMismatch, PinnedMaps
from .metrics import MetricsCollector, registry
from .metricsexport import MetricsExport
from .model import Config
from .notify import Notifier
from .observe import observe
from .pins import pin_program, remove_stale_maps
from .plan import ImageCache, PlanError, detach_ops, plan
from .reloadstats import ReloadStats
from .repairs import REFILL, RepairLimiter
from .repairstats import RepairStats
from .samples import SampleLogger
from .startup import Start, begin, build_params
from .watch import ConfigWatcher

WATCH_DEBOUNCE = 0.1
"""Seconds of quiet after a file event before reloading (editors write in bursts);
a complete write (renamed into place, or closed) is reloaded at once (:mod:`xdpd.watch`)."""
BAN_SWEEP_INTERVAL = 1.0
"""Seconds between sweeps of the ban table (expired bans, stale marks); a
sweep that takes long stretches the interval to ten times its duration."""


@dataclass
class _Triggers:
    """Flags set from signal handlers and watcher threads, consumed by the loop."""

    wake: threading.Event = field(default_factory=threading.Event)
    stop: bool = False
    reload: bool = False        # SIGHUP or a file change: re-read the config
    reconcile: bool = False     # link event: re-check the kernel against the config
    why: str = ""               # what asked for the reconcile (the last one, if several)
    hup: bool = False           # the reload was asked for by SIGHUP

    def set(self, **flags: bool | str) -> None:
        for name, value in flags.items():
            setattr(self, name, value)
        self.wake.set()

    def install_signals(self) -> None:
        signal.signal(signal.SIGTERM, lambda *_: self.set(stop=True))
        signal.signal(signal.SIGINT, lambda *_: self.set(stop=True))
        signal.signal(signal.SIGHUP, lambda *_: self.set(reload=True, hup=True))


def _status_line(config: Config, outcome: Outcome, fighting: list[str] | None = None) -> str:
    ifaces = len(config.interfaces) - len(outcome.plan.missing)
    line = (f"enforcing {len(config.rules)} rules, {outcome.plan.addresses:,} addresses "
            f"on {ifaces} interface(s)")
    if fighting:
        line += (f"; FIGHTING over {', '.join(fighting)}: another program keeps replacing xdpd's, "
                 f"repairs limited to one per {REFILL:g} s")
    return line


class EnforceFailed(Exception):
    """The config could not be enforced; the kernel was left (or put back) as it was."""


class Daemon:
    """The running daemon's state and its main loop."""

    def __init__(self, config: Config, config_dir: str, runtime_dir: str, datapath: Datapath,
                 links: XdpLinks, ban_table: bans.BanTable, cache: ListCache, notifier, log,
                 triggers: _Triggers, reloads: ReloadStats, metrics: MetricsExport,
                 repair_stats: RepairStats) -> None:
        self.config, self.config_dir, self.runtime_dir = config, config_dir, runtime_dir
        self.reloads, self.metrics = reloads, metrics
        self.repairs, self.repair_stats = RepairLimiter(), repair_stats
        self.datapath, self.links, self.ban_table = datapath, links, ban_table
        self.executor = Executor(datapath, datapath.maps, links)
        self.images = ImageCache()
        self.cache, self.notifier, self.log = cache, notifier, log
        self.triggers = triggers
        self.reporter = CountReporter(datapath.maps, log)
        self.seq = 0
        self.last_status = ""
        usec = int(os.environ.get("WATCHDOG_USEC", "0") or 0)
        self.watchdog_interval = usec / 2e6 if usec and os.environ.get("WATCHDOG_PID", str(os.getpid())) \
            == str(os.getpid()) else 0.0

    # -- triggers ------------------------------------------------------------
    def on_link(self, event: LinkEvent) -> None:
        """(Monitor thread.)  A configured interface appeared, went away or had its XDP changed: reconcile."""
        if self.config.interface(event.name) is None:
            return  # containers come and go; only ours matter
        if event.kind == "xdp":
            if event.prog_id == self.links.prog_id or self.repairs.waiting(event.name):
                return  # our own attach echoed, or a fight whose next repair is already due later
            self.triggers.set(reconcile=True, why="xdp change")
            return
        if event.kind == "del":
            self.log.info("interface_gone", iface=event.name, ifindex=event.ifindex)
        self.triggers.set(reconcile=True, why="interface change")

    def on_link_lost(self, ifindex: int, link_id: int) -> None:
        """(Link watch thread.)  A pinned link of ours stopped holding its attachment: reconcile."""
        self.triggers.set(reconcile=True, why="link detached")

    # -- one pass: observe -> plan -> execute ------------------------------------
    def enforce(self, config: Config, settle: bool = False) -> Outcome:
        """Make the kernel enforce ``config``; on failure nothing is left half done.

        With ``settle=False`` the inactive bank is brought up to date later
        (:meth:`Datapath.settle`, from the loop), so READY comes sooner.
        """
        try:
            p = plan(config, observe(self.datapath, self.links), self.images)
        except PlanError as e:
            raise EnforceFailed(str(e)) from e
        admitted = self.repairs.admit(p, time.monotonic())
        self._fights(admitted.fights)
        try:
            return self.executor.execute(admitted.plan, settle=settle)
        except ExecuteFailed as e:
            self._fights(self.repairs.failed(admitted.plan, time.monotonic()))
            raise EnforceFailed(str(e)) from e
        finally:
            self._record_repairs()

    def _fights(self, names: list[str]) -> None:
        for name in names:
            self.log.warning("drift_fight", iface=name, detail=(
                f"{name}: another program keeps replacing or detaching xdpd's; repairs are now "
                f"limited to one per {REFILL:g} s (find it: bpftool net show; bpftool link show)"))

    def _record_repairs(self) -> None:
        try:
            self.repair_stats.write(self.repairs.counts())
        except OSError as e:
            self.log.error("repair_stats_failed", detail=str(e))

    def detach_all(self) -> list[str]:
        """Detach our program from every interface we manage, release the links (on stop)."""
        observed = observe(self.datapath, self.links)
        return self.executor.detach(detach_ops(observed), observed.defunct_links)

    # -- the loop ------------------------------------------------------------
    def loop(self, watcher: ConfigWatcher) -> None:
        t = self.triggers
        now = time.monotonic()
        next_report = now + self.config.settings.log_interval
        next_check = now + self.config.settings.check_interval
        next_sweep = now + BAN_SWEEP_INTERVAL
        while not t.stop:
            now = time.monotonic()
            repairs_due = self.repairs.deadline()
            deadline = min(next_report, next_check, next_sweep, next_check if repairs_due is None else repairs_due)
            if self.watchdog_interval:
                deadline = min(deadline, now + self.watchdog_interval)
            t.wake.wait(max(0.0, deadline - now))
            t.wake.clear()
            if self.watchdog_interval:
                self.notifier.notify("WATCHDOG=1")
            if t.stop:
                break
            if t.reload:
                t.reload = False
                hup, t.hup = t.hup, False
                t.reconcile = False
                self.reload(watcher, hup)
            elif t.reconcile:
                t.reconcile = False
                self.reconcile(t.why or "interface change")
            now = time.monotonic()
            if self.repairs.take_due(now):
                self.reconcile("repair retry")
            for name in self.repairs.settle(now):
                self.log.info("drift_fight_over", iface=name)
                self.reconcile("fight over")  # a fresh STATUS= without the fight
            if now >= next_check:
                next_check = now + self.config.settings.check_interval
                self.reconcile("periodic check")
            if now >= next_report:
                next_report = now + self.config.settings.log_interval
                self.reporter.report()
                self.metrics.write_textfile()
            if now >= next_sweep:
                next_sweep = now + max(BAN_SWEEP_INTERVAL, 10 * self.sweep_bans())
            self.datapath.settle()

    def sweep_bans(self) -> float:
        """Expire bans and tidy the ban filter; returns how long it took."""
        started = time.monotonic()
        try:
            r = self.ban_table.sweep()
        except OSError as e:
            self.log.error("ban_sweep_failed", detail=str(e))
            return time.monotonic() - started
        if r.expired or r.disarmed:
            self.log.info("bans_expired", expired=r.expired, active=r.active,
                          idle=r.disarmed)
        return time.monotonic() - started

    def reload(self, watcher: ConfigWatcher, hup: bool) -> None:
        """Apply the config on disk, or keep the current one if it is invalid."""
        self.notifier.notify("RELOADING=1")
        started = time.monotonic()
        self.seq += 1
        try:
            config = load_config(self.config_dir, cache=self.cache)
        except ConfigError as e:
            for p in e.problems:
                self.log.error("reload_rejected", problem=str(p))
            summary = f"reload rejected ({len(e.problems)} problem(s)), still enforcing the previous config"
            self.reloads.count(applied=False)
            self.announce(False, f"{summary}: {e.problems[0]}", [str(p) for p in e.problems])
            return
        try:
            result = self.enforce(config)
        except EnforceFailed as e:
            self.log.error("reload_failed", detail=str(e))
            self.reloads.count(applied=False)
            self.announce(False, f"reload failed, still enforcing the previous config: {e}", [str(e)])
            return
        if build_params(config.settings) != build_params(self.config.settings):
            changed = [k for k in CAPACITY_LIMITS
                       if getattr(config.settings, k) != getattr(self.config.settings, k)]
            self.log.warning("restart_needed", setting=",".join(changed),
                             hint="map capacity is fixed at start; restart xdpd to resize")
        self.config = config
        watcher.set_files(config.files)
        self.reloads.count(applied=True)
        self.reloads.enforced(result.plan.addresses)
        self.metrics.apply(config.settings)
        p = result.plan
        self.log.info("reload_applied", trigger="SIGHUP" if hup else "file change",
                      changes="; ".join(p.lines()) if p else "none",
                      ms=round((time.monotonic() - started) * 1000))
        _log_links(self.log, result)
        self.announce(True, _status_line(config, result, self.repairs.fighting()), [])

    def reconcile(self, why: str) -> None:
        """Re-apply the current config to the kernel (links, drift)."""
        try:
            result = self.enforce(self.config)
        except EnforceFailed as e:
            self.log.error("reconcile_failed", trigger=why, detail=str(e))
            return
        for name, reason in result.repaired.items():
            self.log.warning("drift_repaired", trigger=why, iface=name, detail=f"{name}: {reason}")
        _log_links(self.log, result, skip_repaired=True)
        status = _status_line(self.config, result, self.repairs.fighting())
        if status != self.last_status:
            self.notifier.notify(f"STATUS={status}")
            self.last_status = status

    def announce(self, ok: bool, summary: str, errors: list[str]) -> None:
        """Tell systemd and ``xdpd reload`` how the last start or reload ended."""
        reloadstate.write(self.runtime_dir, reloadstate.ReloadState(self.seq, ok, summary, errors))
        self.notifier.notify(f"READY=1\nSTATUS={summary}")
        self.last_status = summary


def _record_build(log, pin_dir: str, prog_id: int, identity: BuildIdentity) -> None:
    """Record what the pinned program was built from, so the next start can reuse it.

    A record that cannot be written only costs the next start a compile.
    """
    try:
        buildid.write_record(pin_dir, prog_id, identity)
    except (OSError, ValueError) as e:
        log.warning("build_record_failed", detail=str(e), hint="the next start compiles the program again")


def _log_links(log, result: Outcome, skip_repaired: bool = False) -> None:
    for name, mode in result.attached.items():
        if not (skip_repaired and name in result.repaired):
            log.info("attached", iface=name, mode=mode)
    for name in result.detached:
        log.info("detached", iface=name)
    for w in result.warnings:
        log.warning("mode_fallback", detail=w)
    for pin in result.unpinned:
        log.info("unpinned_defunct_link", pin=pin)
    for problem in result.unpin_failed:
        log.warning("unpin_failed", detail=problem)


ATTACH_ENV = "XDPD_ATTACH"
"""``netlink``: attach through netlink, not pinned bpf_links (what a kernel
without XDP links gets anyway; for kernels whose links misbehave, and tests)."""

KEEP_ATTACHED = "keep-attached"
"""Flag file in the runtime dir: the package's postinst creates it just
before restarting xdpd on upgrade, so the stop does not detach and the new
daemon replaces the program in place (no unfiltered seconds)."""
KEEP_ATTACHED_MAX_AGE = 120.0


def _upgrade_in_progress(runtime_dir: str) -> bool:
    """Consume the keep-attached flag; a stale one (never followed by a restart) is ignored."""
    path = os.path.join(runtime_dir, KEEP_ATTACHED)
    try:
        age = time.time() - os.stat(path).st_mtime
        os.unlink(path)
    except OSError:
        return False
    return age <= KEEP_ATTACHED_MAX_AGE


def run(config_dir: str, pin_dir: str, runtime_dir: str = "/run/xdpd", start: Start | None = None) -> int:
    """The daemon, until SIGTERM.  ``start``: what :func:`xdpd.startup.begin` already set going."""
    heap.map_big_blocks()  # a list file's bytes and packed arrays go back to the kernel when freed
    log = logs.get()
    notifier = Notifier.from_env()  # never blocks: see xdpd.notify
    triggers = _Triggers()
    start = start if start is not None else begin(config_dir, pin_dir)
    try:
        # Watch before the first read: an edit made while starting is not missed.
        with ConfigWatcher(config_dir, lambda: triggers.set(reload=True), debounce=WATCH_DEBOUNCE) as watcher:
            return _run(config_dir, pin_dir, runtime_dir, log, notifier, triggers, watcher, start)
    finally:
        start.cancel()  # nothing is left to cancel by then, unless _run returned early


def _run(config_dir: str, pin_dir: str, runtime_dir: str, log, notifier, triggers: _Triggers,
         watcher: ConfigWatcher, start: Start) -> int:
    if start.missing is not None:
        log.error("prerequisite_missing", detail=str(start.missing))
        return EX_UNAVAILABLE
    # Compiling takes seconds, and so does parsing a big blocklist: they overlap (the compile
    # started in xdpd.startup.begin).  A restart whose pinned program is a build of the same
    # inputs skips the compile, and reads the banks of its maps meanwhile instead.
    assert start.program is not None and start.params is not None
    cache = ListCache()
    try:
        config = load_config(config_dir, cache=cache)
    except ConfigError as e:
        for p in e.problems:
            log.error("config_invalid", problem=str(p))
        notifier.notify(f"STATUS=config invalid: {e.problems[0]}")
        return EX_CONFIG
    watcher.set_files(config.files)
    try:
        if build_params(config.settings) != start.params:  # the peek guessed wrong: compile again
            start.program.cancel()
            start.drop_reader()
            start.program = find_or_compile(pin_dir, build_params(config.settings))
        loaded = start.program.wait()
        start.program = None  # ours now: its fd is closed at the end
    except CompileError as e:
        log.error("compile_failed", detail=str(e))
        return EX_SOFTWARE
    early, start.early = start.early, None
    if early is not None and early.maps.maps_dir != loaded.maps_dir:
        early.cancel()
        early.maps.close()
        early = None
    prog_id = bpfsys.prog_info(loaded.prog_fd).id
    if loaded.reused:
        log.info("program_reused", prog_id=prog_id, reason=loaded.reason)
    else:
        log.info("program_compiled", prog_id=prog_id, reason=loaded.reason)
    try:
        maps = early.maps if early is not None else PinnedMaps(loaded.maps_dir)
    except (LayoutMismatch, OSError) as e:
        os.close(loaded.prog_fd)
        log.error("maps_unusable", detail=str(e))
        return EX_SOFTWARE
    datapath = Datapath(maps, fresh=loaded.fresh)
    datapath.adopt(candidates_of(config.rules), early)  # maps a previous daemon left pinned: what they hold
    ban_dir = pins.bans_dir(pin_dir, config.settings.max_bans)
    ban_table = bans.BanTable(ban_dir, maps["state"])
    reloads = ReloadStats(pin_dir)
    repair_stats = RepairStats(pin_dir)
    metrics = MetricsExport(registry(MetricsCollector(pin_dir, reloads)), log)
    sampler = SampleLogger(loaded.prog_fd, maps, log).start()
    try:
        with IPRoute() as ipr:
            links = XdpLinks(ipr, loaded.prog_fd, pin_dir, bpf_links=os.environ.get(ATTACH_ENV) != "netlink",
                             on_fallback=lambda detail: log.warning("xdp_links_unavailable", detail=detail))
            daemon = Daemon(config, config_dir, runtime_dir, datapath, links,
                            ban_table, cache, notifier, log, triggers, reloads, metrics, repair_stats)
            triggers.install_signals()
            monitor = LinkMonitor(daemon.on_link)
            monitor.start()  # before the first apply: nothing that happens after it is missed
            watch = LinkWatch(links.pinned, daemon.on_link_lost)
            try:
                watch.start()  # pinned links a previous daemon left are watched from here on
                try:
                    result = daemon.enforce(config)
                except EnforceFailed as e:
                    log.error("attach_failed", detail=str(e))
                    return EX_SOFTWARE
                pin_program(loaded.prog_fd, pin_dir)
                _record_build(log, pin_dir, prog_id, loaded.identity)
                _log_links(log, result)
                for name in result.plan.missing:
                    log.warning("interface_missing", iface=name, hint="configured but not present; "
                                "attached when it appears")
                log.info("enforced", interfaces=len(config.interfaces), rules=len(config.rules),
                         addresses=result.plan.addresses)
                for stale in remove_stale_maps(pin_dir, loaded.maps_dir):
                    log.info("unpinned_stale_maps", path=stale)
                moved, left_out = bans.migrate(pin_dir, ban_dir, maps["state"])
                if moved or left_out:
                    log.info("bans_moved", to=ban_dir, moved=moved, left_out=left_out)
                reloads.enforced(result.plan.addresses)
                metrics.apply(config.settings)  # listening before READY=1
                daemon.announce(True, _status_line(config, result), [])
                log.info("ready", config_dir=config_dir, pin_dir=pin_dir)
                datapath.settle()
                heap.release()  # the start's parse and adoption are done (settle releases only after a write)
                daemon.loop(watcher)
            finally:
                watch.stop()
                monitor.stop()

            daemon.reporter.report()
            if _upgrade_in_progress(runtime_dir):
                log.info("left_attached", hint="package upgrade: the next daemon adopts the filter")
            elif daemon.config.settings.detach_on_stop:
                for name in daemon.detach_all():
                    log.info("detached", iface=name)
            else:
                log.info("left_attached", hint="detach_on_stop is false: filtering continues")
    finally:
        sampler.stop()
        metrics.close()  # before the maps: a scrape being answered still reads them
        reloads.close()
        repair_stats.close()
        ban_table.close()
        maps.close()
        os.close(loaded.prog_fd)
    log.info("stopped")
    return EX_OK
