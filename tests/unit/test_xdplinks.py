"""How XdpLinks chooses the mechanism: pinned bpf_links, netlink where the kernel has no XDP links."""

from __future__ import annotations

import errno

import pytest

from xdpd import bpfsys, links
from xdpd.links import AttachError, XdpLinks
from xdpd.observed import LinkXdp


class FakePinned:
    """PinnedLinks that records calls; ``refuse`` makes create fail with that errno."""

    def __init__(self, refuse: int | None = None) -> None:
        self.refuse, self.calls = refuse, []

    def create(self, ifindex: int, fd: int, mode: str) -> int:
        self.calls.append(("create", ifindex, mode))
        if self.refuse:
            raise bpfsys.BpfError(self.refuse, f"creating a bpf_link for ifindex {ifindex}: "
                                               f"{errno.errorcode[self.refuse]}")
        return 50 + ifindex

    def update(self, link_id: int, fd: int) -> None:
        self.calls.append(("update", link_id))

    def release(self, link_id: int) -> None:
        self.calls.append(("release", link_id))


class FakeNetlink:
    """The netlink mechanism (links.attach/detach), recorded; ``refuse`` makes attach fail."""

    def __init__(self) -> None:
        self.calls: list[tuple] = []
        self.refuse = False

    def attach(self, ipr, link: LinkXdp, fd: int, mode: str) -> tuple[str, None]:
        self.calls.append(("netlink attach", link.name, mode))
        if self.refuse:
            raise AttachError(f"attaching XDP to {link.name} in {mode} mode: refused")
        return mode, None

    def detach(self, ipr, link: LinkXdp) -> None:
        self.calls.append(("netlink detach", link.name))


@pytest.fixture
def netlink(monkeypatch) -> FakeNetlink:
    fake = FakeNetlink()
    monkeypatch.setattr(links, "attach", fake.attach)
    monkeypatch.setattr(links, "detach", fake.detach)
    monkeypatch.setattr(bpfsys, "prog_info", lambda fd: bpfsys.ProgInfo(10, "xdpd", ()))
    return fake


def xdp_links(pinned: FakePinned, fallbacks: list[str]) -> XdpLinks:
    x = XdpLinks(None, 3, "/sys/fs/bpf/xdpdt-unit", on_fallback=fallbacks.append)  # type: ignore[arg-type]
    x.pinned = pinned  # type: ignore[assignment]
    return x


NOTHING = LinkXdp("eth1", 2, None, 0)


def test_attach_creates_a_link_swap_updates_it_and_a_netlink_program_is_taken_over(netlink):
    pinned, fallbacks = FakePinned(), []
    x = xdp_links(pinned, fallbacks)
    assert x.attach(NOTHING, "native") == ("native", None)
    assert x.attach(LinkXdp("eth1", 2, "native", 7, link_id=52), "auto") == ("native", None)
    assert x.attach(LinkXdp("eth1", 2, "native", 99), "native") == ("native", None)       # foreign, by netlink
    assert x.attach(LinkXdp("eth1", 2, "native", 10, link_id=52), "generic") == ("generic", None)
    assert pinned.calls == [("create", 2, "native"), ("update", 52), ("create", 2, "native"),
                            ("release", 52), ("create", 2, "generic")]
    assert netlink.calls == [("netlink detach", "eth1")] and fallbacks == [] and x.bpf_links


def test_a_kernel_without_xdp_links_falls_back_to_netlink_once(netlink):
    pinned, fallbacks = FakePinned(refuse=errno.EINVAL), []
    x = xdp_links(pinned, fallbacks)
    assert x.attach(NOTHING, "native") == ("native", None)
    assert x.attach(LinkXdp("eth2", 3, None, 0), "generic") == ("generic", None)
    assert pinned.calls == [("create", 2, "native")]          # asked once
    assert netlink.calls == [("netlink attach", "eth1", "native"), ("netlink attach", "eth2", "generic")]
    assert not x.bpf_links and len(fallbacks) == 1 and "netlink" in fallbacks[0]


def test_a_refusal_netlink_shares_is_an_error_not_a_fallback(netlink):
    """Native mode on a driver without it: link_create says EOPNOTSUPP, so does netlink; auto then
    takes generic mode, through a link."""
    pinned, fallbacks = FakePinned(refuse=errno.EOPNOTSUPP), []
    x = xdp_links(pinned, fallbacks)
    netlink.refuse = True
    with pytest.raises(AttachError):
        x.attach(NOTHING, "native")
    assert x.bpf_links and fallbacks == []


def test_once_a_link_worked_errors_are_errors(netlink):
    pinned, fallbacks = FakePinned(), []
    x = xdp_links(pinned, fallbacks)
    x.attach(NOTHING, "native")
    pinned.refuse = errno.EINVAL
    with pytest.raises(AttachError, match="EINVAL"):
        x.attach(LinkXdp("eth2", 3, None, 0), "native")
    assert netlink.calls == [] and x.bpf_links and fallbacks == []


def test_netlink_by_choice(netlink):
    pinned, fallbacks = FakePinned(), []
    x = XdpLinks(None, 3, "/sys/fs/bpf/xdpdt-unit", bpf_links=False)  # type: ignore[arg-type]
    x.pinned = pinned  # type: ignore[assignment]
    assert x.attach(NOTHING, "native") == ("native", None)
    assert x.attach(LinkXdp("eth1", 2, "native", 7, link_id=52), "native") == ("native", None)  # a link left over
    assert pinned.calls == [("release", 52)]
    assert netlink.calls == [("netlink attach", "eth1", "native"), ("netlink attach", "eth1", "native")]
