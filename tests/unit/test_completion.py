"""Bash completion (``bash-completion/xdpd``) against xdpd's own parser.

Every verb, ban command and option comes from :func:`xdpd.cli.parser`, so a
verb or option added to the parser without completion (or completed but not
in the parser) fails here.  Completion runs in a real bash with the script
sourced, as bash-completion loads it: ``COMP_WORDS``/``COMP_CWORD`` set as
bash sets them, ``_xdpd`` called, ``COMPREPLY`` printed.
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import stat
import subprocess

import pytest

from xdpd.cli import parser

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCRIPT = os.path.join(REPO_ROOT, "bash-completion", "xdpd")
DIR_OPTIONS = {"--config-dir", "--pin-dir", "--runtime-dir"}


def subcommands(p: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in p._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def commands() -> dict[tuple[str, ...], argparse.ArgumentParser]:
    """Every command line prefix the parser knows: (), ("run",), ..., ("ban", "add"), ..."""
    out: dict[tuple[str, ...], argparse.ArgumentParser] = {}

    def walk(path: tuple[str, ...], p: argparse.ArgumentParser) -> None:
        out[path] = p
        for name, sub in subcommands(p).items():
            walk(path + (name,), sub)

    walk((), parser())
    return out


def long_options(p: argparse.ArgumentParser) -> set[str]:
    return {o for a in p._actions for o in a.option_strings if o.startswith("--")}


def value_options(p: argparse.ArgumentParser) -> set[str]:
    return {o for a in p._actions if a.nargs != 0 for o in a.option_strings if o.startswith("--")}


def positionals(p: argparse.ArgumentParser) -> list[argparse.Action]:
    return [a for a in p._actions if not a.option_strings and not isinstance(a, argparse._SubParsersAction)]


def comp_words(line: str) -> list[str]:
    """``COMP_WORDS`` as bash makes them: words at blanks, and runs of ``=`` or ``:`` words of their own."""
    words = [w for part in line.split() for w in re.findall(r"[=:]+|[^=:]+", part)]
    return words + [""] if line.endswith(" ") else words


def complete(line: str, env: dict[str, str] | None = None) -> list[str]:
    """What bash offers for ``line``, the cursor at its end."""
    words = comp_words(line)
    program = (f"source {shlex.quote(SCRIPT)}\n"
               f"COMP_LINE={shlex.quote(line)}; COMP_POINT=${{#COMP_LINE}}\n"
               f"COMP_WORDS=({' '.join(shlex.quote(w) for w in words)}); COMP_CWORD={len(words) - 1}\n"
               f"_xdpd xdpd {shlex.quote(words[-1])} {shlex.quote(words[-2])}\n"
               'printf "%s\\n" "${COMPREPLY[@]}"\n')
    r = subprocess.run(["bash", "--norc", "--noprofile", "-c", program], capture_output=True, text=True,
                       timeout=30, env={**os.environ, **(env or {})})
    assert r.returncode == 0 and r.stderr == "", r.stderr
    return [w for w in r.stdout.splitlines() if w]


def test_the_script_registers_for_xdpd():
    r = subprocess.run(["bash", "--norc", "--noprofile", "-c", f"source {shlex.quote(SCRIPT)}; complete -p xdpd"],
                       capture_output=True, text=True, timeout=30)
    assert r.stdout.strip() == "complete -F _xdpd xdpd", r


@pytest.mark.parametrize("path", [p for p in commands() if subcommands(commands()[p])],
                         ids=lambda p: " ".join(p) or "xdpd")
def test_every_verb_and_ban_command_is_offered(path):
    words = " ".join(("xdpd",) + path)
    assert set(complete(words + " ")) == set(subcommands(commands()[path]))


@pytest.mark.parametrize("path", list(commands()), ids=lambda p: " ".join(p) or "xdpd")
def test_every_option_of_every_command_is_offered_and_nothing_else(path):
    words = " ".join(("xdpd",) + path)
    p = commands()[path]
    assert set(complete(words + " --")) == long_options(p)
    if not subcommands(p) and not positionals(p):
        assert set(complete(words + " ")) == long_options(p)  # no argument to type: the options


def test_the_options_taking_a_value_are_those_of_the_parser():
    """The script skips the value after such an option when it looks for the verb."""
    want = set().union(*(value_options(p) for p in commands().values()))
    with open(SCRIPT) as f:
        line = next(line for line in f if line.startswith("_xdpd_with_value="))
    assert set(line.split("=", 1)[1].strip().strip('"').split()) == want
    assert DIR_OPTIONS <= want


@pytest.mark.parametrize("line, want", [
    ("xdpd b", ["ban"]),
    ("xdpd ban ", ["add", "del", "list"]),
    ("xdpd ban l", ["list"]),
    ("xdpd status --", ["--help", "--json", "--pin-dir"]),
    ("xdpd status --j", ["--json"]),
    ("xdpd status --json --", ["--help", "--pin-dir"]),           # not twice
    ("xdpd top --pin-dir /sys/fs/bpf --o", ["--once"]),
    ("xdpd top --interval 2 ", ["--help", "--pin-dir", "--once"]),  # 2 is --interval's, not a verb
    ("xdpd ban add 192.0.2.7 --", ["--help", "--for", "--reason", "--pin-dir"]),
    ("xdpd ban add ", []),                                          # any address
    ("xdpd reload --timeout ", []),
    ("xdpd t", ["top"]),
    ("xdpd --v", ["--version"]),
    ("xdpd ban del 2001:db8::1 --", ["--help", "--pin-dir"]),      # one address, though bash split it
    ("xdpd ban del 2001:db8::1 ", ["--help", "--pin-dir"]),
])
def test_completions(line, want):
    assert sorted(complete(line)) == sorted(want)


@pytest.mark.parametrize("option", sorted(DIR_OPTIONS))
@pytest.mark.parametrize("joined", [False, True])
def test_directory_options_complete_directories_only(tmp_path, option, joined):
    (tmp_path / "pins").mkdir()
    (tmp_path / "pinned-file").write_text("")
    (tmp_path / "other").mkdir()
    verb = {"--config-dir": "check", "--pin-dir": "status", "--runtime-dir": "reload"}[option]
    sep = "=" if joined else " "
    assert complete(f"xdpd {verb} {option}{sep}{tmp_path}/p") == [f"{tmp_path}/pins"]


def test_ban_del_offers_the_banned_addresses_of_the_pin_dir_on_the_line(tmp_path):
    """``xdpd ban list --json`` stands in for the real one (which needs root and pins)."""
    fake = tmp_path / "xdpd"
    fake.write_text('#!/bin/sh\n'
                    'echo "$@" > "$(dirname "$0")/args"\n'
                    'cat <<EOF\n[\n  {\n    "address": "192.0.2.7",\n    "expires": null,\n'
                    '    "reason": "",\n    "source": "cli"\n  },\n  {\n'
                    '    "address": "2001:db8:bad::/64",\n    "expires": 1767225600.0,\n'
                    '    "reason": "f2b-sshd",\n    "source": "cli"\n  }\n]\nEOF\n')
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    env = {"PATH": f"{tmp_path}:{os.environ['PATH']}"}
    assert sorted(complete("xdpd ban del ", env)) == ["192.0.2.7", "2001:db8:bad::/64"]
    assert (tmp_path / "args").read_text() == "ban list --json\n"
    assert complete("xdpd ban del --pin-dir /srv/pins 19", env) == ["192.0.2.7"]
    assert (tmp_path / "args").read_text() == "ban list --json --pin-dir /srv/pins\n"
    # bash splits the word at ":"; what it gets back must continue from the last ":"
    assert complete("xdpd ban del 2001:db8:b", env) == ["bad::/64"]
    assert complete("xdpd ban del --pin-dir=/srv/pins 2001:", env) == ["db8:bad::/64"]
    assert (tmp_path / "args").read_text() == "ban list --json --pin-dir /srv/pins\n"
    assert complete("xdpd ban del 192.0.2.7 ", env) == ["--help", "--pin-dir"]


def test_ban_del_offers_nothing_when_the_bans_cannot_be_listed(tmp_path):
    fake = tmp_path / "xdpd"
    fake.write_text("#!/bin/sh\necho 'xdpd ban list: no ban table pinned' >&2\nexit 69\n")
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    assert complete("xdpd ban del ", {"PATH": f"{tmp_path}:{os.environ['PATH']}"}) == []


def test_the_package_installs_it_where_bash_completion_loads_it_on_demand():
    with open(os.path.join(REPO_ROOT, "debian", "xdpd.install")) as f:
        lines = [line.split() for line in f if line.strip()]
    assert ["bash-completion/xdpd", "usr/share/bash-completion/completions/"] in lines

