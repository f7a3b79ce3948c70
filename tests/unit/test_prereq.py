"""Missing prerequisites give one line that says what to do."""

from __future__ import annotations

import pytest

from xdpd import prereq


def test_missing_headers_names_the_package_and_the_link(tmp_path, monkeypatch):
    monkeypatch.delenv("BCC_KERNEL_SOURCE", raising=False)
    with pytest.raises(prereq.Missing) as e:
        prereq.check_kernel_headers("6.99.0-test", modules_dir=str(tmp_path))
    msg = str(e.value)
    assert "linux-headers-6.99.0-test" in msg and "linux-headers-amd64" in msg
    assert "\n" not in msg


def test_headers_found_when_build_has_include(tmp_path, monkeypatch):
    monkeypatch.delenv("BCC_KERNEL_SOURCE", raising=False)
    (tmp_path / "6.99.0-test" / "build" / "include").mkdir(parents=True)
    prereq.check_kernel_headers("6.99.0-test", modules_dir=str(tmp_path))


def test_pin_dir_not_on_bpffs(tmp_path):
    mounts = tmp_path / "mounts"
    mounts.write_text("sysfs /sys sysfs rw 0 0\nproc /proc proc rw 0 0\n")
    with pytest.raises(prereq.Missing, match="mount -t bpf bpf /sys/fs/bpf"):
        prereq.check_bpffs("/sys/fs/bpf/xdpd", mounts_path=str(mounts))
    mounts.write_text("sysfs /sys sysfs rw 0 0\nbpf /sys/fs/bpf bpf rw 0 0\n")
    prereq.check_bpffs("/sys/fs/bpf/xdpd", mounts_path=str(mounts))


def test_missing_capabilities():
    with pytest.raises(prereq.Missing, match="CAP_BPF .* and CAP_NET_ADMIN"):
        prereq.check_capabilities(0)
    prereq.check_capabilities((1 << prereq.CAP_BPF) | (1 << prereq.CAP_NET_ADMIN))
