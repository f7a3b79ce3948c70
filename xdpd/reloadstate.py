"""The outcome of the daemon's last reload, as a small JSON file in the runtime dir.

``systemctl reload xdpd`` must wait for the reload and fail when the new config
is invalid (issue 4), but SIGHUP carries no answer back.  So after every reload
attempt, whatever triggered it (SIGHUP, a file change, a link event), the
daemon replaces ``<runtime dir>/reload.json`` atomically with::

    {"seq": 7, "ok": false, "summary": "...", "errors": ["PATH:LINE:COL: ..."]}

``seq`` only grows while one daemon runs; ``xdpd reload`` reads it, sends
SIGHUP and waits for a larger one.  The file is written with rename, so a
reader never sees half of it.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field

DEFAULT_RUNTIME_DIR = "/run/xdpd"
FILE_NAME = "reload.json"


@dataclass(frozen=True)
class ReloadState:
    seq: int = 0
    ok: bool = True
    summary: str = ""
    errors: list[str] = field(default_factory=list)


def path(runtime_dir: str) -> str:
    return os.path.join(runtime_dir, FILE_NAME)


def write(runtime_dir: str, state: ReloadState) -> None:
    """Replace the state file atomically (creating the runtime dir if needed)."""
    os.makedirs(runtime_dir, mode=0o755, exist_ok=True)
    final = path(runtime_dir)
    tmp = final + ".tmp"
    with open(tmp, "w") as f:
        json.dump(asdict(state), f)
        f.write("\n")
    os.replace(tmp, final)


def read(runtime_dir: str) -> ReloadState | None:
    """The last state written, or None when there is none (daemon never reloaded here)."""
    try:
        with open(path(runtime_dir)) as f:
            data = json.load(f)
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return None
    return ReloadState(seq=int(data.get("seq", 0)), ok=bool(data.get("ok", True)),
                       summary=str(data.get("summary", "")), errors=[str(e) for e in data.get("errors", [])])
