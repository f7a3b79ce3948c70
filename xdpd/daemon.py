"""The daemon: the one place where every part is built and wired together.

Read :func:`run` top to bottom to see the whole system: config, checks,
compile, datapath, netlink, enforce, notify, then the loop that reports
counts and reloads on SIGHUP until SIGTERM.
"""

from __future__ import annotations

import signal
import threading
from dataclasses import dataclass, field

import sdnotify
from pyroute2 import IPRoute

from . import logs, prereq
from .config import ConfigError, load_config
from .datapath import BuildParams, CompileError, Datapath, compile_program, pin_program, remove_stale_maps
from .enforcer import ApplyResult, Enforcer
from .links import AttachError
from .model import Config
from .status import ACTION_NAMES

EX_OK = 0
EX_SOFTWARE = 70
EX_CONFIG = 78


@dataclass
class _Signals:
    """Signal flags, set from handlers and consumed by the loop."""

    wake: threading.Event = field(default_factory=threading.Event)
    stop: bool = False
    reload: bool = False

    def install(self) -> None:
        def on_stop(signum, frame):
            self.stop = True
            self.wake.set()

        def on_hup(signum, frame):
            self.reload = True
            self.wake.set()

        signal.signal(signal.SIGTERM, on_stop)
        signal.signal(signal.SIGINT, on_stop)
        signal.signal(signal.SIGHUP, on_hup)


def build_params(config: Config) -> BuildParams:
    # Two banks share each exact map.
    return BuildParams(max_exact=2 * config.settings.max_addresses)


def _log_applied(log, result: ApplyResult, config: Config) -> None:
    for name, mode in result.attached.items():
        log.info("attached", iface=name, mode=mode)
    for name in result.detached:
        log.info("detached", iface=name)
    for name in result.missing:
        log.warning("interface_missing", iface=name, hint="configured but not present; not attached")
    for w in result.warnings:
        log.warning("mode_fallback", detail=w)
    log.info("enforced", interfaces=len(config.interfaces), rules=len(config.rules),
             addresses=result.addresses)


class CountReporter:
    """Logs per-rule and per-interface counts that changed since last time."""

    def __init__(self, dp: Datapath, log) -> None:
        self.dp, self.log = dp, log
        self.last: dict[tuple[str, int], tuple[int, int]] = {}

    def report(self) -> None:
        names = self.dp.rule_names()
        for action, slot in self.dp.rule_order():
            self._one("rule_stats", slot, rule=names.get(slot, (str(slot),))[0],
                      action=ACTION_NAMES.get(action, str(action)))
        from .layout import NVERDICTS, Verdict
        for slot, (iface, _, _) in self.dp.iface_names().items():
            for v in Verdict:
                self._one("iface_stats", slot * NVERDICTS + v, iface=iface, verdict=v.label)

    def _one(self, table: str, index: int, **fields) -> None:
        packets, nbytes = self.dp.counter(table, index)
        prev = self.last.get((table, index), (0, 0))
        self.last[(table, index)] = (packets, nbytes)
        if packets != prev[0]:
            self.log.info("count", packets=packets, bytes=nbytes,
                          delta_packets=packets - prev[0], delta_bytes=nbytes - prev[1], **fields)


def run(config_dir: str, pin_dir: str, runtime_dir: str = "/run/xdpd") -> int:
    log = logs.get()
    notifier = sdnotify.SystemdNotifier()
    try:
        config = load_config(config_dir)
    except ConfigError as e:
        for p in e.problems:
            log.error("config_invalid", problem=str(p))
        notifier.notify(f"STATUS=config invalid: {e.problems[0]}")
        return EX_CONFIG
    try:
        prereq.check_all(pin_dir)
    except prereq.Missing as e:
        log.error("prerequisite_missing", detail=str(e))
        return prereq.EX_UNAVAILABLE

    try:
        compiled = compile_program(pin_dir, build_params(config))
    except CompileError as e:
        log.error("compile_failed", detail=str(e))
        return EX_SOFTWARE
    pin_program(compiled.prog_fd, pin_dir)
    dp = Datapath(compiled.maps_dir)
    signals = _Signals()
    signals.install()
    with IPRoute() as ipr:
        enforcer = Enforcer(dp, compiled.prog_fd, ipr)
        try:
            result = enforcer.apply(config)
        except AttachError as e:
            log.error("attach_failed", detail=str(e))
            return EX_SOFTWARE
        _log_applied(log, result, config)
        for stale in remove_stale_maps(pin_dir, compiled.maps_dir):
            log.info("unpinned_stale_maps", path=stale)
        notifier.notify("READY=1")
        notifier.notify(f"STATUS=enforcing {len(config.rules)} rules on "
                        f"{len(config.interfaces) - len(result.missing)} interfaces")
        log.info("ready", config_dir=config_dir, pin_dir=pin_dir)

        reporter = CountReporter(dp, log)
        while not signals.stop:
            signals.wake.wait(config.settings.log_interval)
            signals.wake.clear()
            if signals.reload and not signals.stop:
                signals.reload = False
                config = _reload(log, notifier, enforcer, config, config_dir)
            elif not signals.stop:
                reporter.report()

        reporter.report()
        if config.settings.detach_on_stop:
            for name in enforcer.detach_all():
                log.info("detached", iface=name)
        else:
            log.info("left_attached", hint="detach_on_stop is false: filtering continues")
    dp.close()
    log.info("stopped")
    return EX_OK


def _reload(log, notifier, enforcer: Enforcer, current: Config, config_dir: str) -> Config:
    """Apply the config on disk, or keep ``current`` if it is invalid."""
    notifier.notify("RELOADING=1")
    try:
        config = load_config(config_dir)
        result = enforcer.apply(config)
    except ConfigError as e:
        for p in e.problems:
            log.error("reload_rejected", problem=str(p))
        notifier.notify(f"READY=1\nSTATUS=reload rejected, still enforcing the previous config: "
                        f"{e.problems[0]}")
        return current
    except AttachError as e:
        log.error("reload_failed", detail=str(e))
        notifier.notify("READY=1\nSTATUS=reload failed: " + str(e))
        return current
    _log_applied(log, result, config)
    notifier.notify(f"READY=1\nSTATUS=enforcing {len(config.rules)} rules")
    return config
