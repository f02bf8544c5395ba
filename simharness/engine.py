"""The discrete-event model: agent, task and step processes, decision paths with PDP /
token-service queues, the detector, and the action log (tuples appended to a list).

The engine owns time. Controls never see the event loop: the engine builds a Request, turns the
control's decision path into latency (queueing included) and calls the pure `decide`.

Processes are generators in the SimPy style, but every one of them only ever sleeps (queues are
computed arithmetically, a delegation runs inline with `yield from`), so the event loop is the
small `Kernel` below rather than SimPy's Environment: a heap of (time, sequence, process)
without an Event object, callbacks or a resume trampoline per wake-up. On the 200-agent
benchmark this is what takes the engine past a bare SimPy model of the same event structure
(`simharness.bench.engine_speed`).
"""

from __future__ import annotations

import collections
import gc
import heapq
import itertools
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from simharness import rng as seedtree
from simharness.actions import (
    IMPERSONATE,
    NO_ARGS,
    NO_NAMES,
    OWN,
    PASSTHROUGH,
    REPLAN,
    RETRY,
    Action,
    AgentInfo,
    Delegation,
    Task,
    alternatives,
)
from simharness.authority import AuthorityProbe, AuthorityResult, pack_span
from simharness.controls.base import (
    Control,
    Credential,
    Decision,
    Ledger,
    Local,
    Request,
    Station,
    TaskContext,
)
from simharness.records import (  # noqa: F401  (re-exported: the log's layout)
    ACTION_FIELDS,
    CHUNK_ROWS,
    COMPLETED,
    FAILED,
    IN_FLIGHT,
    REVOCATION_REASONS,
    TASK_FIELDS,
    A,
    T,
)
from simharness.reviewers import APPROVED, TIMEOUT, ReviewDesk
from simharness.rng import BlockSampler, keyed_uniform
from simharness.tally import Tally
from simharness.units import Constant, Uniform
from simharness.workload import Workload

# What `_act` needs besides the action: task, agent, identity, credential, task context, chain
# origin identity and role, the delegator's credential, the sensitivity of the data read so far
# and the resources read so far.
ActContext = tuple[Task, AgentInfo, str, "Credential | None", TaskContext, str, frozenset,
                   "Credential | None", "str | None", frozenset]


class Kernel:
    """The event loop: processes are generators that yield how long to sleep (seconds).

    Wake-ups at equal times run in the order they were scheduled (a global sequence number),
    so a run is deterministic, as with SimPy's event ids."""

    __slots__ = ("now", "_heap", "_seq")

    def __init__(self) -> None:
        self.now = 0.0
        self._heap: list[tuple[float, int, object]] = []
        self._seq = itertools.count()

    def start(self, process, delay: float = 0.0) -> None:
        """Run `process` (a generator) from now + delay."""
        if not 0.0 <= delay < math.inf:
            _bad_delay(process, delay)
        heapq.heappush(self._heap, (self.now + delay, next(self._seq), process))

    def run(self, until: float) -> None:
        """Advance time, waking processes, until the next wake-up is at or after `until`."""
        heap, seq = self._heap, self._seq
        pop, push = heapq.heappop, heapq.heappush
        while heap and heap[0][0] < until:
            t, _, process = pop(heap)
            self.now = t
            try:
                delay = next(process)  # type: ignore[call-overload]
            except StopIteration:
                continue
            # A negative delay would move time backwards and a NaN one would sort anywhere
            # (ending the run silently): both are bugs in a process, never data.
            if not 0.0 <= delay < math.inf:
                _bad_delay(process, delay)
            push(heap, (t + delay, next(seq), process))
        self.now = until

    def events(self) -> int:
        """Wake-ups scheduled so far (after a run: its events; the next one is not used)."""
        return next(self._seq)


class SimPyKernel:
    """The same processes on `simpy.Environment` (the reference backend): each generator is
    driven by a SimPy process that turns every delay it yields into a Timeout.

    The Timeout that starts a process is created when `start` is called, as the Kernel takes
    its sequence number then, so wake-ups at equal times run in the same order on both and the
    two give identical action logs (tests/unit/test_backends.py). A plug-in that needs SimPy
    resources (Resource, Store, interrupts) can reach the environment as `engine.env.env`
    and start its own processes there (backend simpy only)."""

    __slots__ = ("env",)

    def __init__(self) -> None:
        import simpy

        self.env = simpy.Environment()

    @property
    def now(self) -> float:
        return float(self.env.now)

    def start(self, process, delay: float = 0.0) -> None:
        """Run `process` (a generator) from now + delay."""
        if not 0.0 <= delay < math.inf:
            _bad_delay(process, delay)
        first = self.env.timeout(delay)  # scheduled now: the Kernel's order
        self.env.process(self._drive(process, first))

    def _drive(self, process, first):
        yield first
        timeout = self.env.timeout
        for delay in process:
            if not 0.0 <= delay < math.inf:
                _bad_delay(process, delay)
            yield timeout(delay)

    def run(self, until: float) -> None:
        """Advance time, waking processes, until the next wake-up is at or after `until`."""
        if until > self.env.now:
            self.env.run(until=until)

    def events(self) -> int:
        """Events scheduled so far: timeouts and SimPy's own (process starts, the stop)."""
        return next(self.env._eid)  # type: ignore[attr-defined]


BACKENDS = ("kernel", "simpy")


def _bad_delay(process, delay: object) -> None:
    name = getattr(process, "__qualname__", type(process).__name__)
    raise ValueError(f"process {name} asked to sleep {delay!r} s: a delay must be a finite "
                     "number >= 0")


class StationState:
    """A FCFS multi-server queue, computed arithmetically.

    Requests reach a station in the order they arrive there (a process waits out varying
    local checks in front of it before visiting: Engine._lead), so with pre-sampled service
    times the start of each service is max(arrival, earliest server-free time): a heap
    of c free times gives exact FCFS waiting times (with reneging at the timeout) without any
    SimPy event. This is the hot path; it replaces a SimPy Resource and its request/release
    events (see tests/validation for the Erlang-C check)."""

    __slots__ = ("spec", "servers", "free", "rtt", "service", "busy", "cache",
                 "warmup", "horizon", "is_pdp", "waiting", "rejected", "keep_serving", "timeout")

    def __init__(self, spec: Station, rtt: BlockSampler, service: BlockSampler, warmup: float,
                 horizon: float):
        self.spec = spec
        self.servers = spec.servers
        self.free: list[float] | None = None if math.isinf(spec.servers) else [0.0] * int(spec.servers)
        self.rtt, self.service = rtt, service
        self.busy = 0.0  # server-seconds of service inside [warm-up, horizon]
        self.cache: dict = {}
        self.warmup, self.horizon = warmup, horizon
        self.is_pdp = spec.name == "pdp"  # its evaluations are counted as policy_evaluations
        # Start times of the requests accepted so far that may still be waiting: FCFS start
        # times never decrease, so those before `t` have left the queue (only with max_queue).
        self.waiting: collections.deque[float] | None = (
            collections.deque() if math.isfinite(spec.max_queue) and self.free is not None
            else None)
        self.rejected = 0  # turned away at once: the queue was full
        self.keep_serving = spec.on_timeout == "keep_serving"
        self.timeout = spec.timeout

    def visit(self, t: float) -> tuple[float, bool | None]:
        """(latency, answered in time) of a request issued at t: rtt + wait + service. A full
        queue answers at once (after the round trip) with a rejection: (rtt, None)."""
        # Once per request: conditional expressions rather than min/max calls.
        rtt = self.rtt.next()
        service = self.service.next()
        timeout = self.timeout
        free = self.free
        if free is None:
            start = t
        else:
            start = free[0] if free[0] > t else t
            waiting = self.waiting
            if waiting is not None:
                while waiting and waiting[0] <= t:
                    waiting.popleft()
                if start > t and len(waiting) >= self.spec.max_queue:
                    self.rejected += 1
                    return min(rtt, timeout), None
            if start - t + rtt >= timeout and not self.keep_serving:
                return timeout, False  # gave up while queued and dropped: never served
            heapq.heapreplace(free, start + service)
            if waiting is not None and start > t:
                waiting.append(start)
        end = start + service
        busy = (end if end < self.horizon else self.horizon) - (
            start if start > self.warmup else self.warmup)
        if busy > 0:
            self.busy += busy
        latency = start - t + service + rtt
        if latency > timeout:
            return timeout, False  # the client gives up; the server finishes regardless
        return latency, True


@dataclass
class RunLog:
    """Everything a run produced; metrics.py turns it into numbers."""

    workload: Workload
    control: Control
    actions: list[tuple]
    tasks: list[tuple]
    ledger: Ledger
    flagged: set[int]  # action-log indexes flagged by the detector
    stations: dict[str, StationState]
    policy_evaluations: int
    horizon: float
    warmup: float
    authority: AuthorityResult | None = None  # None: run without probing
    review: ReviewDesk | None = None  # the human reviewers, for models that escalate
    tally: Tally | None = None  # running totals (metrics read these, not the logs)


class Engine:
    """Runs one workload against one control."""

    def __init__(self, workload: Workload, control: Control, root_seed: int | None = None,
                 keep_plans: bool = True, probe: bool = True, backend: str | None = None,
                 keep_log: bool = True, on_chunk: Callable[[list[tuple]], None] | None = None):
        spec = workload.spec
        self.w = workload
        self.control = control
        backend = backend or spec.engine
        if backend not in BACKENDS:
            raise ValueError(f"unknown engine backend {backend!r}; choose {' or '.join(BACKENDS)}")
        self.env: Kernel | SimPyKernel = Kernel() if backend == "kernel" else SimPyKernel()
        self.ledger = Ledger(workload.weight)
        self.actions: list[tuple] = []
        self.tasks: list[tuple] = []
        # The log goes to the tally (and `on_chunk`, e.g. the audit writer) every CHUNK_ROWS
        # actions; keep_log=False drops each chunk then, so a run's memory does not grow with
        # its length (metrics come from the tally either way: the same bytes).
        self.keep_log = keep_log
        self.on_chunk = on_chunk
        self.tally = Tally(spec.warmup, spec.horizon, workload.n_top, self.ledger.credentials,
                           workload.weight)
        # Bound once: called at every task's start and end.
        self._task_started, self._task_ended = self.tally.task_started, self.tally.task_ended
        self._top_index, self._misuse_of = workload.top_index, workload.misuse_of
        self._fed = 0  # actions of `actions` handed on already
        self._dropped = 0  # actions handed on and dropped (keep_log=False)
        self._flush_at = CHUNK_ROWS
        self._collect = False  # whether the caller had the collector on (set by run)
        self.flagged: set[int] = set()
        self.policy_evaluations = 0
        self.horizon, self.warmup = spec.horizon, spec.warmup
        self.abort = spec.on_deny == "abort"
        self.on_deny = {a.name: spec.behaviour_of(a.name).on_deny for a in spec.agents}
        # False: drop each task's steps when it ends. Only a workload whose tasks are held
        # (given, e.g. a replayed trace, or materialised) keeps them past the task; metrics need
        # only arrivals, misuse instances and attacker/replay tails (the workload is single-use
        # then: its digest changes).
        self.keep_plans = keep_plans
        root = self.root = spec.seed if root_seed is None else root_seed
        rep = workload.replication
        self._stream_id = 0

        def sampler(dist) -> BlockSampler:
            self._stream_id += 1
            return BlockSampler(dist, seedtree.stream(root, rep, "control", self._stream_id))

        self.stations: dict[str, StationState] = {}
        # (True, latency sampler) for a local check | (False, StationState) for a queue
        self.stages: list[tuple[bool, Any]] = [
            (True, sampler(stage.latency)) if isinstance(stage, Local)
            else (False, self._station(stage, sampler)) for stage in control.path()]
        # Local checks in front of the first queue whose time varies: a request reaches that
        # queue only after them, so the requesting process waits them out first and the queue
        # sees requests in the order they arrive there, not the order they were issued.
        path = control.path()
        lead = 0
        while lead < len(path) and isinstance(path[lead], Local):
            lead += 1
        varies = any(isinstance(st, Local) and not isinstance(st.latency, Constant)
                     for st in path[:lead])
        self._lead = lead if lead < len(path) and varies else 0
        # Skip a method call per action for models that see everything (most of them).
        self._always_visible = type(control).visible is Control.visible
        self.caching = [st for local, st in self.stages
                        if not local and st.spec.cache_ttl > 0]  # type: ignore[union-attr]
        self._observes = type(control).observe is not Control.observe
        # Task start and end hooks that do something (most models keep the base no-ops):
        # without them a task start issues nothing and the probe need not hold changes.
        self._task_hooks = (type(control).on_task_start is not Control.on_task_start
                            or type(control).on_task_end is not Control.on_task_end)
        self._reasons: dict[tuple[str, ...], str] = {}
        ts = control.token_service()
        self.token_station = self._station(ts, sampler) if ts is not None else None
        pool = control.reviewers()
        self.review = (ReviewDesk(pool, sampler(pool.service),
                                  sampler(Uniform(dist="uniform", low=0.0, high=1.0)),
                                  self.warmup, self.horizon) if pool is not None else None)
        self.resources = {r.name: r for r in spec.resources}
        det = control.params.detector
        self.detector = (det.threshold, det.delay) if det is not None else None
        self._sens_w = spec.weights.sensitivity
        self._act_w = spec.weights.action
        self._sensitivity = workload.sensitivity
        # Authority (exposure, blast radius) is measured by probing the control's decide().
        self.probe = (AuthorityProbe(control, control.world, workload.agents, spec.warmup,
                                     spec.horizon) if probe else None)
        # Weight in use, recorded once per allowed action (AuthorityProbe.use_recorder).
        self._use_states: list | None = None
        self._record_use: Callable[[bytes], None] | None = None
        if self.probe is not None:
            self._use_states, self._record_use = self.probe.use_recorder()

    def _station(self, st: Station, sampler) -> StationState:
        state = StationState(st, sampler(st.rtt), sampler(st.service), self.warmup, self.horizon)
        self.stations[st.name] = state
        return state

    # -- running ----------------------------------------------------------------------------
    def run(self) -> RunLog:
        """Simulate to the horizon and return the log."""
        if self.probe is not None:
            self.ledger.on_change = self.probe.changed
        # Standing credentials exist from the start, whether or not the agent works today.
        for agent in self.w.agents:
            if agent.standing_identity is not None:
                self.control.credential_for(agent.standing_identity, agent.archetype,
                                            agent.platform == "first_party", self.ledger, 0.0)
        if self.probe is not None:
            self.probe.start(0.0)
        for idx in self.w.working_agents():
            agent = self.w.agents[idx]
            tasks = self.w.agent_tasks(idx)  # sampled as the agent gets to them
            slots = self.w.spec.agent(agent.archetype).concurrency
            # One at a time keeps the original process (same events, same bytes).
            self.env.start(self._agent(agent, tasks) if slots == 1
                           else self._agent_concurrent(agent, tasks, slots))
        # The run makes almost no reference cycles (a 6 h baseline run: about 200 objects), so
        # the collector's automatic passes over the tasks, records and log it creates would
        # find nothing (they cost a twentieth of a run). It is paused for the run and what
        # exists when the run starts is frozen out of its passes. The price: cyclic garbage a
        # plug-in control makes during the run is freed only after it (a pass at every
        # hand-over of the log cost as much as the automatic ones).
        self._collect = gc.isenabled()
        gc.disable()
        gc.freeze()
        try:
            self.env.run(self.horizon)
        finally:
            gc.unfreeze()
            if self._collect:
                gc.enable()
        self._flush(math.inf)
        return RunLog(self.w, self.control, self.actions, self.tasks, self.ledger,
                      self.flagged, self.stations, self.policy_evaluations, self.horizon,
                      self.warmup, self.probe.finish() if self.probe is not None else None,
                      self.review, self.tally)

    def _flush(self, now: float) -> None:
        """Hand the actions logged since the last flush to the tally and `on_chunk`."""
        if self.probe is not None:  # its buffers stay as short as the log's
            self.probe.fold()
        chunk = self.actions[self._fed:]
        self.tally.add_actions(chunk, now)
        if self.on_chunk is not None and chunk:
            self.on_chunk(chunk)
        if self.keep_log:
            self._fed = len(self.actions)
        else:
            self._dropped += len(chunk)
            self.actions = []
        self._flush_at = self._fed + CHUNK_ROWS

    def _agent(self, agent: AgentInfo, tasks: Iterable[Task]):
        env = self.env
        for task in tasks:
            if env.now < task.arrival:
                yield task.arrival - env.now
            yield from self._task(task, None)

    def _agent_concurrent(self, agent: AgentInfo, tasks: Iterable[Task], slots: float):
        """An agent working on up to `slots` tasks at once: each starts on arrival if a slot
        is free, else when the earliest waiting task gets one (FCFS)."""
        env = self.env
        waiting: collections.deque[Task] = collections.deque()
        running = [0]

        def work(task: Task):
            yield from self._task(task, None)
            running[0] -= 1
            if waiting:
                running[0] += 1
                env.start(work(waiting.popleft()))

        for task in tasks:
            if env.now < task.arrival:
                yield task.arrival - env.now
            if running[0] < slots:
                running[0] += 1
                env.start(work(task))
            else:
                waiting.append(task)

    def _identity(self, agent: AgentInfo, task: Task) -> str:
        return agent.standing_identity or f"{agent.name}/t{task.id}"

    def _task(self, task: Task, parent_cred: Credential | None,
              origin: tuple[str, frozenset] | None = None):
        """A task process: returns True when it completed every step."""
        env, control, ledger = self.env, self.control, self.ledger
        agent = self.w.agents[task.agent]
        identity = self._identity(agent, task)
        revocable = agent.platform == "first_party"
        ctx = TaskContext(task, agent, identity, parent_cred, task.depth, revocable)
        # The chain origin: identity and role of the agent whose top-level task this serves.
        origin_identity, origin_role = origin or (identity, agent.role)
        start = env.now
        record = [task.id, task.agent, task.type, task.depth, task.arrival, start, math.nan,
                  IN_FLIGHT, task.misuse_id, identity]
        if self.keep_log:
            self.tasks.append(record)  # type: ignore[arg-type]
        self._task_started(record)
        probe, held, hooks = self.probe, None, self._task_hooks
        cred = None
        if hooks:
            if probe is not None:
                probe.hold()
            cred = control.on_task_start(ctx, ledger, env.now)
        if probe is not None:
            mode = "none" if task.depth == 0 else (
                "passthrough" if cred is not None and cred is parent_cred else "exchange")
            held = probe.begin(agent.index, identity, ctx, cred, origin_identity, origin_role,
                               mode, env.now)
        if cred is not None and cred is not parent_cred and self.token_station is not None:
            yield self.token_station.visit(env.now)[0]
        ok = True
        on_deny = self.on_deny[agent.archetype]
        data: str | None = None  # sensitivity of the most sensitive data the task has read
        reads: frozenset[str] = NO_NAMES  # the resources it has read
        # One SimPy event per action: after a decision the task sleeps through the action's
        # latency and execution *and* the next step's think time, waking exactly at the next
        # request, where every decision input (revocations, expiry) is read.
        pending = 0.0
        for i, step in enumerate(task.steps):
            yield pending + step.think
            pending = 0.0
            if isinstance(step, Delegation):
                # The delegator waits for the sub-task: run it inline.
                sub_ok = yield from self._task(step.task, cred, (origin_identity, origin_role))
                if not sub_ok and self.abort:
                    ok = False
                    break
                continue
            if (cred is not None and cred.kind == "task" and env.now >= cred.expires
                    and cred.revoked is None and cred is not parent_cred):
                new = control.renew(ctx, cred, ledger, env.now)
                if new is not None:
                    if held is not None:
                        held.cred = new
                        probe.changed(identity, env.now)  # type: ignore[union-attr]
                    if self.token_station is not None:
                        yield self.token_station.visit(env.now)[0]
                    cred = new
            if i == task.leak_step:
                leaked = cred if cred is not None else control.credential_for(
                    identity, agent.archetype, revocable, ledger, env.now)
                env.start(self._outside_task(task.attacker, task, agent, identity, leaked,
                                               record, stolen=True))
            if self._lead:
                allowed, pending = yield from self._act_queued(
                    step, task, agent, identity, cred, ctx, origin_identity, origin_role,
                    parent_cred, data, reads)
            else:
                allowed, pending = self._act(step, task, agent, identity, cred, ctx,
                                             origin_identity, origin_role, parent_cred, data,
                                             reads)
            if not allowed and step.misuse_id < 0:
                if on_deny.retry or on_deny.replan:
                    act: ActContext = (task, agent, identity, cred, ctx, origin_identity,
                                       origin_role, parent_cred, data, reads)
                    allowed, pending, step = yield from self._recover(step, i, pending, on_deny,
                                                                      act)
                if not allowed and self.abort:
                    ok = False
                    break
            if allowed and step.perm[1] == "read":
                res = step.perm[2]
                level = self._sensitivity[res]
                if data is None or self._sens_w[level] > self._sens_w[data]:
                    data = level
                if res not in reads:
                    reads = reads | {res}
        if pending > 0:
            yield pending
        if hooks:
            if held is not None:
                probe.hold()  # type: ignore[union-attr]
            control.on_task_end(ctx, cred, ledger, env.now)
        if held is not None:
            probe.leave(agent.index, held, env.now)  # type: ignore[union-attr]
        record[T["end"]] = env.now
        record[T["status"]] = COMPLETED if ok else FAILED
        if task.depth == 0:
            self._task_ended(record, self._top_index(task), self._misuse_of(task), task)
        if not self.keep_plans:
            task.steps = []
        if task.replay:
            env.start(self._outside_task(task.replay, task, agent, identity, cred, record,
                                           stolen=False))
        return ok

    def _recover(self, a: Action, i: int, pending: float, on_deny, act: ActContext):
        """After a denial of legitimate step i: retry it, then perhaps try an alternative
        (behaviour.on_deny). Returns (allowed, time it then takes, the action that ran). The
        replan choice is keyed on (task, step), so it is the same under every control."""
        for _ in range(on_deny.retry):
            yield pending + on_deny.backoff
            if self._lead:
                allowed, pending = yield from self._act_queued(a, *act, source=RETRY)
            else:
                allowed, pending = self._act(a, *act, source=RETRY)
            if allowed:
                return True, pending, a
        task, agent = act[0], act[1]
        if on_deny.replan and keyed_uniform(self.root, self.w.replication, task.id, i, 0) < on_deny.replan:
            alt = self._alternative(a, task, agent, keyed_uniform(self.root, self.w.replication,
                                                                  task.id, i, 1))
            if alt is not None:
                yield pending + on_deny.backoff
                if self._lead:
                    allowed, pending = yield from self._act_queued(alt, *act, source=REPLAN)
                else:
                    allowed, pending = self._act(alt, *act, source=REPLAN)
                return allowed, pending, alt
        return False, pending, a

    @staticmethod
    def _alternative(a: Action, task: Task, agent: AgentInfo, u: float) -> Action | None:
        """Another permission of the agent's role for the same action, one the task declared
        if there is any (the agent tries what it was told it may use)."""
        others = alternatives(agent.role, a.perm)
        pool = [p for p in others if p in task.declared] or others
        if not pool:
            return None
        perm = pool[min(int(u * len(pool)), len(pool) - 1)]
        return Action(perm, 0.0, a.duration, a.risk, a.bytes_out, a.args)

    def _outside_task(self, uses: Sequence[Action], task: Task, agent: AgentInfo, identity: str,
                      cred: Credential | None, record: list, stolen: bool):
        """Injected uses of a task's credential outside the task: an outside attacker after a
        leak (`stolen`) or the agent replaying it after the task ended. Offsets count from now."""
        env = self.env
        t0 = env.now
        for a in uses:
            wait = t0 + a.think - env.now
            if wait > 0:
                yield wait
            presented = cred if cred is not None or stolen else self.control.credential_for(
                identity, agent.archetype, agent.platform == "first_party", self.ledger, env.now)
            if stolen:  # the attacker claims the holder and the (possibly still running) task
                req = self._request(a, task, agent, cred.holder if cred is not None else identity,
                                    False, "external", cred, record[T["status"]] == IN_FLIGHT,
                                    identity, agent.role, "none")
            else:
                req = self._request(a, task, agent, identity, True, "agent", presented, False,
                                    identity, agent.role, "none")
            lead = self._lead_time() if self._lead else 0.0
            if lead > 0:
                yield lead
            self._decide(a, req, task, agent, lead=lead)  # the next use has its own offset

    def _act(self, a: Action, task: Task, agent: AgentInfo, identity: str,
             cred: Credential | None, ctx: TaskContext, origin: str, origin_role,
             parent_cred: Credential | None, data: str | None, reads: frozenset[str],
             source: str | None = None):
        """Request and decide one action of a task: (allowed, time it then takes). `data`: the
        sensitivity of what the task has read, carried by a send; `reads`: the resources it
        has read; `source` overrides the action's own (a retry)."""
        req, a, task, agent = self._step_request(a, task, agent, identity, cred, ctx, origin,
                                                 origin_role, parent_cred, data, reads)
        return self._decide(a, req, task, agent, source)

    def _step_request(self, a: Action, task: Task, agent: AgentInfo, identity: str,
                      cred: Credential | None, ctx: TaskContext, origin: str, origin_role,
                      parent_cred: Credential | None, data: str | None, reads: frozenset[str]
                      ) -> tuple[Request, Action, Task, AgentInfo]:
        """The request a task's action makes now (what it presents, as whom)."""
        control, ledger, now = self.control, self.ledger, self.env.now
        attested = True
        token_mode = "none" if task.depth == 0 else (
            "passthrough" if cred is not None and cred is parent_cred else "exchange")
        presented_identity = identity
        as_agent = None
        if a.present == OWN:
            presented = cred
            if cred is None and control.standing:  # looked up per action: it may be reissued
                presented = control.credential_for(identity, agent.archetype, ctx.revocable,
                                                   ledger, now)
        elif a.present == PASSTHROUGH:
            presented = parent_cred
            presented_identity = parent_cred.holder if parent_cred is not None else origin
            attested = False
            token_mode = "passthrough"
        elif a.present == IMPERSONATE:
            as_agent = self.w.agents[a.as_agent]
            presented_identity = as_agent.standing_identity or f"{as_agent.name}/t{task.id}"
            presented = control.credential_for(presented_identity, as_agent.archetype,
                                               as_agent.platform == "first_party", ledger, now)
            if presented is None:
                presented = cred
            attested = False
        else:  # pragma: no cover - STOLEN and REPLAY run in _outside_task
            raise AssertionError(a.present)
        req = self._request(a, task, agent, presented_identity, attested, "agent", presented, True,
                            origin, origin_role, token_mode, as_agent)
        if req.data_sensitivity is None and req.action == "send":
            req.data_sensitivity = data
        req.read_sources = reads
        return req, a, task, agent

    def _lead_time(self) -> float:
        """Draw the leading local checks' latency (only when they vary; see __init__)."""
        return sum(stage.next() for _, stage in self.stages[:self._lead])

    def _act_queued(self, *args, source: str | None = None):
        """_act for a path whose varying local checks precede a queue: build the request now,
        wait out the checks, then decide (the queue sees it when it arrives)."""
        req, a, task, agent = self._step_request(*args)
        lead = self._lead_time()
        if lead > 0:
            yield lead
        allowed, took = self._decide(a, req, task, agent, source, lead)
        return allowed, took - lead

    def _request(self, a: Action, task: Task, agent: AgentInfo, identity: str, attested: bool,
                 source: str, cred: Credential | None, active: bool, origin: str, origin_role,
                 token_mode: str, as_agent: AgentInfo | None = None) -> Request:
        tool, action, res = a.perm
        who = as_agent or agent
        args = a.args
        return Request(
            self.env.now, identity, who.identity_mode, attested, source, agent.name,
            who.archetype, agent.platform, tool, action, self.resources[res], a.perm, a.bytes_out,
            a.data_sensitivity, task.id, task.type, active, a.perm in task.declared,
            a.entitled and a.perm in who.role, task.depth, origin, a.perm in origin_role,
            token_mode, cred, a.risk, NO_ARGS if args is None else args.values,
            NO_NAMES if args is None else args.unknown, NO_NAMES,
            NO_NAMES if args is None else args.derived, NO_NAMES if args is None else args.carries)

    def _decide(self, a: Action, req: Request, task: Task, agent: AgentInfo,
                source: str | None = None, lead: float = 0.0) -> tuple[bool, float]:
        """Decide a request now and log it: (allowed, latency + execution time if allowed).
        Queues are arithmetic (StationState), so this takes no simulated time itself. `lead`:
        the leading local checks already waited out (issued at now - lead; see _lead)."""
        env, control = self.env, self.control
        t_req = env.now - lead
        visible = self._always_visible or control.visible(req)
        latency = lead
        decision: Decision | None = None
        without = False
        for local, stage in (self.stages[self._lead:] if lead or self._lead else self.stages):
            if local:
                latency += stage.next()  # type: ignore[union-attr]
                continue
            st: StationState = stage  # type: ignore[assignment]
            if not visible:
                continue
            spec = st.spec
            if spec.cache_ttl > 0:
                hit = st.cache.get(self._cache_key(st, req))
                if hit is not None and hit[1] > t_req + latency:
                    decision = hit[0]
                    continue
            d, ok = st.visit(t_req + latency)
            latency += d
            if not ok:
                without = True
                decision = self._fail(spec, "queue-full" if ok is None else "timeout")
                break
            if st.is_pdp and t_req >= self.warmup:  # measured as actions are: by issue time
                self.policy_evaluations += 1
        req.time = t_req + latency
        if decision is None:
            try:
                decision = control.decide(req)
            except Exception as e:  # a crashing evaluation is a PDP failure, never a silent allow
                without = True
                decision = self._crash(e)
            for cst in self.caching:
                cst.cache[self._cache_key(cst, req)] = (decision, req.time + cst.spec.cache_ttl)
        verdict = ""
        if decision.escalate:
            decision, verdict, wait = self._escalate(req, decision, a.misuse_id >= 0)
            latency += wait
            req.time += wait
        if self._observes:
            control.observe(req, decision)
        latency_total = req.time - t_req
        allowed = decision.allow
        duration = a.duration if allowed else 0.0
        actions = self.actions
        # A send weighs by the sensitivity of the data it carries, not of its destination.
        w = (self._sens_w[a.data_sensitivity] * self._act_w[req.action]
             if a.data_sensitivity is not None else self.w.weight.get(a.perm, 0.0))
        actions.append((
            t_req, agent.index, req.identity, req.archetype, agent.platform, task.id, task.depth, req.tool, req.action, req.resource.name, req.resource.destination,
            req.in_scope, a.misuse_id, a.kind, a.goal, source or a.source, req.source, allowed,
            self._reason_text(decision.reasons), latency_total, duration,
            req.credential.id if req.credential is not None else -1, a.risk, visible,
            allowed and visible and control.attributes(req), without and allowed, w,
            req.chain_origin, req.token_mode, verdict,
        ))
        if allowed:
            if self._use_states is not None and req.source == "agent":
                w_use = self._use_states[agent.index].allowed.get(a.perm)
                if w_use is not None:  # in use, so not excess authority
                    self._record_use(pack_span(req.time, duration, w_use))  # type: ignore[misc]
            control.on_allow(req, self.ledger, req.time)
            if self.detector is not None and visible and a.risk > self.detector[0]:
                idx = self._dropped + len(actions) - 1  # its index in the whole run's log
                env.start(self._flag(idx, req.identity, a, self.detector[1] + latency + duration))
        if len(actions) >= self._flush_at:
            self._flush(env.now)
        return allowed, latency + duration

    def _escalate(self, req: Request, decision: Decision, misuse: bool
                  ) -> tuple[Decision, str, float]:
        """Queue an escalated request for a human verdict: (final decision, verdict, wait). The
        reviewer judges the request for what it is (misuse or not), with the pool's accuracy."""
        if self.review is None:  # a plug-in escalated without reviewers: nobody can approve
            return Decision(False, (*decision.reasons, "no-reviewer"), decision.errors), "", 0.0
        wait, verdict = self.review.review(req.time, misuse)
        allow = verdict == APPROVED or (verdict == TIMEOUT and self.review.pool.on_timeout == "allow")
        return (Decision(allow, (*decision.reasons, f"review-{verdict}"), decision.errors),
                verdict, wait)

    def _reason_text(self, reasons: tuple[str, ...]) -> str:
        # One shared string per distinct reason set: a run has a handful, and a million
        # actions would otherwise each hold their own copy.
        text = self._reasons.get(reasons)
        if text is None:
            text = self._reasons[reasons] = ";".join(reasons)
        return text

    @staticmethod
    def _fail(spec: Station, why: str) -> Decision:
        """No answer from a station (`why`: timeout or queue-full): its fail mode decides."""
        if spec.fail_mode == "open":
            return Decision(True, (f"{spec.name}-{why}-fail-open",))
        return Decision(False, (f"{spec.name}-{why}-fail-closed",))

    def _crash(self, e: Exception) -> Decision:
        # Fail open only where the operator configured a station to (and it is counted then).
        mode = next((st.spec.fail_mode for local, st in self.stages if not local), "closed")
        return Decision(mode == "open", ("evaluation-error",), (f"{type(e).__name__}: {e}",))

    @staticmethod
    def _cache_key(st: StationState, req: Request) -> tuple:
        return tuple(req.resource.name if k == "resource" else getattr(req, k)
                     for k in st.spec.cache_key)

    def _flag(self, idx: int, identity: str, a: Action, delay: float):
        yield delay
        self.flagged.add(idx)
        self.tally.flag(identity, a.misuse_id, a.goal)
        self.control.on_deviation(identity, self.ledger, self.env.now)
        if self.probe is not None:  # a quarantine without credentials changes authority too
            self.probe.changed(identity, self.env.now)


def simulate(workload: Workload, control: Control, root_seed: int | None = None,
             keep_plans: bool = True, probe: bool = True, backend: str | None = None,
             keep_log: bool = True, on_chunk: Callable[[list[tuple]], None] | None = None
             ) -> RunLog:
    """Run one control on one workload (keep_plans=False: see Engine; probe=False: no
    authority measurement, so no exposure or blast radius; backend: kernel | simpy, default
    the scenario's `engine`; keep_log=False: the action and task logs are not kept, only
    what metrics need; on_chunk: called with each chunk of the action log as it is logged)."""
    return Engine(workload, control, root_seed, keep_plans, probe, backend, keep_log,
                  on_chunk).run()
