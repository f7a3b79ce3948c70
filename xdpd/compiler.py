"""Compile the XDP program in a short-lived child process.

bcc keeps LLVM and clang in the process that compiled: about 170 MB that a
long-running daemon would carry forever for one compile at start.  So the
daemon runs ``python3 -m xdpd.compiler`` instead: the child compiles with
bcc, loads the program (its maps pin themselves, see ``BPF_TABLE_PINNED`` in
the C source), pins the program at ``<pin dir>/prog_staged`` and exits.  The
daemon opens the staged pin, which keeps the program alive, and moves it to
``<pin dir>/prog`` when it is ready to own it.  bcc is never imported here.

The child reports on stdout with one JSON line; errors go to stderr and
the exit status says which kind (the daemon's own codes).
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from dataclasses import dataclass

from . import bpfsys
from .datapath import BuildParams, CompileError

STAGED = "prog_staged"
TIMEOUT_SECONDS = 300.0


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
    from .datapath import compile_program

    params = BuildParams(**json.loads(params_json))
    try:
        compiled = compile_program(pin_dir, params)
    except CompileError as e:
        print(str(e), file=sys.stderr)
        return 70
    staged = os.path.join(pin_dir, STAGED)
    if os.path.exists(staged):
        os.unlink(staged)
    bpfsys.obj_pin(compiled.prog_fd, staged)
    print(json.dumps({"maps_dir": compiled.maps_dir, "fresh": compiled.fresh}))
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 3:
        print("usage: python3 -m xdpd.compiler PIN_DIR PARAMS_JSON", file=sys.stderr)
        sys.exit(64)
    sys.exit(_child(sys.argv[1], sys.argv[2]))
