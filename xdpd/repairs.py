"""How often the daemon puts back a program someone else removed: a rate limit per interface.

Drift repair is immediate (an XDP change or a lost link wakes the daemon,
see :mod:`xdpd.linkevents` and :mod:`xdpd.linkwatch`), so another agent
that re-attaches its own program whenever ours is back would turn two
daemons into a hot loop, each undoing the other thousands of times a
second.  :class:`RepairLimiter` is a token bucket per interface: ``burst``
repairs at once, then one per ``refill`` seconds.  A repair beyond that
waits (the daemon wakes when it is due and reconciles again) and the
interface is *fighting*: the daemon logs ``drift_fight`` once, says so in
``STATUS=`` and ``xdpd status`` shows ``"fighting": true``.  The fight is
over once the bucket is full again with nothing waiting, i.e. no repair
was needed for ``burst * refill`` seconds.

Only repairs count (:attr:`xdpd.plan.LinkOp.repair`): interfaces a daemon
attached before and someone detached or replaced.  An interface deleted and
created again (:attr:`~xdpd.plan.LinkOp.recreated`) is no fight, nor is a
first attach or a reload's change.

Pure: the time is passed in, nothing touches the kernel; the daemon owns
one limiter and applies it to every plan before executing it (``xdpd plan``
shows the plan unlimited).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from .plan import Plan

BURST = 3
"""Repairs of one interface done at once, before the limit applies."""
REFILL = 5.0
"""Seconds per repair once the burst is spent: at most one repair per 5 s during a fight."""
_EPSILON = 1e-9


@dataclass(frozen=True)
class RepairCount:
    """One interface's repairs so far (this daemon's), as ``xdpd status`` shows them."""

    repairs: int = 0
    """Repairs carried out."""
    deferred: int = 0
    """Times a repair had to wait for the rate limit."""
    fighting: bool = False


@dataclass
class _Bucket:
    tokens: float
    stamp: float
    count: RepairCount = field(default_factory=RepairCount)
    retry_at: float | None = None
    """When the repair that had to wait is due."""

    def refill(self, now: float, burst: int, refill: float) -> None:
        self.tokens = min(float(burst), self.tokens + max(0.0, now - self.stamp) / refill)
        self.stamp = now


@dataclass(frozen=True)
class Admitted:
    """A plan cut down to what the rate limit allows now."""

    plan: Plan
    deferred: dict[str, float]
    """Interface -> when its repair is due (monotonic seconds)."""
    fights: list[str]
    """Interfaces that started fighting with this plan."""


class RepairLimiter:
    """Token buckets of repairs per interface; see the module docstring."""

    def __init__(self, burst: int = BURST, refill: float = REFILL) -> None:
        self.burst, self.refill = burst, refill
        self._buckets: dict[str, _Bucket] = {}

    def admit(self, plan: Plan, now: float) -> Admitted:
        """``plan`` without the repairs that must wait; interfaces whose repair is no
        longer needed stop waiting."""
        keep, deferred, fights = [], {}, []
        for op in plan.links:
            if not op.repair or op.recreated:
                keep.append(op)
                continue
            b = self._bucket(op.iface, now)
            b.refill(now, self.burst, self.refill)
            if b.tokens >= 1 - _EPSILON:
                b.tokens = max(0.0, b.tokens - 1)
                b.retry_at = None
                b.count = replace(b.count, repairs=b.count.repairs + 1)
                keep.append(op)
                continue
            b.retry_at = now + (1 - b.tokens) * self.refill
            b.count = replace(b.count, deferred=b.count.deferred + 1)
            if not b.count.fighting:
                b.count = replace(b.count, fighting=True)
                fights.append(op.iface)
            deferred[op.iface] = b.retry_at
        repairing = {op.iface for op in plan.links if op.repair}
        for name, b in self._buckets.items():
            if name not in repairing:
                b.retry_at = None  # put back by someone, gone, or out of the config
        return Admitted(replace(plan, links=tuple(keep)), deferred, fights)

    def failed(self, plan: Plan, now: float) -> list[str]:
        """Executing ``plan`` failed: its repairs are tried again when the next token allows.

        A repair can lose a race (the other agent attaches between the
        detach of its program and the attach of ours), or keep failing (a
        bpf_link of another tool holds the interface); without a retry the
        interface would stay taken until the periodic check.  Retries come
        at the limited rate; once the burst is spent the interface is
        fighting.  Returns the interfaces that started fighting.
        """
        fights = []
        for op in plan.links:
            if op.repair and not op.recreated:
                b = self._bucket(op.iface, now)
                b.refill(now, self.burst, self.refill)
                b.retry_at = now + max(0.0, 1 - b.tokens) * self.refill
                if b.tokens < 1 - _EPSILON and not b.count.fighting:
                    b.count = replace(b.count, fighting=True)
                    fights.append(op.iface)
        return fights

    def waiting(self, name: str) -> bool:
        """A repair of ``name`` waits for the rate limit (events about it change nothing now)."""
        b = self._buckets.get(name)
        return b is not None and b.retry_at is not None

    def take_due(self, now: float) -> bool:
        """Is a repair that had to wait due now?  Then the caller reconciles; it is no
        longer waiting either way (a reconcile that fails must not make this a busy loop)."""
        due = [b for b in self._buckets.values() if b.retry_at is not None and b.retry_at <= now + _EPSILON]
        for b in due:
            b.retry_at = None
        return bool(due)

    def deadline(self) -> float | None:
        """When :meth:`take_due` or :meth:`settle` next has something to say (None: nothing pending)."""
        times = [b.retry_at for b in self._buckets.values() if b.retry_at is not None]
        times += [self._full_at(b) for b in self._buckets.values() if b.count.fighting and b.retry_at is None]
        return min(times) if times else None

    def settle(self, now: float) -> list[str]:
        """End the fights that are over (no repair needed for ``burst * refill`` seconds); return them."""
        over = []
        for name, b in self._buckets.items():
            if b.count.fighting and b.retry_at is None and now + _EPSILON >= self._full_at(b):
                b.count = replace(b.count, fighting=False)
                over.append(name)
        return over

    def fighting(self) -> list[str]:
        return sorted(name for name, b in self._buckets.items() if b.count.fighting)

    def counts(self) -> dict[str, RepairCount]:
        return {name: b.count for name, b in sorted(self._buckets.items())}

    def _bucket(self, name: str, now: float) -> _Bucket:
        if name not in self._buckets:
            self._buckets[name] = _Bucket(float(self.burst), now)
        return self._buckets[name]

    def _full_at(self, b: _Bucket) -> float:
        return b.stamp + (self.burst - b.tokens) * self.refill
