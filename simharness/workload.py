"""The pre-sampled workload of one replication: agents, tasks, plans, legitimate deviations,
declared scopes, argument values, delegation and misuse.

Pure Python and numpy, no SimPy. Everything that does not depend on the control is sampled here
once, so every control of a replication sees the identical workload (common random numbers);
`Workload.digest()` proves it. Each kind of draw has its own random stream, so turning on
deviations or predicted scopes leaves the plans, timings and misuse of a replication as they
were, and raising a probability only adds to what a lower one drew (one uniform per decision).
"""

from __future__ import annotations

import gc
import hashlib
from array import array
from bisect import bisect_right
from dataclasses import dataclass
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

@dataclass(slots=True)
class Workload:
    spec: ScenarioSpec
    replication: int
    agents: list[AgentInfo]
    by_archetype: dict[str, list[int]]
    tasks: list[Task]  # top-level tasks, in arrival order per agent, agents in order
    misuse: list[MisuseInstance]
    weight: dict[Perm, float]
    sensitivity: dict[str, str]  # resource -> level

    def digest(self) -> str:
        """sha256 of everything sampled: equal across controls of a replication.

        Numbers go in as C doubles and labels as one joined text, rather than a repr per
        action (which cost a sixth of a run)."""
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
        h = hashlib.sha256(numbers.tobytes())
        h.update("\n".join(labels).encode())
        return h.hexdigest()

    def iter_tasks(self):
        """Every task including delegated sub-tasks, depth first."""
        stack = list(reversed(self.tasks))
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


class WorkloadBuilder:
    """Samples one replication's workload from the seed tree."""

    def __init__(self, spec: ScenarioSpec, replication: int, root_seed: int | None = None):
        self.spec = spec
        self.replication = replication
        root = self._root = spec.seed if root_seed is None else root_seed
        s = spec.timing
        self._think = BlockSampler(s.think, seedtree.stream(root, replication, "timing", 0))
        self._step = BlockSampler(s.step, seedtree.stream(root, replication, "timing", 1))
        sig = seedtree.stream(root, replication, "signals")
        self._risk_benign = BlockSampler(spec.signals.risk.benign, sig)
        self._risk_misuse = BlockSampler(
            spec.signals.risk.misuse, seedtree.stream(root, replication, "signals", 1))
        self._arrivals = seedtree.stream(root, replication, "arrivals")
        self._misuse_rng = seedtree.stream(root, replication, "misuse")
        self._delegation = seedtree.stream(root, replication, "delegation")
        # Deviations draw their own uniforms, timings and risk scores, so that the planned steps
        # keep theirs whatever the deviation rates (paired comparisons across a sweep).
        dev = seedtree.stream(root, replication, "behaviour")
        self._dev_u = BlockSampler(UNIT, dev).next
        self._dev_think = BlockSampler(s.think, seedtree.stream(root, replication, "behaviour", 1)).next
        self._dev_step = BlockSampler(s.step, seedtree.stream(root, replication, "behaviour", 2)).next
        self._dev_risk = BlockSampler(spec.signals.risk.benign,
                                      seedtree.stream(root, replication, "behaviour", 3)).next
        self._scope_u = BlockSampler(UNIT, seedtree.stream(root, replication, "scope")).next
        self._arg_u = BlockSampler(UNIT, seedtree.stream(root, replication, "arguments")).next
        self._arg_samplers: dict[tuple[str, int], BlockSampler] = {}
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
        self._next_task_id = 0
        self._next_misuse_id = 0
        self._plans: dict[str, tuple[list, frozenset[Perm]]] = {}
        self._explore: dict[tuple[str, str], tuple[list[Perm], list[float]]] = {}
        self._predict: dict[tuple[str, frozenset[Perm]], tuple[list[Perm], list[Perm]]] = {}

    def build(self) -> Workload:
        """Arrivals, plans and misuse for every agent over the horizon."""
        spec = self.spec
        tasks: list[Task] = []
        misuse: list[MisuseInstance] = []
        kinds = [k for k, w in spec.misuse.kinds.items() if w > 0]
        kind_w = np.array([spec.misuse.kinds[k] for k in kinds], dtype=float)
        for agent in self.agents:
            arch = spec.agent(agent.archetype)
            if not arch.tasks or arch.task_rate <= 0:
                continue
            names = list(arch.tasks)
            p = np.array([arch.tasks[n] for n in names], dtype=float)
            p /= p.sum()
            arrivals = self._poisson(arch.task_rate, spec.horizon)
            types = self._arrivals.choice(len(names), size=len(arrivals), p=p).tolist()
            # Always four uniforms per task so the misuse stream stays aligned when the misuse
            # rate changes (a sweep over misuse.rate keeps the same victims).
            uniforms = self._misuse_rng.random((len(arrivals), 4)).tolist()
            for arrival, ti, u in zip(arrivals, types, uniforms, strict=True):
                task = self._task(names[ti], agent.index, arrival, depth=0)
                if kinds and u[0] < spec.misuse.rate:
                    order = _kind_order(kinds, kind_w, u[1])
                    for kind in order:
                        mid = self._next_misuse_id
                        if inject(self, task, kind, mid, u[2], u[3]):
                            self._next_misuse_id += 1
                            misuse.append(MisuseInstance(mid, kind, task.id, agent.index, arrival))
                            break
                tasks.append(task)
        return Workload(spec, self.replication, self.agents, self.by_archetype, tasks, misuse,
                        self.weight, self.sensitivity)

    def _poisson(self, rate: float, horizon: float) -> list[float]:
        """Arrival times of a Poisson process on [0, horizon), drawn in numpy blocks."""
        block = int(rate * horizon * 1.1) + 16
        times = np.cumsum(self._arrivals.exponential(1.0 / rate, block))
        while times[-1] < horizon:  # rare: the block fell short of the horizon
            more = times[-1] + np.cumsum(self._arrivals.exponential(1.0 / rate, block))
            times = np.concatenate([times, more])
        return times[: np.searchsorted(times, horizon)].tolist()

    def _plan(self, ttype: str) -> tuple[list, frozenset[Perm]]:
        """A task type's steps as (perm, bytes_out, args spec, carries, {arg: resource it is
        found in}) or DelegateStep, and its scope (cached). An undeclared value is found in the
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
            plan = self._plans[ttype] = (steps, scope)
        return plan

    def task(self, ttype: str, agent: int, arrival: float) -> Task:
        """One top-level task of a type, sampled as a run samples it (scripted workloads)."""
        return self._task(ttype, agent, arrival, depth=0)

    def _task(self, ttype: str, agent: int, arrival: float, depth: int) -> Task:
        tid = self._next_task_id
        self._next_task_id += 1
        plan, scope = self._plan(ttype)
        archetype = self.agents[agent].archetype
        deviation = self.behaviour[archetype].deviation
        deviates = deviation.extra > 0 or deviation.substitute > 0
        think, step_time, risk = self._think.next, self._step.next, self._risk_benign.next
        steps: list = []
        declared_args: dict[str, set] = {}  # what the task's request states, by argument name
        for step in plan:
            if isinstance(step, DelegateStep):
                pool = self.by_archetype[step.delegate]
                who = pool[int(self._delegation.integers(len(pool)))]
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
        u_extra, u_pick, u_sub, u_alt = self._dev_u(), self._dev_u(), self._dev_u(), self._dev_u()
        timing = self._dev_think(), self._dev_step(), self._dev_risk()
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
        u = self._scope_u
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
        for name, spec in specs.items():
            if isinstance(spec, KnownArg):
                declared = self._arg_u() < spec.known
                values[name] = f"{name}:t{task_id}" if declared else f"{name}:t{task_id}:found"
                if not declared:
                    unknown.add(name)
            elif isinstance(spec, ConstantArg):
                values[name] = spec.value
            elif isinstance(spec, ChoiceArg):
                names = list(spec.choice)
                cdf = list(accumulate(spec.choice.values()))
                values[name] = names[min(bisect_right(cdf, self._arg_u() * cdf[-1]), len(names) - 1)]
            else:  # a distribution: a number, e.g. an amount
                values[name] = float(self._arg_sampler(name, spec).next())
        derived = frozenset(r for n in unknown if (r := found[n]) is not None)
        return Args(values, frozenset(unknown) if unknown else NO_NAMES, derived or NO_NAMES,
                    carries or NO_NAMES)

    def _arg_sampler(self, name: str, dist) -> BlockSampler:
        key = (name, id(dist))
        sampler = self._arg_samplers.get(key)
        if sampler is None:
            sampler = self._arg_samplers[key] = BlockSampler(
                dist, seedtree.stream(self._root, self.replication, "arguments",
                                      1 + len(self._arg_samplers)))
        return sampler

    def benign_risk(self) -> float:
        """A risk score of a legitimate action (from the scenario's signals)."""
        return self._risk_benign.next()

    def injected(self, perm: Perm, **labels) -> InjectedAction:
        """A freshly sampled injected action (think, duration, misuse-risk) for a permission."""
        risk = self._risk_misuse.next()
        return InjectedAction(perm, self._think.next(), self._step.next(), risk, **labels)


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
    """The workload of one replication (identical for every control)."""
    # Building allocates millions of objects and frees none: the collector's passes over the
    # growing heap would find nothing and cost about a fifth of the build.
    enabled = gc.isenabled()
    gc.disable()
    try:
        return WorkloadBuilder(spec, replication, root_seed).build()
    finally:
        if enabled:
            gc.enable()
