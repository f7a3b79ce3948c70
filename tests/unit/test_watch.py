"""ConfigWatcher on real files in temporary directories (inotify, no root).

Each test makes changes the way editors and tools make them and checks how
many times ``on_change`` is called.  "No call" is checked by waiting a few
debounce periods: the watcher reports well within one.
"""

from __future__ import annotations

import os
import shutil
import threading
import time
from pathlib import Path
from typing import Callable, Iterator

import pytest
from structlog.testing import capture_logs

from xdpd.watch import ConfigWatcher

DEBOUNCE = 0.05
QUIET = 0.2  # four debounce periods: a call that has not come by then does not come


class Calls:
    """Counts on_change() calls, with their times, and waits for them."""

    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.times: list[float] = []

    def __call__(self) -> None:
        with self.cond:
            self.times.append(time.monotonic())
            self.cond.notify_all()

    @property
    def count(self) -> int:
        with self.cond:
            return len(self.times)

    def wait_for(self, n: int, timeout: float = 3.0) -> bool:
        with self.cond:
            return self.cond.wait_for(lambda: len(self.times) >= n, timeout)

    def after(self, action: Callable[[], object], quiet: float = QUIET) -> int:
        """Run ``action``, wait for the calls it causes to settle, return how many."""
        before = self.count
        action()
        self.wait_for(before + 1)
        time.sleep(quiet)
        return self.count - before


@pytest.fixture
def conf(tmp_path: Path) -> Path:
    d = tmp_path / "conf"
    d.mkdir()
    (d / "rules.yaml").write_text("rules: []\n")
    return d


@pytest.fixture
def make_watcher(conf: Path) -> Iterator[Callable[..., tuple[ConfigWatcher, Calls]]]:
    """``make_watcher(files=(), **kw)`` -> a started watcher on ``conf`` and its call counter."""
    made: list[ConfigWatcher] = []

    def make(files: tuple[str, ...] = (), **kw: float) -> tuple[ConfigWatcher, Calls]:
        calls = Calls()
        kw.setdefault("debounce", DEBOUNCE)
        watcher = ConfigWatcher(str(conf), calls, **kw)
        made.append(watcher)
        watcher.set_files(files)
        watcher.start()
        return watcher, calls

    yield make
    for watcher in made:
        watcher.stop()


def write(path: Path, text: str) -> None:
    with open(path, "w") as f:
        f.write(text)


def replace_via_temp(path: Path, text: str, temp_name: str | None = None) -> None:
    """What editors and ``sed -i`` do: write a temporary file, rename it over the original."""
    tmp = path.with_name(temp_name or f".{path.name}.tmp")
    write(tmp, text)
    os.replace(tmp, path)


# --------------------------------------------------------------------------- the config dir


def test_yaml_edit_calls_once_and_quickly(conf: Path, make_watcher) -> None:
    _, calls = make_watcher(debounce=0.1)
    t0 = time.monotonic()
    write(conf / "rules.yaml", "rules: [{name: a, action: drop}]\n")
    assert calls.wait_for(1)
    # Part of the 500 ms "edit -> enforced" budget: debounce plus a little.
    assert calls.times[0] - t0 < 0.3
    time.sleep(QUIET)
    assert calls.count == 1  # modified + closed of one write are one change


def test_editor_rename_into_place_calls(conf: Path, make_watcher) -> None:
    _, calls = make_watcher()
    assert calls.after(lambda: replace_via_temp(conf / "rules.yaml", "rules: []\n# v2\n")) == 1
    # A temporary file with a non-hidden, non-YAML name (sed -i's "sedXXXXXX").
    assert calls.after(lambda: replace_via_temp(conf / "rules.yaml", "# v3\n", "sedAb12Cd")) == 1


def test_new_and_deleted_yaml_files_call(conf: Path, make_watcher) -> None:
    _, calls = make_watcher()
    assert calls.after(lambda: write(conf / "extra.yaml", "rules: []\n")) == 1
    assert calls.after(lambda: (conf / "extra.yaml").unlink()) == 1
    assert calls.after(lambda: os.rename(conf / "rules.yaml", conf / "rules.yaml.disabled")) == 1


def test_hidden_swap_backup_and_other_files_do_not_call(conf: Path, make_watcher) -> None:
    _, calls = make_watcher()
    for name in (".rules.yaml.swp", ".rules.yaml.swx", "rules.yaml~", ".#rules.yaml", "#rules.yaml#",
                 "4913", "notes.txt", "rules.yml", ".hidden.yaml"):
        write(conf / name, "x\n")
        (conf / name).unlink()
    (conf / "sub").mkdir()
    write(conf / "sub" / "deep.yaml", "rules: []\n")  # not recursive
    (conf / "dir.yaml").mkdir()  # a directory is not a config file
    time.sleep(QUIET)
    assert calls.count == 0


def test_missing_config_dir_is_watched_from_its_parent(tmp_path: Path) -> None:
    calls = Calls()
    missing = tmp_path / "not" / "yet"
    watcher = ConfigWatcher(str(missing), calls, debounce=DEBOUNCE)
    watcher.start()
    try:
        assert watcher.watched_dirs == {str(tmp_path)}
        assert calls.after(lambda: missing.mkdir(parents=True)) >= 1
        assert calls.after(lambda: write(missing / "rules.yaml", "rules: []\n")) == 1
    finally:
        watcher.stop()


# --------------------------------------------------------------------------- list files


@pytest.fixture
def lists(tmp_path: Path) -> Path:
    d = tmp_path / "lists"
    d.mkdir()
    (d / "block.txt").write_text("192.0.2.1\n")
    return d


def test_list_file_outside_config_dir(lists: Path, make_watcher) -> None:
    block = lists / "block.txt"
    _, calls = make_watcher(files=(str(block),))
    assert calls.after(lambda: write(block, "192.0.2.2\n")) == 1
    assert calls.after(lambda: replace_via_temp(block, "192.0.2.3\n")) == 1
    assert calls.after(lambda: replace_via_temp(block, "192.0.2.4\n", "block.txt.new")) == 1
    assert calls.after(block.unlink) == 1
    assert calls.after(lambda: write(block, "192.0.2.5\n")) == 1
    assert calls.after(lambda: write(block, "192.0.2.6\n")) == 1  # still watched after re-creation
    # Other files beside it do not count.
    write(lists / "other.txt", "198.51.100.1\n")
    time.sleep(QUIET)
    assert calls.count == 6


def test_list_dir_replaced_or_removed_and_recreated(tmp_path: Path, lists: Path, make_watcher) -> None:
    block = lists / "block.txt"
    watcher, calls = make_watcher(files=(str(block),))

    def swap_dir() -> None:
        new = tmp_path / "lists.new"
        new.mkdir()
        write(new / "block.txt", "203.0.113.1\n")
        os.rename(lists, tmp_path / "lists.old")
        os.rename(new, lists)

    assert calls.after(swap_dir) >= 1
    # The watch followed the new directory, not the renamed old one.
    assert calls.after(lambda: write(block, "203.0.113.2\n")) == 1
    write(tmp_path / "lists.old" / "block.txt", "203.0.113.3\n")
    time.sleep(QUIET)
    assert calls.count == 2

    assert calls.after(lambda: shutil.rmtree(lists)) >= 1
    assert str(lists) not in watcher.watched_dirs
    assert calls.after(lists.mkdir) >= 1
    assert calls.after(lambda: write(block, "203.0.113.4\n")) == 1
    assert calls.after(lambda: write(block, "203.0.113.5\n")) == 1


def test_list_file_in_a_dir_that_does_not_exist_yet(tmp_path: Path, make_watcher) -> None:
    block = tmp_path / "later" / "sub" / "block.txt"
    watcher, calls = make_watcher(files=(str(block),))
    assert str(tmp_path) in watcher.watched_dirs
    assert calls.after(lambda: block.parent.mkdir(parents=True)) >= 1
    assert str(block.parent) in watcher.watched_dirs
    assert calls.after(lambda: write(block, "192.0.2.1\n")) == 1
    assert calls.after(lambda: write(block, "192.0.2.2\n")) == 1


def test_symlinked_list_file_follows_the_target(tmp_path: Path, lists: Path, make_watcher) -> None:
    link = tmp_path / "conf" / "block-link.txt"
    link.symlink_to(lists / "block.txt")
    _, calls = make_watcher(files=(str(link),))
    assert calls.after(lambda: write(lists / "block.txt", "192.0.2.9\n")) == 1
    other = lists / "other.txt"
    write(other, "198.51.100.9\n")
    # Each directory's events come from its own inotify reader, in no order
    # across them: a late event of this write would count once other.txt is
    # watched, as a second call after the rename's immediate one.
    time.sleep(QUIET)

    def retarget() -> None:
        tmp = link.with_name(".block-link.tmp")
        tmp.symlink_to(other)
        os.replace(tmp, link)

    assert calls.after(retarget) == 1
    assert calls.after(lambda: write(other, "198.51.100.10\n")) == 1


def test_set_files_unwatches_what_is_no_longer_named(tmp_path: Path, lists: Path, make_watcher) -> None:
    block = lists / "block.txt"
    watcher, calls = make_watcher(files=(str(block),))
    assert str(lists) in watcher.watched_dirs
    watcher.set_files([])
    assert str(lists) not in watcher.watched_dirs
    assert watcher.watched_dirs == {str(tmp_path / "conf"), str(tmp_path)}
    write(block, "192.0.2.7\n")
    block.unlink()
    time.sleep(QUIET)
    assert calls.count == 0
    watcher.set_files([str(block)])
    assert calls.after(lambda: write(block, "192.0.2.8\n")) == 1


# --------------------------------------------------------------------------- owner and mode


def test_chmod_and_chown_of_a_file_call(conf: Path, lists: Path, make_watcher) -> None:
    """No byte changes, but the file may have become unsafe (xdpd.permissions): reload."""
    block = lists / "block.txt"
    _, calls = make_watcher(files=(str(block),))
    assert calls.after(lambda: (conf / "rules.yaml").chmod(0o664)) == 1
    assert calls.after(lambda: block.chmod(0o646)) == 1
    if os.geteuid() == 0:
        assert calls.after(lambda: os.chown(block, 65534, -1)) == 1


def test_chmod_of_a_watched_directory_calls(tmp_path: Path, conf: Path, lists: Path, make_watcher) -> None:
    _, calls = make_watcher(files=(str(lists / "block.txt"),))
    assert calls.after(lambda: conf.chmod(0o777)) == 1
    assert calls.after(lambda: lists.chmod(0o775)) == 1
    assert calls.after(lambda: tmp_path.chmod(0o757)) == 1  # the config dir's parent
    tmp_path.chmod(0o700)


def test_entries_coming_and_going_in_a_directory_do_not_count_as_its_chmod(conf: Path, make_watcher) -> None:
    """A directory's "modified" also means an entry came or went: only owner and mode count."""
    _, calls = make_watcher()
    write(conf / ".rules.yaml.swp", "x\n")
    os.utime(conf, (1, 1))  # times are attributes too
    (conf / ".rules.yaml.swp").unlink()
    time.sleep(QUIET)
    assert calls.count == 0


# --------------------------------------------------------------------------- debounce


def test_a_burst_of_plain_modifications_calls_once(conf: Path, make_watcher) -> None:
    # A writer that still holds the file open: nothing says the write is
    # complete, so the burst is debounced into exactly one call.  (A debounce
    # far above the ~50 ms the burst needs, so a loaded test machine does not
    # stretch a pause in it beyond the debounce.)
    _, calls = make_watcher(debounce=0.5, max_delay=2.0)
    with open(conf / "rules.yaml", "w") as f:
        start = time.monotonic()
        for i in range(20):
            f.write(f"# {i}\n")
            f.flush()
            time.sleep(0.0025)
        assert time.monotonic() - start < 0.5, "the writer itself was too slow for this test"
        assert calls.wait_for(1)
        assert calls.times[0] - start >= 0.5  # the trailing edge: the debounce was waited
        time.sleep(0.6)
        assert calls.count == 1
        closing = time.monotonic()
    # The close completes the write: called at once, not after another debounce.
    assert calls.wait_for(2)
    assert calls.times[1] - closing < 0.25
    time.sleep(0.6)
    assert calls.count == 2


@pytest.mark.parametrize("how", ["rename", "write"])
def test_a_complete_write_calls_at_once(conf: Path, lists: Path, make_watcher, how: str) -> None:
    # A rename into place (IN_MOVED_TO) or a close after writing
    # (IN_CLOSE_WRITE) ends the write: no debounce to wait.
    listed = lists / "block.txt"
    listed.write_text("192.0.2.1\n")
    _, calls = make_watcher(files=(str(listed),), debounce=0.5, max_delay=2.0)
    for path in (conf / "rules.yaml", listed):
        before = calls.count
        t0 = time.monotonic()
        if how == "rename":
            replace_via_temp(path, f"# {t0}\n")
        else:
            write(path, f"# {t0}\n")
        assert calls.wait_for(before + 1)
        assert calls.times[before] - t0 < 0.25  # half the debounce
        time.sleep(0.7)
        assert calls.count == before + 1


def test_a_burst_of_renames_calls_at_once_and_once_after_it(conf: Path, lists: Path, make_watcher) -> None:
    # A tool that saves several files in a row: the first rename is called at
    # once, the rest are coalesced into one trailing call after the last.
    listed = lists / "block.txt"
    listed.write_text("192.0.2.1\n")
    _, calls = make_watcher(files=(str(listed),), debounce=0.5, max_delay=2.0)
    start = time.monotonic()
    for i in range(10):
        replace_via_temp(listed if i % 2 else conf / "rules.yaml", f"# {i}\n")
        time.sleep(0.005)
    last = time.monotonic()
    assert last - start < 0.5, "the writer itself was too slow for this test"
    assert calls.wait_for(2)
    assert calls.times[0] - start < 0.25
    assert calls.times[1] > last  # the trailing call sees the last rename
    time.sleep(0.7)
    assert calls.count == 2


def test_a_continuous_writer_cannot_starve_reloads(conf: Path, make_watcher) -> None:
    _, calls = make_watcher(debounce=0.1, max_delay=1.0)
    start = last_write = time.monotonic()
    writes = []
    while True:
        now = time.monotonic()
        if now - start >= 3.0:
            break
        last_write = now  # just before the write: its events come after this
        writes.append(now)
        write(conf / "rules.yaml", f"# {now}\n")
        time.sleep(0.02)
    end = time.monotonic()
    report = f"calls at {[round(t - start, 2) for t in calls.times]}"
    during = [t for t in calls.times if t <= end]
    assert len(during) >= 2, report
    assert during[0] - start < 1.0 + 0.3, report
    # The last write is reported too: some call comes after it.
    with calls.cond:
        assert calls.cond.wait_for(lambda: calls.times[-1] > last_write, 3.0), report
    time.sleep(QUIET)
    # The first complete write at once, then one call per max_delay, plus
    # the trailing one, plus one for each pause a loaded machine put into the
    # writer that was long enough to end a burst (and start another).
    pauses = sum(1 for a, b in zip(writes, writes[1:]) if b - a > 0.08)
    assert len(calls.times) <= 1 + 3 + 1 + 2 * pauses, f"{report}; {pauses} pauses"


# --------------------------------------------------------------------------- lifecycle


def test_stop_is_prompt_idempotent_and_final(conf: Path) -> None:
    calls = Calls()
    watcher = ConfigWatcher(str(conf), calls, debounce=DEBOUNCE)
    watcher.start()
    watcher.start()
    write(conf / "rules.yaml", "# pending\n")  # a change still in its debounce when stop() runs
    t0 = time.monotonic()
    watcher.stop()
    assert time.monotonic() - t0 < 1.0
    watcher.stop()
    write(conf / "rules.yaml", "# after stop\n")
    time.sleep(QUIET)
    assert calls.count <= 1
    with pytest.raises(RuntimeError):
        watcher.start()

    never = ConfigWatcher(str(conf), calls)
    never.stop()  # never started: nothing to do


def test_on_change_exception_is_logged_and_watching_goes_on(conf: Path, make_watcher) -> None:
    failed = threading.Event()
    calls = Calls()

    def on_change() -> None:
        if not failed.is_set():
            failed.set()
            raise RuntimeError("reload trigger failed on purpose")
        calls()

    watcher = ConfigWatcher(str(conf), on_change, debounce=DEBOUNCE)
    with capture_logs() as logs:
        with watcher:
            write(conf / "rules.yaml", "# 1\n")
            assert failed.wait(3)
            time.sleep(QUIET)
            assert calls.after(lambda: write(conf / "rules.yaml", "# 2\n")) == 1
    assert [e["event"] for e in logs] == ["config_watch_error"]
    assert "on purpose" in logs[0]["detail"]


def test_invalid_debounce_is_refused(conf: Path) -> None:
    with pytest.raises(ValueError):
        ConfigWatcher(str(conf), lambda: None, debounce=2.0, max_delay=1.0)
