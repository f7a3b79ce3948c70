"""Address lists: inline items and list files, as a user sees them."""

from __future__ import annotations

import ipaddress
import os
import random
import socket
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from xdpd.addrlist import MAX_BAD_LINES, load_addr_file, parse_addr_items, union
from xdpd.model import AddrSet, Origin
from xdpd.packed import sorted_unique, sorted_unique_v4
from xdpd.problems import ConfigError, Problem

REF = Origin("/etc/xdpd/rules.yaml", 7, 15)


def v4(*addrs: str) -> bytes:
    return b"".join(socket.inet_pton(socket.AF_INET, a) for a in addrs)


def v6(*addrs: str) -> bytes:
    return b"".join(socket.inet_pton(socket.AF_INET6, a) for a in addrs)


def items(*texts: str) -> list[tuple[str, Origin]]:
    """Items as if written on consecutive lines of rules.yaml, column 9."""
    return [(text, Origin("rules.yaml", i, 9)) for i, text in enumerate(texts, 1)]


def messages(exc: pytest.ExceptionInfo[ConfigError]) -> list[str]:
    return str(exc.value).splitlines()


def write(tmp_path: Path, text: str | bytes, name: str = "list.txt") -> str:
    path = tmp_path / name
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return str(path)


# --------------------------------------------------------------------------
# Inline items


def test_items_sorted_and_split_by_family_and_prefix() -> None:
    got = parse_addr_items(
        items(
            "198.51.100.7",
            "192.0.2.0/24",
            "2001:db8:bad::/48",
            "10.0.0.1",
            "2001:db8::1",
            "203.0.113.9/32",
            "2001:db8::2/128",
            "0.0.0.0/0",
        )
    )
    assert got.v4_exact == v4("10.0.0.1", "198.51.100.7", "203.0.113.9")
    assert got.v6_exact == v6("2001:db8::1", "2001:db8::2")
    assert got.v4_prefixes == ((v4("0.0.0.0"), 0), (v4("192.0.2.0"), 24))
    assert got.v6_prefixes == ((v6("2001:db8:bad::"), 48),)
    assert len(got) == 8


def test_items_duplicates_are_merged() -> None:
    got = parse_addr_items(items("10.0.0.1", "10.0.0.1/32", " 10.0.0.1 ", "10.0.0.0/8", "10.0.0.0/8"))
    assert got == AddrSet(v4_exact=v4("10.0.0.1"), v4_prefixes=((v4("10.0.0.0"), 8),))


def test_items_host_bits_suggest_the_network() -> None:
    with pytest.raises(ConfigError) as exc:
        parse_addr_items(items("192.0.2.0/24", "192.0.2.1/24", "2001:db8::1/64"))
    assert messages(exc) == [
        "rules.yaml:2:9: bad address '192.0.2.1/24': host bits set; did you mean 192.0.2.0/24?",
        "rules.yaml:3:9: bad address '2001:db8::1/64': host bits set; did you mean 2001:db8::/64?",
    ]


@pytest.mark.parametrize(
    "text",
    ["192.0.2", "192.0.2.256", "192.0.2.0/33", "2001:db8::/129", "example.com", "1.2.3.4/", "01.2.3.4", "5", ""],
)
def test_items_bad_address(text: str) -> None:
    with pytest.raises(ConfigError) as exc:
        parse_addr_items(items("10.0.0.1", text))
    assert messages(exc) == [f"rules.yaml:2:9: bad address '{text}'"]


def test_items_scope_id_is_refused() -> None:
    with pytest.raises(ConfigError) as exc:
        parse_addr_items(items("fe80::1%eth0"))
    assert messages(exc) == ["rules.yaml:1:9: bad address 'fe80::1%eth0': scope ids are not supported"]


def test_items_every_bad_item_is_reported() -> None:
    with pytest.raises(ConfigError) as exc:
        parse_addr_items(items("x", "10.0.0.1", "y"))
    assert [str(p.origin) for p in exc.value.problems] == ["rules.yaml:1:9", "rules.yaml:3:9"]


def test_long_bad_text_is_shortened() -> None:
    with pytest.raises(ConfigError) as exc:
        parse_addr_items(items("x" * 500))
    assert messages(exc) == ["rules.yaml:1:9: bad address '" + "x" * 60 + "...'"]


# --------------------------------------------------------------------------
# union and sorting


def test_union_merges_and_deduplicates() -> None:
    a = parse_addr_items(items("10.0.0.2", "10.0.0.0/8", "2001:db8::2"))
    b = parse_addr_items(items("10.0.0.1", "10.0.0.2", "10.0.0.0/8", "2001:db8::/32", "2001:db8::1"))
    got = union(a, b)
    assert got.v4_exact == v4("10.0.0.1", "10.0.0.2")
    assert got.v6_exact == v6("2001:db8::1", "2001:db8::2")
    assert got.v4_prefixes == ((v4("10.0.0.0"), 8),)
    assert got.v6_prefixes == ((v6("2001:db8::"), 32),)
    assert union(a, AddrSet()) == a
    assert union(AddrSet(), b) == b


@given(st.lists(st.integers(0, 2**32 - 1)))
def test_sorted_unique_v4_matches_reference(values: list[int]) -> None:
    packed = b"".join(v.to_bytes(4, "big") for v in values)
    expected = b"".join(v.to_bytes(4, "big") for v in sorted(set(values)))
    assert sorted_unique_v4(packed) == expected
    assert sorted_unique(packed, 4) == expected


@given(st.lists(st.binary(min_size=16, max_size=16)))
def test_sorted_unique_v6_matches_reference(values: list[bytes]) -> None:
    assert sorted_unique(b"".join(values), 16) == b"".join(sorted(set(values)))


# --------------------------------------------------------------------------
# List files


def test_file_with_comments_blanks_and_whitespace(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "# block list\n"
        "\n"
        "   192.0.2.7   \n"
        "\t198.51.100.0/24\t# trailing comment\n"
        "2001:db8::1 # v6 host\n"
        "2001:db8:bad::/48\n"
        "   # indented comment\n"
        "192.0.2.7\n"
        "10.1.2.3#no space before comment\n",
    )
    got = load_addr_file(path, REF)
    assert got.v4_exact == v4("10.1.2.3", "192.0.2.7")
    assert got.v6_exact == v6("2001:db8::1")
    assert got.v4_prefixes == ((v4("198.51.100.0"), 24),)
    assert got.v6_prefixes == ((v6("2001:db8:bad::"), 48),)


def test_file_crlf_line_endings(tmp_path: Path) -> None:
    path = write(tmp_path, b"192.0.2.1\r\n192.0.2.0/30\r\n\r\n# x\r\n2001:db8::5\r\nbad\r\n")
    with pytest.raises(ConfigError) as exc:
        load_addr_file(path, REF)
    assert messages(exc) == [f"{path}:6: bad address 'bad'"]
    write(tmp_path, b"192.0.2.1\r\n192.0.2.0/30\r\n\r\n# x\r\n2001:db8::5\r\n")
    got = load_addr_file(path, REF)
    assert got.v4_exact == v4("192.0.2.1")
    assert got.v4_prefixes == ((v4("192.0.2.0"), 30),)
    assert got.v6_exact == v6("2001:db8::5")


def test_file_utf8_bom_is_allowed(tmp_path: Path) -> None:
    path = write(tmp_path, b"\xef\xbb\xbf192.0.2.1\n")
    assert load_addr_file(path, REF).v4_exact == v4("192.0.2.1")


def test_file_empty_or_only_comments_is_an_empty_set(tmp_path: Path) -> None:
    assert load_addr_file(write(tmp_path, ""), REF) == AddrSet()
    assert load_addr_file(write(tmp_path, "# nothing yet\n\n"), REF) == AddrSet()


def test_file_without_final_newline(tmp_path: Path) -> None:
    assert load_addr_file(write(tmp_path, "192.0.2.1\n192.0.2.2"), REF).v4_exact == v4("192.0.2.1", "192.0.2.2")


def test_file_bad_lines_are_file_line(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "192.0.2.1\n"
        "192.0.2.300\n"
        "# fine\n"
        "192.0.2.1/24   # host bits\n"
        "2001:db8::zz\n"
        "2001:db8::1/64\n"
        "192.0.2.1 192.0.2.2\n"
        "fe80::1%eth0\n"
        "cr\ronly\n",
    )
    with pytest.raises(ConfigError) as exc:
        load_addr_file(path, REF)
    assert messages(exc) == [
        f"{path}:2: bad address '192.0.2.300'",
        f"{path}:4: bad address '192.0.2.1/24': host bits set; did you mean 192.0.2.0/24?",
        f"{path}:5: bad address '2001:db8::zz'",
        f"{path}:6: bad address '2001:db8::1/64': host bits set; did you mean 2001:db8::/64?",
        f"{path}:7: bad address '192.0.2.1 192.0.2.2'",
        f"{path}:8: bad address 'fe80::1%eth0': scope ids are not supported",
        # Lines end at \n only (as for grep -n and wc -l); a lone \r is shown escaped.
        f"{path}:9: bad address 'cr\\ronly'",
    ]
    assert exc.value.problems[0] == Problem(Origin(path, 2), "bad address '192.0.2.300'")


def test_file_bad_lines_are_capped(tmp_path: Path) -> None:
    path = write(tmp_path, "192.0.2.1\n" + "junk\n" * 50)
    with pytest.raises(ConfigError) as exc:
        load_addr_file(path, REF)
    lines = messages(exc)
    assert len(lines) == MAX_BAD_LINES + 1 == 21
    assert lines[0] == f"{path}:2: bad address 'junk'"
    assert lines[19] == f"{path}:21: bad address 'junk'"
    assert lines[20] == f"{path}:22: ... and 30 more bad lines from here on"


def test_missing_file_names_file_and_reference(tmp_path: Path) -> None:
    path = str(tmp_path / "nope.txt")
    with pytest.raises(ConfigError) as exc:
        load_addr_file(path, REF)
    assert messages(exc) == [f"/etc/xdpd/rules.yaml:7:15: cannot read list file {path}: No such file or directory"]


def test_directory_is_not_a_list_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as exc:
        load_addr_file(str(tmp_path), REF)
    assert messages(exc) == [f"/etc/xdpd/rules.yaml:7:15: list file {tmp_path} is not a regular file"]


def test_fifo_is_refused_without_blocking(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    with pytest.raises(ConfigError) as exc:
        load_addr_file(str(fifo), REF)
    assert messages(exc) == [f"/etc/xdpd/rules.yaml:7:15: list file {fifo} is not a regular file"]


def test_not_utf8_names_line_and_reference(tmp_path: Path) -> None:
    # Past the first decoding chunk, to check the line is of the whole file.
    path = write(tmp_path, b"192.0.2.1\n" * 20000 + b"\xff\xfe\n")
    with pytest.raises(ConfigError) as exc:
        load_addr_file(path, REF)
    assert messages(exc) == [f"{path}:20001: not valid UTF-8 (list file referenced at /etc/xdpd/rules.yaml:7:15)"]


def test_fast_and_slow_paths_agree_with_ipaddress(tmp_path: Path) -> None:
    rng = random.Random(7)
    v4s = [str(ipaddress.IPv4Address(rng.getrandbits(32))) for _ in range(300)]
    v6s = [str(ipaddress.IPv6Address(rng.getrandbits(128))) for _ in range(300)]
    mapped = ["::ffff:192.0.2.1", "::", "::1", "1:2:3:4:5:6:7:8"]
    path = write(tmp_path, "\n".join(v4s + v6s + mapped) + "\n")
    got = load_addr_file(path, REF)
    assert got == parse_addr_items(items(*v4s, *v6s, *mapped))
    assert len(got) == len(set(v4s)) + len(set(v6s)) + len(mapped)


def test_million_lines_is_routine(tmp_path: Path) -> None:
    """A million-line list loads completely and packed (its time is in `make bench`)."""
    rng = random.Random(1)
    values = [rng.getrandbits(32) for _ in range(1_000_000)]
    path = tmp_path / "big.txt"
    with open(path, "w", encoding="ascii") as stream:
        stream.writelines(socket.inet_ntoa(v.to_bytes(4, "big")) + "\n" for v in values)
    got = load_addr_file(str(path), REF)
    unique = sorted(set(values))
    assert len(got) == len(unique)
    assert got.v4_exact[:8] == b"".join(v.to_bytes(4, "big") for v in unique[:2])
    assert got.v4_exact[-4:] == unique[-1].to_bytes(4, "big")


def test_nul_byte_means_not_a_text_file(tmp_path: Path) -> None:
    # Also in a comment: a NUL is never a typo in a text file.
    path = write(tmp_path, b"192.0.2.1\n192.0.2.2 # \x00\n192.0.2.3\n")
    with pytest.raises(ConfigError) as exc:
        load_addr_file(path, REF)
    assert messages(exc) == [
        f"{path}:2: NUL byte; a list file is UTF-8 text, not binary or UTF-16 "
        "(list file referenced at /etc/xdpd/rules.yaml:7:15)"
    ]


def test_utf16_file_is_refused_at_once(tmp_path: Path) -> None:
    path = write(tmp_path, "192.0.2.1\n192.0.2.2\n".encode("utf-16-le"))
    with pytest.raises(ConfigError) as exc:
        load_addr_file(path, REF)
    assert [p.origin for p in exc.value.problems] == [Origin(path, 1)]
    assert "NUL byte" in messages(exc)[0]


def test_first_offending_byte_is_reported(tmp_path: Path) -> None:
    path = write(tmp_path, b"192.0.2.1\n\xff\n\x00\n")
    with pytest.raises(ConfigError) as exc:
        load_addr_file(path, REF)
    assert messages(exc) == [f"{path}:2: not valid UTF-8 (list file referenced at /etc/xdpd/rules.yaml:7:15)"]
    path = write(tmp_path, b"192.0.2.1\n\x00\xff\n")
    with pytest.raises(ConfigError) as exc:
        load_addr_file(path, REF)
    assert messages(exc)[0].startswith(f"{path}:2: NUL byte")


def test_not_text_hides_bad_lines(tmp_path: Path) -> None:
    """A binary file gives one problem, not twenty lines of junk."""
    path = write(tmp_path, b"junk\n" * 30 + b"\x89PNG\r\n\x1a\n")
    with pytest.raises(ConfigError) as exc:
        load_addr_file(path, REF)
    assert messages(exc) == [f"{path}:31: not valid UTF-8 (list file referenced at /etc/xdpd/rules.yaml:7:15)"]


def test_permission_denied_names_reference(tmp_path: Path) -> None:
    path = write(tmp_path, "192.0.2.1\n")
    os.chmod(path, 0)
    with _unprivileged():
        with pytest.raises(ConfigError) as exc:
            load_addr_file(path, REF)
    assert messages(exc) == [f"/etc/xdpd/rules.yaml:7:15: cannot read list file {path}: Permission denied"]


class _unprivileged:
    """Drop the effective uid while root (the tests may run as root), so file
    permissions apply; a no-op otherwise."""

    def __enter__(self) -> None:
        self.was_root = os.geteuid() == 0
        if self.was_root:
            os.seteuid(65534)

    def __exit__(self, *exc: object) -> None:
        if self.was_root:
            os.seteuid(0)


def test_blocks_boundaries_keep_line_numbers(tmp_path: Path) -> None:
    """Big files are decoded a block at a time; lines across blocks still count."""
    line = b"192.0.2.1\n"
    count = (3 << 20) // len(line)  # three 1 MiB blocks
    data = line * count + b"bad\n" + line * 10 + b"\xff\n"
    path = write(tmp_path, data[:-2] + b"\n")
    with pytest.raises(ConfigError) as exc:
        load_addr_file(path, REF)
    assert messages(exc) == [f"{path}:{count + 1}: bad address 'bad'"]
    path = write(tmp_path, data)
    with pytest.raises(ConfigError) as exc:
        load_addr_file(path, REF)
    assert messages(exc)[0].startswith(f"{path}:{count + 12}: not valid UTF-8")


def test_one_long_line_without_newlines(tmp_path: Path) -> None:
    path = write(tmp_path, b"1" * (3 << 20))
    with pytest.raises(ConfigError) as exc:
        load_addr_file(path, REF)
    assert messages(exc) == [f"{path}:1: bad address '" + "1" * 60 + "...'"]


def test_bom_only_at_the_start(tmp_path: Path) -> None:
    path = write(tmp_path, b"\xef\xbb\xbf192.0.2.1\n\xef\xbb\xbf192.0.2.2\n")
    with pytest.raises(ConfigError) as exc:
        load_addr_file(path, REF)
    assert messages(exc) == [f"{path}:2: bad address '\\ufeff192.0.2.2'"]


def test_duplicates_in_every_spelling_are_one_address(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "192.0.2.1\n192.0.2.1/32\n 192.0.2.1 # again\n2001:db8::1\n2001:DB8:0::1/128\n"
        "10.0.0.0/8\n10.0.0.0/8\n",
    )
    assert load_addr_file(path, REF) == AddrSet(
        v4_exact=v4("192.0.2.1"), v6_exact=v6("2001:db8::1"), v4_prefixes=((v4("10.0.0.0"), 8),)
    )


def test_show_escapes_unprintable_text() -> None:
    with pytest.raises(ConfigError) as exc:
        parse_addr_items(items("a\tb\x1bc"))
    assert messages(exc) == ["rules.yaml:1:9: bad address 'a\\tb\\x1bc'"]


_ADDRS = st.one_of(
    st.integers(0, 40).map(lambda i: f"192.0.2.{i}"),
    st.integers(0, 40).map(lambda i: f"2001:db8::{i:x}"),
    st.sampled_from(["10.0.0.0/8", "10.0.0.0/16", "2001:db8::/32", "2001:db8::/48", "0.0.0.0/0"]),
)


@given(st.lists(_ADDRS, max_size=30), st.lists(_ADDRS, max_size=30), st.booleans())
def test_union_is_the_set_union(a: list[str], b: list[str], small: bool) -> None:
    """Both ways of merging exact addresses (insert the small side, or sort) agree."""
    import xdpd.addrlist as addrlist
    import xdpd.packed as packed

    expected = parse_addr_items(items(*a, *b)) if a or b else AddrSet()
    set_a = parse_addr_items(items(*a)) if a else AddrSet()
    set_b = parse_addr_items(items(*b)) if b else AddrSet()
    saved = packed._SMALL_UNION
    packed._SMALL_UNION = 10**9 if small else 0
    try:
        assert union(set_a, set_b) == expected
        assert addrlist.union_all([set_a, set_b, set_a]) == expected
    finally:
        packed._SMALL_UNION = saved
