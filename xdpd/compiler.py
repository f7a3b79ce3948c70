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

from . import bpfsys, layout, pins
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


def compile_program(pin_dir: str, params: BuildParams) -> Compiled:
    """Compile and load the program with its maps pinned under ``pin_dir``.

    Maps already pinned for the same layout are reused (bcc opens them), which
    is how counters and the enforced rule set survive a restart.
    """
    from bcc import BPF  # imported late, and only ever in the child or a test

    src = find_source()
    text = src.read_bytes()
    maps_dir = os.path.join(pin_dir, "maps-" + layout_id(text, params))
    fresh = not os.path.exists(os.path.join(maps_dir, "state"))
    os.makedirs(maps_dir, exist_ok=True)
    ban_dir = pins.bans_dir(pin_dir, params.max_bans)
    os.makedirs(ban_dir, exist_ok=True)
    cflags = [f'-DPIN_DIR="{maps_dir}"', f'-DBAN_DIR="{ban_dir}"', "-w", *params.cflags()]
    try:
        bpf = BPF(src_file=str(src).encode(), cflags=cflags)
        prog = bpf.load_func(layout.PROG_NAME.encode(), BPF.XDP)
        ref = bpf.load_func(layout.PASS_PROG_NAME.encode(), BPF.XDP)
    except Exception as e:  # bcc raises bare Exception
        raise CompileError(f"building {src}: {e}") from e
    return Compiled(bpf, prog.fd, ref.fd, maps_dir, fresh)


@dataclass(frozen=True)
class Loaded:
    """A program compiled and loaded by the child, owned by this process now."""

    prog_fd: int
    maps_dir: str
    fresh: bool
    """The maps were created by this compile: empty."""


class PendingCompile:
    """A compiler child running; :meth:`wait` collects what it loaded.

    Started before the config's list files are read, so the compile (the
    slowest part of a start) overlaps with parsing a large blocklist.
    """

    def __init__(self, pin_dir: str, params: BuildParams) -> None:
        self.pin_dir, self.params = pin_dir, params
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
        return Loaded(fd, maps_dir, fresh)


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
