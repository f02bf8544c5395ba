"""Authority: what each agent could do at each moment, measured by asking the control itself.

An agent's authority is the summed weight of the permissions the control's own `decide()`
would allow if the agent asked now, in any context it currently has: between tasks its
standing identity and credential (no task); during a task, or a delegated sub-task it serves,
that task's identity, credential, declared scope and delegation chain. Nothing here knows a
control model: it builds probe requests and reads decisions, so a plug-in is measured exactly
as a built-in is (DESIGN.md section 3, `exposure`).

Decisions on the probes can only change at change points, where the engine tells the probe:
a task starts or ends, a credential is issued or revoked (the ledger's `on_change`), expires,
or an identity is quarantined or released (the probe schedules expiry and release itself).
Probing calls only `decide`, never `observe`, so rate windows and other decision state are not
touched; a probe reads them as they stand. Probes are memoised on what a decision can read
apart from the permission (identity, credential and its liveness, quarantine, task type,
declared scope, chain; not the time or the task id), so a context seen before costs a dict
look-up: one decide() per permission per new context.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from simharness.actions import NO_ARGS, NO_NAMES, AgentInfo, Perm
from simharness.controls.base import Control, Credential, Request, TaskContext, World

_UNPROBED = object()  # the stamp of a context not probed yet (no real stamp equals it)
# What a context allows: each permission with its weight (never mutated: shared, interned),
# and the weights' sum.
Weighed = tuple[dict[Perm, float], float]
_NOTHING: Weighed = ({}, 0.0)


class Context:
    """One place authority lives: an agent's standing identity, or a task it works on."""

    __slots__ = ("identity", "ctx", "cred", "origin", "origin_role", "token_mode", "key",
                 "declared", "active", "stamp", "owned", "stolen", "life", "until")

    def __init__(self, identity: str, ctx: TaskContext | None, cred: Credential | None,
                 origin: str, origin_role: frozenset[Perm], token_mode: str):
        self.identity = identity
        self.ctx = ctx  # None: no task (the standing identity between tasks)
        self.cred = cred  # the task's own credential (None: the standing one, if any)
        self.origin, self.origin_role, self.token_mode = origin, origin_role, token_mode
        task = ctx.task if ctx is not None else None
        # What a decision can read of this context apart from credential, quarantine and the
        # declared scope (which a request shows only as each permission's `in_scope`).
        self.key = (identity, None if task is None else task.type,
                    -1 if task is None else task.depth, origin, origin_role, token_mode)
        self.declared: frozenset[Perm] = task.declared if task is not None else frozenset()
        self.active = task is not None  # False: the task ended but its credential lives on
        # The last probe of this context and what it depended on (reused while unchanged).
        self.stamp: object = _UNPROBED
        self.owned: Weighed = _NOTHING
        self.stolen: Weighed = _NOTHING
        self.life = self.until = math.inf


_READY = object()  # _AgentState.fast of an idle agent whose next task may reuse `spare`


class _AgentState:
    # The fields begin and leave's fast paths read and write once per task first, so that
    # they share as few cache lines as possible (the run evicts them between an agent's tasks).
    __slots__ = ("fast", "allowed", "marks", "spare", "spare_key", "spare_declared", "idle_until",
                 "task_allowed", "task_until", "idle_allowed", "last", "task_weight",
                 "task_thief", "task_life", "idle_weight", "idle_thief", "idle_life",
                 "valid_until", "weight", "thief", "tasks", "life_end", "agent", "idle", "held",
                 "spans")

    def __init__(self, agent: AgentInfo, idle: Context | None):
        # Nothing probed this agent since _remember (the fast paths of begin and leave): the
        # task's context during it, _READY after it; None otherwise. While it is set, the
        # fast paths switch only `allowed` and record the instant (`marks`): valid_until,
        # weight, thief, tasks and life_end are stale until AuthorityProbe._settle writes them
        # out (`current` reads them without).
        self.fast: object = None
        self.valid_until = math.inf  # the next expiry or release among its contexts
        self.last = 0.0  # integrated up to here (then up to marks[-1], if any)
        # The instants the fast paths switched between a task and the standing identity alone
        # since `last`, integrated later in a batch (AuthorityProbe._expand).
        self.marks: list[float] = []
        # Spans integrated by the other paths, kept for the next fold: (start, end, weight,
        # thief authority, life_end, standing).
        self.spans: list[tuple[float, float, float, float, float, bool]] = []
        self.weight = 0.0  # authority: weight of `allowed`
        self.thief = 0.0  # authority of a thief holding what the agent holds
        self.tasks: tuple[Context, ...] = ()  # running tasks
        self.allowed: dict[Perm, float] = {}  # what the agent may use now, with weights
        self.life_end = math.inf  # when what a thief holds stops working at the latest
        # The last task's context, for begin to reuse, with its key and declared scope.
        self.spare: Context | None = None
        self.spare_key: tuple | None = None
        self.spare_declared: frozenset[Perm] | None = None
        # allowed, weight, thief, life_end, valid_until during that task and after it (kept
        # by _remember for the fast paths).
        self.task_allowed: dict[Perm, float] = {}
        self.idle_allowed: dict[Perm, float] = {}
        self.task_weight = self.task_thief = self.idle_weight = self.idle_thief = 0.0
        self.task_life = self.task_until = self.idle_life = self.idle_until = math.inf
        self.agent = agent
        self.idle = idle
        self.held: list[Context] = []  # ended tasks whose own credential is still live


# An interval (start, end, weight) or a use (start, duration, weight) as the 24 bytes the
# hot paths append to a bytearray: C doubles at once, so the buffers keep no float object
# alive until the fold.
pack_span = struct.Struct("3d").pack


def _read(buffer: bytearray) -> np.ndarray:
    """The packed spans as an (n, 3) array of a copy: a view would forbid emptying the buffer
    in place for as long as anything holds it, and a sampling profiler (dask's workers run
    one) can hold a frame's locals past the frame's return."""
    return np.frombuffer(bytes(buffer)).reshape(-1, 3)


def _take(buffer: bytearray) -> np.ndarray:
    """_read, the buffer then emptied in place (the hot paths hold its bound `extend`)."""
    x = _read(buffer)
    del buffer[:]
    return x


TIMELINE_POINTS = 97


class Now(NamedTuple):
    """An agent's authority at a moment (AuthorityProbe.current)."""

    allowed: dict[Perm, float]  # what it may use, with weights
    weight: float  # their sum
    thief: float  # the authority of a thief holding what it holds
    life_end: float  # when that stops working at the latest
    valid_until: float  # the next expiry or release among its contexts
    tasks: tuple[Context, ...]  # its running tasks


class Cumulative:
    """Sum of w over [a, b) intervals, as a total and as the cumulative curve on a fixed grid.

    The curve at g is sum w (min(b, g) - min(a, g))+ = F_a(g) - F_b(g) with
    F_x(g) = g sum_{x < g} w - sum_{x < g} w x. `add` only appends the interval's packed
    doubles (pack_span) to `pending` (the probe's hot path extends it itself); `fold` reads them
    as an array, clips them to [lo, hi] (empty intervals dropped) and sums them
    into per-bin sums with numpy, so a run of any length holds one batch of intervals. The
    total is a sum of exactly rounded batch sums (math.fsum), whatever the machine's SIMD or
    BLAS."""

    __slots__ = ("lo", "hi", "step", "n", "pending", "_w_at", "_wx_at", "_totals")

    def __init__(self, lo: float, hi: float, points: int = TIMELINE_POINTS):
        self.lo, self.hi, self.n = lo, hi, points
        self.step = (hi - lo) / (points - 1) if points > 1 else math.inf
        self.pending = bytearray()  # a, b, w, a, b, w, ... as doubles, not folded yet
        self._w_at = np.zeros(points + 1)
        self._wx_at = np.zeros(points + 1)
        self._totals: list[float] = []

    def add(self, a: float, b: float, w: float) -> None:
        """w over [a, b)."""
        self.pending += pack_span(a, b, w)

    def fold(self, a: np.ndarray | None = None, b: np.ndarray | None = None,
             w: np.ndarray | None = None) -> None:
        """Sum the pending intervals into the bins, then the intervals (a, b, w) given as
        float arrays."""
        if self.pending:
            x = _take(self.pending)
            self._fold(x[:, 0], x[:, 1], x[:, 2])
        if a is not None and len(a):
            self._fold(a, b, w)  # type: ignore[arg-type]

    def _fold(self, a: np.ndarray, b: np.ndarray, w: np.ndarray) -> None:
        a, b = np.maximum(a, self.lo), np.minimum(b, self.hi)
        inside = b > a
        if not inside.all():
            a, b, w = a[inside], b[inside], w[inside]
        self._totals.append(math.fsum((w * (b - a)).tolist()))  # floats: faster than numpy's
        lo, step, n = self.lo, self.step, self.n
        ka, kb = (np.minimum(np.trunc((x - lo) / step) + 1, n).astype(np.int64) if n > 1
                  else np.ones(len(x), np.int64) for x in (a, b))
        self._w_at += np.bincount(ka, w, n + 1) - np.bincount(kb, w, n + 1)
        self._wx_at += np.bincount(ka, w * a, n + 1) - np.bincount(kb, w * b, n + 1)

    def intervals(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(a, b, w) of the intervals not folded yet, in order, clipped to [lo, hi], empty
        ones dropped: what the probe integrated since its last fold (for inspection)."""
        x = _read(self.pending)
        a, b = np.maximum(x[:, 0], self.lo), np.minimum(x[:, 1], self.hi)
        inside = b > a
        return a[inside], b[inside], x[inside, 2]

    @property
    def total(self) -> float:
        self.fold()
        return math.fsum(self._totals)

    def curve(self) -> tuple[np.ndarray, np.ndarray]:
        """(grid, cumulative sum at each grid point); the last point is the total."""
        self.fold()
        n = self.n
        grid = self.lo + self.step * np.arange(n) if n > 1 else np.array([self.lo])
        out = grid * np.cumsum(self._w_at[:n]) - np.cumsum(self._wx_at[:n])
        out[-1] = self.total
        return grid, out


@dataclass
class AuthorityResult:
    """What a run's probing measured (metrics.py turns it into exposure and blast radius)."""

    exposure: Cumulative  # authority minus weight in use, over [warm-up, horizon]
    standing: float  # the part of the authority integral accrued with no task running
    blast_num: float  # integral of thief authority x remaining life
    blast_den: float  # time with a thief authority > 0
    probes: int  # decide() calls made by probing


class AuthorityProbe:
    """Integrates each agent's authority over [warm-up, horizon] as the engine runs."""

    # Take the common case's short cuts in enter and leave (a task under the agent's standing
    # identity, nothing else running); False runs the general path only, which gives the
    # same numbers (tests/unit/test_authority.py holds them to it), more slowly.
    shortcuts = True

    def __init__(self, control: Control, world: World, agents: list[AgentInfo], warmup: float,
                 horizon: float):
        self.control = control
        self.decide = control.decide
        self.perms = sorted(world.all_perms)
        self.weight = world.weight
        self.resources = world.resources
        self.lo, self.hi = warmup, horizon
        self.exposure = Cumulative(warmup, horizon)
        # The authority accrued with no task running, kept apart.
        self._standing = Cumulative(warmup, horizon, points=1)
        # Cumulative.add without the call, bound once: up to twice per task.
        self._add, self._add_standing = self.exposure.pending.extend, self._standing.pending.extend
        # Uses, once per allowed action: start, end, weight, ... (packed: see pack_span),
        # folded into the exposure with the intervals.
        self._uses = bytearray()
        # A thief's terms (integral of its authority x remaining life, time with authority),
        # alternating, summed exactly at each fold into _blast_sums (num, den, num, den, ...).
        self._blast_terms: list[float] = []
        self._blast_sums: list[float] = []
        self.probes = 0
        self._memo: dict[tuple, tuple[tuple[frozenset[Perm], frozenset[Perm]],
                                      tuple[frozenset[Perm], frozenset[Perm]]]] = {}
        # Every Weighed is made once and kept here (or in _unions): the other caches key on
        # their ids.
        self._unions: dict[tuple, Weighed] = {}
        self._pairs: dict[tuple, tuple[dict[Perm, float], float, float]] = {}
        self._interned: dict[frozenset[Perm], Weighed] = {}
        # id(credential) -> its grant; ids are stable: the ledger keeps every credential.
        self._grants: dict[int, tuple] = {}
        # (memo entry, declared scope) -> (owned, stolen); the memo entry alone for decisions
        # that do not depend on the declared scope.
        self._scoped: dict[tuple, tuple[Weighed, Weighed]] = {}
        self._unscoped: dict[tuple, tuple[Weighed, Weighed]] = {}
        # Credentials are told apart by what they grant, not by which object they are, unless
        # the model finds its own state by credential (layered: its members' parts).
        self._by_object = type(control).credential_identity_matters
        self._standing_of = control.standing_credential
        self._quarantined = control.quarantined  # identity -> until (the control mutates it)
        self._by_identity: dict[str, set[int]] = {}
        self._holding = False  # between hold() and the next enter or leave
        self._held: set[str] | None = None  # identities changed meanwhile (None: none)
        self.state: list[_AgentState] = []
        for a in agents:
            ident = a.standing_identity
            idle = (Context(ident, None, None, ident, a.role, "none") if ident is not None
                    else None)
            self.state.append(_AgentState(a, idle))
            if ident is not None:
                self._by_identity.setdefault(ident, set()).add(a.index)

    # -- change points (called by the engine and the ledger) ---------------------------------
    def start(self, now: float) -> None:
        for i in range(len(self.state)):
            self._reprobe(i, now)

    def hold(self) -> None:
        """Collect `changed` calls until the next enter or leave (the engine brackets a task's
        start and end hooks with this: the enter or leave probes that agent anyway)."""
        self._holding = True

    def begin(self, i: int, identity: str, ctx: TaskContext, cred: Credential | None, origin: str,
              origin_role: frozenset[Perm], token_mode: str, now: float) -> Context:
        """`enter` for the engine, which hands over the parts of the task's context: returns
        the context, the agent's previous one when the fast path applies.

        The fast path, once per task in the usual case: the agent's previous task ended by
        leave's fast path, nothing probed the agent since (_AgentState.fast), and this task's
        context matches that one in everything a probe reads (the memo's context key and the
        declared scope object): its probe (still in that context's fields) and the union hold
        as they were, and no Context is built."""
        st = self.state[i]
        task = ctx.task
        if (st.fast is _READY and cred is None and self._held is None and st.idle_until > now
                and st.spare_key == (identity, task.type, task.depth, origin, origin_role,
                                     token_mode)
                and st.spare_declared is task.declared):
            c = st.spare
            c.ctx = ctx  # type: ignore[union-attr]
            self._holding = False
            st.marks.append(now)  # integrated later (_expand)
            st.allowed = st.task_allowed  # the rest of the switch is left to _settle
            st.fast = c
            return c  # type: ignore[return-value]
        c = Context(identity, ctx, cred, origin, origin_role, token_mode)
        self.enter(i, c, now)
        return c

    def enter(self, i: int, c: Context, now: float) -> None:
        """Agent i starts working on a task in context `c`."""
        st = self._settle(i)
        idle = st.idle
        if (self.shortcuts and idle is not None and not st.tasks and not st.held
                and st.valid_until > now and idle.identity == c.identity):
            # A task under the standing identity, nothing else running: what _advance and
            # _reprobe do, without their general bookkeeping.
            held, self._held, self._holding = self._held, None, False
            self._integrate(st, now)
            st.tasks = (c,)
            if held and c.identity in held:  # the start hook changed this identity
                self._probe(st.agent, idle, now)
            self._probe(st.agent, c, now)
            self._pair(st, idle, c)
            st.fast = c if self._remember(st, idle, c, now) else None
            if held:
                self._release(held, i, now)
            return
        self._advance(i, now)
        st.tasks = (*st.tasks, c)
        if st.idle is None or st.idle.identity != c.identity:
            self._by_identity.setdefault(c.identity, set()).add(i)
        # Only the new context needs a probe unless the task's start hook changed something
        # about this agent's identities (then every context is checked).
        self._reprobe(i, now, None if self._touched(st) else (c,))
        self._release_held(i, now)

    def leave(self, i: int, c: Context, now: float) -> None:
        """Agent i's task in context `c` ended. A credential of its own that is still live
        stays with the agent (task inactive) until it expires or is revoked: the agent could
        still present it (token_replay)."""
        st = self.state[i]
        if st.fast is c and self._held is None and st.task_until > now:
            # The task began by a fast path or short cut, nothing probed the agent since: back
            # to the standing identity alone, whose probe is the one _remember kept. c (no
            # credential of its own) keeps its probe for begin to reuse.
            self._holding = False
            st.marks.append(now)  # integrated later (_expand)
            st.allowed = st.idle_allowed  # the rest of the switch is left to _settle
            st.fast = _READY
            return
        st = self._settle(i)
        idle = st.idle
        kept = c.cred is not None and c.cred.live(now)
        if (self.shortcuts and not kept and idle is not None and len(st.tasks) == 1
                and not st.held and st.valid_until > now and idle.identity == c.identity):
            # Back to the standing identity alone (see enter).
            held, self._held, self._holding = self._held, None, False
            self._integrate(st, now)
            st.tasks = ()
            c.active, c.stamp = False, _UNPROBED
            if held and c.identity in held:
                self._probe(st.agent, idle, now)
            (st.allowed, st.weight), st.thief = idle.owned, idle.stolen[1]
            st.life_end, st.valid_until = idle.life, idle.until
            st.fast = None  # the task was probed again: its context is not kept for reuse
            if held:
                self._release(held, i, now)
            return
        self._advance(i, now)
        st.tasks = tuple(t for t in st.tasks if t is not c)
        c.active, c.stamp = False, _UNPROBED
        if kept:
            st.held.append(c)
        elif (st.idle is None or st.idle.identity != c.identity) and not any(
                t.identity == c.identity for t in (*st.tasks, *st.held)):
            self._by_identity[c.identity].discard(i)
        # The other contexts' probes still hold unless the end hook changed something.
        self._reprobe(i, now, None if self._touched(st) else ((c,) if kept else ()))
        self._release_held(i, now)

    def changed(self, identity: str, now: float) -> None:
        """Something about `identity` changed (a credential, a quarantine): probe again."""
        if self._holding:
            if self._held is None:
                self._held = set()
            self._held.add(identity)
            return
        for i in sorted(self._by_identity.get(identity, ())):
            self._advance(i, now)
            self._reprobe(i, now)

    def _touched(self, st: _AgentState) -> bool:
        """A change was collected (hold) for one of the agent's identities."""
        held = self._held
        if not held:
            return False
        return ((st.idle is not None and st.idle.identity in held)
                or any(c.identity in held for c in (*st.tasks, *st.held)))

    def _release_held(self, i: int, now: float) -> None:
        held, self._held, self._holding = self._held, None, False
        if held:
            self._release(held, i, now)

    def _release(self, held: set[str], i: int, now: float) -> None:
        """Probe again the other agents holding an identity that changed while held."""
        for identity in sorted(held):
            for j in sorted(self._by_identity.get(identity, ())):
                if j != i:
                    self._advance(j, now)
                    self._reprobe(j, now)

    def use_recorder(self) -> tuple[list[_AgentState], Callable[[bytes], None]]:
        """What the engine needs to record weight in use, once per allowed action (the hot
        path: no call into the probe there): agent states, whose `allowed` maps what agent i
        may use now to its weight, and a record of a use within it, taking
        pack_span(start, duration, weight). A use is not excess authority; `fold` subtracts
        them in batches."""
        return self.state, self._uses.extend

    def fold(self) -> None:
        """Fold what was integrated and used so far into the sums (the engine calls this with
        every chunk of actions it logs: memory stays bounded). Agent by agent, each one's
        spans in time order: the order, hence the rounding, is the same whichever path
        integrated them."""
        self._gather()
        self.exposure.fold()
        self._standing.fold()
        if self._blast_terms:
            terms = self._blast_terms
            self._blast_sums += (math.fsum(terms[0::2]), math.fsum(terms[1::2]))
            terms.clear()
        if self._uses:
            x = _take(self._uses)
            self.exposure.fold(x[:, 0], x[:, 0] + x[:, 1], -x[:, 2])  # clipped there

    def intervals(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The authority intervals integrated since the last fold, agent by agent (for
        inspection: see Cumulative.intervals)."""
        self._gather()
        return self.exposure.intervals()

    def _gather(self) -> None:
        """Hand every agent's spans, its fast paths' ones included, to the sums' buffers."""
        sum_span = self._sum
        for st in self.state:
            if st.marks:
                self._expand(st)
            if st.spans:
                for span in st.spans:
                    sum_span(*span)
                st.spans.clear()

    def finish(self) -> AuthorityResult:
        for i in range(len(self.state)):
            self._advance(i, self.hi)
        self.fold()
        sums = self._blast_sums
        return AuthorityResult(self.exposure, self._standing.total, math.fsum(sums[0::2]),
                               math.fsum(sums[1::2]), self.probes)

    # -- integration ---------------------------------------------------------------------------
    def _advance(self, i: int, t: float) -> None:
        """Integrate agent i up to t, probing again at every expiry or release before t."""
        st = self._settle(i)
        while st.valid_until <= t:
            u = st.valid_until
            self._integrate(st, u)
            self._reprobe(i, u)
        self._integrate(st, t)

    def _integrate(self, st: _AgentState, t: float) -> None:
        """Integrate agent st's authority up to t (its fields written out: _settle), as a span
        kept for the next fold."""
        a = st.last
        if t <= a:
            return
        st.last = t
        if st.weight > 0 or st.thief > 0:
            st.spans.append((a, t, st.weight, st.thief, st.life_end, not st.tasks))

    def _expand(self, st: _AgentState) -> None:
        """The spans between the instants the fast paths recorded (st.marks): from st.last
        the agent alternates between a task (what _remember kept as task_*) and its standing
        identity alone (idle_*), and is in the phase st.fast says after the last one."""
        marks = st.marks
        # The span ending at the first mark is in a task if the phase after the last mark is
        # idle and there is an odd number of them, or the phase is a task and it is even.
        in_task = (st.fast is _READY) == (len(marks) % 2 == 1)
        during = (st.task_weight, st.task_thief, st.task_life, False)
        between = (st.idle_weight, st.idle_thief, st.idle_life, True)
        a = st.last
        for t in marks:
            if t > a:
                w = during if in_task else between
                if w[0] > 0 or w[1] > 0:
                    st.spans.append((a, t, *w))
                a = t
            in_task = not in_task
        st.last = a
        marks.clear()

    def _sum(self, a: float, t: float, w: float, thief: float, life_end: float,
             standing: bool) -> None:
        """Authority w held over [a, t), a < t, by an agent whose thief would get authority
        `thief` until `life_end`; `standing`: with no task running. Intervals are appended as
        they are, clipped to [warm-up, horizon] and summed by numpy later, in this order."""
        if w > 0:
            span = pack_span(a, t, w)
            self._add(span)
            if standing:
                self._add_standing(span)
        if thief > 0:
            lo, hi = self.lo, self.hi
            a = a if a > lo else lo
            b = t if t < hi else hi
            if b > a:
                end = life_end if life_end < hi else hi
                # integral over [a, b] of (end - s) ds, what a thief still has when it steals at s
                self._blast_terms += (thief * ((end - a) ** 2 - (end - b) ** 2) / 2, b - a)

    def current(self, i: int) -> Now:
        """Agent i's authority as it stands (for inspection: reading it changes nothing)."""
        st = self.state[i]
        fast = st.fast
        if fast is _READY:
            return Now(st.idle_allowed, st.idle_weight, st.idle_thief, st.idle_life,
                       st.idle_until, ())
        if fast is not None:
            return Now(st.task_allowed, st.task_weight, st.task_thief, st.task_life,
                       st.task_until, (fast,))  # type: ignore[arg-type]
        return Now(st.allowed, st.weight, st.thief, st.life_end, st.valid_until, st.tasks)

    def _settle(self, i: int) -> _AgentState:
        """Agent i's state with every field written out, its fast paths closed. The fast
        paths of begin and leave switch only `allowed` (which the engine reads once per action)
        and record the instant (marks); the rest follows from `fast` and what _remember kept
        (`current`), and is written out here, marks integrated, before any other path reads or
        changes it."""
        st = self.state[i]
        if st.fast is not None:
            if st.marks:
                self._expand(st)
            (st.allowed, st.weight, st.thief, st.life_end, st.valid_until,
             st.tasks) = self.current(i)
            st.fast = None
        return st

    # -- probing -------------------------------------------------------------------------------
    def _reprobe(self, i: int, t: float, only: tuple[Context, ...] | None = None) -> None:
        """Bring agent i's authority up to date at t, probing `only` those contexts (None:
        all; the others' probes are known to hold)."""
        st = self._settle(i)
        idle, tasks = st.idle, st.tasks
        if st.held:
            live = [c for c in st.held if c.cred.live(t)]  # type: ignore[union-attr]
            if len(live) != len(st.held):
                st.held, only = live, None  # a held credential ended: look at everything
            tasks = (*tasks, *st.held)
        contexts = (idle, *tasks) if idle is not None else tasks
        for c in (contexts if only is None else only):
            self._probe(st.agent, c, t)
        if len(contexts) == 1:  # the common cases: idle, or a task without a standing identity
            c = contexts[0]
            (st.allowed, st.weight), st.thief = c.owned, c.stolen[1]
            st.life_end, st.valid_until = c.life, c.until
            return
        # none (a per-task identity between tasks) or several: what any of them allows
        st.allowed, st.weight = self._union([c.owned for c in contexts])
        st.thief = self._union([c.stolen for c in contexts])[1]
        st.life_end = max((c.life for c in contexts), default=-math.inf)
        st.valid_until = min((c.until for c in contexts), default=math.inf)

    def _probe(self, agent: AgentInfo, c: Context, t: float) -> None:
        """Bring context c's probe up to date at t (a few comparisons when nothing changed).
        Once per task and per change point: written out rather than in helper calls."""
        cred = c.cred
        if cred is None:
            cred = self._standing_of(c.identity)
        release = self._quarantined.get(c.identity)
        quarantined = release is not None and release > t
        # The release time itself, not only whether there is one: a quarantine extended by a
        # second flag must move the next change point.
        until = release if quarantined else None
        if cred is None:
            stamp: object = until
        else:
            revoked = cred.revoked is not None and t >= cred.revoked
            expired = t >= cred.expires
            stamp = (id(cred), revoked, expired, until)
        if c.stamp is not _UNPROBED and stamp == c.stamp:
            return
        c.stamp = stamp
        what: tuple | None
        if cred is None:
            what = None
        elif self._by_object:
            what = (id(cred), revoked, expired)
        else:  # a credential's grant and binding, what a decision can read of it
            grant = self._grants.get(id(cred))  # it never changes: computed once
            if grant is None:
                grant = self._grants[id(cred)] = (cred.holder, cred.perms, cred.bound_to,
                                                  cred.audience, cred.kind, cred.task_id >= 0)
            what = (grant, revoked, expired)
        key = (c.key, c.active, agent.archetype, what, quarantined)
        hit = self._memo.get(key)
        if hit is None:
            hit = self._memo[key] = (self._allowed(agent, c, cred, t, thief=False),
                                     self._allowed(agent, c, cred, t, thief=True))
        # Keyed by the memo's own entry: dicts compare it by identity, not element by element.
        both = self._unscoped.get(hit)  # decisions that do not read the declared scope
        if both is None:
            scoped = (hit, c.declared)
            both = self._scoped.get(scoped)
            if both is None:
                both = self._scoped[scoped] = (self._in_scope(hit[0], c.declared),
                                               self._in_scope(hit[1], c.declared))
                if hit[0][0] == hit[0][1] and hit[1][0] == hit[1][1]:
                    self._unscoped[hit] = both
        c.owned, c.stolen = both
        if cred is None:
            c.life = nxt = math.inf
        else:
            c.life = cred.end
            # when decisions may next change by time alone: its expiry, if still ahead (also
            # after a revocation: a control may ignore revocation but not expiry)
            nxt = math.inf if expired else cred.expires
        c.until = release if release is not None and quarantined and release < nxt else nxt

    def _remember(self, st: _AgentState, idle: Context, c: Context, t: float) -> bool:
        """Keep c for begin to reuse, and the agent's union and its standing identity's part
        for the fast paths of begin and leave; False: they do not apply. Valid while nothing
        probes the agent (_AgentState.fast: any change to what a decision reads reaches the
        agent through _reprobe, an expiry or release through valid_until). Kept only for a
        task presenting the standing credential with no quarantine on (the usual case)."""
        release = self._quarantined.get(c.identity)
        if c.cred is not None or (release is not None and release > t):
            return False
        st.spare, st.spare_key, st.spare_declared = c, c.key, c.declared
        st.task_allowed, st.task_weight, st.task_thief = st.allowed, st.weight, st.thief
        st.task_life, st.task_until = st.life_end, st.valid_until
        (st.idle_allowed, st.idle_weight), st.idle_thief = idle.owned, idle.stolen[1]
        st.idle_life, st.idle_until = idle.life, idle.until
        return True

    def _pair(self, st: _AgentState, idle: Context, c: Context) -> None:
        """The agent's authority from its standing identity and one task: _reprobe's union
        of two contexts, as one look-up."""
        key = (id(idle.owned), id(c.owned), id(idle.stolen), id(c.stolen))  # interned
        hit = self._pairs.get(key)
        if hit is None:
            owned = self._union([idle.owned, c.owned])
            hit = self._pairs[key] = (owned[0], owned[1], self._union([idle.stolen, c.stolen])[1])
        st.allowed, st.weight, st.thief = hit
        st.life_end = idle.life if idle.life >= c.life else c.life
        st.valid_until = idle.until if idle.until <= c.until else c.until

    def _in_scope(self, sides: tuple[frozenset[Perm], frozenset[Perm]], declared: frozenset[Perm]
                  ) -> Weighed:
        """What is allowed under a declared scope, from what is allowed in and out of scope."""
        inside, outside = sides
        allowed = (inside & declared) | (outside - declared)
        # One object per distinct set, so that the unions of contexts are looked up by id.
        hit = self._interned.get(allowed)
        if hit is None:
            hit = self._interned[allowed] = self._weighed(allowed)
        return hit

    def _union(self, parts: list[Weighed]) -> Weighed:
        key = tuple(map(id, parts))  # the parts live in the memo as long as the probe
        hit = self._unions.get(key)
        if hit is None:
            hit = self._unions[key] = self._weighed(frozenset().union(*(p for p, _ in parts)))
        return hit

    def _weighed(self, perms: frozenset[Perm]) -> Weighed:
        weights = {p: self.weight[p] for p in perms}  # every permission of the world has one
        return weights, sum(weights.values())

    def _allowed(self, agent: AgentInfo, c: Context, cred: Credential | None, t: float,
                 thief: bool) -> tuple[frozenset[Perm], frozenset[Perm]]:
        """The permissions decide() allows in context c at t, as the agent or as a thief
        presenting the agent's identity and credential from outside: (if in the declared
        scope, if not), each permission asked both ways."""
        task = c.ctx.task if c.ctx is not None else None
        req = Request(
            t, c.identity, agent.identity_mode, not thief, "external" if thief else "agent",
            agent.name, agent.archetype, agent.platform, "", "", None, ("", "", ""), 0,  # type: ignore[arg-type]
            None, -1 if task is None else task.id, "" if task is None else task.type,
            c.active, False, False, 0 if task is None else task.depth, c.origin, False,
            c.token_mode, cred, 0.0, NO_ARGS, NO_NAMES)
        sides: tuple[list[Perm], list[Perm]] = ([], [])
        for p in self.perms:
            # One request mutated per permission: decide() is pure and keeps nothing.
            req.tool, req.action, req.perm = p[0], p[1], p
            req.resource = self.resources[p[2]]
            req.entitled = p in agent.role
            req.origin_permits = p in c.origin_role
            for side, in_scope in ((0, True), (1, False)):
                req.in_scope = in_scope
                req.credential = cred
                try:
                    ok = self.decide(req).allow
                except Exception:  # a decision that cannot be made grants nothing
                    ok = False
                if ok:
                    sides[side].append(p)
        self.probes += 2 * len(self.perms)
        return frozenset(sides[0]), frozenset(sides[1])
