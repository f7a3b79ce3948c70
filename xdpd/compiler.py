"""Compile the XDP program in a short-lived child process.

Importing bcc maps LLVM and clang into the process (about 65 MB of RSS) and
a compile peaks at about 210 MB (measured on Debian 12's bcc 0.26 with this
program): memory a long-running daemon would carry forever for one compile
at start.  So the
daemon runs ``python3 -m xdpd.compiler`` instead: the child compiles with
bcc, loads the program (its maps pin themselves, see ``BPF_TABLE_PINNED`` in
the C source), pins the program at ``<pin dir>/prog_staged`` and exits.  The
daemon opens the staged pin, which keeps the program alive, and moves it to
``<pin dir>/prog`` when it is ready to own it.  bcc is never imported here.

The child reports on stdout with one JSON line; errors go to stderr and
the exit status says which kind (the daemon's own codes).

A restart does not compile at all when the program pinned at
``<pin dir>/prog`` is a build of the same inputs (:mod:`xdpd.buildid`:
source, ``-D`` parameters, bcc and LLVM, kernel) whose maps are the ones
pinned for this layout: :func:`find_or_compile` decides, and says why in
:attr:`Loaded.reason` (the daemon logs it as ``program_reused`` or
``program_compiled``).

:func:`compile_program` is the compile itself (bcc, in the child; the
program tests and the benchmark call it directly).  The program is
specialised with ``-D`` flags from :class:`BuildParams`, never by editing
its text.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from . import bpfsys, buildid, layout, pins
from .exitcodes import EX_SOFTWARE, EX_USAGE

STAGED = "prog_staged"
TIMEOUT_SECONDS = 300.0

BPF_SOURCE = Path(__file__).resolve().parent.parent / "bpf" / "xdpd.bpf.c"
"""Default location of the C source; the package installs it beside xdpd/."""


def find_source() -> Path:
    for candidate in (os.environ.get("XDPD_BPF_SOURCE"), BPF_SOURCE,
                      "/usr/share/xdpd/bpf/xdpd.bpf.c"):
        if candidate and Path(candidate).is_file():
            return Path(candidate)
    raise FileNotFoundError("bpf/xdpd.bpf.c not found (set XDPD_BPF_SOURCE)")


@dataclass(frozen=True)
class BuildParams:
    """The -D parameters of the program (its capacities)."""

    max_exact: int = 4_000_000
    max_prefixes: int = 200_000
    ifindex_max: int = layout.IFINDEX_MAX
    max_limit_sources: int = 1_000_000
    max_bans: int = 1_000_000

    def cflags(self) -> list[str]:
        return [f"-DMAX_EXACT={self.max_exact}", f"-DMAX_PREFIXES={self.max_prefixes}",
                f"-DIFINDEX_MAX={self.ifindex_max}", f"-DMAX_LIMIT_SOURCES={self.max_limit_sources}",
                f"-DMAX_BANS={self.max_bans}"]


def layout_id(source: bytes, params: BuildParams) -> str:
    """Names the maps directory: same source and parameters, same binary layout."""
    h = hashlib.sha256(source)
    h.update(" ".join(params.cflags()).encode())
    return h.hexdigest()[:12]


class CompileError(Exception):
    """bcc could not build or the verifier rejected the program."""


@dataclass
class Compiled:
    """A loaded program; holds bcc's module so the fds stay open."""

    bpf: object
    prog_fd: int
    pass_fd: int
    maps_dir: str
    fresh: bool = False
    """The maps were created by this compile (so they are empty)."""


@dataclass(frozen=True)
class Build:
    """Everything one build of the program is made from (nothing read from the kernel)."""

    source: Path
    layout_id: str
    maps_dir: str
    ban_dir: str
    cflags: tuple[str, ...]

    def identity(self) -> buildid.BuildIdentity:
        return buildid.identify(self.layout_id, list(self.cflags))


def plan_build(pin_dir: str, params: BuildParams) -> Build:
    """The source, the pin paths and the flags of the build for ``params`` under ``pin_dir``."""
    src = find_source()
    lid = layout_id(src.read_bytes(), params)
    maps_dir = os.path.join(pin_dir, "maps-" + lid)
    ban_dir = pins.bans_dir(pin_dir, params.max_bans)
    cflags = (f'-DPIN_DIR="{maps_dir}"', f'-DBAN_DIR="{ban_dir}"', "-w", *params.cflags())
    return Build(src, lid, maps_dir, ban_dir, cflags)


def compile_program(pin_dir: str, params: BuildParams) -> Compiled:
    """Compile and load the program with its maps pinned under ``pin_dir``.

    Maps already pinned for the same layout are reused (bcc opens them), which
    is how counters and the enforced rule set survive a restart.
    """
    from bcc import BPF  # imported late, and only ever in the child or a test

    build = plan_build(pin_dir, params)
    src, maps_dir, ban_dir = build.source, build.maps_dir, build.ban_dir
    fresh = not os.path.exists(os.path.join(maps_dir, "state"))
    os.makedirs(maps_dir, exist_ok=True)
    os.makedirs(ban_dir, exist_ok=True)
    cflags = list(build.cflags)
    try:
        bpf = BPF(src_file=str(src).encode(), cflags=cflags)
        prog = bpf.load_func(layout.PROG_NAME.encode(), BPF.XDP)
        ref = bpf.load_func(layout.PASS_PROG_NAME.encode(), BPF.XDP)
    except Exception as e:  # bcc raises bare Exception
        raise CompileError(f"building {src}: {e}") from e
    return Compiled(bpf, prog.fd, ref.fd, maps_dir, fresh)


@dataclass(frozen=True)
class Loaded:
    """A program loaded (compiled by the child, or the pinned one reused), owned by this process now."""

    prog_fd: int
    maps_dir: str
    fresh: bool
    """The maps were created by this compile: empty."""
    identity: buildid.BuildIdentity
    """What it was built from: recorded with the pins once the daemon has pinned it."""
    reused: bool = False
    """The program pinned at ``<pin dir>/prog`` (no compile)."""
    reason: str = ""
    """Why it was compiled (or that it was reused): for the log."""


class Reused:
    """The pinned program, found to be a build of the same inputs: nothing to wait for.

    The same interface as :class:`PendingCompile`, so the daemon's start does
    not care which it got.
    """

    def __init__(self, loaded: Loaded) -> None:
        self.loaded: Loaded | None = loaded
        self.maps_dir = loaded.maps_dir

    def wait(self) -> Loaded:
        loaded, self.loaded = self.loaded, None
        if loaded is None:
            raise CompileError("the reused program was already taken or cancelled")
        return loaded

    def cancel(self) -> None:
        if self.loaded is not None:
            os.close(self.loaded.prog_fd)
            self.loaded = None


class Unbuildable:
    """No source to build from: :meth:`wait` raises, as a failed compile does (after the config was read)."""

    def __init__(self, error: CompileError) -> None:
        self.error = error
        self.maps_dir: str | None = None

    def wait(self) -> Loaded:
        raise self.error

    def cancel(self) -> None:
        pass


def find_or_compile(pin_dir: str, params: BuildParams) -> "Reused | PendingCompile | Unbuildable":
    """The pinned program if it is a build of the same inputs with its maps in place, else a compile.

    Reuse needs all of: an xdpd program pinned at ``<pin dir>/prog``; a
    build record (:mod:`xdpd.buildid`) naming that very program; the same
    build identity now; and every map the daemon opens (the layout's maps
    directory and the ban table) being one the program uses.  Anything else
    compiles as a start always did, and :attr:`Loaded.reason` says why.
    """
    try:
        build = plan_build(pin_dir, params)
    except OSError as e:
        return Unbuildable(CompileError(str(e)))
    identity = build.identity()
    fd, why = _reusable(pin_dir, build, identity)
    if fd is not None:
        return Reused(Loaded(fd, build.maps_dir, False, identity, reused=True, reason=why))
    return PendingCompile(pin_dir, params, build, identity, why)


def _reusable(pin_dir: str, build: Build, identity: buildid.BuildIdentity) -> tuple[int | None, str]:
    """(a new fd of the pinned program, why) when it can be reused, else (None, why not)."""
    try:
        fd = pins.pinned_program(pin_dir)
    except ValueError as e:
        return None, str(e)
    except OSError as e:
        return None, f"the pinned program cannot be opened: {e}"
    if fd is None:
        return None, "no program pinned"
    try:
        info = bpfsys.prog_info(fd)
        record = buildid.read_record(pin_dir)
        if record is None:
            why = "no build identity recorded with the pinned program (pinned by an older xdpd)"
        elif record[0] != info.id:
            why = f"the build identity recorded is for program {record[0]}, the pinned one is {info.id}"
        elif changed := record[1].differences(identity):
            why = "built from other inputs: " + ", ".join(changed) + " changed"
        else:
            why = _maps_not_used(info.map_ids, build)
        if why:
            os.close(fd)
            return None, why
        return fd, f"program {info.id} pinned by a previous daemon is a build of the same inputs"
    except OSError as e:
        os.close(fd)
        return None, f"reading the pinned program: {e}"


def _maps_not_used(map_ids: tuple[int, ...], build: Build) -> str:
    """Why the maps pinned for this build are not the program's ("" when they are).

    The program references only the maps its code uses (``rule_names`` and
    the other bookkeeping maps are pinned beside them but not referenced),
    so: the bank switch and the ban table must be among its maps, and no
    pinned map may differ from the program's map of the same name.
    """
    used: dict[str, int] = {}
    for map_id in map_ids:
        try:
            mfd = bpfsys.map_fd_by_id(map_id)
        except OSError:
            continue
        try:
            used[bpfsys.map_info(mfd).name] = map_id
        finally:
            os.close(mfd)
    for d, names, required in ((build.maps_dir, layout.MAPS, "state"), (build.ban_dir, layout.BAN_MAPS, "bans")):
        for name in names:
            path = os.path.join(d, name)
            try:
                mfd = bpfsys.obj_get(path)
            except OSError:
                return f"{path} is not pinned"
            try:
                info = bpfsys.map_info(mfd)
            finally:
                os.close(mfd)
            if used.get(info.name, info.id) != info.id or (name == required and info.id not in used.values()):
                return f"{path} is not the pinned program's map"
    return ""


class PendingCompile:
    """A compiler child running; :meth:`wait` collects what it loaded.

    Started before the config's list files are read, so the compile (the
    slowest part of a start) overlaps with parsing a large blocklist.
    """

    def __init__(self, pin_dir: str, params: BuildParams, build: Build, identity: buildid.BuildIdentity,
                 reason: str) -> None:
        self.pin_dir, self.params = pin_dir, params
        self.maps_dir = build.maps_dir
        """Where the maps will be: bcc opens those already pinned there."""
        self.identity = identity
        self.reason = reason
        package_parent = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        env = dict(os.environ)
        env["PYTHONPATH"] = package_parent + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        argv = [sys.executable, "-m", "xdpd.compiler", pin_dir, json.dumps(dataclasses.asdict(params))]
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)

    def cancel(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.communicate()
        staged = os.path.join(self.pin_dir, STAGED)
        if os.path.exists(staged):
            os.unlink(staged)

    def wait(self) -> Loaded:
        try:
            out, err = self.proc.communicate(timeout=TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            self.cancel()
            raise CompileError(f"compiling the XDP program took more than {TIMEOUT_SECONDS:.0f} s") from None
        if self.proc.returncode != 0:
            raise CompileError(err.strip() or f"exit status {self.proc.returncode}")
        try:
            result = json.loads(out.strip().splitlines()[-1])
            maps_dir, fresh = result["maps_dir"], bool(result["fresh"])
        except (ValueError, IndexError, KeyError):
            raise CompileError(f"the compiler child printed no result: {out!r}") from None
        staged = os.path.join(self.pin_dir, STAGED)
        fd = bpfsys.obj_get(staged)
        os.unlink(staged)  # our fd keeps the program loaded
        return Loaded(fd, maps_dir, fresh, self.identity, reason=self.reason)


def _child(pin_dir: str, params_json: str) -> int:
    params = BuildParams(**json.loads(params_json))
    try:
        compiled = compile_program(pin_dir, params)
    except CompileError as e:
        print(str(e), file=sys.stderr)
        return EX_SOFTWARE
    staged = os.path.join(pin_dir, STAGED)
    if os.path.exists(staged):
        os.unlink(staged)
    bpfsys.obj_pin(compiled.prog_fd, staged)
    print(json.dumps({"maps_dir": compiled.maps_dir, "fresh": compiled.fresh}))
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 3:
        print("usage: python3 -m xdpd.compiler PIN_DIR PARAMS_JSON", file=sys.stderr)
        sys.exit(EX_USAGE)
    sys.exit(_child(sys.argv[1], sys.argv[2]))
