"""``xdpd top`` without a kernel: nothing pinned, bad arguments, and the terminal.

The live view runs on a pseudo-terminal with readings made up by hand, so
what it draws, how ``q`` ends it, and that the terminal is put back after
``q``, Ctrl-C, SIGTERM and an unexpected error can be checked without pins.
``tests/kernel/test_top.py`` runs the command on a daemon's pins, in tmux.
"""

from __future__ import annotations

import argparse
import errno
import os
import pty
import re
import signal
import subprocess
import termios
import threading
import time
from typing import Iterator

import pytest

from xdpd.bpfsys import BpfError
from xdpd.cli import top
from xdpd.maps import LayoutMismatch
from xdpd.rates import IfaceReading, RuleReading, Snapshot
from xdpd.snapshot import NothingPinned

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PYTHON = "/usr/bin/python3"


def xdpd(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": REPO_ROOT, "PYTHONDONTWRITEBYTECODE": "1"}
    return subprocess.run([PYTHON, "-m", "xdpd", *args], cwd=REPO_ROOT, capture_output=True, text=True,
                          timeout=60, env=env)


@pytest.mark.parametrize("once", [[], ["--once"]])
def test_nothing_pinned_is_one_line_and_the_exit_status_of_status(tmp_path, once):
    pins = str(tmp_path / "pins")
    r = xdpd("top", *once, "--pin-dir", pins)
    assert (r.stdout, r.stderr) == ("", f"xdpd: nothing pinned under {pins} (is the daemon started? see --pin-dir)\n")
    assert r.returncode == xdpd("status", "--pin-dir", pins).returncode == 1


@pytest.mark.parametrize("value, message", [("0", "must be more than 0 seconds, got '0'"),
                                            ("-1", "must be more than 0 seconds, got '-1'"),
                                            ("nan", "must be more than 0 seconds, got 'nan'"),
                                            ("1s", "'1s' is not a number of seconds")])
def test_a_bad_interval_is_refused_before_anything_is_read(tmp_path, value, message):
    r = xdpd("top", "--once", f"--interval={value}", "--pin-dir", str(tmp_path))
    assert r.returncode == 2 and f"argument --interval: {message}" in r.stderr, r.stderr


# --------------------------------------------------------------------------- the terminal


class Pty:
    """A pseudo-terminal: ``tty`` is the side xdpd top gets as stdin and stdout.

    What it writes is drained as it comes (a full pty would block it).
    """

    def __init__(self) -> None:
        self.master, slave = pty.openpty()
        self.tty = open(slave, "w", encoding="utf-8")  # stdin too: top only uses its fd
        self._output = bytearray()
        self._lock = threading.Lock()
        self._reader = threading.Thread(target=self._drain, daemon=True)
        self._reader.start()

    def _drain(self) -> None:
        while True:
            try:
                chunk = os.read(self.master, 65536)
            except OSError:  # the tty side closed
                return
            if not chunk:
                return
            with self._lock:
                self._output += chunk

    def attrs(self) -> list:
        return termios.tcgetattr(self.tty.fileno())

    def read(self, settle: float = 0.1) -> str:
        time.sleep(settle)  # what was written last is still on its way through the pty
        with self._lock:
            return self._output.decode(errors="replace")

    def type_later(self, keys: bytes, after: float) -> threading.Timer:
        t = threading.Timer(after, os.write, (self.master, keys))
        t.start()
        return t

    def close(self) -> None:
        self.tty.close()
        self._reader.join(2)
        os.close(self.master)


@pytest.fixture
def term() -> Iterator[Pty]:
    p = Pty()
    try:
        yield p
    finally:
        p.close()


def run_top(term: Pty, monkeypatch, interval: float) -> int:
    """``xdpd top --pin-dir /pins --interval INTERVAL`` with the pty as its terminal."""
    # Set here, not in the fixture: pytest puts its own sys.stdout back for the test's call.
    monkeypatch.setattr("sys.stdin", term.tty)
    monkeypatch.setattr("sys.stdout", term.tty)
    try:
        return top.main(argparse.Namespace(pin_dir="/pins", once=False, interval=interval))
    finally:
        monkeypatch.undo()


def readings(monkeypatch, fail_at: int | None = None, error: BaseException | None = None) -> list[Snapshot]:
    """Make ``read_snapshot`` return a rule counting 100 packets more each call (and raise at ``fail_at``)."""
    made: list[Snapshot] = []

    def fake(pin_dir: str) -> Snapshot:
        if fail_at is not None and len(made) == fail_at:
            raise error
        n = len(made)
        s = Snapshot(time.monotonic(), (IfaceReading("eth0", 0, {"pass_rule": (100 * n, 6000 * n)}),),
                     (RuleReading("web", 3, 1, "pass", (100 * n, 6000 * n)),))
        made.append(s)
        return s

    monkeypatch.setattr(top, "read_snapshot", fake)
    return made


def restored(p: Pty, before: list) -> None:
    assert p.attrs() == before
    out = p.read()
    assert out.startswith(top.ENTER_SCREEN) and out.endswith(top.LEAVE_SCREEN), out[-200:]


def test_the_live_view_redraws_the_rates_until_q_in_cbreak_mode_then_restores_the_terminal(term, monkeypatch):
    made = readings(monkeypatch)
    before = term.attrs()
    seen = {}

    def peek() -> None:  # the terminal while the view runs; q after two frames with rates
        deadline = time.monotonic() + 10
        while term.read(0.05).count("1   web") < 2 and time.monotonic() < deadline:
            pass
        seen["lflag"] = term.attrs()[3]
        os.write(term.master, b"q")

    threading.Thread(target=peek, daemon=True).start()
    assert run_top(term, monkeypatch, 0.1) == 0
    assert not seen["lflag"] & (termios.ICANON | termios.ECHO)
    restored(term, before)
    assert len(made) >= 3
    out = term.read()
    frames = out.split(top.HOME)[1:]
    assert "measuring for 0.1 s..." in frames[0]
    last = frames[-1].replace(top.CLEAR_EOL, "").replace(top.CLEAR_BELOW, "").replace(top.LEAVE_SCREEN, "")
    lines = last.splitlines()
    assert lines[0].startswith("xdpd top: /pins, every 0.1 s, ") and lines[0].endswith("; q quits")
    rule = next(line for line in lines if line.startswith("1   web"))
    assert re.fullmatch(r"[7-9]\d\d|1\.0\dk", rule.split()[3]), rule  # 100 packets per 0.1 s


@pytest.mark.parametrize("error, code", [(KeyboardInterrupt(), 0), (RuntimeError("unexpected"), None)])
def test_ctrl_c_and_errors_restore_the_terminal(term, monkeypatch, error, code):
    readings(monkeypatch, fail_at=2, error=error)
    before = term.attrs()
    if code is None:
        with pytest.raises(RuntimeError, match="unexpected"):
            run_top(term, monkeypatch, 0.05)
    else:
        assert run_top(term, monkeypatch, 0.05) == code
    restored(term, before)


def test_sigterm_restores_the_terminal_and_exits_143(term, monkeypatch):
    readings(monkeypatch)
    before = term.attrs()
    t = threading.Timer(0.3, os.kill, (os.getpid(), signal.SIGTERM))
    t.start()
    assert run_top(term, monkeypatch, 0.05) == 128 + signal.SIGTERM
    restored(term, before)
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL or callable(signal.getsignal(signal.SIGTERM))
    assert signal.getsignal(signal.SIGTERM) is not top._quit_on


def test_pins_that_vanish_while_watching_are_said_and_watched_for(term, monkeypatch):
    readings(monkeypatch, fail_at=2, error=NothingPinned("nothing pinned under /pins"))
    before = term.attrs()
    term.type_later(b"q", 0.5)
    assert run_top(term, monkeypatch, 0.1) == 0
    restored(term, before)
    assert "xdpd: nothing pinned under /pins (is the daemon started? see --pin-dir)" in term.read()


@pytest.mark.parametrize("error, code, says", [
    (NothingPinned("nothing pinned under /pins"), 1, "xdpd: nothing pinned under /pins (is the daemon started?"),
    (LayoutMismatch("map rules: the kernel says key 4 bytes"), 1, "xdpd top: map rules: the kernel says"),
    (BpfError(errno.EPERM, "BPF_OBJ_GET /pins/prog: Operation not permitted"), 77, "(run as root)"),
    (PermissionError(errno.EACCES, "Permission denied"), 77, "(run as root)"),
    (FileNotFoundError(errno.ENOENT, "No such file"), 1, "the pins changed while being read"),
])
def test_why_the_pins_cannot_be_read_and_the_exit_status(monkeypatch, capsys, error, code, says):
    def fail(pin_dir: str) -> Snapshot:
        raise error

    monkeypatch.setattr(top, "read_snapshot", fail)
    assert top.main(argparse.Namespace(pin_dir="/pins", once=True, interval=1.0)) == code
    out, err = capsys.readouterr()
    assert out == "" and says in err and err.count("\n") == 1, err


def test_an_unexpected_error_is_not_dressed_up(monkeypatch):
    def fail(pin_dir: str) -> Snapshot:
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(top, "read_snapshot", fail)
    with pytest.raises(OSError, match="Input/output"):
        top.main(argparse.Namespace(pin_dir="/pins", once=True, interval=1.0))
