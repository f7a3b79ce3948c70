"""What a compiled program was built from, recorded beside its pins so a restart can reuse it.

Compiling with bcc is the slowest part of a start (about 1.4 s, in a child
process: :mod:`xdpd.compiler`).  A restart on the same machine with the same
xdpd usually finds the very program it would build already pinned at
``<pin dir>/prog``; reusing it is only right when everything that shaped
its instructions is the same, so a build is identified by:

``layout``
    the layout id: the C source and its ``-D`` parameters (the capacities),
    which also names the maps directory (:func:`xdpd.compiler.layout_id`);
``cflags``
    every flag given to bcc, the pin paths the maps are found at included;
``toolchain``
    bcc and the clang/LLVM it compiles with, read without importing bcc
    (which would map LLVM into the daemon): the Debian package versions of
    ``python3-bpfcc``, ``libbpfcc`` and the ``libclang*``/``libllvm*``
    packages ``libbpfcc`` depends on, and the size and time of ``libbcc.so``
    itself (what is left to go by where dpkg knows nothing);
``kernel``
    the running kernel's release and version string (bpffs does not survive
    a reboot, but a pin dir can outlive a kexec or be made by hand), and
    where the headers bcc compiles against are;
``format``
    :data:`FORMAT`, raised when xdpd changes how it builds in a way none of
    the above shows.

bpffs holds only BPF objects, so the record is a one-entry BPF array pinned
at ``<pin dir>/build-v1``: the id of the program it describes and the
identity as JSON.  It is written after the program is pinned; a program
whose id differs from the record's (a crash between the two, or a daemon of
an older xdpd that pins without recording) is not trusted, and neither is a
pin dir without a record: both compile as before.
"""

from __future__ import annotations

import ctypes as ct
import hashlib
import importlib.util
import json
import os
from dataclasses import dataclass

from . import bpfsys, pins

FORMAT = 1
"""Raise when the compiler changes what it builds from the same inputs."""

PIN_NAME = "build-v1"
"""Under the pin dir; the version names the value's layout below."""

TEXT_BYTES = 1016

DPKG_STATUS = "/var/lib/dpkg/status"
LIB_DIRS = ("/usr/lib/x86_64-linux-gnu", "/usr/lib/aarch64-linux-gnu", "/usr/lib64", "/usr/lib",
            "/usr/local/lib")


class _Record(ct.Structure):
    _fields_ = [("prog_id", ct.c_uint32), ("length", ct.c_uint32), ("text", ct.c_char * TEXT_BYTES)]


@dataclass(frozen=True)
class BuildIdentity:
    """The inputs of one build, field by field (see the module docstring)."""

    fields: tuple[tuple[str, str], ...]

    def text(self) -> str:
        return json.dumps(dict(self.fields), sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_text(cls, text: str) -> "BuildIdentity":
        data = json.loads(text)
        if not isinstance(data, dict):
            raise ValueError("not an object")
        return cls(tuple(sorted((str(k), str(v)) for k, v in data.items())))

    def differences(self, other: "BuildIdentity") -> list[str]:
        """Names of the fields that differ (present in one only included), sorted."""
        a, b = dict(self.fields), dict(other.fields)
        return sorted(k for k in a.keys() | b.keys() if a.get(k) != b.get(k))


def identify(layout_id: str, cflags: list[str]) -> BuildIdentity:
    """The identity of a build of layout ``layout_id`` with ``cflags``, on this machine now."""
    uname = os.uname()
    fields = {
        "format": str(FORMAT),
        "layout": layout_id,
        "cflags": hashlib.sha256("\0".join(cflags).encode()).hexdigest()[:16],
        "toolchain": toolchain(),
        "kernel": f"{uname.release} {uname.version}",
        "headers": os.path.realpath(f"/lib/modules/{uname.release}/build"),
    }
    return BuildIdentity(tuple(sorted(fields.items())))


def toolchain(status_path: str = DPKG_STATUS) -> str:
    """bcc and its clang/LLVM, as one line (see the module docstring); never imports bcc."""
    status = _read_status(status_path)
    packages = _versions_in(status, ["python3-bpfcc", "libbpfcc"])
    depends = packages.get("libbpfcc", ("", ""))[1]
    llvm = sorted({d.split()[0].split(":")[0] for d in depends.split(",") if d.strip()
                   and d.split()[0].startswith(("libclang", "libllvm"))})
    packages.update(_versions_in(status, llvm))
    parts = [f"{name}={version}" for name, (version, _) in sorted(packages.items())]
    parts.append(f"bcc.py={_bcc_python_version()}")
    parts.append(f"libbcc={_file_identity('libbcc.so.0')}")
    return " ".join(parts)


def dpkg_versions(status_path: str, names: list[str]) -> dict[str, tuple[str, str]]:
    """Installed packages among ``names``: name -> (Version, Depends), from dpkg's status file.

    A missing file (not Debian) gives nothing; a package not installed is left out.
    """
    return _versions_in(_read_status(status_path), names)


def _read_status(status_path: str) -> str:
    """dpkg's status file, with a newline in front so every stanza starts with one ("" when absent)."""
    try:
        with open(status_path, encoding="utf-8", errors="replace") as f:
            return "\n" + f.read()
    except OSError:
        return ""


def _versions_in(text: str, names: list[str]) -> dict[str, tuple[str, str]]:
    """:func:`dpkg_versions` of a status file's text (see :func:`_read_status`)."""
    out = {}
    for name in names:
        at = text.find(f"\nPackage: {name}\n")
        while at >= 0:
            end = text.find("\n\n", at + 1)
            stanza = text[at + 1:end if end >= 0 else len(text)]
            fields = _stanza_fields(stanza)
            if fields.get("Status", "").endswith(" installed"):
                out[name] = (fields.get("Version", "?"), fields.get("Depends", ""))
                break
            at = text.find(f"\nPackage: {name}\n", at + 1)
    return out


def _stanza_fields(stanza: str) -> dict[str, str]:
    """A deb822 stanza's fields; a continuation line (leading blank) belongs to the field above."""
    fields: dict[str, str] = {}
    key = ""
    for line in stanza.splitlines():
        if line[:1] in (" ", "\t"):
            if key:
                fields[key] += " " + line.strip()
        elif ":" in line:
            key, _, value = line.partition(":")
            fields[key] = value.strip()
    return fields


def _bcc_python_version() -> str:
    """``bcc.__version__`` read from its ``version.py`` (found without importing bcc)."""
    try:
        spec = importlib.util.find_spec("bcc")
    except (ImportError, ValueError):
        return "none"
    if spec is None or not spec.submodule_search_locations:
        return "none"
    for d in spec.submodule_search_locations:
        try:
            with open(os.path.join(d, "version.py"), encoding="utf-8") as f:
                for line in f:
                    if line.startswith("__version__"):
                        return line.partition("=")[2].strip().strip("'\"")
        except OSError:
            continue
    return "unknown"


def _file_identity(soname: str) -> str:
    """Where ``soname`` resolves to, its size and modification time ("none" when absent)."""
    for d in LIB_DIRS:
        path = os.path.join(d, soname)
        try:
            st = os.stat(path)
        except OSError:
            continue
        return f"{os.path.realpath(path)}:{st.st_size}:{st.st_mtime_ns}"
    return "none"


# ------------------------------------------------------------------ the pinned record


_SHAPE = pins.SmallMap(bpfsys.BPF_MAP_TYPE_ARRAY, "xdpd_build", ct.c_uint32, _Record, 1)


def read_record(pin_dir: str) -> tuple[int, BuildIdentity] | None:
    """(program id, identity) recorded under ``pin_dir``; None when there is none or it is unreadable."""
    try:
        m = _SHAPE.open(os.path.join(pin_dir, PIN_NAME))
    except OSError:
        return None
    if m is None:
        return None
    try:
        rec = m.lookup(ct.c_uint32(0))
        if rec is None or not rec.prog_id or rec.length > TEXT_BYTES:
            return None
        return rec.prog_id, BuildIdentity.from_text(bytes(rec.text)[:rec.length].decode())
    except (OSError, ValueError):
        return None
    finally:
        m.close()


def write_record(pin_dir: str, prog_id: int, identity: BuildIdentity) -> None:
    """Record that the program ``prog_id`` (pinned at ``<pin dir>/prog``) is a build of ``identity``.

    Creates and pins the map on first use; a map of another shape there is
    replaced.  Raises :class:`OSError` when the kernel refuses, and
    :class:`ValueError` for an identity too long for the record.
    """
    text = identity.text().encode()
    if len(text) > TEXT_BYTES:
        raise ValueError(f"build identity of {len(text)} bytes does not fit the record ({TEXT_BYTES})")
    m = _SHAPE.open_or_create(os.path.join(pin_dir, PIN_NAME))
    try:
        m.update(ct.c_uint32(0), _Record(prog_id=prog_id, length=len(text), text=text))
    finally:
        m.close()
