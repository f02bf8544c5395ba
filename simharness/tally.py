"""Running totals of one run, kept as the engine logs, so that metrics need not keep the log.

The engine hands over its action log in chunks, its task records as tasks start and end, and
the detector's flags; metrics.py turns the totals into numbers. A run that keeps its log
(the default) and one that streams it (large runs, `keep_log=False`) go through the same
code, so they report the same bytes. `Tally.of(log)` measures a log that was kept or built
by hand, through the same methods.

What is kept grows with the run only where a metric needs every value: decision latencies
(exact quantiles) and, per top-level task, its arrival-to-start wait and clean task time; one
C double each. Misuse and credential terms are kept per misuse instance and per executed step
under a credential (one double each).
"""

from __future__ import annotations

import math
from array import array
from collections import defaultdict
from collections.abc import Iterable, Sequence
from operator import itemgetter
from typing import Any

import numpy as np

from simharness.actions import MisuseInstance
from simharness.controls.base import Credential
from simharness.records import (
    COMPLETED,
    FAILED,
    REJECT_MARK,
    REVOCATION_REASONS,
    TIMEOUT_MARK,
    A,
    T,
)

# What add_actions reads of an action record, in one C call.
_FIELDS = itemgetter(A["time"], A["allowed"], A["misuse_id"], A["goal"], A["weight"],
                     A["identity"], A["reasons"], A["latency"], A["without_decision"],
                     A["attributed"], A["visible"], A["credential"], A["duration"])
# ... and what a step's credential term reads (once per step executed under a credential).
_USE_FIELDS = itemgetter(A["credential"], A["tool"], A["action"], A["resource"], A["time"],
                         A["latency"], A["duration"])
_DEPTH, _ARRIVAL, _START, _END, _STATUS, _MISUSE = (
    T["depth"], T["arrival"], T["start"], T["end"], T["status"], T["misuse_id"])


class Tally:
    """Counts, latencies, task times, misuse and credential-use terms of one run."""

    def __init__(self, warmup: float, horizon: float, n_top: int,
                 credentials: Sequence[Credential], weight: dict):
        self.warmup, self.horizon = warmup, horizon
        self._creds = credentials  # the ledger's list: credential ids index it
        self._weight = weight
        # Action counts after the warm-up.
        self.actions = self.executed = self.legit = self.legit_denied = 0
        self.without_decision = self.attributed = self.invisible = 0
        self.timeouts = self.rejections = 0
        self.latency = array("d")  # seconds, after the warm-up, in log order
        # Legitimate denials by a revocation, by identity: collateral once the identity is
        # flagged (which may happen after the denial).
        self._revocation_denials: dict[str, int] = defaultdict(int)
        self.flagged_identities: set[str] = set()
        # Misuse, per instance id: goal actions asked for, executed, flagged; damage.
        self.requested: set[int] = set()
        self.executed_misuse: set[int] = set()
        self.flagged_misuse: set[int] = set()
        self.damage: dict[int, float] = defaultdict(float)
        self.counted: dict[int, str] = {}  # instances with an outcome -> kind
        # Tasks: top-level tasks arrived after the warm-up.
        self.waits = array("d")  # start - arrival, in start order
        self.completed = self.failed = 0
        self.task_times = np.full(n_top, np.nan)  # workload order; NaN unless completed clean
        # credential_exposure's negative terms: -w(p) x time a step executes under a credential.
        self.credential_use = array("d")
        self._pending: list[tuple] = []  # steps still executing when their chunk came in

    # -- feeding ---------------------------------------------------------------------------
    def add_actions(self, chunk: Iterable[tuple], now: float) -> None:
        """Action records logged up to simulated time `now` (math.inf: the run is over)."""
        lo = self.warmup
        latency = self.latency.append
        n = executed = legit = legit_denied = without_decision = attributed = invisible = 0
        timeouts = rejections = 0
        for r in chunk:
            t, allowed, mid, goal, weight, ident, reasons, lat, without, attr, visible, cred, dur = (
                _FIELDS(r))
            if mid >= 0 and goal:
                self.requested.add(mid)
                if allowed:
                    self.executed_misuse.add(mid)
                    self.damage[mid] += weight
            if allowed and cred >= 0 and dur > 0:
                self._credential_use(r, now)
            if t < lo:
                continue
            n += 1
            latency(lat)
            without_decision += without
            if without or not allowed:  # a timeout is decided without the control, either way
                timeouts += TIMEOUT_MARK in reasons
                rejections += REJECT_MARK in reasons
            if allowed:
                executed += 1
                attributed += attr
                invisible += not visible
            if mid < 0:
                legit += 1
                if not allowed:
                    legit_denied += 1
                    if REVOCATION_REASONS & set(reasons.split(";")):
                        self._revocation_denials[ident] += 1
        self.actions += n
        self.executed += executed
        self.legit += legit
        self.legit_denied += legit_denied
        self.without_decision += without_decision
        self.attributed += attributed
        self.invisible += invisible
        self.timeouts += timeouts
        self.rejections += rejections
        if now == math.inf:
            pending, self._pending = self._pending, []
            for r in pending:
                self._credential_use(r, now)

    def _credential_use(self, r: tuple, now: float) -> None:
        """The term of an executed step under its credential, clipped to the credential's life
        and the measured window; held back while the step still executes, since a revocation
        before its end would cut it (one after it cannot)."""
        cid, tool, action, resource, t, latency, duration = _USE_FIELDS(r)
        c = self._creds[cid]
        perm = (tool, action, resource)
        if perm not in c.perms:
            return
        start = t + latency
        end = start + duration
        if end > now:
            self._pending.append(r)
            return
        a, b = max(start, c.issued, self.warmup), min(end, c.end, self.horizon)
        if b > a:
            self.credential_use.append(-self._weight.get(perm, 0.0) * (b - a))

    def flag(self, identity: str, misuse_id: int, goal: bool) -> None:
        """The detector flagged an executed action."""
        self.flagged_identities.add(identity)
        if misuse_id >= 0 and goal:
            self.flagged_misuse.add(misuse_id)

    def task_started(self, rec: Sequence[Any]) -> None:
        if rec[_DEPTH] == 0 and rec[_ARRIVAL] >= self.warmup:
            self.waits.append(rec[_START] - rec[_ARRIVAL])

    def task_ended(self, rec: Sequence[Any], index: int, misuse: Iterable[MisuseInstance],
                   task: Any) -> None:
        """A top-level task ended; `index`: its place in workload order; `misuse`: the
        instances injected into it (`task`'s attacker or replay uses come after its end)."""
        end = rec[_END]
        if rec[_ARRIVAL] >= self.warmup:
            if rec[_STATUS] == COMPLETED:
                self.completed += 1
                if rec[_MISUSE] < 0:
                    self.task_times[index] = end - rec[_START]
            elif rec[_STATUS] == FAILED:
                self.failed += 1
        # An instance has an outcome only once all its actions had their chance: its task has
        # ended and any attacker or replay use (scheduled after the leak or the end) fell
        # inside the horizon. Censored instances are left out rather than called prevented.
        for m in misuse:
            if m.arrival >= self.warmup and end + tail_of(task) <= self.horizon:
                self.counted[m.id] = m.kind

    # -- results ---------------------------------------------------------------------------
    @property
    def collateral(self) -> int:
        """Legitimate actions denied by a revocation of an identity the detector flagged."""
        return sum(n for ident, n in self._revocation_denials.items()
                   if ident in self.flagged_identities)

    def latencies_ms(self) -> np.ndarray:
        return np.frombuffer(self.latency, dtype=float) * 1e3

    @classmethod
    def of(cls, log: Any) -> Tally:
        """The tally of a log kept in full (its `actions`, `tasks`, `flagged`, workload and
        ledger), fed through the methods a run feeds."""
        wl = log.workload
        t = cls(log.warmup, log.horizon, len(wl.tasks), log.ledger.credentials, wl.weight)
        for rec in log.tasks:
            t.task_started(rec)
        t.add_actions(log.actions, math.inf)
        for i in sorted(log.flagged):
            r = log.actions[i]
            t.flag(r[A["identity"]], r[A["misuse_id"]], r[A["goal"]])
        at = {task.id: i for i, task in enumerate(wl.tasks)}
        instances: dict[int, list] = defaultdict(list)
        for m in wl.misuse:
            instances[m.task].append(m)
        for rec in log.tasks:
            tid = rec[T["task"]]
            if rec[T["depth"]] == 0 and rec[T["status"]] in (COMPLETED, FAILED):
                task = wl.tasks[at[tid]]
                t.task_ended(rec, at[tid], instances.get(tid, ()), task)
        return t


def tail_of(task: Any) -> float:
    """How long after its task's end (or leak) the last attacker or replay use comes."""
    return max((a.think for a in (*task.attacker, *task.replay)), default=0.0)
