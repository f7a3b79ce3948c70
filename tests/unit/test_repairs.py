"""The repair rate limit: a fight over an interface never becomes a hot loop."""

from __future__ import annotations

from xdpd.config import parse_config_text
from xdpd.observed import IfaceSlot, LinkXdp, Observed
from xdpd.plan import plan
from xdpd.repairs import BURST, REFILL, RepairCount, RepairLimiter

OURS, FOREIGN = 10, 99
CONFIG = parse_config_text("interfaces: {eth1: {mode: native}, eth2: {mode: native}}\nrules: []\n", "t.yaml")


def observed(eth1: LinkXdp, eth2_prog: int = OURS) -> Observed:
    """eth1 and eth2 were attached by a daemon of this pin dir (ifindex 2 and 3); now eth1 is ``eth1``."""
    enforced = plan(CONFIG, Observed(links={"eth1": LinkXdp("eth1", 2, "native", OURS),
                                            "eth2": LinkXdp("eth2", 3, "native", OURS)},
                                     prog_id=OURS, active=None))
    slots = {slot: IfaceSlot(i.name, i.ifindex, "native") for slot, i in enforced.iface_slots.items()}
    return Observed(links={"eth1": eth1, "eth2": LinkXdp("eth2", 3, "native" if eth2_prog else None, eth2_prog)},
                    prog_id=OURS, active=enforced.image, rule_slots=enforced.rule_slots, iface_slots=slots)


TAKEN = plan(CONFIG, observed(LinkXdp("eth1", 2, "native", FOREIGN)))   # someone else's program on eth1
FINE = plan(CONFIG, observed(LinkXdp("eth1", 2, "native", OURS)))


def test_a_few_repairs_at_once_then_one_per_refill():
    limiter = RepairLimiter()
    done = []
    for i in range(BURST):
        a = limiter.admit(TAKEN, now=100.0 + i * 0.01)
        done.append([op.iface for op in a.plan.links])
        assert a.deferred == {} and a.fights == []
    assert done == [["eth1"]] * BURST
    a = limiter.admit(TAKEN, now=100.05)
    assert a.plan.links == () and a.fights == ["eth1"] and limiter.waiting("eth1")
    assert 100.05 < a.deferred["eth1"] <= 100.05 + REFILL and limiter.deadline() == a.deferred["eth1"]
    assert not limiter.take_due(a.deferred["eth1"] - 0.01) and limiter.waiting("eth1")
    assert limiter.take_due(a.deferred["eth1"]) and not limiter.take_due(a.deferred["eth1"])
    again = limiter.admit(TAKEN, now=a.deferred["eth1"])
    assert [op.iface for op in again.plan.links] == ["eth1"] and again.fights == []   # logged once
    assert not limiter.waiting("eth1") and limiter.fighting() == ["eth1"]


def test_a_fight_that_never_stops_gets_one_repair_per_refill():
    """An agent that takes the interface back 100 times a second for a minute, the daemon
    reconciling on every one of its moves: BURST repairs, then one per REFILL seconds."""
    limiter = RepairLimiter()
    repairs = 0
    for tick in range(6000):
        repairs += len(limiter.admit(TAKEN, now=tick / 100).plan.links)
    assert BURST + 60 / REFILL - 1 <= repairs <= BURST + 60 / REFILL + 1, repairs
    assert limiter.counts()["eth1"].repairs == repairs and limiter.counts()["eth1"].fighting


def test_the_fight_is_over_once_no_repair_was_needed_for_a_whole_bucket():
    limiter = RepairLimiter()
    for i in range(BURST + 1):
        limiter.admit(TAKEN, now=float(i) * 0.01)
    assert limiter.fighting() == ["eth1"] and limiter.waiting("eth1")
    # Someone put our program back (or the agent gave up and the retry repaired it):
    limiter.admit(FINE, now=1.0)
    assert not limiter.waiting("eth1") and not limiter.take_due(100.0)
    end = limiter.deadline()
    assert end is not None and end <= 1.0 + BURST * REFILL
    assert limiter.settle(end - 0.5) == [] and limiter.fighting() == ["eth1"]
    assert limiter.settle(end) == ["eth1"] and limiter.fighting() == [] and limiter.deadline() is None
    assert limiter.settle(end + 100) == []
    assert limiter.counts() == {"eth1": RepairCount(repairs=BURST, deferred=1, fighting=False)}


def test_recreated_interfaces_first_attaches_and_other_interfaces_are_never_held():
    limiter = RepairLimiter()
    recreated = observed(LinkXdp("eth1", 42, None, 0))            # same name, new device
    for i in range(20):
        a = limiter.admit(plan(CONFIG, recreated), now=i * 0.01)
        assert [(op.iface, op.recreated) for op in a.plan.links] == [("eth1", True)]
    for i in range(BURST + 1):
        limiter.admit(TAKEN, now=1.0)
    both = observed(LinkXdp("eth1", 2, "native", FOREIGN), eth2_prog=0)
    a = limiter.admit(plan(CONFIG, both), now=1.0)
    assert [op.iface for op in a.plan.links] == ["eth2"] and set(a.deferred) == {"eth1"}


def test_a_repair_that_failed_is_tried_again_at_the_limited_rate():
    """A repair can lose a race with the agent (it attaches between the two steps of ours): the
    daemon must try again without waiting for the periodic check, but never faster than the limit."""
    limiter = RepairLimiter()
    attempts = 0
    now = 0.0
    while now < 60:
        if now == 0.0 or limiter.take_due(now):
            a = limiter.admit(TAKEN, now)
            attempts += len(a.plan.links)
            if a.plan.links:
                limiter.failed(a.plan, now)          # every attempt fails: a foreign link holds it
        now = round(now + 0.01, 2)
    assert BURST <= attempts <= BURST + 60 / REFILL + 1, attempts
    assert limiter.waiting("eth1") and limiter.fighting() == ["eth1"]
