"""``xdpd top`` on a daemon's pins with steady real traffic through a test bed.

Two UDP streams from the sender (:class:`tests.testbed.probe.UdpProbe`): a
busy source at 500 datagrams/s into a limit rule of 200/s, and a quiet one at
50/s into a pass rule.  ``xdpd top`` runs as an operator runs it, in a
process of its own with the daemon's ``--pin-dir``:

* ``--once`` (and with its output in a pipe) prints rates within 10 % of
  what the probes sent over the same time, for the right rule, verdict and
  interface, busiest first; and again once the daemon has stopped (the
  program stays attached with ``detach_on_stop: false``);
* on a terminal (a detached tmux session, 160x40): the live table refreshes
  with the busy rule's rate, ``q`` ends it with exit 0, and so does Ctrl-C;
  both leave the terminal as they found it (line mode and echo, as ``stty
  -g`` says before and after; the normal screen; the cursor shown).
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import tempfile
import time
from typing import Any, Iterator

import pytest

from tests.testbed.daemon import PYTHON, REPO_ROOT, XdpdProcess, config, pythonpath
from tests.testbed.netbed import NetBed
from tests.testbed.probe import UdpProbe
from tests.testbed.toptable import near, parse
from tests.testbed.xdplink import detach_xdp

pytestmark = pytest.mark.kernel

BUSY, QUIET = "198.51.100.1", "198.51.100.2"
BUSY_INTERVAL, QUIET_INTERVAL = 0.002, 0.02   # 500/s and 50/s
LIMIT = 200
RULES = f"""
    - {{name: quiet-in, action: pass, src: ["{QUIET}"]}}
    - {{name: busy-cap, action: limit, proto: udp, src: ["{BUSY}"], rate: {LIMIT}/s, burst: 10, per: rule}}
"""

def env() -> dict[str, str]:
    return {**os.environ, "PYTHONDONTWRITEBYTECODE": "1", "PYTHONPATH": pythonpath()}


def top_once(d: XdpdProcess, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([PYTHON, "-m", "xdpd", "top", *args, "--pin-dir", d.pin_dir], cwd=REPO_ROOT, env=env(),
                          capture_output=True, text=True, timeout=60)


class Streams:
    """Both probes, and what they sent per second over a stretch of time."""

    def __init__(self, bed: NetBed) -> None:
        self.busy = UdpProbe(bed, [BUSY], dport=4242, interval=BUSY_INTERVAL)
        self.quiet = UdpProbe(bed, [QUIET], dport=4243, interval=QUIET_INTERVAL)

    def __enter__(self) -> "Streams":
        self.busy.start()
        self.quiet.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.busy.stop()
        self.quiet.stop()

    def mark(self) -> tuple[float, int, int]:
        return time.monotonic(), self.busy.sent[BUSY], self.quiet.sent[QUIET]

    def rates_since(self, mark: tuple[float, int, int]) -> tuple[float, float]:
        t, busy, quiet = mark
        seconds = time.monotonic() - t
        return (self.busy.sent[BUSY] - busy) / seconds, (self.quiet.sent[QUIET] - quiet) / seconds


def check_once(d: XdpdProcess, streams: Streams, frame_bytes: float) -> None:
    """``top --once --interval 2`` against what the probes sent meanwhile."""
    mark = streams.mark()
    r = top_once(d, "--once", "--interval", "2")
    busy_rate, quiet_rate = streams.rates_since(mark)  # the process's whole life: startup and two readings
    assert (r.returncode, r.stderr) == (0, ""), r
    head, *table = r.stdout.splitlines()
    assert re.fullmatch(rf"xdpd top: {re.escape(d.pin_dir)}, rates over 2\.\d\d s", head), head
    ifaces, rules, order = parse(table)
    shown = f"sent {busy_rate:.0f}/s and {quiet_rate:.0f}/s\n{r.stdout}"

    assert order == ["busy-cap", "quiet-in"], shown  # busiest first, not in rule order
    busy, quiet = rules["busy-cap"], rules["quiet-in"]
    assert (busy["position"], busy["action"], quiet["position"], quiet["action"]) == (2, "limit", 1, "pass")
    assert near(busy["pps"], busy_rate), shown
    assert near(busy["limited"], busy_rate - LIMIT), shown
    assert near(busy["bps"], busy_rate * frame_bytes), shown
    assert near(quiet["pps"], quiet_rate, 0.15) and quiet["limited"] is None, shown

    [(name, iface)] = ifaces.items()
    assert name == d.bed.victim_if
    assert near(iface["pps"], busy_rate + quiet_rate), shown
    assert near(iface["bps"], (busy_rate + quiet_rate) * frame_bytes), shown
    assert near(iface["drops"], busy_rate - LIMIT), shown
    assert near(iface["verdicts"]["drop_limit"][0], busy_rate - LIMIT), shown
    assert set(iface["verdicts"]) <= {"drop_limit", "pass_rule", "pass_default"}, shown
    assert all(not row["note"] for row in [iface, busy, quiet]), shown


def frame_size(d: XdpdProcess) -> float:
    """Bytes per datagram as the program counts them (both probes send the same payload)."""
    rule = d.status()["rules"]["quiet-in"]
    assert rule["packets"] > 0
    return rule["bytes"] / rule["packets"]


@pytest.fixture
def daemon(netbed: NetBed, xdpd) -> Iterator[XdpdProcess]:
    d = xdpd(config(netbed.victim_if, RULES, mode="native", settings="detach_on_stop: false"))
    try:
        yield d
    finally:
        detach_xdp(netbed.victim_ns, netbed.victim_if)  # detach_on_stop: false leaves it


def test_once_prints_the_rates_sent_for_the_right_rule_and_interface_daemon_or_not(netbed, daemon):
    with Streams(netbed) as streams:
        streams.busy.wait_received(BUSY, 50)
        time.sleep(1.0)  # past the burst: the limit lets exactly its rate through
        check_once(daemon, streams, frame_size(daemon))
        assert daemon.stop() == 0
        check_once(daemon, streams, frame_size(daemon))
    # stdout not a terminal: one table, without --once
    r = top_once(daemon, "--interval", "0.5")
    assert r.returncode == 0 and "rates over 0.5" in r.stdout and "\x1b" not in r.stdout, r
    assert parse(r.stdout.splitlines()[1:])[1]["busy-cap"]["pps"] < 50  # the streams stopped


# --------------------------------------------------------------------------- on a terminal


class Tmux:
    """A tmux server of our own (its own socket, in a directory of ours), killed and removed at the end."""

    def __init__(self) -> None:
        self.dir = tempfile.mkdtemp(prefix="xdpdt-tmux-")
        self.base = ["tmux", "-S", os.path.join(self.dir, "socket"), "-f", "/dev/null"]

    def __call__(self, *args: str) -> str:
        return subprocess.run([*self.base, *args], check=True, capture_output=True, text=True, timeout=30).stdout

    def screen(self) -> list[str]:
        return self("capture-pane", "-p", "-t", "top").splitlines()

    def flags(self) -> str:
        return self("display-message", "-p", "-t", "top", "#{alternate_on} #{cursor_flag}").strip()

    def wait_for(self, what: str, pattern: str, timeout: float = 20.0) -> list[str]:
        deadline = time.monotonic() + timeout
        while True:
            lines = self.screen()
            if re.search(pattern, "\n".join(lines), re.M):
                return lines
            if time.monotonic() > deadline:
                raise AssertionError(f"no {what} within {timeout} s; the screen:\n" + "\n".join(lines))
            time.sleep(0.2)

    def close(self) -> None:
        subprocess.run([*self.base, "kill-server"], capture_output=True, timeout=30)
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture
def tmux() -> Iterator[Tmux]:
    if shutil.which("tmux") is None:
        pytest.fail("tmux is not installed (make setup installs it)", pytrace=False)
    t = Tmux()
    t("new-session", "-d", "-x", "160", "-y", "40", "-s", "top", "env PS1='$ ' bash --norc --noprofile")
    try:
        yield t
    finally:
        t.close()


def live_frames(tmux: Tmux, want: int) -> list[dict[str, Any]]:
    """The busy rule's row in ``want`` successive refreshes (told apart by the clock in the title)."""
    seen: dict[str, dict[str, Any]] = {}
    deadline = time.monotonic() + 20
    while len(seen) < want:
        lines = tmux.screen()
        title = lines[0] if lines else ""
        if title.startswith("xdpd top: ") and "busy-cap" in "\n".join(lines):
            try:
                _ifaces, rules, order = parse(lines[2:])
            except (ValueError, AssertionError, KeyError):  # caught in the middle of a redraw
                continue
            seen.setdefault(title, {**rules["busy-cap"], "order": order, "lines": lines})
        assert time.monotonic() < deadline, "the view did not refresh:\n" + "\n".join(lines)
        time.sleep(0.2)
    return list(seen.values())


def test_live_view_refreshes_and_q_or_ctrl_c_quit_restoring_the_terminal(netbed, daemon, tmux, tmp_path):
    script = tmp_path / "top.sh"  # a short command line: a long one would wrap on the screen
    script.write_text(f"cd {shlex.quote(REPO_ROOT)}\n"
                      "saved=$(stty -g)\n"
                      f"PYTHONPATH={shlex.quote(pythonpath())} PYTHONDONTWRITEBYTECODE=1 "
                      f"{PYTHON} -m xdpd top --pin-dir {shlex.quote(daemon.pin_dir)}\n"
                      'echo "exit=$?"\n'
                      'if [ "$(stty -g)" = "$saved" ]; then echo tty-restored; else echo TTY-CHANGED; fi\n')
    command = f"bash {shlex.quote(str(script))}"
    with Streams(netbed) as streams:
        streams.busy.wait_received(BUSY, 50)
        for quit_key, run in (("q", 1), ("C-c", 2)):
            tmux("send-keys", "-t", "top", command, "Enter")
            tmux.wait_for("title", r"^xdpd top: .*; q quits$")
            assert tmux.flags() == "1 0"  # the alternate screen, no cursor
            frames = live_frames(tmux, 3)  # "measuring", then rates, refreshed
            rated = [f for f in frames if f["pps"] > 0]
            assert len(rated) >= 2, frames[-1]["lines"]
            for f in rated:
                assert f["order"][0] == "busy-cap", f["lines"]
                assert near(f["pps"], 1 / BUSY_INTERVAL, 0.25), f["lines"]
            tmux("send-keys", "-t", "top", quit_key)
            # this run's outcome: the run-th pair on the screen (the earlier ones stay above)
            lines = tmux.wait_for("exit", r"^(tty-restored|TTY-CHANGED)$(?:.|\n)*" * run)
            outcome = [line for line in lines if line.startswith(("exit=", "tty-restored", "TTY-CHANGED"))]
            assert outcome == ["exit=0", "tty-restored"] * run, lines
            assert tmux.flags() == "0 1"  # the normal screen and the cursor are back
            assert not any(line.startswith("INTERFACE") for line in lines)  # the table left with its screen
