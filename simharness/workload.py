"""The workload of one replication: agents, tasks, plans, legitimate deviations, declared
scopes, argument values, delegation and misuse.

Pure Python and numpy, no SimPy. Nothing here depends on the control, so every control of a
replication sees the identical workload (common random numbers); `Workload.digest()` proves it.

Each agent has its own random streams, one per kind of draw, so its tasks are a function of
(seed, replication, agent) alone. That lets the engine sample an agent's next task only when the
agent gets to it (`Workload.agent_tasks`): a run holds the tasks in flight, not the whole
horizon's, and a ten-million-action run fits in the memory of a small one. Arrival times are
drawn up front (eight bytes a task), since metrics count every task that arrived. Separate
streams per kind of draw keep turning on deviations or predicted scopes from moving the plans,
timings and misuse of a replication, and raising a probability only adds to what a lower one
drew (one uniform per decision).
"""

from __future__ import annotations

import hashlib
from array import array
from bisect import bisect_right
from collections.abc import Callable, Iterator, Sequence
from itertools import accumulate

import numpy as np

from simharness import rng as seedtree
from simharness.actions import (
    NO_ARGS,
    NO_NAMES,
    Action,
    AgentInfo,
    Args,
    Delegation,
    ExtraAction,
    InjectedAction,
    MisuseInstance,
    Perm,
    SubstitutedAction,
    Task,
    alternatives,
    intern_perm,
)
from simharness.misuse import inject
from simharness.rng import BlockSampler
from simharness.spec import (
    Behaviour,
    ChoiceArg,
    ConstantArg,
    DelegateStep,
    KnownArg,
    ScenarioSpec,
)
from simharness.units import Uniform

UNIT = Uniform(dist="uniform", low=0.0, high=1.0)
_NO_MISUSE: tuple[MisuseInstance, ...] = ()

class Workload:
    """One replication's agents and tasks. Tasks are either sampled per agent on demand
    (`build_workload`) or given (scripted workloads: traces, hand-built tests).

    `agent_tasks(i)` is what the engine reads: agent i's top-level tasks in arrival order,
    sampled as it iterates. `tasks` and `misuse` materialise everything (and keep it); they are
    for analyses and tests, not for a large run.
    """

    __slots__ = ("spec", "replication", "agents", "by_archetype", "weight", "sensitivity",
                 "_builder", "_arrivals", "_offsets", "_tasks", "_misuse", "_by_agent",
                 "_top_index", "_misuse_of")

    def __init__(self, spec: ScenarioSpec, replication: int, agents: list[AgentInfo],
                 by_archetype: dict[str, list[int]], tasks: list[Task] | None,
                 misuse: list[MisuseInstance] | None, weight: dict[Perm, float],
                 sensitivity: dict[str, str], builder: WorkloadBuilder | None = None):
        self.spec = spec
        self.replication = replication
        self.agents = agents
        self.by_archetype = by_archetype
        self.weight = weight
        self.sensitivity = sensitivity  # resource -> level
        self._builder = builder  # None: the tasks are given
        self._tasks = tasks
        self._misuse = misuse
        self._by_agent: dict[int, list[Task]] | None = None
        self._top_index: dict[int, int] | None = None
        self._misuse_of: dict[int, list[MisuseInstance]] | None = None
        if builder is not None:
            self._arrivals = [builder.arrivals(a.index) for a in agents]
            self._offsets = [0, *accumulate(len(x) for x in self._arrivals)]

    @property
    def _in_hand(self) -> bool:
        """Whether the tasks are held (given, or materialised by `tasks`) rather than sampled."""
        return self._builder is None or self._tasks is not None

    # -- what the engine and the metrics read ---------------------------------------------------
    def agent_tasks(self, agent: int) -> Iterator[Task]:
        """Agent `agent`'s top-level tasks in arrival order (sampled as they are read, unless
        the workload is given or was materialised)."""
        if self._in_hand:
            return iter(self._grouped().get(agent, ()))
        assert self._builder is not None  # not in hand: sampled
        return self._builder.agent_tasks(agent, self._arrivals[agent], self._offsets[agent],
                                         self._offsets[-1])

    def working_agents(self) -> list[int]:
        """The agents with tasks, in the order their first tasks appear in `tasks`."""
        if self._in_hand:
            return list(self._grouped())
        return [a.index for a in self.agents if len(self._arrivals[a.index])]

    @property
    def n_top(self) -> int:
        """How many top-level tasks arrive over the horizon."""
        if self._in_hand:
            return len(self.tasks)
        return self._offsets[-1]

    def top_index(self, task: Task) -> int:
        """A top-level task's position in workload order (agents in order, then arrival)."""
        if self._builder is not None:
            return task.id  # sampled top-level tasks are numbered in that order
        if self._top_index is None:
            self._top_index = {t.id: i for i, t in enumerate(self.tasks)}
        return self._top_index[task.id]

    def arrived(self, lo: float, hi: float) -> int:
        """How many top-level tasks arrive in [lo, hi)."""
        if self._builder is None:
            return sum(1 for t in self.tasks if lo <= t.arrival < hi)
        return sum(int(np.searchsorted(a, hi) - np.searchsorted(a, lo)) for a in self._arrivals)

    def misuse_of(self, task: Task) -> Sequence[MisuseInstance]:
        """The misuse instances injected into this top-level task."""
        if self._builder is not None:
            if task.misuse_id < 0 or task.depth or task.kind is None:
                return _NO_MISUSE
            return (MisuseInstance(task.misuse_id, task.kind, task.id, task.agent, task.arrival),)
        if self._misuse_of is None:
            self._misuse_of = {}
            for m in self.misuse:
                self._misuse_of.setdefault(m.task, []).append(m)
        return self._misuse_of.get(task.id, _NO_MISUSE)

    # -- everything at once ---------------------------------------------------------------------
    @property
    def tasks(self) -> list[Task]:
        """Every top-level task, in arrival order per agent, agents in order (materialised)."""
        if self._tasks is None:
            self._tasks = list(self._fresh_tasks())
        return self._tasks

    @tasks.setter
    def tasks(self, tasks: list[Task]) -> None:
        self._tasks, self._by_agent, self._top_index, self._misuse_of = tasks, None, None, None
        self._builder = None

    @property
    def misuse(self) -> list[MisuseInstance]:
        if self._misuse is None:
            self._misuse = [m for t in self.tasks for m in self.misuse_of(t)]
        return self._misuse

    @misuse.setter
    def misuse(self, misuse: list[MisuseInstance]) -> None:
        """Given instances go with held tasks: a sampled workload is materialised first."""
        self.tasks = self.tasks
        self._misuse, self._misuse_of = misuse, None

    def _fresh_tasks(self) -> Iterator[Task]:
        """Every top-level task, sampled afresh (not kept) unless materialised or given."""
        if self._in_hand:
            yield from self.tasks
            return
        for a in self.agents:
            yield from self.agent_tasks(a.index)

    def _grouped(self) -> dict[int, list[Task]]:
        if self._by_agent is None:
            self._by_agent = {}
            for t in self.tasks:
                self._by_agent.setdefault(t.agent, []).append(t)
        return self._by_agent

    def digest(self) -> str:
        """sha256 of everything sampled: equal across controls of a replication.

        Numbers go in as C doubles and labels as one joined text, rather than a repr per
        action (which cost a sixth of a run). Sampled workloads are sampled afresh for it,
        one agent at a time, so the digest of a large run costs time, not memory."""
        h = hashlib.sha256()
        numbers = array("d")
        labels: list[str] = []
        for t in self.iter_tasks():
            numbers.append(t.arrival)
            labels.append(f"T{t.id}|{t.type}|{t.agent}|{t.depth}|{t.misuse_id}|{t.kind}|{t.leak_step}")
            if t.declared is not t.scope:
                labels.append(f"S{sorted(t.declared)}")
            for s in (*t.steps, *t.attacker, *t.replay):
                if isinstance(s, Delegation):
                    numbers.append(s.think)
                    labels.append(f"D{s.task.id}")
                else:
                    numbers.extend((s.think, s.duration, s.risk))
                    labels.append(_action_label(s))
            if len(labels) > 65536:  # in pieces, so a large workload is never held at once
                h.update(numbers.tobytes())
                h.update("\n".join(labels).encode() + b"\n")
                numbers, labels = array("d"), []
        h.update(numbers.tobytes())
        h.update("\n".join(labels).encode())
        return h.hexdigest()

    def iter_tasks(self) -> Iterator[Task]:
        """Every task including delegated sub-tasks, depth first."""
        for top in self._fresh_tasks():
            stack = [top]
            while stack:
                t = stack.pop()
                yield t
                stack.extend(s.task for s in reversed(t.steps) if isinstance(s, Delegation))


def _action_label(a: Action) -> str:
    label = f"{a.perm}|{a.bytes_out}"
    if type(a) is not Action:  # the common case: only the permission and bytes vary
        label += (f"|{a.source}|{a.misuse_id}|{a.kind}|{a.goal}|{a.present}|{a.as_agent}|"
                  f"{a.entitled}|{a.data_sensitivity}")
    if a.args is not None:
        args = a.args
        label += f"|{sorted(args.values.items())}|{sorted(args.unknown)}"
        if args.derived or args.carries:
            label += f"|{sorted(args.derived)}|{sorted(args.carries)}"
    return label


def permission_weights(spec: ScenarioSpec) -> dict[Perm, float]:
    """w(p) for every (tool, action, resource) the scenario's tools can express."""
    sens = {r.name: spec.weights.sensitivity[r.sensitivity] for r in spec.resources}
    return {
        intern_perm(t.name, a, r): sens[r] * spec.weights.action[a]
        for t in spec.tools
        for a in t.actions
        for r in t.resources
    }


def role_perms(spec: ScenarioSpec, role: dict[str, list[str]]) -> frozenset[Perm]:
    """Every permission a role grants: its (tool, action) pairs on each of the tool's resources."""
    tools = {t.name: t for t in spec.tools}
    return frozenset(intern_perm(tn, a, r) for tn, acts in role.items() for a in acts
                     for r in tools[tn].resources)


AGENT_KEY = 0x5A6E  # marks an agent's streams in the seed tree (apart from the replication's)
AGENT_BLOCK = 64  # draws per block of an agent's samplers: a run holds every agent's blocks
AHEAD = 16  # an agent's tasks are sampled this many at a time (fewer switches, warm caches)


class _Streams:
    """The random streams one workload draws from, one per kind of draw: the replication's
    (`key` empty; scripted workloads) or one agent's (`key` (AGENT_KEY, agent)). Each is made
    when first used: a Generator costs about 15 us, and most scenarios use few kinds."""

    # attribute: (distribution, or None for a Generator; seed-tree role and sub-key)
    KINDS: dict[str, tuple[str | None, str, tuple[int, ...]]] = {
        "think": ("think", "timing", (0,)),
        "step": ("step", "timing", (1,)),
        "risk_benign": ("benign", "signals", ()),
        "risk_misuse": ("misuse", "signals", (1,)),
        "task_type": ("unit", "arrivals", (1,)),
        "misuse_u": ("unit", "misuse", ()),
        "delegation": (None, "delegation", ()),
        # Deviations draw their own uniforms, timings and risk scores, so that the planned
        # steps keep theirs whatever the deviation rates (paired comparisons across a sweep).
        "dev_u": ("unit", "behaviour", ()),
        "dev_think": ("think", "behaviour", (1,)),
        "dev_step": ("step", "behaviour", (2,)),
        "dev_risk": ("benign", "behaviour", (3,)),
        "scope_u": ("unit", "scope", ()),
        "arg_u": ("unit", "arguments", ()),
    }

    __slots__ = (*KINDS, "_args", "_spec", "_root", "_rep", "_key", "_block")

    def __init__(self, spec: ScenarioSpec, root: int, rep: int, key: tuple[int, ...], block: int):
        self._spec, self._root, self._rep, self._key, self._block = spec, root, rep, key, block
        self._args: dict[tuple[str, int], BlockSampler] = {}

    def __getattr__(self, name: str):
        """A kind's sampler (its bound `next`) or Generator, made on first use."""
        if name not in self.KINDS:
            raise AttributeError(name)
        dist, role, sub = self.KINDS[name]
        rng = seedtree.stream(self._root, self._rep, role, *self._key, *sub)
        if dist is None:
            made: object = rng
        else:
            spec = self._spec
            d = {"think": spec.timing.think, "step": spec.timing.step, "unit": UNIT,
                 "benign": spec.signals.risk.benign, "misuse": spec.signals.risk.misuse}[dist]
            made = BlockSampler(d, rng, self._block).next
        setattr(self, name, made)
        return made

    def arg_sampler(self, name: str, dist) -> Callable[[], float]:
        """The sampler of a numeric argument (its own stream, numbered in order of first use)."""
        key = (name, id(dist))
        sampler = self._args.get(key)
        if sampler is None:
            sampler = self._args[key] = BlockSampler(
                dist, seedtree.stream(self._root, self._rep, "arguments", *self._key,
                                      1 + len(self._args)), self._block)
        return sampler.next


class WorkloadBuilder:
    """Samples one replication's workload from the seed tree."""

    def __init__(self, spec: ScenarioSpec, replication: int, root_seed: int | None = None):
        self.spec = spec
        self.replication = replication
        root = self._root = spec.seed if root_seed is None else root_seed
        # Scripted workloads (traces, injection cases) draw from the replication's streams;
        # sampled ones from each agent's own (`agent_tasks`).
        self._script = self._s = _Streams(spec, root, replication, (), 4096)
        # Ids of the tasks being sampled: the next one, and the step to the one after.
        self._next_id, self._id_step = 0, 1
        self._script_next = 0  # scripted tasks are numbered in call order
        self.declared_rule = spec.scope_rule()
        self.weight = permission_weights(spec)
        self.sensitivity = {r.name: r.sensitivity for r in spec.resources}
        self.sens_weight = spec.weights.sensitivity
        self.agents: list[AgentInfo] = []
        self.by_archetype: dict[str, list[int]] = {}
        self.role_of: dict[str, frozenset[Perm]] = {}
        for a in spec.agents:
            self.role_of[a.name] = role_perms(spec, a.role)
            self.by_archetype[a.name] = []
            for i in range(a.count):
                idx = len(self.agents)
                self.by_archetype[a.name].append(idx)
                self.agents.append(AgentInfo(idx, f"{a.name}-{i}", a.name, a.identity, a.platform,
                                             self.role_of[a.name]))
        self.behaviour: dict[str, Behaviour] = {a.name: spec.behaviour_of(a.name) for a in spec.agents}
        self._plans: dict[str, tuple[list, frozenset[Perm], bool]] = {}
        self._explore: dict[tuple[str, str], tuple[list[Perm], list[float]]] = {}
        self._predict: dict[tuple[str, frozenset[Perm]], tuple[list[Perm], list[Perm]]] = {}

    def build(self) -> Workload:
        """The replication's workload; its tasks are sampled per agent as they are read."""
        return Workload(self.spec, self.replication, self.agents, self.by_archetype, None, None,
                        self.weight, self.sensitivity, builder=self)

    def arrivals(self, agent: int) -> np.ndarray:
        """Arrival times of an agent's top-level tasks on [0, horizon) (a Poisson process)."""
        arch = self.spec.agent(self.agents[agent].archetype)
        if not arch.tasks or arch.task_rate <= 0:
            return np.empty(0)
        rng = seedtree.stream(self._root, self.replication, "arrivals", AGENT_KEY, agent)
        rate, horizon = arch.task_rate, self.spec.horizon
        block = int(rate * horizon * 1.1) + 16
        times = np.cumsum(rng.exponential(1.0 / rate, block))
        while times[-1] < horizon:  # rare: the block fell short of the horizon
            more = times[-1] + np.cumsum(rng.exponential(1.0 / rate, block))
            times = np.concatenate([times, more])
        return times[: np.searchsorted(times, horizon)]

    def agent_tasks(self, agent: int, arrivals: np.ndarray, first_id: int, n_top: int
                    ) -> Iterator[Task]:
        """Agent `agent`'s top-level tasks, sampled as they are asked for (AHEAD at a time,
        which changes no value: the agent's streams are its own), from the agent's own
        streams. Top-level task k is numbered first_id + k (workload order); the j-th sub-task
        sampled inside it first_id + k + j * n_top, so ids never depend on which agent was
        sampled first. A misuse instance takes its task's id."""
        streams = _Streams(self.spec, self._root, self.replication, (AGENT_KEY, agent),
                           AGENT_BLOCK)
        spec = self.spec
        arch = spec.agent(self.agents[agent].archetype)
        names = list(arch.tasks)
        cdf = list(accumulate(arch.tasks[n] for n in names))
        pick_type = (lambda: names[0]) if len(names) == 1 else (  # no draw for a single type
            lambda: names[min(bisect_right(cdf, streams.task_type() * cdf[-1]), len(names) - 1)])
        kinds = [k for k, w in spec.misuse.kinds.items() if w > 0]
        rate = spec.misuse.rate if kinds else 0.0
        kind_w = np.array([spec.misuse.kinds[k] for k in kinds], dtype=float)
        task = self._task
        for k0 in range(0, len(arrivals), AHEAD):
            self._s = streams
            batch = []
            for tid, arrival in enumerate(arrivals[k0:k0 + AHEAD].tolist(), first_id + k0):
                self._next_id, self._id_step = tid, n_top
                t = task(pick_type(), agent, arrival, 0)
                if rate > 0:
                    # Always four uniforms per task so the misuse stream stays aligned when the
                    # rate changes (a sweep over misuse.rate keeps the same victims).
                    u = (streams.misuse_u(), streams.misuse_u(), streams.misuse_u(),
                         streams.misuse_u())
                    if u[0] < rate:
                        for kind in _kind_order(kinds, kind_w, u[1]):
                            if inject(self, t, kind, tid, u[2], u[3]):
                                break
                batch.append(t)
            yield from batch

    def _plan(self, ttype: str) -> tuple[list, frozenset[Perm], bool]:
        """A task type's steps as (perm, bytes_out, args spec, carries, {arg: resource it is
        found in}) or DelegateStep, its scope, and whether it is tool steps without arguments
        only (cached). An undeclared value is found in the
        plan's last read before the step unless the step names the resource (`found_in`)."""
        plan = self._plans.get(ttype)
        if plan is None:
            steps: list = []
            last_read: str | None = None
            for s in self.spec.tasks[ttype].steps:
                if isinstance(s, DelegateStep):
                    steps.append(s)
                    continue
                found = {name: getattr(a, "found_in", None) or last_read
                         for name, a in s.args.items() if isinstance(a, KnownArg)}
                steps.append((intern_perm(s.tool, s.action, s.resource), s.bytes_out, s.args,
                              frozenset(s.carries), found))
                if s.action == "read":
                    last_read = s.resource
            scope = frozenset(s[0] for s in steps if not isinstance(s, DelegateStep))
            simple = all(not isinstance(s, DelegateStep) and not s[2] and not s[3] for s in steps)
            plan = self._plans[ttype] = (steps, scope, simple)
        return plan

    def task(self, ttype: str, agent: int, arrival: float) -> Task:
        """One top-level task of a type, sampled as a run samples it, from the replication's
        streams and numbered in call order (scripted workloads)."""
        self._s, self._next_id, self._id_step = self._script, self._script_next, 1
        try:
            return self._task(ttype, agent, arrival, depth=0)
        finally:
            self._script_next = self._next_id

    def _task(self, ttype: str, agent: int, arrival: float, depth: int) -> Task:
        tid = self._next_id
        self._next_id += self._id_step
        st = self._s
        plan, scope, simple = self._plan(ttype)
        archetype = self.agents[agent].archetype
        deviation = self.behaviour[archetype].deviation
        deviates = deviation.extra > 0 or deviation.substitute > 0
        think, step_time, risk = st.think, st.step, st.risk_benign
        if simple and not deviates:  # the common case: tool steps only, as planned, no args
            return Task(tid, ttype, agent, arrival,
                        [Action(p[0], think(), step_time(), risk(), p[1]) for p in plan],
                        scope, depth, declared=self.declare(archetype, scope),
                        declared_args=NO_ARGS)
        steps: list = []
        declared_args: dict[str, set] = {}  # what the task's request states, by argument name
        for step in plan:
            if isinstance(step, DelegateStep):
                pool = self.by_archetype[step.delegate]
                who = pool[int(st.delegation.integers(len(pool)))]
                sub = self._task(step.task, who, arrival, depth + 1)
                steps.append(Delegation(think(), sub))
                continue
            perm, bytes_out, arg_specs, carries, found = step
            cls = Action
            if deviates:
                extra, perm, cls = self._deviate(archetype, ttype, scope, perm, deviation)
                if extra is not None:
                    steps.append(extra)
            args = self._args(arg_specs, tid, found, carries) if arg_specs or carries else None
            if args is not None and args.values:
                for name, value in args.values.items():
                    if name not in args.unknown:
                        declared_args.setdefault(name, set()).add(value)
            # Positional, in the order of `action()`: think, duration, risk.
            steps.append(cls(perm, think(), step_time(), risk(), bytes_out, args))
        return Task(tid, ttype, agent, arrival, steps, scope, depth,
                    declared=self.declare(archetype, scope),
                    declared_args={k: frozenset(v) for k, v in declared_args.items()}
                    if declared_args else NO_ARGS)

    # -- legitimate deviations -----------------------------------------------------------------
    def _deviate(self, archetype: str, ttype: str, scope: frozenset[Perm], perm: Perm,
                 deviation) -> tuple[Action | None, Perm, type[Action]]:
        """(an extra action before the step or None, the step's permission, its class).

        Always the same draws per planned step (two decisions, two picks, one extra action's
        timing and risk), so the deviations at a lower rate are a subset of those at a higher."""
        st = self._s
        dev_u = st.dev_u
        u_extra, u_pick, u_sub, u_alt = dev_u(), dev_u(), dev_u(), dev_u()
        timing = st.dev_think(), st.dev_step(), st.dev_risk()
        extra = None
        if u_extra < deviation.extra:
            cands, cdf = self._explore_mix(archetype, ttype, scope, deviation)
            if cands:
                pick = cands[min(bisect_right(cdf, u_pick * cdf[-1]), len(cands) - 1)]
                extra = ExtraAction(pick, *timing)
        cls: type[Action] = Action
        if u_sub < deviation.substitute:
            alts = alternatives(self.role_of[archetype], perm)
            if alts:
                perm, cls = alts[min(int(u_alt * len(alts)), len(alts) - 1)], SubstitutedAction
        return extra, perm, cls

    def _explore_mix(self, archetype: str, ttype: str, scope: frozenset[Perm], deviation
                     ) -> tuple[list[Perm], list[float]]:
        """Role permissions off the plan, with the cumulative explore weights of their actions."""
        key = (archetype, ttype)
        hit = self._explore.get(key)
        if hit is None:
            weights = deviation.explore_weights()
            cands = [p for p in sorted(self.role_of[archetype] - scope) if weights.get(p[1], 0) > 0]
            hit = self._explore[key] = (cands, list(accumulate(weights[p[1]] for p in cands)))
        return hit

    # -- declared scope ------------------------------------------------------------------------
    def declare(self, archetype: str, scope: frozenset[Perm]) -> frozenset[Perm]:
        """What the control is told when the task begins (DeclaredScope)."""
        rule = self.declared_rule
        if rule.source == "plan":
            return scope
        if rule.source == "role":
            return self.role_of[archetype]
        # Keyed by the scope (one per task type here; a replayed trace has one per task).
        key = (archetype, scope)
        hit = self._predict.get(key)
        if hit is None:
            hit = self._predict[key] = (sorted(scope), sorted(self.role_of[archetype] - scope))
        planned, others = hit
        u = self._s.scope_u
        # One uniform per permission, always: a higher recall keeps a superset.
        kept = [p for p in planned if u() < rule.recall]
        added = [p for p in others if u() < rule.extra]
        declared = frozenset(kept + added)
        return scope if declared == scope else declared

    # -- arguments -----------------------------------------------------------------------------
    def _args(self, specs: dict, task_id: int, found: dict[str, str | None],
              carries: frozenset[str]) -> Args:
        """Argument values of one planned step; names whose value the task did not declare and
        the resources those were read from; the resources whose data it passes on."""
        values: dict = {}
        unknown: set[str] = set()
        st = self._s
        for name, spec in specs.items():
            if isinstance(spec, KnownArg):
                declared = st.arg_u() < spec.known
                values[name] = f"{name}:t{task_id}" if declared else f"{name}:t{task_id}:found"
                if not declared:
                    unknown.add(name)
            elif isinstance(spec, ConstantArg):
                values[name] = spec.value
            elif isinstance(spec, ChoiceArg):
                names = list(spec.choice)
                cdf = list(accumulate(spec.choice.values()))
                values[name] = names[min(bisect_right(cdf, st.arg_u() * cdf[-1]), len(names) - 1)]
            else:  # a distribution: a number, e.g. an amount
                values[name] = float(st.arg_sampler(name, spec)())
        derived = frozenset(r for n in unknown if (r := found[n]) is not None)
        return Args(values, frozenset(unknown) if unknown else NO_NAMES, derived or NO_NAMES,
                    carries or NO_NAMES)

    def benign_risk(self) -> float:
        """A risk score of a legitimate action (from the scenario's signals)."""
        return self._s.risk_benign()

    def injected(self, perm: Perm, **labels) -> InjectedAction:
        """A freshly sampled injected action (think, duration, misuse-risk) for a permission."""
        st = self._s
        risk = st.risk_misuse()
        return InjectedAction(perm, st.think(), st.step(), risk, **labels)


def _kind_order(kinds: list[str], weights: np.ndarray, u: float) -> list[str]:
    """The kind drawn by weight first, then the others in weight order (fallbacks when the
    drawn kind does not fit the task, e.g. a delegation kind on a task without hand-off)."""
    cdf = np.cumsum(weights) / weights.sum()
    first = int(np.searchsorted(cdf, u, side="right"))
    first = min(first, len(kinds) - 1)
    rest = sorted((k for i, k in enumerate(kinds) if i != first),
                  key=lambda k: (-weights[kinds.index(k)], k))
    return [kinds[first], *rest]


def build_workload(spec: ScenarioSpec, replication: int, root_seed: int | None = None) -> Workload:
    """The workload of one replication (identical for every control): its arrival times now,
    its tasks as they are read."""
    return WorkloadBuilder(spec, replication, root_seed).build()
