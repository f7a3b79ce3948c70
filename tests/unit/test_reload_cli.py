"""``xdpd reload``: SIGHUP, then wait for the daemon's answer in reload.json.

The daemon is a stand-in: a small Python process (``fake_xdpd.py run``) that
on SIGHUP writes its outcome with :func:`xdpd.reloadstate.write`, exactly as
the real daemon does.  ``xdpd reload`` runs as a separate process, as
systemd's ``ExecReload=`` runs it.
"""

from __future__ import annotations

import os
import subprocess
import textwrap
import time

import pytest

from xdpd import reloadstate

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PYTHON = "/usr/bin/python3"

FAKE_DAEMON = textwrap.dedent("""
    import os, signal, sys, time
    from xdpd import reloadstate

    runtime_dir, mode, delay = sys.argv[2], sys.argv[3], float(sys.argv[4])
    state = reloadstate.read(runtime_dir)
    seq = state.seq if state else 0

    def on_hup(signum, frame):
        global seq
        if mode == "silent":
            return
        time.sleep(delay)
        seq += 1
        if mode == "ok":
            reloadstate.write(runtime_dir, reloadstate.ReloadState(
                seq=seq, ok=True, summary="enforcing 3 rules on 1 interface"))
        else:
            reloadstate.write(runtime_dir, reloadstate.ReloadState(
                seq=seq, ok=False, summary="rejected: still enforcing the previous config",
                errors=["/etc/xdpd/rules.yaml:4:13: unknown action 'dorp' (drop, pass or count)",
                        "/etc/xdpd/rules.yaml:9:3: duplicate rule name 'web'"]))

    if mode != "die":
        signal.signal(signal.SIGHUP, on_hup)
    print("ready", flush=True)
    while True:
        time.sleep(1)
""")


class FakeDaemon:
    def __init__(self, tmp_path, mode: str, delay: float = 0.0) -> None:
        self.runtime_dir = str(tmp_path / "run")
        script = tmp_path / "fake_xdpd.py"
        script.write_text(FAKE_DAEMON)
        # The repository root on PYTHONPATH: the script imports this tree's xdpd.
        env = {**os.environ, "PYTHONPATH": REPO_ROOT}
        self.proc = subprocess.Popen([PYTHON, str(script), "run", self.runtime_dir, mode, str(delay)],
                                     cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout.readline().strip() == "ready"  # SIGHUP handler installed

    @property
    def pid(self) -> int:
        return self.proc.pid

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)
        self.proc.stdout.close()


@pytest.fixture
def fake(tmp_path):
    made: list[FakeDaemon] = []

    def start(mode: str, delay: float = 0.0) -> FakeDaemon:
        d = FakeDaemon(tmp_path, mode, delay)
        made.append(d)
        return d

    yield start
    for d in made:
        d.close()


def xdpd_reload(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([PYTHON, "-m", "xdpd", "reload", *args], cwd=REPO_ROOT, capture_output=True,
                          text=True, timeout=60, env=env)


def test_accepted_reload_prints_summary_and_exits_0(fake):
    d = fake("ok")
    r = xdpd_reload("--pid", str(d.pid), "--runtime-dir", d.runtime_dir)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "enforcing 3 rules on 1 interface"
    assert r.stderr == ""
    assert d.proc.poll() is None  # the daemon keeps running
    assert reloadstate.read(d.runtime_dir).seq == 1


def test_rejected_reload_prints_every_problem_and_exits_1(fake):
    d = fake("reject")
    r = xdpd_reload("--pid", str(d.pid), "--runtime-dir", d.runtime_dir)
    assert r.returncode == 1
    assert "/etc/xdpd/rules.yaml:4:13: unknown action 'dorp' (drop, pass or count)" in r.stderr
    assert "/etc/xdpd/rules.yaml:9:3: duplicate rule name 'web'" in r.stderr
    assert "still enforcing the previous config" in r.stderr
    assert d.proc.poll() is None


def test_waits_for_a_new_outcome_not_the_previous_one(fake, tmp_path):
    # An earlier reload left seq 5 (rejected); this one must wait for seq 6.
    runtime_dir = str(tmp_path / "run")
    reloadstate.write(runtime_dir, reloadstate.ReloadState(seq=5, ok=False, summary="old", errors=["old"]))
    d = fake("ok", delay=0.7)
    t0 = time.monotonic()
    r = xdpd_reload("--pid", str(d.pid), "--runtime-dir", d.runtime_dir)
    assert r.returncode == 0, r.stderr
    assert time.monotonic() - t0 >= 0.7
    assert r.stdout.strip() == "enforcing 3 rules on 1 interface"
    assert reloadstate.read(runtime_dir).seq == 6


def test_two_reloads_in_a_row(fake):
    d = fake("ok")
    for seq in (1, 2):
        r = xdpd_reload("--pid", str(d.pid), "--runtime-dir", d.runtime_dir)
        assert r.returncode == 0, r.stderr
        assert reloadstate.read(d.runtime_dir).seq == seq


def test_timeout_when_the_daemon_never_answers(fake):
    d = fake("silent")
    t0 = time.monotonic()
    r = xdpd_reload("--pid", str(d.pid), "--runtime-dir", d.runtime_dir, "--timeout", "0.5")
    assert r.returncode == 75
    assert 0.5 <= time.monotonic() - t0 < 20
    assert "did not report the outcome of the reload within 0.5 s" in r.stderr


def test_daemon_that_dies_instead_of_answering(fake):
    d = fake("die")  # SIGHUP's default action ends it
    r = xdpd_reload("--pid", str(d.pid), "--runtime-dir", d.runtime_dir, "--timeout", "20")
    assert r.returncode == 69
    assert f"xdpd (pid {d.pid}) exited before answering the reload" in r.stderr


def test_no_such_pid(tmp_path):
    gone = subprocess.Popen(["true"])
    gone.wait()
    r = xdpd_reload("--pid", str(gone.pid), "--runtime-dir", str(tmp_path))
    assert r.returncode == 69
    assert f"no process with pid {gone.pid}: is xdpd running?" in r.stderr


def test_refuses_to_signal_a_process_that_is_not_xdpd(tmp_path):
    other = subprocess.Popen(["sleep", "30"])
    try:
        r = xdpd_reload("--pid", str(other.pid), "--runtime-dir", str(tmp_path))
        assert r.returncode == 69
        assert f"pid {other.pid} is not an xdpd daemon (it runs: sleep 30)" in r.stderr
        time.sleep(0.2)
        assert other.poll() is None  # not hung up on
    finally:
        other.kill()
        other.wait()


def test_without_pid_asks_systemd_and_says_when_xdpd_is_not_running(tmp_path):
    # A stand-in systemctl that reports what systemd says for a stopped unit.
    bindir = tmp_path / "bin"
    bindir.mkdir()
    fake_systemctl = bindir / "systemctl"
    fake_systemctl.write_text("#!/bin/sh\n"
                              "[ \"$*\" = 'show --value --property=MainPID xdpd.service' ] || exit 2\n"
                              "echo 0\n")
    fake_systemctl.chmod(0o755)
    env = {**os.environ, "PATH": f"{bindir}{os.pathsep}{os.environ.get('PATH', '')}"}
    r = xdpd_reload("--runtime-dir", str(tmp_path), env=env)
    assert r.returncode == 69
    assert "xdpd.service is not running" in r.stderr


def test_without_pid_reloads_the_pid_systemd_reports(fake, tmp_path):
    d = fake("ok")
    bindir = tmp_path / "bin"
    bindir.mkdir()
    (bindir / "systemctl").write_text(f"#!/bin/sh\necho {d.pid}\n")
    (bindir / "systemctl").chmod(0o755)
    env = {**os.environ, "PATH": f"{bindir}{os.pathsep}{os.environ.get('PATH', '')}"}
    r = xdpd_reload("--runtime-dir", d.runtime_dir, env=env)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "enforcing 3 rules on 1 interface"

