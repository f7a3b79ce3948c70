"""The build identity a restart compares before it reuses the pinned program (xdpd.buildid)."""

from __future__ import annotations

import textwrap

from xdpd import buildid
from xdpd.buildid import BuildIdentity

STATUS = textwrap.dedent("""\
    Package: libbpfcc
    Status: deinstall ok config-files
    Architecture: i386
    Version: 0.1

    Package: libbpfcc
    Status: install ok installed
    Architecture: amd64
    Version: 0.26.0+ds-1
    Depends: libbpf1 (>= 1:0.7.0), libclang-cpp14 (>= 1:14.0.6), libelf1 (>= 0.144),
     libllvm14, libstdc++6 (>= 11)
    Description: shared library for BPF Compiler Collection (BCC)
     Package: libllvm99
     Version: 9

    Package: libclang-cpp14
    Status: install ok installed
    Version: 1:14.0.6-12

    Package: libllvm14
    Status: install ok installed
    Architecture: amd64
    Version: 1:14.0.6-12

    Package: python3-bpfcc
    Status: install ok installed
    Version: 0.26.0+ds-1
    """)


def test_dpkg_versions_take_the_installed_stanza_and_ignore_continuation_lines(tmp_path) -> None:
    status = tmp_path / "status"
    status.write_text(STATUS)
    got = buildid.dpkg_versions(str(status), ["libbpfcc", "libllvm99", "python3-bpfcc", "absent"])
    assert got["libbpfcc"][0] == "0.26.0+ds-1"
    assert "libclang-cpp14" in got["libbpfcc"][1] and "libllvm14" in got["libbpfcc"][1]
    assert got["python3-bpfcc"] == ("0.26.0+ds-1", "")
    assert "libllvm99" not in got and "absent" not in got


def test_the_toolchain_names_bcc_and_the_llvm_it_depends_on(tmp_path) -> None:
    status = tmp_path / "status"
    status.write_text(STATUS)
    line = buildid.toolchain(str(status))
    for part in ("libbpfcc=0.26.0+ds-1", "libclang-cpp14=1:14.0.6-12", "libllvm14=1:14.0.6-12",
                 "python3-bpfcc=0.26.0+ds-1"):
        assert part in line.split(), line
    # A point release of LLVM changes the identity.
    status.write_text(STATUS.replace("Version: 1:14.0.6-12\n\nPackage: python3", "Version: 1:14.0.6-13\n\n"
                                     "Package: python3"))
    assert buildid.toolchain(str(status)) != line
    # No dpkg (not Debian): bcc's own files still identify it.
    assert "bcc.py=" in buildid.toolchain(str(tmp_path / "none"))


def test_identities_compare_field_by_field_and_survive_their_text() -> None:
    a = buildid.identify("0123456789ab", ["-DMAX_EXACT=1"])
    assert BuildIdentity.from_text(a.text()) == a
    assert a.differences(buildid.identify("0123456789ab", ["-DMAX_EXACT=1"])) == []
    b = buildid.identify("ba9876543210", ["-DMAX_EXACT=2"])
    assert a.differences(b) == ["cflags", "layout"]
    older = BuildIdentity(tuple(kv for kv in a.fields if kv[0] != "toolchain"))
    assert a.differences(older) == ["toolchain"]
    assert len(a.text()) < buildid.TEXT_BYTES
