"""observe -> plan -> execute against a fake kernel: rollback at every step, without root."""

from __future__ import annotations

import pytest

from tests.testbed.fake_kernel import PROG_ID, FakeKernel
from xdpd.config import parse_config_text
from xdpd.execute import ExecuteFailed, Executor
from xdpd.observed import LinkXdp
from xdpd.plan import detach_ops, plan

FOREIGN = 99

OLD = """
interfaces: {eth1: {mode: native}, eth2: {mode: generic}}
rules:
  - {name: bad, action: drop, src: [192.0.2.1, 192.0.2.2]}
  - {name: dns, action: drop, proto: udp, dst_port: 53}
"""

NEW = """
interfaces: {eth1: {mode: generic}, eth3: {mode: auto}, eth4: {mode: native}}
rules:
  - {name: dns, action: drop, proto: udp, dst_port: 53}
  - {name: bad, action: drop, src: [192.0.2.1, 192.0.2.3]}
  - {name: ntp, action: count, proto: udp, dst_port: 123}
"""


def enforce(kernel: FakeKernel, yaml_text: str):
    p = plan(parse_config_text(yaml_text, "t.yaml"), kernel.observe())
    return Executor(kernel, kernel, kernel).execute(p)


def bed() -> FakeKernel:
    """eth1, eth2 carrying the old config; eth3 has nothing; eth4 runs a foreign program."""
    kernel = FakeKernel(links={
        "eth1": LinkXdp("eth1", 2, None, 0), "eth2": LinkXdp("eth2", 3, None, 0),
        "eth3": LinkXdp("eth3", 4, None, 0), "eth4": LinkXdp("eth4", 5, "native", FOREIGN),
    }, native={"eth1", "eth3"})
    enforce(kernel, OLD)
    kernel.calls.clear()
    return kernel


def test_execute_carries_out_the_plan_and_a_second_plan_is_empty():
    kernel = bed()
    outcome = enforce(kernel, NEW)
    assert outcome.attached == {"eth1": "generic", "eth3": "native", "eth4": "native"}
    assert outcome.detached == ["eth2"]
    assert outcome.repaired == {}                 # eth4 was never ours: a replace, not a repair
    assert kernel.links["eth4"].prog_id == PROG_ID and kernel.links["eth2"].mode is None
    assert kernel.active == outcome.plan.image
    assert {s.name for s in kernel.rule_slots.values()} == {"dns", "bad", "ntp"}
    ntp = next(slot for slot, s in kernel.rule_slots.items() if s.name == "ntp")
    eth3 = next(slot for slot, s in kernel.iface_slots.items() if s.name == "eth3")
    assert {("rule", ntp), ("iface", eth3)} <= kernel.zeroed    # new slots start counting from zero
    assert {s.name: s.mode for s in kernel.iface_slots.values()} == {
        "eth1": "generic", "eth3": "native", "eth4": "native"}
    again = plan(parse_config_text(NEW, "t.yaml"), kernel.observe())
    assert not again and again.lines() == []


def test_a_failure_at_any_step_puts_back_the_previous_attachments_and_rule_set():
    steps = len(_calls_of_a_clean_run())
    assert steps >= 8
    for k in range(1, steps + 1):
        kernel = bed()
        links, active = dict(kernel.links), kernel.active
        kernel.fail_at = k
        with pytest.raises(ExecuteFailed, match=f"injected failure at step {k} .*; rolled back"):
            enforce(kernel, NEW)
        assert kernel.links == links, f"attachments not restored after a failure at step {k}"
        assert kernel.active == active, f"rule set not restored after a failure at step {k}"


def _calls_of_a_clean_run() -> list[str]:
    kernel = bed()
    enforce(kernel, NEW)
    return kernel.calls


def test_a_detached_interface_is_repaired_and_reported():
    kernel = bed()
    kernel.links["eth1"] = LinkXdp("eth1", 2, None, 0)          # someone ran `ip link set eth1 xdp off`
    outcome = enforce(kernel, OLD)
    assert outcome.repaired == {"eth1": "nothing attached"}
    assert not outcome.plan.write                               # the rule set was not touched
    assert kernel.calls == ["attach eth1", "write_iface_slots"]


def test_auto_falls_back_to_generic_with_a_warning_and_records_the_mode_used():
    kernel = bed()
    kernel.native.discard("eth3")
    outcome = enforce(kernel, NEW)
    assert outcome.attached["eth3"] == "generic"
    assert outcome.warnings == ["native XDP unavailable on eth3; using generic mode"]
    assert {s.name: s.mode for s in kernel.iface_slots.values()}["eth3"] == "generic"


def test_stop_detaches_only_what_a_daemon_of_this_pin_dir_attached():
    kernel = bed()
    ops = detach_ops(kernel.observe())
    assert Executor(kernel, kernel, kernel).detach(ops) == ["eth1", "eth2"]
    assert kernel.links["eth4"].prog_id == FOREIGN


def test_attachments_are_links_and_a_swap_keeps_the_link():
    kernel = bed()
    first = {name: link.link_id for name, link in kernel.links.items() if link.prog_id == PROG_ID}
    assert all(first.values()) and len(set(first.values())) == len(first)
    kernel.links["eth1"] = LinkXdp("eth1", 2, "native", 7, first["eth1"])   # an older xdpd's program in our link
    outcome = enforce(kernel, OLD)
    assert outcome.attached == {"eth1": "native"}
    assert kernel.links["eth1"].link_id == first["eth1"]                     # updated in place, not re-created


def test_defunct_links_are_unpinned_only_after_the_rest_succeeded():
    kernel = bed()
    kernel.defunct = ["7"]
    kernel.links["eth1"] = LinkXdp("eth1", 2, None, 0)                       # its link was forced off
    kernel.fail_at = 1                                                       # the attach fails
    with pytest.raises(ExecuteFailed):
        enforce(kernel, OLD)
    assert kernel.defunct == ["7"]
    kernel.fail_at = None
    kernel.calls.clear()
    outcome = enforce(kernel, OLD)
    assert outcome.unpinned == ["7"] and kernel.defunct == []
    assert kernel.calls == ["attach eth1", "write_iface_slots", "unpin 7"]


def test_a_pin_that_cannot_be_removed_is_reported_not_rolled_back():
    kernel = bed()
    kernel.defunct = ["7"]
    kernel.fail_at = 2                                                       # write_iface_slots, then unpin
    outcome = enforce(kernel, OLD)
    assert outcome.unpinned == [] and outcome.unpin_failed == [
        "unpinning defunct link 7: [Errno 5] injected failure at step 2 (unpin 7)"]
    assert kernel.links["eth1"].prog_id == PROG_ID


def test_the_bank_writer_gets_the_plans_address_diff():
    kernel = bed()
    got = []
    apply = kernel.apply
    kernel.apply = lambda image, settle=True, diff=None: (got.append(diff), apply(image, settle, diff))
    outcome = enforce(kernel, NEW)
    assert got == [outcome.plan.addrs] and outcome.plan.addrs.base is not None
