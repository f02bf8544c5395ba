"""Human reviewers as the engine runs them: a first-come-first-served pool with working hours,
a timeout, and attention that wears down with the approvals each reviewer gives.

Computed arithmetically like the decision stations (engine.StationState): requests reach the
pool in time order, so the start of a review is max(arrival, next staffed moment, earliest
free reviewer). The verdict is a draw against the pool's accuracy (controls.base.ReviewPool):
a reviewer judges what the request really is (misuse or not), as a person reading it would,
only not always correctly, and less so when overloaded.
"""

from __future__ import annotations

import heapq
import math
from collections import deque

from simharness.controls.base import ReviewPool
from simharness.rng import BlockSampler

APPROVED, REJECTED, TIMEOUT = "approved", "rejected", "timeout"
DAY = 86400.0
HOUR = 3600.0


def next_staffed(t: float, hours: tuple[float, float] | None) -> float:
    """The first staffed moment at or after t (time 0 is midnight of day one). `hours` is
    (start, end) hour of day; start > end is a shift over midnight."""
    if hours is None:
        return t
    start, end = hours[0] * HOUR, hours[1] * HOUR
    day = math.floor(t / DAY) * DAY
    s = t - day
    if start <= end:
        if s < start:
            return day + start
        return t if s < end else day + DAY + start
    return t if (s >= start or s < end) else day + start


def staffed_seconds(a: float, b: float, hours: tuple[float, float] | None) -> float:
    """Staffed time inside [a, b)."""
    if b <= a:
        return 0.0
    if hours is None:
        return b - a
    start, end = hours[0] * HOUR, hours[1] * HOUR
    windows = [(start, end)] if start <= end else [(0.0, end), (start, DAY)]
    total = 0.0
    day = math.floor(a / DAY) * DAY
    while day < b:
        for lo, hi in windows:
            total += max(0.0, min(b, day + hi) - max(a, day + lo))
        day += DAY
    return total


class ReviewDesk:
    """The reviewer pool of one run, with what metrics need (after the warm-up)."""

    __slots__ = ("pool", "free", "service", "uniform", "recent", "warmup", "horizon", "busy",
                 "requested", "waits", "misuse_escalated", "misuse_judged", "misuse_approved",
                 "timeouts")

    def __init__(self, pool: ReviewPool, service: BlockSampler, uniform: BlockSampler,
                 warmup: float, horizon: float):
        self.pool = pool
        self.free = [0.0] * pool.reviewers
        self.service, self.uniform = service, uniform
        self.recent: deque[float] = deque()  # start times of approving reviews (last hour)
        self.warmup, self.horizon = warmup, horizon
        self.busy = 0.0  # reviewer-seconds inside [warm-up, horizon]
        self.requested = 0
        self.waits: list[float] = []  # escalation to verdict (or to the timeout)
        self.misuse_escalated = 0
        self.misuse_judged = 0  # escalated misuse a reviewer gave a verdict on (no timeout)
        self.misuse_approved = 0
        self.timeouts = 0

    def review(self, t: float, misuse: bool) -> tuple[float, str]:
        """(time until the verdict, verdict) for a request escalated at t."""
        p = self.pool
        measured = t >= self.warmup
        start = max(next_staffed(t, p.hours), self.free[0])
        if start - t >= p.timeout:
            verdict, latency = TIMEOUT, p.timeout  # no reviewer ever picked it up
        else:
            service = self.service.next()
            heapq.heapreplace(self.free, start + service)
            busy = min(start + service, self.horizon) - max(start, self.warmup)
            if busy > 0:
                self.busy += busy
            latency = start + service - t
            if latency > p.timeout:  # the requester gave up; the reviewer finished anyway
                verdict, latency = TIMEOUT, p.timeout
            else:
                verdict = APPROVED if self._approves(start, misuse) else REJECTED
        if measured:
            self.requested += 1
            self.waits.append(latency)
            self.timeouts += verdict == TIMEOUT
            if misuse:
                self.misuse_escalated += 1
                self.misuse_judged += verdict != TIMEOUT
                self.misuse_approved += verdict == APPROVED
        return latency, verdict

    def _approves(self, start: float, misuse: bool) -> bool:
        p, recent = self.pool, self.recent
        while recent and recent[0] <= start - HOUR:
            recent.popleft()
        u = self.uniform.next()
        if misuse:
            load = len(recent) / p.reviewers  # approvals per reviewer in the last hour
            ok = u >= p.catch_rate * math.exp(-load / p.fatigue)
        else:
            ok = u >= p.false_reject
        if ok:
            recent.append(start)  # starts never decrease (FCFS), so the window stays sorted
        return ok

    def utilization(self) -> float:
        """Busy reviewer time over staffed reviewer time, after the warm-up."""
        staffed = staffed_seconds(self.warmup, self.horizon, self.pool.hours) * self.pool.reviewers
        return self.busy / staffed if staffed > 0 else math.nan
