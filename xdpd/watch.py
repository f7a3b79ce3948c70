"""Noticing that the configuration on disk changed.

The daemon reconciles ``/etc/xdpd/*.yaml`` and the address list files they
name whenever one of them changes.  :class:`ConfigWatcher` is the trigger:
it watches with inotify (through ``watchdog``), filters out what cannot
matter, and calls ``on_change()`` once per burst of changes.  It never reads
a file itself; the daemon reloads everything and decides.

What counts as a change
    * a ``*.yaml`` file directly in the config dir (the files
      :func:`xdpd.config.load_config` reads: not hidden, so editor swap and
      lock files such as ``.rules.yaml.swp`` or ``.#rules.yaml`` and backups
      such as ``rules.yaml~`` never count) being created, written, closed
      after writing, renamed (either end: a temporary file renamed *into*
      ``rules.yaml`` counts) or deleted;
    * the same for every file named by :meth:`ConfigWatcher.set_files`,
      wherever it lives, including an editor's write-to-temp-then-rename, a
      delete followed by a re-create, and the file's directory being
      deleted, re-created or replaced by a rename;
    * for a file that is a symlink, the link and the file it points to;
    * a change of owner or mode (``chmod``, ``chown``, ``setfacl``: inotify's
      IN_ATTRIB) of any of these files, or of a watched directory (the config
      dir, a list file's directory, or the parent of either): a change of
      no byte can make the config unsafe (:mod:`xdpd.permissions`), and the
      reload that follows is then rejected.  A directory's other attribute
      changes (its times, as entries come and go) do not count.

How
    inotify watches directories, not names, so each file's directory is
    watched (not recursively), and so is that directory's parent, whose
    events say when the directory itself is deleted or replaced; the watch
    then moves to the new directory.  A directory that does not exist (yet)
    is not an error: its nearest existing ancestor is watched until it
    appears.  Replacing a directory two or more levels above a file is not
    noticed.

Debounce
    A write that is known to be complete is reported at once: a watched file
    or config YAML renamed into place (IN_MOVED_TO: an editor's or ``sed
    -i``'s write-then-rename) or closed after writing (IN_CLOSE_WRITE).
    Waiting would only delay the reload, since nothing more is coming.
    Other events (plain modifications while a writer still holds the file,
    creations, deletions, attribute changes) are debounced: ``on_change()``
    is called ``debounce`` seconds after the last relevant event of a burst
    (trailing edge), but no later than ``max_delay`` seconds after the
    burst's first event, so a writer that never pauses still gets reloads
    at least every ``max_delay`` seconds.  A file being written when that
    happens is read half-written; the close that ends the write is another
    event, so a consistent reload follows.

    Only the first complete write of a burst is reported at once: one that
    comes less than ``debounce`` after the last call or the last complete
    write is debounced like any other event, so a tool that renames or
    rewrites several files in a row causes one call at once and one more
    when it is done, not one per file, and a writer that rewrites a file
    without pause is still reported every ``max_delay`` seconds, no more.  (watchdog holds
    a rename *out of* a watched directory, such as ``mv block.txt /tmp``,
    for 0.5 s while it looks for the other end, and that directory's later
    events wait behind it; renames within a directory or into it, such as
    an editor's rename into place, are not held.)

Threads
    Events arrive on watchdog's observer thread and are only classified
    there; the debouncing, re-watching and the ``on_change()`` call happen
    on the watcher's own thread.  ``on_change`` should just set a flag and
    wake the daemon's loop; an exception from it is logged
    (``config_watch_error``) and watching goes on.
"""

from __future__ import annotations

import os
import threading
import time
from typing import Any, Callable, Iterable

import structlog
from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer
from watchdog.observers.api import ObservedWatch

# Event types that say a file's content, existence or attributes changed.
# "closed" is IN_CLOSE_WRITE: the end of a write.  Attribute changes
# (IN_ATTRIB, which watchdog watches) arrive as "modified": a chmod must
# count, since it can make a file unsafe; on a directory, "modified" also
# stands for any entry coming or going, so there only a changed owner or mode
# counts (see _dir_attrs_changed).
_CHANGE_TYPES = frozenset({"created", "modified", "moved", "deleted", "closed"})
# Event types that can make a watched directory appear, vanish or be replaced.
_STRUCTURE_TYPES = frozenset({"created", "moved", "deleted"})
# Bound on re-checking the directories while they keep changing under us.
_SYNC_ROUNDS = 8


class ConfigWatcher:
    """Calls ``on_change()`` (debounced) when the config dir or a named file changes.

    ``config_dir``'s ``*.yaml`` files are always watched; :meth:`set_files`
    names the other files (the daemon passes ``Config.files`` after every
    successful load).  :meth:`start` and :meth:`stop` are idempotent; a
    stopped watcher cannot be started again.  After :meth:`stop` returns,
    ``on_change`` is not called again (unless :meth:`stop` was called from
    ``on_change`` itself).

    Changes to a file made before :meth:`set_files` names it are not
    reported: the daemon's reload read those already, except for a write
    that lands between its read and its :meth:`set_files` call.
    """

    def __init__(self, config_dir: str, on_change: Callable[[], None],
                 debounce: float = 0.1, max_delay: float = 1.0) -> None:
        if debounce < 0 or max_delay < debounce:
            raise ValueError("need 0 <= debounce <= max_delay")
        self._config_dir = os.path.abspath(config_dir)
        self._on_change = on_change
        self._debounce = debounce
        self._max_delay = max_delay
        self._log = structlog.get_logger("xdpd")

        # What the observer thread classifies events against.  Replaced as
        # a whole (never mutated), so it can be read without a lock.
        self._files_wanted: frozenset[str] = frozenset()
        self._match: frozenset[str] = frozenset()
        self._targets: frozenset[str] = frozenset({self._config_dir})

        # Watches, touched only with _sync_lock held.
        self._sync_lock = threading.Lock()
        self._watches: dict[str, tuple[ObservedWatch, tuple[int, int]]] = {}
        # (mode, uid, gid) of each watched directory, as last seen; the
        # observer thread compares and updates single keys.
        self._dir_attrs: dict[str, tuple[int, int, int] | None] = {}
        self._observer = Observer()
        self._handler = _Handler(self._on_event)

        # Debounce state, shared by the observer and the watcher thread.
        self._cond = threading.Condition()
        self._burst_start: float | None = None
        self._last_event = 0.0
        self._complete = False
        """A complete write arrived that is not part of a burst: call at once."""
        self._last_complete = float("-inf")
        self._last_call = float("-inf")
        self._resync_paths: set[str] = set()
        self._resync = False
        self._started = False
        self._stopping = False
        self._thread: threading.Thread | None = None

    @property
    def watched_dirs(self) -> frozenset[str]:
        """The directories inotify watches right now (for diagnostics and tests)."""
        with self._sync_lock:
            return frozenset(self._watches)

    # ------------------------------------------------------------------ API

    def set_files(self, paths: Iterable[str]) -> None:
        """Watch exactly these files besides the config dir's YAML files.

        Relative paths are taken relative to the current directory.
        Directories no longer needed are unwatched before this returns;
        new ones are watched before it returns (if the watcher runs).
        """
        files = frozenset(os.path.abspath(p) for p in paths)
        with self._sync_lock:
            self._files_wanted = files
            if self._started and not self._stopping:
                self._sync(frozenset())
            else:
                self._match, self._targets = _match_and_targets(self._config_dir, files)

    def start(self) -> None:
        """Start watching; returns once the watches are in place."""
        with self._sync_lock:
            with self._cond:
                if self._stopping:
                    raise RuntimeError("ConfigWatcher cannot be restarted after stop()")
                if self._started:
                    return
                self._started = True
            self._observer.start()
            self._sync(frozenset())
            self._thread = threading.Thread(target=self._run, name="xdpd-configwatch", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        """Stop watching and join both threads.  Pending changes are dropped."""
        with self._cond:
            if self._stopping:
                return
            self._stopping = True
            self._cond.notify_all()
        with self._sync_lock:  # waits for a start() in progress
            thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join()
        with self._sync_lock:
            self._watches.clear()
            if self._observer.ident is None:
                return  # never started
            self._observer.stop()  # also removes every watch
        self._observer.join()

    def __enter__(self) -> "ConfigWatcher":
        self.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    # ------------------------------------------------------------------ observer thread

    def _on_event(self, event: FileSystemEvent) -> None:
        """Classify one event; cheap, runs on watchdog's observer thread."""
        kind = event.event_type
        if kind not in _CHANGE_TYPES:
            return
        match, targets = self._match, self._targets
        relevant = structural = complete = False
        dest = getattr(event, "dest_path", None)
        for path in (event.src_path, dest):
            if not path:
                continue
            if kind in _STRUCTURE_TYPES and _on_route(path, targets):
                relevant = structural = True  # a watched dir or one of its ancestors
            elif event.is_directory:
                # "modified" on a directory: an entry changed (seen by itself),
                # or its owner or mode did, which matters for a watched one.
                if kind == "modified" and self._dir_attrs_changed(path):
                    relevant = True
            elif path in match or _is_config_yaml(path, self._config_dir):
                relevant = True
                # A file created, deleted or renamed may be a symlink that
                # now points elsewhere.
                structural = structural or (kind in _STRUCTURE_TYPES and path in match)
                # Closed after writing, or renamed into place: the write is whole.
                complete = complete or kind == "closed" or (kind == "moved" and path == dest)
        if not relevant:
            return
        now = time.monotonic()
        with self._cond:
            if self._burst_start is None:
                self._burst_start = now
            self._last_event = now
            if complete:
                # The first complete write after a quiet debounce is called at
                # once; later ones of the same burst wait for its end.
                if now - max(self._last_complete, self._last_call) >= self._debounce:
                    self._complete = True
                self._last_complete = now
            if structural:
                self._resync = True
                self._resync_paths.update(p for p in (event.src_path, dest) if p)
            self._cond.notify_all()

    def _dir_attrs_changed(self, path: str) -> bool:
        """True if ``path`` is a watched directory whose owner or mode changed since last seen."""
        if path not in self._dir_attrs:
            return False
        now = _attrs(path)
        if self._dir_attrs.get(path) == now:
            return False
        self._dir_attrs[path] = now
        return True

    # ------------------------------------------------------------------ watcher thread

    def _run(self) -> None:
        while True:
            resync: frozenset[str] | None = None
            fire = False
            with self._cond:
                while not self._stopping:
                    if self._resync:
                        resync = frozenset(self._resync_paths)
                        self._resync = False
                        self._resync_paths.clear()
                        break
                    if self._burst_start is not None:
                        due = min(self._last_event + self._debounce, self._burst_start + self._max_delay)
                        now = time.monotonic()
                        if now >= due or self._complete:
                            self._burst_start = None
                            self._complete = False
                            # Read by the observer thread: complete writes up to
                            # debounce after this call belong to its burst.
                            self._last_call = now
                            fire = True
                            break
                        self._cond.wait(due - now)
                    else:
                        self._cond.wait()
                if self._stopping:
                    return
            if resync is not None:
                # Re-watch at once, not after the debounce: writes into a
                # replaced directory must not be missed meanwhile.
                with self._sync_lock:
                    if not self._stopping:
                        try:
                            self._sync(resync)
                        except Exception as e:  # keep reporting what is still watched
                            self._log.error("config_watch_error", detail=f"re-watching: {e!r}")
            if fire:
                try:
                    self._on_change()
                except Exception as e:
                    self._log.error("config_watch_error", detail=f"on_change raised {e!r}")

    def _sync(self, changed: frozenset[str]) -> None:
        """Bring the inotify watches in line with the files and the directories on disk.

        ``changed`` are paths that events said were created, deleted or
        renamed: a watch on one of them is renewed even if the directory
        looks the same (inode numbers are reused).  Called with
        ``_sync_lock`` held.
        """
        self._match, self._targets = _match_and_targets(self._config_dir, self._files_wanted)
        # A directory created after we looked but before its parent's watch
        # was in place sends no event to anyone (mkdir -p a/b while only
        # the ancestor of a is watched): look again until nothing moved.
        for _ in range(_SYNC_ROUNDS):
            wanted = _dirs_to_watch(self._targets)
            self._apply_watches(wanted, changed)
            if _dirs_to_watch(self._targets) == wanted and all(
                    _ident(path) == ident for path, (_, ident) in self._watches.items()):
                return
            changed = frozenset()

    def _apply_watches(self, wanted: set[str], changed: frozenset[str]) -> None:
        alive = {e.watch for e in list(self._observer.emitters) if e.is_alive()}
        for path, (watch, ident) in list(self._watches.items()):
            if path not in wanted or path in changed or watch not in alive or _ident(path) != ident:
                del self._watches[path]
                self._dir_attrs.pop(path, None)
                self._observer.unschedule(watch)
        # Sorted, so a parent is watched before its child: a child replaced
        # meanwhile is then seen by the parent's watch.
        for path in sorted(wanted - set(self._watches)):
            new_ident = _ident(path)
            if new_ident is None:
                continue  # gone since we looked; the next round or its parent's watch sees it
            # Seen before the watch starts: a chmod after this is an event that compares unequal.
            self._dir_attrs[path] = _attrs(path)
            try:
                new_watch = self._observer.schedule(self._handler, path, recursive=False)
            except OSError as e:
                # ENOSPC: out of inotify watches (fs.inotify.max_user_watches).
                self._dir_attrs.pop(path, None)
                self._log.warning("config_watch_failed", path=path, detail=str(e))
                continue
            self._watches[path] = (new_watch, new_ident)


class _Handler(FileSystemEventHandler):
    """Hands every event to one function."""

    def __init__(self, on_event: Callable[[FileSystemEvent], None]) -> None:
        super().__init__()
        self._on_event_fn = on_event

    def dispatch(self, event: FileSystemEvent) -> None:
        self._on_event_fn(event)


def _match_and_targets(config_dir: str, files: frozenset[str]) -> tuple[frozenset[str], frozenset[str]]:
    """The paths whose events count, and the directories they live in.

    A symlink counts under both its own path and its target's.
    """
    match = set(files)
    for path in files:
        match.add(os.path.realpath(path))
    targets = {config_dir} | {os.path.dirname(p) for p in match}
    return frozenset(match), frozenset(targets)


def _dirs_to_watch(targets: frozenset[str]) -> set[str]:
    """Each existing target dir and its parent; for a missing one, its nearest existing ancestor."""
    out = set()
    for target in targets:
        if os.path.isdir(target):
            out.add(target)
            out.add(os.path.dirname(target))  # "/" is its own parent
        else:
            ancestor = os.path.dirname(target)
            while not os.path.isdir(ancestor) and ancestor != os.path.dirname(ancestor):
                ancestor = os.path.dirname(ancestor)
            out.add(ancestor)
    return out


def _on_route(path: str, targets: frozenset[str]) -> bool:
    """True if ``path`` is one of ``targets`` or an ancestor of one."""
    prefix = path.rstrip("/") + "/"
    return any(t == path or t.startswith(prefix) for t in targets)


def _is_config_yaml(path: str, config_dir: str) -> bool:
    """The files :func:`xdpd.config.load_config` reads: ``*.yaml`` directly in the dir, not hidden."""
    head, name = os.path.split(path)
    return head == config_dir and name.endswith(".yaml") and not name.startswith(".")


def _attrs(path: str) -> tuple[int, int, int] | None:
    """(mode, uid, gid) of a path (symlinks followed), or None if it is gone."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_mode, st.st_uid, st.st_gid


def _ident(path: str) -> tuple[int, int] | None:
    """(device, inode) of a directory, or None if it is not one (any more)."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    if not os.path.isdir(path):
        return None
    return st.st_dev, st.st_ino
