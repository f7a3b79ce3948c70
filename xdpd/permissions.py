"""Who can change the files that decide this host's firewall (``strict_permissions``).

A config or list file that a user other than root can write hands that user
the firewall: they can drop the administrator's SSH or pass everything.  So,
as sshd's ``StrictModes`` does for ``authorized_keys``, xdpd refuses a
config whose files, or the directories and symlinks that lead to them, are
writable or owned by anyone else.  Like any other config error this is a
:class:`~xdpd.problems.Problem` at a path: ``xdpd check`` lists it, the
daemon does not start (78) or rejects the reload and keeps its live state.

Two steps, so that the judging is pure and testable with plain data:

* :func:`survey` looks a path up the way the kernel does, one component at a
  time from ``/``, following symlinks, and records what ``lstat`` says about
  every directory it looks in, every symlink it follows, and the file it
  reaches (an :class:`Entry` each: path, mode, owner, group, ACL or not);
* :func:`refusals` turns the surveys of one config load into problems.

What is refused (``trusted`` owners are root and the user xdpd runs as):

* a file (YAML or list file) owned by anyone else, or writable by its group
  or by every user;
* the config directory owned by anyone else, or writable by its group or by
  every user: who can add a ``*.yaml`` there writes the config;
* any other directory looked in on the way to a file (``/``, ``/etc``, a
  list file's directory; with symlinks, those on the way to the target too)
  owned by anyone else, or writable by its group or by every user, *unless*
  it has the sticky bit.  In a sticky directory (``/tmp`` is 1777, owned by
  root) only an entry's owner can rename or remove it, so its root-owned
  entries cannot be replaced by others; a squatter's entry would be owned by
  the squatter, and that is refused as the entry's own problem.  sshd is
  stricter (anything but root-owned, non-writable parents), but config dirs
  under ``/tmp`` are what tests and quick trials use, and they are as safe
  as the entries in them, which are checked anyway.  The config directory
  itself gets no such allowance: anyone may *add* files to a sticky
  directory, and every ``*.yaml`` added to the config directory is read;
* a symlink owned by anyone else: only its owner could have created it (or
  root, who would own it), so someone else chose which file xdpd reads.
  A symlink's own mode means nothing on Linux and is not checked; the
  directory it sits in is checked as any other on the way.

An ACL that grants a named user or group write access shows in the group
bits of the mode (they hold the ACL mask), so the mode check covers ACLs;
the message then mentions the ACL, since the owning group may be innocent.

Order and the opt-out
    ``settings: {strict_permissions: false}`` turns the refusal off, but the
    settings are known only after every YAML file was read, and the files may
    disagree (a second ``strict_permissions`` is a duplicate-setting error).
    So every file is surveyed when it is read, and :func:`refusals` decides at
    the end, once the merged settings are known.  The opt-out is believed only
    if the file that states it passes the check itself (the file, the config
    directory and everything on the way to them): otherwise whoever can write
    that file could have written the opt-out, and a check that the checked
    party can switch off protects nothing.  The operator who relaxes
    permissions on purpose keeps the opt-out in a root-only file (the shipped
    ``rules.yaml``) and loosens only what they mean to: a list file, or a
    directory of list files.  An ignored opt-out is a problem of its own, at
    the setting, saying why.

Messages
    ``PATH: [config directory |directory |symlink ]WHAT IS WRONG[, on the way
    to ROLE FILE | , the target of ROLE FILE]: WHY; FIX (or set
    strict_permissions: false)``, for example ``/etc/xdpd/rules.yaml: writable
    by group 'staff' (mode 0664): a user who can write it controls this
    host's firewall; chmod g-w,o-w it (or set strict_permissions: false)``.
    Each unsafe entry is reported once, however many files it leads to.  A
    target that is not a regular file (``/dev/null``, a FIFO) is left to the
    reader, which refuses it in clearer words.

Time of check and time of use: the survey and the read are separate system
calls, so a file could be swapped in between, but only by someone who can
write a directory on the way, which is what the survey refuses.
"""

from __future__ import annotations

import errno
import grp
import os
import pwd
import stat
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass

from xdpd.model import Origin
from xdpd.problems import Problem, show

CONFIG_DIR = "config directory"
CONFIG_FILE = "config file"
LIST_FILE = "list file"

MAX_SYMLINKS = 40
"""Symlinks followed in one lookup before giving up, as the kernel's MAXSYMLINKS."""

OPT_OUT = "or set strict_permissions: false"
_WHY = "controls this host's firewall"


@dataclass(frozen=True)
class Entry:
    """One directory entry as ``lstat`` saw it (a symlink is not followed)."""

    path: str
    mode: int
    """``st_mode``: file type and permission bits."""
    uid: int
    gid: int
    acl: bool = False
    """It has a POSIX access ACL (then the group bits are the ACL mask)."""

    @classmethod
    def of(cls, path: str, st: os.stat_result, acl: bool = False) -> Entry:
        return cls(path, st.st_mode, st.st_uid, st.st_gid, acl)

    @property
    def is_dir(self) -> bool:
        return stat.S_ISDIR(self.mode)

    @property
    def is_link(self) -> bool:
        return stat.S_ISLNK(self.mode)


@dataclass(frozen=True)
class Survey:
    """A file (or the config directory) xdpd reads, and everything that leads to it.

    ``way`` holds, in lookup order and each once, the directories looked in
    and the symlinks followed; ``target`` is what the lookup reached, or None
    if it failed (a missing file, a symlink loop: reading the file reports
    that, in its own words).
    """

    path: str
    """The path as the config names it."""
    role: str
    """:data:`CONFIG_DIR`, :data:`CONFIG_FILE` or :data:`LIST_FILE`."""
    way: tuple[Entry, ...]
    target: Entry | None


@dataclass(frozen=True)
class Names:
    """How uids and gids are shown; the system's databases by default."""

    user: Callable[[int], str | None]
    group: Callable[[int], str | None]


def _user_name(uid: int) -> str | None:
    try:
        return pwd.getpwuid(uid).pw_name
    except (KeyError, OverflowError):
        return None


def _group_name(gid: int) -> str | None:
    try:
        return grp.getgrgid(gid).gr_name
    except (KeyError, OverflowError):
        return None


SYSTEM_NAMES = Names(_user_name, _group_name)


def trusted_owners() -> frozenset[int]:
    """Root, and the user this process runs as (``xdpd check`` by a user on their own files)."""
    return frozenset({0, os.geteuid()})


# --------------------------------------------------------------------------
# Looking paths up


def survey(path: str, role: str) -> Survey:
    """Look ``path`` up as the kernel would and record every entry on the way.

    Only ``lstat``, ``readlink`` and ``listxattr`` are called: nothing is
    opened, so a FIFO or device is surveyed harmlessly (the reader refuses
    it).  A relative ``path`` is taken from the current directory.
    """
    seen: dict[str, Entry] = {}
    try:
        target: Entry | None = _resolve(os.path.abspath(path), seen, [0])
    except OSError:
        target = None
    way = tuple(e for p, e in seen.items() if target is None or p != target.path)
    return Survey(path, role, way, target)


def _resolve(path: str, seen: dict[str, Entry], links: list[int]) -> Entry:
    """The entry ``path`` (absolute) leads to, recording in ``seen`` each one looked at.

    ``..`` is taken after the symlinks before it are resolved, as the kernel
    does (``current`` is always a real path).  ``links`` counts the symlinks
    followed so far, across the recursion, to stop a loop.
    """
    current = _look(os.sep, seen)
    for part in path.split(os.sep):
        if part in ("", "."):
            continue
        if part == "..":
            current = _look(os.path.dirname(current.path), seen)
            continue
        entry = _look(os.path.join(current.path, part), seen)
        if entry.is_link:
            links[0] += 1
            if links[0] > MAX_SYMLINKS:
                raise OSError(errno.ELOOP, os.strerror(errno.ELOOP), path)
            entry = _resolve(os.path.join(current.path, os.readlink(entry.path)), seen, links)
        current = entry
    return current


def _look(path: str, seen: dict[str, Entry]) -> Entry:
    entry = seen.get(path)
    if entry is None:
        entry = seen[path] = Entry.of(path, os.lstat(path), _has_acl(path))
    return entry


def _has_acl(path: str) -> bool:
    try:
        return "system.posix_acl_access" in os.listxattr(path, follow_symlinks=False)
    except OSError:  # no xattr support here: no ACL either
        return False


# --------------------------------------------------------------------------
# Judging


def refusals(
    surveys: Iterable[Survey],
    strict: bool,
    opt_out: Origin | None = None,
    trusted: Collection[int] | None = None,
    names: Names = SYSTEM_NAMES,
) -> list[Problem]:
    """The problems of one config load's surveys, given its merged settings.

    ``strict`` is ``settings.strict_permissions``; when it is false,
    ``opt_out`` is where it was set.  The opt-out is honoured only if the file
    at ``opt_out`` passes the check (see the module's docstring); a file that
    was not surveyed (a text checked with
    :func:`xdpd.config.parse_config_text`) is vouched for by its caller.
    Each unsafe entry is reported once, in the order the surveys met them,
    however many files it leads to.
    """
    surveys = list(surveys)
    trusted = trusted_owners() if trusted is None else frozenset(trusted)
    listed = frozenset(s.target.path for s in surveys if s.role == CONFIG_DIR and s.target is not None)
    problems: dict[str, Problem] = {}
    unsafe: set[str] = set()
    for s in surveys:
        for entry, how in _entries(s, listed):
            faults = _faults(entry, how, trusted)
            if any(faults):
                unsafe.add(s.path)
                if entry.path not in problems:
                    problems[entry.path] = Problem(Origin(entry.path), _message(entry, how, faults, s, trusted, names))
    if not problems or strict:
        return list(problems.values())
    if opt_out is None or opt_out.path not in unsafe:
        return []
    return [*problems.values(), Problem(opt_out, (
        f"strict_permissions: false is ignored: {opt_out.path} is not safe itself (see above), so a "
        f"user other than root could have written this setting; set it in a file that only root can "
        f"write, in a directory only root can write"))]


_FILE, _LISTED_DIR, _DIR_ON_THE_WAY, _LINK = "file", "listed dir", "dir on the way", "link"


def _entries(s: Survey, listed: frozenset[str]) -> Iterable[tuple[Entry, str]]:
    """Each entry of a survey with the rule it is judged by."""
    for entry in s.way:
        if entry.is_link:
            yield entry, _LINK
        else:
            yield entry, _LISTED_DIR if entry.path in listed else _DIR_ON_THE_WAY
    if s.target is None:
        return
    if s.role == CONFIG_DIR or s.target.path in listed:
        yield s.target, _LISTED_DIR
    elif stat.S_ISREG(s.target.mode):
        # Anything else (/dev/null, a FIFO, a directory) is refused by the
        # reader as not a regular file, a clearer message than its mode.
        yield s.target, _FILE


def _faults(entry: Entry, how: str, trusted: frozenset[int]) -> tuple[bool, bool, bool]:
    """(owned by someone else, group-writable, world-writable), as they count under ``how``."""
    owner = entry.uid not in trusted
    if how == _LINK:
        return owner, False, False
    group, other = bool(entry.mode & stat.S_IWGRP), bool(entry.mode & stat.S_IWOTH)
    if how == _DIR_ON_THE_WAY and entry.mode & stat.S_ISVTX:
        group = other = False  # sticky: others cannot replace its entries (checked themselves)
    return owner, group, other


_WHAT = {_FILE: "", _LISTED_DIR: "config directory ", _DIR_ON_THE_WAY: "directory ", _LINK: "symlink "}
_CONSEQUENCE = {
    _FILE: f"a user who can write it {_WHY}",
    _LISTED_DIR: f"a user who can write it can add or replace config files and so {_WHY}",
    _DIR_ON_THE_WAY: f"a user who can write it can replace what is below it and so {_WHY}",
    _LINK: "someone other than root chose which file xdpd reads here",
}


def _message(entry: Entry, how: str, faults: tuple[bool, bool, bool], s: Survey,
             trusted: frozenset[int], names: Names) -> str:
    """``[KIND ]WRONG[, WHERE]: CONSEQUENCE; FIX (or set strict_permissions: false)``."""
    owner, group, other = faults
    wrong: list[str] = []
    fixes: list[str] = []
    if owner:
        wrong.append(f"owned by {_user(entry.uid, names)}, not {_trusted_text(trusted, names)}")
        fixes.append("chown -h root it" if how == _LINK else "chown root it")
    if group or other:
        who = " and ".join(([f"group {_group(entry.gid, names)}"] if group else [])
                           + (["every user"] if other else []))
        acl = " or a user or group its ACL names (see getfacl)" if group and entry.acl else ""
        wrong.append(f"writable by {who}{acl} (mode {stat.S_IMODE(entry.mode):04o})")
        fixes.append(("setfacl -b it and " if group and entry.acl else "") + "chmod g-w,o-w it")
    if entry.path == s.path:
        where = ""
    elif how in (_DIR_ON_THE_WAY, _LINK):
        where = f", on the way to {s.role} {s.path}"
    else:
        where = f", the target of {s.role} {s.path}"
    return f"{_WHAT[how]}{', and '.join(wrong)}{where}: {_CONSEQUENCE[how]}; {' and '.join(fixes)} ({OPT_OUT})"


def _user(uid: int, names: Names) -> str:
    name = names.user(uid)
    return f"user {show(name)} (uid {uid})" if name is not None else f"uid {uid}"


def _group(gid: int, names: Names) -> str:
    name = names.group(gid)
    return show(name) if name is not None else f"gid {gid}"


def _trusted_text(trusted: frozenset[int], names: Names) -> str:
    others = sorted(uid for uid in trusted if uid != 0)
    if not others:
        return "root"
    return "root or " + " or ".join(f"{_user(uid, names)}, whom xdpd runs as" for uid in others)
