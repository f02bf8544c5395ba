"""The pre-sampled workload of one replication: agents, tasks, plans, delegation, misuse.

Pure Python and numpy, no SimPy. Everything that does not depend on the control is sampled here
once, so every control of a replication sees the identical workload (common random numbers);
`Workload.digest()` proves it.
"""

from __future__ import annotations

import hashlib
from array import array
from dataclasses import dataclass

import numpy as np

from simharness import rng as seedtree
from simharness.rng import BlockSampler
from simharness.spec import DelegateStep, ScenarioSpec

Perm = tuple[str, str, str]  # (tool, action, resource)

# How an action presents its credential (the engine picks the credential; controls judge it).
OWN = "own"  # the actor's current credential for this task
STOLEN = "stolen"  # an outside attacker uses a leaked credential
REPLAY = "replay"  # the agent reuses its ended task's credential
PASSTHROUGH = "passthrough"  # a delegate presents the delegator's credential
IMPERSONATE = "impersonate"  # the agent presents another archetype's identity


@dataclass(frozen=True, slots=True)
class AgentInfo:
    index: int
    name: str  # e.g. "support-3"
    archetype: str
    identity_mode: str  # shared | per_agent | per_task
    platform: str  # first_party | third_party
    role: frozenset[Perm]

    @property
    def standing_identity(self) -> str | None:
        """The identity the agent holds between tasks (None for per_task identities)."""
        if self.identity_mode == "shared":
            return self.archetype
        if self.identity_mode == "per_agent":
            return self.name
        return None


class Action:
    """One pre-sampled tool invocation of a task's plan.

    A plain class with five slots: a run holds one per planned action (a million in a large
    run), so the misuse labels live on the class for legitimate actions and only
    `InjectedAction` stores its own."""

    __slots__ = ("perm", "think", "duration", "risk", "bytes_out")
    misuse_id: int = -1
    kind: str | None = None
    goal: bool = False  # a goal action of a misuse (counts for damage and outcomes)
    present: str = OWN
    as_agent: int = -1  # impersonation: index of the agent whose identity is presented
    entitled: bool = True  # False: the directory revoked this permission (stale_authorization)
    data_sensitivity: str | None = None  # a send carries data of this sensitivity

    def __init__(self, perm: Perm, think: float, duration: float, risk: float,
                 bytes_out: int = 0):
        self.perm = perm
        self.think = think  # delay before the request (or offset, for attacker and replay uses)
        self.duration = duration  # tool execution time if allowed
        self.risk = risk  # the noisy risk signal a detector or policy sees
        self.bytes_out = bytes_out


class InjectedAction(Action):
    """An action a misuse injected, labelled with its instance id and kind."""

    __slots__ = ("misuse_id", "kind", "goal", "present", "as_agent", "entitled",
                 "data_sensitivity")

    def __init__(self, perm: Perm, think: float, duration: float, risk: float,
                 bytes_out: int = 0, *, misuse_id: int, kind: str, goal: bool,
                 present: str = OWN, as_agent: int = -1, entitled: bool = True,
                 data_sensitivity: str | None = None):
        super().__init__(perm, think, duration, risk, bytes_out)
        self.misuse_id, self.kind, self.goal = misuse_id, kind, goal
        self.present, self.as_agent, self.entitled = present, as_agent, entitled
        self.data_sensitivity = data_sensitivity


@dataclass(slots=True)
class Task:
    id: int
    type: str
    agent: int
    arrival: float
    steps: list  # Action | Delegation, in order
    scope: frozenset[Perm]  # the permissions its own plan uses
    depth: int = 0
    misuse_id: int = -1
    kind: str | None = None
    leak_step: int = -1  # credential_theft: the step whose credential leaks
    attacker: tuple[Action, ...] = ()  # after the leak, think = offset (credential_theft)
    replay: tuple[Action, ...] = ()  # after the task ends, think = offset (token_replay)


@dataclass(slots=True)
class Delegation:
    """A hand-off: the sub-task runs on another agent and the delegator waits for it."""

    think: float
    task: Task


@dataclass(frozen=True, slots=True)
class MisuseInstance:
    id: int
    kind: str
    task: int
    agent: int
    arrival: float


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
    if type(a) is Action:  # the common case: only the permission and bytes vary
        return f"{a.perm}|{a.bytes_out}"
    return (f"{a.perm}|{a.bytes_out}|{a.misuse_id}|{a.kind}|{a.goal}|{a.present}|{a.as_agent}|"
            f"{a.entitled}|{a.data_sensitivity}")


def permission_weights(spec: ScenarioSpec) -> dict[Perm, float]:
    """w(p) for every (tool, action, resource) the scenario's tools can express."""
    sens = {r.name: spec.weights.sensitivity[r.sensitivity] for r in spec.resources}
    return {
        (t.name, a, r): sens[r] * spec.weights.action[a]
        for t in spec.tools
        for a in t.actions
        for r in t.resources
    }


def role_perms(spec: ScenarioSpec, role: dict[str, list[str]]) -> frozenset[Perm]:
    """Every permission a role grants: its (tool, action) pairs on each of the tool's resources."""
    tools = {t.name: t for t in spec.tools}
    return frozenset((tn, a, r) for tn, acts in role.items() for a in acts for r in tools[tn].resources)


class WorkloadBuilder:
    """Samples one replication's workload from the seed tree."""

    def __init__(self, spec: ScenarioSpec, replication: int, root_seed: int | None = None):
        self.spec = spec
        self.replication = replication
        root = spec.seed if root_seed is None else root_seed
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
        self._next_task_id = 0
        self._next_misuse_id = 0
        self._plans: dict[str, tuple[list, frozenset[Perm]]] = {}

    def build(self) -> Workload:
        """Arrivals, plans and misuse for every agent over the horizon."""
        from simharness.misuse import inject  # misuse.py builds on the types above

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
        """A task type's steps as (perm, bytes_out) or DelegateStep, and its scope (cached)."""
        plan = self._plans.get(ttype)
        if plan is None:
            steps = [s if isinstance(s, DelegateStep) else ((s.tool, s.action, s.resource), s.bytes_out)
                     for s in self.spec.tasks[ttype].steps]
            scope = frozenset(s[0] for s in steps if not isinstance(s, DelegateStep))
            plan = self._plans[ttype] = (steps, scope)
        return plan

    def _task(self, ttype: str, agent: int, arrival: float, depth: int) -> Task:
        tid = self._next_task_id
        self._next_task_id += 1
        plan, scope = self._plan(ttype)
        think, step_time, risk = self._think.next, self._step.next, self._risk_benign.next
        steps: list = []
        for step in plan:
            if isinstance(step, DelegateStep):
                pool = self.by_archetype[step.delegate]
                who = pool[int(self._delegation.integers(len(pool)))]
                sub = self._task(step.task, who, arrival, depth + 1)
                steps.append(Delegation(think(), sub))
            else:
                # Positional, in the order of `action()`: think, duration, risk.
                steps.append(Action(step[0], think(), step_time(), risk(), step[1]))
        return Task(tid, ttype, agent, arrival, steps, scope, depth)

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
    return WorkloadBuilder(spec, replication, root_seed).build()
