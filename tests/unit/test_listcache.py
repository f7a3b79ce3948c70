"""ListCache: re-loading list files after an edit, as fast as the edit is small.

The one property that matters: whatever the versions of the files and the
order of loads, a load through the cache gives exactly what a fresh load
gives, the same AddrSet or the same problems.  The other tests check that
the fast paths are actually taken and that memory stays packed.
"""

from __future__ import annotations

import random
import socket
import tracemalloc
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import xdpd.listcache as listcache
from xdpd.addrlist import load_addr_file
from xdpd.config import load_config
from xdpd.listcache import ListCache, changed_lines, changed_regions
from xdpd.model import AddrSet, Config, Origin
from xdpd.packed import PackedOps
from xdpd.problems import ConfigError, Problem

REF = Origin("/etc/xdpd/rules.yaml", 7, 15)
SPLIT = listcache.SPLIT_ABOVE


def v4(*addrs: str) -> bytes:
    return b"".join(socket.inet_pton(socket.AF_INET, a) for a in addrs)


def fresh(path: Path) -> AddrSet | list[Problem]:
    try:
        return load_addr_file(str(path), REF)
    except ConfigError as exc:
        return exc.problems


def cached(cache: ListCache, path: Path) -> AddrSet | list[Problem]:
    try:
        return cache.load(str(path), REF)
    except ConfigError as exc:
        return exc.problems


def big_list(count: int, seed: int = 1) -> list[bytes]:
    rng = random.Random(seed)
    return [socket.inet_ntoa(rng.getrandbits(32).to_bytes(4, "big")).encode() for _ in range(count)]


@pytest.fixture
def listfile(tmp_path: Path) -> Path:
    return tmp_path / "list.txt"


# --------------------------------------------------------------------------
# The fast paths are taken


def test_unchanged_file_gives_the_same_object(listfile: Path) -> None:
    listfile.write_text("192.0.2.1\n10.0.0.0/8\n")
    cache = ListCache()
    first = cache.load(str(listfile), REF)
    assert cache.last[str(listfile)] == "parsed"
    assert cache.load(str(listfile), REF) is first
    assert cache.last[str(listfile)] == "unchanged"


def test_one_line_edit_of_a_big_file_is_patched(listfile: Path) -> None:
    lines = big_list(50_000)
    listfile.write_bytes(b"\n".join(lines) + b"\n")
    cache = ListCache()
    cache.load(str(listfile), REF)
    for edit in (
        lambda: lines.__setitem__(25_000, b"198.51.100.7"),  # replace
        lambda: lines.insert(10, b"2001:db8::1"),  # insert
        lambda: lines.__delitem__(40_000),  # delete
        lambda: lines.append(b"203.0.113.0/24"),  # append
        lambda: lines.insert(0, b"# header"),  # comment only: same set
    ):
        before = cache.load(str(listfile), REF)
        edit()
        listfile.write_bytes(b"\n".join(lines) + b"\n")
        got = cache.load(str(listfile), REF)
        assert cache.last[str(listfile)] == "patched"
        assert got == fresh(listfile)
    assert got is before  # the comment changed nothing: same object


def test_a_hundred_line_block_is_patched(listfile: Path) -> None:
    lines = big_list(50_000)
    listfile.write_bytes(b"\n".join(lines) + b"\n")
    cache = ListCache()
    cache.load(str(listfile), REF)
    lines[1000:1100] = big_list(100, seed=2)
    listfile.write_bytes(b"\n".join(lines) + b"\n")
    assert cache.load(str(listfile), REF) == fresh(listfile)
    assert cache.last[str(listfile)] == "patched"


def test_edits_far_apart_are_patched(listfile: Path) -> None:
    lines = big_list(10_000)
    listfile.write_bytes(b"\n".join(lines) + b"\n")
    cache = ListCache()
    cache.load(str(listfile), REF)
    lines[0], lines[-1] = b"192.0.2.1", b"192.0.2.2"
    listfile.write_bytes(b"\n".join(lines) + b"\n")
    assert cache.load(str(listfile), REF) == fresh(listfile)
    assert cache.last[str(listfile)] == "patched"


def test_a_hundred_lines_scattered_over_a_big_file_are_patched(listfile: Path, monkeypatch) -> None:
    lines = big_list(200_000)
    listfile.write_bytes(b"\n".join(lines) + b"\n")
    cache = ListCache()
    cache.load(str(listfile), REF)
    parsed: list[int] = []
    real = listcache.parse_lines
    monkeypatch.setattr(listcache, "parse_lines", lambda data, start, end, *a, **k: (
        parsed.append(end - start), real(data, start, end, *a, **k))[1])
    rng = random.Random(3)
    for at, new in zip(sorted(rng.sample(range(len(lines)), 100)), big_list(100, seed=4)):
        lines[at] = new
    del lines[5], lines[150_000]
    lines.insert(70_000, b"2001:db8::7")
    listfile.write_bytes(b"\n".join(lines) + b"\n")
    assert cache.load(str(listfile), REF) == fresh(listfile)
    assert cache.last[str(listfile)] == "patched"
    # Only stretches around the changed lines were parsed, old and new: far
    # less than the 2.8 MB file.
    assert sum(parsed) < 103 * 2 * SPLIT


def test_a_rewritten_file_falls_back_to_a_full_parse(listfile: Path) -> None:
    lines = big_list(10_000)
    listfile.write_bytes(b"\n".join(lines) + b"\n")
    cache = ListCache()
    cache.load(str(listfile), REF)
    lines[::8] = big_list(len(lines[::8]), seed=5)  # changes an eighth of the file: over 1/16
    listfile.write_bytes(b"\n".join(lines) + b"\n")
    assert cache.load(str(listfile), REF) == fresh(listfile)
    assert cache.last[str(listfile)] == "parsed"


def test_too_many_changed_addresses_fall_back(listfile: Path) -> None:
    listfile.write_text("192.0.2.1\n192.0.2.2\n")
    cache = ListCache(max_patch_fraction=100, max_patch_items=1)
    cache.load(str(listfile), REF)
    listfile.write_text("192.0.2.1\n192.0.2.3\n")
    cache.load(str(listfile), REF)  # one removed, one added: 2 > 1
    assert cache.last[str(listfile)] == "parsed"


def test_removed_address_stays_while_another_copy_is_left(listfile: Path) -> None:
    cache = ListCache(max_patch_fraction=100)
    text = "192.0.2.1\n10.0.0.0/8\n192.0.2.1/32\n10.0.0.0/8\n 192.0.2.1 # third\n"
    listfile.write_text(text)
    cache.load(str(listfile), REF)
    for drop in ("192.0.2.1/32\n", " 192.0.2.1 # third\n", "10.0.0.0/8\n"):
        text = text.replace(drop, "", 1)
        listfile.write_text(text)
        assert cache.load(str(listfile), REF) == AddrSet(
            v4_exact=v4("192.0.2.1"), v4_prefixes=((v4("10.0.0.0"), 8),)
        )
        assert cache.last[str(listfile)] == "patched"
    text = text.replace("192.0.2.1\n", "")
    listfile.write_text(text)
    assert cache.load(str(listfile), REF) == AddrSet(v4_prefixes=((v4("10.0.0.0"), 8),))
    assert cache.last[str(listfile)] == "patched"


# --------------------------------------------------------------------------
# Problems after an edit


def test_bad_edit_is_reported_at_its_line_in_the_new_file(listfile: Path) -> None:
    lines = big_list(1000)
    listfile.write_bytes(b"\n".join(lines) + b"\n")
    cache = ListCache()
    good = cache.load(str(listfile), REF)
    lines[500:501] = [b"192.0.2.1", b"192.0.2.300", b"192.0.2.1/24"]
    listfile.write_bytes(b"\n".join(lines) + b"\n")
    with pytest.raises(ConfigError) as exc:
        cache.load(str(listfile), REF)
    assert [str(p) for p in exc.value.problems] == [
        f"{listfile}:502: bad address '192.0.2.300'",
        f"{listfile}:503: bad address '192.0.2.1/24': host bits set; did you mean 192.0.2.0/24?",
    ]
    assert exc.value.problems == fresh(listfile)
    assert cache.last[str(listfile)] == "rejected"
    # Fixing it is compared with the last good version, still a small edit.
    lines[501:503] = [b"192.0.2.3"]
    listfile.write_bytes(b"\n".join(lines) + b"\n")
    assert cache.load(str(listfile), REF) == fresh(listfile) != good
    assert cache.last[str(listfile)] == "patched"


def test_many_bad_lines_in_an_edit_are_capped_as_a_full_parse_caps_them(listfile: Path) -> None:
    lines = big_list(1000)
    listfile.write_bytes(b"\n".join(lines) + b"\n")
    cache = ListCache()
    cache.load(str(listfile), REF)
    lines[100:100] = [b"junk"] * 30
    listfile.write_bytes(b"\n".join(lines) + b"\n")
    with pytest.raises(ConfigError) as exc:
        cache.load(str(listfile), REF)
    assert exc.value.problems == fresh(listfile)
    assert str(exc.value.problems[-1]) == f"{listfile}:121: ... and 10 more bad lines from here on"


@pytest.mark.parametrize(
    ("insert", "message"),
    [
        (b"192.0.2.\xff\n", "not valid UTF-8"),
        (b"# \x00\n", "NUL byte; a list file is UTF-8 text, not binary or UTF-16"),
    ],
)
def test_edit_that_is_not_text(listfile: Path, insert: bytes, message: str) -> None:
    lines = [line + b"\n" for line in big_list(1000)]
    listfile.write_bytes(b"".join(lines))
    cache = ListCache()
    cache.load(str(listfile), REF)
    lines.insert(700, insert)
    listfile.write_bytes(b"".join(lines))
    with pytest.raises(ConfigError) as exc:
        cache.load(str(listfile), REF)
    assert [str(p) for p in exc.value.problems] == [
        f"{listfile}:701: {message} (list file referenced at /etc/xdpd/rules.yaml:7:15)"
    ]
    assert exc.value.problems == fresh(listfile)


def test_missing_file_then_restored(listfile: Path) -> None:
    listfile.write_text("192.0.2.1\n")
    cache = ListCache()
    first = cache.load(str(listfile), REF)
    listfile.unlink()
    with pytest.raises(ConfigError) as exc:
        cache.load(str(listfile), REF)
    assert str(exc.value) == f"/etc/xdpd/rules.yaml:7:15: cannot read list file {listfile}: No such file or directory"
    listfile.mkdir()
    with pytest.raises(ConfigError) as exc:
        cache.load(str(listfile), REF)
    assert str(exc.value) == f"/etc/xdpd/rules.yaml:7:15: list file {listfile} is not a regular file"
    listfile.rmdir()
    listfile.write_text("192.0.2.1\n")
    assert cache.load(str(listfile), REF) is first


def test_bom_and_crlf_edits(listfile: Path) -> None:
    cache = ListCache(max_patch_fraction=100)
    for data in (
        b"192.0.2.1\r\n192.0.2.2\r\n",
        b"\xef\xbb\xbf192.0.2.1\r\n192.0.2.2\r\n",
        b"\xef\xbb\xbf192.0.2.5\r\n192.0.2.2\r\n",
        b"192.0.2.5\r\n192.0.2.2\r\n",
        b"192.0.2.5\r\n192.0.2.2",
        b"192.0.2.5\n192.0.2.2\r",
    ):
        listfile.write_bytes(data)
        assert cached(cache, listfile) == fresh(listfile)


# --------------------------------------------------------------------------
# Memory


def test_a_cached_list_holds_packed_bytes_only(listfile: Path) -> None:
    """No Python object per address: the cache holds the file and packed arrays."""
    count = 100_000
    lines = big_list(count)
    data = b"\n".join(lines) + b"\n"
    listfile.write_bytes(data)
    del lines
    cache = ListCache()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        addrs = cache.load(str(listfile), REF)
        retained = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert len(addrs) > count * 0.99
    # The file, 4 bytes per address, and small change; one bytes object per
    # address would be 33 bytes more each.
    assert retained < len(data) + 4 * count + 100_000
    assert len(data) <= cache.nbytes < len(data) + 4 * count


# --------------------------------------------------------------------------
# Through load_config: unions and forgetting files


RULES = """\
rules:
  - {name: a, action: drop, src: [192.0.2.1, "2001:db8::/32"], src_file: [one.txt, two.txt]}
  - {name: b, action: count, dst_file: two.txt}
"""


def test_union_of_changed_files_is_patched(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "rules.yaml").write_text(RULES)
    one, two = big_list(20_000, seed=1), big_list(20_000, seed=2)
    (tmp_path / "one.txt").write_bytes(b"\n".join(one) + b"\n")
    (tmp_path / "two.txt").write_bytes(b"\n".join(two) + b"\n")
    cache = ListCache()
    assert load_config(tmp_path, cache) == load_config(tmp_path)
    calls = []
    real = listcache.union_all
    monkeypatch.setattr(listcache, "union_all", lambda sets: calls.append(1) or real(sets))
    # An address only in one.txt goes; one also in two.txt stays; a new one comes.
    one[5] = two[7]
    one[6] = b"198.51.100.1"
    two[9] = b"192.0.2.1"
    (tmp_path / "one.txt").write_bytes(b"\n".join(one) + b"\n")
    (tmp_path / "two.txt").write_bytes(b"\n".join(two) + b"\n")
    got = load_config(tmp_path, cache)
    assert calls == []
    monkeypatch.undo()
    assert got == load_config(tmp_path)
    assert cache.last == {str(tmp_path / "one.txt"): "patched", str(tmp_path / "two.txt"): "patched"}


def test_failed_load_keeps_files_and_successful_one_forgets(tmp_path: Path) -> None:
    (tmp_path / "rules.yaml").write_text(RULES)
    (tmp_path / "one.txt").write_text("192.0.2.7\n")
    (tmp_path / "two.txt").write_text("192.0.2.8\n")
    cache = ListCache()
    load_config(tmp_path, cache)
    assert len(cache) == 2
    (tmp_path / "rules.yaml").write_text("rules: [oops\n")
    with pytest.raises(ConfigError):
        load_config(tmp_path, cache)
    assert len(cache) == 2
    (tmp_path / "rules.yaml").write_text("rules: [{name: a, action: drop, src_file: one.txt}]\n")
    load_config(tmp_path, cache)
    assert str(tmp_path / "one.txt") in cache and str(tmp_path / "two.txt") not in cache


# --------------------------------------------------------------------------
# Properties

_GOOD_LINES = st.one_of(
    st.integers(0, 6).map(lambda i: f"192.0.2.{i}".encode()),
    st.integers(0, 6).map(lambda i: f"192.0.2.{i}/32".encode()),
    st.integers(0, 6).map(lambda i: f"  192.0.2.{i}\t# c".encode()),
    st.integers(0, 6).map(lambda i: f"2001:db8::{i}".encode()),
    st.integers(0, 6).map(lambda i: f"2001:DB8:0:0::{i}/128".encode()),
    st.integers(0, 6).map(lambda i: f"::ffff:192.0.2.{i}".encode()),
    st.integers(0, 3).map(lambda i: f"10.{i}.0.0/16".encode()),
    st.integers(0, 3).map(lambda i: f"2001:db8:{i}::/48".encode()),
    st.sampled_from([b"", b"   ", b"# comment", b"\t", "# caf\u00e9".encode()]),
)
_BAD_LINES = st.sampled_from(
    [b"bad", b"192.0.2.1/24", b"192.0.2.256", "\u00e9".encode(), b"\xff", b"# \x00", b"\xef\xbb\xbf192.0.2.1", b"1\r2"]
)
_LINE = st.integers(0, 24).flatmap(lambda n: _BAD_LINES if n == 0 else _GOOD_LINES)
_ENDING = st.sampled_from([b"\n", b"\n", b"\n", b"\r\n"])
_FILE = st.builds(
    lambda lines, last, bom: (b"\xef\xbb\xbf" if bom else b"") + b"".join(map(b"".join, lines)) + last,
    st.one_of(st.lists(st.tuples(_LINE, _ENDING), max_size=25), st.lists(st.tuples(_LINE, _ENDING), max_size=150)),
    st.one_of(st.just(b""), _LINE),
    st.integers(0, 9).map(lambda n: n == 0),
)
_EDIT = st.one_of(
    st.tuples(st.just("lines"), st.integers(0, 160), st.integers(0, 3), st.lists(_LINE, max_size=3), _ENDING),
    st.tuples(st.just("bytes"), st.integers(0, 2400), st.integers(0, 4), st.binary(max_size=4)),
    st.tuples(st.just("chars"), st.integers(0, 2400), st.integers(0, 2), st.text("0123456789.:/#\n \r", max_size=4)),
    st.tuples(st.just("rewrite"), _FILE),
)
_EDITS = st.lists(_EDIT, min_size=1, max_size=12)
"""Edits made together before one load: many of them, anywhere in the file."""


def edit(data: bytes, change: tuple) -> bytes:
    """Apply one edit: replace whole lines, or bytes anywhere, or everything."""
    kind = change[0]
    if kind == "rewrite":
        return change[1]
    if kind == "lines":
        _, at, drop, lines, ending = change
        split = data.splitlines(keepends=True)
        at = min(at, len(split))
        split[at : at + drop] = [line + ending for line in lines]
        return b"".join(split)
    _, at, drop, text = change
    at = min(at, len(data))
    insert = text.encode() if isinstance(text, str) else text
    return data[:at] + insert + data[at + drop :]


_LIMITS = st.tuples(
    st.sampled_from([(100.0, 10**6), (0.3, 10**6), (100.0, 3), (0.0, 10**6)]),
    st.sampled_from([0, 8, 64, SPLIT]),  # split_above: 0 splits every stretch it can
).map(lambda t: (*t[0], t[1]))


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("listcache")


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_FILE, st.lists(_EDITS, min_size=1, max_size=6), _LIMITS)
def test_cached_load_equals_fresh_load(workdir: Path, first: bytes, loads: list[list[tuple]], limits: tuple) -> None:
    """After each batch of edits (one or many, scattered), a load through the cache equals a fresh one."""
    path = workdir / "prop.txt"
    cache = ListCache(max_patch_fraction=limits[0], max_patch_items=limits[1], split_above=limits[2])
    data = first
    for changes in [[], *loads]:
        for change in changes:
            data = edit(data, change)
        path.write_bytes(data)
        assert cached(cache, path) == fresh(path)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(st.tuples(st.sampled_from(["one.txt", "two.txt", "three.txt"]), _EDIT), min_size=1, max_size=6),
    st.lists(st.booleans(), min_size=7, max_size=7),
)
def test_cached_load_config_equals_fresh(workdir: Path, edits: list[tuple[str, tuple]], uses_three: list[bool]) -> None:
    """Several files, unions with inline addresses, files dropped from the config and back."""
    directory = workdir / "config"
    directory.mkdir(exist_ok=True)
    contents = {name: b"192.0.2.1\n10.0.0.0/8\n2001:db8::5\n" for name in ("one.txt", "two.txt", "three.txt")}
    cache = ListCache(max_patch_fraction=100)
    for step, change in enumerate([None, *edits]):
        if change is not None:
            contents[change[0]] = edit(contents[change[0]], change[1])
        for name, data in contents.items():
            (directory / name).write_bytes(data)
        third = ", three.txt" if uses_three[step] else ""
        (directory / "rules.yaml").write_text(
            "rules:\n"
            f"  - {{name: a, action: drop, src: [192.0.2.9, '2001:db8::/32'], src_file: [one.txt, two.txt{third}]}}\n"
            "  - {name: b, action: count, dst_file: [two.txt, one.txt, two.txt]}\n"
            "  - {name: c, action: pass, src_file: three.txt}\n"
        )
        assert _config_or_problems(directory, cache) == _config_or_problems(directory, None)


def _config_or_problems(directory: Path, cache: ListCache | None) -> Config | list[Problem]:
    try:
        return load_config(directory, cache)
    except ConfigError as exc:
        return exc.problems


# --------------------------------------------------------------------------
# The pieces


_AB = st.lists(st.sampled_from([b"a", b"b", b"\n"]), max_size=30).map(b"".join)


@given(_AB, st.lists(st.tuples(st.just("bytes"), st.integers(0, 30), st.integers(0, 3), _AB), max_size=3))
def test_changed_lines_bounds_whole_lines(old: bytes, edits: list[tuple]) -> None:
    new = old
    for change in edits:
        new = edit(new, change)
    start, old_end, new_end = changed_lines(old, new)
    assert 0 <= start <= old_end <= len(old) and start <= new_end <= len(new)
    assert old[:start] == new[:start] and old[old_end:] == new[new_end:]
    for data, pos in ((old, start), (new, start), (old, old_end), (new, new_end)):
        assert pos in (0, len(data)) or data[pos - 1 : pos] == b"\n"


@settings(max_examples=300)
@given(st.lists(st.sampled_from([b"a\n", b"bb\n", b"a", b"\n", b"ccc\n", b"\xef\xbb\xbfa\n"]), max_size=60).map(b"".join),
       st.lists(st.tuples(st.just("bytes"), st.integers(0, 200), st.integers(0, 3), _AB), max_size=8),
       st.sampled_from([0, 4, 64]))
def test_changed_regions_cover_every_difference_in_whole_lines(old: bytes, edits: list[tuple], split: int) -> None:
    new = old
    for change in edits:
        new = edit(new, change)
    regions = changed_regions(old, new, split_above=split)
    assert regions is not None
    o = n = 0
    for o0, o1, n0, n1 in regions:
        assert o <= o0 <= o1 and n <= n0 <= n1
        assert old[o:o0] == new[n:n0]  # equal between the stretches
        for data, pos in ((old, o0), (old, o1), (new, n0), (new, n1)):
            assert pos in (0, len(data)) or data[pos - 1 : pos] == b"\n"
        # A line with a byte order mark does not move to or from the start.
        assert (o0 == 0) == (n0 == 0) or not old.startswith(b"\xef\xbb\xbf", o0)
        o, n = o1, n1
    assert old[o:] == new[n:]
    assert (o == 0) == (n == 0) or not old.startswith(b"\xef\xbb\xbf", o) or o == len(old)


def test_changed_regions_of_scattered_edits_and_the_budget() -> None:
    lines = [f"192.0.2.{i % 250}/32 # line {i}\n".encode() for i in range(2000)]
    old = b"".join(lines)
    lines[10], lines[1000], lines[1990] = b"x\n", b"y\n", b"z\n"
    new = b"".join(lines)
    regions = changed_regions(old, new)
    assert regions is not None and len(regions) == 3
    assert [new[n0:n1] for _, _, n0, n1 in regions] == [b"x\n", b"y\n", b"z\n"]
    assert changed_regions(old, new, budget=50) is None  # 82 bytes of changed lines


def test_changed_lines_of_a_one_line_edit() -> None:
    old = b"a\nbb\nccc\n"
    assert changed_lines(old, b"a\nbx\nccc\n") == (2, 5, 5)
    assert changed_lines(old, b"a\nbb\nnew\nccc\n") == (5, 5, 9)
    assert changed_lines(old, b"a\nccc\n") == (2, 5, 2)
    assert changed_lines(old, old + b"d") == (9, 9, 10)


def items4(values: list[int]) -> bytes:
    return b"".join(v.to_bytes(4, "big") for v in values)


@given(st.lists(st.integers(0, 20)), st.data())
def test_packed_splice_matches_a_sorted_list(values: list[int], data: st.DataObject) -> None:
    values.sort()
    present = sorted(set(values))
    chosen = data.draw(st.sets(st.sampled_from(present))) if present else set()
    removals = {v: data.draw(st.integers(1, values.count(v))) for v in chosen}
    insertions = {
        v: data.draw(st.integers(1, 3)) for v in data.draw(st.sets(st.integers(0, 25))) if v not in removals
    }
    expected = list(values)
    for v, n in removals.items():
        for _ in range(n):
            expected.remove(v)
    for v, n in insertions.items():
        expected += [v] * n
    packed = PackedOps(4)
    got = packed.splice(
        items4(values),
        {items4([v]): n for v, n in removals.items()},
        {items4([v]): n for v, n in insertions.items()},
    )
    assert got == items4(sorted(expected))
    for v in range(26):
        assert packed.count(items4(values), items4([v])) == values.count(v)
        assert packed.contains(items4(values), items4([v])) == (v in values)
