"""What the kernel side needs, checked up front with one clear line each.

bcc's own failures for these cases are long tracebacks or compiler errors
about missing include files; an operator needs the one thing to install or
do.  Each check raises :class:`Missing` with that sentence.
"""

from __future__ import annotations

import os
from pathlib import Path

CAP_NET_ADMIN = 12
CAP_SYS_ADMIN = 21
CAP_BPF = 39


class Missing(Exception):
    """A prerequisite is missing; the message says what to do."""


def effective_caps(status_path: str = "/proc/self/status") -> int:
    for line in Path(status_path).read_text().splitlines():
        if line.startswith("CapEff:"):
            return int(line.split()[1], 16)
    return 0


def check_capabilities(caps: int | None = None) -> None:
    caps = effective_caps() if caps is None else caps
    has = lambda c: bool(caps & (1 << c))  # noqa: E731
    missing = []
    if not (has(CAP_BPF) or has(CAP_SYS_ADMIN)):
        missing.append("CAP_BPF (or CAP_SYS_ADMIN)")
    if not has(CAP_NET_ADMIN):
        missing.append("CAP_NET_ADMIN")
    if missing:
        raise Missing(f"missing capability {' and '.join(missing)}: run xdpd as root "
                      "or grant it in the systemd unit (AmbientCapabilities=)")


def check_kernel_headers(release: str | None = None, modules_dir: str = "/lib/modules") -> None:
    """bcc compiles against the running kernel's headers (or kheaders)."""
    release = release or os.uname().release
    if os.environ.get("BCC_KERNEL_SOURCE"):
        return
    build = Path(modules_dir, release, "build")
    if (build / "include").is_dir() or Path("/sys/kernel/kheaders.tar.xz").exists():
        return
    raise Missing(
        f"kernel headers for {release} not found ({build} is missing): install "
        f"linux-headers-{release}, or on Debian linux-headers-amd64 and link "
        f"{build} to /usr/src/linux-headers-<version>-amd64 and {build.parent / 'source'} "
        "to the matching -common directory (make setup does this)")


def _mount_of(path: str, mounts: str) -> tuple[str, str]:
    best = ("/", "")
    for line in mounts.splitlines():
        fields = line.split()
        if len(fields) < 3:
            continue
        point = fields[1].replace("\\040", " ")
        if (path == point or path.startswith(point.rstrip("/") + "/")) and len(point) >= len(best[0]):
            best = (point, fields[2])
    return best


def check_bpffs(pin_dir: str, mounts_path: str = "/proc/self/mounts") -> None:
    """Pins need a bpf filesystem under the pin directory."""
    point, fstype = _mount_of(os.path.abspath(pin_dir), Path(mounts_path).read_text())
    if fstype != "bpf":
        raise Missing(f"{pin_dir} is not on a bpf filesystem (it is on {point}, {fstype or 'unknown'}): "
                      "mount one with: mount -t bpf bpf /sys/fs/bpf")


def check_bcc() -> None:
    # find_spec, not import: importing bcc maps LLVM and clang (~65 MB of RSS)
    # into the daemon, which compiles in a child precisely to avoid that.
    import importlib.util
    if importlib.util.find_spec("bcc") is None:
        raise Missing("bcc's Python module is missing: apt install python3-bpfcc "
                      "(the PyPI package named 'bcc' is unrelated; run Debian's /usr/bin/python3)") from None


def check_all(pin_dir: str) -> None:
    check_bcc()
    check_capabilities()
    check_bpffs(pin_dir)
    check_kernel_headers()
