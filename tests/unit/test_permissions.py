"""strict_permissions: config and list files only root can change (xdpd.permissions).

Real files in ``tmp_path`` with real ``chmod``/``chown`` (the tests that give
a file away to uid 65534 need root and are skipped otherwise).  ``tmp_path``
is ``/tmp/pytest-of-USER/pytest-N/NAME``: 0700 directories under the sticky,
world-writable ``/tmp``, which is accepted on the way (see the module's
docstring); ``safe`` makes the config dir a 0755 one inside it.
"""

from __future__ import annotations

import grp
import os
import stat
from pathlib import Path

import pytest

from xdpd.cli import main as cli_main
from xdpd.config import ConfigError, ListCache, load_config, parse_config_text
from xdpd.exitcodes import EX_CONFIG
from xdpd.model import Origin
from xdpd.permissions import (CONFIG_DIR, CONFIG_FILE, LIST_FILE, Entry, Names, Survey, refusals,
                              survey)

NOBODY = 65534
GROUP = repr(grp.getgrgid(os.getegid()).gr_name)
"""The group new files get here (quoted as messages quote it): root's when run as root."""
root_only = pytest.mark.skipif(os.geteuid() != 0, reason="chown to another user needs root")
OPT_OUT = "(or set strict_permissions: false)"
WHY = "a user who can write it controls this host's firewall"
RULES = "rules:\n  - {name: b, action: drop, src_file: lists/block.txt}\n"


@pytest.fixture
def conf(tmp_path: Path) -> Path:
    """A safe config dir: 0755, root's (ours), with a rules file and a list file in lists/."""
    d = tmp_path / "conf"
    d.mkdir(mode=0o755)
    (d / "lists").mkdir(mode=0o755)
    (d / "lists" / "block.txt").write_text("192.0.2.1\n")
    (d / "rules.yaml").write_text(RULES)
    return d


def problems(conf: Path, cache: ListCache | None = None) -> list[str]:
    """The problems of loading ``conf`` as strings ([] when it loads)."""
    try:
        load_config(conf, cache)
    except ConfigError as e:
        return [str(p) for p in e.problems]
    return []


def opt_out(conf: Path, name: str = "00-settings.yaml") -> Path:
    path = conf / name
    path.write_text("settings: {strict_permissions: false}\n")
    return path


# --------------------------------------------------------------------------- safe


def test_a_safe_config_loads(conf: Path) -> None:
    config = load_config(conf)
    assert [r.name for r in config.rules] == ["b"]


def test_read_only_and_private_modes_are_safe(conf: Path) -> None:
    (conf / "rules.yaml").chmod(0o400)
    (conf / "lists" / "block.txt").chmod(0o600)
    conf.chmod(0o700)
    (conf / "lists").chmod(0o500)
    assert problems(conf) == []


def test_a_sticky_root_owned_world_writable_directory_on_the_way_is_accepted(conf: Path, tmp_path: Path) -> None:
    """Like /tmp: only an entry's owner may replace it there, and the entries are checked."""
    tmp_path.chmod(0o1777)
    (conf / "lists").chmod(0o1777)
    assert problems(conf) == []


# --------------------------------------------------------------------------- YAML files


def test_group_writable_config_file(conf: Path) -> None:
    (conf / "rules.yaml").chmod(0o664)
    assert problems(conf) == [
        f"{conf}/rules.yaml: writable by group {GROUP} (mode 0664): {WHY}; chmod g-w,o-w it {OPT_OUT}"]


def test_world_writable_config_file(conf: Path) -> None:
    (conf / "rules.yaml").chmod(0o646)
    assert problems(conf) == [
        f"{conf}/rules.yaml: writable by every user (mode 0646): {WHY}; chmod g-w,o-w it {OPT_OUT}"]


@root_only
def test_config_file_of_another_user(conf: Path) -> None:
    os.chown(conf / "rules.yaml", NOBODY, -1)
    assert problems(conf) == [
        f"{conf}/rules.yaml: owned by user 'nobody' (uid 65534), not root: {WHY}; chown root it {OPT_OUT}"]


@root_only
def test_owner_and_mode_wrong_are_one_problem(conf: Path) -> None:
    os.chown(conf / "rules.yaml", NOBODY, -1)
    (conf / "rules.yaml").chmod(0o666)
    assert problems(conf) == [
        f"{conf}/rules.yaml: owned by user 'nobody' (uid 65534), not root, and writable by group {GROUP} "
        f"and every user (mode 0666): {WHY}; chown root it and chmod g-w,o-w it {OPT_OUT}"]


def test_every_unsafe_file_is_reported_and_they_come_first(conf: Path) -> None:
    (conf / "rules.yaml").chmod(0o664)
    (conf / "zz.yaml").write_text("rules: [{name: x, action: nope}]\n")
    (conf / "zz.yaml").chmod(0o666)
    got = problems(conf)
    assert [p.split(":")[0] for p in got] == [f"{conf}/rules.yaml", f"{conf}/zz.yaml", f"{conf}/zz.yaml"]
    assert "writable by" in got[1] and "action" in got[2]


def test_hidden_and_other_files_are_not_checked(conf: Path) -> None:
    """Only what is read counts: editor swap files and notes may be anything."""
    for name in (".rules.yaml.swp", "notes.txt", "rules.yaml~"):
        (conf / name).write_text("x\n")
        (conf / name).chmod(0o666)
    assert problems(conf) == []


# --------------------------------------------------------------------------- directories


def test_group_writable_config_dir(conf: Path) -> None:
    conf.chmod(0o775)
    assert problems(conf) == [
        f"{conf}: config directory writable by group {GROUP} (mode 0775): a user who can write it can add "
        f"or replace config files and so controls this host's firewall; chmod g-w,o-w it {OPT_OUT}"]


def test_sticky_does_not_excuse_the_config_dir(conf: Path) -> None:
    """Anyone may add files to a sticky directory, and every *.yaml there is read."""
    conf.chmod(0o1777)
    assert problems(conf) == [
        f"{conf}: config directory writable by group {GROUP} and every user (mode 1777): a user who can "
        f"write it can add or replace config files and so controls this host's firewall; "
        f"chmod g-w,o-w it {OPT_OUT}"]


def test_writable_directory_above_the_config_dir(conf: Path, tmp_path: Path) -> None:
    tmp_path.chmod(0o777)
    got = problems(conf)
    assert got == [
        f"{tmp_path}: directory writable by group {GROUP} and every user (mode 0777), on the way to "
        f"config directory {conf}: a user who can write it can replace what is below it and so controls "
        f"this host's firewall; chmod g-w,o-w it {OPT_OUT}"]


@root_only
def test_directory_above_owned_by_another_user_even_sticky(conf: Path, tmp_path: Path) -> None:
    """Sticky protects entries from others, not from the directory's owner."""
    os.chown(tmp_path, NOBODY, -1)
    tmp_path.chmod(0o1777)
    got = problems(conf)
    assert len(got) == 1
    assert got[0].startswith(f"{tmp_path}: directory owned by user 'nobody' (uid 65534), not root, on the way")
    assert got[0].endswith(f"chown root it {OPT_OUT}")


@root_only
def test_config_dir_of_another_user(conf: Path) -> None:
    os.chown(conf, NOBODY, -1)
    assert problems(conf)[0].startswith(f"{conf}: config directory owned by user 'nobody' (uid 65534), not root:")


# --------------------------------------------------------------------------- symlinks


def test_symlink_to_an_unsafe_file_names_the_target(conf: Path, tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir(mode=0o755)
    (elsewhere / "rules.yaml").write_text(RULES.replace("lists/", f"{conf}/lists/"))
    (conf / "rules.yaml").unlink()
    (conf / "rules.yaml").symlink_to("../elsewhere/rules.yaml")
    assert problems(conf) == []
    (elsewhere / "rules.yaml").chmod(0o664)
    assert problems(conf) == [
        f"{elsewhere}/rules.yaml: writable by group {GROUP} (mode 0664), the target of config file "
        f"{conf}/rules.yaml: {WHY}; chmod g-w,o-w it {OPT_OUT}"]


def test_symlink_into_a_writable_directory(conf: Path, tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir(mode=0o777)
    shared.chmod(0o777)
    (shared / "block.txt").write_text("192.0.2.2\n")
    (conf / "lists" / "block.txt").unlink()
    (conf / "lists" / "block.txt").symlink_to(shared / "block.txt")
    got = problems(conf)
    assert len(got) == 1
    assert got[0].startswith(f"{shared}: directory writable by group {GROUP} and every user (mode 0777), "
                             f"on the way to list file {conf}/lists/block.txt:")


def test_symlink_sitting_in_a_writable_directory(conf: Path, tmp_path: Path) -> None:
    """The link can be replaced by whoever can write its directory, wherever it points."""
    (conf / "lists").chmod(0o777)
    (conf / "lists" / "block.txt").rename(tmp_path / "block.txt")
    (conf / "lists" / "block.txt").symlink_to(tmp_path / "block.txt")
    got = problems(conf)
    assert len(got) == 1 and got[0].startswith(f"{conf}/lists: directory writable by group {GROUP} and every user")


@root_only
def test_symlink_owned_by_another_user(conf: Path, tmp_path: Path) -> None:
    (conf / "rules.yaml").rename(tmp_path / "real.yaml")
    (tmp_path / "real.yaml").write_text(RULES.replace("lists/", f"{conf}/lists/"))
    (conf / "rules.yaml").symlink_to(tmp_path / "real.yaml")
    os.chown(conf / "rules.yaml", NOBODY, -1, follow_symlinks=False)
    assert problems(conf) == [
        f"{conf}/rules.yaml: symlink owned by user 'nobody' (uid 65534), not root: someone other than root "
        f"chose which file xdpd reads here; chown -h root it {OPT_OUT}"]


@root_only
def test_symlinked_config_dir_checks_the_link_and_the_real_dir(conf: Path, tmp_path: Path) -> None:
    link = tmp_path / "conf-link"
    link.symlink_to(conf)
    assert problems(link) == []
    os.chown(link, NOBODY, -1, follow_symlinks=False)
    conf.chmod(0o775)
    got = problems(link)
    assert [p.split(": ")[0] for p in got] == [str(link), str(conf)]
    assert got[0].startswith(f"{link}: symlink owned by user 'nobody'")
    assert got[1].startswith(f"{conf}: config directory writable by group {GROUP} (mode 0775), the target of "
                             f"config directory {link}:")


# --------------------------------------------------------------------------- list files


def test_unsafe_list_file(conf: Path) -> None:
    (conf / "lists" / "block.txt").chmod(0o666)
    assert problems(conf) == [
        f"{conf}/lists/block.txt: writable by group {GROUP} and every user (mode 0666): {WHY}; "
        f"chmod g-w,o-w it {OPT_OUT}"]


@root_only
def test_list_file_of_another_user_named_by_parse_config_text(conf: Path) -> None:
    """A text checked on its own is the caller's to vouch for; the list files it names are not."""
    os.chown(conf / "lists" / "block.txt", NOBODY, -1)
    with pytest.raises(ConfigError) as e:
        parse_config_text(RULES, str(conf / "rules.yaml"))
    assert [str(p).split(": ")[0] for p in e.value.problems] == [f"{conf}/lists/block.txt"]


def test_list_file_in_a_group_writable_directory(conf: Path) -> None:
    (conf / "lists").chmod(0o775)
    got = problems(conf)
    assert len(got) == 1 and got[0].startswith(f"{conf}/lists: directory writable by group {GROUP} (mode 0775), "
                                                f"on the way to list file {conf}/lists/block.txt:")


def test_a_list_file_used_by_many_rules_is_reported_once(conf: Path) -> None:
    (conf / "more.yaml").write_text("rules:\n  - {name: c, action: drop, dst_file: lists/block.txt}\n")
    (conf / "lists" / "block.txt").chmod(0o664)
    assert len(problems(conf)) == 1


def test_missing_list_file_in_an_unsafe_directory_reports_both(conf: Path) -> None:
    (conf / "lists" / "block.txt").unlink()
    (conf / "lists").chmod(0o777)
    got = problems(conf)
    assert got[0].startswith(f"{conf}/lists: directory writable")
    assert "cannot read list file" in got[1]


def test_not_a_regular_file_is_left_to_the_reader(conf: Path) -> None:
    (conf / "rules.yaml").write_text("rules: [{name: n, action: drop, src_file: /dev/null}]\n")
    got = problems(conf)
    assert len(got) == 1 and "is not a regular file" in got[0]


def test_list_cache_does_not_spare_an_unchanged_file(conf: Path) -> None:
    """A chmod changes no byte: the cache says 'unchanged', the check still refuses."""
    cache = ListCache()
    block = str(conf / "lists" / "block.txt")
    load_config(conf, cache)
    (conf / "lists" / "block.txt").chmod(0o664)
    got = problems(conf, cache)
    assert len(got) == 1 and got[0].startswith(f"{block}: writable by group")
    assert cache.last[block] == "unchanged"
    (conf / "lists" / "block.txt").chmod(0o644)
    assert problems(conf, cache) == []
    assert cache.last[block] == "unchanged"


# --------------------------------------------------------------------------- the opt-out


def test_opt_out_accepts_every_unsafe_case(conf: Path, tmp_path: Path) -> None:
    """Everything but the opt-out's own file (and the config dir above it) may be unsafe."""
    opt_out(conf)
    (conf / "rules.yaml").chmod(0o666)
    (conf / "lists").chmod(0o777)
    (conf / "lists" / "block.txt").chmod(0o666)
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    (shared / "more.txt").write_text("192.0.2.3\n")
    (conf / "lists" / "more.txt").symlink_to(shared / "more.txt")
    (conf / "more.yaml").write_text("rules: [{name: m, action: drop, src_file: lists/more.txt}]\n")
    if os.geteuid() == 0:
        os.chown(conf / "lists" / "block.txt", NOBODY, -1)
        os.chown(conf / "lists" / "more.txt", NOBODY, -1, follow_symlinks=False)
    assert problems(conf) == []
    assert load_config(conf).settings.strict_permissions is False


def test_strict_permissions_true_is_the_default_stated(conf: Path) -> None:
    (conf / "00-settings.yaml").write_text("settings: {strict_permissions: true}\n")
    (conf / "rules.yaml").chmod(0o664)
    assert len(problems(conf)) == 1


def test_opt_out_from_an_unsafe_file_is_ignored(conf: Path) -> None:
    """Whoever can write that file could have written the opt-out: it cannot switch off the check."""
    settings = opt_out(conf)
    settings.chmod(0o666)
    (conf / "rules.yaml").chmod(0o664)
    got = problems(conf)
    assert got[0].startswith(f"{settings}: writable by group {GROUP} and every user (mode 0666)")
    assert got[1].startswith(f"{conf}/rules.yaml: writable by group {GROUP} (mode 0664)")
    assert got[2] == (
        f"{settings}:1:12: strict_permissions: false is ignored: {settings} is not safe itself (see above), "
        f"so a user other than root could have written this setting; set it in a file that only root can "
        f"write, in a directory only root can write")
    assert len(got) == 3


def test_opt_out_in_an_unsafe_config_dir_is_ignored(conf: Path) -> None:
    opt_out(conf)
    conf.chmod(0o775)
    got = problems(conf)
    assert got[0].startswith(f"{conf}: config directory writable")
    assert "strict_permissions: false is ignored" in got[1]


def test_opt_out_from_a_safe_file_accepts_an_unsafe_other_file(conf: Path) -> None:
    opt_out(conf)
    (conf / "zz.yaml").write_text("rules: []\n")
    (conf / "zz.yaml").chmod(0o666)
    assert problems(conf) == []


# --------------------------------------------------------------------------- xdpd check


def test_xdpd_check_reports_and_exits_78(conf: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (conf / "rules.yaml").chmod(0o664)
    assert cli_main(["check", "--config-dir", str(conf)]) == EX_CONFIG
    err = capsys.readouterr().err
    assert f"{conf}/rules.yaml: writable by group {GROUP} (mode 0664)" in err
    assert "1 problem(s)" in err


# --------------------------------------------------------------------------- survey


def test_survey_follows_relative_links_and_dotdot_like_the_kernel(tmp_path: Path) -> None:
    (tmp_path / "a" / "b").mkdir(parents=True)
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "f").write_text("x")
    (tmp_path / "a" / "b" / "up").symlink_to("..")           # a/b/up -> a
    # a/b/up/.. is tmp_path (a string normaliser would say a/b): the kernel's reading.
    (tmp_path / "a" / "link").symlink_to("b/up/../c/f")
    s = survey(str(tmp_path / "a" / "link"), LIST_FILE)
    assert s.target is not None and s.target.path == str(tmp_path / "c" / "f")
    paths = [e.path for e in s.way]
    assert paths[0] == "/" and len(paths) == len(set(paths))
    assert {str(tmp_path / "a" / "link"), str(tmp_path / "a" / "b" / "up"), str(tmp_path / "c")} <= set(paths)
    assert [e.path for e in s.way if e.is_link] == [str(tmp_path / "a" / "link"), str(tmp_path / "a" / "b" / "up")]


def test_survey_of_a_loop_or_a_missing_file_has_no_target(tmp_path: Path) -> None:
    (tmp_path / "loop").symlink_to("loop")
    assert survey(str(tmp_path / "loop"), LIST_FILE).target is None
    missing = survey(str(tmp_path / "nope" / "x"), LIST_FILE)
    assert missing.target is None and missing.way[-1].path == str(tmp_path)


# --------------------------------------------------------------------------- judging, as data

NAMES = Names(user=lambda uid: {0: "root", 1000: "alice"}.get(uid), group=lambda gid: None)
DIR, FILE, LINK = stat.S_IFDIR, stat.S_IFREG, stat.S_IFLNK


def entry(path: str, kind: int, mode: int, uid: int = 0, gid: int = 0, acl: bool = False) -> Entry:
    return Entry(path, kind | mode, uid, gid, acl)


def file_survey(target: Entry, role: str = CONFIG_FILE) -> Survey:
    return Survey(target.path, role, (entry("/", DIR, 0o755), entry("/etc", DIR, 0o755)), target)


def test_the_daemons_own_user_is_trusted_too() -> None:
    """xdpd check run by alice on alice's files: her files are as safe as root's."""
    s = file_survey(entry("/etc/r.yaml", FILE, 0o644, uid=1000))
    assert refusals([s], strict=True, trusted={0, 1000}, names=NAMES) == []
    [p] = refusals([file_survey(entry("/etc/r.yaml", FILE, 0o644, uid=2000))], strict=True, trusted={0, 1000},
                   names=NAMES)
    assert p.message.startswith("owned by uid 2000, not root or user 'alice' (uid 1000), whom xdpd runs as:")


def test_unknown_group_and_acl_are_named() -> None:
    [p] = refusals([file_survey(entry("/etc/r.yaml", FILE, 0o664, gid=4242, acl=True))], strict=True,
                   trusted={0}, names=NAMES)
    assert p.message == (
        f"writable by group gid 4242 or a user or group its ACL names (see getfacl) (mode 0664): {WHY}; "
        f"setfacl -b it and chmod g-w,o-w it {OPT_OUT}")


def test_a_link_is_judged_by_its_owner_only() -> None:
    s = Survey("/etc/r.yaml", CONFIG_FILE, (entry("/", DIR, 0o755), entry("/etc", DIR, 0o755),
                                           entry("/etc/r.yaml", LINK, 0o777)), entry("/srv/r.yaml", FILE, 0o644))
    assert refusals([s], strict=True, trusted={0}, names=NAMES) == []


def test_a_config_dir_met_on_the_way_before_its_own_survey_is_still_strict() -> None:
    """The config dir is judged strictly wherever it appears (sticky does not excuse it)."""
    conf = entry("/etc/xdpd", DIR, 0o1777)
    yaml = Survey("/etc/xdpd/r.yaml", CONFIG_FILE, (entry("/", DIR, 0o755), conf),
                  entry("/etc/xdpd/r.yaml", FILE, 0o644))
    whole = Survey("/etc/xdpd", CONFIG_DIR, (entry("/", DIR, 0o755),), conf)
    [p] = refusals([yaml, whole], strict=True, trusted={0}, names=NAMES)
    assert p.origin == Origin("/etc/xdpd") and p.message.startswith("config directory writable")
    settings = Origin("/etc/xdpd/r.yaml", 1, 12)
    assert len(refusals([yaml, whole], strict=False, opt_out=settings, trusted={0}, names=NAMES)) == 2
